//! A sharded cluster of operator processes for one test: its own database,
//! its own Lease namespace, its own mirror namespace.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kube::ResourceExt;
use sqlx::PgPool;

use super::audit::AuditEvent;
use super::operator::Operator;
use super::scenario::Scenario;
use super::{TestNamespace, eventually, k8s, unique};

pub struct Shards {
    pub database_url: String,
    pub pool: PgPool,
    pub lease_namespace: TestNamespace,
    pub lease: String,
    pub members: BTreeMap<String, Operator>,
    pub extra: Vec<String>,
}

impl Shards {
    pub async fn new(s: &Scenario, database_url: &str, extra: &[&str]) -> Self {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(database_url)
            .unwrap();
        Self {
            database_url: database_url.to_string(),
            pool,
            lease_namespace: TestNamespace::create(&s.client, "shard-lease").await,
            lease: unique("coordinator"),
            members: BTreeMap::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Starts member `name` (ready: registered and caches synced).
    pub async fn start(&mut self, s: &Scenario, name: &str) {
        let url = self.database_url.clone();
        self.start_on(s, name, &url).await;
    }

    /// Starts member `name` reaching the database at `database_url` (the
    /// same database through a proxy, say).
    pub async fn start_on(&mut self, s: &Scenario, name: &str, database_url: &str) {
        let mut b = Operator::scoped(&[&s.home.name])
            .member(name)
            .arg("--sharding")
            .arg(format!("--database-url={database_url}"))
            .arg(format!("--namespace={}", self.lease_namespace.name))
            .arg(format!("--coordinator-lease={}", self.lease))
            // Many members share one PostgreSQL in the test run.
            .arg("--database-max-connections=3");
        for e in &self.extra {
            b = b.arg(e.clone());
        }
        let op = b.start().await;
        self.members.insert(name.to_string(), op);
    }

    pub fn get(&mut self, name: &str) -> &mut Operator {
        self.members.get_mut(name).unwrap()
    }

    pub fn get_ref(&self, name: &str) -> &Operator {
        &self.members[name]
    }

    /// mirror UID → (member, state, epoch).
    pub async fn assignments(&self) -> HashMap<String, (String, String, i64)> {
        assignments(&self.pool).await
    }

    /// Ownership changes recorded so far: (uid, member, reason).
    pub async fn history(&self) -> Vec<(String, String, String)> {
        sqlx::query_as("SELECT mirror_uid, member, reason FROM assignment_history ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default()
    }

    /// Waits until every mirror in `uids` is actively owned by one of
    /// `live`, nothing is draining, and no member is above the cap; returns
    /// the owners.
    pub async fn settled(
        &self,
        uids: &[String],
        live: &[&str],
        timeout: Duration,
    ) -> HashMap<String, String> {
        settled(&self.pool, uids, live, timeout).await
    }

    pub async fn coordinator(&self) -> (i64, String) {
        sqlx::query_as("SELECT epoch, holder FROM coordinator_epochs WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Creates `n` mirrors in `s.home`, each replicating its own source into
/// every target; returns their UIDs.
pub async fn mirrors(s: &Scenario, n: usize) -> Vec<String> {
    let mut uids = Vec::new();
    for i in 0..n {
        uids.push(numbered_mirror(s, i, None).await.uid().unwrap());
    }
    uids
}

/// Source `m{i:04}` (data v=1, labelled `mirror=<its name>`) and the mirror
/// of the same name that selects it, with `database`.
pub async fn numbered_mirror(
    s: &Scenario,
    i: usize,
    database: Option<configmirror::api::DatabaseSpec>,
) -> configmirror::api::ConfigMirror {
    let name = format!("m{i:04}");
    k8s::create_cm(
        &s.client,
        &s.source.name,
        &k8s::configmap(&name, &[("mirror", &name)], &[("v", "1")]),
    )
    .await;
    let mut spec = k8s::mirror_spec(
        &s.source.name,
        &s.target_names(),
        k8s::match_labels(&[("mirror", &name)]),
    );
    spec.database = database;
    k8s::create_mirror(&s.client, &s.home.name, &name, spec).await
}

/// Waits until every mirror's replicas hold data version `v`; on timeout
/// says which are behind.
pub async fn replicated(s: &Scenario, n: usize, v: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut behind = Vec::new();
        for i in 0..n {
            let name = format!("m{i:04}");
            for t in s.target_names() {
                let cm = k8s::get_cm(&s.client, t, &name).await;
                if cm
                    .as_ref()
                    .and_then(|c| k8s::data_of(c).get("v").cloned())
                    .as_deref()
                    != Some(v)
                {
                    behind.push(name.clone());
                    break;
                }
            }
        }
        if behind.is_empty() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let mut detail = Vec::new();
            for name in behind.iter().take(5) {
                let m = k8s::get_mirror(&s.client, &s.home.name, name).await;
                let status = m.as_ref().and_then(|m| m.status.as_ref());
                detail.push(format!(
                    "{name} uid={:?} shard={:?} observedGeneration={:?} ready={:?}",
                    m.as_ref().and_then(|m| m.uid()),
                    status
                        .and_then(|s| s.shard.as_ref())
                        .map(|sh| (&sh.member, sh.epoch)),
                    status.and_then(|s| s.observed_generation),
                    status
                        .and_then(|s| k8s::condition(s, "Ready"))
                        .map(|c| (&c.status, &c.message)),
                ));
            }
            panic!(
                "timed out after {timeout:?}: {} of {n} mirrors not at v={v}: {:?}\n{}",
                behind.len(),
                &behind[..behind.len().min(10)],
                detail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// mirror UID → (member, state, epoch), from a coordination database.
pub async fn assignments(pool: &PgPool) -> HashMap<String, (String, String, i64)> {
    sqlx::query_as::<_, (String, String, String, i64)>(
        "SELECT mirror_uid, member, state, epoch FROM assignments",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
    .into_iter()
    .map(|(u, m, s, e)| (u, (m, s, e)))
    .collect()
}

/// Waits until every mirror in `uids` is actively owned by one of `live`,
/// nothing is draining, and no member is above the cap (a balanced state);
/// returns the owners.
pub async fn settled(
    pool: &PgPool,
    uids: &[String],
    live: &[&str],
    timeout: Duration,
) -> HashMap<String, String> {
    let cap = (1.05 * uids.len() as f64 / live.len() as f64).ceil() as usize;
    eventually(
        &format!("assignments settled on {live:?}"),
        timeout,
        || async {
            let a = assignments(pool).await;
            let ok = uids.len() == a.len()
                && uids.iter().all(|u| {
                    a.get(u)
                        .is_some_and(|(m, st, _)| st == "active" && live.contains(&m.as_str()))
                });
            let owners: HashMap<String, String> =
                a.into_iter().map(|(u, (m, _, _))| (u, m)).collect();
            (ok && loads(&owners).values().all(|l| *l <= cap)).then_some(owners)
        },
    )
    .await
}

/// mirror UID → [(member, owned from, owned until)] from assignment_history.
/// A member owns a mirror from the row that gives it to them (new,
/// failover, handover) until the row that gives it to someone else
/// (handover, failover); while draining it still owns it.
pub async fn ownership_intervals(
    pool: &PgPool,
) -> HashMap<String, Vec<(String, f64, Option<f64>)>> {
    let rows: Vec<(String, String, String, f64)> = sqlx::query_as(
        "SELECT mirror_uid, member, reason, EXTRACT(EPOCH FROM recorded_at)::float8 FROM assignment_history ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut spans: HashMap<String, Vec<(String, f64, Option<f64>)>> = HashMap::new();
    for (uid, member, reason, at) in rows {
        if reason == "drain" {
            continue;
        }
        let list = spans.entry(uid).or_default();
        if let Some(last) = list.last_mut() {
            last.2 = Some(at);
        }
        list.push((member, at, None));
    }
    spans
}

/// What `assert_writes_within_ownership` checks.
pub struct Writes<'a> {
    /// Mirror `m{i:04}` has UID `uids[i]`.
    pub uids: &'a [String],
    /// Where its replicas are.
    pub targets: &'a [&'a str],
    /// Where the mirrors are (their status writes count too).
    pub home: &'a str,
    /// Only ownership that began after this time (seconds since the epoch)
    /// counts: a member that came back must own the mirror anew.
    pub owned_since: Option<f64>,
}

/// Asserts that every write a member (its user agent `configmirror/<v>
/// member/<name>`) sent to the replicas or the status of mirror `m{i:04}`,
/// whatever its answer, happened while that member owned the mirror by the
/// assignment history's times: received after the ownership began,
/// completed before it ended. Returns how many writes it checked.
pub async fn assert_writes_within_ownership(
    events: &[AuditEvent],
    pool: &PgPool,
    w: &Writes<'_>,
) -> usize {
    let intervals = ownership_intervals(pool).await;
    let names: HashMap<String, &String> = w
        .uids
        .iter()
        .enumerate()
        .map(|(i, uid)| (format!("m{i:04}"), uid))
        .collect();
    let mut checked = 0;
    for e in events.iter().filter(|e| {
        let on = |resource: &str, namespaces: &[&str]| {
            e.object_ref.resource == resource
                && namespaces.contains(&e.object_ref.namespace.as_str())
        };
        e.is_write() && (on("configmaps", w.targets) || on("configmirrors", &[w.home]))
    }) {
        let Some(member) = e.member() else { continue };
        let Some(uid) = names.get(&e.object_ref.name) else {
            continue;
        };
        let sent = e
            .request_received_timestamp
            .expect("audit events carry a time");
        let done = e.stage_timestamp.expect("audit events carry a time");
        let owned = intervals.get(*uid).is_some_and(|spans| {
            spans.iter().any(|(who, from, to)| {
                who == member
                    && *from <= sent
                    && w.owned_since.is_none_or(|t| *from > t)
                    && to.is_none_or(|t| done <= t)
            })
        });
        assert!(
            owned,
            "{member} wrote {} {}/{} (sent {sent}, done {done}, answer {}) without owning it: {:?}",
            e.object_ref.resource,
            e.object_ref.namespace,
            e.object_ref.name,
            e.response_status.code,
            intervals.get(*uid)
        );
        checked += 1;
    }
    checked
}

pub fn loads(owners: &HashMap<String, String>) -> BTreeMap<String, usize> {
    let mut l = BTreeMap::new();
    for m in owners.values() {
        *l.entry(m.clone()).or_default() += 1;
    }
    l
}
