//! Kubernetes Events on a mirror: what `kubectl describe` shows a person.
//! Published only when something new happened (a new conflict, a failed
//! pass, a cleanup), never on every reconcile.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::apply::Failure;
use super::context::Context;
use super::status::describe_conflict;
use crate::api::ConfigMirror;
use crate::plan::{Conflict, DeleteReason, Denial, SpecError};
use crate::telemetry::names;

pub(crate) async fn publish(
    ctx: &Context,
    mirror: &ConfigMirror,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish_on(ctx, &mirror.object_ref(&()), type_, reason, action, note).await;
}

/// An event regarding any object (`publish` is the mirror's own).
pub(crate) async fn publish_on(
    ctx: &Context,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let mut note = note;
    if note.len() > 1000 {
        let mut cut = 997;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    let kind = if type_ == EventType::Warning {
        "warning"
    } else {
        "normal"
    };
    match ctx.recorder.publish(&event, regarding).await {
        Ok(()) => metrics::counter!(names::EVENTS_PUBLISHED, "type" => kind).increment(1),
        Err(e) => tracing::warn!(error = %e, reason, "could not publish event"),
    }
}

pub(crate) async fn conflicts(ctx: &Context, mirror: &ConfigMirror, new: &[&Conflict]) {
    let Some(first) = new.first() else { return };
    let note = if new.len() == 1 {
        describe_conflict(first)
    } else {
        format!(
            "{} replica names are held by ConfigMaps this mirror does not own. First: {}",
            new.len(),
            describe_conflict(first)
        )
    };
    publish(
        ctx,
        mirror,
        EventType::Warning,
        "ReplicaConflict",
        "Replicate",
        note,
    )
    .await;
}

pub(crate) async fn failures(ctx: &Context, mirror: &ConfigMirror, failures: &[Failure]) {
    let Some(f) = failures.first() else { return };
    let note = format!(
        "{} replica writes failed; first: {} {}/{}: {}. Retrying with backoff.",
        failures.len(),
        f.op,
        f.namespace,
        f.name,
        f.source
    );
    publish(
        ctx,
        mirror,
        EventType::Warning,
        "SyncFailed",
        "Replicate",
        note,
    )
    .await;
}

pub(crate) async fn created(
    ctx: &Context,
    mirror: &ConfigMirror,
    written: usize,
    namespaces: usize,
) {
    let note = format!("wrote {written} replicas into {namespaces} namespaces");
    publish(
        ctx,
        mirror,
        EventType::Normal,
        "ReplicasWritten",
        "Replicate",
        note,
    )
    .await;
}

pub(crate) async fn replicas_deleted(
    ctx: &Context,
    mirror: &ConfigMirror,
    deleted: &[(String, String, DeleteReason)],
) {
    let why = |r: DeleteReason| match r {
        DeleteReason::SourceGone => "its source is gone or no longer selected",
        DeleteReason::NotTargeted => "its namespace is no longer a target",
        DeleteReason::MirrorDeleted => "the mirror is being deleted",
        DeleteReason::Forbidden => "the namespace policy denies it (confirmed twice)",
    };
    let (ns, name, reason) = &deleted[0];
    let note = if deleted.len() == 1 {
        format!("deleted replica {ns}/{name}: {}", why(*reason))
    } else {
        format!(
            "deleted {} replicas (first {ns}/{name}: {})",
            deleted.len(),
            why(*reason)
        )
    };
    publish(
        ctx,
        mirror,
        EventType::Normal,
        "ReplicasDeleted",
        "Cleanup",
        note,
    )
    .await;
}

pub(crate) async fn invalid_spec(ctx: &Context, mirror: &ConfigMirror, error: &SpecError) {
    let note = format!("{error}. Nothing is replicated until the spec is fixed.");
    publish(
        ctx,
        mirror,
        EventType::Warning,
        "InvalidSpec",
        "Validate",
        note,
    )
    .await;
}

/// A Warning for namespaces the policy newly denies this mirror.
pub(crate) async fn forbidden(ctx: &Context, mirror: &ConfigMirror, denials: &[&Denial]) {
    let note = denials
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    publish(ctx, mirror, EventType::Warning, "Forbidden", "Check", note).await;
}
