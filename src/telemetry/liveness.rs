//! Whether the controller is making progress, for /healthz. A controller
//! with work waiting (a reconcile request queued, or reconciles in flight)
//! that has finished nothing and written no replica for `stuck_after` is
//! stuck: /healthz fails and the kubelet restarts the pod. An idle
//! controller is healthy however long it idles, and a long fan-out is not
//! stuck while its replica writes keep completing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(crate) struct Liveness {
    stuck_after: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Reconciles started and not finished (waiting for a slot included).
    in_flight: usize,
    /// A request arrived that no reconcile has taken up yet.
    requested: bool,
    /// The last progress, or when work appeared after a quiet spell.
    since: Instant,
}

impl State {
    fn busy(&self) -> bool {
        self.in_flight > 0 || self.requested
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new(DEFAULT_STUCK_AFTER)
    }
}

/// Marks one reconcile in flight; dropping it (finished, failed or
/// cancelled) counts as progress.
#[must_use]
pub(crate) struct InFlight<'a>(&'a Liveness);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap();
        s.in_flight -= 1;
        s.since = Instant::now();
    }
}

impl Liveness {
    pub(crate) fn new(stuck_after: Duration) -> Self {
        Self {
            stuck_after,
            state: Mutex::new(State {
                in_flight: 0,
                requested: false,
                since: Instant::now(),
            }),
        }
    }

    /// Runs `f` with the state, starting the clock when work appears.
    fn busy_with(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap();
        let was_busy = s.busy();
        f(&mut s);
        if !was_busy && s.busy() {
            s.since = Instant::now();
        }
    }

    /// A reconcile request entered the queue.
    pub(crate) fn requested(&self) {
        self.busy_with(|s| s.requested = true);
    }

    /// A reconcile started (before waiting for its slot: a request taken up
    /// is not progress, a reconcile finished is).
    pub(crate) fn started(&self) -> InFlight<'_> {
        self.busy_with(|s| {
            s.in_flight += 1;
            s.requested = false;
        });
        InFlight(self)
    }

    /// The queue answered a request without a reconcile (its mirror is gone).
    pub(crate) fn answered(&self) {
        let mut s = self.state.lock().unwrap();
        s.requested = false;
        s.since = Instant::now();
    }

    /// Work inside a reconcile completed (a replica write): a long fan-out
    /// is progressing, not stuck.
    pub(crate) fn progressed(&self) {
        self.state.lock().unwrap().since = Instant::now();
    }

    /// Ok, or what is stuck and for how long.
    pub(crate) fn check(&self) -> Result<(), String> {
        let s = self.state.lock().unwrap();
        let quiet = s.since.elapsed();
        if !s.busy() || quiet < self.stuck_after {
            return Ok(());
        }
        Err(format!(
            "controller stuck: {} reconcile(s) in flight{} and none finished, no replica written, for {}s (--stuck-after-seconds {})",
            s.in_flight,
            if s.requested {
                ", a request waiting"
            } else {
                ""
            },
            quiet.as_secs(),
            self.stuck_after.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(300);

    async fn pass(d: Duration) {
        tokio::time::advance(d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn idle_is_healthy_however_long() {
        let l = Liveness::new(LIMIT);
        pass(LIMIT * 10).await;
        assert!(l.check().is_ok());
        // Work that came and went leaves it idle again.
        drop(l.started());
        pass(LIMIT * 10).await;
        assert!(l.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_never_finishes_is_stuck_after_the_limit() {
        let l = Liveness::new(LIMIT);
        // Idle for long before the work came: the clock starts with the work.
        pass(LIMIT * 3).await;
        let hung = l.started();
        pass(LIMIT - Duration::from_secs(1)).await;
        assert!(l.check().is_ok());
        pass(Duration::from_secs(1)).await;
        let e = l.check().unwrap_err();
        assert!(e.contains("1 reconcile(s) in flight"), "{e}");
        assert!(e.contains("for 300s"), "{e}");
        // It finishes at last: progress, healthy again.
        drop(hung);
        assert!(l.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn replica_writes_and_other_reconciles_finishing_are_progress() {
        let l = Liveness::new(LIMIT);
        let long = l.started();
        for _ in 0..10 {
            pass(LIMIT / 2).await;
            l.progressed();
            assert!(l.check().is_ok());
        }
        for _ in 0..10 {
            pass(LIMIT / 2).await;
            drop(l.started());
            assert!(l.check().is_ok());
        }
        pass(LIMIT).await;
        assert!(l.check().is_err(), "nothing moved for the whole limit");
        drop(long);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_no_reconcile_takes_up_is_stuck() {
        let l = Liveness::new(LIMIT);
        l.requested();
        pass(LIMIT).await;
        let e = l.check().unwrap_err();
        assert!(e.contains("a request waiting"), "{e}");
        l.answered();
        assert!(l.check().is_ok());
        // A request taken up clears the flag; its reconcile now counts.
        l.requested();
        let r = l.started();
        pass(LIMIT).await;
        assert!(!l.check().unwrap_err().contains("a request waiting"));
        drop(r);
        assert!(l.check().is_ok());
    }
}
