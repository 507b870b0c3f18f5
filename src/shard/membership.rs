//! A member's life in the database: register (a new incarnation of its
//! name), heartbeat with the database's clock, fence itself when it cannot,
//! leave on SIGTERM.

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use uuid::Uuid;

use super::{ShardView, Timing};
use crate::store::coordination;
use crate::telemetry::names;
use crate::telemetry::server::Health;

pub struct Membership {
    pub name: String,
    pub incarnation: Uuid,
    pool: PgPool,
}

impl Membership {
    pub fn new(pool: PgPool, name: &str) -> Self {
        Self {
            name: name.to_string(),
            incarnation: Uuid::new_v4(),
            pool,
        }
    }

    /// Registers, then heartbeats until the process ends. Fences the view
    /// after `fence_after` without a successful heartbeat and lifts the
    /// fence when heartbeats work again. Returns only if another process
    /// took this member's name (then this one must stop).
    pub async fn run(&self, view: Arc<ShardView>, timing: Timing, health: Arc<Health>) {
        let mut registered = false;
        let mut last_ok: Option<Instant> = None;
        let mut max_gap: f64 = 0.0;
        let mut tick = tokio::time::interval(timing.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let result = if registered {
                coordination::heartbeat(&self.pool, &self.name, self.incarnation).await
            } else {
                coordination::register(&self.pool, &self.name, self.incarnation)
                    .await
                    .map(|()| true)
            };
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
                    if view.unfence() {
                        tracing::info!(member = %self.name, "heartbeats work: no longer fenced");
                        metrics::gauge!(names::MEMBER_FENCED).set(0.0);
                    }
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
            let silent = last_ok.map(|t| t.elapsed());
            if silent.is_none_or(|s| s >= timing.fence_after()) && view.fence() {
                tracing::warn!(member = %self.name, "no heartbeat for {:?}: fenced, writing nothing", timing.fence_after());
                metrics::gauge!(names::MEMBER_FENCED).set(1.0);
                metrics::counter!(names::FENCES).increment(1);
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
    pub async fn leave(&self) {
        match coordination::leave(&self.pool, &self.name, self.incarnation).await {
            Ok(()) => tracing::info!(member = %self.name, "left: mirrors held for the leave grace"),
            Err(e) => tracing::warn!(member = %self.name, error = %e, "could not record leaving"),
        }
    }
}
