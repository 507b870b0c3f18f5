//! The operator never overwrites, adopts or deletes a ConfigMap it does not
//! own; it says so instead.

use std::time::Duration;

use configmirror::api::keys;
use kube::ResourceExt;

use crate::support::audit::{AuditCursor, summary};
use crate::support::eventually;
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;

#[tokio::test]
async fn an_unowned_configmap_is_never_touched_and_other_targets_proceed() {
    let s = Scenario::new("unowned", 2).await;
    let op = s.operator().start().await;
    let [taken, free] = [s.target_names()[0], s.target_names()[1]];
    let theirs = create_cm(
        &s.client,
        taken,
        &configmap("cfg", &[("owner", "someone")], &[("theirs", "1")]),
    )
    .await;
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("cfg", &[], &[("k", "v")]),
    )
    .await;
    let audit = AuditCursor::now();
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        "m",
        mirror_spec(&s.source.name, &[taken, free], None),
    )
    .await;
    let uid = mirror.uid().unwrap();

    wait_cm(&s.client, free, "cfg", "replica in the free target", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    let st = wait_status(&s.client, &s.home.name, "m", "conflict", |st| {
        st.conflicts == 1
    })
    .await;
    assert_eq!(ready_reason(&st), Some(("False".into(), "Conflict".into())));
    let c = condition(&st, "Conflict").unwrap();
    assert_eq!(c.status, "True");
    let problem = st.problems.iter().find(|p| p.reason == "Conflict").unwrap();
    assert_eq!(
        (problem.namespace.as_str(), problem.name.as_str()),
        (taken, "cfg")
    );
    assert!(
        problem.message.contains("not managed by ConfigMirror"),
        "{}",
        problem.message
    );
    eventually("a ReplicaConflict event", WAIT, || async {
        (!events_for(&s.client, &s.home.name, "m", "ReplicaConflict")
            .await
            .is_empty())
        .then_some(())
    })
    .await;

    // Deleting the mirror leaves it alone too.
    delete_mirror(&s.client, &s.home.name, "m").await;
    wait_mirror_gone(&s.client, &s.home.name, "m").await;
    let after = get_cm(&s.client, taken, "cfg")
        .await
        .expect("the unowned ConfigMap survives");
    assert_eq!(
        after.resource_version(),
        theirs.resource_version(),
        "it was modified"
    );
    let writes: Vec<_> = audit
        .operator_writes(&op.agent(), &[taken])
        .into_iter()
        .filter(|e| e.verb != "create")
        .collect();
    assert!(
        writes.is_empty(),
        "writes on the unowned ConfigMap: {}",
        summary(&writes)
    );
}

#[tokio::test]
async fn the_first_mirror_keeps_a_contested_replica_and_nothing_flaps() {
    let s = Scenario::new("contested", 1).await;
    let op = s.operator().start().await;
    let t = s.target_names()[0];
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("cfg", &[], &[("k", "v")]),
    )
    .await;
    let first = create_mirror(
        &s.client,
        &s.home.name,
        "first",
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    let first_uid = first.uid().unwrap();
    let replica = wait_cm(&s.client, t, "cfg", "first's replica", |c| {
        is_replica(c, &first_uid, &[("k", "v")])
    })
    .await;
    wait_status(&s.client, &s.home.name, "first", "Ready", |st| {
        st.replicas == 1
    })
    .await;

    let audit = AuditCursor::now();
    create_mirror(
        &s.client,
        &s.home.name,
        "second",
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    let st = wait_status(&s.client, &s.home.name, "second", "conflict", |st| {
        st.conflicts == 1
    })
    .await;
    assert!(
        st.problems[0]
            .message
            .contains(&format!("{}/first", s.home.name)),
        "{}",
        st.problems[0].message
    );
    // Let it run: the replica must not flap between owners.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let now = get_cm(&s.client, t, "cfg").await.unwrap();
    assert_eq!(
        now.resource_version(),
        replica.resource_version(),
        "the contested replica was rewritten"
    );
    let replica_writes: Vec<_> = audit
        .operator_writes(&op.agent(), &[t])
        .into_iter()
        .collect();
    assert!(replica_writes.is_empty(), "{}", summary(&replica_writes));
    let status_writes = audit
        .operator_writes(&op.agent(), &[&s.home.name])
        .into_iter()
        .filter(|e| e.object_ref.name == "second" && e.object_ref.subresource == "status")
        .count();
    assert!(
        status_writes <= 2,
        "the second mirror's status churns: {status_writes} writes"
    );

    delete_mirror(&s.client, &s.home.name, "second").await;
    wait_mirror_gone(&s.client, &s.home.name, "second").await;
    let kept = get_cm(&s.client, t, "cfg")
        .await
        .expect("the first mirror's replica survives");
    assert_eq!(kept.labels().get(keys::MIRROR_UID), Some(&first_uid));
}

#[tokio::test]
async fn reference_replicas_are_adopted_only_when_asked() {
    let s = Scenario::new("adopt", 1).await;
    let t = s.target_names()[0];
    let owner = format!("{}.m", s.home.name);
    let legacy = create_cm(
        &s.client,
        t,
        &configmap("cfg", &[(keys::REFERENCE_OWNER, &owner)], &[("k", "old")]),
    )
    .await;
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("cfg", &[], &[("k", "new")]),
    )
    .await;

    // Without the flag: a conflict, the reference's copy untouched.
    let mut plain = s.operator().start().await;
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        "m",
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    let uid = mirror.uid().unwrap();
    let st = wait_status(&s.client, &s.home.name, "m", "conflict", |st| {
        st.conflicts == 1
    })
    .await;
    assert!(
        st.problems[0]
            .message
            .contains("--adopt-reference-replicas"),
        "{}",
        st.problems[0].message
    );
    assert_eq!(
        get_cm(&s.client, t, "cfg")
            .await
            .unwrap()
            .resource_version(),
        legacy.resource_version()
    );
    plain.terminate().await;

    // With it: adopted, relabelled as ours, content from the source.
    let _adopting = Operator::scoped(&[&s.home.name])
        .arg("--adopt-reference-replicas")
        .start()
        .await;
    let adopted = wait_cm(&s.client, t, "cfg", "adopted", |c| {
        is_replica(c, &uid, &[("k", "new")])
    })
    .await;
    assert_eq!(
        adopted.labels().get(keys::MANAGED_BY).map(String::as_str),
        Some(keys::MANAGED_BY_VALUE)
    );
    wait_status(&s.client, &s.home.name, "m", "Ready", |st| {
        st.conflicts == 0 && st.replicas == 1
    })
    .await;
}
