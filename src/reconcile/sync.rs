//! One pass over a live mirror, as a pipeline of named steps:
//! read → validate → plan → apply → persist → report. Each step has its own
//! error; a database problem never blocks the replicas.

use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::report::{self, Pass};
use super::{Context, Error, apply, denials, finalizer, now, persist};
use crate::api::{ConfigMirror, ConfigMirrorStatus};
use crate::plan::{self, MirrorIdentity, PlanInput, ReplicaPlan, SourceConfigMap, ValidSpec};

/// Why the read step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("Kubernetes API: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("Kubernetes API: {0}")]
    Replicas(#[source] kube::Error),
    #[error(transparent)]
    Sources(#[from] crate::watches::Error),
}

impl ReadError {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            ReadError::Finalizer(_) | ReadError::Replicas(_) => "kube",
            ReadError::Sources(e) => e.metric_label(),
        }
    }
}

#[instrument(level = "debug", skip_all)]
pub(super) async fn sync(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<Action, Error> {
    let previous = previous_status(ctx, mirror, id);
    let spec = match plan::validate(&mirror.spec) {
        Ok(spec) => spec,
        Err(e) => return Ok(report::invalid(ctx, mirror, id, previous.as_ref(), &e).await?),
    };
    let candidates = read(ctx, mirror, id, &spec).await?;
    let mut plan = plan_step(ctx, id, &spec, &candidates);
    let held = denials::hold_unconfirmed(&ctx.memory, &id.uid, &mut plan, Instant::now());
    let outcome = apply::apply(ctx, id, plan.actions.clone()).await;
    let now = now();
    let previous_db = previous.as_ref().and_then(|p| p.database_status.as_ref());
    let persisted = if held.source {
        // Rows stay as they are until the denial is confirmed, like replicas.
        persist::last_report(ctx, mirror, id, previous_db, &now)
    } else {
        persist::sync(ctx, mirror, id, &plan.sources, previous_db, &now)
    };
    let pass = Pass {
        previous,
        plan,
        outcome,
        persisted,
        now,
        recheck: held.recheck(),
    };
    Ok(report::report(ctx, mirror, id, pass).await?)
}

/// The status this mirror has: ours when the cache has not caught up.
fn previous_status(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Option<ConfigMirrorStatus> {
    let rv = mirror.resource_version().unwrap_or_default();
    ctx.memory
        .current_status(&id.uid, &rv, mirror.status.as_ref())
}

/// Sources from the namespace watch (started on first use), the rest from
/// the caches. The finalizer (a write) and the source namespace's first
/// list (a read) are independent: one round trip instead of two before the
/// first replica. No replica is written before the finalizer is on. A
/// sharded member caches only its own mirrors' replicas: this loads this
/// one's (a list by label) the first time it reconciles it. A source the
/// namespace policy denies is not read, or even watched.
#[instrument(level = "debug", skip_all)]
async fn read(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
    spec: &ValidSpec,
) -> Result<Vec<Arc<SourceConfigMap>>, ReadError> {
    let denied = plan::source_denial(id, spec, &ctx.namespaces.read(), &ctx.settings.policy);
    let sources = async {
        match denied {
            Some(_) => Ok(Vec::new()),
            None => {
                ctx.sources
                    .sources(&spec.source_namespace, &spec.source_selector)
                    .await
            }
        }
    };
    let (finalized, candidates, loaded) = tokio::join!(
        finalizer::ensure(ctx, mirror, id),
        sources,
        ctx.replicas.ensure_loaded(&ctx.client, &id.uid)
    );
    finalized.map_err(ReadError::Finalizer)?;
    loaded.map_err(ReadError::Replicas)?;
    Ok(candidates?)
}

/// The pure plan, over the caches as they are now.
#[instrument(level = "debug", skip_all)]
fn plan_step(
    ctx: &Context,
    id: &MirrorIdentity,
    spec: &ValidSpec,
    candidates: &[Arc<SourceConfigMap>],
) -> ReplicaPlan {
    let known = ctx
        .memory
        .known_conflicts(&id.uid, ctx.settings.conflict_recheck);
    let replicas = ctx.replicas.read();
    let namespaces = ctx.namespaces.read();
    plan::plan(&PlanInput {
        mirror: id,
        spec,
        candidates,
        replicas: &replicas,
        namespaces: &namespaces,
        policy: &ctx.settings.policy,
        known_conflicts: &known,
    })
}
