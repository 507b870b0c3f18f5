//! Wiring: the ConfigMirror watch, the caches' triggers, and kube-runtime's
//! applier (which never reconciles one object twice at once and bounds
//! concurrency), running until shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use futures::{StreamExt, TryStreamExt, future};
use kube::runtime::controller::{self, applier};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::{Context, Error, error_policy, owned_mirrors, reconcile};
use crate::api::ConfigMirror;
use crate::plan::selector::Selector;
use crate::plan::{NamespacePolicy, Namespaces};
use crate::scope::Scope;
use crate::telemetry::names;
use crate::telemetry::server::Health;
use crate::watches::{Trigger, TriggerReceiver, strip_managed_fields};

/// What a mirror change must look like to be worth a reconcile: a new spec
/// (generation), deletion starting, finalizers changing, or a new object
/// under the same name. Status and label edits are not: that is how the
/// operator's own status writes never trigger it again.
fn mirror_predicate(mirror: &ConfigMirror) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    mirror.metadata.generation.hash(&mut h);
    mirror.metadata.deletion_timestamp.is_some().hash(&mut h);
    mirror.metadata.finalizers.hash(&mut h);
    mirror.metadata.uid.hash(&mut h);
    Some(h.finish())
}

type MirrorEvent = Result<watcher::Event<ConfigMirror>, watcher::Error>;
type MirrorRefs =
    futures::stream::Iter<std::vec::IntoIter<Result<ObjectRef<ConfigMirror>, watcher::Error>>>;

/// Turns mirror watch events (already in the store) into reconcile requests.
/// A complete list (at start, after a watch error) reconciles every mirror
/// in the store (cheap when nothing changed: plans, no writes); a single
/// change reconciles its mirror when it passes `mirror_predicate`. A
/// sharded member's acquired mirrors arrive as single changes.
fn mirror_triggers(reader: Store<ConfigMirror>) -> impl FnMut(MirrorEvent) -> MirrorRefs {
    let mut seen: std::collections::HashMap<ObjectRef<ConfigMirror>, u64> =
        std::collections::HashMap::new();
    move |event| {
        let refs: Vec<Result<ObjectRef<ConfigMirror>, watcher::Error>> = match event {
            Err(e) => vec![Err(e)],
            Ok(watcher::Event::InitDone) => {
                let state = reader.state();
                seen = state
                    .iter()
                    .filter_map(|m| {
                        mirror_predicate(m).map(|h| (ObjectRef::from_obj(m.as_ref()), h))
                    })
                    .collect();
                state
                    .iter()
                    .map(|m| Ok(ObjectRef::from_obj(m.as_ref())))
                    .collect()
            }
            Ok(watcher::Event::Apply(m)) => {
                let r = ObjectRef::from_obj(&m);
                let hash = mirror_predicate(&m).unwrap_or_default();
                if seen.insert(r.clone(), hash) == Some(hash) {
                    vec![]
                } else {
                    vec![Ok(r)]
                }
            }
            Ok(watcher::Event::Delete(m)) => {
                seen.remove(&ObjectRef::from_obj(&m));
                vec![]
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => vec![],
        };
        futures::stream::iter(refs)
    }
}

/// The mirrors a trigger concerns.
pub(crate) fn mirrors_for(
    trigger: &Trigger,
    mirrors: &[Arc<ConfigMirror>],
    scope: &Scope,
) -> Vec<ObjectRef<ConfigMirror>> {
    mirrors
        .iter()
        .filter(|m| scope.owns(m))
        .filter(|m| match trigger {
            Trigger::Source { namespace, labels } => {
                m.spec.source_namespace == *namespace
                    && Selector::parse(m.spec.selector.as_ref())
                        .map(|s| labels.iter().any(|l| s.matches(l)))
                        .unwrap_or(false)
            }
            Trigger::Replica { mirror_uid } | Trigger::Persisted { mirror_uid } => {
                m.metadata.uid.as_deref() == Some(mirror_uid.as_str())
            }
            Trigger::Namespace { name } => {
                m.spec.source_namespace == *name
                    || m.spec.target_namespaces.contains(name)
                    || m.spec.target_namespace_selector.is_some()
            }
        })
        .map(|m| ObjectRef::from_obj(m.as_ref()))
        .collect()
}

/// Source namespace → selectors, over the mirrors this process owns and
/// the sources the namespace policy lets them read.
pub(crate) fn wanted_sources(
    mirrors: &[Arc<ConfigMirror>],
    scope: &Scope,
    policy: &NamespacePolicy,
    namespaces: &Namespaces,
) -> BTreeMap<String, BTreeSet<Selector>> {
    let mut wanted: BTreeMap<String, BTreeSet<Selector>> = BTreeMap::new();
    let allowed = |m: &ConfigMirror| {
        let home = m.namespace().unwrap_or_default();
        policy
            .source_denial(&home, &m.spec.source_namespace, namespaces)
            .is_none()
    };
    for m in mirrors
        .iter()
        .filter(|m| scope.owns(m) && m.metadata.deletion_timestamp.is_none() && allowed(m))
    {
        if let Ok(s) = Selector::parse(m.spec.selector.as_ref()) {
            wanted
                .entry(m.spec.source_namespace.clone())
                .or_default()
                .insert(s);
        }
    }
    wanted
}

fn mirror_api(ctx: &Context) -> Api<ConfigMirror> {
    match ctx.scope.single_namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// One reconcile in its turn: in flight for /healthz from the moment the
/// applier starts it, it waits for a reconcile slot (`ctx.slots`; the
/// applier runs unbounded so that this wait is first come, first served,
/// and so that a reconcile can give its slot up while it writes). A
/// reconcile still waiting when the controller stops is dropped unstarted.
async fn in_turn(
    mirror: Arc<ConfigMirror>,
    ctx: Arc<Context>,
    stopping: impl std::future::Future<Output = ()>,
) -> Result<controller::Action, Error> {
    let _in_flight = ctx.liveness.started();
    let uid = mirror.uid().unwrap_or_default();
    let _slot = tokio::select! {
        slot = ctx.slots.acquire(&uid) => slot,
        () = stopping => return Ok(controller::Action::await_change()),
    };
    // Boxed only now: thousands of waiting reconciles stay small.
    Box::pin(reconcile(mirror, ctx.clone())).await
}

/// The ConfigMirror events the store follows, and the mirrors to reconcile
/// again without an event. A sharded member's store holds only the mirrors
/// it owns (`owned_mirrors`); otherwise one watch, filtered to the scope.
fn mirror_watch(ctx: &Context) -> owned_mirrors::OwnedMirrors {
    let scope = ctx.scope.clone();
    if let Some(view) = ctx.scope.shard() {
        return owned_mirrors::start(
            ctx.client.clone(),
            mirror_api(ctx),
            scope,
            view.clone(),
            ctx.replicas.clone(),
        );
    }
    let events = crate::watches::events(
        mirror_api(ctx),
        crate::watches::watch_config(),
        crate::watches::Watch::Mirrors,
    )
    // Mirrors out of scope never reach the store.
    .try_filter(move |event| {
        future::ready(match event {
            watcher::Event::Apply(m) | watcher::Event::InitApply(m) | watcher::Event::Delete(m) => {
                scope.owns(m)
            }
            watcher::Event::Init | watcher::Event::InitDone => true,
        })
    })
    .boxed();
    owned_mirrors::OwnedMirrors {
        events,
        catch_up: futures::stream::empty().boxed(),
    }
}

/// Runs the controller until `shutdown` resolves, then lets in-flight
/// reconciles finish.
pub(crate) async fn run(
    ctx: Arc<Context>,
    triggers: TriggerReceiver,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let liveness = ctx.liveness.clone();
    let (reader, writer) = reflector::store::<ConfigMirror>();
    // The store's own readiness wakes only one waiter (the applier), so the
    // first complete list is also announced here.
    let (listed_tx, listed) = tokio::sync::watch::channel(false);
    let owned_mirrors::OwnedMirrors { events, catch_up } = mirror_watch(&ctx);
    let mirror_events = events
        .modify(|m| strip_managed_fields(&mut m.metadata))
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                listed_tx.send_replace(true);
            }
        })
        .reflect(writer)
        .flat_map(mirror_triggers(reader.clone()));

    let (trigger_reader, trigger_scope) = (reader.clone(), ctx.scope.clone());
    let trigger_refs =
        tokio_stream::wrappers::UnboundedReceiverStream::new(triggers).flat_map(move |trigger| {
            let refs = mirrors_for(&trigger, &trigger_reader.state(), &trigger_scope);
            tracing::trace!(?trigger, mirrors = refs.len(), "triggered");
            futures::stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
        });

    let housekeeping = tokio::spawn(
        housekeeping(ctx.clone(), reader.clone(), listed, health)
            .instrument(tracing::info_span!("controller_housekeeping")),
    );
    let catch_up = catch_up.map(Ok);
    let requests = liveness.clone();
    let queue = futures::stream::select(
        futures::stream::select(mirror_events, trigger_refs),
        catch_up,
    )
    .inspect_ok(move |_| requests.requested())
    .take_until(shutdown.clone());
    applier(
        move |mirror, ctx| Box::pin(in_turn(mirror, ctx, shutdown.clone())),
        error_policy,
        ctx.clone(),
        reader,
        queue,
        // Unbounded: `in_turn` bounds reconciles with `ctx.slots`.
        controller::Config::default(),
    )
    .for_each(|result| {
        // Every answer, a reconcile's or the queue's, is progress.
        liveness.answered();
        async move {
            if let Err(e) = result {
                match e {
                    // A mirror deleted while queued: nothing to do.
                    controller::Error::ObjectNotFound(_) => {}
                    e => tracing::warn!(error = %e, "controller"),
                }
            }
        }
    })
    .await;
    housekeeping.abort();
}

/// Keeps source watches to what owned mirrors need, and the gauges current.
async fn housekeeping(
    ctx: Arc<Context>,
    mirrors: Store<ConfigMirror>,
    mut listed: tokio::sync::watch::Receiver<bool>,
    health: Arc<Health>,
) {
    let _ = listed.wait_for(|listed| *listed).await;
    health.set("caches", true, "caches synced");
    tracing::info!("ConfigMirror cache synced; ready");
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        // A fenced member owns nothing for the moment; dropping its watches
        // and replica caches now would only make it re-list everything when
        // it resumes.
        if ctx
            .scope
            .shard()
            .is_some_and(|view| view.active().is_none())
        {
            continue;
        }
        let state = mirrors.state();
        let wanted = wanted_sources(
            &state,
            &ctx.scope,
            &ctx.settings.policy,
            &ctx.namespaces.read(),
        );
        ctx.sources.retain(&wanted);
        let owned = state.iter().filter(|m| ctx.scope.owns(m)).count();
        metrics::gauge!(names::MIRRORS).set(owned as f64);
        metrics::gauge!(names::SOURCE_WATCHES).set(ctx.sources.watched_namespaces() as f64);
        // Mirrors that vanished without our finalizer (forced removal) are forgotten.
        let live: BTreeSet<String> = state.iter().filter_map(|m| m.uid()).collect();
        ctx.memory.retain(&live);
        // A sharded member keeps only its own mirrors' replicas.
        let owned = state
            .iter()
            .filter(|m| ctx.scope.owns(m))
            .filter_map(|m| m.uid())
            .collect();
        ctx.persistence.retain(&owned);
        ctx.replicas.retain_loaded(&owned);
    }
}
#[cfg(test)]
mod tests;
