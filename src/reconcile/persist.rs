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
use crate::persistence::{Job, Outcome, Report, Work};
use crate::plan::{MirrorIdentity, SourceConfigMap};

/// What the database step yields for status, and when to try again.
pub struct Persisted {
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
pub fn sync(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    sources: &[Arc<SourceConfigMap>],
    previous: Option<&DatabaseStatus>,
    now: &Time,
) -> Option<Persisted> {
    ctx.persistence.submit(Job {
        mirror: id.clone(),
        database: mirror.spec.database.clone(),
        work: Work::Sync(sources.to_vec()),
        fence: ctx.scope.fence(&id.uid),
        lease: ctx.scope.lease().cloned(),
    });
    let report = ctx.persistence.report(&id.uid);
    from_report(
        &report,
        sources.len(),
        mirror.metadata.generation,
        previous,
        now,
    )
}

/// Status from the queue's report. Before the first job ends there is no
/// outcome yet: the condition is Unknown (Pending), and a mirror whose
/// database is silent shows Timeout as soon as a job hits its deadline.
pub fn from_report(
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
            let retry = if error.transient() {
                super::context::backoff(*failures, Duration::from_secs(1), Duration::from_secs(120))
            } else {
                // Someone has to fix a secret or a setting; look again now and then.
                Duration::from_secs(60)
            };
            let message =
                format!("{error}. Replicas are still written; rows catch up once this is fixed.");
            Some(Persisted {
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
            })
        }
    }
}
