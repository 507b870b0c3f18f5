//! A member's view of its assignments: read on every NOTIFY and every poll
//! interval; a drained mirror is released at once and handed over once its
//! in-flight reconcile has finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::membership::Membership;
use super::view::Owned;
use super::{ShardView, Timing};
use crate::store::coordination::{self, AssignmentRow};
use crate::telemetry::names;

pub async fn run(pool: PgPool, membership: Arc<Membership>, view: Arc<ShardView>, timing: Timing) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            listener = coordination::listen(&pool).await.ok();
        }
        if let Err(e) = refresh(&pool, &membership, &view, &timing).await {
            tracing::warn!(error = %e, "reading assignments failed; retrying");
        }
        // Fenced, or unfenced but not yet read: every moment without a
        // fresh read is a moment this member reconciles nothing.
        if view.active().is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // Wait for a NOTIFY, or poll.
        let notified = match listener.as_mut() {
            Some(l) => tokio::time::timeout(timing.poll, l.recv()).await,
            None => {
                tokio::time::sleep(timing.poll.min(Duration::from_secs(1))).await;
                continue;
            }
        };
        if let Ok(Err(e)) = notified {
            tracing::warn!(error = %e, "assignment notifications lost; reconnecting");
            listener = None;
        }
    }
}

async fn refresh(
    pool: &PgPool,
    membership: &Membership,
    view: &ShardView,
    timing: &Timing,
) -> Result<(), sqlx::Error> {
    if view.fenced() {
        return Ok(());
    }
    let rows = coordination::assignments_of(pool, &membership.name).await?;
    let mine = |r: &&AssignmentRow| r.member == membership.name;
    let owned: HashMap<String, Owned> = rows
        .iter()
        .filter(mine)
        .filter(|r| r.state == "active")
        .map(|r| {
            let owned = Owned {
                epoch: r.epoch,
                namespace: r.mirror_namespace.clone(),
                name: r.mirror_name.clone(),
            };
            (r.mirror_uid.clone(), owned)
        })
        .collect();
    let draining: Vec<AssignmentRow> = rows
        .iter()
        .filter(mine)
        .filter(|r| r.state == "draining")
        .cloned()
        .collect();
    view.set_owned(owned);
    metrics::gauge!(names::SHARD_OWNED).set(view.owned_count() as f64);
    for row in draining {
        hand_over(pool, membership, view, timing, &row).await?;
    }
    Ok(())
}

/// The old owner's part of a handover: no new reconcile starts (the mirror
/// is released), the running one finishes, then the new owner is told.
async fn hand_over(
    pool: &PgPool,
    membership: &Membership,
    view: &ShardView,
    timing: &Timing,
    row: &AssignmentRow,
) -> Result<(), sqlx::Error> {
    view.release(&row.mirror_uid);
    let started = Instant::now();
    while view.in_flight(&row.mirror_uid) {
        if started.elapsed() > timing.drain_timeout {
            tracing::warn!(mirror = %row.mirror_uid, "in-flight reconcile did not finish; the coordinator will force the move");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match coordination::acknowledge_drain(
        pool,
        &row.mirror_uid,
        &membership.name,
        membership.incarnation,
        row.epoch,
    )
    .await?
    {
        Some(seconds) => {
            metrics::histogram!(names::HANDOVER_DURATION).record(seconds);
            metrics::counter!(names::SHARD_HANDOVERS).increment(1);
            tracing::debug!(mirror = %row.mirror_uid, to = ?row.next_member, seconds, "handed over");
        }
        None => {
            tracing::debug!(mirror = %row.mirror_uid, "drain changed meanwhile; nothing to acknowledge")
        }
    }
    Ok(())
}
