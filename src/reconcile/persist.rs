//! The persistence step of a reconcile: after the replicas are written, the
//! mirror's rows follow its sources. Failures become the DatabaseSynced
//! condition and a retry; they never hold up replication.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Context;
use super::status::DATABASE_SYNCED;
use crate::api::{ConfigMirror, DatabaseStatus};
use crate::plan::{MirrorIdentity, SourceConfigMap};
use crate::store::persist::{self, Changes};
use crate::store::rows::{Row, row_of};
use crate::store::{Database, Error};
use crate::telemetry::names;

/// What the database step yields for status, and when to try again.
pub struct Persisted {
    pub condition: Condition,
    pub status: DatabaseStatus,
    pub retry: Option<Duration>,
}

/// What this process last wrote for a mirror: (database identity, row hashes).
pub type RowCache = (String, HashMap<(String, String), String>);

fn condition(
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: DATABASE_SYNCED.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Syncs the mirror's rows; `None` when persistence is off for it.
pub async fn sync(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    sources: &[Arc<SourceConfigMap>],
    previous: Option<&DatabaseStatus>,
    now: &Time,
) -> Option<Persisted> {
    let generation = mirror.metadata.generation;
    let started = Instant::now();
    let result = match ctx
        .databases
        .for_mirror(&id.namespace, mirror.spec.database.as_ref())
        .await
    {
        Ok(None) => return None,
        Ok(Some(db)) => write(ctx, &db, id, sources)
            .await
            .map(|changes| (db, changes)),
        Err(e) => Err(e),
    };
    let last_sync = previous.and_then(|p| p.last_sync_time.clone());
    Some(match result {
        Ok((db, changes)) => {
            ctx.memory.database_succeeded(&id.uid);
            let result = if changes.any() {
                "changed"
            } else {
                "unchanged"
            };
            metrics::histogram!(names::DB_SYNC_DURATION, "result" => result)
                .record(started.elapsed().as_secs_f64());
            for (op, n) in [
                ("created", changes.created),
                ("updated", changes.updated),
                ("deleted", changes.deleted),
            ] {
                if n > 0 {
                    metrics::counter!(names::DB_ROWS_WRITTEN, "op" => op).increment(n);
                }
            }
            Persisted {
                condition: condition(
                    true,
                    "Synced",
                    format!(
                        "{} rows in database {} match the sources",
                        sources.len(),
                        db.label
                    ),
                    generation,
                    now,
                ),
                status: DatabaseStatus {
                    connected: true,
                    last_sync_time: if changes.any() {
                        Some(now.clone())
                    } else {
                        last_sync.or_else(|| Some(now.clone()))
                    },
                    message: None,
                },
                retry: None,
            }
        }
        Err(e) => {
            ctx.memory.forget_rows(&id.uid);
            metrics::counter!(names::DB_ERRORS, "kind" => e.metric_label()).increment(1);
            metrics::histogram!(names::DB_SYNC_DURATION, "result" => "error")
                .record(started.elapsed().as_secs_f64());
            let failures = ctx.memory.database_failed(&id.uid);
            let retry = if e.transient() {
                super::context::backoff(failures, Duration::from_secs(1), Duration::from_secs(120))
            } else {
                // Someone has to fix a secret or a setting; look again now and then.
                Duration::from_secs(60)
            };
            tracing::warn!(mirror = %id.key(), error = %e, retry_in = ?retry, "rows not persisted; replication continues");
            let message =
                format!("{e}. Replicas are still written; rows catch up once this is fixed.");
            Persisted {
                condition: condition(false, e.reason(), message.clone(), generation, now),
                status: DatabaseStatus {
                    connected: false,
                    last_sync_time: last_sync,
                    message: Some(message),
                },
                retry: Some(retry),
            }
        }
    })
}

/// Sends only rows whose hash differs from what this process last wrote
/// there (all of them after a restart or an error: the database skips the
/// unchanged ones itself), and nothing at all when nothing changed.
async fn write(
    ctx: &Context,
    db: &Database,
    id: &MirrorIdentity,
    sources: &[Arc<SourceConfigMap>],
) -> Result<Changes, Error> {
    let rows: Vec<Row> = sources.iter().map(|s| row_of(s)).collect();
    let keep: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.namespace.clone(), r.name.clone()))
        .collect();
    let cached = ctx
        .memory
        .rows(&id.uid)
        .filter(|(identity, _)| *identity == db.identity);
    let changed: Vec<Row> = rows
        .iter()
        .filter(|r| {
            cached
                .as_ref()
                .and_then(|(_, hashes)| hashes.get(&(r.namespace.clone(), r.name.clone())))
                != Some(&r.content_hash)
        })
        .cloned()
        .collect();
    let same_keys = cached
        .as_ref()
        .is_some_and(|(_, hashes)| hashes.len() == rows.len());
    if changed.is_empty() && same_keys {
        return Ok(Changes::default());
    }
    let pool = db.ready().await?;
    let changes = persist::sync(pool, id, &changed, &keep)
        .await
        .map_err(|e| Error::from_sqlx(&db.label, &e))?;
    let hashes = rows
        .into_iter()
        .map(|r| ((r.namespace, r.name), r.content_hash))
        .collect();
    ctx.memory
        .remember_rows(&id.uid, (db.identity.clone(), hashes));
    Ok(changes)
}

/// Deletes a deleted mirror's rows (recording each deletion).
pub async fn delete_rows(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<(), Error> {
    let Some(db) = ctx
        .databases
        .for_mirror(&id.namespace, mirror.spec.database.as_ref())
        .await?
    else {
        return Ok(());
    };
    let pool = db.ready().await?;
    let changes = persist::delete_all(pool, id)
        .await
        .map_err(|e| Error::from_sqlx(&db.label, &e))?;
    if changes.deleted > 0 {
        metrics::counter!(names::DB_ROWS_WRITTEN, "op" => "deleted").increment(changes.deleted);
    }
    Ok(())
}
