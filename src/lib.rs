//! ConfigMirror: replicates ConfigMaps across namespaces.
//!
//! Modules follow the design: `api` (the CRD), `plan` (pure planning),
//! `reconcile` (the controller), `watches` (narrow caches), `scope` (which
//! mirrors this process owns), `shard` and `leader` (the mechanics of
//! sharding and of the leader Lease), `mode` (the process modes, composed
//! from them), `run` (the `run` command: telemetry, then a mode),
//! `telemetry`, `config`, `check` (what `helm test` runs) and `upgrade`
//! (what runs before `helm upgrade`).

// Functions stay short enough to read in one sitting (threshold in
// clippy.toml); a longer one says why where it allows this.
#![warn(clippy::too_many_lines)]
// `pub` only for what other crates use (the binary, tests, benches, the
// load generator and the generator); everything else is `pub(crate)`.
#![warn(unreachable_pub)]

pub mod api;
pub mod check;
pub mod config;
pub mod kubeclient;
pub(crate) mod leader;
pub(crate) mod mode;
pub(crate) mod persistence;
pub mod plan;
pub(crate) mod reconcile;
pub mod run;
pub(crate) mod scope;
pub mod shard;
pub mod store;
pub mod telemetry;
pub mod upgrade;
pub(crate) mod watches;

/// The crate version, stamped into the user agent and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this binary was built from (build.rs), or "unknown".
pub const COMMIT: &str = env!("CONFIGMIRROR_COMMIT");
