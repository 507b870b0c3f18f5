//! Replicas appear, follow their source, and are repaired when edited.

use std::collections::BTreeMap;
use std::time::Duration;

use configmirror::api::keys;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::DeleteParams;

use crate::support::audit::{AuditCursor, summary};
use crate::support::k8s::*;
use crate::support::scenario::Scenario;

fn rich_source(name: &str) -> ConfigMap {
    let mut cm = configmap(
        name,
        &[("app", "web"), ("replicate", "true")],
        &[("config.yaml", "key: value\n"), ("empty", "")],
    );
    cm.metadata.annotations = Some(labels(&[("team", "platform")]));
    cm.binary_data = Some(BTreeMap::from([(
        "blob.bin".to_string(),
        ByteString(vec![0, 1, 254, 255, 0xC3, 0x28]),
    )]));
    cm
}

#[tokio::test]
async fn a_matching_source_appears_in_every_target_with_marks_and_content() {
    let s = Scenario::new("basic", 3).await;
    let _op = s.operator().start().await;
    let source = create_cm(&s.client, &s.source.name, &rich_source("web-config")).await;
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("not-selected", &[("app", "web")], &[("x", "y")]),
    )
    .await;
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        "web",
        mirror_spec(
            &s.source.name,
            &s.target_names(),
            match_labels(&[("replicate", "true")]),
        ),
    )
    .await;
    let uid = mirror.uid().unwrap();

    for target in s.target_names() {
        let replica = wait_cm(&s.client, target, "web-config", "replica", |cm| {
            cm.labels().contains_key(keys::MIRROR_UID)
        })
        .await;
        assert_eq!(data_of(&replica), data_of(&source));
        assert_eq!(
            binary_of(&replica),
            binary_of(&source),
            "binaryData byte-exact"
        );
        assert_eq!(replica.immutable, None);
        let l = replica.labels();
        assert_eq!(
            l.get(keys::MANAGED_BY).map(String::as_str),
            Some(keys::MANAGED_BY_VALUE)
        );
        assert_eq!(l.get(keys::MIRROR_UID), Some(&uid));
        assert!(
            !l.contains_key("app"),
            "the source's labels are not copied: {l:?}"
        );
        let a = replica.annotations();
        assert_eq!(
            a.get(keys::SOURCE).map(String::as_str),
            Some(format!("{}/web-config", s.source.name).as_str())
        );
        assert_eq!(a.get(keys::SOURCE_UID), source.metadata.uid.as_ref());
        assert!(a.get(keys::CONTENT_HASH).is_some_and(|h| h.len() == 64));
        assert!(
            !a.contains_key("team"),
            "the source's annotations are not copied"
        );
        assert!(
            replica.metadata.owner_references.is_none(),
            "no cross-namespace ownerReferences"
        );
        assert!(get_cm(&s.client, target, "not-selected").await.is_none());
    }
    let status = wait_status(&s.client, &s.home.name, "web", "Ready", |st| {
        ready_reason(st) == Some(("True".into(), "Synced".into()))
    })
    .await;
    assert_eq!(
        (
            status.sources,
            status.targets,
            status.replicas,
            status.conflicts
        ),
        (1, 3, 3, 0)
    );
    assert_eq!(status.replicated_config_maps[0].target_count, 3);
}

#[tokio::test]
async fn source_changes_reach_every_replica_and_unread_labels_write_nothing() {
    let s = Scenario::new("update", 2).await;
    let op = s.operator().start().await;
    create_cm(&s.client, &s.source.name, &rich_source("cfg")).await;
    let uid = s.mirror_selected("m").await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "cfg", "replica", |cm| {
            cm.labels().get(keys::MIRROR_UID) == Some(&uid)
        })
        .await;
    }
    wait_status(&s.client, &s.home.name, "m", "Ready", |st| st.replicas == 2).await;

    // data
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"data": {"config.yaml": "key: v2\n"}}),
    )
    .await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "cfg", "new data", |cm| {
            data_of(cm).get("config.yaml").map(String::as_str) == Some("key: v2\n")
        })
        .await;
    }
    // binaryData
    let new_blob = ByteString(vec![9, 8, 7, 0, 255]);
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"binaryData": {"blob.bin": new_blob}}),
    )
    .await;
    for t in s.target_names() {
        wait_cm(&s.client, t, "cfg", "new binaryData", |cm| {
            binary_of(cm).get("blob.bin") == Some(&new_blob)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A label the selector does not read: not one write.
    let audit = AuditCursor::now();
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"metadata": {"labels": {"color": "blue"}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = audit.operator_writes(&op.agent(), &s.namespaces());
    assert!(
        writes.is_empty(),
        "an unread label caused writes: {}",
        summary(&writes)
    );
}

#[tokio::test]
async fn an_immutable_source_replaced_by_a_new_one_replaces_its_replicas() {
    let s = Scenario::new("immutable", 2).await;
    let _op = s.operator().start().await;
    let mut cm = configmap("frozen", &[("replicate", "true")], &[("v", "1")]);
    cm.immutable = Some(true);
    create_cm(&s.client, &s.source.name, &cm).await;
    let uid = s.mirror_selected("m").await;
    for t in s.target_names() {
        let r = wait_cm(&s.client, t, "frozen", "replica", |c| {
            is_replica(c, &uid, &[("v", "1")])
        })
        .await;
        assert_eq!(r.immutable, Some(true));
    }
    // Immutable ConfigMaps are changed by replacing them.
    delete_cm(&s.client, &s.source.name, "frozen").await;
    cm.data = Some(labels(&[("v", "2")]));
    create_cm(&s.client, &s.source.name, &cm).await;
    for t in s.target_names() {
        let r = wait_cm(&s.client, t, "frozen", "replaced replica", |c| {
            is_replica(c, &uid, &[("v", "2")])
        })
        .await;
        assert_eq!(r.immutable, Some(true));
    }
}

#[tokio::test]
async fn a_replica_edited_or_deleted_by_someone_else_is_restored() {
    let s = Scenario::new("drift", 1).await;
    let _op = s.operator().start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let uid = s.mirror_selected("m").await;
    let t = s.target_names()[0];
    wait_cm(&s.client, t, "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;

    patch_cm(
        &s.client,
        t,
        "cfg",
        serde_json::json!({"data": {"k": "hacked", "extra": "x"}}),
    )
    .await;
    wait_cm(&s.client, t, "cfg", "edit reverted", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;

    let api = kube::Api::<ConfigMap>::namespaced(s.client.clone(), t);
    api.delete("cfg", &DeleteParams::default()).await.unwrap();
    wait_cm(&s.client, t, "cfg", "deleted replica recreated", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;

    // Someone strips our labels: it is theirs now, and we do not overwrite it.
    patch_cm(&s.client, t, "cfg", serde_json::json!({"metadata": {"labels": {(keys::MIRROR_UID): null, (keys::MANAGED_BY): null}}, "data": {"k": "mine"}})).await;
    let status = wait_status(&s.client, &s.home.name, "m", "conflict reported", |st| {
        st.conflicts == 1
    })
    .await;
    assert_eq!(
        ready_reason(&status),
        Some(("False".into(), "Conflict".into()))
    );
    assert_eq!(
        data_of(&get_cm(&s.client, t, "cfg").await.unwrap())
            .get("k")
            .map(String::as_str),
        Some("mine")
    );
}
