//! A sharded fleet for one run: N operator processes with `--sharding`,
//! scoped to the run's home namespace, sharing a database of their own
//! (created for the run, dropped after), and the signals chaos sends them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::cli::Cli;
use crate::cluster::Run;
use crate::operator::{http_get, metric, rss_of, wait_for_addresses};

struct Process {
    child: Child,
    metrics: String,
    health: String,
}

pub struct Members {
    bin: PathBuf,
    args: Vec<String>,
    out: PathBuf,
    run_id: String,
    database: String,
    admin: PgConnectOptions,
    pub pool: PgPool,
    running: BTreeMap<String, Process>,
    /// Processes started so far (names each log uniquely across restarts).
    started: usize,
    /// Processes SIGSTOPped and not yet continued.
    stopped: Vec<String>,
}

impl Members {
    /// A database for the run's coordination and rows; no process yet.
    pub async fn new(cli: &Cli, run: &Run) -> anyhow::Result<Self> {
        let bin = cli
            .spawn_operator
            .clone()
            .context("sharded scenarios start their own members: pass --spawn-operator <configmirror binary>")?;
        let url = cli.database_url.as_ref().context(
            "sharded scenarios need a PostgreSQL server: pass --database-url (or DATABASE_URL)",
        )?;
        let admin: PgConnectOptions = url.parse().context("--database-url")?;
        let database = format!("loadtest_{}", run.id);
        let admin_pool = PgPool::connect_with(admin.clone())
            .await
            .context("connecting to --database-url")?;
        // The name is ours: "loadtest_" and six hex digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&admin_pool)
            .await
            .with_context(|| format!("creating database {database}"))?;
        admin_pool.close().await;
        let options = admin.clone().database(&database);
        let pool = PgPool::connect_with(options.clone()).await?;
        run.create_namespaces(&[run.home()]).await?;
        std::fs::create_dir_all(&cli.out)?;
        let mut args = vec![
            "run".to_string(),
            "--sharding".into(),
            format!("--database-url={}", database_url(url, &database)),
            format!("--watch-namespace={}", run.home()),
            format!("--namespace={}", run.home()),
            format!("--coordinator-lease=coordinator-{}", run.id),
            "--metrics-bind-address=127.0.0.1:0".into(),
            "--health-probe-bind-address=127.0.0.1:0".into(),
            "--log-format=json".into(),
        ];
        args.extend(cli.operator_args.iter().cloned());
        Ok(Self {
            bin,
            args,
            out: cli.out.clone(),
            run_id: run.id.clone(),
            database,
            admin,
            pool,
            running: BTreeMap::new(),
            started: 0,
            stopped: Vec::new(),
        })
    }

    /// Starts member `name` (again, after a crash or a leave: same name).
    pub fn start(&mut self, name: &str) -> anyhow::Result<()> {
        self.started += 1;
        let log = self.out.join(format!(
            "member-{}-{name}-{}.log",
            self.run_id, self.started
        ));
        let child = Command::new(&self.bin)
            .args(&self.args)
            .arg(format!("--member-name={name}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let (metrics, health) = wait_for_addresses(&log, Duration::from_secs(30))?;
        self.running.insert(
            name.to_string(),
            Process {
                child,
                metrics,
                health,
            },
        );
        Ok(())
    }

    /// Waits until every running member answers /readyz with 200.
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for (name, p) in &self.running {
            while http_get(&format!("http://{}/readyz", p.health))
                .await
                .map(|(c, _)| c)
                != Some(200)
            {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "member {name} did not become ready"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.running.get(name).map(|p| p.child.id())
    }

    fn signal(&self, name: &str, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .with_context(|| format!("no member {name}"))?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// kill -9: the process is gone without a word.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "KILL")?;
        if let Some(mut p) = self.running.remove(name) {
            let _ = p.child.wait();
        }
        Ok(())
    }

    /// SIGTERM: finishes in-flight work, says it leaves, exits.
    pub async fn terminate(&mut self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "TERM")?;
        let mut p = self.running.remove(name).context("no such member")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while p.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = p.child.kill();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub fn pause(&mut self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "STOP")?;
        self.stopped.push(name.to_string());
        Ok(())
    }

    pub fn resume(&mut self, name: &str) -> anyhow::Result<()> {
        self.stopped.retain(|n| n != name);
        self.signal(name, "CONT")
    }

    pub async fn metrics(&self, name: &str) -> Option<String> {
        let p = self.running.get(name)?;
        http_get(&format!("http://{}/metrics", p.metrics))
            .await
            .map(|(_, body)| body)
    }

    pub async fn metric(&self, name: &str, series: &str) -> Option<f64> {
        metric(&self.metrics(name).await?, series)
    }

    /// Resident memory of a member, from /proc.
    pub fn rss(&self, name: &str) -> Option<u64> {
        rss_of(self.pid(name)?)
    }

    /// Member → active mirrors it owns, from the assignments table.
    pub async fn loads(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT member, count(*) FROM assignments GROUP BY member")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// mirror UID → member, for the mirrors assigned and not draining.
    pub async fn owners(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT mirror_uid, member FROM assignments WHERE state = 'active'")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Assignment changes by reason since history row `after`.
    pub async fn moves_since(&self, after: i64) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT reason, count(*) FROM assignment_history WHERE id > $1 GROUP BY reason",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn history_mark(&self) -> anyhow::Result<i64> {
        let (id,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM assignment_history")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Seconds from each drain to its handover (live member to live member).
    pub async fn handover_seconds(&self) -> anyhow::Result<Vec<f64>> {
        let rows: Vec<(f64,)> = sqlx::query_as(
            "SELECT EXTRACT(EPOCH FROM h.recorded_at - d.recorded_at)::float8
             FROM assignment_history h
             JOIN LATERAL (SELECT recorded_at FROM assignment_history d
                           WHERE d.mirror_uid = h.mirror_uid AND d.id < h.id AND d.reason = 'drain'
                           ORDER BY d.id DESC LIMIT 1) d ON true
             WHERE h.reason = 'handover'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    /// The member holding the coordinator epoch.
    pub async fn coordinator(&self) -> anyhow::Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT holder FROM coordinator_epochs WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(h,)| h))
    }

    /// Stops every member (SIGCONT first for paused ones) and drops the
    /// run's database unless kept.
    pub async fn shutdown(mut self, keep: bool) {
        for name in std::mem::take(&mut self.stopped) {
            let _ = self.signal(&name, "CONT");
        }
        for name in self.names() {
            let _ = self.terminate(&name).await;
        }
        self.pool.close().await;
        if !keep && let Ok(admin) = PgPool::connect_with(self.admin.clone()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// `url` with its database replaced by `database`.
fn database_url(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            database_url("postgres://u:p@h:5/db?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h:5", "x"), "postgres://h:5/x");
    }
}
