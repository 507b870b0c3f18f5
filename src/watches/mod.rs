//! The operator's caches, each fed by a narrow watch, so memory follows what
//! mirrors select and never the rest of the cluster:
//! - namespaces (metadata only),
//! - replicas (through the managed-by label; their data is hashed and dropped),
//! - sources (only the source namespaces of owned mirrors, label-filtered
//!   where the selectors allow).
//!
//! Each cache sends `Trigger`s when something a mirror depends on changes;
//! the controller maps them to the mirrors concerned. Every watch, cache or
//! not, starts from `cache::events`; every cache runs `cache::run`.

mod cache;
pub(crate) mod namespaces;
pub(crate) mod replicas;
pub(crate) mod sources;

use std::collections::BTreeMap;

use tokio::sync::{mpsc, watch};

pub(crate) use cache::watch_config;
pub(crate) use cache::{Cache, Change, EVENT_KINDS, Watch, diff, events, run};
pub(crate) use namespaces::NamespaceCache;
pub(crate) use replicas::ReplicaCache;
pub(crate) use sources::SourceCache;

/// Something changed that may concern some mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
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

pub(crate) type TriggerSender = mpsc::UnboundedSender<Trigger>;
pub(crate) type TriggerReceiver = mpsc::UnboundedReceiver<Trigger>;

pub(crate) fn trigger_channel() -> (TriggerSender, TriggerReceiver) {
    mpsc::unbounded_channel()
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(
        "the watch of ConfigMaps in namespace {namespace} did not sync within {seconds}s (is it readable?)"
    )]
    SourceSyncTimeout { namespace: String, seconds: u64 },
}

impl Error {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::SourceSyncTimeout { .. } => "source_sync_timeout",
        }
    }
}

/// Whether a cache holds a complete first list, observable by waiters.
#[derive(Debug, Clone)]
pub(crate) struct Readiness(watch::Receiver<bool>);

impl Readiness {
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Waits for the first complete list: `false` when the cache was
    /// dropped before it had one (the waiter must look again, not read it).
    pub(crate) async fn wait(&mut self) -> bool {
        self.0.wait_for(|ready| *ready).await.is_ok()
    }
}

/// Drops what the operator never reads from cached objects.
pub(crate) fn strip_managed_fields(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
}
