//! Logs, metrics and the HTTP endpoints that expose health and metrics.

pub mod initial;
pub(crate) mod liveness;
pub mod names;
#[cfg(test)]
mod names_tests;
pub(crate) mod server;

use std::time::Duration;

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

/// How often histogram samples are folded into their buckets. Between
/// scrapes they otherwise pile up as raw samples, one f64 each.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder with explicit histogram buckets,
/// describes every series, creates those known from the start, and starts
/// the recorder's upkeep (`install_recorder`, unlike the exporter's own
/// listener, leaves that to the caller); returns the handle /metrics renders.
/// Needs a Tokio runtime.
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
    initial::initialize();
    tokio::spawn(upkeep(handle.clone(), UPKEEP_EVERY));
    Ok(handle)
}

/// What upkeep needs of the recorder: the seam the tests count through.
pub(crate) trait Upkeep {
    fn run_upkeep(&self);
}

impl Upkeep for PrometheusHandle {
    fn run_upkeep(&self) {
        PrometheusHandle::run_upkeep(self);
    }
}

/// Runs the recorder's upkeep every `period`, for as long as the process runs.
async fn upkeep(recorder: impl Upkeep, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        recorder.run_upkeep();
    }
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

    #[derive(Clone, Default)]
    struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Upkeep for Counted {
        fn run_upkeep(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn upkeep_runs_every_period() {
        let counted = Counted::default();
        let task = tokio::spawn(upkeep(counted.clone(), UPKEEP_EVERY));
        tokio::time::sleep(UPKEEP_EVERY * 3 + UPKEEP_EVERY / 2).await;
        task.abort();
        // The first tick is immediate, then one each period.
        assert_eq!(counted.0.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    /// The recorder as `run` installs it (the only test that installs the
    /// global one): histograms and build_info are exported before any event.
    #[tokio::test]
    async fn the_installed_recorder_exports_histograms_before_their_first_sample() {
        let handle = install_recorder().unwrap();
        let text = handle.render();
        for name in [
            names::RECONCILE_DURATION,
            names::DB_SYNC_DURATION,
            names::REPLICATION_LAG,
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{name} not exported before its first sample:\n{text}"
            );
        }
        let lag_zero = format!("{}_count 0", names::REPLICATION_LAG);
        assert!(text.contains(&lag_zero), "{lag_zero} in\n{text}");
        let build = format!(
            "{}{{version=\"{}\",commit=\"{}\"}} 1",
            names::BUILD_INFO,
            crate::VERSION,
            crate::COMMIT
        );
        assert!(text.contains(&build), "{build} in\n{text}");
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
