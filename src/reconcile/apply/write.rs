//! One write of a plan, decided against a `ReplicaApi`: fenced before it
//! is sent, and its answer turned into a typed `Done`.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::Status;

use super::Failure;
use crate::api::keys;
use crate::plan::{Action, Conflict, DeleteReason, Holder, MirrorIdentity, ReplicaMeta, Target};
use crate::reconcile::remote::ReplicaApi;
use crate::telemetry::names;

/// Writes older than this are not counted as replication lag: they repair
/// or fill in (a new namespace, drift) rather than follow a source change.
const LAG_HORIZON: std::time::Duration = std::time::Duration::from_secs(600);

/// What one action did.
#[derive(Debug)]
pub(crate) enum Done {
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

impl Done {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Done::Written { .. } | Done::Adopted { .. } | Done::Deleted { .. } => "success",
            Done::Conflict(_) => "conflict",
            Done::Stale => "stale",
            Done::Skipped => "skipped",
            Done::Failed(_) => "error",
        }
    }
}

/// What a write may do and tells besides its request: whether this member
/// may still write the mirror, and what the caches and memory learn at once
/// (so the next plan does not repeat the write before the watch tells).
pub(crate) trait Effects: Sync {
    fn may_write(&self) -> bool;
    fn observed(&self, meta: ReplicaMeta);
    fn deleted(&self, namespace: &str, name: &str, resource_version: &str);
    fn conflict(&self, namespace: &str, name: &str, holder: Holder);
}

pub(crate) struct Writer<'a, A, E> {
    pub api: &'a A,
    pub effects: &'a E,
    pub mirror: &'a MirrorIdentity,
    pub adopt_reference_replicas: bool,
}

fn failed(namespace: &str, name: &str, op: &'static str, source: kube::Error) -> Done {
    Done::Failed(Failure {
        namespace: namespace.to_string(),
        name: name.to_string(),
        op,
        source,
    })
}

/// The namespace is gone or going: the namespace watch will tell the plan.
fn namespace_gone(s: &Status) -> bool {
    s.is_not_found() || (s.is_forbidden() && s.message.contains("being terminated"))
}

fn written(target: &Target) -> Done {
    Done::Written {
        source: target.source.name.clone(),
        namespace: target.namespace.clone(),
    }
}

fn adopted(done: Done) -> Done {
    match done {
        Done::Written { source, namespace } => Done::Adopted { source, namespace },
        other => other,
    }
}

impl<A: ReplicaApi, E: Effects> Writer<'_, A, E> {
    pub(crate) async fn execute(&self, action: Action) -> Done {
        // Just before sending: a member whose lease ran out, or whose mirror
        // moved or is draining, writes nothing more, even mid-reconcile.
        if !self.effects.may_write() {
            return Done::Stale;
        }
        match self.send(action).await {
            // The client refuses a write that leaves after the deadline (it
            // may have waited for the rate limit): not a failure, the member
            // simply may not write any more.
            Done::Failed(_) if !self.effects.may_write() => Done::Stale,
            done => done,
        }
    }

    async fn send(&self, action: Action) -> Done {
        match action {
            Action::Create(target) => self.create(&target).await,
            Action::Update {
                target,
                resource_version,
            } => self.update(&target, resource_version).await,
            Action::Replace {
                target,
                resource_version,
                uid,
            } => {
                let (ns, name) = (&target.namespace, &target.source.name);
                match self.delete(ns, name, &resource_version, &uid).await {
                    Ok(()) => self.create(&target).await,
                    Err(done) => done,
                }
            }
            Action::Delete {
                namespace,
                name,
                resource_version,
                uid,
                reason,
            } => match self
                .delete(&namespace, &name, &resource_version, &uid)
                .await
            {
                Ok(()) => Done::Deleted {
                    namespace,
                    name,
                    reason,
                },
                Err(done) => done,
            },
        }
    }

    /// Remembers what we just wrote so the next plan sees it before the watch does.
    fn observe_written(&self, written: &kube::api::ObjectMeta, target: &Target) {
        let meta = ReplicaMeta::from_parts(
            written,
            target.source.content_hash.clone(),
            target.source.content.immutable,
        );
        self.effects.observed(meta);
        if let Some(seen) = target.source.observed_at {
            let lag = seen.elapsed();
            if lag < LAG_HORIZON {
                metrics::histogram!(names::REPLICATION_LAG).record(lag.as_secs_f64());
            }
        }
    }

    async fn create(&self, target: &Target) -> Done {
        match self.api.create(self.mirror, target).await {
            Ok(meta) => {
                self.observe_written(&meta, target);
                written(target)
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                Box::pin(self.existing(target)).await
            }
            Err(kube::Error::Api(s)) if namespace_gone(&s) => Done::Skipped,
            Err(e) => failed(&target.namespace, &target.source.name, "create", e),
        }
    }

    /// A create found the name taken: find out by whom. Never overwrites a
    /// ConfigMap this mirror does not own, except the reference operator's
    /// copy of this very mirror when adoption is on.
    async fn existing(&self, target: &Target) -> Done {
        let name = &target.source.name;
        let found = match self.api.get(&target.namespace, name).await {
            Ok(Some(cm)) => cm,
            Ok(None) => return Done::Stale,
            Err(e) => return failed(&target.namespace, name, "create", e),
        };
        let labels = found.metadata.labels.clone().unwrap_or_default();
        let managed =
            labels.get(keys::MANAGED_BY).map(String::as_str) == Some(keys::MANAGED_BY_VALUE);
        let holder = match labels.get(keys::MIRROR_UID) {
            Some(uid) if managed && *uid == self.mirror.uid => {
                // Ours, and the cache had not seen it yet.
                self.effects.observed(ReplicaMeta::from_configmap(&found));
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
            _ if labels.get(keys::REFERENCE_OWNER) == Some(&self.mirror.reference_owner()) => {
                if self.adopt_reference_replicas {
                    return self.adopt(target, found).await;
                }
                Holder::Reference
            }
            _ => Holder::Unmanaged,
        };
        self.effects
            .conflict(&target.namespace, name, holder.clone());
        Done::Conflict(Conflict {
            namespace: target.namespace.clone(),
            name: name.clone(),
            holder,
        })
    }

    async fn adopt(&self, target: &Target, found: ConfigMap) -> Done {
        let rv = found.metadata.resource_version.clone().unwrap_or_default();
        if found.immutable == Some(true)
            && ReplicaMeta::from_configmap(&found).actual_hash != target.source.content_hash
        {
            // An immutable copy with other content cannot be rewritten in place.
            let uid = found.metadata.uid.clone().unwrap_or_default();
            let (ns, name) = (&target.namespace, &target.source.name);
            if let Err(done) = self.delete(ns, name, &rv, &uid).await {
                return done;
            }
            return adopted(Box::pin(self.create(target)).await);
        }
        adopted(Box::pin(self.update(target, rv)).await)
    }

    async fn update(&self, target: &Target, resource_version: String) -> Done {
        match self
            .api
            .replace(self.mirror, target, resource_version)
            .await
        {
            Ok(meta) => {
                self.observe_written(&meta, target);
                written(target)
            }
            // Changed or deleted since we looked: the watch brings the new state.
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => Done::Stale,
            Err(e) => failed(&target.namespace, &target.source.name, "update", e),
        }
    }

    /// Deletes with preconditions on UID and resourceVersion, so a stale view
    /// (or a paused, deposed process) fails instead of deleting newer state.
    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
        uid: &str,
    ) -> Result<(), Done> {
        match self
            .api
            .delete(namespace, name, resource_version, uid)
            .await
        {
            Ok(()) => {
                self.effects.deleted(namespace, name, resource_version);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                self.effects.deleted(namespace, name, resource_version);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Err(Done::Stale),
            Err(e) => Err(failed(namespace, name, "delete", e)),
        }
    }
}
