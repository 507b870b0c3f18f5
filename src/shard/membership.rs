//! A member's life in the database: register (a new incarnation of its
//! name), heartbeat with the database's clock, fence itself when it cannot,
//! leave on SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

use sqlx::PgPool;
use uuid::Uuid;

use super::{ShardView, Timing};
use crate::store::coordination;
use crate::telemetry::names;
use crate::telemetry::server::Health;

pub(crate) struct Membership {
    pub name: String,
    pub incarnation: Uuid,
    pool: PgPool,
}

impl Membership {
    pub(crate) fn new(pool: PgPool, name: &str) -> Self {
        Self {
            name: name.to_string(),
            incarnation: Uuid::new_v4(),
            pool,
        }
    }

    /// One heartbeat (the registration first): whether the name is still
    /// ours. Bounded: a partition in the middle of a statement never
    /// returns by itself.
    async fn beat(&self, registered: bool, timeout: Duration) -> Result<bool, String> {
        let call = async {
            if registered {
                coordination::heartbeat(&self.pool, &self.name, self.incarnation).await
            } else {
                coordination::register(&self.pool, &self.name, self.incarnation)
                    .await
                    .map(|()| true)
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// A heartbeat taken: ownership holds until `fence_after` from when it
    /// started (the database may have recorded it at any moment since),
    /// and a fence lifts.
    fn renewed(
        &self,
        view: &ShardView,
        timing: &Timing,
        started: Instant,
        started_wall: SystemTime,
    ) {
        view.renew(started + timing.fence_after());
        let until = started_wall + timing.fence_after();
        let unix = until.duration_since(UNIX_EPOCH).unwrap_or_default();
        metrics::gauge!(names::MEMBER_VALID_UNTIL).set(unix.as_secs_f64());
        if view.unfence() {
            tracing::info!(member = %self.name, "heartbeats work: no longer fenced");
            metrics::gauge!(names::MEMBER_FENCED).set(0.0);
        }
    }

    /// Registers, then heartbeats until the process ends. Fences the view
    /// after `fence_after` without a successful heartbeat and lifts the
    /// fence when heartbeats work again. Returns only if another process
    /// took this member's name (then this one must stop).
    pub(crate) async fn run(&self, view: Arc<ShardView>, timing: Timing, health: Arc<Health>) {
        // Whatever this loop is stuck on, the deadline fences on time.
        let _watchdog = AbortOnDrop(tokio::spawn(
            watchdog(view.clone(), self.name.clone(), timing.fence_after()).in_current_span(),
        ));
        let mut registered = false;
        let mut last_ok: Option<Instant> = None;
        let mut max_gap: f64 = 0.0;
        let mut tick = tokio::time::interval(timing.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (started, started_wall) = (Instant::now(), SystemTime::now());
            let deadline = if registered {
                timing.heartbeat_timeout()
            } else {
                timing.registration_timeout()
            };
            let result = self.beat(registered, deadline).await;
            metrics::histogram!(names::HEARTBEAT_DURATION).record(started.elapsed().as_secs_f64());
            match result {
                Ok(true) => {
                    if !registered {
                        tracing::info!(member = %self.name, incarnation = %self.incarnation, "registered as a member");
                    }
                    registered = true;
                    if let Some(previous) = last_ok {
                        max_gap = max_gap.max(previous.elapsed().as_secs_f64());
                        metrics::gauge!(names::HEARTBEAT_MAX_GAP).set(max_gap);
                    }
                    last_ok = Some(Instant::now());
                    self.renewed(&view, &timing, started, started_wall);
                }
                Ok(false) => {
                    tracing::error!(member = %self.name, "another process registered this member name; stopping");
                    view.fence();
                    metrics::gauge!(names::MEMBER_FENCED).set(1.0);
                    health.set("membership", false, "member name taken by another process");
                    return;
                }
                Err(e) => {
                    let silent = last_ok.map_or(timing.fence_after(), |t| t.elapsed());
                    tracing::warn!(member = %self.name, error = %e, silent_for = ?silent, "heartbeat failed");
                }
            }
            if view.expired(Instant::now()) {
                fence(&view, &self.name, timing.fence_after());
            }
            health.set(
                "membership",
                !view.fenced(),
                if view.fenced() {
                    "fenced: no heartbeat"
                } else {
                    "registered and heartbeating"
                },
            );
        }
    }

    /// SIGTERM: say so, so the coordinator holds this member's mirrors for
    /// the leave grace instead of moving them at once.
    pub(crate) async fn leave(&self) {
        match coordination::leave(&self.pool, &self.name, self.incarnation).await {
            Ok(()) => tracing::info!(member = %self.name, "left: mirrors held for the leave grace"),
            Err(e) => tracing::warn!(member = %self.name, error = %e, "could not record leaving"),
        }
    }
}

/// Fences the member once its lease has run out; returns whether it was
/// not fenced before.
fn fence(view: &ShardView, member: &str, fence_after: Duration) -> bool {
    let newly = view.fence();
    if newly {
        tracing::warn!(%member, "no heartbeat for {fence_after:?}: fenced, writing nothing");
        metrics::gauge!(names::MEMBER_FENCED).set(1.0);
        metrics::counter!(names::FENCES).increment(1);
    }
    newly
}

/// Fences the member the moment its lease runs out, even while the
/// heartbeat loop is stuck, and says so when its last read of the
/// assignments ran out (writes check both deadlines themselves; this makes
/// the fence, its metric and readiness follow at once).
async fn watchdog(view: Arc<ShardView>, member: String, fence_after: Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let now = Instant::now();
        if view.expired(now) {
            fence(&view, &member, fence_after);
        } else if view.expire_ownership(now) {
            tracing::warn!(%member, "assignments not read successfully for too long: acting on none until the next read");
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
