//! The kube client every part of the operator shares: its user agent names
//! the member (so the audit log shows who wrote what), a client-side QPS
//! limit, `rest_client_requests_total{code,method}` like client-go's, and
//! the write deadline (`WriteDeadline`) checked as a request leaves.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
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
pub struct ClientOptions {
    pub kubeconfig: Option<PathBuf>,
    pub user_agent: String,
    /// Requests per second, 0 for no client-side limit.
    pub qps: f64,
    pub burst: u32,
    /// ConfigMap and ConfigMirror writes leave only while it holds.
    pub write_deadline: Option<Arc<WriteDeadline>>,
}

/// `configmirror/<version> member/<name>`.
pub fn user_agent(member: &str) -> String {
    format!("configmirror/{} member/{member}", crate::VERSION)
}

pub async fn load_config(kubeconfig: Option<&PathBuf>) -> Result<Config, Error> {
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: path.clone(),
                    source,
                })
        }
        None => Ok(Config::infer().await?),
    }
}

/// The client of a one-shot subcommand (`check`, `prepare-upgrade`), whose
/// user agent names it as the member.
pub async fn for_command(kubeconfig: Option<PathBuf>, command: &str) -> Result<Client, Error> {
    build(&ClientOptions {
        kubeconfig,
        user_agent: user_agent(command),
        qps: 0.0,
        burst: 10,
        write_deadline: None,
    })
    .await
}

pub async fn build(options: &ClientOptions) -> Result<Client, Error> {
    let mut config = load_config(options.kubeconfig.as_ref()).await?;
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

/// A token bucket: `qps` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    interval: Duration,
    burst: u32,
    /// When the next token is free; `None` while the bucket is full.
    next_free: Mutex<Option<Instant>>,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / qps),
            burst: burst.max(1),
            next_free: Mutex::new(None),
        }
    }

    /// Takes a token; returns how long to wait until it may be used.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut next = self.next_free.lock().unwrap();
        let earliest = now
            .checked_sub(self.interval * (self.burst - 1))
            .unwrap_or(now);
        let at = next.map_or(earliest, |n| n.max(earliest));
        *next = Some(at + self.interval);
        at.saturating_duration_since(now)
    }
}

#[derive(Clone)]
pub struct RateLimitLayer(Option<Arc<TokenBucket>>);

impl RateLimitLayer {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self((qps > 0.0).then(|| Arc::new(TokenBucket::new(qps, burst))))
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.0.clone(),
            sleep: None,
            permitted: false,
        }
    }
}

pub struct RateLimited<S> {
    inner: S,
    bucket: Option<Arc<TokenBucket>>,
    sleep: Option<Pin<Box<Sleep>>>,
    permitted: bool,
}

impl<S, B> Service<Request<B>> for RateLimited<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let (Some(bucket), false) = (&self.bucket, self.permitted) {
            if self.sleep.is_none() {
                let wait = bucket.reserve();
                if wait.is_zero() {
                    self.permitted = true;
                } else {
                    self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
            if let Some(sleep) = &mut self.sleep {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
                self.permitted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

/// Until when this process may send ConfigMap and ConfigMirror writes
/// (monotonic clock). A leader's Lease or a member's heartbeats set it; the
/// client checks it as each such request leaves, after any wait for the
/// rate limit (a check before that wait could be seconds old by the time
/// the request goes out). Unlimited for a process that needs none.
#[derive(Debug)]
pub struct WriteDeadline(Mutex<Limit>);

/// How long a write may take from leaving this process to reaching the API
/// server on a busy node (measured here: up to ~150 ms with both cores
/// saturated); writes stop this much before the deadline.
pub const IN_TRANSIT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
enum Limit {
    Unlimited,
    Until(Option<std::time::Instant>),
}

impl WriteDeadline {
    pub fn unlimited() -> Self {
        Self(Mutex::new(Limit::Unlimited))
    }

    /// No write until `extend` or `set` says otherwise.
    pub fn closed() -> Self {
        Self(Mutex::new(Limit::Until(None)))
    }

    /// Whether a write may leave now: at least `IN_TRANSIT` before the
    /// deadline, so that it has reached the API server by then.
    pub fn holds(&self) -> bool {
        match *self.0.lock().unwrap() {
            Limit::Unlimited => true,
            Limit::Until(until) => {
                until.is_some_and(|u| std::time::Instant::now() + IN_TRANSIT < u)
            }
        }
    }

    /// Writes may go on until `until` (`None`: no more writes).
    pub fn set(&self, until: Option<std::time::Instant>) {
        *self.0.lock().unwrap() = Limit::Until(until);
    }

    /// Writes may go on until `until`, or later if already allowed.
    pub fn extend(&self, until: std::time::Instant) {
        let mut limit = self.0.lock().unwrap();
        *limit = match *limit {
            Limit::Until(Some(u)) => Limit::Until(Some(u.max(until))),
            _ => Limit::Until(Some(until)),
        };
    }

    /// Whether the deadline has passed (`false` when unlimited).
    pub fn expired(&self, now: std::time::Instant) -> bool {
        match *self.0.lock().unwrap() {
            Limit::Unlimited => false,
            Limit::Until(until) => until.is_none_or(|u| now >= u),
        }
    }
}

/// Refused by the write deadline: the request never left.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this process's write deadline has passed (lease not renewed in time)")]
pub struct WriteRefused;

/// Refuses ConfigMap and ConfigMirror writes once the deadline has passed.
/// Reads, Leases and Events pass: they are how a process learns and says
/// that it lost its lease.
#[derive(Clone)]
pub struct WriteGateLayer(Option<Arc<WriteDeadline>>);

impl<S> Layer<S> for WriteGateLayer {
    type Service = WriteGate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WriteGate {
            inner,
            deadline: self.0.clone(),
        }
    }
}

pub struct WriteGate<S> {
    inner: S,
    deadline: Option<Arc<WriteDeadline>>,
}

/// A request that changes a ConfigMap or a ConfigMirror (or its status).
fn gated<B>(req: &Request<B>) -> bool {
    !matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) && req
        .uri()
        .path()
        .split('/')
        .any(|segment| segment == "configmaps" || segment == "configmirrors")
}

impl<S, B> Service<Request<B>> for WriteGate<S>
where
    S: Service<Request<B>>,
    S::Error: From<WriteRefused> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let deadline = self.deadline.clone().filter(|_| gated(&req));
        // The transport's future does nothing until polled: checking at
        // its first poll, rather than here, checks as late as this process
        // can (the caller may poll it a while after the queue hands it over).
        let send = self.inner.call(req);
        Box::pin(async move {
            if deadline.is_some_and(|d| !d.holds()) {
                metrics::counter!(crate::telemetry::names::WRITES_REFUSED_BY_DEADLINE).increment(1);
                return Err(WriteRefused.into());
            }
            send.await
        })
    }
}

/// Counts requests by response code and method, as client-go's
/// `rest_client_requests_total` does.
#[derive(Clone)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics(inner)
    }
}

pub struct RequestMetrics<S>(S);

impl<S, B, RB> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.method().as_str().to_string();
        let future = self.0.call(req);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            metrics::counter!(crate::telemetry::names::REST_CLIENT_REQUESTS, "code" => code, "method" => method)
                .increment(1);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_paces() {
        let bucket = TokenBucket::new(10.0, 3);
        let waits: Vec<Duration> = (0..5).map(|_| bucket.reserve()).collect();
        assert_eq!(waits[..3], [Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            bucket.reserve(),
            Duration::ZERO,
            "tokens saved up while idle"
        );
    }

    #[test]
    fn the_deadline_gates_only_configmap_and_configmirror_writes() {
        let req = |method: &str, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap()
        };
        assert!(gated(&req("PUT", "/api/v1/namespaces/t/configmaps/cfg")));
        assert!(gated(&req("POST", "/api/v1/namespaces/t/configmaps")));
        assert!(gated(&req(
            "PATCH",
            "/apis/mirror.configmirror.io/v1alpha1/namespaces/h/configmirrors/m/status"
        )));
        assert!(gated(&req("DELETE", "/api/v1/namespaces/t/configmaps/cfg")));
        assert!(!gated(&req("GET", "/api/v1/namespaces/t/configmaps/cfg")));
        assert!(!gated(&req(
            "PATCH",
            "/apis/coordination.k8s.io/v1/namespaces/o/leases/l"
        )));
        assert!(!gated(&req(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/h/events"
        )));
    }

    #[tokio::test]
    async fn past_the_deadline_a_write_never_reaches_the_transport() {
        use tower::ServiceExt;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let transport = {
            let sent = sent.clone();
            // Like a real transport, it sends when its future is polled.
            tower::service_fn(move |req: Request<()>| {
                let sent = sent.clone();
                async move {
                    sent.lock().unwrap().push(req.uri().path().to_string());
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response::new(()))
                }
            })
        };
        let deadline = Arc::new(WriteDeadline::closed());
        deadline.extend(std::time::Instant::now() + Duration::from_secs(60));
        let mut client = WriteGateLayer(Some(deadline.clone())).layer(transport);
        let put = || {
            Request::put("/api/v1/namespaces/t/configmaps/cfg")
                .body(())
                .unwrap()
        };
        client.ready().await.unwrap().call(put()).await.unwrap();
        deadline.set(None);
        let refused = client.ready().await.unwrap().call(put()).await;
        assert!(refused.unwrap_err().is::<WriteRefused>());
        let lease = Request::put("/apis/coordination.k8s.io/v1/namespaces/o/leases/l")
            .body(())
            .unwrap();
        client.ready().await.unwrap().call(lease).await.unwrap();
        assert_eq!(
            *sent.lock().unwrap(),
            [
                "/api/v1/namespaces/t/configmaps/cfg",
                "/apis/coordination.k8s.io/v1/namespaces/o/leases/l"
            ],
            "the refused write never reached the transport"
        );
    }

    #[test]
    fn a_deadline_extends_never_shortens_and_closes_on_set() {
        let now = std::time::Instant::now();
        let d = WriteDeadline::unlimited();
        assert!(d.holds() && !d.expired(now));
        let d = WriteDeadline::closed();
        assert!(!d.holds() && d.expired(now));
        d.extend(now + Duration::from_secs(60));
        d.extend(now);
        assert!(d.holds(), "an older renewal never shortens it");
        d.set(None);
        assert!(!d.holds());
        d.set(Some(now));
        assert!(!d.holds() && d.expired(now));
    }

    #[test]
    fn user_agent_names_version_and_member() {
        assert_eq!(
            user_agent("pod-0"),
            format!("configmirror/{} member/pod-0", crate::VERSION)
        );
    }
}
