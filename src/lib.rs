//! ConfigMirror: replicates ConfigMaps across namespaces.
//!
//! Modules follow the design: `api` (the CRD), `plan` (pure planning),
//! `reconcile` (the controller), `watches` (narrow caches), `scope` (which
//! mirrors this process owns), `telemetry`, `config`, the run modes, `check`
//! (what `helm test` runs) and `upgrade` (what runs before `helm upgrade`).

pub mod api;
pub mod check;
pub mod config;
pub mod kubeclient;
pub mod leader;
pub mod persistence;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod scope;
pub mod shard;
pub mod store;
pub mod telemetry;
pub mod upgrade;
pub mod watches;

/// The crate version, stamped into the user agent and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
