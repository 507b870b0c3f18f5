//! Persistence runs apart from replication. A reconcile writes the replicas,
//! hands the mirror's rows to this queue and builds status from the last
//! outcome: it never waits for a database. The queue has its own budget
//! (`--persistence-concurrency` jobs at once) and a limit per database
//! (`--persistence-per-database`), so a slow or silent database holds at
//! most its own share, and every call a job makes has a deadline. Jobs for
//! one mirror run one at a time and coalesce: only the newest sources
//! matter. When a job ends with a different outcome than the last one, the
//! mirror is reconciled again, so status follows.

mod job;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Semaphore;

use crate::api::DatabaseSpec;
use crate::plan::{MirrorIdentity, SourceConfigMap};
use crate::store::{self, Databases};
use crate::telemetry::names;
use crate::watches::{Trigger, TriggerSender};

/// What to do with a mirror's rows.
#[derive(Clone)]
pub(crate) enum Work {
    /// Make the rows equal these sources.
    Sync(Vec<Arc<SourceConfigMap>>),
    /// The mirror is being deleted: its rows go (each deletion recorded).
    DeleteAll,
}

#[derive(Clone)]
pub(crate) struct Job {
    pub mirror: MirrorIdentity,
    pub database: Option<DatabaseSpec>,
    pub work: Work,
    /// A sharded member's epoch for this mirror: the database refuses the
    /// job's statements once a newer owner has written.
    pub fence: Option<store::persist::Fence>,
    /// Under `--leader-elect`: the leader's write deadline, checked just
    /// before the job's statements are sent.
    pub lease: Option<Arc<crate::kubeclient::WriteDeadline>>,
}

/// How the last job of a mirror ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Persistence is off for this mirror.
    Off,
    /// The rows equal the sources; `changed` when this job wrote any.
    Synced {
        database: String,
        rows: usize,
        changed: bool,
    },
    /// The rows are gone.
    Deleted { database: String, rows: u64 },
    /// The job failed; `failures` in a row.
    Failed { error: store::Error, failures: u32 },
}

/// What this process last wrote for a mirror: database identity and the
/// hash of each (namespace, name) row.
pub(crate) type WrittenRows = (String, HashMap<(String, String), String>);

#[derive(Default)]
struct MirrorRows {
    pending: Option<Job>,
    running: bool,
    outcome: Option<Outcome>,
    /// When the rows last changed (or were first found in sync): the
    /// reference's `databaseStatus.lastSyncTime`.
    last_change: Option<Time>,
    written: Option<WrittenRows>,
    /// How many rows the last successful job left in the database: kept
    /// through failures (which forget `written`), so a mirror deleted while
    /// its database is silent still says how many rows it leaves behind.
    confirmed: Option<usize>,
    /// The last finished job was a deletion of the rows.
    deleting: bool,
    /// Forgotten while a job ran: dropped when it ends.
    forgotten: bool,
}

/// What status needs to know of a mirror's rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub outcome: Option<Outcome>,
    pub last_change: Option<Time>,
    /// A job is queued or running: the outcome may be about to change.
    pub busy: bool,
    /// The outcome is that of deleting the rows (the mirror is going).
    pub deleting: bool,
}

/// Whether an outcome changes what status says after `before`: the same
/// error again, or a resync that wrote nothing, does not.
fn is_news(before: Option<&Outcome>, after: &Outcome) -> bool {
    match (before, after) {
        (Some(Outcome::Synced { .. }), Outcome::Synced { changed: false, .. }) => false,
        (Some(Outcome::Failed { error: a, .. }), Outcome::Failed { error: b, .. }) => a != b,
        (_, Outcome::Synced { changed: true, .. }) => true,
        (before, after) => before != Some(after),
    }
}

/// Limits of the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Jobs running at once, over all databases.
    pub concurrency: usize,
    /// Jobs running at once on one database.
    pub per_database: usize,
}

pub(crate) struct Persistence {
    databases: Arc<Databases>,
    mirrors: Mutex<HashMap<String, MirrorRows>>,
    running: Semaphore,
    per_database: Mutex<HashMap<String, Arc<Semaphore>>>,
    limits: Limits,
    triggers: TriggerSender,
}

impl Persistence {
    pub(crate) fn new(
        databases: Arc<Databases>,
        limits: Limits,
        triggers: TriggerSender,
    ) -> Arc<Self> {
        Arc::new(Self {
            databases,
            mirrors: Mutex::new(HashMap::new()),
            running: Semaphore::new(limits.concurrency.max(1)),
            per_database: Mutex::new(HashMap::new()),
            limits,
            triggers,
        })
    }

    /// Queues `job` (replacing a queued one of the same mirror) and returns
    /// at once.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) {
        let uid = job.mirror.uid.clone();
        let start = {
            let mut mirrors = self.mirrors.lock().unwrap();
            let entry = mirrors.entry(uid.clone()).or_default();
            entry.pending = Some(job);
            entry.forgotten = false;
            !std::mem::replace(&mut entry.running, true)
        };
        if start {
            let this = self.clone();
            let span = tracing::info_span!("persistence_job", mirror_uid = %uid);
            tokio::spawn(async move { this.drain(uid).await }.instrument(span));
        }
    }

    /// What status should say of a mirror's rows.
    pub(crate) fn report(&self, uid: &str) -> Report {
        let mirrors = self.mirrors.lock().unwrap();
        match mirrors.get(uid) {
            Some(m) => Report {
                outcome: m.outcome.clone(),
                last_change: m.last_change.clone(),
                busy: m.running || m.pending.is_some(),
                deleting: m.deleting,
            },
            None => Report {
                outcome: None,
                last_change: None,
                busy: false,
                deleting: false,
            },
        }
    }

    /// How many rows this process last wrote for a mirror, if it knows.
    pub(crate) fn known_rows(&self, uid: &str) -> Option<usize> {
        let mirrors = self.mirrors.lock().unwrap();
        let entry = mirrors.get(uid)?;
        entry
            .written
            .as_ref()
            .map(|(_, rows)| rows.len())
            .or(entry.confirmed)
    }

    /// Forgets a mirror (deleted, or moved to another member).
    pub(crate) fn forget(&self, uid: &str) {
        let mut mirrors = self.mirrors.lock().unwrap();
        if let Some(m) = mirrors.get_mut(uid) {
            if m.running {
                // Dropped when its running job ends.
                m.pending = None;
                m.forgotten = true;
            } else {
                mirrors.remove(uid);
            }
        }
        Self::count_unsynced(&mirrors);
    }

    /// Forgets every mirror not in `owned` (a sharded member's released
    /// mirrors, mirrors removed without our finalizer).
    pub(crate) fn retain(&self, owned: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .mirrors
            .lock()
            .unwrap()
            .keys()
            .filter(|uid| !owned.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.forget(&uid);
        }
    }

    /// Runs the mirror's jobs one after another until none is queued.
    async fn drain(self: Arc<Self>, uid: String) {
        loop {
            let (job, written) = {
                let mut mirrors = self.mirrors.lock().unwrap();
                let Some(entry) = mirrors.get_mut(&uid) else {
                    return;
                };
                match entry.pending.take() {
                    Some(job) => (job, entry.written.clone()),
                    None => {
                        entry.running = false;
                        return;
                    }
                }
            };
            let failures = self.failures(&uid);
            let deleting = matches!(job.work, Work::DeleteAll);
            let (outcome, written) = job::run(&self, job, written, failures).await;
            self.finish(&uid, deleting, outcome, written);
        }
    }

    fn failures(&self, uid: &str) -> u32 {
        let mirrors = self.mirrors.lock().unwrap();
        match mirrors.get(uid).and_then(|m| m.outcome.as_ref()) {
            Some(Outcome::Failed { failures, .. }) => *failures,
            _ => 0,
        }
    }

    fn finish(&self, uid: &str, deleting: bool, outcome: Outcome, written: Option<WrittenRows>) {
        let mut mirrors = self.mirrors.lock().unwrap();
        let Some(entry) = mirrors.get_mut(uid) else {
            return;
        };
        if entry.forgotten {
            mirrors.remove(uid);
            return;
        }
        let news = is_news(entry.outcome.as_ref(), &outcome);
        if matches!(outcome, Outcome::Synced { changed: true, .. })
            || (matches!(outcome, Outcome::Synced { .. }) && entry.last_change.is_none())
        {
            entry.last_change = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        match &outcome {
            Outcome::Synced { rows, .. } => entry.confirmed = Some(*rows),
            Outcome::Deleted { .. } => entry.confirmed = Some(0),
            Outcome::Off => entry.confirmed = None,
            Outcome::Failed { .. } => {}
        }
        entry.written = written;
        entry.outcome = Some(outcome);
        entry.deleting = deleting;
        Self::count_unsynced(&mirrors);
        drop(mirrors);
        if news {
            let _ = self.triggers.send(Trigger::Persisted {
                mirror_uid: uid.to_string(),
            });
        }
    }

    fn count_unsynced(mirrors: &HashMap<String, MirrorRows>) {
        let unsynced = mirrors
            .values()
            .filter(|m| matches!(m.outcome, Some(Outcome::Failed { .. })))
            .count();
        metrics::gauge!(names::DB_MIRRORS_UNSYNCED).set(unsynced as f64);
    }

    /// The database's own limit: a silent database holds at most this many
    /// of the queue's jobs (and none of the global budget while waiting).
    fn database_limit(&self, identity: &str) -> Arc<Semaphore> {
        self.per_database
            .lock()
            .unwrap()
            .entry(identity.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_database.max(1))))
            .clone()
    }

    /// Closes idle tenant pools and drops the limits of databases no
    /// longer in use.
    pub(crate) fn close_idle(&self, idle: Duration) {
        if self.databases.close_idle(idle) > 0 {
            self.per_database
                .lock()
                .unwrap()
                .retain(|_, s| Arc::strong_count(s) > 1);
        }
    }
}
#[cfg(test)]
mod tests;
