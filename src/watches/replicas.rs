//! Replicas, found through the managed-by label only and watched as
//! metadata only (a watcher over `Api<PartialObjectMeta<ConfigMap>>`,
//! what kube 5 made of `metadata_watcher`): a 1 MiB ConfigMap fanned out to
//! 1,000 namespaces costs kilobytes here, not a GiB, at start as much as
//! later. What each replica holds is known without its content (see
//! `content`): what we wrote, what we read of a change someone else made,
//! or its recorded hash when nobody else owns its content fields.
//!
//! Lists are consistent and paginated, unlike the other watches (see
//! `watches::watch_config`): the API server ignores `limit` at
//! resourceVersion=0 (kube then sends no resourceVersion anyway), so a
//! paginated list is a consistent one. Kubernetes 1.34 serves both its
//! first page and each continuation from the watch cache
//! (ConsistentListFromCache, ListFromCacheSnapshot), reading etcd only when
//! the cache cannot catch up within seconds; the replicas of a large
//! cluster then never arrive as one response of every replica at once.

mod content;
mod feed;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tracing::Instrument;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Readiness, Trigger, TriggerSender, Watch};
use crate::api::keys;
use crate::plan::model::older;
use crate::plan::{ReplicaIndex, ReplicaMeta};
use content::Pending;
use feed::Feed;

/// Mirror UIDs per replica list when loading many (keeps the selector,
/// and so the request line, to a few kilobytes).
const LOAD_CHUNK: usize = 50;
/// Replicas per list page (metadata: about a kilobyte each).
const PAGE_SIZE: u32 = 500;

pub(crate) struct ReplicaCache {
    index: RwLock<ReplicaIndex>,
    ready: Readiness,
    /// Sharded: only replicas of these mirrors are kept (memory follows the
    /// member's share). `None`: every replica is kept.
    loaded: Option<Mutex<HashSet<String>>>,
    /// `--watch-namespace`: only replicas of mirrors in these namespaces
    /// are kept (empty: all). Another scope's replicas are not this
    /// process's to index, nor to read when someone changes them.
    mirror_namespaces: BTreeSet<String>,
}

/// The label selector of every replica this operator wrote.
pub(crate) fn managed_selector() -> String {
    format!("{}={}", keys::MANAGED_BY, keys::MANAGED_BY_VALUE)
}

/// A replica in a (re-)list, before the index takes the list.
enum Listed {
    Known(ReplicaMeta),
    /// Its content must be read first.
    Read(String, String),
}

impl ReplicaCache {
    /// `sharded`: keep only replicas of mirrors loaded with `ensure_loaded`.
    pub(crate) fn start(
        client: Client,
        triggers: TriggerSender,
        sharded: bool,
        mirror_namespaces: BTreeSet<String>,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let (ready_tx, ready) = Readiness::new();
        let cache = Arc::new(Self {
            index: RwLock::new(ReplicaIndex::default()),
            ready,
            loaded: sharded.then(Default::default),
            mirror_namespaces,
        });
        let pending = cache.start_reader(client.clone(), triggers.clone());
        let api: Api<PartialObjectMeta<ConfigMap>> = Api::all(client.clone());
        let config = watcher::Config::default()
            .labels(&managed_selector())
            .page_size(PAGE_SIZE);
        let events = super::events(api, config, Watch::Replicas);
        let feed = Feed {
            cache: cache.clone(),
            client,
            triggers,
            pending,
        };
        let span = tracing::info_span!("watch", watch = "replicas");
        let task =
            tokio::spawn(super::run(feed, events, ready_tx, "replicas".into()).instrument(span));
        (cache, task)
    }

    /// The background reader of changes someone else made; what it reads
    /// enters the index and wakes the mirrors concerned.
    fn start_reader(
        self: &Arc<Self>,
        client: Client,
        triggers: TriggerSender,
    ) -> mpsc::UnboundedSender<Pending> {
        let (this, that) = (self.clone(), self.clone());
        let still_unknown = move |p: &Pending| {
            !this.read().get(&p.namespace, &p.name).is_some_and(|r| {
                r.resource_version == p.resource_version
                    || older(&p.resource_version, &r.resource_version)
            })
        };
        let found = move |meta: ReplicaMeta| {
            if !that.keeps_owner(meta.mirror_uid.as_deref()) {
                return;
            }
            let mut owners: Vec<String> = meta.mirror_uid.iter().cloned().collect();
            let mut index = that.index.write().unwrap();
            owners.extend(
                index
                    .get(&meta.namespace, &meta.name)
                    .and_then(|old| old.mirror_uid.clone()),
            );
            if index.observe(meta) {
                drop(index);
                owners.dedup();
                for mirror_uid in owners {
                    let _ = triggers.send(Trigger::Replica { mirror_uid });
                }
            }
        };
        // The reader ends when the watch task (the only sender) does.
        let (tx, _reader) = content::start_reader(client, still_unknown, found);
        tx
    }

    /// What a listed replica is known to hold, or that it must be read:
    /// unchanged since we knew it, first seen and trusted, or neither.
    fn listed(&self, meta: &ObjectMeta) -> Listed {
        let (ns, name, rv) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
            meta.resource_version.clone().unwrap_or_default(),
        );
        match self.read().get(&ns, &name) {
            Some(known) if known.resource_version == rv || older(&rv, &known.resource_version) => {
                return Listed::Known(known.clone());
            }
            // Changed while the watch was down: by us or by someone else.
            Some(_) => return Listed::Read(ns, name),
            None => {}
        }
        match content::trusted(meta) {
            Some(known) => Listed::Known(known),
            None => Listed::Read(ns, name),
        }
    }

    /// Replaces the index with a fresh list (keeping what we recorded of a
    /// newer version meanwhile); returns the owners of entries that changed,
    /// appeared or vanished.
    fn reset(&self, fresh: Vec<ReplicaMeta>) -> BTreeSet<String> {
        let mut index = self.index.write().unwrap();
        let mut owners = BTreeSet::new();
        let mut keys = HashSet::with_capacity(fresh.len());
        let mut kept = Vec::with_capacity(fresh.len());
        for m in fresh {
            keys.insert((m.namespace.clone(), m.name.clone()));
            match index.get(&m.namespace, &m.name) {
                Some(old)
                    if old.resource_version == m.resource_version
                        || older(&m.resource_version, &old.resource_version) =>
                {
                    kept.push(old.clone());
                }
                Some(old) => {
                    owners.extend(old.mirror_uid.iter().chain(m.mirror_uid.iter()).cloned());
                    kept.push(m);
                }
                None => {
                    owners.extend(m.mirror_uid.iter().cloned());
                    kept.push(m);
                }
            }
        }
        owners.extend(
            index
                .all()
                .filter(|m| !keys.contains(&(m.namespace.clone(), m.name.clone())))
                .filter_map(|m| m.mirror_uid.clone()),
        );
        index.reset(kept);
        owners
    }

    fn keeps(&self, meta: &ObjectMeta) -> bool {
        if !self.mirror_namespaces.is_empty() {
            let mirror_namespace = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(keys::MIRROR))
                .and_then(|m| m.split_once('/'))
                .map(|(ns, _)| ns);
            // (One without the annotation is kept: it cannot be placed.)
            if mirror_namespace.is_some_and(|ns| !self.mirror_namespaces.contains(ns)) {
                return false;
            }
        }
        self.keeps_owner(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(keys::MIRROR_UID))
                .map(String::as_str),
        )
    }

    fn keeps_owner(&self, mirror_uid: Option<&str>) -> bool {
        let Some(loaded) = &self.loaded else {
            return true;
        };
        mirror_uid.is_some_and(|u| loaded.lock().unwrap().contains(u))
    }

    /// Sharded: starts keeping `mirror_uid`'s replicas, listing them once
    /// from the API (the watch keeps them current from then on).
    pub(crate) async fn ensure_loaded(
        &self,
        client: &Client,
        mirror_uid: &str,
    ) -> Result<(), kube::Error> {
        self.ensure_loaded_all(client, &[mirror_uid.to_string()])
            .await
    }

    /// `ensure_loaded` for many mirrors at once (a member acquiring a
    /// failed member's share): one paginated metadata list per
    /// `LOAD_CHUNK` mirrors instead of one list per mirror.
    pub(crate) async fn ensure_loaded_all(
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
        for (i, chunk) in wanted.chunks(LOAD_CHUNK).enumerate() {
            if let Err(e) = self.load(client, chunk).await {
                // Not loaded after all: each reconcile tries again for its own.
                let mut l = loaded.lock().unwrap();
                for uid in &wanted[i * LOAD_CHUNK..] {
                    l.remove(uid);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Lists the replicas of `mirror_uids` (metadata, page by page) into
    /// the index, reading those whose recorded hash cannot be trusted.
    async fn load(&self, client: &Client, mirror_uids: &[String]) -> Result<(), kube::Error> {
        let api: Api<ConfigMap> = Api::all(client.clone());
        let selector = format!("{} in ({})", keys::MIRROR_UID, mirror_uids.join(","));
        let mut params = ListParams::default().labels(&selector).limit(PAGE_SIZE);
        loop {
            let page = api.list_metadata(&params).await?;
            let listed: Vec<Listed> = page
                .items
                .iter()
                .map(|o| self.listed(&o.metadata))
                .collect();
            for m in settle(client, listed).await {
                self.index.write().unwrap().observe(m);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(()),
            }
        }
    }

    /// Sharded: forgets the replicas of mirrors this member no longer owns.
    pub(crate) fn retain_loaded(&self, owned: &HashSet<String>) {
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

    /// Whether the index already holds this version of a replica, or a newer one.
    fn already_seen(&self, meta: &ObjectMeta) -> bool {
        let (Some(ns), Some(name), Some(rv)) =
            (&meta.namespace, &meta.name, &meta.resource_version)
        else {
            return false;
        };
        self.read()
            .get(ns, name)
            .is_some_and(|r| r.resource_version == *rv || older(rv, &r.resource_version))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ReplicaIndex> {
        self.index.read().unwrap()
    }

    /// Records the result of our own write at once, before the watch
    /// delivers it, so the next plan does not repeat the write.
    pub(crate) fn observe_own_write(&self, meta: ReplicaMeta) {
        self.index.write().unwrap().observe(meta);
    }

    pub(crate) fn forget_own_delete(&self, namespace: &str, name: &str, resource_version: &str) {
        self.index
            .write()
            .unwrap()
            .forget(namespace, name, resource_version);
    }

    pub(crate) fn readiness(&self) -> Readiness {
        self.ready.clone()
    }
}

/// Reads what must be read (`content::READS_AT_ONCE` at a time) and returns
/// every listed replica whose content is now known; one that could not be
/// read is left out, so the plan neither trusts nor rewrites it until a
/// later event or list.
async fn settle(client: &Client, listed: Vec<Listed>) -> Vec<ReplicaMeta> {
    let mut known = Vec::with_capacity(listed.len());
    let mut to_read = Vec::new();
    for l in listed {
        match l {
            Listed::Known(m) => known.push(m),
            Listed::Read(ns, name) => to_read.push((ns, name)),
        }
    }
    if !to_read.is_empty() {
        tracing::info!(
            count = to_read.len(),
            "reading replicas whose content the list cannot vouch for"
        );
        known.extend(content::read_all(client, to_read).await);
    }
    known
}
