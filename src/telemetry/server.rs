//! /metrics on one address, /healthz and /readyz on another (port 0 picks
//! a free port, logged), like controller-runtime's two listeners. /healthz
//! is the liveness probe: it fails only when the controller is stuck.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::liveness::Liveness;
use super::{Error, parse_bind_address};

/// What /readyz reports: named checks (caches, membership), each set by
/// the part it describes; ready when there is at least one and all pass.
/// And what /healthz reports: whether the controller makes progress.
#[derive(Debug, Default)]
pub(crate) struct Health {
    checks: Mutex<BTreeMap<&'static str, (bool, String)>>,
    pub liveness: Arc<Liveness>,
}

impl Health {
    pub(crate) fn new(liveness: Liveness) -> Self {
        Self {
            checks: Default::default(),
            liveness: Arc::new(liveness),
        }
    }

    pub(crate) fn set(&self, check: &'static str, ok: bool, detail: &str) {
        self.checks
            .lock()
            .unwrap()
            .insert(check, (ok, detail.to_string()));
    }

    pub(crate) fn is_ready(&self) -> bool {
        let checks = self.checks.lock().unwrap();
        !checks.is_empty() && checks.values().all(|(ok, _)| *ok)
    }

    fn report(&self) -> String {
        let checks = self.checks.lock().unwrap();
        checks
            .iter()
            .map(|(name, (ok, detail))| {
                format!("{name}: {} ({detail})", if *ok { "ok" } else { "failing" })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(crate) async fn bind(address: &str) -> Result<(TcpListener, SocketAddr), Error> {
    let addr = parse_bind_address(address)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            address: address.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        address: address.to_string(),
        source,
    })?;
    Ok((listener, local))
}

pub(crate) fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                metrics_process::Collector::default().collect();
                handle.render()
            }
        }),
    )
}

pub(crate) fn health_router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn healthz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    match health.liveness.check() {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(stuck) => {
            tracing::warn!(%stuck, "/healthz: failing");
            (StatusCode::SERVICE_UNAVAILABLE, stuck)
        }
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    if health.is_ready() {
        (StatusCode::OK, "ok".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}", health.report()),
        )
    }
}

/// Serves `router` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
