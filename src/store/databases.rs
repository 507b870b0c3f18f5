//! Which database a mirror's rows go to, and a pool for each: the
//! operator's default (`--database-url` / `--database-secret`), or the
//! Secret a mirror names. Pools are cached per Secret and replaced when
//! the Secret changes; every pool connects lazily, so the operator starts
//! and replicates while a database is down.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::OnceCell;

use super::credentials::{Owner, connect_options, decode_secret, refuse_local_resources};
use super::deadline::{self, Deadlines};
use super::hosts::AllowedHosts;
use super::{Cause, Error, migrate};
use crate::api::DatabaseSpec;

/// How long a failed migration run answers for the next callers too.
const MIGRATION_FAILURE_SHARED_FOR: Duration = Duration::from_secs(5);

pub struct Database {
    /// `default`, or `<namespace>/<name>` of its Secret: safe to show.
    pub label: String,
    /// Changes when the credentials do (a rotated Secret is a new database).
    pub identity: String,
    pub pool: PgPool,
    /// How to connect, for a second, separate pool (coordination).
    pub options: PgConnectOptions,
    pub deadlines: Deadlines,
    migrated: OnceCell<()>,
    /// One migration run at a time, and its latest failure, which every
    /// caller waiting on that run (and any for a few seconds after) gets
    /// at once instead of each paying the deadline again in turn.
    migration_failure: tokio::sync::Mutex<Option<(Instant, Error)>>,
    /// When a caller last asked for it, so idle tenant pools can be closed.
    last_used: Mutex<Instant>,
    /// A mirror's own (`secretRef`): failures to connect are withheld from
    /// status (`Error::for_tenant`).
    tenant: bool,
}

impl Database {
    pub fn new(
        label: String,
        identity: String,
        options: PgConnectOptions,
        max_connections: u32,
        deadlines: Deadlines,
    ) -> Self {
        let options = deadlines.session_options(options);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // Fail fast while the database is down or silent; the caller
            // retries with backoff.
            .acquire_timeout(deadlines.acquire)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.clone());
        Self {
            label,
            identity,
            pool,
            options,
            deadlines,
            migrated: OnceCell::new(),
            migration_failure: tokio::sync::Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            tenant: false,
        }
    }

    /// What its errors say for a tenant (the whole cause goes to the log).
    fn said(&self, error: Error) -> Error {
        if self.tenant {
            error.for_tenant()
        } else {
            error
        }
    }

    /// The pool, once this database's persistence migrations have run
    /// (within the migration deadline; after a failed run the next caller
    /// past `MIGRATION_FAILURE_SHARED_FOR` tries again).
    pub async fn ready(&self) -> Result<&PgPool, Error> {
        *self.last_used.lock().unwrap() = Instant::now();
        self.ready_unused().await
    }

    /// `ready` for housekeeping (revision pruning): it does not count as
    /// use, or it would keep every idle tenant's pool open.
    pub(crate) async fn ready_unused(&self) -> Result<&PgPool, Error> {
        if self.migrated.initialized() {
            return Ok(&self.pool);
        }
        let mut failure = self.migration_failure.lock().await;
        if self.migrated.initialized() {
            return Ok(&self.pool);
        }
        if let Some((at, e)) = &*failure
            && at.elapsed() < MIGRATION_FAILURE_SHARED_FOR
        {
            return Err(e.clone());
        }
        match migrate::run_within(
            &self.options,
            migrate::persistence(),
            &self.label,
            self.deadlines.migration,
        )
        .await
        {
            Ok(()) => {
                let _ = self.migrated.set(());
                *failure = None;
                Ok(&self.pool)
            }
            Err(e) => {
                let e = self.said(e);
                *failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Runs one statement (`what`) within the statement deadline; a
    /// connection that could not be had says whether the database refused
    /// or stayed silent.
    pub(crate) async fn within<T>(
        &self,
        what: &'static str,
        call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Error> {
        match deadline::within(self.deadlines.statement, &self.label, what, call).await {
            // No probe of a tenant's host: what it would tell apart is
            // withheld anyway, and it would be one more connection there.
            Err(e) if self.tenant => Err(self.said(e)),
            Err(e) => {
                Err(
                    deadline::classify_acquire_failure(e, &self.options, self.deadlines.acquire)
                        .await,
                )
            }
            ok => ok,
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().unwrap().elapsed()
    }
}

/// Where the operator's own database comes from.
#[derive(Debug, Clone)]
pub(crate) enum DefaultDatabase {
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
    /// `--database-allowed-hosts`: where a mirror's own Secret may point.
    allowed_hosts: AllowedHosts,
    max_connections: u32,
    deadlines: Deadlines,
}

impl Databases {
    pub(crate) fn new(
        client: Client,
        default: DefaultDatabase,
        allowed_namespaces: BTreeSet<String>,
        max_connections: u32,
        deadlines: Deadlines,
    ) -> Self {
        let default_from_url = match &default {
            DefaultDatabase::Url(options) => Some(Arc::new(Database::new(
                "default".into(),
                "default".into(),
                (**options).clone(),
                max_connections,
                deadlines,
            ))),
            _ => None,
        };
        Self {
            client,
            default_source: default,
            default_from_url,
            by_secret: Mutex::new(HashMap::new()),
            allowed_namespaces,
            allowed_hosts: AllowedHosts::default(),
            max_connections,
            deadlines,
        }
    }

    /// Limits the hosts that mirrors' own Secrets may name.
    pub(crate) fn with_allowed_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// The operator's own database, if it has one.
    pub(crate) async fn default(&self) -> Result<Option<Arc<Database>>, Error> {
        match &self.default_source {
            DefaultDatabase::None => Ok(None),
            DefaultDatabase::Url(_) => Ok(self.default_from_url.clone()),
            DefaultDatabase::Secret { namespace, name } => self
                .database_of_secret(namespace, name, "default", None)
                .await
                .map(Some),
        }
    }

    /// The database a mirror's rows go to; `None` when persistence is off
    /// for it (`enabled: false`, or no `database` and no default database).
    pub(crate) async fn for_mirror(
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
                self.database_of_secret(&namespace, &r.name, &label, Some(&self.allowed_hosts))
                    .await
                    .map(Some)
            }
            Some(_) => self.default().await?.ok_or(Error::NoDatabase).map(Some),
            None => self.default().await,
        }
    }

    /// The pool last used for a mirror's Secret, without reading the
    /// Secret again: a mirror being deleted may have lost its Secret
    /// already (its namespace is going), and its rows are still reachable
    /// through a pool made before.
    pub(crate) fn cached_for_mirror(
        &self,
        mirror_namespace: &str,
        spec: Option<&DatabaseSpec>,
    ) -> Option<Arc<Database>> {
        let r = spec?.secret_ref.as_ref()?;
        let namespace = r.namespace.as_deref().unwrap_or(mirror_namespace);
        self.by_secret
            .lock()
            .unwrap()
            .get(&(namespace.to_string(), r.name.clone()))
            .cloned()
    }

    /// Closes the pools of Secrets nobody used for `idle`: a tenant's
    /// database that is gone or unused holds no connections (the
    /// operator's own stays).
    pub(crate) fn close_idle(&self, idle: Duration) -> usize {
        let closed: Vec<(String, Arc<Database>)> = {
            let mut cache = self.by_secret.lock().unwrap();
            let idle_keys: Vec<(String, String)> = cache
                .iter()
                .filter(|(_, db)| db.idle_for() >= idle && !self.is_default(db))
                .map(|(k, _)| k.clone())
                .collect();
            idle_keys
                .into_iter()
                .filter_map(|k| cache.remove(&k).map(|db| (format!("{}/{}", k.0, k.1), db)))
                .collect()
        };
        for (secret, db) in &closed {
            tracing::info!(%secret, idle = ?idle, "closing the pool of an idle database");
            let db = db.clone();
            tokio::spawn(async move { db.pool.close().await });
        }
        closed.len()
    }

    fn is_default(&self, db: &Database) -> bool {
        matches!(&self.default_source, DefaultDatabase::Secret { namespace, name }
            if db.label == "default" && db.identity.starts_with(&format!("{namespace}/{name}@")))
    }

    /// Every database in use, for housekeeping (revision pruning).
    pub(crate) async fn all(&self) -> Vec<Arc<Database>> {
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
        allowed: Option<&AllowedHosts>,
    ) -> Result<Arc<Database>, Error> {
        let key = format!("{namespace}/{name}");
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::SecretRead(key.clone(), Cause::new(e)))?
            .ok_or_else(|| Error::SecretNotFound(key.clone()))?;
        let identity = format!("{key}@{}", secret.resource_version().unwrap_or_default());
        let cache_key = (namespace.to_string(), name.to_string());
        if let Some(db) = self.by_secret.lock().unwrap().get(&cache_key)
            && db.identity == identity
        {
            return Ok(db.clone());
        }
        let data = decode_secret(secret.data.as_ref());
        let owner = if allowed.is_some() {
            refuse_local_resources(&data, &key)?;
            Owner::Tenant
        } else {
            Owner::Operator
        };
        let options = connect_options(&data, &key, owner)?;
        // Before any pool exists: a refused host gets no connection attempt.
        if let Some(Err(host)) = allowed.map(|hosts| hosts.check(&options)) {
            return Err(Error::HostNotAllowed(key, host));
        }
        let mut db = Database::new(
            label.to_string(),
            identity,
            options,
            self.max_connections,
            self.deadlines,
        );
        db.tenant = owner == Owner::Tenant;
        let db = Arc::new(db);
        if let Some(old) = self.by_secret.lock().unwrap().insert(cache_key, db.clone()) {
            tracing::info!(secret = %key, "database secret changed; switching to a new pool");
            tokio::spawn(async move { old.pool.close().await });
        }
        Ok(db)
    }
}
