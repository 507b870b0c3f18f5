//! The pure planner: (mirror, sources, replicas, namespaces) → actions.
//!
//! No client, no clock: everything the reconciler decides is decided here
//! and unit-tested without an API server.

pub(crate) mod content;
pub mod hash;
pub mod model;
pub mod policy;
pub mod replica;
pub mod selector;
pub(crate) mod spec;
pub(crate) mod targets;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

pub use model::{NamespaceMeta, Namespaces, ReplicaIndex, ReplicaMeta, SourceConfigMap};
pub use policy::{Denial, NamespacePolicy};
pub use replica::MirrorIdentity;
pub use spec::{SpecError, ValidSpec, validate};
pub use targets::ResolvedTargets;

/// One replica to write: `source`'s content in `namespace`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub namespace: String,
    pub source: Arc<SourceConfigMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its source was deleted or no longer matches the selector.
    SourceGone,
    /// Its namespace is no longer a target.
    NotTargeted,
    /// The mirror is being deleted.
    MirrorDeleted,
    /// The namespace policy denies its source or its namespace. Held back
    /// until the denial is confirmed (`reconcile::denials`).
    Forbidden,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(Target),
    /// Rewrite an existing replica (precondition: its resourceVersion).
    Update {
        target: Target,
        resource_version: String,
    },
    /// An immutable replica whose content must change: delete, then create.
    Replace {
        target: Target,
        resource_version: String,
        uid: String,
    },
    Delete {
        namespace: String,
        name: String,
        resource_version: String,
        uid: String,
        reason: DeleteReason,
    },
}

impl Action {
    pub(crate) fn namespace(&self) -> &str {
        match self {
            Action::Create(t)
            | Action::Update { target: t, .. }
            | Action::Replace { target: t, .. } => &t.namespace,
            Action::Delete { namespace, .. } => namespace,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Action::Create(t)
            | Action::Update { target: t, .. }
            | Action::Replace { target: t, .. } => &t.source.name,
            Action::Delete { name, .. } => name,
        }
    }

    /// The metric label of the write.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Action::Create(_) => "create",
            Action::Update { .. } => "update",
            Action::Replace { .. } => "replace",
            Action::Delete { .. } => "delete",
        }
    }
}

/// Who holds a name this mirror wants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    /// A replica of another mirror (`namespace/name`, or its UID).
    OtherMirror(String),
    /// A ConfigMap the operator does not manage.
    Unmanaged,
    /// The Go reference's replica of this very mirror, not adopted because
    /// `--adopt-reference-replicas` is off.
    Reference,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    pub namespace: String,
    pub name: String,
    pub holder: Holder,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaPlan {
    /// The selected sources, by name.
    pub sources: Vec<Arc<SourceConfigMap>>,
    pub targets: ResolvedTargets,
    pub actions: Vec<Action>,
    pub conflicts: Vec<Conflict>,
    /// Per source name, the namespaces whose replica is already in sync.
    pub in_sync: BTreeMap<String, BTreeSet<String>>,
    /// What the namespace policy denies this mirror, sorted.
    pub denials: Vec<Denial>,
}

/// Names in target namespaces known (from an earlier attempt) to be held by
/// a ConfigMap this mirror does not own, with who holds them.
pub type KnownConflicts = std::collections::HashMap<(String, String), Holder>;

pub struct PlanInput<'a> {
    pub mirror: &'a MirrorIdentity,
    pub spec: &'a ValidSpec,
    /// ConfigMaps of the source namespace (the planner applies the selector).
    pub candidates: &'a [Arc<SourceConfigMap>],
    pub replicas: &'a ReplicaIndex,
    pub namespaces: &'a Namespaces,
    pub policy: &'a NamespacePolicy,
    pub known_conflicts: &'a KnownConflicts,
}

/// Selects the sources a spec replicates, sorted by name.
pub(crate) fn select_sources(
    spec: &ValidSpec,
    candidates: &[Arc<SourceConfigMap>],
) -> Vec<Arc<SourceConfigMap>> {
    let mut sources: Vec<_> = candidates
        .iter()
        .filter(|s| s.namespace == spec.source_namespace && s.eligible())
        .filter(|s| spec.source_selector.matches(&s.labels))
        .cloned()
        .collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    sources
}

/// The policy's denial of this mirror's source, if any: then nothing is
/// read from it (the reconcile does not even watch it).
pub(crate) fn source_denial(
    mirror: &MirrorIdentity,
    spec: &ValidSpec,
    namespaces: &Namespaces,
    policy: &NamespacePolicy,
) -> Option<Denial> {
    policy.source_denial(&mirror.namespace, &spec.source_namespace, namespaces)
}

pub fn plan(input: &PlanInput<'_>) -> ReplicaPlan {
    let source_denial = source_denial(input.mirror, input.spec, input.namespaces, input.policy);
    let sources = match source_denial {
        Some(_) => Vec::new(),
        None => select_sources(input.spec, input.candidates),
    };
    let targets = targets::resolve(input.spec, input.namespaces, input.policy);
    let target_denials = targets
        .forbidden
        .iter()
        .filter_map(|ns| input.policy.target_denial(ns));
    let mut out = ReplicaPlan {
        denials: source_denial.into_iter().chain(target_denials).collect(),
        ..Default::default()
    };
    let mut wanted: HashSet<(&str, &str)> = HashSet::new();
    for namespace in &targets.present {
        for source in &sources {
            wanted.insert((namespace.as_str(), source.name.as_str()));
            plan_replica(input, namespace, source, &mut out);
        }
    }
    let source_denied = out.denials.iter().any(|d| d.role == policy::Role::Source);
    let orphans = plan_orphans(input, &wanted, &targets, source_denied);
    out.actions.extend(orphans);
    out.conflicts.sort();
    out.sources = sources;
    out.targets = targets;
    out
}

/// What one source needs in one present target namespace: nothing (in
/// sync), a write, or a conflict with whoever holds the name.
fn plan_replica(
    input: &PlanInput<'_>,
    namespace: &str,
    source: &Arc<SourceConfigMap>,
    out: &mut ReplicaPlan,
) {
    let mirror = input.mirror;
    let target = || Target {
        namespace: namespace.to_string(),
        source: source.clone(),
    };
    let conflict = |holder: Holder| Conflict {
        namespace: namespace.to_string(),
        name: source.name.clone(),
        holder,
    };
    match input.replicas.get(namespace, &source.name) {
        Some(r) if r.mirror_uid.as_deref() == Some(mirror.uid.as_str()) => {
            if replica::in_sync(r, mirror, source) {
                out.in_sync
                    .entry(source.name.clone())
                    .or_default()
                    .insert(namespace.to_string());
            } else if r.immutable && r.actual_hash != source.content_hash {
                out.actions.push(Action::Replace {
                    target: target(),
                    resource_version: r.resource_version.clone(),
                    uid: r.uid.clone(),
                });
            } else {
                out.actions.push(Action::Update {
                    target: target(),
                    resource_version: r.resource_version.clone(),
                });
            }
        }
        Some(r) => out
            .conflicts
            .push(conflict(match (&r.mirror, &r.mirror_uid) {
                (Some(m), _) => Holder::OtherMirror(m.clone()),
                (None, Some(uid)) => Holder::OtherMirror(uid.clone()),
                (None, None) => Holder::Unmanaged,
            })),
        None => match input
            .known_conflicts
            .get(&(namespace.to_string(), source.name.clone()))
        {
            Some(holder) => out.conflicts.push(conflict(holder.clone())),
            None => out.actions.push(Action::Create(target())),
        },
    }
}

/// Deletes of the mirror's replicas that are no longer wanted, sorted.
/// Orphans are found from the replicas' labels, never from status.
fn plan_orphans(
    input: &PlanInput<'_>,
    wanted: &HashSet<(&str, &str)>,
    targets: &ResolvedTargets,
    source_denied: bool,
) -> Vec<Action> {
    let mut orphans: Vec<&ReplicaMeta> = input
        .replicas
        .owned_by(&input.mirror.uid)
        .filter(|r| !wanted.contains(&(r.namespace.as_str(), r.name.as_str())))
        // A namespace being deleted takes its replicas with it.
        .filter(|r| {
            input
                .namespaces
                .get(&r.namespace)
                .is_some_and(|ns| !ns.terminating)
        })
        .collect();
    orphans.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    orphans
        .into_iter()
        .map(|r| Action::Delete {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            resource_version: r.resource_version.clone(),
            uid: r.uid.clone(),
            reason: if source_denied || targets.forbidden.contains(&r.namespace) {
                DeleteReason::Forbidden
            } else if targets.present.contains(&r.namespace) {
                DeleteReason::SourceGone
            } else {
                DeleteReason::NotTargeted
            },
        })
        .collect()
}

/// Everything to delete when the mirror itself is deleted.
pub(crate) fn plan_cleanup<'a>(
    mirror: &MirrorIdentity,
    replicas: impl IntoIterator<Item = &'a ReplicaMeta>,
) -> Vec<Action> {
    let mut actions: Vec<Action> = replicas
        .into_iter()
        .filter(|r| r.mirror_uid.as_deref() == Some(mirror.uid.as_str()))
        .map(|r| Action::Delete {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            resource_version: r.resource_version.clone(),
            uid: r.uid.clone(),
            reason: DeleteReason::MirrorDeleted,
        })
        .collect();
    actions.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    actions
}
