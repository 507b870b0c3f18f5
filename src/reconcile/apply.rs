//! Carries out a plan: bounded concurrency shared fairly between mirrors
//! (`fair`), only the writes the plan names, resourceVersion preconditions
//! on every update and delete, and never a write to a ConfigMap the mirror
//! does not own.

pub mod fair;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, core::Status};

use super::context::Context;
use crate::api::keys;
use crate::plan::replica::replica_body;
use crate::plan::{Action, Conflict, DeleteReason, Holder, MirrorIdentity, ReplicaMeta, Target};
use crate::telemetry::names;

pub const FIELD_MANAGER: &str = "configmirror";

/// Writes older than this are not counted as replication lag: they repair
/// or fill in (a new namespace, drift) rather than follow a source change.
const LAG_HORIZON: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub namespace: String,
    pub name: String,
    pub op: &'static str,
    pub message: String,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// (source name, namespace) now holding an in-sync replica we wrote.
    pub written: Vec<(String, String)>,
    pub deleted: Vec<(String, String, DeleteReason)>,
    /// Names found held by someone else when we tried to create them.
    pub conflicts: Vec<Conflict>,
    pub failures: Vec<Failure>,
    /// Writes refused because our view was stale (a precondition failed,
    /// or the object changed under us): retried soon, not an error.
    pub stale: usize,
}

enum Done {
    Written {
        source: String,
        namespace: String,
    },
    Adopted {
        source: String,
        namespace: String,
    },
    Deleted {
        namespace: String,
        name: String,
        reason: DeleteReason,
    },
    Conflict(Conflict),
    Stale,
    Skipped,
    Failed(Failure),
}

pub async fn apply(ctx: &Context, mirror: &MirrorIdentity, actions: Vec<Action>) -> Outcome {
    if actions.is_empty() {
        return Outcome::default();
    }
    // Waiting for write permits needs no reconcile slot: others use it meanwhile.
    ctx.slots
        .without(&mirror.uid, write_all(ctx, mirror, actions))
        .await
}

async fn write_all(ctx: &Context, mirror: &MirrorIdentity, actions: Vec<Action>) -> Outcome {
    let mut results = futures::stream::iter(actions)
        .map(|action| async move {
            let op = action.op();
            let permit = ctx.writes.acquire(&mirror.uid).await;
            let done = execute(ctx, mirror, action).await;
            drop(permit);
            // However long the whole fan-out takes, each write is progress.
            ctx.liveness.progressed();
            let result = match &done {
                Done::Written { .. } | Done::Adopted { .. } | Done::Deleted { .. } => "success",
                Done::Conflict(_) => "conflict",
                Done::Stale => "stale",
                Done::Skipped => "skipped",
                Done::Failed(_) => "error",
            };
            metrics::counter!(names::REPLICA_WRITES, "op" => op, "result" => result).increment(1);
            done
        })
        .buffer_unordered(ctx.settings.write_concurrency.max(1));
    let mut out = Outcome::default();
    while let Some(done) = results.next().await {
        match done {
            Done::Written { source, namespace } => out.written.push((source, namespace)),
            Done::Adopted { source, namespace } => out.written.push((source, namespace)),
            Done::Deleted {
                namespace,
                name,
                reason,
            } => out.deleted.push((namespace, name, reason)),
            Done::Conflict(c) => out.conflicts.push(c),
            Done::Stale => out.stale += 1,
            Done::Skipped => {}
            Done::Failed(f) => out.failures.push(f),
        }
    }
    out.conflicts.sort();
    out.failures
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

async fn execute(ctx: &Context, mirror: &MirrorIdentity, action: Action) -> Done {
    // Just before sending: a member whose lease ran out, or whose mirror
    // moved or is draining, writes nothing more, even mid-reconcile.
    if !ctx.scope.may_write(&mirror.uid) {
        return Done::Stale;
    }
    match send(ctx, mirror, action).await {
        // The client refuses a write that leaves after the deadline (it
        // may have waited for the rate limit): not a failure, the member
        // simply may not write any more.
        Done::Failed(_) if !ctx.scope.may_write(&mirror.uid) => Done::Stale,
        done => done,
    }
}

async fn send(ctx: &Context, mirror: &MirrorIdentity, action: Action) -> Done {
    match action {
        Action::Create(target) => create(ctx, mirror, &target).await,
        Action::Update {
            target,
            resource_version,
        } => update(ctx, mirror, &target, resource_version).await,
        Action::Replace {
            target,
            resource_version,
            uid,
        } => {
            match delete(
                ctx,
                &target.namespace,
                &target.source.name,
                &resource_version,
                &uid,
            )
            .await
            {
                Ok(()) => create(ctx, mirror, &target).await,
                Err(done) => done,
            }
        }
        Action::Delete {
            namespace,
            name,
            resource_version,
            uid,
            reason,
        } => match delete(ctx, &namespace, &name, &resource_version, &uid).await {
            Ok(()) => Done::Deleted {
                namespace,
                name,
                reason,
            },
            Err(done) => done,
        },
    }
}

fn api(ctx: &Context, namespace: &str) -> Api<ConfigMap> {
    Api::namespaced(ctx.client.clone(), namespace)
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn failed(target: &Target, op: &'static str, e: &kube::Error) -> Done {
    Done::Failed(Failure {
        namespace: target.namespace.clone(),
        name: target.source.name.clone(),
        op,
        message: e.to_string(),
    })
}

/// The namespace is gone or going: the namespace watch will tell the plan.
fn namespace_gone(s: &Status) -> bool {
    s.is_not_found() || (s.is_forbidden() && s.message.contains("being terminated"))
}

/// Remembers what we just wrote so the next plan sees it before the watch does.
fn observe_written(ctx: &Context, written: &kube::api::ObjectMeta, target: &Target) {
    let meta = ReplicaMeta::from_parts(
        written,
        target.source.content_hash.clone(),
        target.source.content.immutable,
    );
    ctx.replicas.observe_own_write(meta);
    if let Some(seen) = target.source.observed_at {
        let lag = seen.elapsed();
        if lag < LAG_HORIZON {
            metrics::histogram!(names::REPLICATION_LAG).record(lag.as_secs_f64());
        }
    }
}

/// What the API server answers to a write: only the metadata is read (the
/// echoed data, up to 1 MiB, is skipped without being allocated).
#[derive(serde::Deserialize)]
struct Written {
    metadata: kube::api::ObjectMeta,
}

/// Writes a replica with a raw request whose body embeds the source's
/// pre-serialized content (see `replica_body`).
async fn write(
    ctx: &Context,
    mirror: &MirrorIdentity,
    target: &Target,
    resource_version: Option<String>,
) -> Result<Written, kube::Error> {
    let path = format!("/api/v1/namespaces/{}/configmaps", target.namespace);
    let request = kube::core::Request::new(path);
    let replace = resource_version.is_some();
    let body = replica_body(mirror, &target.source, &target.namespace, resource_version);
    let http_request = if replace {
        request.replace(&target.source.name, &post_params(), body)
    } else {
        request.create(&post_params(), body)
    }
    .map_err(kube::Error::BuildRequest)?;
    ctx.client.request::<Written>(http_request).await
}

async fn create(ctx: &Context, mirror: &MirrorIdentity, target: &Target) -> Done {
    match write(ctx, mirror, target, None).await {
        Ok(created) => {
            observe_written(ctx, &created.metadata, target);
            Done::Written {
                source: target.source.name.clone(),
                namespace: target.namespace.clone(),
            }
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            Box::pin(existing(ctx, mirror, target)).await
        }
        Err(kube::Error::Api(s)) if namespace_gone(&s) => Done::Skipped,
        Err(e) => failed(target, "create", &e),
    }
}

/// A create found the name taken: find out by whom. Never overwrites a
/// ConfigMap this mirror does not own, except the reference operator's copy
/// of this very mirror when adoption is on.
async fn existing(ctx: &Context, mirror: &MirrorIdentity, target: &Target) -> Done {
    let name = &target.source.name;
    let found = match api(ctx, &target.namespace).get_opt(name).await {
        Ok(Some(cm)) => cm,
        Ok(None) => return Done::Stale,
        Err(e) => return failed(target, "create", &e),
    };
    let labels = found.metadata.labels.clone().unwrap_or_default();
    let managed = labels.get(keys::MANAGED_BY).map(String::as_str) == Some(keys::MANAGED_BY_VALUE);
    let holder = match labels.get(keys::MIRROR_UID) {
        Some(uid) if managed && *uid == mirror.uid => {
            // Ours, and the cache had not seen it yet.
            ctx.replicas
                .observe_own_write(ReplicaMeta::from_configmap(&found));
            return Done::Stale;
        }
        Some(uid) if managed => {
            let annotations = found.metadata.annotations.clone().unwrap_or_default();
            Holder::OtherMirror(
                annotations
                    .get(keys::MIRROR)
                    .cloned()
                    .unwrap_or_else(|| uid.clone()),
            )
        }
        _ if labels.get(keys::REFERENCE_OWNER) == Some(&mirror.reference_owner()) => {
            if ctx.settings.adopt_reference_replicas {
                return adopt(ctx, mirror, target, found).await;
            }
            Holder::Reference
        }
        _ => Holder::Unmanaged,
    };
    ctx.memory
        .remember_conflict(&mirror.uid, &target.namespace, name, holder.clone());
    Done::Conflict(Conflict {
        namespace: target.namespace.clone(),
        name: name.clone(),
        holder,
    })
}

async fn adopt(ctx: &Context, mirror: &MirrorIdentity, target: &Target, found: ConfigMap) -> Done {
    let rv = found.metadata.resource_version.clone().unwrap_or_default();
    if found.immutable == Some(true)
        && ReplicaMeta::from_configmap(&found).actual_hash != target.source.content_hash
    {
        // An immutable copy with other content cannot be rewritten in place.
        let uid = found.metadata.uid.clone().unwrap_or_default();
        if let Err(done) = delete(ctx, &target.namespace, &target.source.name, &rv, &uid).await {
            return done;
        }
        return match Box::pin(create(ctx, mirror, target)).await {
            Done::Written { source, namespace } => Done::Adopted { source, namespace },
            other => other,
        };
    }
    match Box::pin(update(ctx, mirror, target, rv)).await {
        Done::Written { source, namespace } => Done::Adopted { source, namespace },
        other => other,
    }
}

async fn update(
    ctx: &Context,
    mirror: &MirrorIdentity,
    target: &Target,
    resource_version: String,
) -> Done {
    match write(ctx, mirror, target, Some(resource_version)).await {
        Ok(written) => {
            observe_written(ctx, &written.metadata, target);
            Done::Written {
                source: target.source.name.clone(),
                namespace: target.namespace.clone(),
            }
        }
        // Changed or deleted since we looked: the watch brings the new state.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => Done::Stale,
        Err(e) => failed(target, "update", &e),
    }
}

/// Deletes with preconditions on UID and resourceVersion, so a stale view
/// (or a paused, deposed process) fails instead of deleting newer state.
async fn delete(
    ctx: &Context,
    namespace: &str,
    name: &str,
    resource_version: &str,
    uid: &str,
) -> Result<(), Done> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(resource_version.to_string()),
            uid: Some(uid.to_string()),
        }),
        ..Default::default()
    };
    match api(ctx, namespace).delete(name, &params).await {
        Ok(_) => {
            ctx.replicas
                .forget_own_delete(namespace, name, resource_version);
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => {
            ctx.replicas
                .forget_own_delete(namespace, name, resource_version);
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_conflict() => Err(Done::Stale),
        Err(e) => Err(Done::Failed(Failure {
            namespace: namespace.to_string(),
            name: name.to_string(),
            op: "delete",
            message: e.to_string(),
        })),
    }
}
