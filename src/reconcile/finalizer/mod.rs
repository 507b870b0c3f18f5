//! The finalizer: a mirror is deleted only after all its replicas are, and
//! its rows are deleted or recorded as orphaned.

mod rows;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::apply::{self, FIELD_MANAGER};
use super::context::Context;
use super::{Error, events};
use crate::api::{ConfigMirror, keys};
use crate::plan::{self, MirrorIdentity, ReplicaMeta};

fn has_finalizer(mirror: &ConfigMirror) -> bool {
    mirror.finalizers().iter().any(|f| f == keys::FINALIZER)
}

/// Merge patch of the finalizer list, guarded by the resourceVersion we
/// read it at, so a concurrent change makes us re-read instead of clobber.
async fn set_finalizers(
    ctx: &Context,
    mirror: &ConfigMirror,
    finalizers: Vec<String>,
) -> Result<ConfigMirror, Error> {
    let api: Api<ConfigMirror> =
        Api::namespaced(ctx.client.clone(), &mirror.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": mirror.resource_version()}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    Ok(api
        .patch(&mirror.name_any(), &params, &Patch::Merge(&patch))
        .await?)
}

/// Adds the finalizer unless the mirror (or our own recent write) has it.
pub async fn ensure(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<(), Error> {
    if has_finalizer(mirror)
        || ctx
            .memory
            .added_finalizer(&id.uid, &mirror.resource_version().unwrap_or_default())
    {
        return Ok(());
    }
    let mut finalizers = mirror.finalizers().to_vec();
    finalizers.push(keys::FINALIZER.into());
    let patched = set_finalizers(ctx, mirror, finalizers).await?;
    ctx.memory
        .remember_finalizer(&id.uid, patched.resource_version().unwrap_or_default());
    Ok(())
}

/// Deletes every replica of a mirror being deleted, then lets it go.
/// Replicas are listed from the API by label (not from the cache, not from
/// status), so even ones created a moment ago are found.
pub async fn cleanup(
    ctx: &Context,
    mirror: &ConfigMirror,
    id: &MirrorIdentity,
) -> Result<Action, Error> {
    if !has_finalizer(mirror) {
        ctx.memory.forget(&id.uid);
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::all(ctx.client.clone());
    let selector = format!("{}={}", keys::MIRROR_UID, id.uid);
    let listed = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    let replicas: Vec<ReplicaMeta> = listed
        .items
        .iter()
        .map(|m| ReplicaMeta::from_parts(&m.metadata, String::new(), false))
        .collect();
    let actions = plan::plan_cleanup(id, &replicas);
    let outcome = apply::apply(ctx, id, actions).await;
    if !outcome.deleted.is_empty() {
        events::replicas_deleted(ctx, mirror, &outcome.deleted).await;
    }
    if !outcome.failures.is_empty() || outcome.stale > 0 {
        return Err(Error::CleanupIncomplete {
            remaining: outcome.failures.len() + outcome.stale,
            first: outcome
                .failures
                .first()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| "changed while deleting".into()),
        });
    }
    // The rows go too (their deletions recorded), through the persistence
    // queue: a finalizer never waits on a database, and a database that
    // cannot be reached cannot hold the mirror (or its namespace) forever.
    if !rows::released(ctx, mirror, id).await {
        // The queue reconciles the mirror again when the deletion ends.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let remaining: Vec<String> = mirror
        .finalizers()
        .iter()
        .filter(|f| *f != keys::FINALIZER)
        .cloned()
        .collect();
    match set_finalizers(ctx, mirror, remaining).await {
        // Already gone: an earlier pass let it go and the cache lagged.
        Err(Error::Kube(kube::Error::Api(s))) if s.is_not_found() => {}
        other => {
            other?;
        }
    }
    ctx.memory.forget(&id.uid);
    tracing::info!(mirror = %id.key(), replicas = outcome.deleted.len(), "mirror deleted, replicas removed");
    Ok(Action::await_change())
}
