//! Writes that passed the write deadline and are not answered yet. A
//! caller that gives up on a write (a drain cancels the reconcile) cannot
//! take it back from the API server, which goes on to apply it; so the
//! write runs to its answer on its own task, and a handover waits until
//! every write that left before it has been answered.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Departure numbers of the writes on their way, and the lowest of them
/// (or the next number, when none is), for waiters.
#[derive(Debug)]
pub(crate) struct Unanswered {
    state: Mutex<Departures>,
    lowest: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Departures {
    next: u64,
    waiting: BTreeSet<u64>,
}

impl Departures {
    fn lowest(&self) -> u64 {
        self.waiting.first().copied().unwrap_or(self.next)
    }
}

/// One write on its way: answered when dropped.
#[derive(Debug)]
pub(crate) struct Departure {
    writes: Arc<Unanswered>,
    number: u64,
}

impl Drop for Departure {
    fn drop(&mut self) {
        let mut s = self.writes.state.lock().unwrap();
        s.waiting.remove(&self.number);
        self.writes.lowest.send_replace(s.lowest());
    }
}

impl Default for Unanswered {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            lowest: watch::channel(0).0,
        }
    }
}

impl Unanswered {
    pub(crate) fn depart(self: &Arc<Self>) -> Departure {
        let mut s = self.state.lock().unwrap();
        let number = s.next;
        s.next += 1;
        s.waiting.insert(number);
        self.lowest.send_replace(s.lowest());
        Departure {
            writes: self.clone(),
            number,
        }
    }

    /// Resolves once every write that departed before this call has been
    /// answered (later ones are not waited for).
    pub(crate) fn all_answered(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mark = self.state.lock().unwrap().next;
        let mut lowest = self.lowest.subscribe();
        async move {
            // The sender lives as long as `self`; a closed channel means no
            // write can be waiting any more.
            let _ = lowest.wait_for(|low| *low >= mark).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn waits_for_earlier_departures_only() {
        let writes = Arc::new(Unanswered::default());
        writes.all_answered().now_or_never().expect("none departed");
        let first = writes.depart();
        let second = writes.depart();
        let mut both = Box::pin(writes.all_answered());
        let third = writes.depart();
        assert!((&mut both).now_or_never().is_none());
        drop(second);
        assert!((&mut both).now_or_never().is_none(), "the first is out");
        drop(first);
        both.now_or_never()
            .expect("both answered; the third departed later");
        assert!(writes.all_answered().now_or_never().is_none());
        drop(third);
        writes.all_answered().now_or_never().expect("all answered");
    }
}
