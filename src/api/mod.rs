//! The ConfigMirror custom resource: a superset of the Go reference's CRD
//! (same group, version and kind), generated from these types by `crdgen`.

// The CRD derives emit copies of these types where `unreachable_pub`
// cannot see that they are exported: every type here is public API.
#![allow(unreachable_pub)]

pub mod keys;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// A DNS-1123 label: what Kubernetes accepts as a namespace name.
pub const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// `targetNamespaces` holds at least this many names.
pub const MAX_TARGET_NAMESPACES: usize = 5000;
/// Status lists are bounded so a mirror's status stays far below etcd's
/// object size limit whatever the number of sources and targets.
pub const MAX_PROBLEMS: usize = 20;
pub const MAX_REPLICATED_CONFIGMAPS: usize = 100;
pub const MAX_TARGETS_PER_ENTRY: usize = 20;

/// Copies the ConfigMaps of one namespace, chosen by a label selector, into
/// target namespaces and keeps the copies in sync.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
// Several printcolumns share `type_ = "integer"`; that is not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "mirror.configmirror.io",
    version = "v1alpha1",
    kind = "ConfigMirror",
    namespaced,
    status = "ConfigMirrorStatus",
    shortname = "cmirror",
    category = "configmirror",
    doc = "Copies the ConfigMaps of a source namespace, chosen by a label selector, into target namespaces and keeps the copies in sync.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Sources", type_ = "integer", json_path = ".status.sources"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Conflicts", type_ = "integer", json_path = ".status.conflicts"),
    printcolumn(name = "Shard", type_ = "string", json_path = ".status.shard.member"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.targetNamespaces) || !(self.sourceNamespace in self.targetNamespaces)")
        .message("sourceNamespace must not be listed in targetNamespaces: a namespace cannot mirror into itself"),
    validation = Rule::new("(has(self.targetNamespaces) && size(self.targetNamespaces) > 0) || has(self.targetNamespaceSelector)")
        .message("set targetNamespaces, targetNamespaceSelector, or both: a mirror needs targets")
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMirrorSpec {
    /// The namespace whose ConfigMaps are copied. Never a target itself.
    #[schemars(length(min = 1, max = 63), pattern(DNS1123_LABEL))]
    pub source_namespace: String,

    /// Namespaces to copy into. A listed namespace that does not exist yet
    /// is reported in status and filled once it appears.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 5000),
        inner(length(min = 1, max = 63), pattern(DNS1123_LABEL))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub target_namespaces: Vec<String>,

    /// Namespaces to copy into, by label. `{}` selects every namespace except
    /// the source namespace and the excluded system namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace_selector: Option<LabelSelector>,

    /// Which ConfigMaps of the source namespace to copy. Empty or absent
    /// selects all of them (never Kubernetes-managed ones or replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Where the replicated ConfigMaps are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Record this mirror's ConfigMaps in PostgreSQL.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A Secret with the database's credentials (keys host, port, dbname,
    /// username, password, optional sslmode and sslrootcert; or one `uri`).
    /// The connection uses TLS unless the Secret names an sslmode (key
    /// `sslmode`, or `sslmode=` in the `uri`): `verify-full` when it has
    /// `sslrootcert` (a PEM CA certificate), `require` otherwise; `disable`
    /// only when it says so. A database that cannot be connected to is
    /// reported only as unreachable; the operator's log has the cause.
    /// Absent: the operator's own database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            secret_ref: None,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Defaults to the mirror's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), pattern(DNS1123_LABEL))]
    pub namespace: Option<String>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMirrorStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Conflict`, `DatabaseSynced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Source ConfigMaps the selector matches.
    #[serde(default)]
    pub sources: i32,
    /// Target namespaces the spec resolves to (including missing ones).
    #[serde(default)]
    pub targets: i32,
    /// Replicas in sync with their source.
    #[serde(default)]
    pub replicas: i32,
    /// Replicas blocked by a ConfigMap this mirror does not own.
    #[serde(default)]
    pub conflicts: i32,

    /// What stands between this mirror and Ready, at most 20 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub problems: Vec<Problem>,

    /// Per source: where it is replicated (reference-compatible; bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub replicated_config_maps: Vec<ReplicatedConfigMap>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_status: Option<DatabaseStatus>,

    /// Which member reconciles this mirror (`local` when not sharded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardStatus>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The target namespace concerned (empty for the whole mirror).
    #[serde(default)]
    pub namespace: String,
    /// The ConfigMap concerned (empty for a whole namespace).
    #[serde(default)]
    pub name: String,
    /// A CamelCase reason: Conflict, NamespaceMissing, WriteFailed, ...
    pub reason: String,
    pub message: String,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatedConfigMap {
    pub name: String,
    pub source_namespace: String,
    /// Up to 20 target namespaces holding an in-sync replica.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub targets: Vec<String>,
    /// How many target namespaces hold an in-sync replica.
    #[serde(default)]
    pub target_count: i32,
    /// When a replica of this source was last written (not when it was last checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    pub connected: bool,
    /// When rows last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// The member reconciling this mirror, or `local`.
    pub member: String,
    /// The assignment's epoch (0 when not sharded).
    #[serde(default)]
    pub epoch: i64,
}

/// The CRD as YAML, exactly as `configmirror crdgen` prints it and crds/ holds it.
pub fn crd_yaml() -> String {
    let crd = ConfigMirror::crd();
    format!(
        "# Generated by `configmirror crdgen` from src/api; do not edit.\n{}",
        serde_yaml::to_string(&crd).expect("the CRD serializes")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// crds/ holds exactly what `crdgen` prints: regenerate it (and the
    /// chart's copy) with `deploy/generate` when the types change.
    #[test]
    fn committed_crd_is_current() {
        let committed = include_str!("../../crds/configmirror.yaml");
        assert!(
            committed == crd_yaml(),
            "crds/configmirror.yaml is stale: run deploy/generate"
        );
    }

    #[test]
    fn the_short_name_is_never_cm() {
        let crd = ConfigMirror::crd();
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec!["cmirror".to_string()])
        );
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("configmirrors.mirror.configmirror.io")
        );
    }

    #[test]
    fn every_printer_column_points_at_a_field_status_has() {
        let status = ConfigMirrorStatus {
            shard: Some(ShardStatus {
                member: "local".into(),
                epoch: 0,
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        for field in ["sources", "replicas", "conflicts"] {
            assert!(
                json.get(field).is_some(),
                "{field} is always serialized so its column shows a value"
            );
        }
        assert_eq!(json["shard"]["member"], "local");
    }

    #[test]
    fn target_namespaces_allow_five_thousand_entries() {
        let yaml = crd_yaml();
        assert!(yaml.contains("maxItems: 5000"));
    }
}
