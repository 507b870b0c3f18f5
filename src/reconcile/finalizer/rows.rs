//! A deleted mirror's rows: deleted through the persistence queue, or, when
//! the database cannot be reached, recorded as orphaned so the mirror (and
//! its namespace) can go. Rows in a database the mirror names itself
//! (secretRef) are deleted best effort: one attempt, since its Secret often
//! goes with the mirror's namespace. Rows in the operator's own database
//! are retried until `orphan_rows_after` past the deletion, then orphaned.

use kube::runtime::events::EventType;

use super::super::context::Context;
use super::super::events;
use crate::api::ConfigMirror;
use crate::persistence::{Job, Outcome, Report, Work};
use crate::plan::MirrorIdentity;
use crate::store;
use crate::telemetry::names;

/// Where a deleted mirror's rows stand, from the queue's report.
#[derive(Debug, PartialEq)]
pub(super) enum Rows<'a> {
    Deleted {
        database: &'a str,
        rows: u64,
    },
    /// Persistence is off for the mirror: nothing to delete.
    Off,
    /// The deletion failed for good: record the rows as orphaned.
    Orphaned(&'a store::Error),
    /// Not dealt with yet; `submit`: start (or restart) the deletion.
    Pending {
        submit: bool,
    },
}

pub(super) fn decide<'a>(report: &'a Report, gives_up: impl Fn(&store::Error) -> bool) -> Rows<'a> {
    if report.deleting && !report.busy {
        match &report.outcome {
            Some(Outcome::Deleted { database, rows }) => {
                return Rows::Deleted {
                    database,
                    rows: *rows,
                };
            }
            Some(Outcome::Off) => return Rows::Off,
            Some(Outcome::Failed { error, .. }) if gives_up(error) => {
                return Rows::Orphaned(error);
            }
            _ => {}
        }
    }
    Rows::Pending {
        submit: !report.busy,
    }
}

/// Whether the rows are dealt with (deleted, never there, or orphaned), so
/// the finalizer may go. Starts the deletion when it is not running.
pub(crate) async fn released(ctx: &Context, mirror: &ConfigMirror, id: &MirrorIdentity) -> bool {
    let report = ctx.persistence.report(&id.uid);
    match decide(&report, |error| gives_up(ctx, mirror, error)) {
        Rows::Deleted { database, rows } => {
            tracing::info!(mirror = %id.key(), %database, rows, "rows deleted");
            true
        }
        Rows::Off => true,
        Rows::Orphaned(error) => {
            orphan(ctx, mirror, id, error).await;
            true
        }
        Rows::Pending { submit } => {
            if submit {
                ctx.persistence.submit(delete_job(ctx, mirror, id));
            }
            false
        }
    }
}

fn delete_job(ctx: &Context, mirror: &ConfigMirror, id: &MirrorIdentity) -> Job {
    Job {
        mirror: id.clone(),
        database: mirror.spec.database.clone(),
        work: Work::DeleteAll,
        fence: ctx.scope.fence(&id.uid),
        lease: ctx.scope.lease().cloned(),
    }
}

/// When a failed deletion stops being retried.
fn gives_up(ctx: &Context, mirror: &ConfigMirror, error: &store::Error) -> bool {
    let own_database = mirror
        .spec
        .database
        .as_ref()
        .is_some_and(|d| d.secret_ref.is_some());
    // Nothing left to delete rows with: the operator has no database.
    if matches!(error, store::Error::NoDatabase) || own_database {
        return true;
    }
    let Some(since) = &mirror.metadata.deletion_timestamp else {
        return true;
    };
    let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(since.0);
    elapsed.unsigned_abs() >= ctx.settings.orphan_rows_after
}

async fn orphan(ctx: &Context, mirror: &ConfigMirror, id: &MirrorIdentity, error: &store::Error) {
    // What this process wrote, or what status last counted.
    let rows = ctx
        .persistence
        .known_rows(&id.uid)
        .or_else(|| {
            mirror
                .status
                .as_ref()
                .map(|s| usize::try_from(s.sources).unwrap_or(0))
        })
        .unwrap_or(0);
    metrics::counter!(names::DB_ROWS_ORPHANED).increment(rows as u64);
    tracing::warn!(mirror = %id.key(), rows, error = %error, "the mirror's rows could not be deleted; left as orphaned");
    let note = format!(
        "{rows} row(s) of this mirror were left in the database: {error}. \
         Delete them by hand (configmaps where configmirror_namespace = '{}' and configmirror_name = '{}').",
        id.namespace, id.name
    );
    // A namespace being deleted takes no new events, and neither does the
    // mirror in it: then the record goes on the Namespace itself
    // (cluster-scoped, so the event lands in `default` and outlives it).
    let terminating = ctx
        .namespaces
        .read()
        .get(&id.namespace)
        .is_none_or(|ns| ns.terminating);
    if terminating {
        let namespace = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(id.namespace.clone()),
            ..Default::default()
        };
        let note = format!("mirror {}: {note}", id.key());
        events::publish_on(
            ctx,
            &namespace,
            EventType::Warning,
            "RowsOrphaned",
            "DeleteRows",
            note,
        )
        .await;
    } else {
        events::publish(
            ctx,
            mirror,
            EventType::Warning,
            "RowsOrphaned",
            "DeleteRows",
            note,
        )
        .await;
    }
}
