//! What a replica holds, known without watching its content. The watch
//! delivers metadata only; a replica's content hash is then known in one of
//! three ways:
//! - we wrote it (the write's response names the resourceVersion we made);
//! - we read it: a GET of that one object, hashed and dropped (a change by
//!   someone else, after a short grace that lets our own write be recorded);
//! - its recorded hash annotation, when the object's managedFields show that
//!   no field manager but ours owns any of data, binaryData or immutable, so
//!   nobody else can have set them (first sight of a replica, at start).
//!
//! The third is not proof: a change that only *removes* keys leaves no owner
//! behind, so such an edit made while no operator ran goes unseen until the
//! replica is written again. Any edit made while an operator runs is read
//! and repaired; any edit that adds or changes content is seen at start too.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::{Api, Client};
use tokio::sync::{Semaphore, mpsc};

use crate::plan::ReplicaMeta;
use crate::plan::hash::content_hash;
use crate::plan::model::ReplicaContent;
use crate::reconcile::apply::FIELD_MANAGER;
use crate::telemetry::names;

/// How long a change we did not record waits before it is read: the watch
/// often delivers our own write (a small metadata event) before the write's
/// response (which echoes up to 1 MiB) has been read and recorded.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// Reads in flight at once: each holds one replica (up to ~1.5 MiB).
pub(crate) const READS_AT_ONCE: usize = 4;

const CONTENT_FIELDS: [&str; 3] = ["f:data", "f:binaryData", "f:immutable"];

/// `meta` as the operator keeps it when its recorded hash can be trusted
/// (see the module doc), `None` when its content must be read.
pub(crate) fn trusted(meta: &ObjectMeta) -> Option<ReplicaMeta> {
    let entries = meta.managed_fields.as_deref().unwrap_or_default();
    let mut ours_own_content = false;
    let mut immutable = false;
    for entry in entries {
        let Some(fields) = entry.fields_v1.as_ref().and_then(|f| f.0.as_object()) else {
            continue;
        };
        if !CONTENT_FIELDS.iter().any(|k| fields.contains_key(*k)) {
            continue;
        }
        let ours = entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Update")
            && entry.subresource.as_deref().unwrap_or_default().is_empty();
        if !ours {
            return None;
        }
        ours_own_content = true;
        // We only ever write `immutable: true`, never false.
        immutable |= fields.contains_key("f:immutable");
    }
    let recorded = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::keys::CONTENT_HASH))?;
    // Content nobody owns is content someone stripped of its history
    // (managedFields reset), unless there is no content at all.
    let nothing = content_hash(&ReplicaContent::default());
    if entries.is_empty() || (!ours_own_content && *recorded != nothing) {
        return None;
    }
    Some(ReplicaMeta::from_parts(meta, recorded.clone(), immutable))
}

/// Reads one replica and hashes it: `None` when it is gone.
pub(crate) async fn read(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ReplicaMeta>, kube::Error> {
    let found = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?;
    let meta = found.as_ref().map(ReplicaMeta::from_configmap);
    let result = match &meta {
        None => "gone",
        Some(m) if m.recorded_hash.as_ref() == Some(&m.actual_hash) => "in_sync",
        Some(_) => "drifted",
    };
    metrics::counter!(names::REPLICA_CONTENT_READS, "result" => result).increment(1);
    Ok(meta)
}

/// Reads every one of `wanted` (namespace, name), `READS_AT_ONCE` at a
/// time; those that could not be read are left out (the caller's next list
/// or event tries again).
pub(crate) async fn read_all(client: &Client, wanted: Vec<(String, String)>) -> Vec<ReplicaMeta> {
    futures::stream::iter(wanted)
        .map(|(namespace, name)| {
            let client = client.clone();
            async move {
                match read(&client, &namespace, &name).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(%namespace, %name, error = %e, "reading a replica failed");
                        None
                    }
                }
            }
        })
        .buffer_unordered(READS_AT_ONCE)
        .filter_map(|found| async move { found })
        .collect()
        .await
}

/// A change to read once its grace has passed.
pub(crate) struct Pending {
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    pub due: tokio::time::Instant,
}

/// Reads changes made by someone else, in the background, after `GRACE`.
/// `still_unknown` says whether a change still needs reading (our own write
/// may have been recorded meanwhile); `found` receives what was read.
pub(crate) fn start_reader(
    client: Client,
    still_unknown: impl Fn(&Pending) -> bool + Send + Sync + 'static,
    found: impl Fn(ReplicaMeta) + Send + Sync + 'static,
) -> (mpsc::UnboundedSender<Pending>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
    let (still_unknown, found) = (Arc::new(still_unknown), Arc::new(found));
    let task = tokio::spawn(
        async move {
            let slots = Arc::new(Semaphore::new(READS_AT_ONCE));
            while let Some(pending) = rx.recv().await {
                tokio::time::sleep_until(pending.due).await;
                if !still_unknown(&pending) {
                    continue;
                }
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                let (client, still_unknown, found) =
                    (client.clone(), still_unknown.clone(), found.clone());
                tokio::spawn(async move {
                let _slot = slot;
                // Read only if nothing newer arrived while waiting for a slot.
                if !still_unknown(&pending) {
                    return;
                }
                match read(&client, &pending.namespace, &pending.name).await {
                    Ok(Some(meta)) => found(meta),
                    // Gone: the watch delivers the deletion.
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        namespace = %pending.namespace, name = %pending.name, error = %e,
                        "reading a changed replica failed; the next change or re-list tries again"
                    ),
                }
            }.in_current_span());
            }
        }
        .in_current_span(),
    );
    (tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use std::collections::BTreeMap;

    fn entry(manager: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn replica(entries: Vec<ManagedFieldsEntry>, hash: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("cfg".into()),
            namespace: Some("dev".into()),
            resource_version: Some("7".into()),
            annotations: Some(BTreeMap::from([(
                crate::api::keys::CONTENT_HASH.to_string(),
                hash.to_string(),
            )])),
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    fn ours(fields: serde_json::Value) -> ManagedFieldsEntry {
        entry(FIELD_MANAGER, fields)
    }

    #[test]
    fn content_only_we_own_is_trusted_with_its_recorded_hash() {
        let meta = replica(
            vec![ours(
                serde_json::json!({"f:data": {"f:k": {}}, "f:metadata": {}}),
            )],
            "h1",
        );
        let r = trusted(&meta).expect("trusted");
        assert_eq!((r.actual_hash.as_str(), r.immutable), ("h1", false));
        let meta = replica(
            vec![ours(serde_json::json!({"f:data": {}, "f:immutable": {}}))],
            "h2",
        );
        assert!(trusted(&meta).unwrap().immutable);
        // Someone else touching only metadata changes nothing.
        let meta = replica(
            vec![
                ours(serde_json::json!({"f:data": {"f:k": {}}})),
                entry(
                    "kubectl-annotate",
                    serde_json::json!({"f:metadata": {"f:annotations": {}}}),
                ),
            ],
            "h3",
        );
        assert!(trusted(&meta).is_some());
    }

    #[test]
    fn content_someone_else_owns_or_nobody_owns_must_be_read() {
        let edited = replica(
            vec![
                ours(serde_json::json!({"f:data": {"f:k": {}}})),
                entry(
                    "kubectl-edit",
                    serde_json::json!({"f:data": {"f:extra": {}}}),
                ),
            ],
            "h",
        );
        assert!(trusted(&edited).is_none());
        let applied = replica(
            vec![ManagedFieldsEntry {
                operation: Some("Apply".into()),
                ..ours(serde_json::json!({"f:binaryData": {}}))
            }],
            "h",
        );
        assert!(trusted(&applied).is_none(), "not how we write");
        assert!(trusted(&replica(vec![], "h")).is_none(), "history reset");
        let unowned = replica(vec![entry("x", serde_json::json!({"f:metadata": {}}))], "h");
        assert!(trusted(&unowned).is_none());
        let mut unannotated = replica(vec![ours(serde_json::json!({"f:data": {}}))], "h");
        unannotated.annotations = None;
        assert!(trusted(&unannotated).is_none());
    }

    #[test]
    fn an_empty_replica_needs_no_owner() {
        let nothing = content_hash(&ReplicaContent::default());
        let meta = replica(vec![ours(serde_json::json!({"f:metadata": {}}))], &nothing);
        assert_eq!(trusted(&meta).unwrap().actual_hash, nothing);
    }
}
