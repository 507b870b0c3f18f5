//! `promtool test rules` unit tests of the alert rules: for every alert, a
//! synthetic history that fires it and one that must stay silent. The
//! histories are written here by hand (with the metric-name constants); the
//! expected alerts carry the rules' own labels and annotations, so the file
//! follows a reworded summary, while a changed expression or `for` that no
//! longer fires (or fires too eagerly) on these histories fails the test.

use configmirror::telemetry::names::*;

use crate::alerts::{Rule, rules};

/// One history: input series as (series selector, promtool values), the
/// time it is evaluated at, and whether the alert fires then (with the
/// `$value` its summary shows).
struct Case {
    name: &'static str,
    series: Vec<(String, &'static str)>,
    at: &'static str,
    fires: Option<&'static str>,
}

fn case(name: &'static str, at: &'static str, fires: Option<&'static str>) -> Case {
    Case {
        name,
        series: Vec::new(),
        at,
        fires,
    }
}

impl Case {
    fn series(mut self, selector: impl Into<String>, values: &'static str) -> Self {
        self.series.push((selector.into(), values));
        self
    }
}

/// The firing and the silent history of each alert, by alert name.
fn cases(alert: &str) -> Vec<Case> {
    let pod = |metric: &str, pod: &str| format!("{metric}{{pod=\"{pod}\"}}");
    let lag = |le: &str| format!("{REPLICATION_LAG}_bucket{{le=\"{le}\"}}");
    match alert {
        "ConfigMirrorDatabaseDown" => vec![
            case("down for 8 minutes", "10m", Some("0")).series(pod(DB_UP, "a"), "1 1 0x8"),
            // Silent cases hold the condition for less than the rule's `for`.
            case("down for 3 minutes so far", "10m", None).series(pod(DB_UP, "a"), "1x6 0x4"),
        ],
        "ConfigMirrorRowsNotPersisted" => vec![
            case("3 mirrors behind for 20 minutes", "20m", Some("3"))
                .series(pod(DB_MIRRORS_UNSYNCED, "a"), "3x20"),
            case("3 behind for 9 minutes so far", "20m", None)
                .series(pod(DB_MIRRORS_UNSYNCED, "a"), "0x10 3x10"),
        ],
        "ConfigMirrorReplicaConflicts" => vec![
            case("2 replicas blocked for 40 minutes", "40m", Some("2"))
                .series(pod(REPLICA_CONFLICTS, "a"), "2x40"),
            case("blocked for 19 minutes so far", "20m", None)
                .series(pod(REPLICA_CONFLICTS, "a"), "0 2x19"),
        ],
        "ConfigMirrorReconcileErrors" => vec![
            // 12 a minute: 0.2/s, over the 0.1/s threshold.
            case("0.2 failed reconciles/s", "30m", Some("0.2")).series(
                format!("{RECONCILE_TOTAL}{{pod=\"a\",result=\"kube\"}}"),
                "0+12x30",
            ),
            case("many successes, a failure a minute", "30m", None)
                .series(
                    format!("{RECONCILE_TOTAL}{{pod=\"a\",result=\"success\"}}"),
                    "0+600x30",
                )
                .series(
                    format!("{RECONCILE_TOTAL}{{pod=\"a\",result=\"kube\"}}"),
                    "0+1x30",
                ),
        ],
        "ConfigMirrorNoLeader" => vec![
            case("no replica leads", "10m", Some("0"))
                .series(pod(LEADER_ELECTION_MASTER_STATUS, "a"), "0x10")
                .series(pod(LEADER_ELECTION_MASTER_STATUS, "b"), "0x10"),
            case("one of two leads", "10m", None)
                .series(pod(LEADER_ELECTION_MASTER_STATUS, "a"), "1x10")
                .series(pod(LEADER_ELECTION_MASTER_STATUS, "b"), "0x10"),
        ],
        "ConfigMirrorReplicationLagHigh" => vec![
            // 2 % of replicas 30 to 60 s behind: the p99, not the median.
            case("2 % of replicas 30 to 60 s behind", "30m", Some("45"))
                .series(lag("10"), "0+98x30")
                .series(lag("30"), "0+98x30")
                .series(lag("60"), "0+100x30")
                .series(lag("+Inf"), "0+100x30"),
            case("every replica within 10 s", "30m", None)
                .series(lag("10"), "0+10x30")
                .series(lag("30"), "0+10x30")
                .series(lag("60"), "0+10x30")
                .series(lag("+Inf"), "0+10x30"),
        ],
        "ConfigMirrorOrphanedMirrors" => vec![
            case("5 orphans on the coordinator", "5m", Some("5"))
                .series(pod(SHARD_ORPHANED, "a"), "5x5")
                .series(pod(SHARD_ORPHANED, "b"), "0x5"),
            // A coordinator that lost its Lease sets its gauges back to 0.
            case("a former coordinator's orphans withdrawn", "8m", None)
                .series(pod(SHARD_ORPHANED, "a"), "3 3 0x6")
                .series(pod(SHARD_ORPHANED, "b"), "0x8"),
            case("orphaned for a minute so far", "5m", None)
                .series(pod(SHARD_ORPHANED, "a"), "0x3 5 5"),
        ],
        "ConfigMirrorMemberFenced" => vec![
            case("a member fenced for 5 minutes", "5m", Some("1"))
                .series(pod(MEMBER_FENCED, "a"), "1x5")
                .series(pod(MEMBER_FENCED, "b"), "0x5"),
            case("fenced for a minute so far", "5m", None)
                .series(pod(MEMBER_FENCED, "a"), "0x3 1 1")
                .series(pod(MEMBER_FENCED, "b"), "0x5"),
        ],
        other => panic!("alert {other} has no promtool test cases: add them in alert_tests.rs"),
    }
}

/// An alert's annotations as promtool expects them, `$value` filled in.
fn annotations(rule: &Rule, value: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert(
        "summary".into(),
        rule.summary.replace("{{ $value }}", value).into(),
    );
    if let Some(description) = rule.description {
        out.insert("description".into(), description.into());
    }
    out.into()
}

/// The test file, next to the rule file it loads.
pub(crate) fn yaml() -> String {
    let mut tests = Vec::new();
    for rule in rules() {
        let cases = cases(rule.alert);
        assert!(
            cases.iter().any(|c| c.fires.is_some()) && cases.iter().any(|c| c.fires.is_none()),
            "{}: needs a firing and a silent case",
            rule.alert
        );
        for c in cases {
            let series: Vec<_> = c
                .series
                .iter()
                .map(|(s, v)| serde_json::json!({ "series": s, "values": v }))
                .collect();
            let expected: Vec<_> = c
                .fires
                .map(|value| {
                    serde_json::json!({
                        "exp_labels": { "severity": rule.severity },
                        "exp_annotations": annotations(&rule, value),
                    })
                })
                .into_iter()
                .collect();
            tests.push(serde_json::json!({
                "name": format!("{}: {}", rule.alert, c.name),
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{
                    "eval_time": c.at,
                    "alertname": rule.alert,
                    "exp_alerts": expected,
                }],
            }));
        }
    }
    let file = serde_json::json!({
        "rule_files": ["../configmirror-alerts.yaml"],
        "evaluation_interval": "1m",
        "tests": tests,
    });
    format!(
        "# promtool test rules: each alert fires on one synthetic history and stays\n\
         # silent on another. Generated by deploy/generate from\n\
         # generate/src/alert_tests.rs; do not edit. deploy/check-rules runs it.\n{}",
        serde_yaml::to_string(&file).expect("the tests serialize")
    )
}
