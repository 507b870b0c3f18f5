//! The write deadline: until when this process may write ConfigMaps and
//! ConfigMirrors, enforced by a layer in the client as each write leaves.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower::{Layer, Service};

use super::unanswered::Unanswered;

/// Until when this process may send ConfigMap and ConfigMirror writes
/// (monotonic clock). A leader's Lease or a member's heartbeats set it; the
/// client checks it as each such request leaves, after any wait for the
/// rate limit (a check before that wait could be seconds old by the time
/// the request goes out). Unlimited for a process that needs none.
///
/// A write that passed it runs to its answer even if its caller gives up
/// (`unanswered.rs`), so that "every write that left has been answered" is
/// something a handover can wait for.
#[derive(Debug)]
pub(crate) struct WriteDeadline {
    limit: Mutex<Limit>,
    unanswered: Arc<Unanswered>,
}

/// How long a write may take from leaving this process to reaching the API
/// server on a busy node (measured here: up to ~150 ms with both cores
/// saturated); writes stop this much before the deadline.
pub(crate) const IN_TRANSIT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
enum Limit {
    Unlimited,
    Until(Option<std::time::Instant>),
}

impl WriteDeadline {
    pub(crate) fn unlimited() -> Self {
        Self::with(Limit::Unlimited)
    }

    fn with(limit: Limit) -> Self {
        Self {
            limit: Mutex::new(limit),
            unanswered: Arc::default(),
        }
    }

    /// No write until `extend` or `set` says otherwise.
    #[cfg(test)]
    pub(crate) fn closed() -> Self {
        Self::with(Limit::Until(None))
    }

    /// Whether a write may leave now: at least `IN_TRANSIT` before the
    /// deadline, so that it has reached the API server by then.
    pub(crate) fn holds(&self) -> bool {
        match *self.limit.lock().unwrap() {
            Limit::Unlimited => true,
            Limit::Until(until) => {
                until.is_some_and(|u| std::time::Instant::now() + IN_TRANSIT < u)
            }
        }
    }

    /// Writes may go on until `until` (`None`: no more writes).
    pub(crate) fn set(&self, until: Option<std::time::Instant>) {
        *self.limit.lock().unwrap() = Limit::Until(until);
    }

    /// Writes may go on until `until`, or later if already allowed.
    pub(crate) fn extend(&self, until: std::time::Instant) {
        let mut limit = self.limit.lock().unwrap();
        *limit = match *limit {
            Limit::Until(Some(u)) => Limit::Until(Some(u.max(until))),
            _ => Limit::Until(Some(until)),
        };
    }

    /// Resolves once every gated write that left before this call has
    /// been answered by the API server (or failed on the way).
    pub(crate) fn sent_writes_answered(&self) -> impl Future<Output = ()> + Send + use<> {
        self.unanswered.all_answered()
    }

    /// Whether the deadline has passed (`false` when unlimited).
    #[cfg(test)]
    pub(crate) fn expired(&self, now: std::time::Instant) -> bool {
        match *self.limit.lock().unwrap() {
            Limit::Unlimited => false,
            Limit::Until(until) => until.is_none_or(|u| now >= u),
        }
    }
}

/// Refused by the write deadline: the request never left.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this process's write deadline has passed (lease not renewed in time)")]
pub(crate) struct WriteRefused;

/// Refuses ConfigMap and ConfigMirror writes once the deadline has passed.
/// Reads, Leases and Events pass: they are how a process learns and says
/// that it lost its lease.
#[derive(Clone)]
pub(crate) struct WriteGateLayer(pub(super) Option<Arc<WriteDeadline>>);

impl<S> Layer<S> for WriteGateLayer {
    type Service = WriteGate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WriteGate {
            inner,
            deadline: self.0.clone(),
        }
    }
}

pub(crate) struct WriteGate<S> {
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
    S::Error: From<WriteRefused> + From<tokio::task::JoinError> + Send + 'static,
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
            let Some(deadline) = deadline else {
                return send.await;
            };
            if !deadline.holds() {
                metrics::counter!(crate::telemetry::names::WRITES_REFUSED_BY_DEADLINE).increment(1);
                return Err(WriteRefused.into());
            }
            // Dropping the request now would not unsend it: the API server
            // may still apply it, later than the caller believes. It runs
            // to its answer on its own, counted until then.
            let departure = deadline.unanswered.depart();
            let answer = tokio::spawn(async move {
                let answer = send.await;
                drop(departure);
                answer
            });
            answer.await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::new(()))
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

    #[tokio::test]
    async fn a_write_its_caller_gave_up_on_runs_to_its_answer_and_is_waited_for() {
        use futures::FutureExt;
        use tower::ServiceExt;
        let (reply, replied) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(Mutex::new(false)),
        );
        let transport = {
            let (reply, replied) = (reply.clone(), replied.clone());
            // An API server still applying the write when the caller leaves.
            tower::service_fn(move |_: Request<()>| {
                let (reply, replied) = (reply.clone(), replied.clone());
                async move {
                    reply.notified().await;
                    *replied.lock().unwrap() = true;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::new(()))
                }
            })
        };
        let deadline = Arc::new(WriteDeadline::unlimited());
        let mut client = WriteGateLayer(Some(deadline.clone())).layer(transport);
        let put = Request::put("/api/v1/namespaces/t/configmaps/cfg")
            .body(())
            .unwrap();
        let mut write = client.ready().await.unwrap().call(put);
        assert!((&mut write).now_or_never().is_none(), "sent, not answered");
        drop(write);
        let answered = deadline.sent_writes_answered();
        tokio::pin!(answered);
        tokio::task::yield_now().await;
        assert!((&mut answered).now_or_never().is_none());
        reply.notify_one();
        tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .expect("answered once the server replied");
        assert!(*replied.lock().unwrap(), "the write ran to its answer");
        let later = deadline.sent_writes_answered();
        later.now_or_never().expect("nothing else was sent");
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
}
