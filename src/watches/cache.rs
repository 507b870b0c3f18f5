//! The list/watch loop every cache runs, written once.
//!
//! kube's `watcher` speaks the protocol: the list (paged by the config's
//! `page_size`, see `watch_config` for why most watches send none), the
//! watch from the list's resourceVersion, bookmarks, and a re-list when the
//! resourceVersion expired or the watch failed; `default_backoff` spaces
//! the retries. `events` adds what every watch here shares on top: a count
//! of its events and re-lists per watch. `run` then drives one cache: it
//! buffers a list and swaps it in whole (a half-received list never shows),
//! turns `Readiness` true with the first complete list, logs and skips
//! errors; the cache (a `Cache`) supplies only what it keeps of an object
//! and what a change means to the mirrors.
//!
//! Why not kube's reflector: its store keeps every object whole, while a
//! cache keeps what it derives (a namespace's labels, a source hashed once,
//! a replica's metadata and hash), and it swaps a re-list in silently, while
//! a cache must tell the mirrors what changed while its watch was away
//! (`diff`). Nor kube's predicates: they compare an object with the last
//! version the stream carried, a cache with what it holds (which a re-list,
//! or our own write recorded early, replaces).
//!
//! Watches whose events go on elsewhere (the ConfigMirror watch feeds
//! kube's reflector and applier; the leader Lease sets a deadline from each
//! event as it comes) use `events` alone.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::telemetry::names;

pub(crate) type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// Every watch this operator runs, as metrics name it: a kind of watch,
/// never a namespace or an object, so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    Namespaces,
    Sources,
    Replicas,
    Mirrors,
    CoordinatorMirrors,
    LeaderLease,
}

impl Watch {
    pub(crate) const ALL: [Watch; 6] = [
        Watch::Namespaces,
        Watch::Sources,
        Watch::Replicas,
        Watch::Mirrors,
        Watch::CoordinatorMirrors,
        Watch::LeaderLease,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Watch::Namespaces => "namespaces",
            Watch::Sources => "sources",
            Watch::Replicas => "replicas",
            Watch::Mirrors => "mirrors",
            Watch::CoordinatorMirrors => "coordinator_mirrors",
            Watch::LeaderLease => "leader_lease",
        }
    }
}

/// The `event` label of `names::WATCH_EVENTS`.
pub(crate) const EVENT_KINDS: [&str; 4] = ["init_apply", "apply", "delete", "error"];

/// Every watch's configuration. Lists are served from the API server's
/// watch cache as it stands (resourceVersion=0, what client-go's informers
/// do) rather than as a consistent read: a consistent read waits for the
/// cache to catch up with etcd, and under load (or while some client stalls
/// the cache's fan-out) those waits end in 504s and re-lists. The watch that
/// follows the list delivers anything newer, and with one API server the
/// cache never goes back in time, so nothing is missed or regressed.
pub(crate) fn watch_config() -> watcher::Config {
    let mut config = watcher::Config::default().any_semantic();
    // kube sends resourceVersion=0 only on unpaginated lists (the cache
    // ignores a limit at resourceVersion=0 anyway).
    config.page_size = None;
    config
}

/// The events of `api` under `config`, retried with back-off after errors
/// (which still pass, for the consumer to log), counted as `watch`.
pub(crate) fn events<K>(api: Api<K>, config: watcher::Config, watch: Watch) -> Events<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut counters = Counters::new(watch);
    watcher(api, config)
        .default_backoff()
        .inspect(move |event| counters.count(event))
        .boxed()
}

/// One watch's series, registered once rather than looked up per event.
struct Counters {
    by_kind: [metrics::Counter; 4],
    relists: metrics::Counter,
    listed: bool,
}

impl Counters {
    fn new(watch: Watch) -> Self {
        let watch = watch.label();
        Self {
            by_kind: EVENT_KINDS.map(
                |event| metrics::counter!(names::WATCH_EVENTS, "watch" => watch, "event" => event),
            ),
            relists: metrics::counter!(names::WATCH_RELISTS, "watch" => watch),
            listed: false,
        }
    }

    fn count<K>(&mut self, event: &Result<watcher::Event<K>, watcher::Error>) {
        let kind = match event {
            Ok(watcher::Event::Init) => return,
            Ok(watcher::Event::InitDone) => {
                // The first list is the start, not a re-list.
                if std::mem::replace(&mut self.listed, true) {
                    self.relists.increment(1);
                }
                return;
            }
            Ok(watcher::Event::InitApply(_)) => 0,
            Ok(watcher::Event::Apply(_)) => 1,
            Ok(watcher::Event::Delete(_)) => 2,
            Err(_) => 3,
        };
        self.by_kind[kind].increment(1);
    }
}

/// What one cache makes of its watch's events; `run` does the rest.
pub(crate) trait Cache: Send + Sync {
    type Object: Send;
    /// A list as it arrives, swapped in whole once complete.
    type List: Default + Send;
    /// What a complete list changed, as `replace` found it.
    type Changes: Send;

    /// Adds one listed object to `list` (or leaves it out).
    fn list(&self, list: &mut Self::List, object: Self::Object);
    /// Swaps a complete list in; returns what differs from what it replaced.
    fn replace(&self, list: Self::List) -> impl Future<Output = Self::Changes> + Send;
    /// Tells the mirrors what a complete list changed. `first`: the cache
    /// had no list before, so nobody has read it yet.
    fn relisted(&self, changes: Self::Changes, first: bool);
    fn apply(&self, object: Self::Object);
    fn delete(&self, object: Self::Object);
}

/// Feeds `events` to `cache` until they end. The cache is swapped, then
/// `ready` turns true (the first list makes it ready), then the cache tells
/// what changed; errors are logged with `what` and skipped (the stream
/// backs off and resumes by itself).
pub(crate) async fn run<C, S>(cache: C, mut events: S, ready: watch::Sender<bool>, what: String)
where
    C: Cache,
    S: Stream<Item = Result<watcher::Event<C::Object>, watcher::Error>> + Unpin + Send,
{
    let mut list = C::List::default();
    while let Some(event) = next_event(&mut events, &what).await {
        match event {
            watcher::Event::Init => list = C::List::default(),
            watcher::Event::InitApply(object) => cache.list(&mut list, object),
            watcher::Event::InitDone => {
                let changes = cache.replace(std::mem::take(&mut list)).await;
                let first = !ready.send_replace(true);
                cache.relisted(changes, first);
            }
            watcher::Event::Apply(object) => cache.apply(object),
            watcher::Event::Delete(object) => cache.delete(object),
        }
    }
}

/// The next event of a watch; errors are logged and skipped. `None` when
/// the stream ended.
async fn next_event<K, S>(events: &mut S, what: &str) -> Option<watcher::Event<K>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    loop {
        match events.try_next().await {
            Ok(event) => return event,
            Err(e) => tracing::warn!(error = %e, watch = what, "watch failed; retrying"),
        }
    }
}

/// How an entry of a complete list differs from what the cache held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change<'a, V> {
    Added(&'a V),
    Changed { old: &'a V, new: &'a V },
    Removed(&'a V),
}

/// The entries of `fresh` that differ from `current` (those `same` does not
/// hold for, and new ones), then those of `current` that are gone.
pub(crate) fn diff<'a, K: Eq + Hash, V>(
    current: &'a HashMap<K, V>,
    fresh: &'a HashMap<K, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Vec<(&'a K, Change<'a, V>)> {
    let mut changes: Vec<(&K, Change<'_, V>)> = fresh
        .iter()
        .filter_map(|(key, new)| match current.get(key) {
            Some(old) if same(old, new) => None,
            Some(old) => Some((key, Change::Changed { old, new })),
            None => Some((key, Change::Added(new))),
        })
        .collect();
    changes.extend(
        current
            .iter()
            .filter(|(key, _)| !fresh.contains_key(*key))
            .map(|(key, old)| (key, Change::Removed(old))),
    );
    changes
}

#[cfg(test)]
mod tests;
