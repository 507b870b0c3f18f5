//! The operator's own namespace policy, for when admission is off or
//! bypassed (these tests run as cluster-admin, whom admission lets through):
//! protected namespaces are never a source or a target, and under
//! `--require-source-opt-in` a source must name the mirror's namespace.
//! A denial is `Ready=False, reason Forbidden` and an event, never a
//! silent skip, and touches nothing that exists.

use configmirror::api::keys;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::support::k8s::*;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually, unique};

fn forbidden(status: &configmirror::api::ConfigMirrorStatus) -> bool {
    ready_reason(status) == Some(("False".into(), "Forbidden".into()))
}

async fn wait_forbidden_event(client: &Client, namespace: &str, mirror: &str) -> String {
    eventually("a Forbidden event", WAIT, || async {
        let events = events_for(client, namespace, mirror, "Forbidden").await;
        events.first().and_then(|e| e.note.clone())
    })
    .await
}

async fn annotate_source(client: &Client, namespace: &str, value: Option<&str>) {
    Api::<Namespace>::all(client.clone())
        .patch(
            namespace,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({
                "metadata": {"annotations": {keys::ALLOW_MIRRORS_FROM: value}}
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("annotating namespace {namespace}: {e}"));
}

#[tokio::test]
async fn a_protected_source_or_target_copies_nothing_and_says_forbidden() {
    let s = Scenario::new("protected", 1).await;
    // A namespace of the test's own, protected for this operator: the
    // built-in ones are shared by every test and must not be written.
    let vault = TestNamespace::create(&s.client, "protected-vault").await;
    let _op = s
        .operator()
        .arg(format!("--protected-namespaces={},kube-system", vault.name))
        .start()
        .await;
    let name = unique("cfg");
    let secret_cm = create_cm(
        &s.client,
        &vault.name,
        &configmap(&name, &[("replicate", "true")], &[("token", "secret")]),
    )
    .await;
    // Out of the protected namespace.
    let from = mirror_spec(&vault.name, &s.target_names(), None);
    create_mirror(&s.client, &s.home.name, "from", from).await;
    let status = wait_status(&s.client, &s.home.name, "from", "Forbidden", forbidden).await;
    let message = &condition(&status, "Ready").unwrap().message;
    assert!(message.contains(&vault.name), "{message}");
    assert!(message.contains("protected"), "{message}");
    let note = wait_forbidden_event(&s.client, &s.home.name, "from").await;
    assert!(note.contains(&vault.name), "{note}");

    // Into the protected namespaces, beside an allowed target: the allowed
    // one is served; a ConfigMap already in the protected one keeps its
    // version.
    s.selected_source(&name, &[("k", "v")]).await;
    let held = create_cm(
        &s.client,
        &vault.name,
        &configmap("held", &[], &[("theirs", "1")]),
    )
    .await;
    let mut into = mirror_spec(&s.source.name, &[&vault.name, "kube-system"], None);
    into.target_namespaces.push(s.target_names()[0].into());
    let mirror = create_mirror(&s.client, &s.home.name, "into", into).await;
    let uid = mirror.uid().unwrap();
    wait_cm(
        &s.client,
        s.target_names()[0],
        &name,
        "the allowed replica",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;
    let status = wait_status(&s.client, &s.home.name, "into", "Forbidden", forbidden).await;
    let denied: Vec<&str> = status
        .problems
        .iter()
        .filter(|p| p.reason == "Forbidden")
        .map(|p| p.namespace.as_str())
        .collect();
    assert_eq!(denied.len(), 2, "{:?}", status.problems);
    assert!(denied.contains(&"kube-system") && denied.contains(&vault.name.as_str()));

    // Give a wrong operator time to act, then check nothing moved.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let replicas = replicas_of(&s.client, &uid).await;
    assert_eq!(
        replicas,
        vec![(s.target_names()[0].to_string(), name.clone())],
        "only the allowed target holds a replica"
    );
    let from_status = get_mirror(&s.client, &s.home.name, "from").await.unwrap();
    assert_eq!(from_status.status.unwrap().replicas, 0);
    for (cm, what) in [
        (&secret_cm, "the protected source"),
        (&held, "a protected ConfigMap"),
    ] {
        let now = get_cm(&s.client, &vault.name, &cm.name_any())
            .await
            .unwrap();
        assert_eq!(
            now.resource_version(),
            cm.resource_version(),
            "{what} changed"
        );
    }
    assert!(get_cm(&s.client, "kube-system", &name).await.is_none());
}

#[tokio::test]
async fn a_target_that_becomes_protected_loses_its_replica_and_only_that_one() {
    let s = Scenario::new("newly-protected", 2).await;
    let [kept, lost] = [s.target_names()[0], s.target_names()[1]];
    let op = s.operator().start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let uid = s.mirror_selected("m").await;
    let before = wait_cm(&s.client, kept, "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    wait_cm(&s.client, lost, "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    drop(op);

    let _op = s
        .operator()
        .arg(format!("--protected-namespaces={lost}"))
        .start()
        .await;
    wait_status(&s.client, &s.home.name, "m", "Forbidden", forbidden).await;
    wait_cm_gone(&s.client, lost, "cfg").await;
    let after = get_cm(&s.client, kept, "cfg").await.unwrap();
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "the allowed target's replica was rewritten"
    );
}

#[tokio::test]
async fn a_source_must_opt_in_and_opting_out_removes_the_replicas() {
    let s = Scenario::new("opt-in", 1).await;
    let target = s.target_names()[0];
    let _op = s.operator().arg("--require-source-opt-in").start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let uid = s.mirror_selected("m").await;
    let status = wait_status(&s.client, &s.home.name, "m", "Forbidden", forbidden).await;
    let message = &condition(&status, "Ready").unwrap().message;
    assert!(message.contains(keys::ALLOW_MIRRORS_FROM), "{message}");
    assert!(get_cm(&s.client, target, "cfg").await.is_none());

    // Another namespace named does not help; the mirror's own does.
    annotate_source(&s.client, &s.source.name, Some("someone-else")).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(get_cm(&s.client, target, "cfg").await.is_none());
    annotate_source(
        &s.client,
        &s.source.name,
        Some(&format!("x, {}", s.home.name)),
    )
    .await;
    wait_cm(&s.client, target, "cfg", "replica after opt-in", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    wait_status(&s.client, &s.home.name, "m", "Ready", |st| {
        ready_reason(st) == Some(("True".into(), "Synced".into()))
    })
    .await;

    // Opting out: Forbidden again, and the replica goes once confirmed.
    annotate_source(&s.client, &s.source.name, None).await;
    wait_status(&s.client, &s.home.name, "m", "Forbidden", forbidden).await;
    wait_cm_gone(&s.client, target, "cfg").await;
    let source = get_cm(&s.client, &s.source.name, "cfg").await;
    assert!(source.is_some(), "the source itself is never touched");
}
