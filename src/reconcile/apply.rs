//! Carries out a plan: bounded concurrency shared fairly between mirrors
//! (`fair`), only the writes the plan names, resourceVersion preconditions
//! on every update and delete, and never a write to a ConfigMap the mirror
//! does not own. Each write is decided by `write` against a `ReplicaApi`.

pub(crate) mod fair;
mod write;

#[cfg(test)]
mod tests;

use futures::StreamExt;
use tracing::instrument;

use super::context::Context;
use super::remote::ReplicaApi;
use crate::plan::{Action, Conflict, DeleteReason, Holder, MirrorIdentity, ReplicaMeta};
use crate::telemetry::names;

pub(crate) use write::{Done, Effects, Writer};

pub(crate) const FIELD_MANAGER: &str = "configmirror";

/// A replica write the API server refused, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{op} {namespace}/{name} failed: {source}")]
pub(crate) struct Failure {
    pub namespace: String,
    pub name: String,
    pub op: &'static str,
    #[source]
    pub source: kube::Error,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
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

impl Outcome {
    pub(in crate::reconcile) fn add(&mut self, done: Done) {
        match done {
            Done::Written { source, namespace } | Done::Adopted { source, namespace } => {
                self.written.push((source, namespace));
            }
            Done::Deleted {
                namespace,
                name,
                reason,
            } => self.deleted.push((namespace, name, reason)),
            Done::Conflict(c) => self.conflicts.push(c),
            Done::Stale => self.stale += 1,
            Done::Skipped => {}
            Done::Failed(f) => self.failures.push(f),
        }
    }

    fn sorted(mut self) -> Self {
        self.conflicts.sort();
        self.failures
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self
    }
}

/// What a write tells the rest of the operator, for the real operator:
/// its scope, replica cache and memory.
struct Live<'a> {
    ctx: &'a Context,
    uid: &'a str,
}

impl Effects for Live<'_> {
    fn may_write(&self) -> bool {
        self.ctx.scope.may_write(self.uid)
    }

    fn observed(&self, meta: ReplicaMeta) {
        self.ctx.replicas.observe_own_write(meta);
    }

    fn deleted(&self, namespace: &str, name: &str, resource_version: &str) {
        self.ctx
            .replicas
            .forget_own_delete(namespace, name, resource_version);
    }

    fn conflict(&self, namespace: &str, name: &str, holder: Holder) {
        self.ctx
            .memory
            .remember_conflict(self.uid, namespace, name, holder);
    }
}

#[instrument(level = "debug", skip_all, fields(actions = actions.len()))]
pub(crate) async fn apply(ctx: &Context, mirror: &MirrorIdentity, actions: Vec<Action>) -> Outcome {
    if actions.is_empty() {
        return Outcome::default();
    }
    let effects = Live {
        ctx,
        uid: &mirror.uid,
    };
    let writer = Writer {
        api: &ctx.client,
        effects: &effects,
        mirror,
        adopt_reference_replicas: ctx.settings.adopt_reference_replicas,
    };
    // Waiting for write permits needs no reconcile slot: others use it meanwhile.
    ctx.slots
        .without(&mirror.uid, write_all(ctx, &writer, actions))
        .await
}

async fn write_all<A: ReplicaApi, E: Effects>(
    ctx: &Context,
    writer: &Writer<'_, A, E>,
    actions: Vec<Action>,
) -> Outcome {
    let uid = &writer.mirror.uid;
    let mut results = futures::stream::iter(actions)
        .map(|action| async move {
            let op = action.op();
            let permit = ctx.writes.acquire(uid).await;
            let done = writer.execute(action).await;
            drop(permit);
            // However long the whole fan-out takes, each write is progress.
            ctx.liveness.progressed();
            metrics::counter!(names::REPLICA_WRITES, "op" => op, "result" => done.metric_label())
                .increment(1);
            done
        })
        .buffer_unordered(ctx.settings.write_concurrency.max(1));
    let mut out = Outcome::default();
    while let Some(done) = results.next().await {
        out.add(done);
    }
    out.sorted()
}
