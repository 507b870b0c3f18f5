//! Status: built by a pure function from the plan and what applying it did,
//! and written only when its content changes. Timestamps move only when
//! content moved, so a status write never triggers another reconcile.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::apply::Outcome;
use crate::api::{
    ConfigMirrorStatus, DatabaseStatus, MAX_PROBLEMS, MAX_REPLICATED_CONFIGMAPS,
    MAX_TARGETS_PER_ENTRY, Problem, ReplicatedConfigMap, ShardStatus,
};
use crate::plan::{Conflict, Denial, Holder, ReplicaPlan, SpecError};

pub(crate) const READY: &str = "Ready";
pub(crate) const CONFLICT: &str = "Conflict";
pub(crate) const DATABASE_SYNCED: &str = "DatabaseSynced";

/// Why a replica is listed in `status.problems`: the typed reasons, so
/// what status wrote is read back by reason, never by matching a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemReason {
    WriteFailed,
    Conflict,
    NamespaceMissing,
    /// The namespace policy denies a source or target namespace.
    Forbidden,
    /// The list was cut at `MAX_PROBLEMS`.
    More,
}

impl ProblemReason {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ProblemReason::WriteFailed => "WriteFailed",
            ProblemReason::Conflict => "Conflict",
            ProblemReason::NamespaceMissing => "NamespaceMissing",
            ProblemReason::Forbidden => "Forbidden",
            ProblemReason::More => "More",
        }
    }

    pub(crate) fn of(problem: &Problem) -> Option<Self> {
        [
            ProblemReason::WriteFailed,
            ProblemReason::Conflict,
            ProblemReason::NamespaceMissing,
            ProblemReason::Forbidden,
            ProblemReason::More,
        ]
        .into_iter()
        .find(|r| r.as_str() == problem.reason)
    }

    fn problem(self, namespace: &str, name: &str, message: String) -> Problem {
        Problem {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: self.as_str().into(),
            message,
        }
    }
}

/// The conflicts of this pass that the previous status did not list: the
/// ones worth an event.
pub(crate) fn new_conflicts<'a>(
    previous: Option<&ConfigMirrorStatus>,
    plan: &'a ReplicaPlan,
    outcome: &'a Outcome,
) -> Vec<&'a Conflict> {
    let known: BTreeSet<(&str, &str)> = previous
        .iter()
        .flat_map(|p| &p.problems)
        .filter(|p| ProblemReason::of(p) == Some(ProblemReason::Conflict))
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    plan.conflicts
        .iter()
        .chain(&outcome.conflicts)
        .filter(|c| !known.contains(&(c.namespace.as_str(), c.name.as_str())))
        .collect()
}

/// The denials of this pass that the previous status did not list.
pub(crate) fn new_denials<'a>(
    previous: Option<&ConfigMirrorStatus>,
    plan: &'a ReplicaPlan,
) -> Vec<&'a Denial> {
    let known: BTreeSet<(&str, &str)> = previous
        .iter()
        .flat_map(|p| &p.problems)
        .filter(|p| ProblemReason::of(p) == Some(ProblemReason::Forbidden))
        .map(|p| (p.namespace.as_str(), p.message.as_str()))
        .collect();
    plan.denials
        .iter()
        .filter(|d| !known.contains(&(d.namespace.as_str(), d.to_string().as_str())))
        .collect()
}

pub(crate) struct StatusInput<'a> {
    pub generation: Option<i64>,
    pub previous: Option<&'a ConfigMirrorStatus>,
    pub plan: &'a ReplicaPlan,
    pub outcome: &'a Outcome,
    pub now: Time,
    pub shard: ShardStatus,
    /// The DatabaseSynced condition and databaseStatus, when persistence applies.
    pub database: Option<(Condition, DatabaseStatus)>,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        // Filled in by `settle_transitions`.
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Keeps a condition's lastTransitionTime unless its status flipped.
fn settle_transitions(
    conditions: &mut [Condition],
    previous: Option<&ConfigMirrorStatus>,
    now: &Time,
) {
    for c in conditions {
        let before = previous.and_then(|p| p.conditions.iter().find(|o| o.type_ == c.type_));
        c.last_transition_time = match before {
            Some(b) if b.status == c.status => b.last_transition_time.clone(),
            _ => now.clone(),
        };
    }
}

pub(crate) fn describe_conflict(c: &Conflict) -> String {
    let held = match &c.holder {
        Holder::OtherMirror(m) => format!("is a replica of mirror {m}, which got there first"),
        Holder::Unmanaged => {
            "exists and is not managed by ConfigMirror; the operator never overwrites it".into()
        }
        Holder::Reference => {
            "is the reference operator's replica of this mirror; start the operator with \
                              --adopt-reference-replicas to adopt it"
                .into()
        }
    };
    format!(
        "ConfigMap {}/{} {held}. Delete or rename it to let this mirror replicate there.",
        c.namespace, c.name
    )
}

fn problems(plan: &ReplicaPlan, outcome: &Outcome) -> Vec<Problem> {
    let mut all: Vec<Problem> = Vec::new();
    for d in &plan.denials {
        all.push(ProblemReason::Forbidden.problem(&d.namespace, "", d.to_string()));
    }
    for f in &outcome.failures {
        let message = format!("{} failed: {}", f.op, f.source);
        all.push(ProblemReason::WriteFailed.problem(&f.namespace, &f.name, message));
    }
    for c in plan.conflicts.iter().chain(&outcome.conflicts) {
        all.push(ProblemReason::Conflict.problem(&c.namespace, &c.name, describe_conflict(c)));
    }
    for ns in &plan.targets.missing {
        let message = format!(
            "target namespace {ns} does not exist; its replicas are created when it appears"
        );
        all.push(ProblemReason::NamespaceMissing.problem(ns, "", message));
    }
    all.sort();
    all.dedup();
    if all.len() > MAX_PROBLEMS {
        let more = all.len() - (MAX_PROBLEMS - 1);
        all.truncate(MAX_PROBLEMS - 1);
        let message = format!("and {more} more problems not listed");
        all.push(ProblemReason::More.problem("", "", message));
    }
    all
}

/// Per source name, the namespaces holding an in-sync replica after this
/// pass, and the sources written in it.
fn in_sync<'a>(
    plan: &'a ReplicaPlan,
    outcome: &'a Outcome,
) -> (BTreeMap<&'a str, BTreeSet<&'a str>>, BTreeSet<&'a str>) {
    let mut in_sync: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (source, namespaces) in &plan.in_sync {
        in_sync
            .entry(source)
            .or_default()
            .extend(namespaces.iter().map(String::as_str));
    }
    let mut written_sources: BTreeSet<&str> = BTreeSet::new();
    for (source, namespace) in &outcome.written {
        in_sync.entry(source).or_default().insert(namespace);
        written_sources.insert(source);
    }
    (in_sync, written_sources)
}

fn replicated(
    input: &StatusInput<'_>,
    in_sync: &BTreeMap<&str, BTreeSet<&str>>,
    written_sources: &BTreeSet<&str>,
) -> Vec<ReplicatedConfigMap> {
    let previous_entries: BTreeMap<(&str, &str), &ReplicatedConfigMap> = input
        .previous
        .map(|p| {
            p.replicated_config_maps
                .iter()
                .map(|e| ((e.source_namespace.as_str(), e.name.as_str()), e))
                .collect()
        })
        .unwrap_or_default();
    let entry = |s: &crate::plan::SourceConfigMap| {
        let targets = in_sync.get(s.name.as_str());
        let previous = previous_entries.get(&(s.namespace.as_str(), s.name.as_str()));
        let last_sync_time = if written_sources.contains(s.name.as_str()) {
            Some(input.now.clone())
        } else {
            previous
                .and_then(|p| p.last_sync_time.clone())
                .or_else(|| Some(input.now.clone()))
        };
        ReplicatedConfigMap {
            name: s.name.clone(),
            source_namespace: s.namespace.clone(),
            targets: targets
                .map(|t| {
                    t.iter()
                        .take(MAX_TARGETS_PER_ENTRY)
                        .map(|n| n.to_string())
                        .collect()
                })
                .unwrap_or_default(),
            target_count: targets.map_or(0, |t| t.len() as i32),
            last_sync_time,
        }
    };
    let sources = input.plan.sources.iter().take(MAX_REPLICATED_CONFIGMAPS);
    sources.map(|s| entry(s)).collect()
}

/// The Ready condition's (status, reason, message): the first of policy
/// denials, failed writes, conflicts, missing namespaces, progress, in that
/// order.
fn readiness(
    plan: &ReplicaPlan,
    outcome: &Outcome,
    replicas: usize,
    conflicts: usize,
) -> (bool, &'static str, String) {
    let wanted = plan.sources.len() * plan.targets.present.len();
    if let Some(first) = plan.denials.first() {
        let message = format!(
            "{first}{}. Replicas it denies are removed once a second look confirms the denial.",
            match plan.denials.len() {
                1 => String::new(),
                n => format!(" (and {} more denials; see status.problems)", n - 1),
            }
        );
        (false, ProblemReason::Forbidden.as_str(), message)
    } else if let Some(f) = outcome.failures.first() {
        let message = format!(
            "{} replica writes failed (first: {} {}/{}: {}); retrying with backoff",
            outcome.failures.len(),
            f.op,
            f.namespace,
            f.name,
            f.source
        );
        (false, ProblemReason::WriteFailed.as_str(), message)
    } else if conflicts > 0 {
        let message = format!(
            "{conflicts} of {wanted} replicas are blocked by ConfigMaps this mirror does not own; see status.problems"
        );
        (false, ProblemReason::Conflict.as_str(), message)
    } else if !plan.targets.missing.is_empty() {
        let missing: Vec<&str> = plan
            .targets
            .missing
            .iter()
            .map(String::as_str)
            .take(5)
            .collect();
        let message = format!(
            "{} target namespaces do not exist yet ({}); they are filled when they appear",
            plan.targets.missing.len(),
            missing.join(", ")
        );
        (false, ProblemReason::NamespaceMissing.as_str(), message)
    } else if replicas < wanted {
        let message = format!("{replicas} of {wanted} replicas in sync");
        (false, "Progressing", message)
    } else {
        let message = format!(
            "{replicas} replicas of {} sources in sync across {} namespaces",
            plan.sources.len(),
            plan.targets.present.len()
        );
        (true, "Synced", message)
    }
}

fn conflict_condition(conflicts: usize, generation: Option<i64>) -> Condition {
    if conflicts > 0 {
        let message =
            format!("{conflicts} replica names are held by ConfigMaps this mirror does not own");
        condition(CONFLICT, true, "ReplicaConflict", message, generation)
    } else {
        let message = "no replica name is held by anyone else".into();
        condition(CONFLICT, false, "NoConflict", message, generation)
    }
}

/// The whole status of a pass, from the plan and what applying it did:
/// the one place conditions are built.
pub(crate) fn build(input: &StatusInput<'_>) -> ConfigMirrorStatus {
    let (plan, outcome) = (input.plan, input.outcome);
    let (in_sync, written_sources) = in_sync(plan, outcome);
    let replicas: usize = in_sync.values().map(BTreeSet::len).sum();
    let conflicts = plan.conflicts.len() + outcome.conflicts.len();
    let generation = input.generation;
    let (ready, reason, message) = readiness(plan, outcome, replicas, conflicts);
    let mut conditions = vec![
        condition(READY, ready, reason, message, generation),
        conflict_condition(conflicts, generation),
    ];
    let database_status = input.database.as_ref().map(|(c, d)| {
        conditions.push(c.clone());
        d.clone()
    });
    settle_transitions(&mut conditions, input.previous, &input.now);

    ConfigMirrorStatus {
        observed_generation: generation,
        conditions,
        sources: plan.sources.len() as i32,
        targets: plan.targets.count() as i32,
        replicas: replicas as i32,
        conflicts: conflicts as i32,
        problems: problems(plan, outcome),
        replicated_config_maps: replicated(input, &in_sync, &written_sources),
        database_status,
        shard: Some(input.shard.clone()),
    }
}

/// The status of a mirror whose spec can never work as written.
pub(crate) fn invalid_spec(
    previous: Option<&ConfigMirrorStatus>,
    generation: Option<i64>,
    error: &SpecError,
    now: &Time,
    shard: ShardStatus,
) -> ConfigMirrorStatus {
    let mut conditions = vec![condition(
        READY,
        false,
        "InvalidSpec",
        format!("{error}. Fix the spec; nothing is replicated or retried until it changes."),
        generation,
    )];
    // Keep what the other conditions said: the replicas are still there.
    conditions.extend(
        previous
            .into_iter()
            .flat_map(|p| p.conditions.iter().filter(|c| c.type_ != READY).cloned()),
    );
    settle_transitions(&mut conditions, previous, now);
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.conditions = conditions;
    status.shard = Some(shard);
    status
}

pub(crate) fn is_ready(status: &ConfigMirrorStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}
