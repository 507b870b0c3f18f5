//! `--leader-elect`: the process stands by until it holds the Lease, then
//! runs the controller with its writes gated by the Lease. Losing the Lease
//! ends the process (fail-stop); a shutdown releases it so a standby takes
//! over at once. The Lease itself is `crate::leader`.

use std::future::Future;

use tokio::task::JoinHandle;

use super::controller::run_controller;
use super::housekeeping::databases_or_none;
use super::{Error, Process, Shutdown, stop_channel};
use crate::config::RunArgs;
use crate::leader::{self, Leadership};
use crate::scope::Scope;

pub(crate) async fn run(p: &Process, args: &RunArgs) -> Result<(), Error> {
    let lease = &args.leader_election_id;
    leader::set_status(false, lease);
    // A standby is ready: it is doing what it should.
    p.health.set("caches", true, "standby: not the leader");
    let Some(leadership) = stand_by(p, args).await? else {
        return Ok(());
    };
    tracing::info!(lease = %lease, "became leader");
    leader::set_status(true, lease);
    p.health.set("caches", false, "leader: caches syncing");
    let (stop, lost_lease) = stop_on_shutdown_or_loss(&p.shutdown, leadership.lost());
    let databases = databases_or_none(p.client.clone(), args);
    let scope = Scope::new(args.watch_namespace.clone()).with_lease(p.write_deadline.clone());
    run_controller(p, args, stop, scope, databases).await;
    leader::set_status(false, lease);
    if lost_lease.await.unwrap_or(false) {
        // Fail-stop: never act without the Lease.
        return Err(Error::LostLease);
    }
    leadership.release().await;
    Ok(())
}

/// Campaigns until this process holds the Lease; `None` when a shutdown
/// came first (the Lease is then released).
async fn stand_by(p: &Process, args: &RunArgs) -> Result<Option<Leadership>, Error> {
    let mut leadership = leader::campaign(
        p.client.clone(),
        &args.namespace,
        &args.leader_election_id,
        &p.member,
        args.lease_duration_seconds,
        Some(p.write_deadline.clone()),
    )
    .await?;
    tokio::select! {
        acquired = leadership.acquired() => {
            if !acquired {
                return Err(Error::NeverLeader);
            }
        }
        _ = p.shutdown.wait() => {
            leadership.release().await;
            return Ok(None);
        }
    }
    Ok(Some(leadership))
}

/// The controller's stop: a shutdown or the Lease lost, whichever comes
/// first. The task answers whether it was the Lease.
fn stop_on_shutdown_or_loss(
    shutdown: &Shutdown,
    lost: impl Future<Output = ()> + Send + 'static,
) -> (impl Future<Output = ()> + Send + 'static, JoinHandle<bool>) {
    let shutdown = shutdown.wait();
    let (stop_tx, stop) = stop_channel();
    let lost_lease = tokio::spawn(async move {
        let lost = tokio::select! { _ = shutdown => false, _ = lost => true };
        let _ = stop_tx.send(true);
        lost
    });
    (stop, lost_lease)
}
