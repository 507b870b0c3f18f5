//! The command line: `configmirror-loadtest [global flags] <scenario> [flags]`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "configmirror-loadtest",
    version,
    about = "Measures a ConfigMirror operator against a live API server"
)]
pub struct Cli {
    /// Kubeconfig file, or a PATH-like list merged as kubectl merges KUBECONFIG.
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<std::ffi::OsString>,

    /// The API server's audit log, to count the operator's writes.
    #[arg(long, env = "CONFIGMIRROR_AUDIT_LOG", global = true)]
    pub audit_log: Option<PathBuf>,

    /// Start this operator binary for the run (scoped to the run's namespace).
    #[arg(long, global = true)]
    pub spawn_operator: Option<PathBuf>,

    /// Extra arguments for the spawned operator (repeatable), e.g. --operator-arg=--database-url=...
    #[arg(long = "operator-arg", global = true, allow_hyphen_values = true)]
    pub operator_args: Vec<String>,

    /// An operator already running: its pid (for memory and CPU) ...
    #[arg(long, global = true)]
    pub operator_pid: Option<u32>,

    /// ... or its metrics URL (process_resident_memory_bytes).
    #[arg(long, global = true)]
    pub operator_metrics: Option<String>,

    /// User-agent prefix of the operator's writes in the audit log.
    #[arg(long, global = true, default_value = "configmirror/")]
    pub operator_agent: String,

    /// Count the mirror's rows in this database after convergence.
    #[arg(long, global = true)]
    pub database_url: Option<String>,

    /// Concurrent requests for setup and for the ceiling measurement.
    #[arg(long, global = true, default_value_t = 16)]
    pub concurrency: usize,

    /// Bytes of payload in each source ConfigMap.
    #[arg(long, global = true, default_value_t = 256)]
    pub payload_bytes: usize,

    /// Where JSON and SVG reports go.
    #[arg(long, global = true, default_value = "loadtest/results")]
    pub out: PathBuf,

    /// Keep what the run created (namespaces, mirrors) instead of deleting it.
    #[arg(long, global = true)]
    pub keep: bool,

    /// Give up after this long.
    #[arg(long, global = true, default_value_t = 900)]
    pub timeout_seconds: u64,

    /// Hide progress bars (for logs and tests).
    #[arg(long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// One source ConfigMap into N target namespaces.
    Fanout(FanoutArgs),
    /// M mirrors × K sources × T targets.
    Mirrors(MirrorsArgs),
    /// A steady rate of source updates into T targets.
    Updates(UpdatesArgs),
    /// The operator's writes over a quiet period after a fan-out converged.
    Idle(IdleArgs),
    /// X ConfigMaps no mirror selects: the operator's memory before and after.
    Noise(NoiseArgs),
    /// The API server's raw create throughput with this client.
    Ceiling(CeilingArgs),
    /// Small mirrors created while a big fan-out is in flight: how long each
    /// takes to converge, and what sharing costs the fan-out.
    Fairness(FairnessArgs),
    /// Sharded members (started here from --spawn-operator, with a database
    /// of their own on --database-url's server): failover, movement,
    /// handovers and staleness while members are killed, stopped and paused.
    Chaos(ChaosArgs),
    /// Sharded members: sustained update throughput (pass e.g.
    /// --operator-arg=--kube-api-qps=50 so the members are the bottleneck).
    Scale(ScaleArgs),
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=20))]
    pub members: u32,
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub mirrors: u32,
    /// Target namespaces every mirror replicates into.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub targets: u32,
    #[arg(long, default_value_t = 90)]
    pub duration_seconds: u64,
    /// Source updates per second during the chaos.
    #[arg(long, default_value_t = 20.0)]
    pub update_rate: f64,
    /// Seconds between chaos actions (kill -9, SIGTERM, SIGSTOP in turn).
    #[arg(long, default_value_t = 15)]
    pub action_every_seconds: u64,
    /// Mirrors created one at a time on the settled fleet, for new-mirror latency.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub lone_mirrors: u32,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub members: u32,
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub mirrors: u32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub targets: u32,
    /// Rounds of updating every source once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub rounds: u32,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub targets: u32,
}

#[derive(Debug, Args)]
pub struct MirrorsArgs {
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub mirrors: u32,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub sources: u32,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub targets: u32,
}

#[derive(Debug, Args)]
pub struct UpdatesArgs {
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub targets: u32,
    /// Source updates per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 30)]
    pub duration_seconds: u64,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub targets: u32,
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct NoiseArgs {
    /// Unselected ConfigMaps to create (half in the source namespace, half elsewhere).
    #[arg(long, default_value_t = 20000, value_parser = clap::value_parser!(u32).range(0..=200000))]
    pub configmaps: u32,
    /// A fan-out run after the noise, to show replication still works.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub targets: u32,
    /// Seconds to let the operator settle before reading its memory.
    #[arg(long, default_value_t = 10)]
    pub settle_seconds: u64,
}

#[derive(Debug, Args)]
pub struct FairnessArgs {
    /// Target namespaces of the big fan-out.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub targets: u32,
    /// Big mirrors fanning out at once, each its own source into the same targets
    /// (more than --concurrency of them also tests the reconcile slots).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub fanouts: u32,
    /// Small mirrors created during the fan-out, one every --probe-interval-ms.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub probes: u32,
    /// Target namespaces of each small mirror.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub small_targets: u32,
    /// Milliseconds between two small mirrors; the first comes this long after the fan-out starts.
    #[arg(long, default_value_t = 700)]
    pub probe_interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct CeilingArgs {
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub count: u32,
}
