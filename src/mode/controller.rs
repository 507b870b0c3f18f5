//! What every mode runs once it may act: the caches, persistence, the
//! housekeeping tasks and the controller, until the mode's stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use super::Process;
use super::housekeeping::{close_idle_pools, prune_revisions, watch_default_database};
use crate::config::RunArgs;
use crate::persistence::Persistence;
use crate::reconcile::apply::fair::{ReconcileSlots, WriteBudget};
use crate::reconcile::{Context, Settings, controller};
use crate::scope::Scope;
use crate::store::Databases;
use crate::watches::{NamespaceCache, ReplicaCache, SourceCache, TriggerSender, trigger_channel};

/// Starts the caches, waits for their first lists, then runs the controller
/// until `stop`.
pub(super) async fn run_controller(
    p: &Process,
    args: &RunArgs,
    stop: impl Future<Output = ()> + Send + 'static,
    scope: Scope,
    databases: Arc<Databases>,
) {
    let (client, member, health) = (p.client.clone(), p.member.as_str(), p.health.clone());
    let (triggers, trigger_rx) = trigger_channel();
    let persistence = Persistence::new(
        databases.clone(),
        args.persistence_limits(),
        triggers.clone(),
    );
    let mut tasks = housekeeping(args, databases, persistence.clone());
    let (namespaces, replicas, cache_tasks) = start_caches(p, args, &scope, &triggers);
    tasks.extend(cache_tasks);
    let sources = SourceCache::new(client.clone(), triggers, Duration::from_secs(30));
    let settings = Settings {
        policy: args.namespace_policy(),
        adopt_reference_replicas: args.adopt_reference_replicas,
        write_concurrency: args.write_concurrency,
        resync: args.resync(),
        orphan_rows_after: Duration::from_secs(args.orphan_rows_after_seconds),
        ..Settings::default()
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "configmirror".into(),
                instance: Some(member.to_string()),
            },
        ),
        writes: WriteBudget::new(settings.write_concurrency),
        slots: ReconcileSlots::new(usize::from(args.concurrency)),
        liveness: health.liveness.clone(),
        persistence,
        client,
        settings,
        scope,
        namespaces: namespaces.clone(),
        replicas: replicas.clone(),
        sources,
        memory: Default::default(),
    });
    let (mut ns_ready, mut replicas_ready) = (namespaces.readiness(), replicas.readiness());
    let stop = futures::FutureExt::shared(Box::pin(stop));
    tokio::select! {
        _ = async { ns_ready.wait().await; replicas_ready.wait().await } => {}
        _ = stop.clone() => {
            tasks.iter().for_each(|t| t.abort());
            return;
        }
    }
    tracing::info!("namespace and replica caches synced");
    controller::run(ctx, trigger_rx, health, stop).await;
    tasks.iter().for_each(|t| t.abort());
}

/// The namespace and replica caches, and their tasks.
fn start_caches(
    p: &Process,
    args: &RunArgs,
    scope: &Scope,
    triggers: &TriggerSender,
) -> (Arc<NamespaceCache>, Arc<ReplicaCache>, [JoinHandle<()>; 2]) {
    let (namespaces, namespace_task) = NamespaceCache::start(p.client.clone(), triggers.clone());
    let (replicas, replica_task) = ReplicaCache::start(
        p.client.clone(),
        triggers.clone(),
        scope.shard().is_some(),
        args.watch_namespace
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
    );
    (namespaces, replicas, [namespace_task, replica_task])
}

/// The databases' background tasks, each in a span that names it.
fn housekeeping(
    args: &RunArgs,
    databases: Arc<Databases>,
    persistence: Arc<Persistence>,
) -> Vec<JoinHandle<()>> {
    let prune_every = Duration::from_secs(args.revision_prune_interval_seconds.max(1));
    let idle = Duration::from_secs(args.database_idle_close_seconds.max(1));
    vec![
        tokio::spawn(
            watch_default_database(databases.clone()).instrument(info_span!("database_watch")),
        ),
        tokio::spawn(
            prune_revisions(databases, args.retention(), prune_every)
                .instrument(info_span!("revision_pruning")),
        ),
        tokio::spawn(close_idle_pools(persistence, idle).instrument(info_span!("idle_pools"))),
    ]
}
