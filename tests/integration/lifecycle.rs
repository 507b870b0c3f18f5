//! Replicas are removed exactly when they should no longer exist.

use std::time::Duration;

use configmirror::api::keys;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

use crate::support::audit::AuditCursor;
use crate::support::k8s::*;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually};

async fn started(
    prefix: &str,
    targets: usize,
) -> (Scenario, crate::support::operator::Operator, String) {
    let s = Scenario::new(prefix, targets).await;
    let op = s.operator().start().await;
    s.selected_source("a", &[("k", "a")]).await;
    s.selected_source("b", &[("k", "b")]).await;
    let uid = s.mirror_selected("m").await;
    eventually("all replicas", WAIT, || async {
        (replicas_of(&s.client, &uid).await.len() == 2 * targets).then_some(())
    })
    .await;
    (s, op, uid)
}

#[tokio::test]
async fn deleting_or_deselecting_a_source_deletes_its_replicas() {
    let (s, _op, uid) = started("srcgone", 2).await;
    delete_cm(&s.client, &s.source.name, "a").await;
    for t in s.target_names() {
        wait_cm_gone(&s.client, t, "a").await;
    }
    patch_cm(
        &s.client,
        &s.source.name,
        "b",
        serde_json::json!({"metadata": {"labels": {"replicate": "false"}}}),
    )
    .await;
    for t in s.target_names() {
        wait_cm_gone(&s.client, t, "b").await;
    }
    assert!(replicas_of(&s.client, &uid).await.is_empty());
    // Relabelled back in, it comes back.
    patch_cm(
        &s.client,
        &s.source.name,
        "b",
        serde_json::json!({"metadata": {"labels": {"replicate": "true"}}}),
    )
    .await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "b", "replica back", |c| {
            is_replica(c, &uid, &[("k", "b")])
        })
        .await;
    }
}

#[tokio::test]
async fn a_namespace_leaving_the_targets_loses_its_replicas() {
    let (s, _op, uid) = started("leave", 2).await;
    let [keep, leave] = [s.target_names()[0], s.target_names()[1]];
    patch_mirror_spec(
        &s.client,
        &s.home.name,
        "m",
        serde_json::json!({"targetNamespaces": [keep]}),
    )
    .await;
    wait_cm_gone(&s.client, leave, "a").await;
    wait_cm_gone(&s.client, leave, "b").await;
    let left: Vec<String> = replicas_of(&s.client, &uid)
        .await
        .into_iter()
        .map(|(ns, _)| ns)
        .collect();
    assert_eq!(left, [keep, keep]);
}

#[tokio::test]
async fn changing_the_selector_or_the_source_namespace_converges() {
    let (s, _op, uid) = started("reselect", 1).await;
    let t = s.target_names()[0];
    patch_cm(
        &s.client,
        &s.source.name,
        "a",
        serde_json::json!({"metadata": {"labels": {"tier": "gold"}}}),
    )
    .await;
    patch_mirror_spec(
        &s.client,
        &s.home.name,
        "m",
        serde_json::json!({"selector": {"matchLabels": {"replicate": null, "tier": "gold"}}}),
    )
    .await;
    wait_cm_gone(&s.client, t, "b").await;
    wait_cm(&s.client, t, "a", "still replicated", |c| {
        is_replica(c, &uid, &[("k", "a")])
    })
    .await;

    // A new source namespace: its ConfigMaps replace the old ones.
    let other = TestNamespace::create(&s.client, "reselect-src2").await;
    create_cm(
        &s.client,
        &other.name,
        &configmap("c", &[("tier", "gold")], &[("k", "c")]),
    )
    .await;
    patch_mirror_spec(
        &s.client,
        &s.home.name,
        "m",
        serde_json::json!({"sourceNamespace": other.name}),
    )
    .await;
    wait_cm(&s.client, t, "c", "replica from the new source", |c| {
        is_replica(c, &uid, &[("k", "c")])
    })
    .await;
    wait_cm_gone(&s.client, t, "a").await;
    let status = wait_status(
        &s.client,
        &s.home.name,
        "m",
        "the new source in status",
        |st| {
            st.replicated_config_maps
                .first()
                .is_some_and(|e| e.source_namespace == other.name)
        },
    )
    .await;
    assert_eq!((status.sources, status.replicas), (1, 1));
}

#[tokio::test]
async fn deleting_the_source_namespace_removes_its_replicas() {
    let (s, _op, uid) = started("srcns", 2).await;
    Api::<Namespace>::all(s.client.clone())
        .delete(&s.source.name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "replicas of the deleted namespace's ConfigMaps to go",
        Duration::from_secs(90),
        || async { replicas_of(&s.client, &uid).await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn deleting_the_mirror_removes_every_replica_then_the_finalizer_and_nothing_else() {
    let (s, op, uid) = started("mdelete", 2).await;
    let t = s.target_names()[0];
    let mirror = get_mirror(&s.client, &s.home.name, "m").await.unwrap();
    assert!(mirror.finalizers().iter().any(|f| f == keys::FINALIZER));
    // Something the operator does not own, in a target and in the source.
    create_cm(
        &s.client,
        t,
        &configmap("bystander", &[], &[("mine", "yes")]),
    )
    .await;

    // A source created a moment before the mirror is deleted: its replicas
    // may be in flight, and must not survive.
    s.selected_source("late", &[("k", "late")]).await;
    let audit = AuditCursor::now();
    delete_mirror(&s.client, &s.home.name, "m").await;
    wait_mirror_gone(&s.client, &s.home.name, "m").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        replicas_of(&s.client, &uid).await.is_empty(),
        "a replica outlived its mirror"
    );
    for t in s.target_names() {
        for name in ["a", "b", "late"] {
            assert!(
                get_cm(&s.client, t, name).await.is_none(),
                "{t}/{name} survived"
            );
        }
    }
    assert!(get_cm(&s.client, t, "bystander").await.is_some());
    assert_eq!(
        get_cm(&s.client, &s.source.name, "a")
            .await
            .map(|c| data_of(&c)),
        Some(labels(&[("k", "a")]))
    );
    let touched: Vec<_> = audit
        .operator_writes(&op.agent(), &s.namespaces())
        .into_iter()
        .filter(|e| e.object_ref.name == "bystander" || e.object_ref.namespace == s.source.name)
        .collect();
    assert!(
        touched.is_empty(),
        "the operator wrote what it does not own: {touched:?}"
    );
}
