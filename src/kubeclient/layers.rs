//! The client's tower layers besides the write gate: a client-side QPS
//! limit and `rest_client_requests_total{code,method}` like client-go's.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// A token bucket: `qps` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    interval: Duration,
    burst: u32,
    /// When the next token is free; `None` while the bucket is full.
    next_free: Mutex<Option<Instant>>,
}

impl TokenBucket {
    pub(crate) fn new(qps: f64, burst: u32) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / qps),
            burst: burst.max(1),
            next_free: Mutex::new(None),
        }
    }

    /// Takes a token; returns how long to wait until it may be used.
    pub(crate) fn reserve(&self) -> Duration {
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
pub(crate) struct RateLimitLayer(Option<Arc<TokenBucket>>);

impl RateLimitLayer {
    pub(crate) fn new(qps: f64, burst: u32) -> Self {
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

pub(crate) struct RateLimited<S> {
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

/// Counts requests by response code and method, as client-go's
/// `rest_client_requests_total` does.
#[derive(Clone)]
pub(crate) struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics(inner)
    }
}

pub(crate) struct RequestMetrics<S>(S);

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
}
