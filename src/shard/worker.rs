//! A member's view of its assignments: read on every NOTIFY and every poll
//! interval. Each read is trusted for `Timing::ownership_valid` from its
//! start; a drained mirror is released at once and handed over, apart from
//! the reads, once its in-flight reconcile has finished.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tracing::{Instrument, instrument};

use super::membership::Membership;
use super::view::Owned;
use super::{ShardView, Timing};
use crate::store::coordination::{self, AssignmentRow, Held};
use crate::telemetry::names;

/// Mirrors whose handover is under way (one task each).
type Handing = Arc<Mutex<HashSet<String>>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub(crate) async fn run(
    pool: PgPool,
    membership: Arc<Membership>,
    view: Arc<ShardView>,
    timing: Timing,
) {
    let mut listener = None;
    let handing = Handing::default();
    loop {
        if listener.is_none() {
            listener = coordination::listen(&pool).await.ok();
        }
        let mut next_read = timing.poll;
        match refresh(&pool, &membership, &view, &timing, &handing).await {
            Ok(Some(held_for)) => next_read = next_read.min(held_for),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading assignments failed; retrying"),
        }
        // Fenced, or unfenced but not yet read: every moment without a
        // fresh read is a moment this member reconciles nothing.
        if view.active().is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // Wait for a NOTIFY, or poll (or a forced move's hold to end).
        let notified = match listener.as_mut() {
            Some(l) => tokio::time::timeout(next_read, l.recv()).await,
            None => {
                tokio::time::sleep(next_read.min(Duration::from_secs(1))).await;
                continue;
            }
        };
        if let Ok(Err(e)) = notified {
            tracing::warn!(error = %e, "assignment notifications lost; reconnecting");
            listener = None;
        }
    }
}

/// Reads the assignments into the view and starts the handover of newly
/// drained mirrors. Returns how long the soonest forced move to this
/// member still holds it back, if any.
async fn refresh(
    pool: &PgPool,
    membership: &Arc<Membership>,
    view: &Arc<ShardView>,
    timing: &Timing,
    handing: &Handing,
) -> Result<Option<Duration>, ReadError> {
    if view.fenced() {
        return Ok(None);
    }
    let started = Instant::now();
    let valid = timing.ownership_valid();
    let read = tokio::time::timeout(valid, coordination::assignments_of(pool, &membership.name))
        .await
        .map_err(|_| ReadError::Timeout(valid))??;
    let (owned, held_for, draining) = sort(&membership.name, read);
    view.set_owned(owned, started + valid);
    metrics::gauge!(names::SHARD_OWNED).set(view.owned_count() as f64);
    for row in draining {
        if !handing.lock().unwrap().insert(row.mirror_uid.clone()) {
            continue;
        }
        // Apart from the reads: a handover waits for an in-flight
        // reconcile, and the reads must go on meanwhile (they keep the
        // member's other mirrors trusted and see further drains).
        let (pool, membership, view, timing, handing) = (
            pool.clone(),
            membership.clone(),
            view.clone(),
            timing.clone(),
            handing.clone(),
        );
        let handover = async move {
            if let Err(e) = hand_over(&pool, &membership, &view, &timing, &row).await {
                tracing::warn!(mirror = %row.mirror_uid, error = %e, "handover failed; retried on the next read");
            }
            handing.lock().unwrap().remove(&row.mirror_uid);
        };
        // In the task's span (which member), as the reads are.
        tokio::spawn(handover.in_current_span());
    }
    Ok(held_for)
}

/// Splits a member's read: the mirrors it may act on now, how long the
/// soonest one still held back by a forced move waits, and its drains.
/// Pure.
fn sort(
    member: &str,
    read: Vec<Held>,
) -> (HashMap<String, Owned>, Option<Duration>, Vec<AssignmentRow>) {
    let mut owned = HashMap::new();
    let mut held_for: Option<Duration> = None;
    let mut draining = Vec::new();
    for Held {
        row,
        held_for: hold,
    } in read
    {
        if row.member != member {
            continue;
        }
        if row.state == "draining" {
            draining.push(row);
            continue;
        }
        if let Some(hold) = hold.filter(|h| !h.is_zero()) {
            held_for = Some(held_for.map_or(hold, |h| h.min(hold)));
            continue;
        }
        let o = Owned {
            epoch: row.epoch,
            namespace: row.mirror_namespace,
            name: row.mirror_name,
        };
        owned.insert(row.mirror_uid, o);
    }
    (owned, held_for, draining)
}

/// The old owner's part of a handover: no new reconcile starts (the mirror
/// is released), the running one finishes, then the new owner is told.
#[instrument(
    name = "handover",
    skip_all,
    fields(
        mirror = %row.mirror_uid,
        from = %membership.name,
        to = row.next_member.as_deref(),
        epoch = row.epoch,
    )
)]
async fn hand_over(
    pool: &PgPool,
    membership: &Membership,
    view: &ShardView,
    timing: &Timing,
    row: &AssignmentRow,
) -> Result<(), sqlx::Error> {
    // Releasing cancels the running reconcile wherever it waits.
    view.release(&row.mirror_uid);
    let started = Instant::now();
    while view.in_flight(&row.mirror_uid) {
        if started.elapsed() > timing.drain_timeout {
            tracing::warn!(mirror = %row.mirror_uid, "in-flight reconcile did not finish; the coordinator will force the move");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A write it sent just before may still be on its way, or being
    // applied: the new owner starts only once the API server answered it.
    let left = timing.drain_timeout.saturating_sub(started.elapsed());
    if tokio::time::timeout(left, view.sent_writes_answered())
        .await
        .is_err()
    {
        tracing::warn!(mirror = %row.mirror_uid, "a write sent before the drain got no answer; the coordinator will force the move");
        return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn held(uid: &str, member: &str, state: &str, hold: Option<f64>) -> Held {
        Held {
            row: AssignmentRow {
                mirror_uid: uid.into(),
                mirror_namespace: "ns".into(),
                mirror_name: uid.into(),
                member: member.into(),
                state: state.into(),
                next_member: (state == "draining").then(|| "other".into()),
                epoch: 3,
            },
            held_for: hold.map(Duration::from_secs_f64),
        }
    }

    #[test]
    fn a_forced_move_is_acted_on_only_once_its_hold_ends() {
        let read = vec![
            held("a", "me", "active", None),
            held("b", "me", "active", Some(0.0)),
            held("c", "me", "active", Some(4.0)),
            held("d", "me", "active", Some(2.5)),
            held("e", "me", "draining", None),
            held("f", "other", "draining", None),
        ];
        let (owned, held_for, draining) = sort("me", read);
        let mut uids: Vec<_> = owned.keys().cloned().collect();
        uids.sort();
        assert_eq!(uids, ["a", "b"], "held mirrors are not owned yet");
        assert_eq!(
            held_for,
            Some(Duration::from_secs_f64(2.5)),
            "read again when the soonest hold ends"
        );
        assert_eq!(draining.len(), 1);
        assert_eq!(draining[0].mirror_uid, "e", "only this member's own drains");
    }
}
