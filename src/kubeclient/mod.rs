//! The kube client every part of the operator shares: its user agent names
//! the member (so the audit log shows who wrote what), a client-side QPS
//! limit, `rest_client_requests_total{code,method}` like client-go's, and
//! the write deadline (`WriteDeadline`) checked as a request leaves.

mod kubeconfig;
mod layers;
mod unanswered;
mod write_deadline;

use std::sync::Arc;

use http::HeaderValue;
use kube::client::ClientBuilder;
use kube::{Client, Config};

use crate::config::KubeconfigArgs;

pub(crate) use layers::{RateLimitLayer, RequestMetricsLayer};
#[cfg(test)]
pub(crate) use write_deadline::IN_TRANSIT;
pub(crate) use write_deadline::{WriteDeadline, WriteGateLayer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file, or the list, the error is about.
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {0}: none of the listed files exists")]
    NoKubeconfig(String),
    #[error(
        "no Kubernetes configuration found (set --kubeconfig/KUBECONFIG or run in a cluster): {0}"
    )]
    Infer(#[from] kube::config::InferConfigError),
    #[error("invalid user agent {0:?}")]
    UserAgent(String),
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub kubeconfig: KubeconfigArgs,
    pub user_agent: String,
    /// Requests per second, 0 for no client-side limit.
    pub qps: f64,
    pub burst: u32,
    /// ConfigMap and ConfigMirror writes leave only while it holds.
    pub write_deadline: Option<Arc<WriteDeadline>>,
}

/// `configmirror/<version> member/<name>`.
pub(crate) fn user_agent(member: &str) -> String {
    format!("configmirror/{} member/{member}", crate::VERSION)
}

/// The configuration `--kubeconfig` and `--context` select, resolved as
/// kubectl resolves them (`kubeconfig.rs`).
pub async fn load_config(args: &KubeconfigArgs) -> Result<Config, Error> {
    kubeconfig::load(args).await
}

/// The client of a one-shot subcommand (`check`, `prepare-upgrade`), whose
/// user agent names it as the member.
pub(crate) async fn for_command(
    kubeconfig: KubeconfigArgs,
    command: &str,
) -> Result<Client, Error> {
    build(&ClientOptions {
        kubeconfig,
        user_agent: user_agent(command),
        qps: 0.0,
        burst: 10,
        write_deadline: None,
    })
    .await
}

pub(crate) async fn build(options: &ClientOptions) -> Result<Client, Error> {
    let mut config = load_config(&options.kubeconfig).await?;
    with_user_agent(&mut config, &options.user_agent)?;
    Ok(
        // Outermost last: a request waits for the rate limit first, and the
        // write deadline is checked after that wait, as it leaves.
        ClientBuilder::new(transport(&config)?, config.default_namespace.clone())
            .with_layer(&WriteGateLayer(options.write_deadline.clone()))
            .with_layer(&RequestMetricsLayer)
            .with_layer(&RateLimitLayer::new(options.qps, options.burst))
            .build(),
    )
}

/// A client with this crate's transport and no other layers (the load
/// generator uses it, so that it and the operator talk to the API alike).
pub fn plain(config: &Config) -> Result<Client, Error> {
    Ok(ClientBuilder::new(transport(config)?, config.default_namespace.clone()).build())
}

type Transport = tower::util::BoxService<
    http::Request<kube::client::Body>,
    http::Response<hyper::body::Incoming>,
    Box<dyn std::error::Error + Send + Sync>,
>;

/// kube's default HTTP stack, with TCP_NODELAY set. Without it a request's
/// last segment can wait in Nagle's buffer for the server's delayed ACK:
/// measured here as a ~40 ms stall before a reconcile's first write.
fn transport(config: &Config) -> Result<Transport, Error> {
    use kube::client::ConfigExt;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .service(client);
    Ok(tower::util::BoxService::new(service))
}

pub fn with_user_agent(config: &mut Config, agent: &str) -> Result<(), Error> {
    let value = HeaderValue::from_str(agent).map_err(|_| Error::UserAgent(agent.to_string()))?;
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((http::header::USER_AGENT, value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_names_version_and_member() {
        assert_eq!(
            user_agent("pod-0"),
            format!("configmirror/{} member/pod-0", crate::VERSION)
        );
    }
}
