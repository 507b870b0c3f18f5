//! Memory follows what a mirror selects, not the size of what it writes:
//! a 1 MiB source fanned out to 500 namespaces, then a restart, stays far
//! below the chart's 512 MiB limit. And a value JSONB cannot hold (U+0000 in
//! an annotation) costs nothing to the other rows of the mirror.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use crate::support::audit::{AuditCursor, summary};
use crate::support::db::{TestDatabase, rows};
use crate::support::eventually;
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;

const TARGETS: usize = 500;
/// The peak resident set the operator may reach (the chart limits it to 512 MiB).
const PEAK_RSS_LIMIT_KIB: u64 = 200 * 1024;
/// 500 writes of 1 MiB on 2 cores, next to the rest of the suite.
const FAN_OUT_WAIT: Duration = Duration::from_secs(600);

/// `VmHWM` (the peak resident set so far) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// About 1 MiB of text (the ConfigMap limit is 1 MiB for data and
/// binaryData together).
fn one_mebibyte() -> String {
    (0..1_040_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

#[tokio::test]
async fn a_one_mebibyte_source_fanned_out_to_500_namespaces_and_a_restart_stay_small() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("memory", TARGETS).await;
    let mut cm = configmap("big", &[("replicate", "true")], &[]);
    cm.data = Some(BTreeMap::from([("big.txt".to_string(), one_mebibyte())]));
    create_cm(&s.client, &s.source.name, &cm).await;

    let mut op = s.operator().database(&db.url).start().await;
    s.mirror_selected("m").await;
    eventually("500 replicas in sync", FAN_OUT_WAIT, || async {
        let st = get_mirror(&s.client, &s.home.name, "m").await?.status?;
        (st.replicas == TARGETS as i32).then_some(())
    })
    .await;
    let pool = db.pool().await;
    eventually("the source's row", WAIT, || async {
        (rows(&pool, &s.home.name, "m").await.len() == 1).then_some(())
    })
    .await;
    let fan_out_peak = peak_rss_kib(op.pid());
    eprintln!("peak RSS during the fan-out: {} MiB", fan_out_peak / 1024);
    for result in ["in_sync", "drifted", "gone"] {
        let series = format!("configmirror_replica_content_reads_total{{result=\"{result}\"}}");
        eprintln!("{series} {:?}", op.metric(&series).await);
    }

    op.terminate().await;
    let audit = AuditCursor::now();
    let again = Operator::scoped(&[&s.home.name])
        .database(&db.url)
        .no_wait()
        .start()
        .await;
    // Listing 500 replicas must not take long; with their content it did.
    again.wait_ready(Duration::from_secs(300)).await;
    again.wait_reconciled(WAIT).await;
    // Time for anything a restart might (wrongly) rewrite to show.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let restart_peak = peak_rss_kib(again.pid());
    eprintln!("peak RSS after the restart: {} MiB", restart_peak / 1024);

    let targets = s.target_names();
    let writes: Vec<_> = audit
        .operator_writes(&again.agent(), &targets)
        .into_iter()
        .filter(|e| e.object_ref.resource == "configmaps")
        .collect();
    assert!(
        writes.is_empty(),
        "the restart rewrote replicas: {}",
        summary(&writes)
    );
    assert!(
        fan_out_peak < PEAK_RSS_LIMIT_KIB,
        "peak RSS during the fan-out: {} MiB",
        fan_out_peak / 1024
    );
    assert!(
        restart_peak < PEAK_RSS_LIMIT_KIB,
        "peak RSS after the restart: {} MiB",
        restart_peak / 1024
    );
}

#[tokio::test]
async fn a_nul_in_one_sources_annotation_keeps_that_row_and_writes_every_other() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let s = Scenario::new("nulnote", 1).await;
    let _op = s.operator().database(&db.url).start().await;
    let mut odd = configmap("odd", &[("replicate", "true")], &[("k", "odd")]);
    odd.metadata.annotations = Some(labels(&[("note", "before\0after"), ("plain", "ok")]));
    create_cm(&s.client, &s.source.name, &odd).await;
    for name in ["a", "b"] {
        s.selected_source(name, &[("k", name)]).await;
    }
    s.mirror_selected("m").await;

    let stored = eventually("all three rows", WAIT, || async {
        let found = rows(&pool, &s.home.name, "m").await;
        (found.len() == 3).then_some(found)
    })
    .await;
    for row in &stored {
        assert_eq!(row.data, labels(&[("k", &row.name)]), "{}", row.name);
    }
    let odd_row = stored.iter().find(|r| r.name == "odd").unwrap();
    assert_eq!(
        odd_row.annotations,
        serde_json::json!({"plain": "ok"}),
        "the value JSONB cannot hold is not in annotations"
    );
    assert_eq!(
        odd_row.annotations_in_binary["note"], b"before\0after",
        "kept byte-exact"
    );
    assert!(
        stored
            .iter()
            .filter(|r| r.name != "odd")
            .all(|r| r.annotations_in_binary.is_empty())
    );
    let st = wait_status(&s.client, &s.home.name, "m", "DatabaseSynced", |st| {
        condition(st, "DatabaseSynced").is_some_and(|c| c.status == "True")
    })
    .await;
    let synced = condition(&st, "DatabaseSynced").unwrap();
    assert_eq!(synced.reason, "Synced");
    assert!(
        synced.message.contains("3 rows"),
        "the condition says what was written: {}",
        synced.message
    );
    let t = s.target_names()[0];
    for name in ["odd", "a", "b"] {
        let replica = wait_cm(&s.client, t, name, "replica", |_| true).await;
        assert_eq!(replica.annotations().get("note"), None, "not copied");
    }

    // A change of that very value is one more revision, like any other.
    patch_cm(
        &s.client,
        &s.source.name,
        "odd",
        serde_json::json!({"metadata": {"annotations": {"note": "\0 again"}}}),
    )
    .await;
    eventually("the new value in its row", WAIT, || async {
        let found = rows(&pool, &s.home.name, "m").await;
        let odd = found.iter().find(|r| r.name == "odd")?;
        (odd.annotations_in_binary.get("note")? == b"\0 again").then_some(())
    })
    .await;
    let ops = crate::support::db::revisions(&pool, &s.home.name, "m").await;
    let odd_ops: Vec<&str> = ops
        .iter()
        .filter(|(n, _)| n == "odd")
        .map(|(_, o)| o.as_str())
        .collect();
    assert_eq!(odd_ops, ["created", "updated"], "{ops:?}");
}
