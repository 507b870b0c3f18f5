//! Logs, metrics and the HTTP endpoints that expose health and metrics.

pub(crate) mod liveness;
pub mod names;
pub(crate) mod server;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
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
pub(crate) fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(json_layer(std::io::stderr)).try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// One JSON object a line: the event's fields at the top level (where log
/// queries and the tests look for them), the innermost span under `span`
/// and every enclosing one, outermost first, under `spans`, so a line says
/// which task wrote it (a member's heartbeats, a coordinator round, a
/// handover) without repeating those fields in every event.
fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

/// Installs the Prometheus recorder with explicit histogram buckets and
/// describes every series; returns the handle /metrics renders.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, Error> {
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
pub(crate) fn parse_bind_address(address: &str) -> Result<std::net::SocketAddr, Error> {
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

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_their_spans() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let task = tracing::info_span!("assignments", member = "m-0");
            let _task = task.enter();
            let handover = tracing::info_span!("handover", mirror = "uid-1", epoch = 7);
            let _handover = handover.enter();
            tracing::info!(seconds = 0.5, "handed over");
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["message"], "handed over", "{line}");
        assert_eq!(line["seconds"], 0.5, "event fields stay at the top level");
        assert_eq!(line["span"]["name"], "handover");
        assert_eq!(line["span"]["mirror"], "uid-1");
        assert_eq!(line["span"]["epoch"], 7);
        assert_eq!(line["spans"][0]["name"], "assignments");
        assert_eq!(line["spans"][0]["member"], "m-0");
        assert_eq!(line["spans"][1]["name"], "handover");
    }

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
