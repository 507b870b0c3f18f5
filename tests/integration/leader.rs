//! `--leader-elect`: two processes, one replicates; when it dies the other
//! takes over.

use std::time::Duration;

use kube::ResourceExt;

use crate::support::audit::AuditCursor;
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually, unique, wall_now};

/// How soon after a frozen process resumes the requests it had already
/// sent into its HTTP connection when it froze reach the API server.
pub const IN_THE_PIPE: f64 = 0.5;

async fn leader_status(op: &Operator, lease: &str) -> Option<f64> {
    op.metric(&format!(
        "leader_election_master_status{{name=\"{lease}\"}}"
    ))
    .await
}

/// Two operators campaigning for one fresh Lease (4 s) in a namespace of
/// their own: (that namespace, the Lease's name, the two).
async fn two_candidates(s: &Scenario) -> (TestNamespace, String, Operator, Operator) {
    let lease_ns = TestNamespace::create(&s.client, "leader-lease").await;
    let lease = unique("lease");
    let start = |member: String| {
        Operator::scoped(&[&s.home.name])
            .member(&member)
            .arg("--leader-elect")
            .arg(format!("--namespace={}", lease_ns.name))
            .arg(format!("--leader-election-id={lease}"))
            .arg("--lease-duration-seconds=4")
            .start()
    };
    let one = start(unique("one")).await;
    let two = start(unique("two")).await;
    (lease_ns, lease, one, two)
}

#[tokio::test]
async fn one_leader_replicates_and_a_standby_takes_over_when_it_dies() {
    let s = Scenario::new("leader", 1).await;
    let (_lease_ns, lease, mut one, mut two) = two_candidates(&s).await;
    // Both become ready: a standby is doing what it should.
    eventually("both to be ready", Duration::from_secs(30), || async {
        (one.ready().await && two.ready().await).then_some(())
    })
    .await;

    let (leader_is_one, _) = eventually("exactly one leader", Duration::from_secs(30), || async {
        match (
            leader_status(&one, &lease).await,
            leader_status(&two, &lease).await,
        ) {
            (Some(a), Some(b)) if a + b == 1.0 => Some((a == 1.0, ())),
            _ => None,
        }
    })
    .await;
    let (leader, standby) = if leader_is_one {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };

    let t = s.target_names()[0];
    let audit = AuditCursor::now();
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("cfg", &[], &[("k", "v1")]),
    )
    .await;
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        "m",
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    let uid = mirror.uid().unwrap();
    wait_cm(&s.client, t, "cfg", "replica from the leader", |c| {
        is_replica(c, &uid, &[("k", "v1")])
    })
    .await;
    assert!(
        !audit
            .operator_writes(&leader.agent(), &s.namespaces())
            .is_empty()
    );
    assert!(
        audit
            .operator_writes(&standby.agent(), &s.namespaces())
            .is_empty(),
        "the standby wrote"
    );

    // The leader dies without releasing its Lease.
    leader.kill();
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"data": {"k": "v2"}}),
    )
    .await;
    wait_cm(&s.client, t, "cfg", "update from the new leader", |c| {
        is_replica(c, &uid, &[("k", "v2")])
    })
    .await;
    assert_eq!(leader_status(standby, &lease).await, Some(1.0));
    let takeover = audit.operator_writes(&standby.agent(), &[t]);
    assert!(
        takeover.iter().any(|e| e.verb == "update"),
        "the standby did not take over"
    );
    assert_eq!(
        get_mirror(&s.client, &s.home.name, "m")
            .await
            .unwrap()
            .uid(),
        Some(uid)
    );
}

/// A leader frozen (SIGSTOP) past its Lease while it replicates wakes up
/// after its renew deadline: it sends no write at all, and exits once it
/// sees the standby holds the Lease (fail-stop). Its in-flight reconciles
/// and the source changes queued while it slept are what would write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let s = Scenario::new("leaderstop", 3).await;
    let (_lease_ns, lease, mut one, mut two) = two_candidates(&s).await;
    let leader_is_one = eventually("a leader", Duration::from_secs(30), || async {
        match (
            leader_status(&one, &lease).await,
            leader_status(&two, &lease).await,
        ) {
            (Some(a), Some(b)) if a + b == 1.0 => Some(a == 1.0),
            _ => None,
        }
    })
    .await;
    let (leader, standby) = if leader_is_one {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };
    let sources = 10;
    for i in 0..sources {
        s.selected_source(&format!("cfg{i}"), &[("v", "0")]).await;
    }
    s.mirror_selected("m").await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "cfg9", "replicas from the leader", |c| {
            data_of(c).get("v").map(String::as_str) == Some("0")
        })
        .await;
    }

    // Sources change all along, so the leader is reconciling when frozen
    // and has changes queued when it wakes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, client, source) = (stop.clone(), s.client.clone(), s.source.name.clone());
        tokio::spawn(async move {
            let mut v = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                v += 1;
                for i in 0..sources {
                    let patch = serde_json::json!({"data": {"v": v.to_string()}});
                    patch_cm(&client, &source, &format!("cfg{i}"), patch).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            v
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let audit = AuditCursor::now();
    leader.signal("-STOP");
    eventually("the standby to lead", Duration::from_secs(30), || async {
        (leader_status(standby, &lease).await == Some(1.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woke_at = wall_now();
    leader.signal("-CONT");
    let exit_by = std::time::Instant::now() + Duration::from_secs(30);
    while leader.is_running() {
        assert!(
            std::time::Instant::now() < exit_by,
            "the old leader did not exit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = churn.await.unwrap();

    // A request already past the last check, on its way into the socket,
    // when the process froze goes out when it resumes; it arrives at once.
    // Anything later was decided after waking, past the Lease.
    let late: Vec<_> = audit
        .attempted_writes(&leader.agent(), &s.namespaces())
        .into_iter()
        .filter(|e| e.request_received_timestamp.unwrap_or(f64::MAX) > woke_at + IN_THE_PIPE)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after waking past its Lease: {}",
        crate::support::audit::summary(&late)
    );
    assert!(
        leader.logged_contains("lost the leader Lease"),
        "the old leader did not stop for losing its Lease"
    );
    // The standby carries on.
    for t in s.target_names() {
        wait_cm(&s.client, t, "cfg9", "replicas from the new leader", |c| {
            data_of(c).get("v") == Some(&last.to_string())
        })
        .await;
    }
}
