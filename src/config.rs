//! The command line. Every flag of `run` is also an environment variable:
//! the Interfaces table's names where it fixes them, `CONFIGMIRROR_<FLAG>`
//! otherwise.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::keys::DEFAULT_EXCLUDED_NAMESPACES;
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

    /// ConfigMirrors reconciled at once.
    #[arg(long, env = "CONFIGMIRROR_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Replica writes in flight at once, over all mirrors.
    #[arg(long, env = "CONFIGMIRROR_WRITE_CONCURRENCY", default_value_t = 32)]
    pub write_concurrency: usize,

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
}

impl RunArgs {
    /// The member name, resolved once per process.
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
    fn generated_member_names_are_unique_per_process() {
        let a = parse(&[]);
        assert_ne!(a.member(), a.member());
    }
}
