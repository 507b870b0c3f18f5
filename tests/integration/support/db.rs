//! Databases for persistence tests: a fresh database per test on the shared
//! PostgreSQL (dropped afterwards), and helpers to read what the operator wrote.

use std::collections::BTreeMap;
use std::time::Duration;

use configmirror::store::rows::decode;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use super::{database_url, unique};

pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let shared = database_url();
        let base = shared
            .rsplit_once('/')
            .expect("a database URL")
            .0
            .to_string();
        let name = unique("cmtest").replace('-', "_");
        let admin = format!("{base}/postgres");
        let pool = PgPool::connect(&admin)
            .await
            .expect("connect to the shared PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .expect("create a test database");
        pool.close().await;
        Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// The operator's sessions on this database (its `application_name`),
    /// as `(all, waiting on a lock)`; read from the admin database, so the
    /// reader is never one of them.
    pub async fn operator_sessions(&self) -> (i64, i64) {
        let admin = PgPool::connect(&self.admin)
            .await
            .expect("connect to the admin database");
        let counted = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') \
             FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
        )
        .bind(&self.name)
        .bind(configmirror::store::deadline::APPLICATION_NAME)
        .fetch_one(&admin)
        .await
        .expect("read pg_stat_activity");
        admin.close().await;
        counted
    }

    /// Whether each of the operator's sessions on this database uses TLS.
    pub async fn operator_tls(&self) -> Vec<bool> {
        operator_tls(&self.admin, &self.name).await
    }

    /// host, port, dbname, username, password of this database.
    pub fn parts(&self) -> BTreeMap<&'static str, String> {
        parts_of(&self.url)
    }
}

/// Whether each of the operator's sessions (its `application_name`) on
/// database `name` uses TLS, as the server sees it; read through `admin_url`
/// (the server's default sslmode, `prefer`), whose own session is not one.
pub async fn operator_tls(admin_url: &str, name: &str) -> Vec<bool> {
    let admin = PgPool::connect(admin_url)
        .await
        .expect("connect to the admin database");
    let found = sqlx::query_scalar(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.application_name = $2",
    )
    .bind(name)
    .bind(configmirror::store::deadline::APPLICATION_NAME)
    .fetch_all(&admin)
    .await
    .expect("read pg_stat_ssl");
    admin.close().await;
    found
}

/// The PEM of the CA that signed the local cluster's PostgreSQL certificate.
pub fn cluster_ca_pem() -> String {
    let path = std::env::var("CONFIGMIRROR_PG_CA").unwrap_or_else(|_| {
        let dir = std::env::var("CONFIGMIRROR_CLUSTER_DIR")
            .expect("CONFIGMIRROR_PG_CA or CONFIGMIRROR_CLUSTER_DIR (deploy/local/cluster env)");
        format!("{dir}/pki/ca.crt")
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn parts_of(url: &str) -> BTreeMap<&'static str, String> {
    let rest = url.split_once("://").unwrap().1;
    let (userinfo, hostpath) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    let (hostport, db) = hostpath.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    BTreeMap::from([
        ("host", host.to_string()),
        ("port", port.to_string()),
        ("dbname", db.to_string()),
        ("username", user.to_string()),
        ("password", password.to_string()),
    ])
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(pool) = PgPool::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A `configmaps` row as the tests read it back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub name: String,
    pub namespace: String,
    pub data: BTreeMap<String, String>,
    pub binary: BTreeMap<String, Vec<u8>>,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    /// Annotation values JSONB cannot hold (a NUL), byte-exact.
    pub annotations_in_binary: BTreeMap<String, Vec<u8>>,
    pub xmin: String,
    pub updated_at: String,
}

pub async fn rows(pool: &PgPool, mirror_namespace: &str, mirror: &str) -> Vec<StoredRow> {
    let found = sqlx::query(
        "SELECT name, namespace, data, binary_data, data_in_binary, labels, annotations, \
         annotations_in_binary, xmin::text AS xmin, \
         updated_at::text AS updated_at FROM configmaps \
         WHERE configmirror_namespace = $1 AND configmirror_name = $2 ORDER BY namespace, name",
    )
    .bind(mirror_namespace)
    .bind(mirror)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    found
        .iter()
        .map(|r| {
            let (data, binary) = decode(
                &r.get("data"),
                &r.get("binary_data"),
                &r.get("data_in_binary"),
            );
            StoredRow {
                name: r.get("name"),
                namespace: r.get("namespace"),
                data,
                binary,
                labels: r.get("labels"),
                annotations: r.get("annotations"),
                annotations_in_binary: serde_json::from_value::<
                    BTreeMap<String, k8s_openapi::ByteString>,
                >(r.get("annotations_in_binary"))
                .expect("base64 values")
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
                xmin: r.get("xmin"),
                updated_at: r.get("updated_at"),
            }
        })
        .collect()
}

/// Revisions of one mirror: (name, operation), oldest first.
pub async fn revisions(
    pool: &PgPool,
    mirror_namespace: &str,
    mirror: &str,
) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT name, operation FROM configmap_revisions \
         WHERE configmirror_namespace = $1 AND configmirror_name = $2 ORDER BY id",
    )
    .bind(mirror_namespace)
    .bind(mirror)
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}
