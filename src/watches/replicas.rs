//! Replicas, found through the managed-by label only. Each arriving object
//! is reduced to `ReplicaMeta` (its content replaced by a hash), so a 1 MiB
//! ConfigMap fanned out to 1,000 namespaces costs kilobytes here, not a GiB.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::{Readiness, Trigger, TriggerSender};
use crate::api::keys;
use crate::plan::{ReplicaIndex, ReplicaMeta};

/// Mirror UIDs per replica list when loading many (keeps the selector,
/// and so the request line, to a few kilobytes).
const LOAD_CHUNK: usize = 50;

pub struct ReplicaCache {
    index: RwLock<ReplicaIndex>,
    ready: Readiness,
    /// Sharded: only replicas of these mirrors are kept (memory follows the
    /// member's share). `None`: every replica is kept.
    loaded: Option<Mutex<HashSet<String>>>,
}

/// The label selector of every replica this operator wrote.
pub fn managed_selector() -> String {
    format!("{}={}", keys::MANAGED_BY, keys::MANAGED_BY_VALUE)
}

impl ReplicaCache {
    /// `sharded`: keep only replicas of mirrors loaded with `ensure_loaded`.
    pub fn start(
        client: Client,
        triggers: TriggerSender,
        sharded: bool,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let (ready_tx, ready) = Readiness::new();
        let cache = Arc::new(Self {
            index: RwLock::new(ReplicaIndex::default()),
            ready,
            loaded: sharded.then(Default::default),
        });
        let this = cache.clone();
        let task = tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::all(client);
            let config = super::watch_config().labels(&managed_selector());
            let mut events = watcher(api, config).default_backoff().boxed();
            let mut buffer: Vec<ReplicaMeta> = Vec::new();
            loop {
                let Some(event) = super::next_event(&mut events, "replicas").await else {
                    return;
                };
                match event {
                    watcher::Event::Init => buffer.clear(),
                    watcher::Event::InitApply(cm) => {
                        if this.keeps(&cm) {
                            buffer.push(ReplicaMeta::from_configmap(&cm));
                        }
                    }
                    watcher::Event::InitDone => {
                        let owners = this.reset(std::mem::take(&mut buffer));
                        if ready_tx.send_replace(true) {
                            for mirror_uid in owners {
                                let _ = triggers.send(Trigger::Replica { mirror_uid });
                            }
                        }
                    }
                    watcher::Event::Apply(cm) => {
                        // Another shard's replica, or our own write coming back
                        // (already recorded, nothing to hash).
                        if !this.keeps(&cm) || this.already_seen(&cm) {
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
                        if !this.keeps(&cm) {
                            continue;
                        }
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

    fn keeps(&self, cm: &ConfigMap) -> bool {
        let Some(loaded) = &self.loaded else {
            return true;
        };
        let uid = cm
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(keys::MIRROR_UID));
        uid.is_some_and(|u| loaded.lock().unwrap().contains(u))
    }

    /// Sharded: starts keeping `mirror_uid`'s replicas, listing them once
    /// from the API (the watch keeps them current from then on).
    pub async fn ensure_loaded(
        &self,
        client: &Client,
        mirror_uid: &str,
    ) -> Result<(), kube::Error> {
        self.ensure_loaded_all(client, &[mirror_uid.to_string()])
            .await
    }

    /// `ensure_loaded` for many mirrors at once (a member acquiring a
    /// failed member's share): one list per `LOAD_CHUNK` mirrors instead of
    /// one per mirror.
    pub async fn ensure_loaded_all(
        &self,
        client: &Client,
        mirror_uids: &[String],
    ) -> Result<(), kube::Error> {
        let Some(loaded) = &self.loaded else {
            return Ok(());
        };
        // Marked before the list: a watch event racing the list is kept too,
        // and the index keeps whichever version is newer.
        let wanted: Vec<String> = {
            let mut l = loaded.lock().unwrap();
            mirror_uids
                .iter()
                .filter(|u| l.insert((*u).clone()))
                .cloned()
                .collect()
        };
        let api: Api<ConfigMap> = Api::all(client.clone());
        for (i, chunk) in wanted.chunks(LOAD_CHUNK).enumerate() {
            let selector = format!("{} in ({})", keys::MIRROR_UID, chunk.join(","));
            match api.list(&ListParams::default().labels(&selector)).await {
                Ok(listed) => {
                    let mut index = self.index.write().unwrap();
                    for cm in &listed.items {
                        index.observe(ReplicaMeta::from_configmap(cm));
                    }
                }
                Err(e) => {
                    // Not loaded after all: each reconcile tries again for its own.
                    let mut l = loaded.lock().unwrap();
                    for uid in &wanted[i * LOAD_CHUNK..] {
                        l.remove(uid);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sharded: forgets the replicas of mirrors this member no longer owns.
    pub fn retain_loaded(&self, owned: &HashSet<String>) {
        let Some(loaded) = &self.loaded else { return };
        let dropped: Vec<String> = {
            let mut l = loaded.lock().unwrap();
            let dropped = l.iter().filter(|u| !owned.contains(*u)).cloned().collect();
            l.retain(|u| owned.contains(u));
            dropped
        };
        if !dropped.is_empty() {
            let mut index = self.index.write().unwrap();
            for uid in dropped {
                index.drop_mirror(&uid);
            }
        }
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
