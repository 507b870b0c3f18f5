//! The flags of `configmirror run`. Names, defaults and environment
//! variables are an interface (DESIGN.md, "Interfaces"): change none.

use std::time::Duration;

use clap::Args;

use super::{DatabaseArgs, parse_duration};
use crate::api::keys::{DEFAULT_EXCLUDED_NAMESPACES, DEFAULT_PROTECTED_NAMESPACES};
use crate::telemetry::LogFormat;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kube: super::KubeconfigArgs,

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

    /// Namespaces never a source or a target, listed or selected (the
    /// operator's own is added); a mirror naming one is Ready=False, reason Forbidden.
    #[arg(long, env = "CONFIGMIRROR_PROTECTED_NAMESPACES", value_delimiter = ',',
          default_values_t = DEFAULT_PROTECTED_NAMESPACES.iter().map(|s| s.to_string()))]
    pub protected_namespaces: Vec<String>,

    /// Lets mirrors list protected namespaces as source or target (selectors
    /// still skip --excluded-namespaces).
    #[arg(long, env = "CONFIGMIRROR_ALLOW_PROTECTED_NAMESPACES")]
    pub allow_protected_namespaces: bool,

    /// A source namespace must opt in: its annotation
    /// mirror.configmirror.io/allow-mirrors-from lists the namespaces (or `*`)
    /// whose mirrors may read it. A mirror reading its own namespace needs none.
    #[arg(long, env = "CONFIGMIRROR_REQUIRE_SOURCE_OPT_IN")]
    pub require_source_opt_in: bool,

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

    /// Log lines as JSON (one object per line, with span fields) or as
    /// human-readable text.
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

    /// Comma-separated CIDRs, IP addresses and host names that a mirror's
    /// own database Secret (database.secretRef) may point at; a host outside
    /// them is refused with no connection attempt (reason HostNotAllowed).
    /// Names are compared as written, never resolved. Empty: any host. The
    /// operator's own database (--database-url/--database-secret) is not limited.
    #[arg(
        long,
        env = "CONFIGMIRROR_DATABASE_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_parser = allowed_host
    )]
    pub database_allowed_hosts: Vec<String>,

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

/// One `--database-allowed-hosts` entry, checked as the flags are parsed.
fn allowed_host(entry: &str) -> Result<String, String> {
    crate::store::hosts::AllowedHosts::parse(&[entry])
        .map(|_| entry.to_string())
        .map_err(|e| e.to_string())
}
