//! Logs, metrics and the HTTP endpoints that expose health and metrics.

pub mod liveness;
pub mod names;
pub mod server;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("installing the metrics recorder: {0}")]
    Recorder(#[from] metrics_exporter_prometheus::BuildError),
    #[error("binding {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("invalid bind address {0:?}: expected host:port or :port")]
    Address(String),
}

/// Logs to stderr as JSON (or text), level from RUST_LOG (default info).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Installs the Prometheus recorder with explicit histogram buckets and
/// describes every series; returns the handle /metrics renders.
pub fn install_recorder() -> Result<PrometheusHandle, Error> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            names::DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::REPLICATION_LAG.into()),
            names::LAG_BUCKETS,
        )?;
    let handle = builder.install_recorder()?;
    names::describe();
    names::initialize();
    Ok(handle)
}

/// Parses Go-style bind addresses: `:8080` means every interface.
pub fn parse_bind_address(address: &str) -> Result<std::net::SocketAddr, Error> {
    let full = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    };
    full.parse()
        .map_err(|_| Error::Address(address.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_addresses_parse() {
        assert_eq!(
            parse_bind_address(":8080").unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(parse_bind_address("127.0.0.1:0").unwrap().port(), 0);
        assert!(parse_bind_address("nonsense").is_err());
    }
}
