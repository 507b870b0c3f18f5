//! The operator's caches, each fed by a narrow watch, so memory follows what
//! mirrors select and never the rest of the cluster:
//! - namespaces (metadata only),
//! - replicas (through the managed-by label; their data is hashed and dropped),
//! - sources (only the source namespaces of owned mirrors, label-filtered
//!   where the selectors allow).
//!
//! Each cache sends `Trigger`s when something a mirror depends on changes;
//! the controller maps them to the mirrors concerned.

pub mod namespaces;
pub mod replicas;
pub mod sources;

use std::collections::BTreeMap;

use tokio::sync::{mpsc, watch};

pub use namespaces::NamespaceCache;
pub use replicas::ReplicaCache;
pub use sources::SourceCache;

/// Something changed that may concern some mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A ConfigMap in a source namespace changed; `labels` holds its labels
    /// before and after, so mirrors it stopped matching hear of it too.
    Source {
        namespace: String,
        labels: Vec<BTreeMap<String, String>>,
    },
    /// A replica owned by the mirror with this UID changed or disappeared.
    Replica { mirror_uid: String },
    /// A persistence job of this mirror ended with news for its status.
    Persisted { mirror_uid: String },
    /// A namespace appeared, changed labels, started terminating or vanished.
    Namespace { name: String },
}

pub type TriggerSender = mpsc::UnboundedSender<Trigger>;
pub type TriggerReceiver = mpsc::UnboundedReceiver<Trigger>;

pub fn trigger_channel() -> (TriggerSender, TriggerReceiver) {
    mpsc::unbounded_channel()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the watch of ConfigMaps in namespace {namespace} did not sync within {seconds}s (is it readable?)"
    )]
    SourceSyncTimeout { namespace: String, seconds: u64 },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::SourceSyncTimeout { .. } => "source_sync_timeout",
        }
    }
}

/// Whether a cache holds a complete first list, observable by waiters.
#[derive(Debug, Clone)]
pub struct Readiness(watch::Receiver<bool>);

impl Readiness {
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Waits for the first complete list: `false` when the cache was
    /// dropped before it had one (the waiter must look again, not read it).
    pub async fn wait(&mut self) -> bool {
        self.0.wait_for(|ready| *ready).await.is_ok()
    }
}

/// The next event of a watch; errors are logged and skipped (the stream
/// backs off and resumes by itself). `None` when the stream ended.
pub async fn next_event<K, S>(
    events: &mut S,
    what: &str,
) -> Option<kube::runtime::watcher::Event<K>>
where
    S: futures::Stream<
            Item = Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>,
        > + Unpin,
{
    use futures::TryStreamExt;
    loop {
        match events.try_next().await {
            Ok(event) => return event,
            Err(e) => tracing::warn!(error = %e, watch = what, "watch failed; retrying"),
        }
    }
}

/// Every watch's configuration. Lists are served from the API server's
/// watch cache as it stands (resourceVersion=0, what client-go's informers
/// do) rather than as a consistent read: a consistent read waits for the
/// cache to catch up with etcd, and under load (or while some client stalls
/// the cache's fan-out) those waits end in 504s and re-lists. The watch that
/// follows the list delivers anything newer, and with one API server the
/// cache never goes back in time, so nothing is missed or regressed.
pub fn watch_config() -> kube::runtime::watcher::Config {
    let mut config = kube::runtime::watcher::Config::default().any_semantic();
    // kube sends resourceVersion=0 only on unpaginated lists (the cache
    // ignores a limit at resourceVersion=0 anyway).
    config.page_size = None;
    config
}

/// Drops what the operator never reads from cached objects.
pub fn strip_managed_fields(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
}
