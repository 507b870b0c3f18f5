//! Kubernetes helpers for the replication tests: the CRD, ConfigMaps,
//! ConfigMirrors, and waiting for what the operator should do.

use std::collections::BTreeMap;
use std::time::Duration;

use configmirror::api::{ConfigMirror, ConfigMirrorSpec, ConfigMirrorStatus, keys};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::eventually;

pub const WAIT: Duration = Duration::from_secs(45);

/// Installs (or refreshes) the CRD from crds/ and waits until it serves,
/// then admission by the author's own rights, which every test runs under.
pub async fn install_crd(client: &Client) {
    let yaml = include_str!("../../../crds/configmirror.yaml");
    let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).expect("crds/configmirror.yaml");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "configmirrors.mirror.configmirror.io",
        &PatchParams::apply("configmirror-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("applying the CRD");
    eventually("the CRD to be established", WAIT, || {
        let api = api.clone();
        async move {
            let crd = api.get("configmirrors.mirror.configmirror.io").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    super::tenants::install_admission(client).await;
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn match_labels(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(labels(pairs)),
        match_expressions: None,
    })
}

pub fn configmap(name: &str, label_pairs: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(label_pairs)),
            ..Default::default()
        },
        data: Some(labels(data)),
        ..Default::default()
    }
}

pub async fn create_cm(client: &Client, namespace: &str, cm: &ConfigMap) -> ConfigMap {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), cm)
        .await
        .unwrap_or_else(|e| panic!("creating ConfigMap {namespace}/{}: {e}", cm.name_any()))
}

pub async fn get_cm(client: &Client, namespace: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
}

pub async fn patch_cm(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) -> ConfigMap {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching {namespace}/{name}: {e}"))
}

pub async fn delete_cm(client: &Client, namespace: &str, name: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {namespace}/{name}: {e}"));
}

pub fn mirror_spec(
    source: &str,
    targets: &[&str],
    selector: Option<LabelSelector>,
) -> ConfigMirrorSpec {
    ConfigMirrorSpec {
        source_namespace: source.into(),
        target_namespaces: targets.iter().map(|s| s.to_string()).collect(),
        selector,
        ..Default::default()
    }
}

pub async fn create_mirror(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: ConfigMirrorSpec,
) -> ConfigMirror {
    let mirror = ConfigMirror::new(name, spec);
    Api::<ConfigMirror>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &mirror)
        .await
        .unwrap_or_else(|e| panic!("creating ConfigMirror {namespace}/{name}: {e}"))
}

pub async fn get_mirror(client: &Client, namespace: &str, name: &str) -> Option<ConfigMirror> {
    Api::<ConfigMirror>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
}

pub async fn patch_mirror_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) {
    Api::<ConfigMirror>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap_or_else(|e| panic!("patching ConfigMirror {namespace}/{name}: {e}"));
}

pub async fn delete_mirror(client: &Client, namespace: &str, name: &str) {
    Api::<ConfigMirror>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting ConfigMirror {namespace}/{name}: {e}"));
}

/// Waits until the mirror is gone (its finalizer ran).
pub async fn wait_mirror_gone(client: &Client, namespace: &str, name: &str) {
    eventually(
        &format!("ConfigMirror {namespace}/{name} to be gone"),
        WAIT,
        || async {
            get_mirror(client, namespace, name)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
}

/// Waits until the mirror's status satisfies `check`; returns it.
pub async fn wait_status(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&ConfigMirrorStatus) -> bool,
) -> ConfigMirrorStatus {
    eventually(&format!("{namespace}/{name}: {what}"), WAIT, || async {
        let status = get_mirror(client, namespace, name).await?.status?;
        check(&status).then_some(status)
    })
    .await
}

pub fn condition<'a>(
    status: &'a ConfigMirrorStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

pub fn ready_reason(status: &ConfigMirrorStatus) -> Option<(String, String)> {
    condition(status, "Ready").map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until `namespace/name` exists and satisfies `check`.
pub async fn wait_cm(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&ConfigMap) -> bool,
) -> ConfigMap {
    eventually(&format!("{namespace}/{name}: {what}"), WAIT, || async {
        let cm = get_cm(client, namespace, name).await?;
        check(&cm).then_some(cm)
    })
    .await
}

pub async fn wait_cm_gone(client: &Client, namespace: &str, name: &str) {
    eventually(
        &format!("{namespace}/{name} to be deleted"),
        WAIT,
        || async {
            get_cm(client, namespace, name)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
}

pub fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

pub fn binary_of(cm: &ConfigMap) -> BTreeMap<String, ByteString> {
    cm.binary_data.clone().unwrap_or_default()
}

/// Replicas of the mirror with this UID, cluster-wide, as (namespace, name).
pub async fn replicas_of(client: &Client, mirror_uid: &str) -> Vec<(String, String)> {
    let list = Api::<ConfigMap>::all(client.clone())
        .list_metadata(&ListParams::default().labels(&format!("{}={mirror_uid}", keys::MIRROR_UID)))
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = list
        .items
        .iter()
        .map(|m| (m.namespace().unwrap_or_default(), m.name_any()))
        .collect();
    out.sort();
    out
}

/// Whether `cm` is a replica of the mirror with `mirror_uid` holding `data`.
pub fn is_replica(cm: &ConfigMap, mirror_uid: &str, data: &[(&str, &str)]) -> bool {
    cm.labels().get(keys::MIRROR_UID).map(String::as_str) == Some(mirror_uid)
        && data_of(cm) == labels(data)
}

/// Waits until the namespace is gone. The namespace controller, not the
/// operator, does this work, and it is slow when the cluster is busy; on a
/// timeout the panic says what the controller last reported, so a failure
/// names its cause rather than only the wait.
pub async fn wait_namespace_gone(client: &Client, name: &str, timeout: Duration) {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = namespaces
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading namespace {name}: {e}"));
        let Some(namespace) = found else { return };
        if tokio::time::Instant::now() > deadline {
            let left = ConfigMapsLeft::read(client, name).await;
            panic!(
                "namespace {name} still exists after {timeout:?}: phase {:?}, finalizers {:?}, \
                 conditions {:?}, ConfigMaps left {left:?}",
                namespace.status.as_ref().and_then(|s| s.phase.clone()),
                namespace.spec.as_ref().and_then(|s| s.finalizers.clone()),
                namespace
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| format!("{}={} {}", c.type_, c.status, c.message.unwrap_or_default()))
                    .collect::<Vec<_>>(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ConfigMaps still in a namespace, with their finalizers.
#[derive(Debug)]
struct ConfigMapsLeft(Vec<(String, Vec<String>)>);

impl ConfigMapsLeft {
    async fn read(client: &Client, namespace: &str) -> Self {
        let list = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        Self(
            list.into_iter()
                .map(|cm| (cm.name_any(), cm.finalizers().to_vec()))
                .collect(),
        )
    }
}

/// The events with `reason` regarding the mirror `namespace/mirror`.
pub async fn events_for(
    client: &Client,
    namespace: &str,
    mirror: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(mirror)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}
