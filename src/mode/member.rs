//! `--sharding`: this process is a member (heartbeats, takes its
//! assignment, reconciles only that) and a candidate coordinator. The
//! operator's database is the coordination database, so here it is part of
//! the control path: without it members fence themselves.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use super::controller::run_controller;
use super::coordinator::{self, CoordinatorSettings};
use super::housekeeping::databases;
use super::{Error, Process, Shutdown, stop_channel};
use crate::config::RunArgs;
use crate::scope::Scope;
use crate::shard::membership::Membership;
use crate::shard::{ShardView, worker};
use crate::store::{Databases, migrate};

pub(crate) async fn run(p: &Process, args: &RunArgs) -> Result<(), Error> {
    crate::telemetry::initial::initialize_sharding();
    let databases = Arc::new(databases(p.client.clone(), args)?);
    p.health
        .set("membership", false, "waiting for the coordination database");
    let Some(options) = coordination_database(&databases, &p.shutdown).await? else {
        return Ok(());
    };
    let pool = coordination_pool(&options);
    let timing = args.timing();
    let member = p.member.as_str();
    let view = Arc::new(ShardView::new(member, p.write_deadline.clone()));
    let membership = Arc::new(Membership::new(heartbeat_pool(&options), member));

    let heartbeats = tokio::spawn({
        let (m, v, t, h) = (
            membership.clone(),
            view.clone(),
            timing.clone(),
            p.health.clone(),
        );
        async move { m.run(v, t, h).await }.instrument(info_span!("heartbeats", member))
    });
    let assignments = tokio::spawn(
        worker::run(
            pool.clone(),
            membership.clone(),
            view.clone(),
            timing.clone(),
        )
        .instrument(info_span!("assignments", member)),
    );
    let settings = CoordinatorSettings::new(args, timing);
    let coordination = tokio::spawn(
        coordinator::run(p.client.clone(), settings, member.to_string(), pool)
            .instrument(info_span!("coordinator", member)),
    );
    let (stop, stopper) = stop_on_shutdown_or_name_lost(&p.shutdown, membership, heartbeats);
    let scope = Scope::new(args.watch_namespace.clone()).with_shard(view);
    run_controller(p, args, stop, scope, databases).await;
    stopper.abort();
    assignments.abort();
    coordination.abort();
    Ok(())
}

/// Waits for the coordination database and migrates it; `None` when a
/// shutdown came first.
async fn coordination_database(
    databases: &Databases,
    shutdown: &Shutdown,
) -> Result<Option<PgConnectOptions>, Error> {
    let db = loop {
        match databases.default().await {
            Ok(Some(db)) => break db,
            Ok(None) => return Err(Error::NoDatabase),
            Err(e) => tracing::warn!(error = %e, "coordination database not usable yet; retrying"),
        }
        if wait_or_stop(shutdown, Duration::from_secs(2)).await {
            return Ok(None);
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
        if wait_or_stop(shutdown, Duration::from_secs(2)).await {
            return Ok(None);
        }
    }
    Ok(Some(db.options.clone()))
}

/// The coordinator's and the worker's pool. Coordination gets a pool of
/// its own: it must never wait behind persistence writes for a connection.
fn coordination_pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(
            options
                .clone()
                .application_name("configmirror-coordination"),
        )
}

/// Heartbeats get one connection of their own, opened by the pool in the
/// background (and reopened there when it breaks). A heartbeat's deadline
/// is within the margin, shorter than opening a connection (TLS, SCRAM)
/// takes on a loaded database: a heartbeat that had to open one could time
/// out every time (seen in CI: 24 in a row). Nor may it queue behind the
/// coordinator's or the worker's statements for a connection.
fn heartbeat_pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        // Without these the pool opens its minimum only once a connection
        // closes; with neither, at once.
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.clone().application_name("configmirror-heartbeat"))
}

/// SIGTERM: say we are leaving (our mirrors are held for the leave grace),
/// then let in-flight reconciles finish. Losing our name to another process
/// (the heartbeats end) stops us too.
fn stop_on_shutdown_or_name_lost(
    shutdown: &Shutdown,
    membership: Arc<Membership>,
    heartbeats: JoinHandle<()>,
) -> (impl Future<Output = ()> + Send + 'static, JoinHandle<()>) {
    let shutdown = shutdown.clone();
    let (stop_tx, stop) = stop_channel();
    let member = membership.name.clone();
    let stopper = tokio::spawn(
        async move {
            tokio::select! {
                _ = shutdown.wait() => membership.leave().await,
                _ = heartbeats => {}
            }
            let _ = stop_tx.send(true);
        }
        .instrument(info_span!("leave", member)),
    );
    (stop, stopper)
}

async fn wait_or_stop(shutdown: &Shutdown, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = shutdown.wait() => true,
    }
}
