//! Source ConfigMaps: one watch per source namespace in use, filtered by
//! label when every mirror reading that namespace uses the same selector,
//! and never fetching replicas or `kube-root-ca.crt`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracing::Instrument;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::{Cache, Change, Error, Readiness, Trigger, TriggerSender, Watch};
use crate::api::keys;
use crate::plan::SourceConfigMap;
use crate::plan::selector::Selector;

type Sources = HashMap<String, Arc<SourceConfigMap>>;
type Store = Arc<RwLock<Sources>>;

struct NamespaceWatch {
    /// The mirrors' selector this watch filters by; `everything()` for a
    /// namespace-wide watch.
    filter: Selector,
    store: Store,
    ready: Readiness,
    started: Instant,
    task: JoinHandle<()>,
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct SourceCache {
    client: Client,
    triggers: TriggerSender,
    watches: Mutex<HashMap<String, NamespaceWatch>>,
    sync_timeout: Duration,
}

/// How long a namespace-wide watch stays wide after a second selector
/// stopped needing it: mirrors moving between members or being edited
/// would otherwise make the watch relist back and forth.
const NARROW_AFTER: Duration = Duration::from_secs(60);

/// The one filter that serves every selector in `wanted`: that selector if
/// they all agree, else the whole namespace.
fn filter_for(wanted: &BTreeSet<Selector>) -> Selector {
    match wanted.iter().collect::<Vec<_>>()[..] {
        [only] => only.clone(),
        _ => Selector::everything(),
    }
}

impl SourceCache {
    pub(crate) fn new(
        client: Client,
        triggers: TriggerSender,
        sync_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            triggers,
            watches: Mutex::new(HashMap::new()),
            sync_timeout,
        })
    }

    /// The ConfigMaps of `namespace` that `selector` may select (and maybe
    /// more), once the namespace's watch has its first complete list.
    pub(crate) async fn sources(
        &self,
        namespace: &str,
        selector: &Selector,
    ) -> Result<Vec<Arc<SourceConfigMap>>, Error> {
        let deadline = tokio::time::Instant::now() + self.sync_timeout;
        loop {
            let (store, mut ready) = self.watch_covering(namespace, selector);
            match tokio::time::timeout_at(deadline, ready.wait()).await {
                Ok(true) => return Ok(store.read().unwrap().values().cloned().collect()),
                // The watch was replaced (widened, narrowed or dropped) before
                // its first list: its store is incomplete, look again.
                Ok(false) => continue,
                Err(_) => {
                    return Err(Error::SourceSyncTimeout {
                        namespace: namespace.to_string(),
                        seconds: self.sync_timeout.as_secs(),
                    });
                }
            }
        }
    }

    /// The current watch of `namespace` that covers `selector`, started or
    /// widened if need be.
    fn watch_covering(&self, namespace: &str, selector: &Selector) -> (Store, Readiness) {
        {
            let mut watches = self.watches.lock().unwrap();
            let covers = watches
                .get(namespace)
                .is_some_and(|w| w.filter.is_everything() || w.filter == *selector);
            if !covers {
                // A second, different selector on this namespace: widen to
                // the whole namespace. `retain` narrows it again later.
                let filter = if watches.contains_key(namespace) {
                    Selector::everything()
                } else {
                    selector.clone()
                };
                let watch = self.spawn(namespace, filter);
                watches.insert(namespace.to_string(), watch);
            }
            let w = &watches[namespace];
            (w.store.clone(), w.ready.clone())
        }
    }

    /// Keeps exactly the watches the owned mirrors need (namespace →
    /// selectors in use), narrowing filters that have not needed to be wide
    /// for a while.
    pub(crate) fn retain(&self, wanted: &BTreeMap<String, BTreeSet<Selector>>) {
        let mut watches = self.watches.lock().unwrap();
        watches.retain(|ns, _| wanted.contains_key(ns));
        for (ns, selectors) in wanted {
            let filter = filter_for(selectors);
            let narrow =
                |w: &NamespaceWatch| w.filter != filter && w.started.elapsed() >= NARROW_AFTER;
            if watches.get(ns).is_some_and(narrow) {
                let watch = self.spawn(ns, filter);
                watches.insert(ns.clone(), watch);
            }
        }
    }

    pub(crate) fn watched_namespaces(&self) -> usize {
        self.watches.lock().unwrap().len()
    }

    fn spawn(&self, namespace: &str, filter: Selector) -> NamespaceWatch {
        let (ready_tx, ready) = Readiness::new();
        let store: Store = Arc::default();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let labels = filter
            .clone()
            .and_not(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)
            .to_string();
        let config = super::watch_config()
            .labels(&labels)
            .fields("metadata.name!=kube-root-ca.crt");
        tracing::debug!(namespace, labels, "watching source ConfigMaps");
        let events = super::events(api, config, Watch::Sources);
        let feed = Feed {
            store: store.clone(),
            triggers: self.triggers.clone(),
            namespace: namespace.to_string(),
        };
        let span = tracing::info_span!("watch", watch = "sources", namespace);
        let task = tokio::spawn(
            super::run(feed, events, ready_tx, namespace.to_string()).instrument(span),
        );
        NamespaceWatch {
            filter,
            store,
            ready,
            started: Instant::now(),
            task,
        }
    }
}

/// One copy per source: the object's maps are hashed, serialized and
/// dropped here; everything downstream shares the result.
fn ingest(cm: ConfigMap) -> Arc<SourceConfigMap> {
    let mut s = SourceConfigMap::from_owned(cm);
    s.observed_at = Some(Instant::now());
    Arc::new(s)
}

/// One namespace's watch, feeding its store. A change is news to the
/// mirrors whose selector matches the source's labels before or after it.
struct Feed {
    store: Store,
    triggers: TriggerSender,
    namespace: String,
}

impl Feed {
    fn tell(&self, labels: Vec<BTreeMap<String, String>>) {
        let _ = self.triggers.send(Trigger::Source {
            namespace: self.namespace.clone(),
            labels,
        });
    }
}

impl Cache for Feed {
    type Object = ConfigMap;
    type List = Sources;
    /// The labels, before and after, of every source that changed.
    type Changes = Vec<BTreeMap<String, String>>;

    fn list(&self, list: &mut Sources, cm: ConfigMap) {
        let s = ingest(cm);
        list.insert(s.name.clone(), s);
    }

    async fn replace(&self, fresh: Sources) -> Self::Changes {
        let mut current = self.store.write().unwrap();
        let same = |old: &Arc<SourceConfigMap>, new: &Arc<SourceConfigMap>| {
            old.resource_version == new.resource_version
        };
        let mut changed = Vec::new();
        for (_, change) in super::diff(&current, &fresh, same) {
            match change {
                Change::Changed { old, new } => {
                    changed.extend([old.labels.clone(), new.labels.clone()]);
                }
                Change::Added(s) | Change::Removed(s) => changed.push(s.labels.clone()),
            }
        }
        *current = fresh;
        changed
    }

    fn relisted(&self, changed: Self::Changes, first: bool) {
        if !first && !changed.is_empty() {
            self.tell(changed);
        }
    }

    fn apply(&self, cm: ConfigMap) {
        tracing::trace!(namespace = %self.namespace, name = ?cm.metadata.name, "source changed");
        let s = ingest(cm);
        let (new_labels, rv) = (s.labels.clone(), s.resource_version.clone());
        let old = self.store.write().unwrap().insert(s.name.clone(), s);
        match old {
            Some(old) if old.resource_version == rv => {}
            Some(old) => self.tell(vec![old.labels.clone(), new_labels]),
            None => self.tell(vec![new_labels]),
        }
    }

    fn delete(&self, cm: ConfigMap) {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let old = self.store.write().unwrap().remove(&name);
        let mut labels = vec![cm.metadata.labels.clone().unwrap_or_default()];
        labels.extend(old.map(|o| o.labels.clone()));
        self.tell(labels);
    }
}
