//! What this member may reconcile, shared by the scope, the reconciles and
//! the worker loop. One mutex guards ownership and in-flight work together,
//! so a drain never misses a reconcile that is just starting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::kubeclient::WriteDeadline;

/// One mirror this member owns: its assignment's epoch and where it lives
/// (so the mirror watch can fetch a mirror the moment it is acquired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owned {
    pub epoch: i64,
    pub namespace: String,
    pub name: String,
}

/// A reconcile in flight: the epoch and the term it began under, and its
/// cancellation (a drain or a fence ends it wherever it waits).
struct Running {
    epoch: i64,
    term: u64,
    cancel: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// mirror UID → its assignment, for mirrors this member owns (active).
    owned: HashMap<String, Owned>,
    /// mirror UID → its running reconcile.
    in_flight: HashMap<String, Running>,
    /// Bumped whenever the lease runs out (a fence, or a pause the process
    /// slept through). A reconcile from an earlier term writes nothing
    /// more, and the client's deadline reopens only once none is running:
    /// a write it checked before a pause must not leave after it.
    term: u64,
    /// What the heartbeats proved: the start of the last successful one +
    /// TTL − margin (monotonic clock).
    lease_until: Option<Instant>,
    /// No heartbeat for too long: write nothing.
    fenced: bool,
    /// The assignments were read since the last (un)fencing.
    fresh: bool,
    /// The owned set may be acted on until then (monotonic clock): the
    /// start of the last successful read of the assignments + the
    /// ownership validity. A member whose reads stop working (while its
    /// heartbeats still do) stops writing then; a forced move away from it
    /// holds the new owner back at least as long.
    owned_until: Option<Instant>,
    /// Counts the times ownership became fresh (start, and each resume
    /// after a fence).
    activations: u64,
}

pub(crate) struct ShardView {
    pub member: String,
    state: Mutex<State>,
    /// Writes may be sent until then: the lease (`lease_until`), once no
    /// reconcile of an earlier term runs. The coordinator counts a member
    /// live until its heartbeat's time + TTL, so a write sent before this
    /// instant can never overlap another member's ownership. The kube
    /// client checks it as each write leaves.
    deadline: Arc<WriteDeadline>,
    /// Bumped whenever the owned set changes or ownership resumes after a
    /// fence (the mirror watch then fetches, drops or catches up).
    changes: watch::Sender<u64>,
}

impl ShardView {
    pub(crate) fn new(member: &str, deadline: Arc<WriteDeadline>) -> Self {
        // Fenced until registered and heartbeating.
        deadline.set(None);
        Self {
            member: member.to_string(),
            state: Mutex::new(State {
                fenced: true,
                ..Default::default()
            }),
            deadline,
            changes: watch::channel(0).0,
        }
    }

    pub(crate) fn owns(&self, uid: &str) -> bool {
        let s = self.state.lock().unwrap();
        s.current(Instant::now()) && s.owned.contains_key(uid)
    }

    pub(crate) fn epoch(&self, uid: &str) -> Option<i64> {
        self.state.lock().unwrap().owned.get(uid).map(|o| o.epoch)
    }

    /// The mirrors this member may reconcile now, with the activation they
    /// belong to; `None` while fenced or before the assignments were read
    /// again.
    pub(crate) fn active(&self) -> Option<(u64, HashMap<String, Owned>)> {
        let s = self.state.lock().unwrap();
        s.current(Instant::now())
            .then(|| (s.activations, s.owned.clone()))
    }

    pub(crate) fn owned_count(&self) -> usize {
        self.state.lock().unwrap().owned.len()
    }

    /// Starts a reconcile of `uid` if this member owns it; the work counts
    /// as in flight until `end`.
    pub(crate) fn begin(&self, uid: &str) -> bool {
        let mut s = self.state.lock().unwrap();
        let current = s.current(Instant::now());
        let epoch = match s.owned.get(uid) {
            Some(owned) if current => owned.epoch,
            _ => return false,
        };
        let running = Running {
            epoch,
            term: s.term,
            cancel: watch::channel(false).0,
        };
        s.in_flight.insert(uid.to_string(), running);
        true
    }

    /// Resolves when the running reconcile of `uid` is cancelled (its
    /// mirror released, or this member fenced); never, if none runs.
    pub(crate) fn cancelled(
        &self,
        uid: &str,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = self
            .state
            .lock()
            .unwrap()
            .in_flight
            .get(uid)
            .map(|r| r.cancel.subscribe());
        async move {
            match rx {
                Some(mut rx) => {
                    let _ = rx.wait_for(|c| *c).await;
                }
                None => std::future::pending().await,
            }
        }
    }

    pub(crate) fn end(&self, uid: &str) {
        let mut s = self.state.lock().unwrap();
        s.in_flight.remove(uid);
        self.open(&s);
    }

    /// The epoch the running reconcile of `uid` began under.
    pub(crate) fn in_flight_epoch(&self, uid: &str) -> Option<i64> {
        let s = self.state.lock().unwrap();
        s.in_flight.get(uid).map(|r| r.epoch)
    }

    pub(crate) fn in_flight(&self, uid: &str) -> bool {
        self.state.lock().unwrap().in_flight.contains_key(uid)
    }

    /// Resolves once every write this process sent before the call has
    /// been answered: a cancelled reconcile's last write included.
    pub(crate) fn sent_writes_answered(
        &self,
    ) -> impl std::future::Future<Output = ()> + Send + use<> {
        self.deadline.sent_writes_answered()
    }

    /// Whether this member's lease still holds: not fenced and before
    /// `valid_until`.
    #[cfg(test)]
    pub(crate) fn writable(&self) -> bool {
        !self.state.lock().unwrap().fenced && self.deadline.holds()
    }

    /// Whether the running reconcile of `uid` may send a write now: the
    /// lease holds, the assignments were read since the last fence and
    /// that read is still trusted, and
    /// the mirror is still this member's at the epoch the reconcile began
    /// under (a drain or a move ends that at once). Checked just before
    /// each replica write and status patch.
    pub(crate) fn may_write(&self, uid: &str) -> bool {
        let s = self.state.lock().unwrap();
        // `current`: also not stale after a fence (a process woken from a
        // pause may heartbeat again before it has read its assignments).
        s.current(Instant::now())
            && self.deadline.holds()
            && s.in_flight.get(uid).is_some_and(|r| {
                r.term == s.term && s.owned.get(uid).is_some_and(|o| o.epoch == r.epoch)
            })
    }

    /// A heartbeat that started at `started` succeeded: writes may go on
    /// until `started + fence_after`. After a lease that ran out, that is a
    /// new term: ownership waits for a fresh read, and writes for every
    /// reconcile of the old term to end.
    pub(crate) fn renew(&self, valid_until: Instant) {
        let mut s = self.state.lock().unwrap();
        if s.lease_until.is_none_or(|u| Instant::now() >= u) {
            s.term += 1;
            s.fresh = false;
        }
        s.lease_until = Some(s.lease_until.map_or(valid_until, |u| u.max(valid_until)));
        self.open(&s);
    }

    /// Extends the client's deadline to the lease, unless a reconcile of an
    /// earlier term is still running.
    fn open(&self, s: &State) {
        let stale = s.in_flight.values().any(|r| r.term < s.term);
        if let (Some(until), false) = (s.lease_until, stale) {
            self.deadline.extend(until);
        }
    }

    /// Whether the last read of the assignments ran out while the view
    /// still counted as fresh; it then no longer does (once).
    pub(crate) fn expire_ownership(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap();
        let ran_out = s.fresh && s.owned_until.is_none_or(|u| now >= u);
        if ran_out {
            s.fresh = false;
        }
        ran_out
    }

    /// Whether the lease ran out (the watchdog then fences).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.state
            .lock()
            .unwrap()
            .lease_until
            .is_none_or(|u| now >= u)
    }

    /// Replaces the owned set with what the database says, trusted until
    /// `valid_until` (the read's start + the ownership validity).
    pub(crate) fn set_owned(&self, owned: HashMap<String, Owned>, valid_until: Instant) {
        let mut s = self.state.lock().unwrap();
        // Resuming after a fence or after the last read ran out: the mirror
        // watch then reconciles every owned mirror, so what changed while
        // this member could not act is caught up.
        let resumed = !s.current(Instant::now());
        let changed = resumed
            || s.owned.len() != owned.len()
            || owned.keys().any(|k| !s.owned.contains_key(k));
        s.owned = owned;
        if resumed {
            s.activations += 1;
        }
        s.fresh = true;
        s.owned_until = Some(valid_until);
        drop(s);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Stops owning one mirror (a drain), at once, and cancels its running
    /// reconcile.
    pub(crate) fn release(&self, uid: &str) {
        let removed = {
            let mut s = self.state.lock().unwrap();
            if let Some(running) = s.in_flight.get(uid) {
                running.cancel.send_replace(true);
            }
            s.owned.remove(uid).is_some()
        };
        if removed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Stops every write at once (the client's too) until heartbeats
    /// work again; returns whether it was not fenced before.
    pub(crate) fn fence(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        let was = s.fenced;
        s.fenced = true;
        s.fresh = false;
        s.term += 1;
        self.deadline.set(None);
        for running in s.in_flight.values() {
            running.cancel.send_replace(true);
        }
        !was
    }

    /// Heartbeats work again: ownership waits for a fresh read of the assignments.
    /// Called on every successful heartbeat; only the first one after a
    /// fence changes anything (staleness must not flicker every second).
    pub(crate) fn unfence(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        let was = s.fenced;
        if was {
            s.fenced = false;
            s.fresh = false;
        }
        was
    }

    pub(crate) fn fenced(&self) -> bool {
        self.state.lock().unwrap().fenced
    }

    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl State {
    /// Whether the owned set may be acted on now.
    fn current(&self, now: Instant) -> bool {
        !self.fenced && self.fresh && self.owned_until.is_some_and(|u| now < u)
    }
}
#[cfg(test)]
pub(crate) mod tests;
