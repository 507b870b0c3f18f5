//! `run --sharding`: this process is a member (heartbeats, takes its
//! assignment, reconciles only that) and a candidate coordinator. The
//! operator's database is the coordination database, so here it is part of
//! the control path: without it members fence themselves.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use super::coordinator::{self, MirrorIndex};
use super::membership::Membership;
use super::{ShardView, Timing, worker};
use crate::config::RunArgs;
use crate::kubeclient::WriteDeadline;
use crate::leader;
use crate::run::Shutdown;
use crate::scope::Scope;
use crate::store::migrate;
use crate::telemetry::server::Health;

pub async fn run(
    client: Client,
    args: &RunArgs,
    member: &str,
    health: Arc<Health>,
    shutdown: Shutdown,
    write_deadline: Arc<WriteDeadline>,
) -> anyhow::Result<()> {
    let databases = Arc::new(crate::run::databases(client.clone(), args)?);
    health.set("membership", false, "waiting for the coordination database");
    let db = loop {
        match databases.default().await {
            Ok(Some(db)) => break db,
            Ok(None) => anyhow::bail!(
                "--sharding needs the operator's database: set --database-url or --database-secret"
            ),
            Err(e) => tracing::warn!(error = %e, "coordination database not usable yet; retrying"),
        }
        if wait_or_stop(&shutdown, Duration::from_secs(2)).await {
            return Ok(());
        }
    };
    while let Err(e) = migrate::run_within(
        &db.options,
        migrate::coordination(),
        &db.label,
        db.deadlines.migration,
    )
    .await
    {
        tracing::warn!(error = %e, "cannot migrate the coordination database yet; retrying");
        if wait_or_stop(&shutdown, Duration::from_secs(2)).await {
            return Ok(());
        }
    }
    // Coordination gets a pool of its own: heartbeats must never wait behind
    // persistence writes for a connection (that would fence a busy member).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(
            db.options
                .clone()
                .application_name("configmirror-coordination"),
        );
    let timing = args.timing();
    let view = Arc::new(ShardView::new(member, write_deadline));
    let membership = Arc::new(Membership::new(pool.clone(), member));

    let heartbeats = tokio::spawn({
        let (m, v, t, h) = (
            membership.clone(),
            view.clone(),
            timing.clone(),
            health.clone(),
        );
        async move { m.run(v, t, h).await }
    });
    let assignments = tokio::spawn(worker::run(
        pool.clone(),
        membership.clone(),
        view.clone(),
        timing.clone(),
    ));
    let coordination = tokio::spawn(coordinate(
        client.clone(),
        args.clone(),
        member.to_string(),
        pool,
        timing,
    ));

    // SIGTERM: say we are leaving (our mirrors are held for the leave
    // grace), then let in-flight reconciles finish. Losing our name to
    // another process stops us too.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopper = tokio::spawn({
        let (shutdown, membership) = (shutdown.clone(), membership.clone());
        async move {
            tokio::select! {
                _ = shutdown.wait() => membership.leave().await,
                _ = heartbeats => {}
            }
            let _ = stop_tx.send(true);
        }
    });
    let stop = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let scope = Scope::new(args.watch_namespace.clone()).with_shard(view);
    crate::run::run_controller(client, args, member, health, stop, scope, databases).await;
    stopper.abort();
    assignments.abort();
    coordination.abort();
    Ok(())
}

async fn wait_or_stop(shutdown: &Shutdown, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = shutdown.wait() => true,
    }
}

/// Campaigns for the coordinator Lease for as long as the process runs,
/// coordinating while it holds it.
async fn coordinate(
    client: Client,
    args: RunArgs,
    member: String,
    pool: sqlx::PgPool,
    timing: Timing,
) {
    let index = MirrorIndex::default();
    let (changed_tx, changed_rx) = watch::channel(0u64);
    let (synced_tx, mut synced_rx) = watch::channel(false);
    let scope = Scope::new(args.watch_namespace.clone());
    tokio::spawn(coordinator::watch_mirrors(
        client.clone(),
        scope,
        index.clone(),
        changed_tx,
        synced_tx,
    ));
    let _ = synced_rx.wait_for(|s| *s).await;
    let lease = args.coordinator_lease.clone();
    leader::set_status(false, &lease);
    let mut leadership = loop {
        match leader::campaign(
            client.clone(),
            &args.namespace,
            &lease,
            &member,
            args.coordinator_lease_seconds,
            // The coordinator's authority is its epoch in the database.
            None,
        )
        .await
        {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot campaign for the coordinator Lease yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    loop {
        if !leadership.acquired().await {
            return;
        }
        leader::set_status(true, &lease);
        tracing::info!(%lease, "elected coordinator");
        coordinator::lead(
            &pool,
            &member,
            &index,
            changed_rx.clone(),
            leadership.holding.clone(),
            &timing,
        )
        .await;
        leader::set_status(false, &lease);
        tracing::info!(%lease, "no longer coordinator");
    }
}
