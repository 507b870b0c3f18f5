//! The replication rules, one test each, on the pure planner: what a
//! replica holds and when it is written (`writes`), and which replicas exist
//! at all (`placement`: targets, deletes, conflicts, cleanup).

mod placement;
mod policy;
mod writes;

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
    policy: NamespacePolicy,
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
            policy: NamespacePolicy {
                protected: ["kube-system".to_string()].into(),
                ..Default::default()
            },
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
