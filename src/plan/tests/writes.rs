//! What a replica holds, and when it is created, updated or replaced.

use super::*;

#[test]
fn a_matching_source_is_created_in_every_present_target() {
    let w = World::new(&["dev", "staging", "prod"]);
    let p = w.plan();
    assert_eq!(
        creates(&p),
        vec![
            pair("dev", "app-config"),
            pair("prod", "app-config"),
            pair("staging", "app-config")
        ]
    );
    assert_eq!(p.sources.len(), 1);
    assert_eq!(p.targets.count(), 3);
    assert!(p.conflicts.is_empty());
}

#[test]
fn a_replica_copies_content_and_carries_only_the_operators_marks() {
    let src = source("app-config", &[("replicate", "true")], &[("k", "v")]);
    let cm = desired_configmap(&mirror(), &src, "dev", None);
    assert_eq!(cm.metadata.name.as_deref(), Some("app-config"));
    assert_eq!(cm.metadata.namespace.as_deref(), Some("dev"));
    assert_eq!(cm.data, Some(labels(&[("k", "v")])));
    assert_eq!(cm.binary_data.unwrap()["blob"].0, vec![0, 159, 146, 150]);
    assert_eq!(cm.immutable, None);
    assert!(cm.metadata.owner_references.is_none());
    let l = cm.metadata.labels.unwrap();
    assert_eq!(l.len(), 2, "source labels are not copied: {l:?}");
    assert_eq!(l[keys::MANAGED_BY], keys::MANAGED_BY_VALUE);
    assert_eq!(l[keys::MIRROR_UID], UID);
    assert!(l.values().all(|v| v.len() <= 63));
    let a = cm.metadata.annotations.unwrap();
    assert_eq!(a[keys::SOURCE], "app-source/app-config");
    assert_eq!(a[keys::SOURCE_UID], "uid-app-config");
    assert_eq!(a[keys::CONTENT_HASH], src.content_hash);
    assert_eq!(a[keys::MIRROR], "configmirror-system/app");
    assert!(!a.contains_key("owner-note"));
}

#[test]
fn the_request_body_is_the_desired_configmap() {
    use super::replica::replica_body;
    let mut cm = source_cm(
        "app-config",
        &[("replicate", "true")],
        &[("k", "v"), ("nul", "a\0b")],
    );
    cm.immutable = Some(true);
    let src = SourceConfigMap::from_configmap(&cm);
    let body: ConfigMap =
        serde_json::from_slice(&replica_body(&mirror(), &src, "dev", Some("42".into()))).unwrap();
    assert_eq!(
        body,
        desired_configmap(&mirror(), &src, "dev", Some("42".into()))
    );
    let empty = SourceConfigMap::from_configmap(&source_cm("empty", &[], &[]));
    let body: serde_json::Value =
        serde_json::from_slice(&replica_body(&mirror(), &empty, "dev", None)).unwrap();
    assert!(body.get("data").is_none() && body.get("immutable").is_none());
}

#[test]
fn converged_world_plans_nothing() {
    let mut w = World::new(&["dev", "staging"]);
    w.converge();
    let p = w.plan();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.in_sync["app-config"].len(), 2);
}

#[test]
fn changed_data_or_binary_data_updates_with_a_precondition() {
    let mut w = World::new(&["dev"]);
    w.converge();
    let rv = w
        .replicas
        .get("dev", "app-config")
        .unwrap()
        .resource_version
        .clone();
    w.sources = vec![source(
        "app-config",
        &[("replicate", "true")],
        &[("k", "v2")],
    )];
    let p = w.plan();
    assert!(
        matches!(&p.actions[..], [Action::Update { resource_version, .. }] if *resource_version == rv)
    );

    let mut cm = source_cm("app-config", &[("replicate", "true")], &[("k", "v")]);
    cm.binary_data = Some(BTreeMap::from([("blob".to_string(), ByteString(vec![1]))]));
    w.sources = vec![Arc::new(SourceConfigMap::from_configmap(&cm))];
    assert!(matches!(&w.plan().actions[..], [Action::Update { .. }]));
}

#[test]
fn a_source_label_the_selector_does_not_read_changes_nothing() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.sources = vec![source(
        "app-config",
        &[("replicate", "true"), ("color", "blue")],
        &[("k", "v")],
    )];
    assert!(w.plan().actions.is_empty());
}

#[test]
fn an_immutable_replica_with_new_content_is_replaced() {
    let mut w = World::new(&["dev"]);
    let mut cm = source_cm("app-config", &[("replicate", "true")], &[("k", "v")]);
    cm.immutable = Some(true);
    w.sources = vec![Arc::new(SourceConfigMap::from_configmap(&cm))];
    w.converge();
    assert!(w.replicas.get("dev", "app-config").unwrap().immutable);

    // The immutable source was deleted and recreated with new content.
    cm.data = Some(labels(&[("k", "v2")]));
    cm.metadata.uid = Some("uid-new".into());
    w.sources = vec![Arc::new(SourceConfigMap::from_configmap(&cm))];
    assert!(matches!(&w.plan().actions[..], [Action::Replace { .. }]));
}

#[test]
fn drifted_replica_content_is_repaired() {
    let mut w = World::new(&["dev"]);
    w.converge();
    let mut drifted = w.replicas.get("dev", "app-config").unwrap().clone();
    drifted.actual_hash = "edited-by-someone".into();
    drifted.resource_version = "500".into();
    w.replicas.observe(drifted);
    assert!(
        matches!(&w.plan().actions[..], [Action::Update { resource_version, .. }] if resource_version == "500")
    );
}
