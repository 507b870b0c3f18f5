//! The coordinator: elected through a Lease, it takes a new coordinator
//! epoch in PostgreSQL and keeps the assignments equal to `assign`'s answer
//! over the live members, writing only under that epoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kube::api::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::instrument;

use super::Timing;
use super::assign::{self, Role};
use crate::api::ConfigMirror;
use crate::store::coordination::{
    self, AssignmentRow, CoordinatorError, CoordinatorTx, MemberRow, Move, MoveRules,
};
use crate::telemetry::names;

/// uid → (namespace, name) of every ConfigMirror in scope: metadata only,
/// so the coordinator's memory is a few dozen bytes per mirror.
pub type MirrorIndex = Arc<RwLock<HashMap<String, (String, String)>>>;

/// What the coordinator wants written.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub insert: Vec<(String, String, String, String)>,
    /// Straight to a new owner (dead owner, or a forced drain).
    pub reassign: Vec<Move>,
    pub drain: Vec<Move>,
    /// (uid, epoch) of assignments whose mirror is gone.
    pub remove: Vec<(String, i64)>,
    /// Mirrors with no member to own them right now.
    pub orphaned: usize,
    pub per_member: BTreeMap<String, usize>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.insert.is_empty()
            && self.reassign.is_empty()
            && self.drain.is_empty()
            && self.remove.is_empty()
    }
}

/// Who may own mirrors. Members are judged dead only once every live member
/// has had time to heartbeat since the coordinator could see the database
/// (`judge_dead`): after an outage every heartbeat looks old.
pub fn roles(members: &[MemberRow], timing: &Timing, judge_dead: bool) -> BTreeMap<String, Role> {
    let ttl = timing.ttl.as_secs_f64();
    let mut roles = BTreeMap::new();
    for m in members {
        let role = if m.state == "leaving" {
            (m.left_age.unwrap_or(0.0) <= timing.leave_grace.as_secs_f64() || !judge_dead)
                .then_some(Role::Holding)
        } else if m.heartbeat_age <= ttl {
            Some(Role::Eligible)
        } else if m.heartbeat_age <= ttl + timing.grace.as_secs_f64() || !judge_dead {
            Some(Role::Holding)
        } else {
            None
        };
        if let Some(role) = role {
            roles.insert(m.name.clone(), role);
        }
    }
    roles
}

/// The writes that bring the assignments to `assign`'s answer. Pure.
pub fn plan(
    mirrors: &HashMap<String, (String, String)>,
    roles: &BTreeMap<String, Role>,
    current: &[(AssignmentRow, f64)],
    timing: &Timing,
) -> Changes {
    let rows: HashMap<&str, &(AssignmentRow, f64)> = current
        .iter()
        .map(|r| (r.0.mirror_uid.as_str(), r))
        .collect();
    // A mirror being handed over counts as its next owner's, if that one is alive.
    let owners: HashMap<String, String> = current
        .iter()
        .map(|(r, _)| {
            let owner = match &r.next_member {
                Some(next) if roles.get(next) == Some(&Role::Eligible) => next.clone(),
                _ => r.member.clone(),
            };
            (r.mirror_uid.clone(), owner)
        })
        .collect();
    let mut uids: Vec<String> = mirrors.keys().cloned().collect();
    uids.sort();
    let desired = assign::assign(&uids, roles, &owners);

    let mut c = Changes::default();
    for (uid, (ns, name)) in mirrors {
        let want = desired.get(uid);
        if let Some(m) = want {
            *c.per_member.entry(m.clone()).or_default() += 1;
        } else {
            c.orphaned += 1;
        }
        let Some(want) = want else { continue };
        let Some((row, age)) = rows.get(uid.as_str()) else {
            c.insert
                .push((uid.clone(), ns.clone(), name.clone(), want.clone()));
            continue;
        };
        let to = |forced| Move {
            uid: uid.clone(),
            to: want.clone(),
            epoch: row.epoch,
            forced,
        };
        let owner_alive = roles.contains_key(&row.member);
        if row.state == "draining" {
            if !owner_alive {
                c.reassign.push(to(false));
            } else if *age > timing.drain_timeout.as_secs_f64() {
                c.reassign.push(to(true));
            } else if row.next_member.as_ref() != Some(want) {
                c.drain.push(to(false));
            }
        } else if &row.member != want {
            if owner_alive {
                c.drain.push(to(false));
            } else {
                c.reassign.push(to(false));
            }
        }
    }
    c.remove = current
        .iter()
        .filter(|(r, _)| !mirrors.contains_key(&r.mirror_uid))
        .map(|(r, _)| (r.mirror_uid.clone(), r.epoch))
        .collect();
    c
}

/// Keeps `index` equal to the ConfigMirrors in scope; `changed` ticks on change.
pub async fn watch_mirrors(
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
pub async fn lead(
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
    metrics::gauge!(names::SHARD_ORPHANED).set(changes.orphaned as f64);
    for m in &members {
        let n = changes.per_member.get(&m.name).copied().unwrap_or(0);
        metrics::gauge!(names::SHARD_MIRRORS, "member" => m.name.clone()).set(n as f64);
    }
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

/// How long until the next member's role changes with no heartbeat from
/// it: live → holding at the TTL, holding → dead after the grace, leaving
/// → gone after the leave grace. Pure.
pub fn next_role_change(members: &[MemberRow], timing: &Timing) -> Option<Duration> {
    let (ttl, grace) = (timing.ttl.as_secs_f64(), timing.grace.as_secs_f64());
    members
        .iter()
        .flat_map(|m| {
            if m.state == "leaving" {
                vec![timing.leave_grace.as_secs_f64() - m.left_age.unwrap_or(0.0)]
            } else {
                vec![ttl - m.heartbeat_age, ttl + grace - m.heartbeat_age]
            }
        })
        .filter(|left| *left > 0.0)
        .min_by(f64::total_cmp)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, state: &str, heartbeat_age: f64, left_age: Option<f64>) -> MemberRow {
        MemberRow {
            name: name.into(),
            state: state.into(),
            heartbeat_age,
            left_age,
        }
    }

    fn row(uid: &str, member: &str, next: Option<&str>) -> (AssignmentRow, f64) {
        (
            AssignmentRow {
                mirror_uid: uid.into(),
                mirror_namespace: "ns".into(),
                mirror_name: uid.into(),
                member: member.into(),
                state: if next.is_some() { "draining" } else { "active" }.into(),
                next_member: next.map(String::from),
                epoch: 1,
            },
            0.5,
        )
    }

    #[test]
    fn roles_follow_heartbeats_leaving_and_grace() {
        let t = Timing::default();
        let members = [
            member("fresh", "active", 0.5, None),
            member("late", "active", 5.0, None),
            member("dead", "active", 30.0, None),
            member("restarting", "leaving", 30.0, Some(3.0)),
            member("gone", "leaving", 60.0, Some(60.0)),
        ];
        let r = roles(&members, &t, true);
        assert_eq!(r.get("fresh"), Some(&Role::Eligible));
        assert_eq!(r.get("late"), Some(&Role::Holding));
        assert_eq!(r.get("restarting"), Some(&Role::Holding));
        assert!(!r.contains_key("dead") && !r.contains_key("gone"));
        // Right after an outage nobody is judged dead yet.
        let r = roles(&members, &t, false);
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn new_mirrors_are_inserted_and_gone_ones_removed() {
        let t = Timing::default();
        let mirrors = HashMap::from([("a".to_string(), ("ns".to_string(), "a".to_string()))]);
        let roles = BTreeMap::from([("m0".to_string(), Role::Eligible)]);
        let c = plan(&mirrors, &roles, &[row("old", "m0", None)], &t);
        assert_eq!(
            c.insert,
            vec![("a".into(), "ns".into(), "a".into(), "m0".into())]
        );
        assert_eq!(c.remove, vec![("old".to_string(), 1)]);
    }

    #[test]
    fn a_dead_owner_is_replaced_directly_a_live_one_drains() {
        let t = Timing::default();
        let mirrors: HashMap<String, (String, String)> = (0..40)
            .map(|i| (format!("u{i}"), ("ns".to_string(), format!("u{i}"))))
            .collect();
        let two = BTreeMap::from([
            ("m0".to_string(), Role::Eligible),
            ("m1".to_string(), Role::Eligible),
        ]);
        // Everything on m0, m1 alive: about half drains to m1.
        let rows: Vec<_> = mirrors.keys().map(|u| row(u, "m0", None)).collect();
        let c = plan(&mirrors, &two, &rows, &t);
        assert!(c.reassign.is_empty());
        assert!(
            c.drain.len() >= 15 && c.drain.iter().all(|m| m.to == "m1" && m.epoch == 1),
            "{:?}",
            c.drain.len()
        );
        // m0 dead: all straight to m1.
        let one = BTreeMap::from([("m1".to_string(), Role::Eligible)]);
        let c = plan(&mirrors, &one, &rows, &t);
        assert_eq!(c.reassign.len(), 40);
        assert!(c.reassign.iter().all(|m| !m.forced));
        assert!(c.drain.is_empty());
    }

    #[test]
    fn a_drain_in_progress_is_left_alone_until_it_goes_stale() {
        let t = Timing::default();
        let mirrors = HashMap::from([("a".to_string(), ("ns".to_string(), "a".to_string()))]);
        let roles = BTreeMap::from([
            ("m0".to_string(), Role::Eligible),
            ("m1".to_string(), Role::Eligible),
        ]);
        let desired = assign::assign(&["a".to_string()], &roles, &HashMap::new())["a"].clone();
        let other = if desired == "m0" { "m1" } else { "m0" };
        let mut r = row("a", other, Some(&desired));
        assert!(plan(&mirrors, &roles, std::slice::from_ref(&r), &t).is_empty());
        r.1 = 1000.0;
        let c = plan(&mirrors, &roles, &[r], &t);
        assert_eq!(c.reassign.len(), 1);
        assert!(c.reassign[0].forced);
    }

    #[test]
    fn the_next_step_comes_when_a_silent_member_turns_dead() {
        let timing = Timing::default(); // TTL 4 s, grace 2 s, leave grace 20 s
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        // A member silent for 5.3 s is dead 0.7 s from now; one that
        // heartbeated 0.5 s ago stops being live in 3.5 s.
        let members = [
            member("live", "active", 0.5, None),
            member("silent", "active", 5.3, None),
        ];
        assert_eq!(ms(next_role_change(&members, &timing)), Some(700));
        // Leaving 19 s ago: gone in 1 s (its heartbeats no longer matter).
        let members = [
            member("live", "active", 0.5, None),
            member("leaving", "leaving", 0.2, Some(19.0)),
        ];
        assert_eq!(ms(next_role_change(&members, &timing)), Some(1000));
        // Nothing left to change: dead long ago.
        assert_eq!(
            next_role_change(&[member("dead", "active", 60.0, None)], &timing),
            None
        );
    }
}
