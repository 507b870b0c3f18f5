//! Every replicated ConfigMap and each change to it is recorded in
//! PostgreSQL; a database problem never stops replication.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use kube::ResourceExt;

use crate::support::db::{StoredRow, TestDatabase, revisions, rows};
use crate::support::eventually;
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::postgres::PrivatePostgres;
use crate::support::scenario::Scenario;

/// Waits until the mirror's rows hold exactly these (name → data).
async fn wait_rows(
    pool: &sqlx::PgPool,
    s: &Scenario,
    mirror: &str,
    want: &[(&str, &[(&str, &str)])],
) -> Vec<StoredRow> {
    let want: BTreeMap<String, BTreeMap<String, String>> = want
        .iter()
        .map(|(n, d)| (n.to_string(), labels(d)))
        .collect();
    eventually(
        &format!("rows of {mirror} to equal the sources"),
        WAIT,
        || async {
            let found = rows(pool, &s.home.name, mirror).await;
            let got: BTreeMap<String, BTreeMap<String, String>> = found
                .iter()
                .map(|r| (r.name.clone(), r.data.clone()))
                .collect();
            (got == want).then_some(found)
        },
    )
    .await
}

/// Waits for the mirror's DatabaseSynced condition to have `status` and
/// `reason`; returns its message.
pub async fn database_synced(s: &Scenario, mirror: &str, status: &str, reason: &str) -> String {
    let found = wait_status(
        &s.client,
        &s.home.name,
        mirror,
        &format!("DatabaseSynced={status} ({reason})"),
        |st| {
            condition(st, "DatabaseSynced")
                .is_some_and(|c| c.status == status && c.reason == reason)
        },
    )
    .await;
    condition(&found, "DatabaseSynced").unwrap().message.clone()
}

#[tokio::test]
async fn rows_follow_sources_byte_exact_through_every_change() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let s = Scenario::new("rows", 1).await;
    let _op = s.operator().database(&db.url).start().await;

    let big = "x".repeat(900_000);
    let tricky: Vec<(&str, &str)> = vec![
        ("quotes", "it's \"quoted\""),
        ("backslash", "C:\\path\\n not a newline"),
        ("injection", "'; DROP TABLE configmaps; --"),
        ("unicode", "grüß 🚀 ✓ 日本"),
        ("nul", "before\0after"),
        ("big", &big),
    ];
    let mut cm = configmap("tricky", &[("replicate", "true")], &tricky);
    let bytes: Vec<u8> = (0..=255u8).collect();
    cm.binary_data = Some(BTreeMap::from([(
        "all.bin".to_string(),
        ByteString(bytes.clone()),
    )]));
    create_cm(&s.client, &s.source.name, &cm).await;
    s.selected_source("plain", &[("k", "v1")]).await;
    s.mirror_selected("m").await;

    let stored = wait_rows(
        &pool,
        &s,
        "m",
        &[("plain", &[("k", "v1")]), ("tricky", &tricky)],
    )
    .await;
    let t = stored.iter().find(|r| r.name == "tricky").unwrap();
    assert_eq!(t.binary["all.bin"], bytes, "binaryData byte-exact");
    assert_eq!(t.data["nul"], "before\0after", "U+0000 kept byte-exact");
    assert_eq!(t.namespace, s.source.name);
    assert_eq!(t.labels, serde_json::json!({"replicate": "true"}));
    database_synced(&s, "m", "True", "Synced").await;

    patch_cm(
        &s.client,
        &s.source.name,
        "plain",
        serde_json::json!({"data": {"k": "v2"}}),
    )
    .await;
    wait_rows(
        &pool,
        &s,
        "m",
        &[("plain", &[("k", "v2")]), ("tricky", &tricky)],
    )
    .await;
    delete_cm(&s.client, &s.source.name, "plain").await;
    wait_rows(&pool, &s, "m", &[("tricky", &tricky)]).await;
    // The selector now matches nothing: every row goes.
    patch_mirror_spec(
        &s.client,
        &s.home.name,
        "m",
        serde_json::json!({"selector": {"matchLabels": {"replicate": "never"}}}),
    )
    .await;
    wait_rows(&pool, &s, "m", &[]).await;

    let ops: Vec<(String, String)> = revisions(&pool, &s.home.name, "m").await;
    let count = |name: &str, op: &str| ops.iter().filter(|(n, o)| n == name && o == op).count();
    assert_eq!(
        (
            count("plain", "created"),
            count("plain", "updated"),
            count("plain", "deleted")
        ),
        (1, 1, 1),
        "{ops:?}"
    );
    assert_eq!(
        (
            count("tricky", "created"),
            count("tricky", "updated"),
            count("tricky", "deleted")
        ),
        (1, 0, 1),
        "{ops:?}"
    );
}

#[tokio::test]
async fn rest_and_restart_rewrite_no_row_and_a_label_change_adds_one_revision() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let s = Scenario::new("rowrest", 1).await;
    let mut op = s.operator().database(&db.url).start().await;
    s.selected_source("a", &[("k", "a")]).await;
    s.selected_source("b", &[("k", "b")]).await;
    s.mirror_selected("m").await;
    let before = wait_rows(
        &pool,
        &s,
        "m",
        &[("a", &[("k", "a")]), ("b", &[("k", "b")])],
    )
    .await;
    database_synced(&s, "m", "True", "Synced").await;
    let revisions_before = revisions(&pool, &s.home.name, "m").await.len();

    tokio::time::sleep(Duration::from_secs(5)).await;
    op.terminate().await;
    let again = Operator::scoped(&[&s.home.name])
        .database(&db.url)
        .start()
        .await;
    again.wait_reconciled(WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rows(&pool, &s.home.name, "m").await;
    assert_eq!(after, before, "rows were rewritten (xmin/updated_at moved)");
    assert_eq!(
        revisions(&pool, &s.home.name, "m").await.len(),
        revisions_before
    );

    // A label the selector does not read: no replica write, but the row
    // (which records labels) changes, with exactly one revision.
    patch_cm(
        &s.client,
        &s.source.name,
        "a",
        serde_json::json!({"metadata": {"labels": {"color": "blue"}}}),
    )
    .await;
    let changed = eventually("the row to record the label", WAIT, || async {
        let found = rows(&pool, &s.home.name, "m").await;
        found
            .iter()
            .find(|r| r.name == "a" && r.labels["color"] == "blue")
            .cloned()
    })
    .await;
    assert_ne!(changed.xmin, before[0].xmin);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ops = revisions(&pool, &s.home.name, "m").await;
    assert_eq!(ops.len(), revisions_before + 1, "{ops:?}");
    assert_eq!(
        ops.last().unwrap(),
        &("a".to_string(), "updated".to_string())
    );
    let b_now = rows(&pool, &s.home.name, "m")
        .await
        .into_iter()
        .find(|r| r.name == "b")
        .unwrap();
    assert_eq!(b_now, before[1], "an unchanged row was rewritten");
}

#[tokio::test]
async fn each_change_is_one_revision_deletion_is_recorded_and_retention_prunes() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let s = Scenario::new("revs", 1).await;
    let _op = s
        .operator()
        .database(&db.url)
        .arg("--revision-max-per-configmap=2")
        .arg("--revision-prune-interval-seconds=1")
        .start()
        .await;
    s.selected_source("cfg", &[("v", "0")]).await;
    s.mirror_selected("m").await;
    wait_rows(&pool, &s, "m", &[("cfg", &[("v", "0")])]).await;
    for i in 1..=4 {
        let v = i.to_string();
        patch_cm(
            &s.client,
            &s.source.name,
            "cfg",
            serde_json::json!({"data": {"v": v}}),
        )
        .await;
        wait_rows(&pool, &s, "m", &[("cfg", &[("v", &v)])]).await;
    }
    // 5 revisions were written (1 created + 4 updated); retention keeps the newest 2.
    let kept = eventually("retention to prune", WAIT, || async {
        let ops = revisions(&pool, &s.home.name, "m").await;
        (ops.len() == 2).then_some(ops)
    })
    .await;
    assert!(kept.iter().all(|(_, op)| op == "updated"), "{kept:?}");

    delete_mirror(&s.client, &s.home.name, "m").await;
    wait_mirror_gone(&s.client, &s.home.name, "m").await;
    assert!(
        rows(&pool, &s.home.name, "m").await.is_empty(),
        "rows outlived the mirror"
    );
    let ops = revisions(&pool, &s.home.name, "m").await;
    assert_eq!(
        ops.last().map(|(n, o)| (n.as_str(), o.as_str())),
        Some(("cfg", "deleted")),
        "{ops:?}"
    );
}

#[tokio::test]
async fn replication_continues_through_a_database_outage_and_rows_catch_up() {
    let pg = PrivatePostgres::start();
    let s = Scenario::new("outage", 1).await;
    let _op = s.operator().database(&pg.url()).start().await;
    s.selected_source("keep", &[("k", "1")]).await;
    s.selected_source("drop", &[("k", "1")]).await;
    let uid = s.mirror_selected("m").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .unwrap();
    wait_rows(
        &pool,
        &s,
        "m",
        &[("drop", &[("k", "1")]), ("keep", &[("k", "1")])],
    )
    .await;
    pool.close().await;

    pg.stop_server();
    let t = s.target_names()[0];
    patch_cm(
        &s.client,
        &s.source.name,
        "keep",
        serde_json::json!({"data": {"k": "2"}}),
    )
    .await;
    delete_cm(&s.client, &s.source.name, "drop").await;
    s.selected_source("new", &[("k", "3")]).await;
    // Replicas follow at once, database or not.
    wait_cm(&s.client, t, "keep", "updated replica", |c| {
        is_replica(c, &uid, &[("k", "2")])
    })
    .await;
    wait_cm_gone(&s.client, t, "drop").await;
    wait_cm(&s.client, t, "new", "new replica", |c| {
        is_replica(c, &uid, &[("k", "3")])
    })
    .await;
    database_synced(&s, "m", "False", "Unreachable").await;
    let st = get_mirror(&s.client, &s.home.name, "m")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        st.database_status.as_ref().map(|d| d.connected),
        Some(false)
    );
    assert_eq!(
        ready_reason(&st),
        Some(("True".into(), "Synced".into())),
        "replication itself is fine"
    );

    pg.start_server();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .unwrap();
    wait_rows(
        &pool,
        &s,
        "m",
        &[("keep", &[("k", "2")]), ("new", &[("k", "3")])],
    )
    .await;
    database_synced(&s, "m", "True", "Synced").await;
}

#[tokio::test]
async fn the_reference_table_is_migrated_in_place_keeping_its_rows() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    // The Go reference's schema and two of its rows.
    for statement in [
        "CREATE TABLE configmaps (id SERIAL PRIMARY KEY, name VARCHAR(253) NOT NULL, namespace VARCHAR(253) NOT NULL, \
         data JSONB NOT NULL, labels JSONB, annotations JSONB, configmirror_name VARCHAR(253) NOT NULL, \
         configmirror_namespace VARCHAR(253) NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT now(), \
         updated_at TIMESTAMP NOT NULL DEFAULT now(), UNIQUE(name, namespace, configmirror_namespace, configmirror_name))",
        "INSERT INTO configmaps (name, namespace, data, configmirror_name, configmirror_namespace) VALUES \
         ('legacy', 'old-src', '{\"a\": \"1\"}', 'old', 'team'), ('other', 'old-src', '{\"b\": \"2\"}', 'old', 'team')",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_configmirror"))
        .args(["migrate", "--database-url", &db.url])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let kept: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT name, data FROM configmaps ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        kept,
        vec![
            ("legacy".into(), serde_json::json!({"a": "1"})),
            ("other".into(), serde_json::json!({"b": "2"}))
        ]
    );
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'configmaps' ORDER BY column_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for added in [
        "binary_data",
        "content_hash",
        "source_uid",
        "data_in_binary",
        "immutable",
    ] {
        assert!(
            columns.iter().any(|c| c == added),
            "{added} missing: {columns:?}"
        );
    }
    // Running it again changes nothing.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_configmirror"))
        .args(["migrate", "--database-url", &db.url])
        .status()
        .await
        .unwrap();
    assert!(again.success());
}

#[tokio::test]
async fn three_operators_starting_at_once_migrate_an_empty_database_exactly_once() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let s = Scenario::new("migrate3", 0).await;
    let mut ops = Vec::new();
    for _ in 0..3 {
        ops.push(
            Operator::scoped(&[&s.home.name])
                .database(&db.url)
                .no_wait(),
        );
    }
    let started = futures::future::join_all(ops.into_iter().map(|b| b.start())).await;
    // Every migration in the repository, each applied once and successfully.
    let expected: Vec<(i64, bool)> = (1..=persistence_migrations()).map(|v| (v, true)).collect();
    let history: Vec<(i64, bool)> = eventually("the migrations to be applied", WAIT, || async {
        let h: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT version, success FROM _configmirror_persistence_migrations ORDER BY version",
        )
        .fetch_all(&pool)
        .await
        .ok()?;
        (h.len() == expected.len()).then_some(h)
    })
    .await;
    assert_eq!(history, expected);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('configmaps', 'configmap_revisions')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 2);
    for op in &started {
        assert!(
            op.log_lines().iter().all(|l| l["level"] != "ERROR"),
            "an operator logged an error while migrating"
        );
    }
}

/// Creates a Secret in `namespace` with these string keys.
pub async fn secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    data: &BTreeMap<&str, String>,
) {
    use k8s_openapi::api::core::v1::Secret;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    };
    let api = kube::Api::<Secret>::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &kube::api::PatchParams::apply("configmirror-tests").force(),
        &kube::api::Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": secret.string_data,
        })),
    )
    .await
    .unwrap_or_else(|e| panic!("writing secret {namespace}/{name}: {e}"));
}

pub fn mirror_with_secret(
    s: &Scenario,
    secret_namespace: Option<&str>,
    secret_name: &str,
) -> configmirror::api::ConfigMirrorSpec {
    let mut spec = mirror_spec(&s.source.name, &s.target_names(), None);
    spec.database = Some(configmirror::api::DatabaseSpec {
        enabled: true,
        secret_ref: Some(configmirror::api::SecretRef {
            name: secret_name.into(),
            namespace: secret_namespace.map(String::from),
        }),
    });
    spec
}

#[tokio::test]
async fn mirrors_use_their_own_secret_in_either_key_style() {
    let (db1, db2) = (TestDatabase::create().await, TestDatabase::create().await);
    let s = Scenario::new("secrets", 1).await;
    let _op = s.operator().start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    secret(&s.client, &s.home.name, "by-keys", &db1.parts()).await;
    secret(
        &s.client,
        &s.home.name,
        "by-uri",
        &BTreeMap::from([("uri", db2.url.clone())]),
    )
    .await;
    create_mirror(
        &s.client,
        &s.home.name,
        "keys",
        mirror_with_secret(&s, None, "by-keys"),
    )
    .await;
    create_mirror(
        &s.client,
        &s.home.name,
        "uri",
        mirror_with_secret(&s, Some(&s.home.name), "by-uri"),
    )
    .await;
    let (p1, p2) = (db1.pool().await, db2.pool().await);
    wait_rows(&p1, &s, "keys", &[("cfg", &[("k", "v")])]).await;
    wait_rows(&p2, &s, "uri", &[("cfg", &[("k", "v")])]).await;
    assert!(
        rows(&p1, &s.home.name, "uri").await.is_empty(),
        "rows went to the wrong database"
    );

    // Rotation: the Secret now points at another database; the next
    // reconcile switches pools.
    let db3 = TestDatabase::create().await;
    secret(&s.client, &s.home.name, "by-keys", &db3.parts()).await;
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"data": {"k": "rotated"}}),
    )
    .await;
    let p3 = db3.pool().await;
    wait_rows(&p3, &s, "keys", &[("cfg", &[("k", "rotated")])]).await;
}

#[tokio::test]
async fn bad_secrets_give_clear_conditions_while_replication_continues() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("badsecret", 1).await;
    let shared = crate::support::TestNamespace::create(&s.client, "badsecret-shared").await;
    let _op = s
        .operator()
        .arg(format!("--database-secret-namespaces={}", shared.name))
        .start()
        .await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let t = s.target_names()[0];

    let mut wrong = db.parts();
    wrong.insert("password", "not-the-password".into());
    let mut partial = db.parts();
    partial.remove("dbname");
    secret(&s.client, &s.home.name, "wrong-password", &wrong).await;
    secret(&s.client, &s.home.name, "partial", &partial).await;
    let elsewhere = crate::support::TestNamespace::create(&s.client, "badsecret-other").await;
    secret(&s.client, &elsewhere.name, "borrowed", &db.parts()).await;
    secret(&s.client, &shared.name, "shared", &db.parts()).await;

    let cases = [
        (
            "missing",
            mirror_with_secret(&s, None, "does-not-exist"),
            "False",
            "SecretNotFound",
        ),
        (
            "partial",
            mirror_with_secret(&s, None, "partial"),
            "False",
            "SecretInvalid",
        ),
        (
            "wrong",
            mirror_with_secret(&s, None, "wrong-password"),
            "False",
            "AuthenticationFailed",
        ),
        (
            "borrowed",
            mirror_with_secret(&s, Some(&elsewhere.name), "borrowed"),
            "False",
            "SecretNotAllowed",
        ),
        (
            "shared",
            mirror_with_secret(&s, Some(&shared.name), "shared"),
            "True",
            "Synced",
        ),
    ];
    for (name, spec, _, _) in &cases {
        let mut spec = spec.clone();
        spec.selector = match_labels(&[("replicate", "true")]);
        let m = create_mirror(&s.client, &s.home.name, name, spec).await;
        assert!(m.uid().is_some());
    }
    for (name, _, status, reason) in &cases {
        database_synced(&s, name, status, reason).await;
        let st = get_mirror(&s.client, &s.home.name, name)
            .await
            .unwrap()
            .status
            .unwrap();
        let msg = &condition(&st, "DatabaseSynced").unwrap().message;
        assert!(
            !msg.contains("not-the-password"),
            "a password leaked into status: {msg}"
        );
    }
    // Every one of them still replicates (they contest one name, so exactly one holds it).
    // (Their database conditions come from the persistence queue, apart from
    // replication: either may be first.)
    let replica = wait_cm(
        &s.client,
        t,
        "cfg",
        "replicated despite the database problems",
        |c| data_of(c) == labels(&[("k", "v")]),
    )
    .await;
    assert_eq!(data_of(&replica), labels(&[("k", "v")]));
    let partial_msg = get_mirror(&s.client, &s.home.name, "partial")
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(
        condition(&partial_msg, "DatabaseSynced")
            .unwrap()
            .message
            .contains("dbname")
    );
}

/// A measurement, not a gate (run it with `--ignored --nocapture`): one
/// batch of 10,000 rows, then the same batch again (nothing changes).
#[tokio::test]
#[ignore = "measurement: cargo test --test integration persistence_throughput -- --ignored --nocapture"]
async fn persistence_throughput_for_ten_thousand_rows() {
    use configmirror::plan::{MirrorIdentity, SourceConfigMap};
    use configmirror::store::{Database, Deadlines, persist, rows::row_of};
    let test_db = TestDatabase::create().await;
    let db = Database::new(
        "bench".into(),
        "bench".into(),
        test_db.url.parse().unwrap(),
        2,
        Deadlines::default(),
    );
    db.ready().await.unwrap();
    let mirror = MirrorIdentity {
        namespace: "bench".into(),
        name: "m".into(),
        uid: "u".into(),
    };
    let rows: Vec<_> = (0..10_000)
        .map(|i| {
            let cm = configmap(
                &format!("cfg-{i:05}"),
                &[("app", "bench")],
                &[("config.yaml", &"k: v\n".repeat(20))],
            );
            let mut cm = cm;
            cm.metadata.namespace = Some("src".into());
            row_of(&SourceConfigMap::from_configmap(&cm))
        })
        .collect();
    let keep: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.namespace.clone(), r.name.clone()))
        .collect();
    let started = std::time::Instant::now();
    let changes = persist::sync(&db, &mirror, None, &rows, &keep)
        .await
        .unwrap();
    let first = started.elapsed();
    assert_eq!(changes.created, 10_000);
    let started = std::time::Instant::now();
    let again = persist::sync(&db, &mirror, None, &rows, &keep)
        .await
        .unwrap();
    let second = started.elapsed();
    assert!(!again.any(), "an unchanged batch changed rows");
    println!(
        "10,000 rows: first write {:.2}s ({:.0} rows/s, with revisions); unchanged re-send {:.2}s ({:.0} rows/s checked)",
        first.as_secs_f64(),
        10_000.0 / first.as_secs_f64(),
        second.as_secs_f64(),
        10_000.0 / second.as_secs_f64()
    );
}

/// How many persistence migrations the repository holds.
fn persistence_migrations() -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/persistence");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64
}
