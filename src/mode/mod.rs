//! The process modes `configmirror run` chooses from, and what they share.
//!
//! - `single`: one process, always active.
//! - `leader`: `--leader-elect`, one active process per Lease (the Lease
//!   mechanics are `crate::leader`).
//! - `member`: `--sharding`, a member of the shard group; every member also
//!   campaigns to be the `coordinator`. The mechanics are `crate::shard`;
//!   this module only composes them.
//! - `controller`: caches, persistence and the controller, which every mode
//!   runs until its own stop; `housekeeping`: the operator's databases and
//!   their background tasks.

mod controller;
mod coordinator;
mod housekeeping;
pub(crate) mod leader;
pub(crate) mod member;
pub(crate) mod single;

use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;
use tracing::Instrument;

use crate::kubeclient::WriteDeadline;
use crate::telemetry::server::Health;

/// Why a mode ended the process. Each message is what the process prints
/// on exit, so they are kept as they were.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Campaign(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leader election stopped before this process became leader")]
    NeverLeader,
    #[error("lost the leader Lease; exiting so a standby takes over")]
    LostLease,
    #[error("--sharding needs the operator's database: set --database-url or --database-secret")]
    NoDatabase,
    #[error(transparent)]
    Database(#[from] crate::store::Error),
}

/// What every mode starts from, set up by `run` before it picks one.
pub(crate) struct Process {
    pub client: Client,
    pub member: String,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
    /// The client's write deadline: unlimited until a mode with a lease
    /// closes it (a Lease, or shard membership, proves it open again).
    pub write_deadline: Arc<WriteDeadline>,
}

/// Resolves once SIGTERM or SIGINT arrived; cheap to clone.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub(crate) fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        let signals = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight work"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing in-flight work"),
            }
            let _ = tx.send(true);
        };
        tokio::spawn(signals.instrument(tracing::info_span!("signals")));
        Self(rx)
    }

    pub(crate) fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// A stop signal the controller can wait on, fired by whoever holds the
/// sender (the mode's own reason to stop: shutdown, a lost Lease, a lost
/// name).
fn stop_channel() -> (
    watch::Sender<bool>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, mut rx) = watch::channel(false);
    let stop = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    (tx, stop)
}
