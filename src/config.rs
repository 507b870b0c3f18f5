//! The command line. Every flag of `run` is also an environment variable:
//! the Interfaces table's names where it fixes them, `CONFIGMIRROR_<FLAG>`
//! otherwise.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use std::str::FromStr;

use crate::api::keys::DEFAULT_EXCLUDED_NAMESPACES;
use crate::store::credentials::parse_secret_ref;
use crate::store::databases::DefaultDatabase;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "configmirror",
    version,
    about = "Replicates ConfigMaps across namespaces and records them in PostgreSQL"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the ConfigMirror CRD as YAML.
    Crdgen,
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Check a running release (what `helm test` runs): every operator pod
    /// is ready and every ConfigMirror names its member.
    Check(CheckArgs),
    /// Before a helm upgrade or rollback: when the release changes mode
    /// (leader election and sharding), stop the old mode's pods first.
    PrepareUpgrade(PrepareUpgradeArgs),
}

/// The operator's own database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// The operator's database (default persistence for mirrors without a secretRef).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// `<namespace>/<name>` of a Secret with the operator's database credentials (same keys as a secretRef).
    #[arg(
        long,
        env = "CONFIGMIRROR_DATABASE_SECRET",
        conflicts_with = "database_url"
    )]
    pub database_secret: Option<String>,
}

impl DatabaseArgs {
    pub fn default_database(&self) -> Result<DefaultDatabase, crate::store::Error> {
        if let Some(url) = &self.database_url {
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(|e| crate::store::Error::SecretInvalid(format!("--database-url: {e}")))?
                .application_name("configmirror");
            return Ok(DefaultDatabase::Url(Box::new(options)));
        }
        if let Some(secret) = &self.database_secret {
            let (namespace, name) = parse_secret_ref(secret)?;
            return Ok(DefaultDatabase::Secret { namespace, name });
        }
        Ok(DefaultDatabase::None)
    }
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Needed with --database-secret.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Path to a kubeconfig; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The namespace of the operator's pods.
    #[arg(long, env = "POD_NAMESPACE", default_value = "configmirror-system")]
    pub namespace: String,

    /// Label selector of the operator's pods (e.g. `app.kubernetes.io/instance=cm,app.kubernetes.io/name=configmirror-operator`).
    #[arg(long)]
    pub selector: String,

    /// The port of the pods' /readyz (their --health-probe-bind-address).
    #[arg(long, default_value_t = 8081)]
    pub health_port: u16,

    /// Comma-separated namespaces whose ConfigMirrors are checked; all when empty.
    #[arg(long, value_delimiter = ',')]
    pub watch_namespace: Vec<String>,

    /// The operator runs with --sharding: each mirror's status.shard.member must name one of the pods.
    #[arg(long)]
    pub sharding: bool,

    /// Failing checks are retried for this long before the check fails.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,

    /// Seconds between attempts.
    #[arg(long, default_value_t = 3)]
    pub interval_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PrepareUpgradeArgs {
    /// Path to a kubeconfig; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The namespace of the operator's StatefulSet.
    #[arg(long, env = "POD_NAMESPACE", default_value = "configmirror-system")]
    pub namespace: String,

    /// The operator's StatefulSet.
    #[arg(long)]
    pub statefulset: String,

    /// The mode the upgrade brings.
    #[arg(long, value_enum)]
    pub mode: crate::upgrade::Mode,

    /// How long the old mode's pods may take to go; past it the StatefulSet
    /// is scaled back and the command fails (so does the upgrade).
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Path to a kubeconfig; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Where /metrics is served (`:8080`, `127.0.0.1:0` for any free port).
    #[arg(
        long,
        env = "CONFIGMIRROR_METRICS_BIND_ADDRESS",
        default_value = ":8080"
    )]
    pub metrics_bind_address: String,

    /// Where /healthz and /readyz are served.
    #[arg(
        long,
        env = "CONFIGMIRROR_HEALTH_PROBE_BIND_ADDRESS",
        default_value = ":8081"
    )]
    pub health_probe_bind_address: String,

    /// Run several replicas with one active, elected through a Lease in --namespace.
    #[arg(long, env = "CONFIGMIRROR_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "CONFIGMIRROR_LEADER_ELECTION_ID",
        default_value = "configmirror-operator"
    )]
    pub leader_election_id: String,

    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(
        long,
        env = "CONFIGMIRROR_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub lease_duration_seconds: u64,

    /// The operator's own namespace (its Lease lives there; never a selector target).
    #[arg(long, env = "POD_NAMESPACE", default_value = "configmirror-system")]
    pub namespace: String,

    /// This process's name as a member (the pod name); default: hostname plus a random suffix.
    #[arg(long, env = "POD_NAME")]
    pub member_name: Option<String>,

    /// Comma-separated namespaces whose ConfigMirrors this process handles; all when empty.
    #[arg(long, env = "CONFIGMIRROR_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,

    /// Adopt ConfigMaps labelled by the Go reference operator for the same mirror instead of reporting conflicts.
    #[arg(long, env = "CONFIGMIRROR_ADOPT_REFERENCE_REPLICAS")]
    pub adopt_reference_replicas: bool,

    /// Namespaces a targetNamespaceSelector never reaches (the operator's own is added).
    #[arg(long, env = "CONFIGMIRROR_EXCLUDED_NAMESPACES", value_delimiter = ',',
          default_values_t = DEFAULT_EXCLUDED_NAMESPACES.iter().map(|s| s.to_string()))]
    pub excluded_namespaces: Vec<String>,

    /// ConfigMirrors reading, planning or writing status at once (a mirror
    /// waiting for its replica writes leaves its slot to others).
    #[arg(long, env = "CONFIGMIRROR_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Replica writes in flight at once, over all mirrors; a freed one goes
    /// to the waiting mirror holding the fewest.
    #[arg(long, env = "CONFIGMIRROR_WRITE_CONCURRENCY", default_value_t = 32)]
    pub write_concurrency: usize,

    /// /healthz fails when reconciles are queued or in flight and none has
    /// finished, and no replica was written, for this long (the kubelet then
    /// restarts the pod).
    #[arg(long, env = "CONFIGMIRROR_STUCK_AFTER_SECONDS", default_value_t = 300)]
    pub stuck_after_seconds: u64,

    /// Client-side limit on Kubernetes API requests per second (0: none; the API server's fairness applies).
    #[arg(long, env = "CONFIGMIRROR_KUBE_API_QPS", default_value_t = 0.0)]
    pub kube_api_qps: f64,

    /// Requests allowed in a burst above --kube-api-qps.
    #[arg(long, env = "CONFIGMIRROR_KUBE_API_BURST", default_value_t = 100)]
    pub kube_api_burst: u32,

    /// Seconds between safety-net reconciles of an unchanged mirror (they write nothing).
    #[arg(long, env = "CONFIGMIRROR_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,

    #[arg(
        long,
        env = "CONFIGMIRROR_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Comma-separated namespaces whose Secrets any mirror may name in
    /// database.secretRef (by default only the mirror's own namespace).
    #[arg(
        long,
        env = "CONFIGMIRROR_DATABASE_SECRET_NAMESPACES",
        value_delimiter = ','
    )]
    pub database_secret_namespaces: Vec<String>,

    /// Connections per database pool (default: --persistence-per-database + 1).
    #[arg(long, env = "CONFIGMIRROR_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,

    /// Every database statement's deadline (a silent database costs this,
    /// never a stuck worker); connecting may take up to 5 s of it, a
    /// migration run three times it.
    #[arg(
        long,
        env = "CONFIGMIRROR_DATABASE_TIMEOUT_SECONDS",
        default_value_t = 10.0
    )]
    pub database_timeout_seconds: f64,

    /// Persistence jobs running at once, over all databases (apart from
    /// replication's --concurrency).
    #[arg(
        long,
        env = "CONFIGMIRROR_PERSISTENCE_CONCURRENCY",
        default_value_t = 8
    )]
    pub persistence_concurrency: usize,

    /// Persistence jobs running at once on one database: a slow or silent
    /// database holds no more than this.
    #[arg(
        long,
        env = "CONFIGMIRROR_PERSISTENCE_PER_DATABASE",
        default_value_t = 2
    )]
    pub persistence_per_database: usize,

    /// The pool of a mirror's database (secretRef) unused this long is closed.
    #[arg(
        long,
        env = "CONFIGMIRROR_DATABASE_IDLE_CLOSE_SECONDS",
        default_value_t = 600
    )]
    pub database_idle_close_seconds: u64,

    /// A deleted mirror's rows in the operator's own database are retried
    /// this long after the deletion started; then they are recorded as
    /// orphaned and the mirror goes. (Rows in a mirror's own secretRef
    /// database are deleted best effort: once.)
    #[arg(
        long,
        env = "CONFIGMIRROR_ORPHAN_ROWS_AFTER_SECONDS",
        default_value_t = 300
    )]
    pub orphan_rows_after_seconds: u64,

    /// Revisions older than this are pruned (e.g. `90d`, `12h`; default: kept).
    #[arg(long, env = "CONFIGMIRROR_REVISION_MAX_AGE", value_parser = parse_duration)]
    pub revision_max_age: Option<Duration>,

    /// Only the newest N revisions of each ConfigMap are kept (default: all).
    #[arg(long, env = "CONFIGMIRROR_REVISION_MAX_PER_CONFIGMAP")]
    pub revision_max_per_configmap: Option<u32>,

    /// Split the ConfigMirrors among the replicas (needs the operator's database).
    #[arg(long, env = "CONFIGMIRROR_SHARDING", conflicts_with = "leader_elect")]
    pub sharding: bool,

    /// Sharding: seconds between heartbeats.
    #[arg(long, env = "CONFIGMIRROR_HEARTBEAT_SECONDS", default_value_t = 1.0)]
    pub heartbeat_seconds: f64,

    /// Sharding: a member whose heartbeat is older than this is not live.
    #[arg(long, env = "CONFIGMIRROR_MEMBER_TTL_SECONDS", default_value_t = 4.0)]
    pub member_ttl_seconds: f64,

    /// Sharding: a member fences itself this long before its TTL runs out.
    #[arg(long, env = "CONFIGMIRROR_FENCE_MARGIN_SECONDS", default_value_t = 1.0)]
    pub fence_margin_seconds: f64,

    /// Sharding: a silent member's mirrors wait this long after its TTL before they move.
    #[arg(long, env = "CONFIGMIRROR_MEMBER_GRACE_SECONDS", default_value_t = 2.0)]
    pub member_grace_seconds: f64,

    /// Sharding: a member that left (SIGTERM) holds its mirrors this long (a rolling restart must come back within it).
    #[arg(long, env = "CONFIGMIRROR_LEAVE_GRACE_SECONDS", default_value_t = 20.0)]
    pub leave_grace_seconds: f64,

    /// Sharding: assignments are re-read this often without a notification.
    #[arg(
        long,
        env = "CONFIGMIRROR_ASSIGNMENT_POLL_SECONDS",
        default_value_t = 5.0
    )]
    pub assignment_poll_seconds: f64,

    /// Sharding: the coordinator's Lease (in --namespace).
    #[arg(
        long,
        env = "CONFIGMIRROR_COORDINATOR_LEASE",
        default_value = "configmirror-coordinator"
    )]
    pub coordinator_lease: String,

    /// Sharding: assignment history older than this, and members silent
    /// this long that own nothing, are pruned (e.g. `7d`, `12h`).
    #[arg(
        long,
        env = "CONFIGMIRROR_COORDINATION_RETENTION",
        value_parser = parse_duration,
        default_value = "7d"
    )]
    pub coordination_retention: Duration,

    /// Sharding: seconds the coordinator Lease stays valid without renewal.
    #[arg(
        long,
        env = "CONFIGMIRROR_COORDINATOR_LEASE_SECONDS",
        default_value_t = 4
    )]
    pub coordinator_lease_seconds: u64,

    /// Seconds between revision pruning passes.
    #[arg(
        long,
        env = "CONFIGMIRROR_REVISION_PRUNE_INTERVAL_SECONDS",
        default_value_t = 600
    )]
    pub revision_prune_interval_seconds: u64,
}

/// `45s`, `30m`, `12h`, `90d`, or plain seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?}: expected a number with s, m, h or d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!(
                "{value:?}: unknown unit {unit:?} (use s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

impl RunArgs {
    /// The member name: `--member-name`, else the host name with a random
    /// suffix, drawn anew on every call (two processes on one host never
    /// share a name). `run` calls it once and passes the name along.
    pub fn member(&self) -> String {
        self.member_name
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME")
                    .ok()
                    .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "configmirror".into());
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                format!("{host}-{}", &suffix[..6])
            })
    }

    pub fn excluded(&self) -> Vec<String> {
        let mut all = self.excluded_namespaces.clone();
        all.push(self.namespace.clone());
        all
    }

    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(1))
    }

    pub fn stuck_after(&self) -> Duration {
        Duration::from_secs(self.stuck_after_seconds.max(1))
    }

    pub fn timing(&self) -> crate::shard::Timing {
        let s = |v: f64| Duration::from_secs_f64(v.max(0.05));
        crate::shard::Timing {
            heartbeat: s(self.heartbeat_seconds),
            ttl: s(self.member_ttl_seconds),
            margin: s(self.fence_margin_seconds),
            grace: s(self.member_grace_seconds),
            leave_grace: s(self.leave_grace_seconds),
            poll: s(self.assignment_poll_seconds),
            retention: self.coordination_retention,
            ..Default::default()
        }
    }

    pub fn deadlines(&self) -> crate::store::Deadlines {
        crate::store::Deadlines::from_statement(Duration::from_secs_f64(
            self.database_timeout_seconds.max(0.1),
        ))
    }

    pub fn persistence_limits(&self) -> crate::persistence::Limits {
        crate::persistence::Limits {
            concurrency: self.persistence_concurrency.max(1),
            per_database: self.persistence_per_database.max(1),
        }
    }

    pub fn retention(&self) -> crate::store::persist::Retention {
        crate::store::persist::Retention {
            max_age: self.revision_max_age,
            max_per_configmap: self.revision_max_per_configmap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut all = vec!["configmirror", "run"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Run(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_reference() {
        let a = parse(&[]);
        assert_eq!(a.metrics_bind_address, ":8080");
        assert_eq!(a.health_probe_bind_address, ":8081");
        assert!(!a.leader_elect);
        assert!(a.excluded().contains(&"kube-system".to_string()));
        assert!(a.excluded().contains(&a.namespace));
    }

    #[test]
    fn flags_parse() {
        let a = parse(&[
            "--watch-namespace",
            "a,b",
            "--leader-elect",
            "--member-name",
            "pod-1",
            "--kube-api-qps",
            "50",
            "--log-format",
            "text",
        ]);
        assert_eq!(a.watch_namespace, ["a", "b"]);
        assert!(a.leader_elect);
        assert_eq!(a.member(), "pod-1");
        assert_eq!(a.kube_api_qps, 50.0);
        assert_eq!(a.log_format, LogFormat::Text);
    }

    #[test]
    fn stuck_after_defaults_to_five_minutes_and_is_never_zero() {
        assert_eq!(parse(&[]).stuck_after(), Duration::from_secs(300));
        let a = parse(&["--stuck-after-seconds", "0"]);
        assert_eq!(a.stuck_after(), Duration::from_secs(1));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn database_flags_parse() {
        let a = parse(&[
            "--database-secret",
            "ns/db",
            "--database-secret-namespaces",
            "shared,platform",
        ]);
        assert!(matches!(
            a.database.default_database(),
            Ok(DefaultDatabase::Secret { .. })
        ));
        assert_eq!(a.database_secret_namespaces, ["shared", "platform"]);
        let bad = parse(&["--database-secret", "no-slash"]);
        assert!(bad.database.default_database().is_err());
    }

    #[test]
    fn check_flags_parse() {
        let all = [
            "configmirror",
            "check",
            "--namespace",
            "cm",
            "--selector",
            "app=x",
            "--watch-namespace",
            "a,b",
            "--sharding",
            "--timeout-seconds",
            "30",
        ];
        let Command::Check(c) = Cli::try_parse_from(all).unwrap().command else {
            panic!("not check")
        };
        assert_eq!(c.namespace, "cm");
        assert_eq!(c.selector, "app=x");
        assert_eq!(c.health_port, 8081);
        assert_eq!(c.watch_namespace, ["a", "b"]);
        assert!(c.sharding);
        assert_eq!(c.timeout_seconds, 30);
        assert!(Cli::try_parse_from(["configmirror", "check"]).is_err());
    }

    #[test]
    fn generated_member_names_are_unique_per_process() {
        let a = parse(&[]);
        assert_ne!(a.member(), a.member());
    }
}
