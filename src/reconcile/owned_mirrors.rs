//! A sharded member's ConfigMirror events. One watch sees every mirror in
//! scope, but only the mirrors this member owns reach the store, so memory
//! follows its share. When the assignment changes nothing re-lists: released
//! mirrors leave the store (a delete event), acquired ones are fetched and
//! enter it (an apply event, which reconciles them), and after a fence every
//! owned mirror is reconciled once to catch up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::ListParams;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

use crate::api::ConfigMirror;
use crate::scope::Scope;
use crate::shard::ShardView;
use crate::shard::view::Owned;
use crate::watches::replicas::ReplicaCache;

type Event = Result<watcher::Event<ConfigMirror>, watcher::Error>;

/// Above this many acquired mirrors one LIST is cheaper than a GET each.
const LIST_ABOVE: usize = 32;
const FETCH_CONCURRENCY: usize = 16;
/// Assignment changes arrive in bursts (one per coordinator step).
const SETTLE: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_secs(2);
/// A fetch that has not answered by then is abandoned and retried: a
/// request the API server sits on (it gives up only after a minute) must
/// not hold up every other acquisition.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct OwnedMirrors {
    /// Watch events of owned mirrors, plus the deletes and applies that
    /// follow the assignment; feed them to the reflector.
    pub events: BoxStream<'static, Event>,
    /// Mirrors already in the store to reconcile again (after a fence).
    pub catch_up: BoxStream<'static, ObjectRef<ConfigMirror>>,
}

pub(crate) fn start(
    client: Client,
    api: Api<ConfigMirror>,
    scope: Scope,
    view: Arc<ShardView>,
    replicas: Arc<ReplicaCache>,
) -> OwnedMirrors {
    let (events_tx, events_rx) = mpsc::channel(1024);
    let (catch_up_tx, catch_up_rx) = mpsc::unbounded_channel();
    let task = Task {
        client,
        scope,
        view,
        replicas,
        events: events_tx,
        catch_up: catch_up_tx,
        present: HashMap::new(),
        relisting: None,
        activation: None,
    };
    tokio::spawn(
        task.run(api)
            .instrument(tracing::info_span!("owned_mirrors")),
    );
    OwnedMirrors {
        events: tokio_stream::wrappers::ReceiverStream::new(events_rx).boxed(),
        catch_up: tokio_stream::wrappers::UnboundedReceiverStream::new(catch_up_rx).boxed(),
    }
}

struct Task {
    client: Client,
    scope: Scope,
    view: Arc<ShardView>,
    replicas: Arc<ReplicaCache>,
    events: mpsc::Sender<Event>,
    catch_up: mpsc::UnboundedSender<ObjectRef<ConfigMirror>>,
    /// UID → reference of every mirror this stream has put in the store.
    present: HashMap<String, ObjectRef<ConfigMirror>>,
    /// During the watch's own re-list: what it has put in its new store.
    relisting: Option<HashMap<String, ObjectRef<ConfigMirror>>>,
    /// The view's activation last synced: a new one means ownership
    /// resumed after a fence.
    activation: Option<u64>,
}

impl Task {
    /// Follows the watch and the assignment until the controller is gone.
    async fn run(mut self, api: Api<ConfigMirror>) {
        // The watch's events go on to kube's reflector (mixed with the
        // deletes and applies of the assignment), not into a cache of ours:
        // only the stream is shared with the caches, not `watches::run`.
        let mut watch = crate::watches::events(
            api,
            crate::watches::watch_config(),
            crate::watches::Watch::Mirrors,
        );
        let mut changes = self.view.changes();
        // Set while an assignment change waits for a re-list to finish, or
        // for a failed fetch to be retried.
        let mut pending: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match pending {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = watch.next() => {
                    let Some(event) = event else { return };
                    if !self.forward(event).await {
                        return;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                    changes.borrow_and_update();
                    pending = Some(tokio::time::Instant::now());
                }
                () = retry => {}
            }
            if pending.is_some_and(|at| at <= tokio::time::Instant::now())
                && self.relisting.is_none()
            {
                pending = match self.sync().await {
                    Ok(()) => None,
                    Err(()) => Some(tokio::time::Instant::now() + RETRY),
                };
                if self.events.is_closed() {
                    return;
                }
            }
        }
    }

    /// Passes a watch event on if it concerns an owned mirror; `false` when
    /// the consumer is gone.
    async fn forward(&mut self, event: Event) -> bool {
        let pass = match &event {
            Ok(watcher::Event::Init) => {
                tracing::debug!("ConfigMirror watch re-listing");
                self.relisting = Some(HashMap::new());
                true
            }
            Ok(watcher::Event::InitApply(m)) => self.admit(m).is_some_and(|(uid, r)| {
                self.relisting.get_or_insert_default().insert(uid, r);
                true
            }),
            Ok(watcher::Event::InitDone) => {
                self.present = self.relisting.take().unwrap_or_default();
                tracing::debug!(owned = self.present.len(), "ConfigMirror watch listed");
                true
            }
            Ok(watcher::Event::Apply(m)) => self.admit(m).is_some_and(|(uid, r)| {
                self.present.insert(uid, r);
                true
            }),
            Ok(watcher::Event::Delete(m)) => m
                .uid()
                .is_some_and(|uid| self.present.remove(&uid).is_some()),
            Err(_) => true,
        };
        !pass || self.events.send(event).await.is_ok()
    }

    fn admit(&self, m: &ConfigMirror) -> Option<(String, ObjectRef<ConfigMirror>)> {
        (self.scope.owns(m)).then(|| (m.uid().unwrap_or_default(), ObjectRef::from_obj(m)))
    }

    /// Brings the store in line with the assignment: `Err` when some
    /// acquired mirror could not be fetched (retried later).
    async fn sync(&mut self) -> Result<(), ()> {
        let Some((activation, owned)) = self.view.active() else {
            return Ok(());
        };
        if !self.drop_released(&owned).await {
            return Ok(());
        }
        if self.activation != Some(activation) {
            // Resumed (or started): what changed while this member could not
            // act is caught up by one reconcile of every owned mirror.
            self.activation = Some(activation);
            for r in self.present.values() {
                let _ = self.catch_up.send(r.clone());
            }
        }
        let acquired: HashMap<&String, &Owned> = owned
            .iter()
            .filter(|(uid, o)| {
                !self.present.contains_key(*uid) && self.scope.in_namespace_scope(&o.namespace)
            })
            .collect();
        if acquired.is_empty() {
            return Ok(());
        }
        self.take_acquired(&acquired).await
    }

    /// Tells the store of the mirrors no longer owned; `false` once the
    /// controller is gone.
    async fn drop_released(&mut self, owned: &HashMap<String, Owned>) -> bool {
        let released: Vec<String> = self
            .present
            .keys()
            .filter(|uid| !owned.contains_key(*uid))
            .cloned()
            .collect();
        for uid in released {
            let r = self.present.remove(&uid).expect("present");
            tracing::debug!(mirror = %format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name), "released");
            if self
                .events
                .send(Ok(watcher::Event::Delete(tombstone(&uid, &r))))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Fetches the acquired mirrors, loads their replicas, and hands them
    /// to the store: `Err` when some could not be fetched (retried later).
    async fn take_acquired(&mut self, acquired: &HashMap<&String, &Owned>) -> Result<(), ()> {
        let (fetched, complete) = self.fetch(acquired).await;
        tracing::debug!(
            acquired = acquired.len(),
            fetched = fetched.len(),
            complete,
            "fetched acquired mirrors"
        );
        // Their replicas in a few lists rather than one per mirror's first
        // reconcile (what a failover waits on); a failure here only means
        // each reconcile lists its own.
        if fetched.len() > 1 {
            let uids: Vec<String> = fetched.iter().filter_map(|m| m.uid()).collect();
            match self.replicas.ensure_loaded_all(&self.client, &uids).await {
                Ok(()) => tracing::debug!(
                    mirrors = uids.len(),
                    "loaded the acquired mirrors' replicas"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "loading acquired mirrors' replicas failed; each reconcile lists its own")
                }
            }
        }
        for m in fetched {
            // Still ours, and the very object assigned (not a namesake).
            if let Some((uid, r)) = self.admit(&m).filter(|(uid, _)| acquired.contains_key(uid)) {
                tracing::debug!(mirror = %format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name), "acquired");
                self.present.insert(uid, r);
                if self
                    .events
                    .send(Ok(watcher::Event::Apply(m)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        if complete { Ok(()) } else { Err(()) }
    }

    /// The acquired mirrors that still exist, and whether every fetch worked.
    async fn fetch(&self, acquired: &HashMap<&String, &Owned>) -> (Vec<ConfigMirror>, bool) {
        if acquired.len() > LIST_ABOVE {
            let api: Api<ConfigMirror> = match self.scope.single_namespace() {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let listed =
                tokio::time::timeout(FETCH_TIMEOUT, api.list(&ListParams::default())).await;
            return match listed {
                Ok(Ok(list)) => {
                    let wanted: HashSet<&String> = acquired.keys().copied().collect();
                    let found = list
                        .items
                        .into_iter()
                        .filter(|m| m.uid().is_some_and(|u| wanted.contains(&u)))
                        .collect();
                    (found, true)
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "listing acquired ConfigMirrors failed; retrying");
                    (Vec::new(), false)
                }
                Err(_) => {
                    tracing::warn!("listing acquired ConfigMirrors timed out; retrying");
                    (Vec::new(), false)
                }
            };
        }
        let gets: Vec<_> = acquired
            .values()
            .map(|o| {
                let api: Api<ConfigMirror> = Api::namespaced(self.client.clone(), &o.namespace);
                let name = o.name.clone();
                async move {
                    match tokio::time::timeout(FETCH_TIMEOUT, api.get_opt(&name)).await {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
                    }
                }
            })
            .collect();
        let results: Vec<Result<Option<ConfigMirror>, String>> = futures::stream::iter(gets)
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut complete = true;
        let mut found = Vec::new();
        for result in results {
            match result {
                Ok(Some(m)) => found.push(m),
                // Deleted meanwhile: the coordinator drops the assignment.
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "fetching an acquired ConfigMirror failed; retrying");
                    complete = false;
                }
            }
        }
        (found, complete)
    }
}

/// Just enough of a mirror for the store to drop it.
fn tombstone(uid: &str, r: &ObjectRef<ConfigMirror>) -> ConfigMirror {
    let mut m = ConfigMirror::new(&r.name, Default::default());
    m.metadata.namespace = r.namespace.clone();
    m.metadata.uid = Some(uid.to_string());
    m
}
