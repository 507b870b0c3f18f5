//! Replicas, found through the managed-by label only. Each arriving object
//! is reduced to `ReplicaMeta` (its content replaced by a hash), so a 1 MiB
//! ConfigMap fanned out to 1,000 namespaces costs kilobytes here, not a GiB.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::{Readiness, Trigger, TriggerSender};
use crate::api::keys;
use crate::plan::{ReplicaIndex, ReplicaMeta};

pub struct ReplicaCache {
    index: RwLock<ReplicaIndex>,
    ready: Readiness,
}

/// The label selector of every replica this operator wrote.
pub fn managed_selector() -> String {
    format!("{}={}", keys::MANAGED_BY, keys::MANAGED_BY_VALUE)
}

impl ReplicaCache {
    pub fn start(client: Client, triggers: TriggerSender) -> (Arc<Self>, JoinHandle<()>) {
        let (ready_tx, ready) = Readiness::new();
        let cache = Arc::new(Self {
            index: RwLock::new(ReplicaIndex::default()),
            ready,
        });
        let this = cache.clone();
        let task = tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::all(client);
            let config = watcher::Config::default().labels(&managed_selector());
            let mut events = watcher(api, config).default_backoff().boxed();
            let mut buffer: Vec<ReplicaMeta> = Vec::new();
            loop {
                let Some(event) = super::next_event(&mut events, "replicas").await else {
                    return;
                };
                match event {
                    watcher::Event::Init => buffer.clear(),
                    watcher::Event::InitApply(cm) => buffer.push(ReplicaMeta::from_configmap(&cm)),
                    watcher::Event::InitDone => {
                        let owners = this.reset(std::mem::take(&mut buffer));
                        if ready_tx.send_replace(true) {
                            for mirror_uid in owners {
                                let _ = triggers.send(Trigger::Replica { mirror_uid });
                            }
                        }
                    }
                    watcher::Event::Apply(cm) => {
                        // Our own write coming back: already recorded, nothing to hash.
                        if this.already_seen(&cm) {
                            continue;
                        }
                        let meta = ReplicaMeta::from_configmap(&cm);
                        let owner = meta.mirror_uid.clone();
                        let changed = this.index.write().unwrap().observe(meta);
                        if let (true, Some(mirror_uid)) = (changed, owner) {
                            let _ = triggers.send(Trigger::Replica { mirror_uid });
                        }
                    }
                    watcher::Event::Delete(cm) => {
                        let meta = ReplicaMeta::from_configmap(&cm);
                        this.index.write().unwrap().forget(
                            &meta.namespace,
                            &meta.name,
                            &meta.resource_version,
                        );
                        if let Some(mirror_uid) = meta.mirror_uid {
                            let _ = triggers.send(Trigger::Replica { mirror_uid });
                        }
                    }
                }
            }
        });
        (cache, task)
    }

    /// Replaces the index with a fresh list; returns the owners of entries
    /// that changed, appeared or vanished.
    fn reset(&self, fresh: Vec<ReplicaMeta>) -> BTreeSet<String> {
        let mut index = self.index.write().unwrap();
        let before: HashMap<(String, String), (String, Option<String>)> = fresh
            .iter()
            .filter_map(|m| {
                index.get(&m.namespace, &m.name).map(|old| {
                    (
                        (m.namespace.clone(), m.name.clone()),
                        (old.resource_version.clone(), old.mirror_uid.clone()),
                    )
                })
            })
            .collect();
        let mut owners = BTreeSet::new();
        for m in &fresh {
            match before.get(&(m.namespace.clone(), m.name.clone())) {
                Some((rv, _)) if *rv == m.resource_version => {}
                Some((_, old_owner)) => {
                    owners.extend(old_owner.iter().chain(m.mirror_uid.iter()).cloned())
                }
                None => owners.extend(m.mirror_uid.iter().cloned()),
            }
        }
        let fresh_keys: BTreeSet<(String, String)> = fresh
            .iter()
            .map(|m| (m.namespace.clone(), m.name.clone()))
            .collect();
        let vanished_owners: Vec<String> = index
            .all()
            .filter(|m| !fresh_keys.contains(&(m.namespace.clone(), m.name.clone())))
            .filter_map(|m| m.mirror_uid.clone())
            .collect();
        owners.extend(vanished_owners);
        index.reset(fresh);
        owners
    }

    fn already_seen(&self, cm: &ConfigMap) -> bool {
        let m = &cm.metadata;
        let (Some(ns), Some(name), Some(rv)) = (&m.namespace, &m.name, &m.resource_version) else {
            return false;
        };
        self.read()
            .get(ns, name)
            .is_some_and(|r| r.resource_version == *rv)
    }

    pub fn read(&self) -> RwLockReadGuard<'_, ReplicaIndex> {
        self.index.read().unwrap()
    }

    /// Records the result of our own write at once, before the watch
    /// delivers it, so the next plan does not repeat the write.
    pub fn observe_own_write(&self, meta: ReplicaMeta) {
        self.index.write().unwrap().observe(meta);
    }

    pub fn forget_own_delete(&self, namespace: &str, name: &str, resource_version: &str) {
        self.index
            .write()
            .unwrap()
            .forget(namespace, name, resource_version);
    }

    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }
}
