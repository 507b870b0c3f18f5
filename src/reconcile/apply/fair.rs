//! Fair shares of the controller's two budgets, so that one mirror with
//! thousands of targets cannot starve the others.
//!
//! - Replica writes (`--write-concurrency`): a freed permit goes to the
//!   waiting mirror that holds the fewest (ties: the one served longest
//!   ago), not to whoever queued first. A mirror alone uses the whole
//!   budget; a mirror that arrives while a big one has thousands of writes
//!   to go gets the next permit freed, and two busy mirrors share evenly.
//! - Reconcile slots (`--concurrency`): a reconcile holds one to read, plan
//!   and write status, and gives it up while it waits for its replica
//!   writes (the write budget bounds those already), so big fan-outs in
//!   their write phase leave the slots to everyone else.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

pub(crate) struct WriteBudget {
    state: Mutex<Budget>,
}

struct Budget {
    free: usize,
    mirrors: HashMap<String, Share>,
    /// (held, last served, mirror) of every mirror with a waiting write:
    /// the first is served next. Never non-empty while permits are free.
    queue: BTreeSet<(usize, u64, String)>,
    grants: u64,
    waiters: u64,
}

#[derive(Default)]
struct Share {
    held: usize,
    last_served: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One replica write in flight; dropping it frees the permit.
#[must_use]
pub(crate) struct WritePermit<'a> {
    budget: &'a WriteBudget,
    mirror: String,
}

impl Drop for WritePermit<'_> {
    fn drop(&mut self) {
        self.budget.state.lock().unwrap().release(&self.mirror);
    }
}

/// A write waiting for its permit: cancelled (dropped) while queued, it
/// leaves the queue; granted just as it was dropped, it passes the permit on.
struct Waiting<'a> {
    budget: &'a WriteBudget,
    mirror: &'a str,
    id: u64,
    granted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut b = self.budget.state.lock().unwrap();
        let queued = b
            .mirrors
            .get(self.mirror)
            .is_some_and(|s| s.waiting.iter().any(|(id, _)| *id == self.id));
        if queued {
            let id = self.id;
            b.change(self.mirror, |s| s.waiting.retain(|(w, _)| *w != id));
        } else {
            b.release(self.mirror);
        }
    }
}

impl WriteBudget {
    pub(crate) fn new(permits: usize) -> Self {
        Self {
            state: Mutex::new(Budget {
                free: permits.max(1),
                mirrors: HashMap::new(),
                queue: BTreeSet::new(),
                grants: 0,
                waiters: 0,
            }),
        }
    }

    /// Waits for a permit for one of `mirror`'s writes.
    pub(crate) async fn acquire<'a>(&'a self, mirror: &'a str) -> WritePermit<'a> {
        // Made only once granted: a permit dropped is a permit freed.
        let permit = || WritePermit {
            budget: self,
            mirror: mirror.to_string(),
        };
        let (id, granted) = {
            let mut b = self.state.lock().unwrap();
            if b.free > 0 {
                // Nobody waits while permits are free: take one.
                b.free -= 1;
                b.grants += 1;
                let at = b.grants;
                b.change(mirror, |s| {
                    s.held += 1;
                    s.last_served = at;
                });
                return permit();
            }
            b.waiters += 1;
            let id = b.waiters;
            let (tx, rx) = oneshot::channel();
            b.change(mirror, |s| s.waiting.push_back((id, tx)));
            (id, rx)
        };
        let mut waiting = Waiting {
            budget: self,
            mirror,
            id,
            granted: false,
        };
        granted
            .await
            .expect("a waiting write is granted or leaves the queue, never dropped");
        waiting.granted = true;
        permit()
    }

    #[cfg(test)]
    fn held(&self, mirror: &str) -> usize {
        let b = self.state.lock().unwrap();
        b.mirrors.get(mirror).map_or(0, |s| s.held)
    }
}

impl Budget {
    /// Changes a mirror's share, keeping its place in the queue current and
    /// forgetting mirrors that hold and wait for nothing.
    fn change(&mut self, mirror: &str, f: impl FnOnce(&mut Share)) {
        let share = self.mirrors.entry(mirror.to_string()).or_default();
        if !share.waiting.is_empty() {
            self.queue
                .remove(&(share.held, share.last_served, mirror.to_string()));
        }
        f(share);
        if !share.waiting.is_empty() {
            self.queue
                .insert((share.held, share.last_served, mirror.to_string()));
        } else if share.held == 0 {
            self.mirrors.remove(mirror);
        }
    }

    fn release(&mut self, mirror: &str) {
        self.change(mirror, |s| s.held -= 1);
        self.free += 1;
        while self.free > 0 {
            let Some((_, _, next)) = self.queue.first().cloned() else {
                return;
            };
            self.free -= 1;
            self.grants += 1;
            let at = self.grants;
            let mut sent = false;
            self.change(&next, |s| {
                let (_, tx) = s.waiting.pop_front().expect("queued mirrors wait");
                s.held += 1;
                s.last_served = at;
                sent = tx.send(()).is_ok();
            });
            if !sent {
                // Its waiter is gone (it leaves the queue under this lock,
                // so this does not happen); undo the grant all the same.
                self.change(&next, |s| s.held -= 1);
                self.free += 1;
            }
        }
    }
}

/// The `--concurrency` slots. The applier itself runs unbounded: waiting
/// here is first come, first served (its own pending set is unordered), and
/// a reconcile can give its slot up while it writes.
pub(crate) struct ReconcileSlots {
    semaphore: Arc<Semaphore>,
    held: Mutex<HashMap<String, OwnedSemaphorePermit>>,
}

/// A reconcile's slot (if it has not given it up); freed when dropped.
#[must_use]
pub(crate) struct Slot<'a> {
    slots: &'a ReconcileSlots,
    mirror: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.held.lock().unwrap().remove(&self.mirror);
    }
}

impl ReconcileSlots {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(slots.max(1))),
            held: Mutex::new(HashMap::new()),
        }
    }

    async fn permit(&self) -> OwnedSemaphorePermit {
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed")
    }

    /// Waits for a slot for `mirror`'s reconcile (one at a time per mirror).
    pub(crate) async fn acquire(&self, mirror: &str) -> Slot<'_> {
        let permit = self.permit().await;
        self.held.lock().unwrap().insert(mirror.to_string(), permit);
        Slot {
            slots: self,
            mirror: mirror.to_string(),
        }
    }

    /// Runs `f` with `mirror`'s slot given up (if it holds one), then waits
    /// for a slot again.
    pub(crate) async fn without<F: Future>(&self, mirror: &str, f: F) -> F::Output {
        let Some(permit) = self.held.lock().unwrap().remove(mirror) else {
            return f.await;
        };
        drop(permit);
        let out = f.await;
        let permit = self.permit().await;
        self.held.lock().unwrap().insert(mirror.to_string(), permit);
        out
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Poll;

    use futures::{FutureExt, poll};

    use super::*;

    /// Polls every waiting acquire once; returns the permits granted.
    async fn grant<'a, F>(waiting: &mut Vec<std::pin::Pin<Box<F>>>) -> Vec<WritePermit<'a>>
    where
        F: Future<Output = WritePermit<'a>>,
    {
        let mut granted = Vec::new();
        let mut still = Vec::new();
        for mut w in waiting.drain(..) {
            match poll!(w.as_mut()) {
                Poll::Ready(p) => granted.push(p),
                Poll::Pending => still.push(w),
            }
        }
        *waiting = still;
        granted
    }

    #[tokio::test]
    async fn a_mirror_alone_uses_the_whole_budget() {
        let b = WriteBudget::new(4);
        let held: Vec<_> = (0..4)
            .map(|_| b.acquire("big").now_or_never().expect("free"))
            .collect();
        assert_eq!(b.held("big"), 4);
        assert!(b.acquire("big").now_or_never().is_none(), "the fifth waits");
        drop(held);
        assert_eq!(b.held("big"), 0);
        assert!(b.state.lock().unwrap().mirrors.is_empty(), "forgotten");
    }

    #[tokio::test]
    async fn a_newcomer_gets_the_next_freed_permit_ahead_of_a_big_queue() {
        let b = WriteBudget::new(4);
        let mut held: Vec<_> = (0..4)
            .map(|_| b.acquire("big").now_or_never().unwrap())
            .collect();
        let mut big: Vec<_> = (0..100).map(|_| Box::pin(b.acquire("big"))).collect();
        assert!(grant(&mut big).await.is_empty());
        let mut small = Box::pin(b.acquire("small"));
        assert!(poll!(small.as_mut()).is_pending());
        held.pop();
        let Poll::Ready(first) = poll!(small.as_mut()) else {
            panic!("the newcomer waits behind 100 queued writes")
        };
        assert!(
            grant(&mut big).await.is_empty(),
            "that permit was the newcomer's"
        );
        // The newcomer's write ends: the big mirror's queue goes on.
        drop(first);
        assert_eq!(grant(&mut big).await.len(), 1);
        assert_eq!(b.held("big"), 4);
    }

    #[tokio::test]
    async fn two_busy_mirrors_share_evenly() {
        let b = WriteBudget::new(6);
        let mut held: VecDeque<_> = (0..6)
            .map(|_| b.acquire("a").now_or_never().unwrap())
            .collect();
        let mut a: Vec<_> = (0..50).map(|_| Box::pin(b.acquire("a"))).collect();
        let mut c: Vec<_> = (0..50).map(|_| Box::pin(b.acquire("c"))).collect();
        assert!(grant(&mut a).await.is_empty() && grant(&mut c).await.is_empty());
        // Writes end one by one, oldest first; the freed permits even out.
        for ended in 1..=40 {
            held.pop_front();
            held.extend(grant(&mut c).await);
            held.extend(grant(&mut a).await);
            assert_eq!(b.held("a") + b.held("c"), 6);
            assert_eq!(b.held("c"), ended.min(3), "after {ended} writes ended");
        }
    }

    #[tokio::test]
    async fn equal_holders_are_served_in_turn() {
        let b = WriteBudget::new(1);
        let held = b.acquire("x").now_or_never().unwrap();
        let mut p = Box::pin(b.acquire("p"));
        let mut q = Box::pin(b.acquire("q"));
        assert!(poll!(p.as_mut()).is_pending() && poll!(q.as_mut()).is_pending());
        let mut p2 = Box::pin(b.acquire("p"));
        assert!(poll!(p2.as_mut()).is_pending());
        drop(held);
        let Poll::Ready(first) = poll!(p.as_mut()) else {
            panic!("p waited longest")
        };
        drop(first);
        // p was just served; q has not been: q goes before p's second write.
        assert!(poll!(p2.as_mut()).is_pending());
        assert!(poll!(q.as_mut()).is_ready());
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaks_nothing() {
        let b = WriteBudget::new(1);
        let held = b.acquire("a").now_or_never().unwrap();
        {
            let mut w = pin!(b.acquire("b"));
            assert!(poll!(w.as_mut()).is_pending());
        }
        // Granted, then dropped before it was polled: the permit moves on.
        let mut granted_unpolled = Box::pin(b.acquire("c"));
        assert!(poll!(granted_unpolled.as_mut()).is_pending());
        drop(held);
        drop(granted_unpolled);
        let again = b.acquire("d").now_or_never();
        assert!(again.is_some(), "the budget is whole again");
        drop(again);
        assert!(b.state.lock().unwrap().mirrors.is_empty());
        assert!(b.state.lock().unwrap().queue.is_empty());
    }

    #[tokio::test]
    async fn a_reconcile_writing_leaves_its_slot_to_others() {
        let slots = ReconcileSlots::new(1);
        let big = slots.acquire("big").await;
        let mut small = pin!(slots.acquire("small"));
        assert!(poll!(small.as_mut()).is_pending(), "one slot, taken");
        let (release, writes_done) = oneshot::channel::<()>();
        let mut writing = pin!(slots.without("big", writes_done));
        assert!(poll!(writing.as_mut()).is_pending());
        let Poll::Ready(small_slot) = poll!(small.as_mut()) else {
            panic!("the slot was not given up")
        };
        release.send(()).unwrap();
        assert!(
            poll!(writing.as_mut()).is_pending(),
            "back in line for a slot"
        );
        drop(small_slot);
        assert!(poll!(writing.as_mut()).is_ready());
        assert_eq!(slots.available(), 0);
        drop(big);
        assert_eq!(slots.available(), 1);
    }
}
