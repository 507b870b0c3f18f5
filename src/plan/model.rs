//! The planner's view of the world: sources, replicas and namespaces as
//! plain values, built by the watches and read by the pure planner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

pub use super::content::{JsonText, ReplicaContent, SourceContent};
use super::hash::{configmap_hash, content_hash};
use crate::api::keys;

/// A source ConfigMap, hashed once when it enters the cache so that fanning
/// it out to thousands of targets never hashes it again.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfigMap {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `data` and `binaryData` held once, as JSON: every replica's request
    /// body and every row embed it instead of copying the maps per target
    /// (a 1 MiB source fanned out 1,000 times).
    pub content: SourceContent,
    pub content_hash: String,
    /// When the operator saw this version (replication lag starts here).
    pub observed_at: Option<std::time::Instant>,
}

impl SourceConfigMap {
    pub fn from_configmap(cm: &ConfigMap) -> Self {
        Self::from_owned(cm.clone())
    }

    /// From an object the caller gives up: its maps are hashed and
    /// serialized, then dropped, never copied.
    pub(crate) fn from_owned(mut cm: ConfigMap) -> Self {
        let content = ReplicaContent::take(&mut cm);
        let meta = cm.metadata;
        Self {
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name.unwrap_or_default(),
            uid: meta.uid.unwrap_or_default(),
            resource_version: meta.resource_version.unwrap_or_default(),
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            content_hash: content_hash(&content),
            content: SourceContent::of(&content),
            observed_at: None,
        }
    }

    /// `<namespace>/<name>`, as replicas' source annotation spells it.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether this ConfigMap may be a source at all: never a replica (no
    /// chains or loops) and never one Kubernetes itself manages.
    pub(crate) fn eligible(&self) -> bool {
        !keys::KUBERNETES_MANAGED_CONFIGMAPS.contains(&self.name.as_str())
            && self.labels.get(keys::MANAGED_BY).map(String::as_str) != Some(keys::MANAGED_BY_VALUE)
    }
}

/// What the operator keeps of a replica: its metadata and the hash of the
/// content it holds. Replicas are watched as metadata only, so memory does
/// not grow with their size; `actual_hash` is what we wrote, what we read
/// and hashed, or (see `watches::replica_content`) the recorded annotation
/// when nobody else can have touched the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub mirror_uid: Option<String>,
    pub mirror: Option<String>,
    pub source: Option<String>,
    pub source_uid: Option<String>,
    pub recorded_hash: Option<String>,
    pub actual_hash: String,
    pub immutable: bool,
}

impl ReplicaMeta {
    /// From a whole object read from the API: its content is hashed here.
    pub fn from_configmap(cm: &ConfigMap) -> Self {
        let hash = configmap_hash(cm);
        Self::from_parts(&cm.metadata, hash, cm.immutable.unwrap_or(false))
    }

    /// From metadata and an already known content hash (our own writes:
    /// we know what we wrote and need not hash it again).
    pub(crate) fn from_parts(meta: &ObjectMeta, actual_hash: String, immutable: bool) -> Self {
        let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
        let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            mirror_uid: label(keys::MIRROR_UID),
            mirror: annotation(keys::MIRROR),
            source: annotation(keys::SOURCE),
            source_uid: annotation(keys::SOURCE_UID),
            recorded_hash: annotation(keys::CONTENT_HASH),
            actual_hash,
            immutable,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
    /// The `allow-mirrors-from` annotation, the only one the policy reads.
    pub allow_mirrors_from: Option<String>,
}

pub type Namespaces = HashMap<String, NamespaceMeta>;

type Key = (String, String);

/// Every replica the operator can see, by (namespace, name) and by owning
/// mirror. Fed by the replica watch and by the operator's own writes: an
/// entry is replaced only by a newer resourceVersion, so a watch event that
/// lags behind our write never resurrects old state.
#[derive(Debug, Default)]
pub struct ReplicaIndex {
    /// namespace → name → replica: looked up by `&str`, without allocating
    /// (a plan over 10,000 targets does 10,000 lookups).
    by_namespace: HashMap<String, HashMap<String, ReplicaMeta>>,
    by_mirror: HashMap<String, BTreeSet<Key>>,
    /// resourceVersions at which we deleted a replica: older events are stale.
    tombstones: HashMap<Key, String>,
}

/// Whether resourceVersion `a` is older than `b`. Kubernetes calls them
/// opaque, but they are etcd revisions; when either is not a number we
/// cannot tell and say no, which at worst costs a precondition failure.
pub(crate) fn older(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

impl ReplicaIndex {
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<&ReplicaMeta> {
        self.by_namespace.get(namespace)?.get(name)
    }

    pub(crate) fn owned_by<'a>(
        &'a self,
        mirror_uid: &str,
    ) -> impl Iterator<Item = &'a ReplicaMeta> + 'a {
        self.by_mirror
            .get(mirror_uid)
            .into_iter()
            .flatten()
            .filter_map(|(ns, name)| self.get(ns, name))
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &ReplicaMeta> {
        self.by_namespace.values().flat_map(HashMap::values)
    }

    fn remove(&mut self, namespace: &str, name: &str) -> Option<ReplicaMeta> {
        let names = self.by_namespace.get_mut(namespace)?;
        let removed = names.remove(name);
        if names.is_empty() {
            self.by_namespace.remove(namespace);
        }
        removed
    }

    /// Records a replica seen on the watch or written by us. Returns false
    /// when the entry already held this or a newer version.
    pub fn observe(&mut self, meta: ReplicaMeta) -> bool {
        let key = (meta.namespace.clone(), meta.name.clone());
        if let Some(dead) = self.tombstones.get(&key) {
            if !older(dead, &meta.resource_version) {
                return false;
            }
            self.tombstones.remove(&key);
        }
        if let Some(current) = self.get(&key.0, &key.1)
            && (current.resource_version == meta.resource_version
                || older(&meta.resource_version, &current.resource_version))
        {
            return false;
        }
        self.unlink(&key);
        if let Some(uid) = &meta.mirror_uid {
            self.by_mirror
                .entry(uid.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_namespace
            .entry(key.0)
            .or_default()
            .insert(key.1, meta);
        true
    }

    /// Removes a replica. `resource_version` is its last version: events
    /// carrying it or an older one arrive late and are ignored.
    pub(crate) fn forget(&mut self, namespace: &str, name: &str, resource_version: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(current) = self.get(namespace, name)
            && older(resource_version, &current.resource_version)
        {
            return;
        }
        self.unlink(&key);
        self.remove(namespace, name);
        self.tombstones.insert(key, resource_version.to_string());
    }

    /// Forgets every replica of one mirror (a sharded member lost it).
    pub(crate) fn drop_mirror(&mut self, mirror_uid: &str) {
        for (ns, name) in self.by_mirror.remove(mirror_uid).into_iter().flatten() {
            self.remove(&ns, &name);
        }
    }

    /// Replaces everything after a fresh list.
    pub(crate) fn reset(&mut self, metas: impl IntoIterator<Item = ReplicaMeta>) {
        self.by_namespace.clear();
        self.by_mirror.clear();
        self.tombstones.clear();
        for meta in metas {
            self.observe(meta);
        }
    }

    fn unlink(&mut self, key: &Key) {
        if let Some(uid) = self.get(&key.0, &key.1).and_then(|m| m.mirror_uid.clone())
            && let Some(keys) = self.by_mirror.get_mut(&uid)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.by_mirror.remove(&uid);
            }
        }
    }
}
