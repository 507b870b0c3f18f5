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

pub type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// Every watch this operator runs, as metrics name it: a kind of watch,
/// never a namespace or an object, so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Namespaces,
    Sources,
    Replicas,
    Mirrors,
    CoordinatorMirrors,
    LeaderLease,
}

impl Watch {
    pub const ALL: [Watch; 6] = [
        Watch::Namespaces,
        Watch::Sources,
        Watch::Replicas,
        Watch::Mirrors,
        Watch::CoordinatorMirrors,
        Watch::LeaderLease,
    ];

    pub fn label(self) -> &'static str {
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
pub const EVENT_KINDS: [&str; 4] = ["init_apply", "apply", "delete", "error"];

/// Every watch's configuration. Lists are served from the API server's
/// watch cache as it stands (resourceVersion=0, what client-go's informers
/// do) rather than as a consistent read: a consistent read waits for the
/// cache to catch up with etcd, and under load (or while some client stalls
/// the cache's fan-out) those waits end in 504s and re-lists. The watch that
/// follows the list delivers anything newer, and with one API server the
/// cache never goes back in time, so nothing is missed or regressed.
pub fn watch_config() -> watcher::Config {
    let mut config = watcher::Config::default().any_semantic();
    // kube sends resourceVersion=0 only on unpaginated lists (the cache
    // ignores a limit at resourceVersion=0 anyway).
    config.page_size = None;
    config
}

/// The events of `api` under `config`, retried with back-off after errors
/// (which still pass, for the consumer to log), counted as `watch`.
pub fn events<K>(api: Api<K>, config: watcher::Config, watch: Watch) -> Events<K>
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
pub trait Cache: Send + Sync {
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
pub async fn run<C, S>(cache: C, mut events: S, ready: watch::Sender<bool>, what: String)
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
pub enum Change<'a, V> {
    Added(&'a V),
    Changed { old: &'a V, new: &'a V },
    Removed(&'a V),
}

/// The entries of `fresh` that differ from `current` (those `same` does not
/// hold for, and new ones), then those of `current` that are gone.
pub fn diff<'a, K: Eq + Hash, V>(
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
mod tests {
    use std::sync::Mutex;

    use super::*;
    use watcher::Event;

    /// Holds name → version, and records what `run` told it.
    #[derive(Default)]
    struct Recording {
        held: Mutex<HashMap<String, u32>>,
        told: Mutex<Vec<(Vec<String>, bool)>>,
        singles: Mutex<Vec<String>>,
    }

    impl Cache for &Recording {
        type Object = (String, u32);
        type List = HashMap<String, u32>;
        type Changes = Vec<String>;

        fn list(&self, list: &mut Self::List, (name, version): Self::Object) {
            list.insert(name, version);
        }

        async fn replace(&self, fresh: Self::List) -> Vec<String> {
            let mut held = self.held.lock().unwrap();
            let mut changed: Vec<String> = diff(&held, &fresh, |a, b| a == b)
                .into_iter()
                .map(|(name, _)| name.clone())
                .collect();
            changed.sort();
            *held = fresh;
            changed
        }

        fn relisted(&self, changes: Vec<String>, first: bool) {
            self.told.lock().unwrap().push((changes, first));
        }

        fn apply(&self, (name, version): Self::Object) {
            self.held.lock().unwrap().insert(name.clone(), version);
            self.singles.lock().unwrap().push(format!("apply {name}"));
        }

        fn delete(&self, (name, _): Self::Object) {
            self.held.lock().unwrap().remove(&name);
            self.singles.lock().unwrap().push(format!("delete {name}"));
        }
    }

    fn obj(name: &str, version: u32) -> (String, u32) {
        (name.to_string(), version)
    }

    async fn feed(
        cache: &Recording,
        events: Vec<Result<Event<(String, u32)>, watcher::Error>>,
    ) -> watch::Receiver<bool> {
        let (ready, seen) = watch::channel(false);
        run(cache, futures::stream::iter(events), ready, "test".into()).await;
        seen
    }

    #[tokio::test]
    async fn a_list_shows_only_once_complete_and_the_first_makes_ready() {
        let cache = Recording::default();
        let (ready, seen) = watch::channel(false);
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let task = run(&cache, rx, ready, "test".into());
        let check = async {
            tx.unbounded_send(Ok(Event::Init)).unwrap();
            tx.unbounded_send(Ok(Event::InitApply(obj("a", 1))))
                .unwrap();
            tokio::task::yield_now().await;
            assert!(cache.held.lock().unwrap().is_empty(), "half a list");
            assert!(!*seen.borrow());
            tx.unbounded_send(Ok(Event::InitDone)).unwrap();
            drop(tx);
        };
        futures::join!(task, check);
        assert!(*seen.borrow());
        assert_eq!(cache.held.lock().unwrap()["a"], 1);
        // The first list tells nobody (nobody read the cache before).
        assert_eq!(
            *cache.told.lock().unwrap(),
            vec![(vec!["a".to_string()], true)]
        );
    }

    #[tokio::test]
    async fn a_relist_replaces_the_cache_and_tells_what_changed() {
        let cache = Recording::default();
        let list = |items: Vec<(String, u32)>| {
            let mut events = vec![Ok(Event::Init)];
            events.extend(items.into_iter().map(|o| Ok(Event::InitApply(o))));
            events.push(Ok(Event::InitDone));
            events
        };
        let mut events = list(vec![obj("a", 1), obj("b", 1), obj("c", 1)]);
        events.push(Ok(Event::Apply(obj("d", 1))));
        events.push(Err(watcher::Error::NoResourceVersion));
        // Interrupted: an aborted list leaves nothing behind.
        events.extend([Ok(Event::Init), Ok(Event::InitApply(obj("z", 1)))]);
        events.extend(list(vec![obj("a", 1), obj("b", 2), obj("e", 1)]));
        let seen = feed(&cache, events).await;
        assert!(*seen.borrow());
        let told = cache.told.lock().unwrap();
        assert_eq!(told.len(), 2);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(told[1], (names(&["b", "c", "d", "e"]), false));
        let held = cache.held.lock().unwrap();
        assert_eq!(
            held.clone(),
            HashMap::from([obj("a", 1), obj("b", 2), obj("e", 1)])
        );
    }

    #[tokio::test]
    async fn single_changes_pass_one_by_one() {
        let cache = Recording::default();
        let events = vec![
            Ok(Event::Apply(obj("a", 1))),
            Ok(Event::Delete(obj("a", 1))),
        ];
        let seen = feed(&cache, events).await;
        assert!(!*seen.borrow(), "no list yet");
        assert_eq!(*cache.singles.lock().unwrap(), vec!["apply a", "delete a"]);
        assert!(cache.told.lock().unwrap().is_empty());
    }

    #[test]
    fn events_and_relists_are_counted_per_watch() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let mut counters = Counters::new(Watch::Sources);
            let events: Vec<Result<Event<()>, watcher::Error>> = vec![
                Ok(Event::Init),
                Ok(Event::InitApply(())),
                Ok(Event::InitDone),
                Ok(Event::Apply(())),
                Err(watcher::Error::NoResourceVersion),
                Ok(Event::Init),
                Ok(Event::InitDone),
                Ok(Event::Delete(())),
            ];
            for event in &events {
                counters.count(event);
            }
        });
        let text = handle.render();
        for (event, n) in [("init_apply", 1), ("apply", 1), ("delete", 1), ("error", 1)] {
            let series = format!(
                "{}{{watch=\"sources\",event=\"{event}\"}} {n}",
                names::WATCH_EVENTS
            );
            assert!(text.contains(&series), "{series} in {text}");
        }
        // The first list is the start; only the second is a re-list.
        let relists = format!("{}{{watch=\"sources\"}} 1", names::WATCH_RELISTS);
        assert!(text.contains(&relists), "{relists} in {text}");
    }

    #[test]
    fn diff_names_added_changed_and_removed_entries() {
        let current = HashMap::from([(1, "x"), (2, "y"), (3, "z")]);
        let fresh = HashMap::from([(1, "x"), (2, "Y"), (4, "w")]);
        let mut changes = diff(&current, &fresh, |a, b| a == b);
        changes.sort_by_key(|(k, _)| **k);
        assert_eq!(
            changes,
            vec![
                (
                    &2,
                    Change::Changed {
                        old: &"y",
                        new: &"Y"
                    }
                ),
                (&3, Change::Removed(&"z")),
                (&4, Change::Added(&"w")),
            ]
        );
        // What counts as the same is the cache's to say.
        assert!(diff(&current, &fresh, |_, _| true).len() == 2);
    }
}
