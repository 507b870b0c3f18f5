//! ConfigMirror: replicates ConfigMaps across namespaces.

/// The crate version, stamped into the user agent and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
