//! One job: find the mirror's database, wait for a place under its own
//! limit and then under the global budget (waiting for a busy database
//! holds nothing of the global budget), and write or delete the rows, each
//! statement within its deadline.

use std::sync::Arc;
use std::time::Instant;

use super::{Job, Outcome, Persistence, Work, WrittenRows};
use crate::plan::{MirrorIdentity, SourceConfigMap};
use crate::store::persist::{self, Changes, Fence};
use crate::store::rows::{Row, row_of};
use crate::store::{Database, Error};
use crate::telemetry::names;

/// Runs `job`; returns its outcome and what is now known to be written.
pub(super) async fn run(
    queue: &Persistence,
    job: Job,
    written: Option<WrittenRows>,
    failures: u32,
) -> (Outcome, Option<WrittenRows>) {
    let started = Instant::now();
    let db = match find_database(queue, &job).await {
        Ok(Some(db)) => db,
        Ok(None) => return (Outcome::Off, None),
        Err(e) => return failed(&job.mirror, e, failures, started, written),
    };
    let limit = queue.database_limit(&db.identity);
    let _database_slot = limit.acquire().await.expect("never closed");
    let _slot = queue.running.acquire().await.expect("never closed");
    // Just before sending, as for replica writes: a leader past its Lease's
    // renew deadline writes nothing (the job is retried, and written once
    // the Lease is renewed; a lost Lease ends the process).
    if job.lease.as_ref().is_some_and(|lease| !lease.holds()) {
        let e = Error::LeaseExpired(db.label.clone());
        return failed(&job.mirror, e, failures, started, written);
    }
    let result = match &job.work {
        Work::Sync(sources) => {
            let fence = job.fence.as_ref();
            write(&db, &job.mirror, fence, sources, written.as_ref()).await
        }
        Work::DeleteAll => delete(&db, &job.mirror, job.fence.as_ref()).await,
    };
    match result {
        Ok((changes, now_written)) => (succeeded(&db, &job, &changes, started), now_written),
        Err(e) => failed(&job.mirror, e, failures, started, None),
    }
}

/// The mirror's database: none when persistence is off for it.
async fn find_database(queue: &Persistence, job: &Job) -> Result<Option<Arc<Database>>, Error> {
    let found = {
        // Reading the Secret is an API call: bounded like the rest.
        let _resolving = queue.running.acquire().await.expect("never closed");
        queue
            .databases
            .for_mirror(&job.mirror.namespace, job.database.as_ref())
            .await
    };
    match found {
        // A mirror being deleted with its namespace has lost its Secret
        // first; a pool made from it before still reaches the rows.
        Err(Error::SecretNotFound(secret)) => match job.work {
            Work::DeleteAll => queue
                .databases
                .cached_for_mirror(&job.mirror.namespace, job.database.as_ref())
                .map(Some)
                .ok_or(Error::SecretNotFound(secret)),
            Work::Sync(_) => Err(Error::SecretNotFound(secret)),
        },
        other => other,
    }
}

/// Counts what a job changed and says what it did.
fn succeeded(db: &Database, job: &Job, changes: &Changes, started: Instant) -> Outcome {
    let label = if changes.any() {
        "changed"
    } else {
        "unchanged"
    };
    metrics::histogram!(names::DB_SYNC_DURATION, "result" => label)
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
    match &job.work {
        Work::Sync(sources) => Outcome::Synced {
            database: db.label.clone(),
            rows: sources.len(),
            changed: changes.any(),
        },
        Work::DeleteAll => Outcome::Deleted {
            database: db.label.clone(),
            rows: changes.deleted,
        },
    }
}

fn failed(
    mirror: &MirrorIdentity,
    error: Error,
    failures: u32,
    started: Instant,
    written: Option<WrittenRows>,
) -> (Outcome, Option<WrittenRows>) {
    metrics::counter!(names::DB_ERRORS, "kind" => error.metric_label()).increment(1);
    metrics::histogram!(names::DB_SYNC_DURATION, "result" => "error")
        .record(started.elapsed().as_secs_f64());
    match error.withheld_cause() {
        // Status says only "unreachable": the log keeps the cause.
        Some(cause) => {
            tracing::warn!(mirror = %mirror.key(), error = %error, %cause, "rows not persisted; replication continues");
        }
        None => {
            tracing::warn!(mirror = %mirror.key(), error = %error, "rows not persisted; replication continues");
        }
    }
    // After an error the database's state is unknown: send every row
    // next time (it skips the unchanged ones itself), unless the error
    // came before anything was sent.
    let keep = written.filter(|_| {
        !matches!(
            error,
            Error::Write(..) | Error::Timeout(..) | Error::Superseded(..)
        )
    });
    (
        Outcome::Failed {
            error,
            failures: failures + 1,
        },
        keep,
    )
}

/// Sends only rows whose hash differs from what this process last wrote
/// there (all of them after a restart or an error: the database skips the
/// unchanged ones itself), and nothing at all when nothing changed.
async fn write(
    db: &Database,
    mirror: &MirrorIdentity,
    fence: Option<&Fence>,
    sources: &[Arc<SourceConfigMap>],
    written: Option<&WrittenRows>,
) -> Result<(Changes, Option<WrittenRows>), Error> {
    let rows: Vec<Row> = sources.iter().map(|s| row_of(s)).collect();
    let cached = written.filter(|(identity, _)| *identity == db.identity);
    let changed: Vec<Row> = rows
        .iter()
        .filter(|r| {
            cached.and_then(|(_, hashes)| hashes.get(&(r.namespace.clone(), r.name.clone())))
                != Some(&r.content_hash)
        })
        .cloned()
        .collect();
    let same_keys = cached.is_some_and(|(_, hashes)| hashes.len() == rows.len());
    if changed.is_empty() && same_keys {
        return Ok((Changes::default(), written.cloned()));
    }
    let keep: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.namespace.clone(), r.name.clone()))
        .collect();
    db.ready().await?;
    let changes = persist::sync(db, mirror, fence, &changed, &keep).await?;
    let hashes = rows
        .into_iter()
        .map(|r| ((r.namespace, r.name), r.content_hash))
        .collect();
    Ok((changes, Some((db.identity.clone(), hashes))))
}

async fn delete(
    db: &Database,
    mirror: &MirrorIdentity,
    fence: Option<&Fence>,
) -> Result<(Changes, Option<WrittenRows>), Error> {
    db.ready().await?;
    let changes = persist::delete_all(db, mirror, fence).await?;
    Ok((changes, None))
}
