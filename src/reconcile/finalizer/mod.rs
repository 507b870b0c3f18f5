//! The finalizer: a mirror is deleted only after all its replicas are, and
//! its rows are deleted or recorded as orphaned.

mod rows;

#[cfg(test)]
mod tests;

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::apply::{self, Failure};
use super::context::Context;
use super::events;
use super::remote::MirrorApi;
use super::state::Memory;
use crate::api::{ConfigMirror, keys};
use crate::plan::{self, MirrorIdentity};

/// Why a deleted mirror's cleanup is not done yet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{remaining} replicas could not be deleted yet, first: {}", first_cause(.first))]
    CleanupIncomplete {
        remaining: usize,
        /// The first failed delete; none when they only raced a change.
        #[source]
        first: Option<Box<Failure>>,
    },
}

fn first_cause(first: &Option<Box<Failure>>) -> String {
    match first {
        Some(f) => f.source.to_string(),
        None => "changed while deleting".into(),
    }
}

impl Error {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::CleanupIncomplete { .. } => "cleanup_incomplete",
        }
    }
}

fn has_finalizer(mirror: &ConfigMirror) -> bool {
    mirror.finalizers().iter().any(|f| f == keys::FINALIZER)
}

/// Adds the finalizer unless the mirror (or our own recent write) has it.
pub(crate) async fn ensure(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<(), kube::Error> {
    ensure_with(&ctx.client, &ctx.memory, mirror, id).await
}

pub(crate) async fn ensure_with(
    api: &impl MirrorApi,
    memory: &Memory,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<(), kube::Error> {
    let cached_rv = mirror.resource_version().unwrap_or_default();
    if has_finalizer(mirror) || memory.added_finalizer(&id.uid, &cached_rv) {
        return Ok(());
    }
    let mut finalizers = mirror.finalizers().to_vec();
    finalizers.push(keys::FINALIZER.into());
    let patched = api.patch_finalizers(mirror, finalizers).await?;
    memory.remember_finalizer(&id.uid, patched.resource_version().unwrap_or_default());
    Ok(())
}

/// Takes our finalizer off (the guard of `patch_finalizers` makes a
/// concurrent change re-read instead of clobber).
pub(crate) async fn release(api: &impl MirrorApi, mirror: &ConfigMirror) -> Result<(), Error> {
    let remaining: Vec<String> = mirror
        .finalizers()
        .iter()
        .filter(|f| *f != keys::FINALIZER)
        .cloned()
        .collect();
    match api.patch_finalizers(mirror, remaining).await {
        Ok(_) => Ok(()),
        // Already gone: an earlier pass let it go and the cache lagged.
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a cleanup pass deleted every replica. The finalizer stays on
/// when a delete failed, raced a change, or was not sent because this
/// member may not write the mirror now (fenced, moved): the next pass, here
/// or at the new owner, tries again.
fn all_deleted(outcome: &mut apply::Outcome) -> Result<(), Error> {
    if outcome.failures.is_empty() && outcome.stale == 0 {
        return Ok(());
    }
    let remaining = outcome.failures.len() + outcome.stale;
    let first = (!outcome.failures.is_empty()).then(|| Box::new(outcome.failures.swap_remove(0)));
    Err(Error::CleanupIncomplete { remaining, first })
}

/// Deletes every replica of a mirror being deleted, then lets it go.
/// Replicas are listed from the API by label (not from the cache, not from
/// status), so even ones created a moment ago are found.
#[instrument(level = "debug", skip_all)]
pub(crate) async fn cleanup(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<Action, Error> {
    if !has_finalizer(mirror) {
        ctx.memory.forget(&id.uid);
        return Ok(Action::await_change());
    }
    let replicas = ctx.client.list_replicas(&id.uid).await?;
    let actions = plan::plan_cleanup(id, &replicas);
    let mut outcome = apply::apply(ctx, id, actions).await;
    if !outcome.deleted.is_empty() {
        events::replicas_deleted(ctx, mirror, &outcome.deleted).await;
    }
    all_deleted(&mut outcome)?;
    // The rows go too (their deletions recorded), through the persistence
    // queue: a finalizer never waits on a database, and a database that
    // cannot be reached cannot hold the mirror (or its namespace) forever.
    if !rows::released(ctx, mirror, id).await {
        // The queue reconciles the mirror again when the deletion ends.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    release(&ctx.client, mirror).await?;
    ctx.memory.forget(&id.uid);
    tracing::info!(mirror = %id.key(), replicas = outcome.deleted.len(), "mirror deleted, replicas removed");
    Ok(Action::await_change())
}
