//! The controller: read → pure plan → apply → status, per ConfigMirror.

pub mod apply;
pub mod context;
pub mod controller;
pub mod events;
pub mod finalizer;
pub mod owned_mirrors;
pub mod persist;
pub(crate) mod state;
pub mod status;

#[cfg(test)]
mod status_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

pub use context::{Context, Settings};

use crate::api::{ConfigMirror, ConfigMirrorStatus, ShardStatus};
use crate::plan::{self, MirrorIdentity, PlanInput};
use crate::telemetry::names;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Watch(#[from] crate::watches::Error),
    #[error("{failed} replica writes failed, first: {first}")]
    SyncFailed { failed: usize, first: String },
    #[error("{remaining} replicas could not be deleted yet, first: {first}")]
    CleanupIncomplete { remaining: usize, first: String },
    #[error("the object has no {0}")]
    Incomplete(&'static str),
    #[error("deleting the mirror's rows: {0}")]
    Database(#[from] crate::store::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Watch(e) => e.metric_label(),
            Error::SyncFailed { .. } => "sync_failed",
            Error::CleanupIncomplete { .. } => "cleanup_incomplete",
            Error::Incomplete(_) => "incomplete",
            Error::Database(_) => "database",
        }
    }
}

fn identity(mirror: &ConfigMirror) -> Result<MirrorIdentity, Error> {
    Ok(MirrorIdentity {
        namespace: mirror.namespace().ok_or(Error::Incomplete("namespace"))?,
        name: mirror.name_any(),
        uid: mirror.uid().ok_or(Error::Incomplete("uid"))?,
    })
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

pub async fn reconcile(mirror: Arc<ConfigMirror>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Owned, and registered as in flight (a drain waits for it).
    let Some(in_flight) = ctx.scope.begin(&mirror) else {
        tracing::debug!(mirror = %mirror.name_any(), "not owned here now; skipped");
        return Ok(Action::await_change());
    };
    let id = identity(&mirror)?;
    let started = Instant::now();
    let work = async {
        if mirror.metadata.deletion_timestamp.is_some() {
            finalizer::cleanup(&ctx, &mirror, &id).await
        } else {
            sync(&ctx, &mirror, &id).await
        }
    };
    // A drain (or a fence) ends the reconcile wherever it waits: it may
    // write nothing more anyway, and the handover waits for it.
    let result = tokio::select! {
        result = work => result,
        _ = in_flight.cancelled() => {
            tracing::debug!(mirror = %id.key(), "cancelled: the mirror moved or this member fenced");
            return Ok(Action::await_change());
        }
    };
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    };
    metrics::counter!(names::RECONCILE_TOTAL, "result" => label).increment(1);
    metrics::histogram!(names::RECONCILE_DURATION, "result" => label)
        .record(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.memory.succeeded(&id.uid);
    }
    result
}

/// Per-object exponential backoff with jitter.
pub fn error_policy(mirror: Arc<ConfigMirror>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = mirror.uid().unwrap_or_default();
    let failures = ctx.memory.failed(&uid);
    let delay = context::backoff(
        failures,
        ctx.settings.backoff_base,
        ctx.settings.backoff_max,
    );
    tracing::warn!(
        mirror = %format!("{}/{}", mirror.namespace().unwrap_or_default(), mirror.name_any()),
        error = %error, failures, retry_in = ?delay, "reconcile failed"
    );
    Action::requeue(delay)
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

async fn sync(ctx: &Context, mirror: &ConfigMirror, id: &MirrorIdentity) -> Result<Action, Error> {
    let rv = mirror.resource_version().unwrap_or_default();
    let previous = ctx
        .memory
        .current_status(&id.uid, &rv, mirror.status.as_ref());
    let generation = mirror.metadata.generation;

    let spec = match plan::validate(&mirror.spec) {
        Ok(spec) => spec,
        Err(e) => {
            let status = status::invalid_spec(
                previous.as_ref(),
                generation,
                &e,
                &now(),
                shard_status(ctx, &id.uid),
            );
            finalizer::ensure(ctx, mirror, id).await?;
            if write_status(ctx, mirror, id, previous.as_ref(), status).await? {
                events::invalid_spec(ctx, mirror, &e).await;
            }
            ctx.memory.record_outcome(&id.uid, 0, false);
            // Permanent: no retries until the spec (its generation) changes.
            return Ok(Action::await_change());
        }
    };

    // Read: sources from the namespace watch (started on first use), the rest from the caches.
    // The finalizer (a write) and the source namespace's first list (a
    // read) are independent: one round trip instead of two before the
    // first replica. No replica is written before the finalizer is on.
    // A sharded member caches only its own mirrors' replicas: load this
    // one's (a list by label) the first time it reconciles it.
    let (finalized, candidates, loaded) = tokio::join!(
        finalizer::ensure(ctx, mirror, id),
        ctx.sources
            .sources(&spec.source_namespace, &spec.source_selector),
        ctx.replicas.ensure_loaded(&ctx.client, &id.uid)
    );
    finalized?;
    loaded?;
    let candidates = candidates?;
    let known = ctx
        .memory
        .known_conflicts(&id.uid, ctx.settings.conflict_recheck);
    let plan = {
        let replicas = ctx.replicas.read();
        let namespaces = ctx.namespaces.read();
        plan::plan(&PlanInput {
            mirror: id,
            spec: &spec,
            candidates: &candidates,
            replicas: &replicas,
            namespaces: &namespaces,
            policy: &ctx.settings.policy,
            known_conflicts: &known,
        })
    };

    // Apply.
    let outcome = apply::apply(ctx, id, plan.actions.clone()).await;

    // Persist: rows follow the sources; a database problem never blocks the above.
    let now = now();
    let persisted = persist::sync(
        ctx,
        mirror,
        id,
        &plan.sources,
        previous.as_ref().and_then(|p| p.database_status.as_ref()),
        &now,
    );
    let database_retry = persisted.as_ref().and_then(|p| p.retry);

    // Status, and events for what is new.
    let status = status::build(&status::StatusInput {
        generation,
        previous: previous.as_ref(),
        plan: &plan,
        outcome: &outcome,
        now,
        shard: shard_status(ctx, &id.uid),
        database: persisted.map(|p| (p.condition, p.status)),
    });
    let ready = status::is_ready(&status);
    let conflicts = status.conflicts as usize;
    let known_before: Vec<(String, String)> = previous
        .iter()
        .flat_map(|p| p.problems.iter().filter(|p| p.reason == "Conflict"))
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect();
    write_status(ctx, mirror, id, previous.as_ref(), status).await?;
    let (total_conflicts, total_ready) = ctx.memory.record_outcome(&id.uid, conflicts, ready);
    metrics::gauge!(names::REPLICA_CONFLICTS).set(total_conflicts as f64);
    metrics::gauge!(names::MIRRORS_READY).set(total_ready as f64);

    let new_conflicts: Vec<_> = plan
        .conflicts
        .iter()
        .chain(&outcome.conflicts)
        .filter(|c| !known_before.contains(&(c.namespace.clone(), c.name.clone())))
        .collect();
    if !new_conflicts.is_empty() {
        metrics::counter!(names::CONFLICTS_DETECTED).increment(new_conflicts.len() as u64);
        events::conflicts(ctx, mirror, &new_conflicts).await;
    }
    let creates = outcome.written.len();
    if creates > 0 {
        let namespaces: std::collections::BTreeSet<&str> =
            outcome.written.iter().map(|(_, ns)| ns.as_str()).collect();
        events::created(ctx, mirror, creates, namespaces.len()).await;
    }
    if !outcome.deleted.is_empty() {
        events::replicas_deleted(ctx, mirror, &outcome.deleted).await;
    }
    if !outcome.failures.is_empty() {
        events::failures(ctx, mirror, &outcome.failures).await;
        return Err(Error::SyncFailed {
            failed: outcome.failures.len(),
            first: outcome.failures[0].message.clone(),
        });
    }
    tracing::debug!(
        mirror = %id.key(), sources = plan.sources.len(), targets = plan.targets.count(),
        written = outcome.written.len(), deleted = outcome.deleted.len(), conflicts, stale = outcome.stale,
        "reconciled"
    );
    let mut next = if outcome.stale > 0 {
        // Our view was behind; the watch is catching up. Look again soon.
        Duration::from_secs(1)
    } else if conflicts > 0 {
        ctx.settings.conflict_recheck
    } else {
        ctx.settings.resync
    };
    if let Some(retry) = database_retry {
        next = next.min(retry);
    }
    Ok(Action::requeue(next))
}

/// Writes status with server-side apply, only when its content changed.
/// Returns whether it wrote.
async fn write_status(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    previous: Option<&ConfigMirrorStatus>,
    status: ConfigMirrorStatus,
) -> Result<bool, Error> {
    if previous == Some(&status) {
        return Ok(false);
    }
    // The same rule as replica writes: a member that may no longer write
    // this mirror leaves its status to the new owner.
    if !ctx.scope.may_write(&id.uid) {
        return Ok(false);
    }
    let api: Api<ConfigMirror> = Api::namespaced(ctx.client.clone(), &id.namespace);
    let patch = json!({
        "apiVersion": "mirror.configmirror.io/v1alpha1",
        "kind": "ConfigMirror",
        "metadata": {"name": id.name},
        "status": status,
    });
    let params = PatchParams::apply(apply::FIELD_MANAGER).force();
    let written = match api
        .patch_status(&mirror.name_any(), &params, &Patch::Apply(&patch))
        .await
    {
        Ok(written) => written,
        // Refused by the client's write deadline (the lease ran out while
        // it waited to leave): left to whoever may write now.
        Err(_) if !ctx.scope.may_write(&id.uid) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    ctx.memory.wrote_status(
        &id.uid,
        written.resource_version().unwrap_or_default(),
        status,
    );
    Ok(true)
}
