//! A fresh operator, before any event (no mirror anywhere in its scope),
//! already exports every series the dashboard and the alerts read: panels
//! show 0 rather than "No data" on a healthy install, and rates start at
//! the first scrape.

use std::time::Duration;

use super::{exposed, leader_with_database, sample, sharding_only, used_by_dashboard_and_alerts};
use crate::support::db::TestDatabase;
use crate::support::eventually;
use crate::support::scenario::Scenario;
use crate::support::shard::Shards;

/// The series the dashboard and alerts read that `metrics` lacks.
fn missing(metrics: &str, sharded: bool) -> Vec<String> {
    let exposed = exposed(metrics);
    used_by_dashboard_and_alerts()
        .into_iter()
        .filter(|name| sharded || !sharding_only(name))
        .filter(|name| !exposed.contains(name))
        .collect()
}

#[tokio::test]
async fn a_fresh_operator_exports_every_series_the_dashboard_and_alerts_use() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("metricsfresh", 1).await;
    let (leader, _, _lease_ns) = leader_with_database(&s, &db).await;
    let op = leader.start().await;
    // The leader's first database check sets configmirror_database_up.
    let metrics = eventually("leading, the database checked", WAIT, || async {
        let m = op.metrics().await;
        (sample(&m, "configmirror_database_up", &[]) == Some(1.0)
            && sample(&m, "leader_election_master_status", &[]) == Some(1.0))
        .then_some(m)
    })
    .await;
    let missing = missing(&metrics, false);
    assert!(
        missing.is_empty(),
        "not exported at start: {missing:?}\n{metrics}"
    );
    // Nothing happened: every histogram is there with no sample.
    for histogram in [
        "configmirror_replication_lag_seconds",
        "configmirror_reconcile_duration_seconds",
        "configmirror_database_sync_duration_seconds",
    ] {
        let count = sample(&metrics, &format!("{histogram}_count"), &[]);
        assert_eq!(count, Some(0.0), "{histogram}_count\n{metrics}");
    }
    assert_eq!(sample(&metrics, "configmirror_mirrors", &[]), Some(0.0));
    assert_eq!(
        sample(
            &metrics,
            "configmirror_build_info",
            &[&format!("version=\"{}\"", configmirror::VERSION)]
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_fresh_sharded_member_exports_every_series_including_the_shards() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("metricsfreshshard", 1).await;
    let mut shards = Shards::new(&s, &db.url, &[]).await;
    shards.start(&s, "a").await;
    // Coordinating (its first step exports mirrors per member, 0 here).
    let metrics = eventually("coordinating", WAIT, || async {
        let m = shards.get_ref("a").metrics().await;
        sample(&m, "configmirror_shard_mirrors", &["member=\"a\""])
            .is_some()
            .then_some(m)
    })
    .await;
    let missing = missing(&metrics, true);
    assert!(
        missing.is_empty(),
        "not exported at start: {missing:?}\n{metrics}"
    );
    for (series, value) in [
        ("configmirror_shard_orphaned_mirrors", 0.0),
        ("configmirror_shard_owned_mirrors", 0.0),
        ("configmirror_member_fenced", 0.0),
        ("configmirror_shard_handover_duration_seconds_count", 0.0),
    ] {
        assert_eq!(sample(&metrics, series, &[]), Some(value), "{series}");
    }
    assert!(sample(&metrics, "configmirror_coordinator_epoch", &[]).is_some_and(|e| e >= 1.0));
}

const WAIT: Duration = Duration::from_secs(60);
