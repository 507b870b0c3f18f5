//! Namespaces, metadata only: labels (for target selectors) and whether
//! they are being deleted.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use super::{Readiness, Trigger, TriggerSender};
use crate::plan::{NamespaceMeta, Namespaces};

pub struct NamespaceCache {
    namespaces: RwLock<Namespaces>,
    ready: Readiness,
}

fn meta_of(ns: &PartialObjectMeta<Namespace>) -> NamespaceMeta {
    NamespaceMeta {
        labels: ns.labels().clone(),
        terminating: ns.metadata.deletion_timestamp.is_some(),
    }
}

impl NamespaceCache {
    /// Starts the watch; the cache is ready after its first full list.
    pub fn start(client: Client, triggers: TriggerSender) -> (Arc<Self>, JoinHandle<()>) {
        let (ready_tx, ready) = Readiness::new();
        let cache = Arc::new(Self {
            namespaces: RwLock::new(Namespaces::new()),
            ready,
        });
        let this = cache.clone();
        let task = tokio::spawn(async move {
            // Metadata-only requests: labels and deletion are all we read.
            let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
            let mut events = watcher(api, super::watch_config())
                .default_backoff()
                .boxed();
            let mut buffer = Namespaces::new();
            loop {
                let Some(event) = super::next_event(&mut events, "namespaces").await else {
                    return;
                };
                match event {
                    watcher::Event::Init => buffer.clear(),
                    watcher::Event::InitApply(ns) => {
                        buffer.insert(ns.name_any(), meta_of(&ns));
                    }
                    watcher::Event::InitDone => {
                        let fresh = std::mem::take(&mut buffer);
                        let changed = this.replace(fresh);
                        if ready_tx.send_replace(true) {
                            // Not the first list: tell mirrors what changed while we were away.
                            for name in changed {
                                let _ = triggers.send(Trigger::Namespace { name });
                            }
                        }
                    }
                    watcher::Event::Apply(ns) => {
                        let (name, meta) = (ns.name_any(), meta_of(&ns));
                        let old = this
                            .namespaces
                            .write()
                            .unwrap()
                            .insert(name.clone(), meta.clone());
                        if old.as_ref() != Some(&meta) {
                            let _ = triggers.send(Trigger::Namespace { name });
                        }
                    }
                    watcher::Event::Delete(ns) => {
                        let name = ns.name_any();
                        this.namespaces.write().unwrap().remove(&name);
                        let _ = triggers.send(Trigger::Namespace { name });
                    }
                }
            }
        });
        (cache, task)
    }

    /// Swaps in a fresh list; returns the namespaces that differ.
    fn replace(&self, fresh: Namespaces) -> Vec<String> {
        let mut current = self.namespaces.write().unwrap();
        let mut changed: Vec<String> = fresh
            .iter()
            .filter(|(name, meta)| current.get(*name) != Some(meta))
            .map(|(name, _)| name.clone())
            .collect();
        changed.extend(current.keys().filter(|n| !fresh.contains_key(*n)).cloned());
        *current = fresh;
        changed
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Namespaces> {
        self.namespaces.read().unwrap()
    }

    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }
}
