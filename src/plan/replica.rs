//! What a replica looks like: the source's content under the operator's marks.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::model::{JsonText, ReplicaMeta, SourceConfigMap};
use crate::api::keys;

/// The mirror a replica belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MirrorIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl MirrorIdentity {
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The Go reference's owner label value for this mirror.
    pub(crate) fn reference_owner(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// The labels every replica of `mirror` carries.
pub(crate) fn replica_labels(mirror: &MirrorIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            keys::MANAGED_BY.to_string(),
            keys::MANAGED_BY_VALUE.to_string(),
        ),
        (keys::MIRROR_UID.to_string(), mirror.uid.clone()),
    ])
}

pub(crate) fn replica_annotations(
    mirror: &MirrorIdentity,
    source: &SourceConfigMap,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (keys::MIRROR.to_string(), mirror.key()),
        (keys::SOURCE.to_string(), source.key()),
        (keys::SOURCE_UID.to_string(), source.uid.clone()),
        (keys::CONTENT_HASH.to_string(), source.content_hash.clone()),
    ])
}

/// A replica's metadata: the source's name, our marks, nothing of the source's own.
fn replica_meta(
    mirror: &MirrorIdentity,
    source: &SourceConfigMap,
    namespace: &str,
    resource_version: Option<String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(source.name.clone()),
        namespace: Some(namespace.to_string()),
        labels: Some(replica_labels(mirror)),
        annotations: Some(replica_annotations(mirror, source)),
        resource_version,
        ..Default::default()
    }
}

/// The replica of `source` in `namespace`: same name, data, binaryData and
/// immutable; the source's own labels and annotations are not copied. No
/// ownerReferences: Kubernetes forbids them across namespaces. Decodes the
/// source's held JSON, so it is for tests and tools: writes send
/// `replica_body`, which embeds that JSON as it is.
pub fn desired_configmap(
    mirror: &MirrorIdentity,
    source: &SourceConfigMap,
    namespace: &str,
    resource_version: Option<String>,
) -> ConfigMap {
    let content = source.content.decode();
    ConfigMap {
        metadata: replica_meta(mirror, source, namespace, resource_version),
        data: (!content.data.is_empty()).then_some(content.data),
        binary_data: (!content.binary_data.is_empty()).then_some(content.binary_data),
        immutable: content.immutable.then_some(true),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplicaBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_data: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    immutable: Option<bool>,
}

/// `desired_configmap` as a request body, embedding the source's
/// pre-serialized content instead of copying it per target.
pub(crate) fn replica_body(
    mirror: &MirrorIdentity,
    source: &SourceConfigMap,
    namespace: &str,
    resource_version: Option<String>,
) -> Vec<u8> {
    let body = ReplicaBody {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: replica_meta(mirror, source, namespace, resource_version),
        data: source.content.data.as_ref().map(JsonText::raw),
        binary_data: source.content.binary_data.as_ref().map(JsonText::raw),
        immutable: source.content.immutable.then_some(true),
    };
    serde_json::to_vec(&body).expect("a replica serializes")
}

/// Whether an existing replica already is exactly what `desired_configmap`
/// would write: same content and the same marks.
pub(crate) fn in_sync(
    replica: &ReplicaMeta,
    mirror: &MirrorIdentity,
    source: &SourceConfigMap,
) -> bool {
    replica.actual_hash == source.content_hash
        && replica.recorded_hash.as_deref() == Some(source.content_hash.as_str())
        && replica.mirror_uid.as_deref() == Some(mirror.uid.as_str())
        && is_key(replica.mirror.as_deref(), &mirror.namespace, &mirror.name)
        && is_key(replica.source.as_deref(), &source.namespace, &source.name)
        && replica.source_uid.as_deref() == Some(source.uid.as_str())
}

/// `value == "<namespace>/<name>"`, without building the string (this runs
/// once per replica per reconcile).
fn is_key(value: Option<&str>, namespace: &str, name: &str) -> bool {
    value
        .and_then(|v| v.strip_prefix(namespace))
        .and_then(|v| v.strip_prefix('/'))
        == Some(name)
}
