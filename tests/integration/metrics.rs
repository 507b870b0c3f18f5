//! /metrics, scraped during a replication run, carries every series the
//! dashboard and the alert rules use, with values that make sense.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::db::TestDatabase;
use crate::support::k8s::*;
use crate::support::operator::OperatorBuilder;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually, unique};

mod fresh;

/// Metric names in PromQL expressions: ours, and the reference-compatible ones.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if [
                "configmirror_",
                "rest_client_",
                "leader_election_",
                "process_",
            ]
            .iter()
            .any(|p| word.starts_with(p))
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Series only a sharded member exposes; the sharding tests check them.
pub fn sharding_only(name: &str) -> bool {
    [
        "configmirror_shard_",
        "configmirror_member_",
        "configmirror_coordinator_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Every series name in the exposition text.
pub fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(String::from))
        .collect()
}

pub fn used_by_dashboard_and_alerts() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/configmirror-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/prometheus/configmirror-alerts.yaml")).unwrap(),
    )
    .unwrap();
    for group in alerts["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    let names = metric_names(&exprs.join("\n"));
    assert!(names.len() > 15, "too few metric names found: {names:?}");
    names
}

/// The value of the first sample of `name` whose labels contain all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let matches = series == name || series.starts_with(&format!("{name}{{"));
            (matches && labels.iter().all(|want| series.contains(want)))
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// An operator on its own database, electing itself leader through a Lease
/// (named as returned) in a namespace of its own, which lives as long as
/// the returned handle.
async fn leader_with_database(
    s: &Scenario,
    db: &TestDatabase,
) -> (OperatorBuilder, String, TestNamespace) {
    let lease_ns = TestNamespace::create(&s.client, "metrics-lease").await;
    let lease = unique("lease");
    let builder = s
        .operator()
        .database(&db.url)
        .arg("--leader-elect")
        .arg(format!("--namespace={}", lease_ns.name))
        .arg(format!("--leader-election-id={lease}"));
    (builder, lease, lease_ns)
}

#[tokio::test]
async fn metrics_cover_the_dashboard_and_alerts_with_sane_values() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("metrics", 2).await;
    let (leader, lease, _lease_ns) = leader_with_database(&s, &db).await;
    let op = leader
        .arg("--revision-max-per-configmap=1")
        .arg("--revision-prune-interval-seconds=1")
        .start()
        .await;
    s.selected_source("a", &[("k", "1")]).await;
    let uid = s.mirror_selected("m").await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "a", "replica", |c| {
            is_replica(c, &uid, &[("k", "1")])
        })
        .await;
    }
    patch_cm(
        &s.client,
        &s.source.name,
        "a",
        serde_json::json!({"data": {"k": "2"}}),
    )
    .await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "a", "updated", |c| {
            is_replica(c, &uid, &[("k", "2")])
        })
        .await;
    }
    wait_status(&s.client, &s.home.name, "m", "persisted", |st| {
        condition(st, "DatabaseSynced").is_some_and(|c| c.status == "True")
    })
    .await;

    let metrics = eventually("a pruning pass and a database check", WAIT, || async {
        let m = op.metrics().await;
        (sample(&m, "configmirror_database_revisions_pruned_total", &[]).unwrap_or(0.0) >= 1.0
            && sample(&m, "configmirror_database_up", &[]) == Some(1.0)
            && sample(&m, "configmirror_mirrors", &[]) == Some(1.0)
            // The update's reconcile counts once its status and rows are
            // written, after the replicas the test waited for.
            && sample(&m, "configmirror_reconcile_total", &["result=\"success\""]).unwrap_or(0.0) >= 2.0)
        .then_some(m)
    })
    .await;
    let exposed = exposed(&metrics);
    let missing: Vec<String> = used_by_dashboard_and_alerts()
        .into_iter()
        .filter(|name| !sharding_only(name) && !exposed.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or alerts but not exposed: {missing:?}"
    );

    let value = |name: &str, labels: &[&str]| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    assert_eq!(
        value(
            "configmirror_replica_writes_total",
            &["op=\"create\"", "result=\"success\""]
        ),
        2.0
    );
    assert_eq!(
        value(
            "configmirror_replica_writes_total",
            &["op=\"update\"", "result=\"success\""]
        ),
        2.0
    );
    assert_eq!(
        value(
            "leader_election_master_status",
            &[&format!("name=\"{lease}\"")]
        ),
        1.0
    );
    assert_eq!(value("configmirror_mirrors", &[]), 1.0);
    assert_eq!(value("configmirror_mirrors_ready", &[]), 1.0);
    assert_eq!(value("configmirror_replica_conflicts", &[]), 0.0);
    assert_eq!(
        value(
            "configmirror_database_rows_written_total",
            &["op=\"created\""]
        ),
        1.0
    );
    assert_eq!(
        value(
            "configmirror_database_rows_written_total",
            &["op=\"updated\""]
        ),
        1.0
    );
    assert!(value("configmirror_replication_lag_seconds_count", &[]) >= 4.0);
    assert!(value("configmirror_replication_lag_seconds_sum", &[]) < 60.0);
    assert!(value("configmirror_reconcile_total", &["result=\"success\""]) >= 2.0);
    assert!(
        value(
            "rest_client_requests_total",
            &["code=\"201\"", "method=\"POST\""]
        ) >= 2.0
    );
    let rss = value("process_resident_memory_bytes", &[]);
    assert!(rss > 1e6 && rss < 1e9, "resident memory {rss}");
}
