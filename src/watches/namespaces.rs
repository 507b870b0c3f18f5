//! Namespaces, metadata only: labels (for target selectors), whether they
//! are being deleted, and the source opt-in annotation.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use tracing::Instrument;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use super::{Cache, Readiness, Trigger, TriggerSender, Watch};
use crate::api::keys;
use crate::plan::{NamespaceMeta, Namespaces};

pub(crate) struct NamespaceCache {
    namespaces: RwLock<Namespaces>,
    ready: Readiness,
}

fn meta_of(ns: &PartialObjectMeta<Namespace>) -> NamespaceMeta {
    NamespaceMeta {
        labels: ns.labels().clone(),
        terminating: ns.metadata.deletion_timestamp.is_some(),
        allow_mirrors_from: ns.annotations().get(keys::ALLOW_MIRRORS_FROM).cloned(),
    }
}

impl NamespaceCache {
    /// Starts the watch; the cache is ready after its first full list.
    pub(crate) fn start(client: Client, triggers: TriggerSender) -> (Arc<Self>, JoinHandle<()>) {
        let (ready_tx, ready) = Readiness::new();
        let cache = Arc::new(Self {
            namespaces: RwLock::new(Namespaces::new()),
            ready,
        });
        // Metadata-only requests: labels, one annotation and deletion are all we read.
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let events = super::events(api, super::watch_config(), Watch::Namespaces);
        let feed = Feed {
            cache: cache.clone(),
            triggers,
        };
        let span = tracing::info_span!("watch", watch = "namespaces");
        let task =
            tokio::spawn(super::run(feed, events, ready_tx, "namespaces".into()).instrument(span));
        (cache, task)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Namespaces> {
        self.namespaces.read().unwrap()
    }

    pub(crate) fn readiness(&self) -> Readiness {
        self.ready.clone()
    }
}

/// The namespace watch's side of the cache: any change of labels or
/// deletion is news to the mirrors that select or read that namespace.
struct Feed {
    cache: Arc<NamespaceCache>,
    triggers: TriggerSender,
}

impl Feed {
    fn tell(&self, name: String) {
        let _ = self.triggers.send(Trigger::Namespace { name });
    }
}

impl Cache for Feed {
    type Object = PartialObjectMeta<Namespace>;
    type List = Namespaces;
    type Changes = Vec<String>;

    fn list(&self, list: &mut Namespaces, ns: Self::Object) {
        list.insert(ns.name_any(), meta_of(&ns));
    }

    async fn replace(&self, fresh: Namespaces) -> Vec<String> {
        let mut current = self.cache.namespaces.write().unwrap();
        let changed = super::diff(&current, &fresh, |old, new| old == new)
            .into_iter()
            .map(|(name, _)| name.clone())
            .collect();
        *current = fresh;
        changed
    }

    fn relisted(&self, changed: Vec<String>, first: bool) {
        if !first {
            // Tell mirrors what changed while we were away.
            for name in changed {
                self.tell(name);
            }
        }
    }

    fn apply(&self, ns: Self::Object) {
        let (name, meta) = (ns.name_any(), meta_of(&ns));
        let old = self
            .cache
            .namespaces
            .write()
            .unwrap()
            .insert(name.clone(), meta.clone());
        if old.as_ref() != Some(&meta) {
            self.tell(name);
        }
    }

    fn delete(&self, ns: Self::Object) {
        let name = ns.name_any();
        self.cache.namespaces.write().unwrap().remove(&name);
        self.tell(name);
    }
}
