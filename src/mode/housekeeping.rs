//! The operator's databases, and the tasks that look after them while the
//! controller runs: migrating the default database once it answers,
//! pruning old revisions, closing idle pools.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::config::RunArgs;
use crate::persistence::Persistence;
use crate::store::Databases;
use crate::store::databases::DefaultDatabase;

/// The operator's databases. A malformed --database-url is a configuration
/// error: reported, and replication goes on without that database.
pub(super) fn databases_or_none(client: Client, args: &RunArgs) -> Arc<Databases> {
    match databases(client.clone(), args) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            tracing::error!(error = %e, "the operator's database setting is invalid; persistence to it is off");
            Arc::new(
                Databases::new(
                    client,
                    DefaultDatabase::None,
                    Default::default(),
                    1,
                    args.deadlines(),
                )
                .with_allowed_hosts(args.allowed_hosts()),
            )
        }
    }
}

pub(super) fn databases(client: Client, args: &RunArgs) -> Result<Databases, crate::store::Error> {
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
    )
    .with_allowed_hosts(args.allowed_hosts()))
}

/// Closes the pools of tenant databases nobody used for `idle`.
pub(super) async fn close_idle_pools(persistence: Arc<Persistence>, idle: Duration) {
    let mut tick = tokio::time::interval(idle.min(Duration::from_secs(60)));
    loop {
        tick.tick().await;
        persistence.close_idle(idle);
    }
}

/// Migrates the default database as soon as it answers (the operator does
/// not wait for it), then keeps `configmirror_database_up` current.
pub(super) async fn watch_default_database(databases: Arc<Databases>) {
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

pub(super) async fn prune_revisions(
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
