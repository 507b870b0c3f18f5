//! Several operator processes split the mirrors between them, survive
//! joins, leaves, crashes, a deposed coordinator and a database outage, and
//! never let two members' writes for one mirror interleave. `fencing`: a
//! member that lost its lease or its mirror writes nothing more.

mod fencing;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::support::audit::AuditCursor;
use crate::support::db::TestDatabase;
use crate::support::eventually;
use crate::support::k8s::*;
use crate::support::postgres::PrivatePostgres;
use crate::support::scenario::Scenario;
use crate::support::shard::{
    Shards, Writes, assert_writes_within_ownership, loads, mirrors, numbered_mirror, replicated,
};

pub(super) const SETTLE: Duration = Duration::from_secs(60);

fn cap(m: usize, n: usize) -> usize {
    (1.05 * m as f64 / n as f64).ceil() as usize
}

fn move_bound(m: usize, n_new: usize) -> usize {
    m.div_ceil(n_new) + (0.02 * m as f64).ceil() as usize
}

fn moved(before: &HashMap<String, String>, after: &HashMap<String, String>) -> usize {
    after
        .iter()
        .filter(|(u, m)| before.get(*u).is_some_and(|b| b != *m))
        .count()
}

pub(super) async fn bump_sources(s: &Scenario, n: usize, v: &str) {
    for i in 0..n {
        patch_cm(
            &s.client,
            &s.source.name,
            &format!("m{i:04}"),
            serde_json::json!({"data": {"v": v}}),
        )
        .await;
    }
}

#[tokio::test]
async fn three_members_split_300_mirrors_within_the_cap() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("shard300", 1).await;
    let mut shards = Shards::new(&s, &db.url, &[]).await;
    for name in ["a", "b", "c"] {
        shards.start(&s, name).await;
    }
    let uids = mirrors(&s, 300).await;
    let owners = shards.settled(&uids, &["a", "b", "c"], SETTLE).await;
    let load = loads(&owners);
    assert_eq!(load.values().sum::<usize>(), 300);
    assert!(load.values().all(|l| *l <= cap(300, 3)), "{load:?}");
    replicated(&s, 300, "1", Duration::from_secs(120)).await;
    // Each mirror says who reconciles it, with the assignment's epoch.
    let assignments = shards.assignments().await;
    for i in [0, 150, 299] {
        let name = format!("m{i:04}");
        let uid = &uids[i];
        let st = wait_status(&s.client, &s.home.name, &name, "shard in status", |st| {
            st.shard
                .as_ref()
                .is_some_and(|sh| sh.member == assignments[uid].0)
        })
        .await;
        assert_eq!(st.shard.unwrap().epoch, assignments[uid].2);
    }
}

#[tokio::test]
async fn joins_leaves_crashes_and_a_coordinator_kill_move_only_what_must_and_never_interleave() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("shardmove", 1).await;
    let mut shards = Shards::new(&s, &db.url, &["--leave-grace-seconds=6"]).await;
    for name in ["a", "b", "c"] {
        shards.start(&s, name).await;
    }
    let m = 120;
    let audit = AuditCursor::now();
    let uids = mirrors(&s, m).await;
    let mut owners = shards.settled(&uids, &["a", "b", "c"], SETTLE).await;
    replicated(&s, m, "1", Duration::from_secs(90)).await;

    // A fourth joins.
    shards.start(&s, "d").await;
    let after = shards.settled(&uids, &["a", "b", "c", "d"], SETTLE).await;
    let n = moved(&owners, &after);
    assert!(n <= move_bound(m, 4), "join moved {n}");
    assert!(
        loads(&after).values().all(|l| *l <= cap(m, 4)),
        "{:?}",
        loads(&after)
    );
    owners = after;
    bump_sources(&s, m, "2").await;
    replicated(&s, m, "2", Duration::from_secs(90)).await;

    // One leaves for good (SIGTERM): its mirrors are held for the leave grace, then move.
    let left_at = Instant::now();
    shards.get("b").terminate().await;
    let after = shards.settled(&uids, &["a", "c", "d"], SETTLE).await;
    assert!(
        left_at.elapsed() >= Duration::from_secs(5),
        "mirrors moved before the leave grace"
    );
    let n = moved(&owners, &after);
    assert!(n <= move_bound(m, 3), "leave moved {n}");
    owners = after;
    bump_sources(&s, m, "3").await;
    replicated(&s, m, "3", Duration::from_secs(90)).await;

    // The coordinator is killed (kill -9): another takes over, epoch bumps.
    let (epoch, coordinator) = shards.coordinator().await;
    let killed = Instant::now();
    shards.get(&coordinator).kill();
    let live: Vec<&str> = ["a", "c", "d"]
        .into_iter()
        .filter(|x| *x != coordinator)
        .collect();
    let after = shards.settled(&uids, &live, SETTLE).await;
    // Measured (the goal is under 10 s): TTL 4 s + grace 2 s + a new
    // coordinator's Lease and first round.
    eprintln!(
        "measured: coordinator kill -9 -> its mirrors owned by the others {:.2}s",
        killed.elapsed().as_secs_f64()
    );
    let (epoch2, coordinator2) = shards.coordinator().await;
    assert!(epoch2 > epoch && coordinator2 != coordinator);
    let n = moved(&owners, &after);
    assert!(n <= move_bound(m, 2), "crash moved {n}");
    bump_sources(&s, m, "4").await;
    replicated(&s, m, "4", Duration::from_secs(90)).await;

    // No write was accepted from a member for a mirror it did not own at
    // that moment: every replica write by member X on mirror M's replicas
    // happened while X owned M (by the history's times).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = Writes {
        uids: &uids,
        targets: &s.target_names(),
        home: &s.home.name,
        owned_since: None,
    };
    let checked = assert_writes_within_ownership(&audit.events(), &shards.pool, &writes).await;
    assert!(
        checked >= m * 4,
        "too few replica writes checked: {checked}"
    );

    // Acquired mirrors' replicas were loaded in batches, and never failed to.
    assert!(
        live.iter().any(|n| shards
            .get_ref(n)
            .logged_contains("loaded the acquired mirrors' replicas")),
        "no member batch-loaded the replicas of acquired mirrors"
    );
    for name in &live {
        assert!(
            !shards
                .get_ref(name)
                .logged_contains("loading acquired mirrors' replicas failed")
        );
    }

    // The sharding series the dashboard and alerts use, with sane values.
    let mut exposed = BTreeSet::new();
    let mut owned = 0.0;
    for name in &live {
        let text = shards.get_ref(name).metrics().await;
        exposed.extend(crate::metrics::exposed(&text));
        owned += sample(&text, "configmirror_shard_owned_mirrors").unwrap_or(0.0);
        // Measured, not asserted (the machine is shared with the whole
        // suite): how close heartbeats came to the fence (TTL - margin = 3 s).
        eprintln!("heartbeats of {name}: {}", heartbeat_summary(&text));
    }
    let missing: Vec<String> = crate::metrics::used_by_dashboard_and_alerts()
        .into_iter()
        .filter(|n| crate::metrics::sharding_only(n) && !exposed.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "sharding series not exposed: {missing:?}"
    );
    assert_eq!(owned, m as f64, "owned mirrors across members");
    let coordinator = shards.get_ref(&coordinator2);
    assert_eq!(
        coordinator
            .metric("configmirror_shard_orphaned_mirrors")
            .await,
        Some(0.0)
    );
    assert_eq!(
        coordinator.metric("configmirror_coordinator_epoch").await,
        Some(epoch2 as f64)
    );
}

/// Heartbeat round trips from a member's histogram: how many, the slowest
/// bucket reached, and how many took over half a second.
fn heartbeat_summary(metrics: &str) -> String {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            l.strip_prefix("configmirror_member_heartbeat_duration_seconds_bucket{le=\"")
        })
        .filter_map(|l| {
            let (le, n) = l.split_once("\"}")?;
            Some((le.parse().ok()?, n.trim().parse().ok()?))
        })
        .collect();
    let count = sample(
        metrics,
        "configmirror_member_heartbeat_duration_seconds_count",
    )
    .unwrap_or(0.0);
    let slowest = buckets.iter().find(|(_, n)| *n >= count).map(|(le, _)| *le);
    let over_half = count
        - buckets
            .iter()
            .find(|(le, _)| *le == 0.5)
            .map_or(0.0, |(_, n)| *n);
    let fences = sample(metrics, "configmirror_member_fences_total").unwrap_or(0.0);
    let gap = sample(metrics, "configmirror_member_heartbeat_max_gap_seconds").unwrap_or(0.0);
    format!(
        "{count} heartbeats, all within {slowest:?} s, {over_half} over 0.5 s, longest gap {gap:.2} s, {fences} fences"
    )
}

/// The value of an unlabelled series.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn a_deposed_coordinator_writes_nothing_and_a_third_takes_over() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("shardcoord", 1).await;
    let mut shards = Shards::new(&s, &db.url, &["--coordinator-lease-seconds=3"]).await;
    for name in ["a", "b", "c"] {
        shards.start(&s, name).await;
    }
    let uids = mirrors(&s, 30).await;
    shards.settled(&uids, &["a", "b", "c"], SETTLE).await;
    let (epoch, old) = shards.coordinator().await;

    // Frozen past its Lease: someone else takes the Lease and a new epoch.
    shards.get_ref(&old).signal("-STOP");
    let (epoch2, new) = eventually("a new coordinator", Duration::from_secs(30), || async {
        let (e, h) = shards.coordinator().await;
        (e > epoch && h != old).then_some((e, h))
    })
    .await;
    shards.get_ref(&old).signal("-CONT");
    // It tries its coordinator write and PostgreSQL refuses it.
    let refused = eventually(
        "the old coordinator's write refused",
        Duration::from_secs(30),
        || async {
            shards
                .get_ref(&old)
                .metric("configmirror_coordinator_writes_refused_total")
                .await
                .filter(|n| *n >= 1.0)
        },
    )
    .await;
    assert!(refused >= 1.0);
    assert!(
        shards
            .get_ref(&old)
            .logged_contains("coordinator write refused")
    );
    // It lost the Lease: its coordinator gauges read 0, so the orphans
    // alert and the per-member panel see only the new coordinator's.
    eventually(
        "the old coordinator's gauges back at 0",
        Duration::from_secs(30),
        || async {
            let metrics = shards.get_ref(&old).metrics().await;
            let series: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("configmirror_shard_mirrors{")
                        || l.starts_with("configmirror_shard_orphaned_mirrors ")
                        || l.starts_with("configmirror_coordinator_epoch ")
                })
                .collect();
            // Orphans, epoch, and one per member it had assigned.
            (series.len() >= 5 && series.iter().all(|l| l.ends_with(" 0"))).then_some(())
        },
    )
    .await;
    assert_eq!(
        shards
            .get_ref(&new)
            .metric("configmirror_coordinator_epoch ")
            .await,
        Some(epoch2 as f64)
    );
    let (epoch_now, holder_now) = shards.coordinator().await;
    assert_eq!(
        (epoch_now, holder_now.as_str()),
        (epoch2, new.as_str()),
        "the deposed coordinator changed the epoch row"
    );
    let stale_writes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM assignment_history WHERE coordinator_epoch < $1 \
         AND recorded_at > (SELECT acquired_at FROM coordinator_epochs WHERE id = 1)",
    )
    .bind(epoch2)
    .fetch_one(&shards.pool)
    .await
    .unwrap();
    assert_eq!(
        stale_writes, 0,
        "a write under the stale epoch was accepted"
    );

    // Kill the new coordinator: a third member takes over.
    shards.get(&new).kill();
    let (epoch3, third) = eventually("a third coordinator", Duration::from_secs(30), || async {
        let (e, h) = shards.coordinator().await;
        (e > epoch2).then_some((e, h))
    })
    .await;
    assert!(epoch3 > epoch2 && third != new);
    let live: Vec<&str> = ["a", "b", "c"].into_iter().filter(|x| *x != new).collect();
    shards.settled(&uids, &live, SETTLE).await;
}

#[tokio::test]
async fn a_long_database_outage_fences_members_and_they_recover_alone() {
    let pg = PrivatePostgres::start();
    let s = Scenario::new("shardoutage", 1).await;
    let mut shards = Shards::new(&s, &pg.url(), &[]).await;
    for name in ["a", "b"] {
        shards.start(&s, name).await;
    }
    let uids = mirrors(&s, 20).await;
    shards.settled(&uids, &["a", "b"], SETTLE).await;
    replicated(&s, 20, "1", Duration::from_secs(60)).await;

    pg.stop_server();
    // Past the TTL: both fence themselves, turn not ready, and write nothing.
    eventually("members fenced", Duration::from_secs(20), || async {
        for name in ["a", "b"] {
            let op = shards.get_ref(name);
            if op.ready().await || op.metric("configmirror_member_fenced").await != Some(1.0) {
                return None;
            }
        }
        Some(())
    })
    .await;
    bump_sources(&s, 20, "2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = s.target_names()[0];
    let paused = get_cm(&s.client, t, "m0000").await.unwrap();
    assert_eq!(
        data_of(&paused).get("v").map(String::as_str),
        Some("1"),
        "a fenced member wrote"
    );

    pg.start_server();
    replicated(&s, 20, "2", Duration::from_secs(60)).await;
    for name in ["a", "b"] {
        shards
            .get_ref(name)
            .wait_ready(Duration::from_secs(30))
            .await;
    }
}

#[tokio::test]
async fn a_rolling_restart_moves_no_mirror() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("shardroll", 1).await;
    // A grace no restart comes near, even on a loaded machine: the test is
    // of what a restart inside the grace moves, not of the grace's length.
    let mut shards = Shards::new(&s, &db.url, &["--leave-grace-seconds=120"]).await;
    for name in ["a", "b", "c"] {
        shards.start(&s, name).await;
    }
    let uids = mirrors(&s, 45).await;
    let before = shards.settled(&uids, &["a", "b", "c"], SETTLE).await;
    let history_before = shards.history().await.len();
    for name in ["a", "b", "c"] {
        shards.get(name).terminate().await;
        shards.start(&s, name).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = shards.settled(&uids, &["a", "b", "c"], SETTLE).await;
    assert_eq!(moved(&before, &after), 0, "a rolling restart moved mirrors");
    assert_eq!(
        shards.history().await.len(),
        history_before,
        "assignments changed during the restart"
    );
    bump_sources(&s, 45, "2").await;
    replicated(&s, 45, "2", Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_mirror_created_while_membership_changes_is_reconciled() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("shardnew", 1).await;
    let mut shards = Shards::new(&s, &db.url, &[]).await;
    for name in ["a", "b"] {
        shards.start(&s, name).await;
    }
    let first = mirrors(&s, 10).await;
    shards.settled(&first, &["a", "b"], SETTLE).await;
    // Membership changes (one joins, one crashes) while mirrors arrive.
    let joining = shards.start(&s, "c");
    let late = async {
        let mut uids = Vec::new();
        for i in 10..20 {
            uids.push(kube::ResourceExt::uid(&numbered_mirror(&s, i, None).await).unwrap());
        }
        uids
    };
    let ((), _late) = tokio::join!(joining, late);
    shards.get("a").kill();
    replicated(&s, 20, "1", Duration::from_secs(60)).await;
    let uids: Vec<String> = shards.assignments().await.into_keys().collect();
    shards.settled(&uids, &["b", "c"], SETTLE).await;
    let all: BTreeMap<_, _> = shards.assignments().await.into_iter().collect();
    assert_eq!(all.len(), 20);
    assert!(
        all.values().all(|(m, _, _)| m != "a"),
        "a dead member still owns mirrors"
    );
}
