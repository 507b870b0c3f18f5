//! `configmirror run`: telemetry, the HTTP endpoints, and the controller in
//! the mode the flags choose (one process, or leader election).

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;

use crate::config::{MigrateArgs, RunArgs};
use crate::kubeclient::{self, ClientOptions, WriteDeadline};
use crate::leader;
use crate::persistence::Persistence;
use crate::plan::TargetPolicy;
use crate::reconcile::apply::fair::{ReconcileSlots, WriteBudget};
use crate::reconcile::{Context, Settings, controller};
use crate::scope::Scope;
use crate::store::databases::DefaultDatabase;
use crate::store::{Databases, migrate as migrations};
use crate::telemetry::{self, liveness::Liveness, server::Health};
use crate::watches::{NamespaceCache, ReplicaCache, SourceCache, trigger_channel};

/// Resolves once SIGTERM or SIGINT arrived; cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight work"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing in-flight work"),
            }
            let _ = tx.send(true);
        });
        Self(rx)
    }

    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_format);
    let metrics = telemetry::install_recorder()?;
    let member = args.member();
    let shutdown = Shutdown::on_signals();
    let health = Arc::new(Health::new(Liveness::new(args.stuck_after())));
    health.set("caches", false, "starting");

    let (metrics_listener, metrics_addr) =
        telemetry::server::bind(&args.metrics_bind_address).await?;
    let (health_listener, health_addr) =
        telemetry::server::bind(&args.health_probe_bind_address).await?;
    tracing::info!(version = crate::VERSION, %member, metrics = %metrics_addr, health = %health_addr, "starting");
    let servers = [
        tokio::spawn(telemetry::server::serve(
            metrics_listener,
            telemetry::server::metrics_router(metrics),
            shutdown.wait(),
        )),
        tokio::spawn(telemetry::server::serve(
            health_listener,
            telemetry::server::health_router(health.clone()),
            shutdown.wait(),
        )),
    ];

    // Leader election and sharding close it until a lease is proven.
    let write_deadline = Arc::new(WriteDeadline::unlimited());
    let client = kubeclient::build(&ClientOptions {
        kubeconfig: args.kubeconfig.clone(),
        user_agent: kubeclient::user_agent(&member),
        qps: args.kube_api_qps,
        burst: args.kube_api_burst,
        write_deadline: Some(write_deadline.clone()),
    })
    .await?;

    if args.leader_elect {
        leader::set_status(false, &args.leader_election_id);
        // A standby is ready: it is doing what it should.
        health.set("caches", true, "standby: not the leader");
        let mut leadership = leader::campaign(
            client.clone(),
            &args.namespace,
            &args.leader_election_id,
            &member,
            args.lease_duration_seconds,
            Some(write_deadline.clone()),
        )
        .await?;
        tokio::select! {
            acquired = leadership.acquired() => {
                if !acquired {
                    anyhow::bail!("leader election stopped before this process became leader");
                }
            }
            _ = shutdown.wait() => {
                leadership.release().await;
                return Ok(());
            }
        }
        tracing::info!(lease = %args.leader_election_id, "became leader");
        leader::set_status(true, &args.leader_election_id);
        health.set("caches", false, "leader: caches syncing");
        let lost = leadership.lost();
        let stop = {
            let shutdown = shutdown.wait();
            async move {
                tokio::select! { _ = shutdown => false, _ = lost => true }
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let lost_lease = tokio::spawn(async move {
            let lost = stop.await;
            let _ = stop_tx.send(true);
            lost
        });
        let stop_signal = async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        };
        let databases = databases_or_none(client.clone(), &args);
        run_controller(
            client,
            &args,
            &member,
            health.clone(),
            stop_signal,
            Scope::new(args.watch_namespace.clone()).with_lease(write_deadline.clone()),
            databases,
        )
        .await;
        leader::set_status(false, &args.leader_election_id);
        if lost_lease.await.unwrap_or(false) {
            // Fail-stop: never act without the Lease.
            anyhow::bail!("lost the leader Lease; exiting so a standby takes over");
        }
        leadership.release().await;
    } else if args.sharding {
        crate::shard::mode::run(
            client,
            &args,
            &member,
            health.clone(),
            shutdown.clone(),
            write_deadline,
        )
        .await?;
    } else {
        // One process, always active: it is the leader of itself.
        leader::set_status(true, &args.leader_election_id);
        let databases = databases_or_none(client.clone(), &args);
        run_controller(
            client,
            &args,
            &member,
            health.clone(),
            shutdown.wait(),
            Scope::new(args.watch_namespace.clone()),
            databases,
        )
        .await;
    }
    for server in servers {
        let _ = server.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the caches, waits for their first lists, then runs the controller
/// until `stop`.
pub async fn run_controller(
    client: Client,
    args: &RunArgs,
    member: &str,
    health: Arc<Health>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    scope: Scope,
    databases: Arc<Databases>,
) {
    let housekeeping = [
        tokio::spawn(watch_default_database(databases.clone())),
        tokio::spawn(prune_revisions(
            databases.clone(),
            args.retention(),
            Duration::from_secs(args.revision_prune_interval_seconds.max(1)),
        )),
    ];
    let (triggers, trigger_rx) = trigger_channel();
    let persistence = Persistence::new(databases, args.persistence_limits(), triggers.clone());
    let mut housekeeping = Vec::from(housekeeping);
    housekeeping.push(tokio::spawn(close_idle_pools(
        persistence.clone(),
        Duration::from_secs(args.database_idle_close_seconds.max(1)),
    )));
    let (namespaces, namespace_task) = NamespaceCache::start(client.clone(), triggers.clone());
    let (replicas, replica_task) = ReplicaCache::start(
        client.clone(),
        triggers.clone(),
        scope.shard().is_some(),
        args.watch_namespace
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
    );
    let sources = SourceCache::new(client.clone(), triggers, Duration::from_secs(30));
    let settings = Settings {
        policy: TargetPolicy::new(args.excluded()),
        adopt_reference_replicas: args.adopt_reference_replicas,
        write_concurrency: args.write_concurrency,
        resync: args.resync(),
        orphan_rows_after: Duration::from_secs(args.orphan_rows_after_seconds),
        ..Settings::default()
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "configmirror".into(),
                instance: Some(member.to_string()),
            },
        ),
        writes: WriteBudget::new(settings.write_concurrency),
        slots: ReconcileSlots::new(usize::from(args.concurrency)),
        liveness: health.liveness.clone(),
        persistence,
        client,
        settings,
        scope,
        namespaces: namespaces.clone(),
        replicas: replicas.clone(),
        sources,
        memory: Default::default(),
    });
    let (mut ns_ready, mut replicas_ready) = (namespaces.readiness(), replicas.readiness());
    let stop = futures::FutureExt::shared(Box::pin(stop));
    tokio::select! {
        _ = async { ns_ready.wait().await; replicas_ready.wait().await } => {}
        _ = stop.clone() => {
            namespace_task.abort();
            replica_task.abort();
            housekeeping.iter().for_each(|t| t.abort());
            return;
        }
    }
    tracing::info!("namespace and replica caches synced");
    controller::run(ctx, trigger_rx, health, stop).await;
    namespace_task.abort();
    replica_task.abort();
    housekeeping.iter().for_each(|t| t.abort());
}

/// The operator's databases. A malformed --database-url is a configuration
/// error: reported, and replication goes on without that database.
fn databases_or_none(client: Client, args: &RunArgs) -> Arc<Databases> {
    match databases(client.clone(), args) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            tracing::error!(error = %e, "the operator's database setting is invalid; persistence to it is off");
            Arc::new(Databases::new(
                client,
                DefaultDatabase::None,
                Default::default(),
                1,
                args.deadlines(),
            ))
        }
    }
}

pub fn databases(client: Client, args: &RunArgs) -> Result<Databases, crate::store::Error> {
    Ok(Databases::new(
        client,
        args.database.default_database()?,
        args.database_secret_namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        args.database_max_connections
            .unwrap_or(args.persistence_per_database.max(1) as u32 + 1),
        args.deadlines(),
    ))
}

/// Closes the pools of tenant databases nobody used for `idle`.
async fn close_idle_pools(persistence: Arc<Persistence>, idle: Duration) {
    let mut tick = tokio::time::interval(idle.min(Duration::from_secs(60)));
    loop {
        tick.tick().await;
        persistence.close_idle(idle);
    }
}

/// Migrates the default database as soon as it answers (the operator does
/// not wait for it), then keeps `configmirror_database_up` current.
async fn watch_default_database(databases: Arc<Databases>) {
    let mut failures = 0;
    loop {
        let up = match databases.default().await {
            Ok(None) => return,
            Ok(Some(db)) => match db.ready().await {
                Ok(pool) => db
                    .within("checking", sqlx::query("SELECT 1").execute(pool))
                    .await
                    .is_ok(),
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, "the operator's database is not available yet; retrying");
                    }
                    false
                }
            },
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "the operator's database is not usable; retrying");
                }
                false
            }
        };
        metrics::gauge!(crate::telemetry::names::DB_UP).set(if up { 1.0 } else { 0.0 });
        failures = if up { 0 } else { failures + 1 };
        tokio::time::sleep(if up {
            Duration::from_secs(15)
        } else {
            Duration::from_secs(5)
        })
        .await;
    }
}

async fn prune_revisions(
    databases: Arc<Databases>,
    retention: crate::store::persist::Retention,
    every: Duration,
) {
    if retention == Default::default() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for db in databases.all().await {
            let Ok(pool) = db.ready_unused().await else {
                continue;
            };
            let mut pruned = 0;
            // Batch after batch, each statement within the deadline.
            let failed = loop {
                let batch = crate::store::persist::prune_some(pool, retention);
                match db.within("pruning revisions", batch).await {
                    Ok((n, more)) => {
                        pruned += n;
                        if !more {
                            break None;
                        }
                    }
                    Err(e) => break Some(e),
                }
            };
            if pruned > 0 {
                metrics::counter!(crate::telemetry::names::DB_REVISIONS_PRUNED).increment(pruned);
                tracing::info!(database = %db.label, pruned, "pruned old revisions");
            }
            if let Some(e) = failed {
                tracing::warn!(database = %db.label, error = %e, "pruning revisions failed");
            }
        }
    }
}

/// `configmirror migrate`: applies the migrations to the operator's database.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(telemetry::LogFormat::Text);
    let default = args.database.default_database()?;
    if matches!(default, DefaultDatabase::None) {
        anyhow::bail!("no database: set --database-url (DATABASE_URL) or --database-secret");
    }
    let client = match &default {
        DefaultDatabase::Secret { .. } => {
            kubeclient::build(&ClientOptions {
                kubeconfig: args.kubeconfig.clone(),
                user_agent: kubeclient::user_agent("migrate"),
                qps: 0.0,
                burst: 1,
                write_deadline: None,
            })
            .await?
        }
        // Not used for a URL; a client that is never called needs no cluster.
        _ => Client::try_from(kube::Config::new("http://127.0.0.1:1".parse()?))?,
    };
    let databases = Databases::new(
        client,
        default,
        Default::default(),
        2,
        crate::store::Deadlines::default(),
    );
    let db = databases
        .default()
        .await?
        .expect("a default database was configured");
    // A person (or a Helm hook) waits: the lock may be held by a replica
    // that is migrating right now.
    let deadline = Duration::from_secs(600);
    migrations::run_within(&db.options, migrations::persistence(), &db.label, deadline).await?;
    // The operator's own database is also the coordination database.
    migrations::run_within(&db.options, migrations::coordination(), &db.label, deadline).await?;
    tracing::info!("persistence and coordination migrations applied");
    Ok(())
}
