//! `--leader-elect`: two processes, one replicates; when it dies the other
//! takes over.

use std::time::Duration;

use kube::ResourceExt;

use crate::support::audit::AuditCursor;
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually, unique};

async fn leader_status(op: &Operator, lease: &str) -> Option<f64> {
    op.metric(&format!(
        "leader_election_master_status{{name=\"{lease}\"}}"
    ))
    .await
}

#[tokio::test]
async fn one_leader_replicates_and_a_standby_takes_over_when_it_dies() {
    let s = Scenario::new("leader", 1).await;
    let lease_ns = TestNamespace::create(&s.client, "leader-lease").await;
    let lease = unique("lease");
    let start = |member: &str| {
        Operator::scoped(&[&s.home.name])
            .member(member)
            .arg("--leader-elect")
            .arg(format!("--namespace={}", lease_ns.name))
            .arg(format!("--leader-election-id={lease}"))
            .arg("--lease-duration-seconds=4")
            .start()
    };
    let mut one = start(&unique("one")).await;
    let mut two = start(&unique("two")).await;
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
