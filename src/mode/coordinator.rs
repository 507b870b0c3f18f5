//! Every sharded member campaigns for the coordinator Lease for as long as
//! it runs, and coordinates while it holds it. The Lease only elects: the
//! coordinator's authority is its epoch in the database (`shard::coordinator`).

use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use crate::config::RunArgs;
use crate::leader::{self, Leadership};
use crate::scope::Scope;
use crate::shard::Timing;
use crate::shard::coordinator::{self, MirrorIndex};

/// What the coordinator task needs from the flags.
pub(super) struct CoordinatorSettings {
    /// The coordinator Lease's name, in `namespace`.
    lease: String,
    namespace: String,
    lease_seconds: u64,
    /// The ConfigMirror namespaces this process handles; all when empty.
    watch_namespaces: Vec<String>,
    timing: Timing,
}

impl CoordinatorSettings {
    pub(super) fn new(args: &RunArgs, timing: Timing) -> Self {
        Self {
            lease: args.coordinator_lease.clone(),
            namespace: args.namespace.clone(),
            lease_seconds: args.coordinator_lease_seconds,
            watch_namespaces: args.watch_namespace.clone(),
            timing,
        }
    }
}

/// Campaigns for the coordinator Lease for as long as the process runs,
/// coordinating while it holds it.
pub(super) async fn run(
    client: Client,
    settings: CoordinatorSettings,
    member: String,
    pool: sqlx::PgPool,
) {
    let index = MirrorIndex::default();
    let (changed_tx, changed_rx) = watch::channel(0u64);
    let (synced_tx, mut synced_rx) = watch::channel(false);
    let scope = Scope::new(settings.watch_namespaces.clone());
    tokio::spawn(
        coordinator::watch_mirrors(client.clone(), scope, index.clone(), changed_tx, synced_tx)
            .instrument(info_span!("mirror_index")),
    );
    let _ = synced_rx.wait_for(|s| *s).await;
    let lease = &settings.lease;
    leader::set_status(false, lease);
    let mut leadership = campaign(client, &settings, &member).await;
    loop {
        if !leadership.acquired().await {
            return;
        }
        leader::set_status(true, lease);
        tracing::info!(%lease, "elected coordinator");
        coordinator::lead(
            &pool,
            &member,
            &index,
            changed_rx.clone(),
            leadership.holding.clone(),
            &settings.timing,
        )
        .await;
        leader::set_status(false, lease);
        tracing::info!(%lease, "no longer coordinator");
    }
}

/// Joins the election, retrying until the Lease can be campaigned for.
async fn campaign(client: Client, settings: &CoordinatorSettings, member: &str) -> Leadership {
    loop {
        match leader::campaign(
            client.clone(),
            &settings.namespace,
            &settings.lease,
            member,
            settings.lease_seconds,
            // The coordinator's authority is its epoch in the database.
            None,
        )
        .await
        {
            Ok(l) => return l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot campaign for the coordinator Lease yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}
