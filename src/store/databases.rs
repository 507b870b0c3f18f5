//! Which database a mirror's rows go to, and a pool for each: the
//! operator's default (`--database-url` / `--database-secret`), or the
//! Secret a mirror names. Pools are cached per Secret and replaced when
//! the Secret changes; every pool connects lazily, so the operator starts
//! and replicates while a database is down.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::OnceCell;

use super::credentials::{connect_options, decode_secret};
use super::{Error, migrate};
use crate::api::DatabaseSpec;

pub struct Database {
    /// `default`, or `<namespace>/<name>` of its Secret: safe to show.
    pub label: String,
    /// Changes when the credentials do (a rotated Secret is a new database).
    pub identity: String,
    pub pool: PgPool,
    /// How to connect, for a second, separate pool (coordination).
    pub options: PgConnectOptions,
    migrated: OnceCell<()>,
}

impl Database {
    pub fn new(
        label: String,
        identity: String,
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // Fail fast while the database is down; the caller retries with backoff.
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.clone());
        Self {
            label,
            identity,
            pool,
            options,
            migrated: OnceCell::new(),
        }
    }

    /// The pool, once this database's persistence migrations have run.
    pub async fn ready(&self) -> Result<&PgPool, Error> {
        self.migrated
            .get_or_try_init(|| async {
                migrate::run(&self.pool, &migrate::persistence())
                    .await
                    .map_err(|e| match e {
                        sqlx::migrate::MigrateError::Execute(inner) => {
                            match Error::from_sqlx(&self.label, &inner) {
                                Error::Write(db, msg) => Error::Migration(db, msg),
                                other => other,
                            }
                        }
                        other => Error::Migration(self.label.clone(), other.to_string()),
                    })
            })
            .await?;
        Ok(&self.pool)
    }
}

/// Where the operator's own database comes from.
#[derive(Debug, Clone)]
pub enum DefaultDatabase {
    None,
    Url(Box<PgConnectOptions>),
    Secret { namespace: String, name: String },
}

pub struct Databases {
    client: Client,
    default_source: DefaultDatabase,
    default_from_url: Option<Arc<Database>>,
    by_secret: Mutex<HashMap<(String, String), Arc<Database>>>,
    allowed_namespaces: BTreeSet<String>,
    max_connections: u32,
}

impl Databases {
    pub fn new(
        client: Client,
        default: DefaultDatabase,
        allowed_namespaces: BTreeSet<String>,
        max_connections: u32,
    ) -> Self {
        let default_from_url = match &default {
            DefaultDatabase::Url(options) => Some(Arc::new(Database::new(
                "default".into(),
                "default".into(),
                (**options).clone(),
                max_connections,
            ))),
            _ => None,
        };
        Self {
            client,
            default_source: default,
            default_from_url,
            by_secret: Mutex::new(HashMap::new()),
            allowed_namespaces,
            max_connections,
        }
    }

    /// The operator's own database, if it has one.
    pub async fn default(&self) -> Result<Option<Arc<Database>>, Error> {
        match &self.default_source {
            DefaultDatabase::None => Ok(None),
            DefaultDatabase::Url(_) => Ok(self.default_from_url.clone()),
            DefaultDatabase::Secret { namespace, name } => self
                .database_of_secret(namespace, name, "default")
                .await
                .map(Some),
        }
    }

    /// The database a mirror's rows go to; `None` when persistence is off
    /// for it (`enabled: false`, or no `database` and no default database).
    pub async fn for_mirror(
        &self,
        mirror_namespace: &str,
        spec: Option<&DatabaseSpec>,
    ) -> Result<Option<Arc<Database>>, Error> {
        match spec {
            Some(d) if !d.enabled => Ok(None),
            Some(DatabaseSpec {
                secret_ref: Some(r),
                ..
            }) => {
                let namespace = r
                    .namespace
                    .clone()
                    .unwrap_or_else(|| mirror_namespace.to_string());
                // A mirror's author must not borrow another team's credentials.
                if namespace != mirror_namespace && !self.allowed_namespaces.contains(&namespace) {
                    let allowed = if self.allowed_namespaces.is_empty() {
                        "the mirror's own namespace".to_string()
                    } else {
                        format!(
                            "the mirror's own namespace and {}",
                            self.allowed_namespaces
                                .iter()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    return Err(Error::SecretNotAllowed(
                        format!("{namespace}/{}", r.name),
                        allowed,
                    ));
                }
                let label = format!("{namespace}/{}", r.name);
                self.database_of_secret(&namespace, &r.name, &label)
                    .await
                    .map(Some)
            }
            Some(_) => self.default().await?.ok_or(Error::NoDatabase).map(Some),
            None => self.default().await,
        }
    }

    /// Every database in use, for housekeeping (revision pruning).
    pub async fn all(&self) -> Vec<Arc<Database>> {
        let mut all: Vec<Arc<Database>> =
            self.by_secret.lock().unwrap().values().cloned().collect();
        all.extend(self.default_from_url.clone());
        all
    }

    /// Reads the Secret (a GET per use: rotation is noticed at the next
    /// reconcile without watching Secrets cluster-wide) and returns its pool,
    /// new when the Secret changed.
    async fn database_of_secret(
        &self,
        namespace: &str,
        name: &str,
        label: &str,
    ) -> Result<Arc<Database>, Error> {
        let key = format!("{namespace}/{name}");
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::SecretRead(key.clone(), e.to_string()))?
            .ok_or_else(|| Error::SecretNotFound(key.clone()))?;
        let identity = format!("{key}@{}", secret.resource_version().unwrap_or_default());
        let cache_key = (namespace.to_string(), name.to_string());
        if let Some(db) = self.by_secret.lock().unwrap().get(&cache_key)
            && db.identity == identity
        {
            return Ok(db.clone());
        }
        let options = connect_options(&decode_secret(secret.data.as_ref()), &key)?;
        let db = Arc::new(Database::new(
            label.to_string(),
            identity,
            options,
            self.max_connections,
        ));
        if let Some(old) = self.by_secret.lock().unwrap().insert(cache_key, db.clone()) {
            tracing::info!(secret = %key, "database secret changed; switching to a new pool");
            tokio::spawn(async move { old.pool.close().await });
        }
        Ok(db)
    }
}
