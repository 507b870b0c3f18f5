//! The controller: read → validate → plan → apply → persist → report, per
//! ConfigMirror (`sync`), or the finalizer's cleanup of a deleted one.

pub(crate) mod apply;
pub(crate) mod context;
pub(crate) mod controller;
pub(crate) mod denials;
pub(crate) mod events;
pub(crate) mod finalizer;
pub(crate) mod owned_mirrors;
pub(crate) mod persist;
pub(crate) mod remote;
mod report;
pub(crate) mod state;
pub(crate) mod status;
mod sync;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod status_tests;

use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::instrument;

pub(crate) use context::{Context, Settings};
pub(crate) use report::ReportError;
pub(crate) use sync::ReadError;

use crate::api::ConfigMirror;
use crate::plan::MirrorIdentity;
use crate::telemetry::names;

/// Why a reconcile failed: the step's own error, with its cause.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Cleanup(#[from] finalizer::Error),
    #[error("the object has no {0}")]
    Incomplete(&'static str),
}

impl Error {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::Read(e) => e.metric_label(),
            Error::Report(e) => e.metric_label(),
            Error::Cleanup(e) => e.metric_label(),
            Error::Incomplete(_) => "incomplete",
        }
    }
}

fn identity(mirror: &ConfigMirror) -> Result<MirrorIdentity, Error> {
    Ok(MirrorIdentity {
        namespace: mirror.namespace().ok_or(Error::Incomplete("namespace"))?,
        name: mirror.name_any(),
        uid: mirror.uid().ok_or(Error::Incomplete("uid"))?,
    })
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

fn mirror_key(mirror: &ConfigMirror) -> String {
    format!(
        "{}/{}",
        mirror.namespace().unwrap_or_default(),
        mirror.name_any()
    )
}

/// The shard member and the mirror's epoch there, for the span (none unsharded).
fn shard_fields(ctx: &Context, mirror: &ConfigMirror) -> (Option<String>, Option<i64>) {
    match ctx.scope.shard() {
        Some(view) => (
            Some(view.member.clone()),
            mirror.uid().and_then(|uid| view.epoch(&uid)),
        ),
        None => (None, None),
    }
}

#[instrument(name = "reconcile", skip_all, fields(
    mirror = %mirror_key(&mirror),
    generation = mirror.metadata.generation,
    member = tracing::field::Empty,
    epoch = tracing::field::Empty,
))]
pub(crate) async fn reconcile(
    mirror: Arc<ConfigMirror>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    // Owned, and registered as in flight (a drain waits for it).
    let Some(in_flight) = ctx.scope.begin(&mirror) else {
        tracing::debug!(mirror = %mirror.name_any(), "not owned here now; skipped");
        return Ok(Action::await_change());
    };
    if let (Some(member), epoch) = shard_fields(&ctx, &mirror) {
        let span = tracing::Span::current();
        span.record("member", member.as_str());
        span.record("epoch", epoch);
    }
    let id = identity(&mirror)?;
    let started = Instant::now();
    let work = async {
        if mirror.metadata.deletion_timestamp.is_some() {
            Ok(finalizer::cleanup(&ctx, &mirror, &id).await?)
        } else {
            sync::sync(&ctx, &mirror, &id).await
        }
    };
    // A drain (or a fence) ends the reconcile wherever it waits: it may
    // write nothing more anyway, and the handover waits for it.
    let result = tokio::select! {
        result = work => result,
        _ = in_flight.cancelled() => {
            tracing::debug!(mirror = %id.key(), "cancelled: the mirror moved or this member fenced");
            return Ok(Action::await_change());
        }
    };
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    };
    metrics::counter!(names::RECONCILE_TOTAL, "result" => label).increment(1);
    metrics::histogram!(names::RECONCILE_DURATION, "result" => label)
        .record(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.memory.succeeded(&id.uid);
    }
    result
}

/// Per-object exponential backoff with jitter.
pub(crate) fn error_policy(mirror: Arc<ConfigMirror>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = mirror.uid().unwrap_or_default();
    let failures = ctx.memory.failed(&uid);
    let delay = context::backoff(
        failures,
        ctx.settings.backoff_base,
        ctx.settings.backoff_max,
    );
    tracing::warn!(
        mirror = %mirror_key(&mirror),
        error = %error, failures, retry_in = ?delay, "reconcile failed"
    );
    Action::requeue(delay)
}
