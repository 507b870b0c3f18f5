//! The report step: status built from the typed outcomes (in `status`),
//! written only when it changed and only while this member may write the
//! mirror; then the gauges, the events for what is new, and the requeue.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::apply::{Failure, Outcome};
use super::persist::Persisted;
use super::remote::MirrorApi;
use super::state::Memory;
use super::sync::ReadError;
use super::{Context, events, finalizer, now, status};
use crate::api::{ConfigMirror, ConfigMirrorStatus, ShardStatus};
use crate::plan::{MirrorIdentity, ReplicaPlan, SpecError};
use crate::telemetry::names;

/// Why the report step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("Kubernetes API: {0}")]
    Status(#[source] kube::Error),
    #[error("{failed} replica writes failed, first: {}", first.source)]
    SyncFailed {
        failed: usize,
        #[source]
        first: Box<Failure>,
    },
    /// The invalid-spec path still puts the finalizer on.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl ReportError {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            ReportError::Status(_) => "kube",
            ReportError::SyncFailed { .. } => "sync_failed",
            ReportError::Read(e) => e.metric_label(),
        }
    }
}

/// What the earlier steps of a pass found and did.
pub(super) struct Pass {
    pub previous: Option<ConfigMirrorStatus>,
    pub plan: ReplicaPlan,
    pub outcome: Outcome,
    pub persisted: Option<Persisted>,
    pub now: Time,
    /// Look again this soon (a policy denial waiting for confirmation).
    pub recheck: Option<Duration>,
}

fn shard_status(ctx: &Context, uid: &str) -> ShardStatus {
    match ctx.scope.shard() {
        Some(view) => ShardStatus {
            member: view.member.clone(),
            epoch: view.epoch(uid).unwrap_or(0),
        },
        None => ShardStatus {
            member: "local".into(),
            epoch: 0,
        },
    }
}

#[instrument(level = "debug", skip_all)]
pub(super) async fn report(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    pass: Pass,
) -> Result<Action, ReportError> {
    let Pass {
        previous,
        plan,
        mut outcome,
        persisted,
        now,
        recheck,
    } = pass;
    let database_retry = persisted.as_ref().and_then(|p| p.retry);
    let status = status::build(&status::StatusInput {
        generation: mirror.metadata.generation,
        previous: previous.as_ref(),
        plan: &plan,
        outcome: &outcome,
        now,
        shard: shard_status(ctx, &id.uid),
        database: persisted.map(|p| (p.condition, p.status)),
    });
    let (ready, conflicts) = (status::is_ready(&status), status.conflicts as usize);
    let new_conflicts = status::new_conflicts(previous.as_ref(), &plan, &outcome);
    let new_denials = status::new_denials(previous.as_ref(), &plan);
    write_status(ctx, id, previous.as_ref(), status).await?;
    let (total_conflicts, total_ready) = ctx.memory.record_outcome(&id.uid, conflicts, ready);
    metrics::gauge!(names::REPLICA_CONFLICTS).set(total_conflicts as f64);
    metrics::gauge!(names::MIRRORS_READY).set(total_ready as f64);

    if !new_denials.is_empty() {
        events::forbidden(ctx, mirror, &new_denials).await;
    }
    announce(ctx, mirror, &new_conflicts, &outcome).await;
    if !outcome.failures.is_empty() {
        events::failures(ctx, mirror, &outcome.failures).await;
        let failed = outcome.failures.len();
        let first = Box::new(outcome.failures.swap_remove(0));
        return Err(ReportError::SyncFailed { failed, first });
    }
    tracing::debug!(
        mirror = %id.key(), sources = plan.sources.len(), targets = plan.targets.count(),
        written = outcome.written.len(), deleted = outcome.deleted.len(), conflicts, stale = outcome.stale,
        "reconciled"
    );
    let next = next_pass(ctx, &outcome, conflicts, database_retry);
    Ok(Action::requeue(recheck.map_or(next, |r| next.min(r))))
}

/// Events for what this pass did that is news.
async fn announce(
    ctx: &Context,
    mirror: &ConfigMirror,
    new_conflicts: &[&crate::plan::Conflict],
    outcome: &Outcome,
) {
    if !new_conflicts.is_empty() {
        metrics::counter!(names::CONFLICTS_DETECTED).increment(new_conflicts.len() as u64);
        events::conflicts(ctx, mirror, new_conflicts).await;
    }
    let creates = outcome.written.len();
    if creates > 0 {
        let namespaces: BTreeSet<&str> =
            outcome.written.iter().map(|(_, ns)| ns.as_str()).collect();
        events::created(ctx, mirror, creates, namespaces.len()).await;
    }
    if !outcome.deleted.is_empty() {
        events::replicas_deleted(ctx, mirror, &outcome.deleted).await;
    }
}

/// When to look again after a pass without failures.
fn next_pass(
    ctx: &Context,
    outcome: &Outcome,
    conflicts: usize,
    database_retry: Option<Duration>,
) -> Duration {
    let next = if outcome.stale > 0 {
        // Our view was behind; the watch is catching up. Look again soon.
        Duration::from_secs(1)
    } else if conflicts > 0 {
        ctx.settings.conflict_recheck
    } else {
        ctx.settings.resync
    };
    database_retry.map_or(next, |retry| next.min(retry))
}

/// A spec that can never work as written: say so, and wait for a new one.
#[instrument(level = "debug", skip_all)]
pub(super) async fn invalid(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    previous: Option<&ConfigMirrorStatus>,
    error: &SpecError,
) -> Result<Action, ReportError> {
    let status = status::invalid_spec(
        previous,
        mirror.metadata.generation,
        error,
        &now(),
        shard_status(ctx, &id.uid),
    );
    finalizer::ensure(ctx, mirror, id)
        .await
        .map_err(ReadError::Finalizer)?;
    if write_status(ctx, id, previous, status).await? {
        events::invalid_spec(ctx, mirror, error).await;
    }
    ctx.memory.record_outcome(&id.uid, 0, false);
    // Permanent: no retries until the spec (its generation) changes.
    Ok(Action::await_change())
}

async fn write_status(
    ctx: &Context,
    id: &MirrorIdentity,
    previous: Option<&ConfigMirrorStatus>,
    status: ConfigMirrorStatus,
) -> Result<bool, ReportError> {
    let may_write = || ctx.scope.may_write(&id.uid);
    write_status_with(&ctx.client, &may_write, &ctx.memory, id, previous, status)
        .await
        .map_err(ReportError::Status)
}

/// Writes status with server-side apply, only when its content changed.
/// Returns whether it wrote.
pub(super) async fn write_status_with(
    api: &impl MirrorApi,
    may_write: &(impl Fn() -> bool + Sync),
    memory: &Memory,
    id: &MirrorIdentity,
    previous: Option<&ConfigMirrorStatus>,
    status: ConfigMirrorStatus,
) -> Result<bool, kube::Error> {
    if previous == Some(&status) {
        return Ok(false);
    }
    // The same rule as replica writes: a member that may no longer write
    // this mirror leaves its status to the new owner.
    if !may_write() {
        return Ok(false);
    }
    let resource_version = match api.apply_status(id, &status).await {
        Ok(rv) => rv,
        // Refused by the client's write deadline (the lease ran out while
        // it waited to leave): left to whoever may write now.
        Err(_) if !may_write() => return Ok(false),
        Err(e) => return Err(e),
    };
    memory.wrote_status(&id.uid, resource_version, status);
    Ok(true)
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
