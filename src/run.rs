//! `configmirror run`: telemetry, the HTTP endpoints, the Kubernetes
//! client, then the mode the flags choose (`crate::mode`). And
//! `configmirror migrate`.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use crate::config::{MigrateArgs, RunArgs};
use crate::kubeclient::{self, ClientOptions, WriteDeadline};
use crate::mode::{self, Process, Shutdown};
use crate::store::databases::DefaultDatabase;
use crate::store::{Databases, migrate as migrations};
use crate::telemetry::{self, liveness::Liveness, server::Health};

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
        serve(
            "metrics_server",
            metrics_listener,
            telemetry::server::metrics_router(metrics),
            &shutdown,
        ),
        serve(
            "health_server",
            health_listener,
            telemetry::server::health_router(health.clone()),
            &shutdown,
        ),
    ];

    // Leader election and sharding close it until a lease is proven.
    let write_deadline = Arc::new(WriteDeadline::unlimited());
    let client = kubeclient::build(&ClientOptions {
        kubeconfig: args.kube.clone(),
        user_agent: kubeclient::user_agent(&member),
        qps: args.kube_api_qps,
        burst: args.kube_api_burst,
        write_deadline: Some(write_deadline.clone()),
    })
    .await?;

    let process = Process {
        client,
        member,
        health,
        shutdown,
        write_deadline,
    };
    if args.leader_elect {
        mode::leader::run(&process, &args).await?;
    } else if args.sharding {
        mode::member::run(&process, &args).await?;
    } else {
        mode::single::run(&process, &args).await?;
    }
    for server in servers {
        let _ = server.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves one of the HTTP endpoints until shutdown, in a span named `name`.
fn serve(
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: &Shutdown,
) -> JoinHandle<()> {
    let server = telemetry::server::serve(listener, router, shutdown.wait());
    tokio::spawn(server.instrument(info_span!("http", server = name)))
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
                kubeconfig: args.kube.clone(),
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
