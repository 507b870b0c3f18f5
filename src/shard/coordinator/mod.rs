//! The coordinator: elected through a Lease, it takes a new coordinator
//! epoch in PostgreSQL and keeps the assignments equal to `assign`'s answer
//! over the live members, writing only under that epoch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kube::api::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::instrument;

use super::Timing;
use crate::api::ConfigMirror;
use crate::store::coordination::{self, CoordinatorError, CoordinatorTx, MoveRules};
use crate::telemetry::names;

mod gauges;
mod planning;

pub(crate) use planning::{next_role_change, plan, roles};

/// uid → (namespace, name) of every ConfigMirror in scope: metadata only,
/// so the coordinator's memory is a few dozen bytes per mirror.
pub(crate) type MirrorIndex = Arc<RwLock<HashMap<String, (String, String)>>>;

/// Keeps `index` equal to the ConfigMirrors in scope; `changed` ticks on change.
// Its feed is declared inside: it belongs to this watch alone.
pub(crate) async fn watch_mirrors(
    client: Client,
    scope: crate::scope::Scope,
    index: MirrorIndex,
    changed: watch::Sender<u64>,
    synced: watch::Sender<bool>,
) {
    type Mirror = PartialObjectMeta<ConfigMirror>;
    /// Every complete list ticks `changed`, the first too: the coordinator
    /// waits for it to plan at all.
    struct Feed {
        scope: crate::scope::Scope,
        index: MirrorIndex,
        changed: watch::Sender<u64>,
    }
    impl Feed {
        /// UID → (namespace, name) of a mirror in scope.
        fn entry(&self, m: &Mirror) -> Option<(String, (String, String))> {
            let namespace = m.namespace().unwrap_or_default();
            let uid = m
                .uid()
                .filter(|_| self.scope.in_namespace_scope(&namespace))?;
            Some((uid, (namespace, m.name_any())))
        }
        fn tick(&self) {
            self.changed.send_modify(|n| *n += 1);
        }
    }
    impl crate::watches::Cache for Feed {
        type Object = Mirror;
        type List = HashMap<String, (String, String)>;
        type Changes = ();
        fn list(&self, list: &mut Self::List, m: Mirror) {
            list.extend(self.entry(&m));
        }
        async fn replace(&self, fresh: Self::List) {
            *self.index.write().unwrap() = fresh;
        }
        fn relisted(&self, (): (), _first: bool) {
            self.tick();
        }
        fn apply(&self, m: Mirror) {
            if let Some((uid, entry)) = self.entry(&m)
                && self.index.write().unwrap().insert(uid, entry).is_none()
            {
                self.tick();
            }
        }
        fn delete(&self, m: Mirror) {
            if let Some(uid) = m.uid() {
                self.index.write().unwrap().remove(&uid);
                self.tick();
            }
        }
    }

    let api: Api<Mirror> = match scope.single_namespace() {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let events = crate::watches::events(
        api,
        crate::watches::watch_config(),
        crate::watches::Watch::CoordinatorMirrors,
    );
    let feed = Feed {
        scope,
        index,
        changed,
    };
    crate::watches::run(feed, events, synced, "coordinator mirrors".into()).await;
}

/// Coordinates while `leading` says so: takes an epoch, then keeps the
/// assignments current. Returns when leadership ends.
pub(crate) async fn lead(
    pool: &PgPool,
    holder: &str,
    index: &MirrorIndex,
    mut mirrors_changed: watch::Receiver<u64>,
    mut leading: watch::Receiver<bool>,
    timing: &Timing,
) {
    let epoch = loop {
        if !*leading.borrow() {
            return;
        }
        match coordination::bump_epoch(pool, holder).await {
            Ok(e) => break e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a coordinator epoch yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(%holder, epoch, "coordinating");
    // However `lead` ends (returned, or its task dropped), what it exported
    // goes back to 0: a former coordinator's orphans would fire the alert.
    let _exported = gauges::Withdraw;
    metrics::gauge!(names::COORDINATOR_EPOCH).set(epoch as f64);
    let mut listener = coordination::listen(pool).await.ok();
    let mut connected_since: Option<Instant> = Some(Instant::now());
    let mut pruned_at: Option<Instant> = None;
    loop {
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(Instant::now());
            prune(pool, epoch, timing.retention).await;
        }
        let judge_dead = connected_since.is_some_and(|t| t.elapsed() >= timing.heartbeat * 3);
        let mut pause = timing.heartbeat;
        match attempt(pool, holder, epoch, index, timing, judge_dead).await {
            Some(next_change) => {
                connected_since.get_or_insert_with(Instant::now);
                // Step again just after a member's role changes (by the
                // database's clock: a moment later, to be past it there).
                if let Some(next) = next_change {
                    pause = pause.min(next + Duration::from_millis(20));
                }
            }
            None => connected_since = None,
        }
        let wake = async {
            match listener.as_mut() {
                Some(l) => {
                    let _ = l.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake => tokio::time::sleep(Duration::from_millis(50)).await,
            _ = mirrors_changed.changed() => tokio::time::sleep(Duration::from_millis(50)).await,
            _ = async { let _ = leading.wait_for(|l| !*l).await.is_ok(); } => {
                // The Lease is only the election; the epoch in the database
                // is the authority. Whatever this process was about to do
                // when it lost the Lease (it may have been paused mid-step)
                // goes to the database once more and is refused there if a
                // newer coordinator exists.
                attempt(pool, holder, epoch, index, timing, false).await;
                return;
            }
        }
        if listener.is_none() {
            listener = coordination::listen(pool).await.ok();
        }
    }
}

/// How often the coordinator prunes history and long-gone members.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Rows one pruning statement deletes at most (each its own transaction).
const PRUNE_BATCH: i64 = 5_000;

/// Prunes assignment history and long-gone members, batch after batch,
/// under this coordinator's epoch (a deposed one prunes nothing).
#[instrument(name = "coordinator_prune", skip_all, fields(epoch = epoch))]
pub async fn prune(pool: &PgPool, epoch: i64, retention: Duration) {
    let (mut history, mut members) = (0, 0);
    let result = loop {
        let batch = async {
            let mut tx = CoordinatorTx::begin(pool, epoch).await?;
            let pruned = tx.prune(retention, PRUNE_BATCH).await?;
            tx.commit_quietly().await?;
            Ok::<_, CoordinatorError>(pruned)
        };
        match batch.await {
            Ok((h, m)) => {
                history += h;
                members += m;
                if h < PRUNE_BATCH as u64 {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    if history + members > 0 {
        tracing::info!(
            history,
            members,
            "pruned assignment history and long-gone members"
        );
    }
    if let Err(e) = result {
        tracing::warn!(error = %e, "pruning coordination history failed; next time");
    }
}

/// One step, its outcome logged and counted; `None` when the database
/// could not be reached, else when a member's role changes next (if one
/// will, by the heartbeats read). A round of its own in the logs.
#[instrument(name = "coordinator_round", skip_all, fields(member = holder, epoch = epoch))]
async fn attempt(
    pool: &PgPool,
    holder: &str,
    epoch: i64,
    index: &MirrorIndex,
    timing: &Timing,
    judge_dead: bool,
) -> Option<Option<Duration>> {
    match step(pool, epoch, index, timing, judge_dead).await {
        Ok(next) => Some(next),
        Err(CoordinatorError::Deposed { mine, current }) => {
            metrics::counter!(names::COORDINATOR_REFUSED).increment(1);
            tracing::warn!(
                mine,
                ?current,
                "coordinator write refused: this epoch is stale, a newer coordinator exists"
            );
            Some(None)
        }
        Err(CoordinatorError::Database(e)) => {
            tracing::warn!(error = %e, "coordination database unavailable");
            None
        }
    }
}

async fn step(
    pool: &PgPool,
    epoch: i64,
    index: &MirrorIndex,
    timing: &Timing,
    judge_dead: bool,
) -> Result<Option<Duration>, CoordinatorError> {
    step_with(pool, epoch, index, timing, judge_dead, async {}).await
}

/// One coordinator step: read members and assignments, plan, then run
/// `between` (a test hook: an acknowledgement or heartbeat landing after
/// the read), then write. Every write is conditional on what was read (an
/// assignment's epoch, a dead owner still dead), so whatever landed in
/// between is kept and the next step plans from it. Returns when a
/// member's role changes next by the heartbeats read (a crashed member's
/// mirrors then move at that moment, not up to a round later).
// Longer than most: read → plan → write is the protocol, and reads best
// in one piece.
pub async fn step_with(
    pool: &PgPool,
    epoch: i64,
    index: &MirrorIndex,
    timing: &Timing,
    judge_dead: bool,
    between: impl std::future::Future<Output = ()>,
) -> Result<Option<Duration>, CoordinatorError> {
    if !coordination::renew(pool, epoch).await? {
        return Err(CoordinatorError::Deposed {
            mine: epoch,
            current: coordination::current_epoch(pool).await?,
        });
    }
    let members = coordination::members(pool).await?;
    let current = coordination::all_assignments(pool).await?;
    let roles = roles(&members, timing, judge_dead);
    let next_change = next_role_change(&members, timing);
    let changes = {
        let mirrors = index.read().unwrap();
        plan(&mirrors, &roles, &current, timing)
    };
    gauges::publish(
        changes.orphaned,
        members.iter().map(|m| {
            let n = changes.per_member.get(&m.name).copied().unwrap_or(0);
            (m.name.as_str(), n)
        }),
    );
    between.await;
    if changes.is_empty() {
        return Ok(next_change);
    }
    let rules = MoveRules {
        heartbeat: timing.ttl + timing.grace,
        left: timing.leave_grace,
        forced_hold: timing.ownership_valid(),
    };
    let mut tx = CoordinatorTx::begin(pool, epoch).await?;
    let inserted = tx.insert(&changes.insert).await?;
    let reassigned = tx.reassign(&changes.reassign, rules).await?;
    let drained = tx.drain(&changes.drain).await?;
    let removed = tx.remove(&changes.remove).await?;
    tx.commit().await?;
    let forced = changes.reassign.iter().filter(|m| m.forced).count() as u64;
    let planned = changes.insert.len() + changes.reassign.len() + changes.drain.len();
    let applied = inserted + reassigned + drained;
    if applied < planned as u64 {
        // Changed since the read (an acknowledgement, a heartbeat, another
        // step): left for the next step, which plans from the new state.
        tracing::debug!(
            planned,
            applied,
            "some assignments changed meanwhile; replanning"
        );
        metrics::counter!(names::COORDINATOR_STALE_PLANS).increment(planned as u64 - applied);
    }
    for (kind, n) in [
        ("new", inserted),
        ("failover", reassigned.saturating_sub(forced)),
        ("forced", forced.min(reassigned)),
        ("drain", drained),
    ] {
        if n > 0 {
            metrics::counter!(names::SHARD_MOVES, "kind" => kind).increment(n);
        }
    }
    tracing::info!(
        epoch,
        new = inserted,
        failover = reassigned,
        drain = drained,
        removed,
        orphaned = changes.orphaned,
        "assignments updated"
    );
    Ok(next_change)
}
