//! One tenant's broken database never slows or stops anyone else: a
//! database that falls silent (connections open, no reply, through a
//! proxy that holds traffic) costs its own mirrors a `Timeout` condition
//! and nothing more, and a mirror being deleted never waits on its rows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

use crate::persistence::{mirror_with_secret, secret};
use crate::support::db::{TestDatabase, rows};
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::proxy::SilentProxy;
use crate::support::scenario::Scenario;
use crate::support::shard::{numbered_mirror, replicated};
use crate::support::{TestNamespace, eventually};

/// The statement deadline these operators run with: short, so a test sees
/// `Timeout` without waiting the default 10 s.
const DEADLINE: &str = "--database-timeout-seconds=2";

async fn proxied(db: &TestDatabase) -> (SilentProxy, BTreeMap<&'static str, String>) {
    let mut parts = db.parts();
    let upstream: SocketAddr = format!("{}:{}", parts["host"], parts["port"])
        .parse()
        .unwrap();
    let proxy = SilentProxy::start(upstream).await;
    parts.insert("host", proxy.addr.ip().to_string());
    parts.insert("port", proxy.addr.port().to_string());
    (proxy, parts)
}

/// Creates `n` sources `m0000`… (data v=1) and one mirror each, selecting
/// it by label, with `database`.
async fn mirrors_with(
    s: &Scenario,
    n: usize,
    database: Option<configmirror::api::DatabaseSpec>,
) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        names.push(numbered_mirror(s, i, database.clone()).await.name_any());
    }
    names
}

/// `reason` may list alternatives: `Timeout|Unreachable`.
async fn all_database_synced(s: &Scenario, names: &[String], status: &str, reason: &str) {
    for name in names {
        wait_status(
            &s.client,
            &s.home.name,
            name,
            &format!("DatabaseSynced={status} ({reason})"),
            |st| {
                condition(st, "DatabaseSynced")
                    .is_some_and(|c| c.status == status && reason.split('|').any(|r| r == c.reason))
            },
        )
        .await;
    }
}

/// When every replica of `names` held `v` (a LIST per target namespace
/// every 100 ms, so the time is the operator's, not the polling's).
async fn replicas_at(s: &Scenario, names: &[String], v: &str) -> Instant {
    let targets = s.target_names();
    eventually(&format!("every replica at v={v}"), WAIT, || async {
        for t in &targets {
            let listed =
                Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(s.client.clone(), t)
                    .list(&ListParams::default())
                    .await
                    .ok()?;
            let at_v = listed
                .items
                .iter()
                .filter(|c| names.contains(&c.name_any()))
                .filter(|c| data_of(c).get("v").map(String::as_str) == Some(v))
                .count();
            if at_v != names.len() {
                return None;
            }
        }
        Some(Instant::now())
    })
    .await
}

/// Waits until the rows of every mirror hold `v`.
async fn rows_at(pool: &sqlx::PgPool, s: &Scenario, names: &[String], v: &str) {
    eventually(&format!("every mirror's rows at v={v}"), WAIT, || async {
        for name in names {
            let found = rows(pool, &s.home.name, name).await;
            if found.len() != 1 || found[0].data.get("v").map(String::as_str) != Some(v) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn bump(s: &Scenario, names: &[String], v: &str) {
    for name in names {
        patch_cm(
            &s.client,
            &s.source.name,
            name,
            serde_json::json!({"data": {"v": v}}),
        )
        .await;
    }
}

/// Replicas follow, the silent database's mirrors say `silent` (Timeout;
/// for a tenant's database, a connection that cannot be had is only
/// Unreachable), an unrelated mirror replicates at once, the operator stays
/// ready; rows catch up when the database answers again.
async fn silent_database_costs_only_its_own_mirrors(
    s: &Scenario,
    op: &Operator,
    proxy: &SilentProxy,
    pool: &sqlx::PgPool,
    names: &[String],
    silent: &str,
) {
    replicated(s, names.len(), "1", WAIT).await;
    all_database_synced(s, names, "True", "Synced").await;
    rows_at(pool, s, names, "1").await;

    proxy.hold();
    let changed = Instant::now();
    bump(s, names, "2").await;
    let took = replicas_at(s, names, "2").await - changed;
    eprintln!(
        "measured: {} mirrors on a silent database replicated in {:.2}s",
        names.len(),
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(2), "replicas took {took:?}");
    all_database_synced(s, names, "False", silent).await;

    let created = Instant::now();
    s.selected_source("unrelated", &[("k", "v")]).await;
    let mut spec = mirror_spec(
        &s.source.name,
        &s.target_names(),
        match_labels(&[("replicate", "true")]),
    );
    spec.database = Some(configmirror::api::DatabaseSpec {
        enabled: false,
        secret_ref: None,
    });
    let uid = create_mirror(&s.client, &s.home.name, "unrelated", spec)
        .await
        .uid()
        .unwrap();
    for t in s.target_names() {
        wait_cm(&s.client, t, "unrelated", "the unrelated replica", |c| {
            is_replica(c, &uid, &[("k", "v")])
        })
        .await;
    }
    let took = created.elapsed();
    eprintln!(
        "measured: an unrelated mirror replicated in {:.2}s beside the silent database",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(1),
        "the unrelated mirror took {took:?}"
    );
    assert!(op.ready().await, "the operator is not ready");

    proxy.release();
    rows_at(pool, s, names, "2").await;
    all_database_synced(s, names, "True", "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_tenant_database_slows_no_replica_and_reports_timeout() {
    let db = TestDatabase::create().await;
    let (proxy, parts) = proxied(&db).await;
    let s = Scenario::new("silent", 1).await;
    secret(&s.client, &s.home.name, "tenant-db", &parts).await;
    let op = s.operator().arg(DEADLINE).start().await;
    let database = mirror_with_secret(&s, None, "tenant-db").database;
    let names = mirrors_with(&s, 12, database).await;
    let pool = db.pool().await;
    silent_database_costs_only_its_own_mirrors(
        &s,
        &op,
        &proxy,
        &pool,
        &names,
        "Timeout|Unreachable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_operator_database_slows_no_replica_and_reports_timeout() {
    let db = TestDatabase::create().await;
    let (proxy, parts) = proxied(&db).await;
    let url = format!(
        "postgres://{}:{}@{}:{}/{}",
        parts["username"], parts["password"], parts["host"], parts["port"], parts["dbname"]
    );
    let s = Scenario::new("silentown", 1).await;
    let op = s
        .operator()
        .arg(DEADLINE)
        .arg(format!("--database-url={url}"))
        .start()
        .await;
    let names = mirrors_with(&s, 6, None).await;
    let pool = db.pool().await;
    silent_database_costs_only_its_own_mirrors(&s, &op, &proxy, &pool, &names, "Timeout").await;
}

/// How long the operator may hold a deleted mirror's finalizer: the
/// replicas' deletes plus one row delete that gives up at the 2 s deadline
/// (connecting, then the statement), with room for a busy machine.
const FINALIZER_HELD_AT_MOST: Duration = Duration::from_secs(20);

/// Deletes `namespace` and returns the event reasons seen in it meanwhile
/// (they go with it), once it is gone. What is ours to bound is how long
/// the mirror `m` in it stays after the namespace controller deletes it;
/// the namespace itself goes at the controller's pace (it looks again 15 s
/// after it finds an object with finalizers), so it gets the generous wait.
async fn delete_namespace(client: &kube::Client, namespace: &str) -> Vec<String> {
    let started = Instant::now();
    Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::background())
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut reasons = Vec::new();
    let mut deleting_since: Option<Instant> = None;
    loop {
        if let Ok(list) = events.list(&ListParams::default()).await {
            for e in list.items {
                let reason = e.reason.unwrap_or_default();
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
            }
        }
        match get_mirror(client, namespace, "m").await {
            None => break,
            Some(m) if m.metadata.deletion_timestamp.is_some() => {
                let since = *deleting_since.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < FINALIZER_HELD_AT_MOST,
                    "mirror {namespace}/m still held by its finalizer after {:?}",
                    since.elapsed()
                );
            }
            Some(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "mirror {namespace}/m never deleted by the namespace controller"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "measured: mirror {namespace}/m released {:.1}s after its deletion was seen, {:.1}s after the namespace delete",
        deleting_since.map_or(0.0, |d| d.elapsed().as_secs_f64()),
        started.elapsed().as_secs_f64()
    );
    wait_namespace_gone(client, namespace, Duration::from_secs(240)).await;
    eprintln!(
        "measured: namespace {namespace} gone after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_namespace_never_waits_on_its_mirrors_rows() {
    let db = TestDatabase::create().await;
    let (proxy, parts) = proxied(&db).await;
    let s = Scenario::new("nsdel", 2).await;
    let pool = db.pool().await;
    // Two tenants, each a namespace with a mirror, its Secret and its source.
    let reachable = TestNamespace::create(&s.client, "tenant-a").await;
    let partitioned = TestNamespace::create(&s.client, "tenant-b").await;
    let op = Operator::scoped(&[&reachable.name, &partitioned.name])
        .arg(DEADLINE)
        .start()
        .await;
    for (tenant, source) in [(&reachable, "cfg-a"), (&partitioned, "cfg-b")] {
        secret(&s.client, &tenant.name, "db", &parts).await;
        create_cm(
            &s.client,
            &tenant.name,
            &configmap(source, &[("replicate", "true")], &[("k", "v")]),
        )
        .await;
        let mut spec = mirror_spec(
            &tenant.name,
            &s.target_names(),
            match_labels(&[("replicate", "true")]),
        );
        spec.database = mirror_with_secret(&s, None, "db").database;
        create_mirror(&s.client, &tenant.name, "m", spec).await;
        eventually("the tenant's row", WAIT, || async {
            (rows(&pool, &tenant.name, "m").await.len() == 1).then_some(())
        })
        .await;
        for t in s.target_names() {
            wait_cm(&s.client, t, source, "a replica", |_| true).await;
        }
    }
    let orphaned_before = op
        .metric("configmirror_database_rows_orphaned_total")
        .await
        .unwrap_or(0.0);

    // A reachable database: the Secret goes with the namespace, the pool
    // made from it still deletes the rows.
    let reasons = delete_namespace(&s.client, &reachable.name).await;
    assert!(!reasons.iter().any(|r| r == "RowsOrphaned"), "{reasons:?}");
    assert!(
        rows(&pool, &reachable.name, "m").await.is_empty(),
        "rows left behind"
    );
    for t in s.target_names() {
        wait_cm_gone(&s.client, t, "cfg-a").await;
    }

    // A silent database: the rows cannot go, the mirror and namespace do.
    proxy.hold();
    delete_namespace(&s.client, &partitioned.name).await;
    // A terminating namespace takes no events: the record is on the
    // Namespace object (in `default`), which outlives it.
    let recorded = Api::<Event>::namespaced(s.client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| {
            e.reason.as_deref() == Some("RowsOrphaned")
                && e.involved_object.name.as_deref() == Some(partitioned.name.as_str())
        })
        .expect("a RowsOrphaned event on the deleted namespace");
    let note = recorded.message.unwrap_or_default();
    assert!(note.contains(&format!("{}/m", partitioned.name)), "{note}");
    let orphaned = op
        .metric("configmirror_database_rows_orphaned_total")
        .await
        .unwrap();
    assert_eq!(orphaned - orphaned_before, 1.0, "one row orphaned");
    proxy.release();
    assert_eq!(rows(&pool, &partitioned.name, "m").await.len(), 1);
    for t in s.target_names() {
        wait_cm_gone(&s.client, t, "cfg-b").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_tenant_pool_closes_and_opens_again_on_the_next_change() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("idlepool", 1).await;
    secret(&s.client, &s.home.name, "tenant-db", &db.parts()).await;
    let op = s
        .operator()
        .arg("--database-idle-close-seconds=3")
        // Pruning passes every second: housekeeping must not count as use.
        .arg("--revision-prune-interval-seconds=1")
        .arg("--revision-max-per-configmap=5")
        .start()
        .await;
    let database = mirror_with_secret(&s, None, "tenant-db").database;
    let names = mirrors_with(&s, 2, database).await;
    let pool = db.pool().await;
    rows_at(&pool, &s, &names, "1").await;
    let written = Instant::now();
    let (open, _) = db.operator_sessions().await;
    assert!(open > 0, "no operator session right after its writes");

    eventually("the idle tenant pool closed", WAIT, || async {
        (db.operator_sessions().await.0 == 0).then_some(())
    })
    .await;
    eprintln!(
        "measured: an idle tenant pool ({open} sessions) closed {:.1}s after the last write (idle close 3 s)",
        written.elapsed().as_secs_f64()
    );
    assert!(op.logged("closing the pool of an idle database"));
    // Several pruning passes later it is still closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db.operator_sessions().await.0,
        0,
        "housekeeping reopened it"
    );

    // The next change opens a new pool and is written.
    bump(&s, &names, "2").await;
    rows_at(&pool, &s, &names, "2").await;
    all_database_synced(&s, &names, "True", "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_lock_held_elsewhere_costs_a_timeout_and_no_replica() {
    use sqlx::Connection;
    use sqlx::migrate::Migrate;

    let db = TestDatabase::create().await;
    // Another migrator (a replica mid-migration, a stuck job) holds the
    // advisory lock sqlx migrates under, on a database not yet migrated.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    holder.lock().await.unwrap();
    let s = Scenario::new("miglock", 1).await;
    secret(&s.client, &s.home.name, "tenant-db", &db.parts()).await;
    let _op = s.operator().arg(DEADLINE).start().await;
    let migration =
        configmirror::store::Deadlines::from_statement(Duration::from_secs(2)).migration;

    let created = Instant::now();
    let database = mirror_with_secret(&s, None, "tenant-db").database;
    let names = mirrors_with(&s, 3, database).await;
    replicated(&s, names.len(), "1", WAIT).await;
    let replicated_after = created.elapsed();
    all_database_synced(&s, &names, "False", "Timeout").await;
    let timed_out_after = created.elapsed();
    eprintln!(
        "measured: with the migration lock held, replicas in {:.2}s, Timeout after {:.2}s (migration deadline {migration:?})",
        replicated_after.as_secs_f64(),
        timed_out_after.as_secs_f64()
    );
    assert!(
        replicated_after < migration,
        "replication waited on the migration: {replicated_after:?}"
    );
    // The wait is the migration's deadline, not a statement's: another
    // replica's migration may legitimately hold the lock that long.
    assert!(
        timed_out_after >= migration,
        "gave up on the lock before the migration deadline: {timed_out_after:?}"
    );
    assert!(
        timed_out_after < migration * 3,
        "no Timeout within 3 x the migration deadline: {timed_out_after:?}"
    );
    let mirror = get_mirror(&s.client, &s.home.name, &names[0])
        .await
        .unwrap();
    let message = condition(mirror.status.as_ref().unwrap(), "DatabaseSynced")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("migrating"), "{message}");
    // PostgreSQL ends each lock wait itself: a client-side deadline alone
    // would leave the server session queued behind the lock (it does not
    // notice a vanished client while it waits), one more per retry.
    let mut most_waiting = 0;
    let watching = Instant::now();
    while watching.elapsed() < migration * 2 {
        most_waiting = most_waiting.max(db.operator_sessions().await.1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        most_waiting, 1,
        "operator sessions waiting on the lock at once"
    );

    holder.unlock().await.unwrap();
    let pool = db.pool().await;
    rows_at(&pool, &s, &names, "1").await;
    all_database_synced(&s, &names, "True", "Synced").await;
}
