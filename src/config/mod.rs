//! The command line. Every flag of `run` is also an environment variable:
//! the Interfaces table's names where it fixes them, `CONFIGMIRROR_<FLAG>`
//! otherwise.
//!
//! - `run_args`: the flags of `run` (an interface: DESIGN.md's table);
//! - `settings`: what `run` derives from them (timing, limits, deadlines).

mod run_args;
mod settings;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub(crate) use run_args::RunArgs;

use crate::store::credentials::parse_secret_ref;
use crate::store::databases::DefaultDatabase;

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

/// Which cluster the Kubernetes client talks to, selected as kubectl
/// selects it (resolved in `kubeclient/kubeconfig.rs`).
#[derive(Debug, Clone, Default, Args)]
pub struct KubeconfigArgs {
    /// Kubeconfig file, or a list separated like PATH (`a:b`) merged as
    /// kubectl merges KUBECONFIG: the first file to set a value wins,
    /// missing files are skipped. Absent: ~/.kube/config, else the pod's
    /// service account (in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<OsString>,

    /// The kubeconfig context to use instead of its current-context.
    #[arg(long, env = "CONFIGMIRROR_CONTEXT")]
    pub context: Option<String>,
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
    pub(crate) fn default_database(&self) -> Result<DefaultDatabase, crate::store::Error> {
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

    // Used with --database-secret only: the Secret is read from the cluster.
    #[command(flatten)]
    pub kube: KubeconfigArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub kube: KubeconfigArgs,

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
    #[command(flatten)]
    pub kube: KubeconfigArgs,

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

/// `45s`, `30m`, `12h`, `90d`, or plain seconds.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
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
