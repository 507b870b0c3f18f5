//! Watches replicas (by name, cluster-wide: works with any operator's
//! labels) and records when each target first holds each version of its
//! source, checked by content.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    /// (namespace, name) → the times the replica first showed a higher version.
    seen: HashMap<(String, String), Vec<(Instant, u64)>>,
    synced: usize,
}

pub struct Observer {
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
    targets: Arc<HashSet<String>>,
}

impl Observer {
    /// Watches ConfigMaps named `names` in `targets`, counting only those whose
    /// content is `payload` with a version; returns once every watch listed.
    pub async fn start(
        client: &Client,
        names: &[String],
        targets: &[String],
        payload: &str,
    ) -> anyhow::Result<Self> {
        let watches = names
            .iter()
            .map(|name| {
                (
                    Api::all(client.clone()),
                    watcher::Config::default().fields(&format!("metadata.name={name}")),
                )
            })
            .collect();
        Self::watching(watches, targets, payload).await
    }

    /// Watches every ConfigMap in `targets` (one watch per namespace): for
    /// many sources replicated into few namespaces.
    pub async fn in_namespaces(
        client: &Client,
        targets: &[String],
        payload: &str,
    ) -> anyhow::Result<Self> {
        let watches = targets
            .iter()
            .map(|ns| {
                (
                    Api::namespaced(client.clone(), ns),
                    watcher::Config::default(),
                )
            })
            .collect();
        Self::watching(watches, targets, payload).await
    }

    async fn watching(
        watches: Vec<(Api<ConfigMap>, watcher::Config)>,
        targets: &[String],
        payload: &str,
    ) -> anyhow::Result<Self> {
        let count = watches.len();
        let state = Arc::new(Mutex::new(State::default()));
        let targets: Arc<HashSet<String>> = Arc::new(targets.iter().cloned().collect());
        let mut tasks = Vec::new();
        for (api, config) in watches {
            let (state, targets, payload) = (state.clone(), targets.clone(), payload.to_string());
            tasks.push(tokio::spawn(async move {
                let mut events = watcher(api, config).default_backoff().boxed();
                let mut listed = false;
                while let Ok(Some(event)) = events.try_next().await {
                    let cm = match event {
                        watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => cm,
                        watcher::Event::InitDone => {
                            if !listed {
                                listed = true;
                                state.lock().unwrap().synced += 1;
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    let now = Instant::now();
                    let ns = cm.namespace().unwrap_or_default();
                    if !targets.contains(&ns) {
                        continue;
                    }
                    let data = cm.data.clone().unwrap_or_default();
                    if data.get("payload").map(String::as_str) != Some(payload.as_str()) {
                        continue;
                    }
                    let Some(version) = data.get("version").and_then(|v| v.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    let mut s = state.lock().unwrap();
                    let history = s.seen.entry((ns, cm.name_any())).or_default();
                    if history.last().is_none_or(|(_, v)| version > *v) {
                        history.push((now, version));
                    }
                }
            }));
        }
        let observer = Self {
            state,
            tasks,
            targets,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while observer.state.lock().unwrap().synced < count {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the replica watches did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(observer)
    }

    /// When `namespace/name` first held `version` or newer.
    pub fn first_seen(&self, namespace: &str, name: &str, version: u64) -> Option<Instant> {
        let s = self.state.lock().unwrap();
        s.seen
            .get(&(namespace.to_string(), name.to_string()))?
            .iter()
            .find(|(_, v)| *v >= version)
            .map(|(t, _)| *t)
    }

    /// How many target replicas of `name` hold `version` or newer.
    pub fn holding(&self, name: &str, version: u64) -> usize {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|((_, n), h)| n == name && h.last().is_some_and(|(_, v)| *v >= version))
            .count()
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// How many (target, name) replicas do not hold `version` or newer yet.
    pub fn missing(&self, names: &[String], version: u64) -> usize {
        let s = self.state.lock().unwrap();
        let mut key = (String::new(), String::new());
        let mut missing = 0;
        for ns in self.targets.iter() {
            key.0.clone_from(ns);
            for name in names {
                key.1.clone_from(name);
                if s.seen
                    .get(&key)
                    .and_then(|h| h.last())
                    .is_none_or(|(_, v)| *v < version)
                {
                    missing += 1;
                }
            }
        }
        missing
    }

    /// Waits until every target holds `version` of each of `names`.
    pub async fn wait_all(
        &self,
        names: &[String],
        version: u64,
        bar: &indicatif::ProgressBar,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let want = names.len() * self.targets.len();
        let deadline = Instant::now() + timeout;
        loop {
            let have: usize = names.iter().map(|n| self.holding(n, version)).sum();
            bar.set_position(have as u64);
            if have >= want {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {have} of {want} replicas reached version {version} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Seconds from `since` until each target first held `version` of `name`.
    pub fn latencies(&self, name: &str, version: u64, since: Instant) -> Vec<f64> {
        self.targets
            .iter()
            .filter_map(|ns| self.first_seen(ns, name, version))
            .map(|t| t.saturating_duration_since(since).as_secs_f64())
            .collect()
    }

    /// Replicas holding `version` over time since `since` (for the convergence plot).
    pub fn convergence(&self, names: &[String], version: u64, since: Instant) -> Vec<(f64, usize)> {
        let mut times: Vec<f64> = names
            .iter()
            .flat_map(|n| self.latencies(n, version, since))
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        times.iter().enumerate().map(|(i, t)| (*t, i + 1)).collect()
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counts per verb, for writes.
pub type VerbCounts = BTreeMap<String, u64>;
