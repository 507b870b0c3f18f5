//! `--leader-elect`: one active process per Lease, the others stand by.
//! Losing the Lease ends the process (fail-stop): it never writes without a
//! claim, and its pod restarts as a standby.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::telemetry::names;

pub struct Leadership {
    pub holding: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

pub async fn campaign(
    client: Client,
    namespace: &str,
    lease: &str,
    member: &str,
    duration_seconds: u64,
) -> Result<Leadership, LeaseManagerError> {
    let duration = duration_seconds.max(2);
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(member)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await?;
    let (holding, task) = manager.watch().await;
    Ok(Leadership { holding, task })
}

pub fn set_status(leader: bool, lease: &str) {
    metrics::gauge!(names::LEADER_ELECTION_MASTER_STATUS, "name" => lease.to_string())
        .set(if leader { 1.0 } else { 0.0 });
}

impl Leadership {
    /// Waits until this process holds the Lease.
    pub async fn acquired(&mut self) -> bool {
        self.holding.wait_for(|held| *held).await.is_ok()
    }

    /// Resolves when the Lease is lost (or its manager stopped).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.holding.clone();
        async move {
            let _ = rx.wait_for(|held| !*held).await;
        }
    }

    /// Gives the Lease up so a standby takes over at once.
    pub async fn release(self) {
        drop(self.holding);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease"),
            _ => tracing::warn!("timed out releasing the leader Lease"),
        }
    }
}
