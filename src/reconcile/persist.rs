//! The persistence step of a reconcile: after the replicas are written, the
//! mirror's rows are handed to the persistence queue, and status says what
//! the queue last did. Nothing here waits for a database; failures become
//! the DatabaseSynced condition and a retry, never a slower replica.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Context;
use super::status::DATABASE_SYNCED;
use crate::api::{ConfigMirror, DatabaseStatus};
use tracing::instrument;

use crate::persistence::{Job, Outcome, Persistence, Report, Work};
use crate::plan::{MirrorIdentity, SourceConfigMap};

/// The persistence queue as the reconcile sees it: jobs go in, a report
/// of the last one comes out. Nothing here waits for a database.
pub(crate) trait RowQueue {
    /// Queues a job (replacing a queued one of the same mirror).
    fn submit(&self, job: Job);
    fn report(&self, uid: &str) -> Report;
}

impl RowQueue for Arc<Persistence> {
    fn submit(&self, job: Job) {
        Persistence::submit(self, job);
    }

    fn report(&self, uid: &str) -> Report {
        Persistence::report(self, uid)
    }
}

/// What the database step yields for status, and when to try again.
pub(crate) struct Persisted {
    pub condition: Condition,
    pub status: DatabaseStatus,
    pub retry: Option<Duration>,
}

fn condition(
    ok: Option<bool>,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: DATABASE_SYNCED.into(),
        status: match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
        .into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Queues the mirror's rows and returns what status should say now; `None`
/// when persistence is off for it.
#[instrument(level = "debug", skip_all)]
pub(crate) fn sync(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    sources: &[Arc<SourceConfigMap>],
    previous: Option<&DatabaseStatus>,
    now: &Time,
) -> Option<Persisted> {
    let job = Job {
        mirror: id.clone(),
        database: mirror.spec.database.clone(),
        work: Work::Sync(sources.to_vec()),
        fence: ctx.scope.fence(&id.uid),
        lease: ctx.scope.lease().cloned(),
    };
    queue(
        &ctx.persistence,
        job,
        mirror.metadata.generation,
        previous,
        now,
    )
}

/// What status should say from the queue's last report, without a new job.
pub(crate) fn last_report(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    previous: Option<&DatabaseStatus>,
    now: &Time,
) -> Option<Persisted> {
    let report = ctx.persistence.report(&id.uid);
    let rows = match &report.outcome {
        Some(Outcome::Synced { rows, .. }) => *rows,
        _ => 0,
    };
    from_report(&report, rows, mirror.metadata.generation, previous, now)
}

/// Hands `job` to the queue and reads back what status should say.
pub(crate) fn queue(
    queue: &impl RowQueue,
    job: Job,
    generation: Option<i64>,
    previous: Option<&DatabaseStatus>,
    now: &Time,
) -> Option<Persisted> {
    let uid = job.mirror.uid.clone();
    let sources = match &job.work {
        Work::Sync(sources) => sources.len(),
        Work::DeleteAll => 0,
    };
    queue.submit(job);
    let report = queue.report(&uid);
    from_report(&report, sources, generation, previous, now)
}

/// Status from the queue's report. Before the first job ends there is no
/// outcome yet: the condition is Unknown (Pending), and a mirror whose
/// database is silent shows Timeout as soon as a job hits its deadline.
pub(crate) fn from_report(
    report: &Report,
    sources: usize,
    generation: Option<i64>,
    previous: Option<&DatabaseStatus>,
    now: &Time,
) -> Option<Persisted> {
    let last_sync = report
        .last_change
        .clone()
        .or_else(|| previous.and_then(|p| p.last_sync_time.clone()));
    match &report.outcome {
        Some(Outcome::Off) => None,
        None => {
            // Persistence may turn out off for this mirror: say nothing
            // until the queue knows, unless status already said something.
            previous?;
            Some(Persisted {
                condition: condition(
                    None,
                    "Pending",
                    "the rows are being written".into(),
                    generation,
                    now,
                ),
                status: DatabaseStatus {
                    connected: previous.is_some_and(|p| p.connected),
                    last_sync_time: last_sync,
                    message: None,
                },
                retry: Some(Duration::from_secs(5)),
            })
        }
        Some(Outcome::Synced { database, .. } | Outcome::Deleted { database, .. }) => {
            Some(Persisted {
                condition: condition(
                    Some(true),
                    "Synced",
                    format!("{sources} rows in database {database} match the sources"),
                    generation,
                    now,
                ),
                status: DatabaseStatus {
                    connected: true,
                    last_sync_time: last_sync.or_else(|| Some(now.clone())),
                    message: None,
                },
                retry: None,
            })
        }
        Some(Outcome::Failed { error, failures }) => {
            Some(failed(error, *failures, last_sync, generation, now))
        }
    }
}

/// The last job failed: say why, and retry sooner when it may pass by itself.
fn failed(
    error: &crate::store::Error,
    failures: u32,
    last_sync: Option<Time>,
    generation: Option<i64>,
    now: &Time,
) -> Persisted {
    let retry = if error.transient() {
        super::context::backoff(failures, Duration::from_secs(1), Duration::from_secs(120))
    } else {
        // Someone has to fix a secret or a setting; look again now and then.
        Duration::from_secs(60)
    };
    let message = format!("{error}. Replicas are still written; rows catch up once this is fixed.");
    Persisted {
        condition: condition(
            Some(false),
            error.reason(),
            message.clone(),
            generation,
            now,
        ),
        status: DatabaseStatus {
            connected: false,
            last_sync_time: last_sync,
            message: Some(message),
        },
        retry: Some(retry),
    }
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
