//! Label, annotation and finalizer keys: the operator's marks on what it owns.

/// Marks a ConfigMap as a replica written by this operator. Replicas are
/// watched through this label only, so memory never grows with other ConfigMaps.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "configmirror";

/// The UID of the mirror owning a replica. A UID, not `<ns>.<name>`: label
/// values are limited to 63 characters and a mirror name alone can be 253.
pub const MIRROR_UID: &str = "mirror.configmirror.io/mirror-uid";

/// `<namespace>/<name>` of the owning mirror, for people reading the replica.
pub const MIRROR: &str = "mirror.configmirror.io/mirror";
/// `<namespace>/<name>` of the source ConfigMap.
pub const SOURCE: &str = "mirror.configmirror.io/source";
/// UID of the source ConfigMap.
pub const SOURCE_UID: &str = "mirror.configmirror.io/source-uid";
/// Hash of the replicated content (data, binaryData, immutable).
pub const CONTENT_HASH: &str = "mirror.configmirror.io/content-hash";

/// The Go reference's replica marker, `<mirror namespace>.<mirror name>`:
/// with `--adopt-reference-replicas` such a ConfigMap is adopted.
pub const REFERENCE_OWNER: &str = "mirror.configmirror.io/owner";

pub const FINALIZER: &str = "mirror.configmirror.io/finalizer";

/// ConfigMaps Kubernetes itself writes into namespaces: never sources.
pub const KUBERNETES_MANAGED_CONFIGMAPS: &[&str] = &[
    "kube-root-ca.crt",
    "openshift-service-ca.crt",
    "extension-apiserver-authentication",
    "cluster-info",
];

/// Annotation on a namespace, under `--require-source-opt-in`: the
/// namespaces whose ConfigMirrors may read its ConfigMaps, comma-separated,
/// or `*` for all.
pub const ALLOW_MIRRORS_FROM: &str = "mirror.configmirror.io/allow-mirrors-from";

/// Namespaces that are never a source or a target, listed or selected,
/// unless `--allow-protected-namespaces` (the operator's own is added at
/// start).
pub const DEFAULT_PROTECTED_NAMESPACES: &[&str] =
    &["kube-system", "kube-public", "kube-node-lease"];

/// Namespaces never targeted unless listed explicitly (the operator's own
/// namespace is added at start).
pub const DEFAULT_EXCLUDED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];
