//! The foundation works: the local API server and its controller manager,
//! the audit log, the shared PostgreSQL and a private one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::support::k8s::wait_namespace_gone;
use crate::support::{self, TestNamespace, audit::AuditCursor, eventually};

#[tokio::test]
async fn api_server_reports_the_pinned_version() {
    let client = support::client().await;
    let info = client.apiserver_version().await.expect("/version");
    assert_eq!(info.git_version, "v1.34.4");
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "34"));
}

#[tokio::test]
async fn configmap_lifecycle_is_watched_and_namespace_deletion_completes() {
    let agent = support::unique("foundation-test");
    let client = support::client_with_agent(&agent).await;
    let audit = AuditCursor::now();
    let ns = TestNamespace::create(&client, "foundation").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);

    // The controller manager is running: the new namespace gets its
    // ServiceAccount and root CA ConfigMap without our help.
    eventually(
        "kube-root-ca.crt in a new namespace",
        Duration::from_secs(30),
        || {
            let cms = cms.clone();
            async move { cms.get_opt("kube-root-ca.crt").await.ok().flatten() }
        },
    )
    .await;

    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".into(), "v1".into())])),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");

    // Watch the object and see our change arrive through the watch.
    let config = watcher::Config::default().fields("metadata.name=probe");
    let mut values = watcher(cms.clone(), config)
        .applied_objects()
        .map_ok(|cm| cm.data.unwrap_or_default().get("k").cloned())
        .boxed();
    assert_eq!(values.try_next().await.unwrap(), Some(Some("v1".into())));
    let patch = serde_json::json!({"data": {"k": "v2"}});
    cms.patch("probe", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(v) = values.try_next().await.unwrap() {
            if v.as_deref() == Some("v2") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the watch did not deliver the update");

    // Deleting the namespace completes: the namespace controller empties it
    // and removes its finalizer.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::foreground())
        .await
        .expect("delete namespace");
    wait_namespace_gone(&client, &ns.name, Duration::from_secs(120)).await;

    // The audit log recorded our writes under our user agent.
    let writes = eventually(
        "our writes in the audit log",
        Duration::from_secs(10),
        || {
            let found = audit.accepted_writes(&agent, &[&ns.name]);
            async move { (found.len() >= 2).then_some(found) }
        },
    )
    .await;
    let verbs: Vec<_> = writes
        .iter()
        .filter(|e| e.object_ref.resource == "configmaps" && e.object_ref.name == "probe")
        .map(|e| e.verb.as_str())
        .collect();
    assert_eq!(verbs, ["create", "patch"], "audit events: {writes:?}");
    // Reads are audited only for service accounts (the pods' RBAC checks);
    // this test's own reads, as anyone else's, are not.
    let reads: Vec<_> = audit
        .events()
        .into_iter()
        .filter(|e| matches!(e.verb.as_str(), "get" | "list" | "watch"))
        .filter(|e| !e.user.username.starts_with("system:serviceaccount:"))
        .collect();
    assert!(reads.is_empty(), "reads audited: {reads:?}");
}

#[tokio::test]
async fn shared_postgres_round_trips_a_row() {
    let pool = sqlx::PgPool::connect(&support::database_url())
        .await
        .expect("connect to the shared PostgreSQL");
    // A temporary table lives in this one connection: parallel tests never meet.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("CREATE TEMP TABLE roundtrip (id int PRIMARY KEY, body jsonb NOT NULL)")
        .execute(&mut *conn)
        .await
        .unwrap();
    let body = serde_json::json!({"quote": "it's \"here\"", "unicode": "grüß 🚀"});
    sqlx::query("INSERT INTO roundtrip VALUES ($1, $2)")
        .bind(1)
        .bind(&body)
        .execute(&mut *conn)
        .await
        .unwrap();
    let back: serde_json::Value = sqlx::query_scalar("SELECT body FROM roundtrip WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(back, body);
}

#[tokio::test]
async fn private_postgres_starts_stops_and_starts_again() {
    let pg = support::postgres::PrivatePostgres::start();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&pg.url())
        .await
        .expect("connect to the private PostgreSQL");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);

    pg.stop_server();
    assert!(!pg.is_running());
    assert!(
        sqlx::query("SELECT 1").execute(&pool).await.is_err(),
        "a query succeeded against a stopped server"
    );

    pg.start_server();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1, "the pool reconnects once the server is back");

    // A wrong password is refused: the server really authenticates.
    let wrong = pg.url().replace(":postgres@", ":wrong@");
    assert!(sqlx::PgPool::connect(&wrong).await.is_err());
}
