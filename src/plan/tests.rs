//! The replication rules, one test each, on the pure planner.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;

use super::replica::desired_configmap;
use super::*;
use crate::api::{ConfigMirrorSpec, keys};

const UID: &str = "0d7c6b7e-mirror-a";

fn mirror() -> MirrorIdentity {
    MirrorIdentity {
        namespace: "configmirror-system".into(),
        name: "app".into(),
        uid: UID.into(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn source_cm(name: &str, labels_: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("app-source".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("10".into()),
            labels: Some(labels(labels_)),
            annotations: Some(labels(&[("owner-note", "copied? never")])),
            ..Default::default()
        },
        data: Some(labels(data)),
        binary_data: Some(BTreeMap::from([(
            "blob".to_string(),
            ByteString(vec![0, 159, 146, 150]),
        )])),
        ..Default::default()
    }
}

fn source(name: &str, labels_: &[(&str, &str)], data: &[(&str, &str)]) -> Arc<SourceConfigMap> {
    Arc::new(SourceConfigMap::from_configmap(&source_cm(
        name, labels_, data,
    )))
}

fn namespaces(names: &[&str]) -> Namespaces {
    names
        .iter()
        .map(|n| (n.to_string(), NamespaceMeta::default()))
        .collect()
}

fn spec(targets: &[&str], selector: Option<LabelSelector>) -> ValidSpec {
    validate(&ConfigMirrorSpec {
        source_namespace: "app-source".into(),
        target_namespaces: targets.iter().map(|s| s.to_string()).collect(),
        selector,
        ..Default::default()
    })
    .unwrap()
}

fn match_labels(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(labels(pairs)),
        match_expressions: None,
    })
}

/// The replica exactly as the operator would have written it, seen back
/// from the API with a resourceVersion.
fn written_replica(src: &SourceConfigMap, namespace: &str, rv: &str) -> ReplicaMeta {
    let mut cm = desired_configmap(&mirror(), src, namespace, None);
    cm.metadata.uid = Some(format!("replica-{namespace}-{}", src.name));
    cm.metadata.resource_version = Some(rv.into());
    ReplicaMeta::from_configmap(&cm)
}

struct World {
    spec: ValidSpec,
    sources: Vec<Arc<SourceConfigMap>>,
    replicas: ReplicaIndex,
    namespaces: Namespaces,
    policy: TargetPolicy,
    known: KnownConflicts,
}

impl World {
    fn new(targets: &[&str]) -> Self {
        Self {
            spec: spec(targets, match_labels(&[("replicate", "true")])),
            sources: vec![source(
                "app-config",
                &[("replicate", "true")],
                &[("k", "v")],
            )],
            replicas: ReplicaIndex::default(),
            namespaces: namespaces(&["app-source", "dev", "staging", "prod", "kube-system"]),
            policy: TargetPolicy::new(["kube-system".to_string()]),
            known: KnownConflicts::new(),
        }
    }

    fn plan(&self) -> ReplicaPlan {
        plan(&PlanInput {
            mirror: &mirror(),
            spec: &self.spec,
            candidates: &self.sources,
            replicas: &self.replicas,
            namespaces: &self.namespaces,
            policy: &self.policy,
            known_conflicts: &self.known,
        })
    }

    /// Applies a plan as a perfect API server would.
    fn converge(&mut self) {
        let mut rv = 100;
        for action in self.plan().actions {
            rv += 1;
            match action {
                Action::Create(t)
                | Action::Update { target: t, .. }
                | Action::Replace { target: t, .. } => {
                    self.replicas.observe(written_replica(
                        &t.source,
                        &t.namespace,
                        &rv.to_string(),
                    ));
                }
                Action::Delete {
                    namespace, name, ..
                } => {
                    self.replicas.forget(&namespace, &name, &rv.to_string());
                }
            }
        }
    }
}

fn creates(plan: &ReplicaPlan) -> Vec<(String, String)> {
    plan.actions
        .iter()
        .filter(|a| matches!(a, Action::Create(_)))
        .map(|a| (a.namespace().to_string(), a.name().to_string()))
        .collect()
}

fn pair(ns: &str, name: &str) -> (String, String) {
    (ns.to_string(), name.to_string())
}

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

#[test]
fn a_deleted_or_deselected_source_deletes_its_replicas() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.sources = vec![source(
        "app-config",
        &[("replicate", "false")],
        &[("k", "v")],
    )];
    let p = w.plan();
    assert_eq!(p.actions.len(), 2);
    assert!(p.actions.iter().all(|a| matches!(
        a,
        Action::Delete {
            reason: DeleteReason::SourceGone,
            ..
        }
    )));
    w.sources.clear();
    assert_eq!(w.plan().actions.len(), 2);
}

#[test]
fn a_namespace_leaving_the_targets_loses_its_replica() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.spec = spec(&["dev"], match_labels(&[("replicate", "true")]));
    let p = w.plan();
    assert!(
        matches!(&p.actions[..], [Action::Delete { namespace, reason: DeleteReason::NotTargeted, .. }] if namespace == "prod")
    );
}

#[test]
fn a_new_source_namespace_converges() {
    let mut w = World::new(&["dev"]);
    w.converge();
    let mut s = spec(&["dev"], match_labels(&[("replicate", "true")]));
    s.source_namespace = "other-source".into();
    w.spec = s;
    let mut cm = source_cm("other-config", &[("replicate", "true")], &[("x", "y")]);
    cm.metadata.namespace = Some("other-source".into());
    w.sources
        .push(Arc::new(SourceConfigMap::from_configmap(&cm)));
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("dev", "other-config")]);
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Delete { name, .. } if name == "app-config"))
    );
}

#[test]
fn kubernetes_managed_configmaps_and_replicas_are_never_sources() {
    let mut w = World::new(&["dev"]);
    w.spec = spec(&["dev"], None);
    w.sources = vec![
        source("kube-root-ca.crt", &[], &[("ca.crt", "pem")]),
        source(
            "someone-elses-replica",
            &[
                (keys::MANAGED_BY, keys::MANAGED_BY_VALUE),
                (keys::MIRROR_UID, "other"),
            ],
            &[],
        ),
        source("plain", &[], &[]),
    ];
    assert_eq!(creates(&w.plan()), vec![pair("dev", "plain")]);
}

#[test]
fn a_name_held_by_another_mirror_is_a_conflict_and_others_proceed() {
    let mut w = World::new(&["dev", "prod"]);
    let src = w.sources[0].clone();
    let mut theirs = written_replica(&src, "dev", "7");
    theirs.mirror_uid = Some("other-mirror-uid".into());
    theirs.mirror = Some("team-b/theirs".into());
    w.replicas.observe(theirs);
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("prod", "app-config")]);
    assert_eq!(
        p.conflicts,
        vec![Conflict {
            namespace: "dev".into(),
            name: "app-config".into(),
            holder: Holder::OtherMirror("team-b/theirs".into())
        }]
    );
    // And the other mirror's replica is never deleted as our orphan.
    w.spec = spec(&["prod"], match_labels(&[("replicate", "true")]));
    assert!(w.plan().actions.iter().all(|a| a.namespace() != "dev"));
}

#[test]
fn a_known_unmanaged_configmap_is_a_conflict_not_a_create() {
    let mut w = World::new(&["dev", "prod"]);
    w.known.insert(pair("dev", "app-config"), Holder::Unmanaged);
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("prod", "app-config")]);
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].holder, Holder::Unmanaged);
}

#[test]
fn missing_and_terminating_namespaces_get_no_writes() {
    let mut w = World::new(&["dev", "later"]);
    w.namespaces.insert(
        "dev".into(),
        NamespaceMeta {
            labels: BTreeMap::new(),
            terminating: true,
        },
    );
    let p = w.plan();
    assert!(p.actions.is_empty());
    assert_eq!(p.targets.missing.iter().collect::<Vec<_>>(), ["later"]);
}

#[test]
fn a_replica_in_a_terminating_namespace_is_left_to_namespace_deletion() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.namespaces.insert(
        "prod".into(),
        NamespaceMeta {
            labels: BTreeMap::new(),
            terminating: true,
        },
    );
    assert!(w.plan().actions.is_empty());
}

#[test]
fn empty_target_selector_skips_source_and_system_namespaces() {
    let mut w = World::new(&["dev"]);
    w.spec = validate(&ConfigMirrorSpec {
        source_namespace: "app-source".into(),
        target_namespace_selector: Some(LabelSelector::default()),
        selector: match_labels(&[("replicate", "true")]),
        ..Default::default()
    })
    .unwrap();
    let targets: Vec<_> = creates(&w.plan()).into_iter().map(|(ns, _)| ns).collect();
    assert_eq!(targets, ["dev", "prod", "staging"]);
}

#[test]
fn cleanup_deletes_only_this_mirrors_replicas() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    let mut theirs = written_replica(&w.sources[0], "staging", "9");
    theirs.mirror_uid = Some("other".into());
    w.replicas.observe(theirs);
    let all: Vec<ReplicaMeta> = ["dev", "prod", "staging"]
        .iter()
        .filter_map(|ns| w.replicas.get(ns, "app-config").cloned())
        .collect();
    let actions = plan_cleanup(&mirror(), &all);
    let namespaces: Vec<_> = actions.iter().map(|a| a.namespace()).collect();
    assert_eq!(namespaces, ["dev", "prod"]);
}

#[test]
fn the_index_never_goes_back_to_an_older_version() {
    let src = source("app-config", &[], &[]);
    let mut index = ReplicaIndex::default();
    assert!(index.observe(written_replica(&src, "dev", "20")));
    assert!(
        !index.observe(written_replica(&src, "dev", "19")),
        "a late watch event"
    );
    assert!(!index.observe(written_replica(&src, "dev", "20")));
    assert!(index.observe(written_replica(&src, "dev", "21")));
    index.forget("dev", "app-config", "21");
    assert!(index.get("dev", "app-config").is_none());
    assert!(
        !index.observe(written_replica(&src, "dev", "21")),
        "an event from before our delete"
    );
    assert!(
        index.observe(written_replica(&src, "dev", "30")),
        "recreated later"
    );
    assert_eq!(index.owned_by(UID).count(), 1);
}
