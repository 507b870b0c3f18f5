//! Target namespaces by list and by selector, including ones that come later.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::support::k8s::*;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, unique};

#[tokio::test]
async fn a_namespace_selector_follows_namespaces_as_they_come_and_go() {
    let s = Scenario::new("nssel", 0).await;
    let _op = s.operator().start().await;
    let team = unique("team");
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("cfg", &[], &[("k", "v")]),
    )
    .await;
    let before =
        TestNamespace::create_labelled(&s.client, "nssel-before", &[("team", &team)]).await;
    let mut spec = mirror_spec(&s.source.name, &[], None);
    spec.target_namespace_selector = match_labels(&[("team", &team)]);
    let mirror = create_mirror(&s.client, &s.home.name, "m", spec).await;
    let uid = mirror.uid().unwrap();
    wait_cm(
        &s.client,
        &before.name,
        "cfg",
        "replica in a matching namespace",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;

    // A new matching namespace gets a replica.
    let later = TestNamespace::create_labelled(&s.client, "nssel-later", &[("team", &team)]).await;
    wait_cm(
        &s.client,
        &later.name,
        "cfg",
        "replica in a new namespace",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;

    // Relabelled out, it loses it.
    Api::<Namespace>::all(s.client.clone())
        .patch(
            &later.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"team": "other"}}})),
        )
        .await
        .unwrap();
    wait_cm_gone(&s.client, &later.name, "cfg").await;
    // The source namespace never gets one, even when it matches.
    Api::<Namespace>::all(s.client.clone())
        .patch(
            &s.source.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"team": team}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = wait_status(&s.client, &s.home.name, "m", "1 target", |st| {
        st.targets == 1 && st.replicas == 1
    })
    .await;
    assert_eq!(st.replicas, 1);
    assert!(
        replicas_of(&s.client, &uid)
            .await
            .iter()
            .all(|(ns, _)| *ns == before.name)
    );
}

#[tokio::test]
async fn an_empty_namespace_selector_skips_the_source_and_system_namespaces() {
    let s = Scenario::new("allns", 0).await;
    let _op = s.operator().start().await;
    let name = unique("everywhere");
    create_cm(
        &s.client,
        &s.source.name,
        &configmap(&name, &[], &[("k", "v")]),
    )
    .await;
    let mut spec = mirror_spec(&s.source.name, &[], None);
    spec.target_namespace_selector = Some(Default::default());
    let mirror = create_mirror(&s.client, &s.home.name, "m", spec).await;
    let uid = mirror.uid().unwrap();
    let fresh = TestNamespace::create(&s.client, "allns-fresh").await;
    wait_cm(
        &s.client,
        &fresh.name,
        &name,
        "replica in an arbitrary namespace",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;
    wait_cm(&s.client, "default", &name, "replica in default", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    for system in ["kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            get_cm(&s.client, system, &name).await.is_none(),
            "{system} got a replica"
        );
    }
    let in_source = get_cm(&s.client, &s.source.name, &name).await.unwrap();
    assert!(
        in_source.labels().is_empty(),
        "the source itself was rewritten"
    );
    // Removing the mirror takes every replica with it.
    delete_mirror(&s.client, &s.home.name, "m").await;
    wait_mirror_gone(&s.client, &s.home.name, "m").await;
    assert!(replicas_of(&s.client, &uid).await.is_empty());
}

#[tokio::test]
async fn listed_namespaces_that_do_not_exist_yet_are_reported_then_filled() {
    let s = Scenario::new("missing", 1).await;
    let _op = s.operator().start().await;
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("cfg", &[], &[("k", "v")]),
    )
    .await;
    let later = unique("missing-later");
    let present = s.target_names()[0].to_string();
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        "m",
        mirror_spec(&s.source.name, &[&present, &later], None),
    )
    .await;
    let uid = mirror.uid().unwrap();
    // The existing target is not blocked by the missing one.
    wait_cm(
        &s.client,
        &present,
        "cfg",
        "replica in the existing target",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;
    let st = wait_status(
        &s.client,
        &s.home.name,
        "m",
        "missing namespace reported",
        |st| {
            st.problems
                .iter()
                .any(|p| p.reason == "NamespaceMissing" && p.namespace == later)
        },
    )
    .await;
    assert_eq!(
        ready_reason(&st),
        Some(("False".into(), "NamespaceMissing".into()))
    );
    assert_eq!((st.targets, st.replicas), (2, 1));

    // It appears: it is filled, and the mirror becomes Ready.
    let ns = TestNamespace::create_named(&s.client, &later).await;
    wait_cm(
        &s.client,
        &ns.name,
        "cfg",
        "replica once the namespace exists",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;
    wait_status(&s.client, &s.home.name, "m", "Ready", |st| {
        ready_reason(st) == Some(("True".into(), "Synced".into()))
    })
    .await;

    // Deleted and recreated: filled again.
    Api::<Namespace>::all(s.client.clone())
        .delete(&later, &DeleteParams::default())
        .await
        .unwrap();
    // Namespace deletion is the controller manager's work and slow on a
    // busy cluster; what matters here is what happens after it.
    wait_namespace_gone(&s.client, &later, Duration::from_secs(240)).await;
    let again = TestNamespace::create_named(&s.client, &later).await;
    wait_cm(
        &s.client,
        &again.name,
        "cfg",
        "replica in the recreated namespace",
        |c| is_replica(c, &uid, &[("k", "v")]),
    )
    .await;
}
