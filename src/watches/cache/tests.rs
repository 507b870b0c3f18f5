//! `run`, `diff` and the watch metrics, fed by hand: no API server.

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
