//! `configmirror check`: what `helm test` runs, in the operator's own image.
//! Every operator pod is Running with an IP and answers `/readyz` with 200,
//! and every ConfigMirror names the member that reconciles it
//! (`status.shard.member`; with `--sharding`, one of those pods). Failing
//! checks are retried until `--timeout-seconds`, so a release that was just
//! installed can settle; the last report is printed and the exit status is
//! non-zero when anything still fails.
//!
//! Gathering (the API, HTTP) is kept apart from judging: [`evaluate`] turns
//! what was observed into a [`Report`] and is unit-tested below.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hyper::body::Body as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::api::ConfigMirror;
use crate::config::CheckArgs;
use crate::kubeclient;

mod report;
#[cfg(test)]
mod tests;

pub(crate) use report::*;

/// `http://<ip>:<port>/readyz`, with IPv6 addresses in brackets.
pub(crate) fn readyz_url(ip: &str, port: u16) -> Result<String, String> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("pod IP {ip:?} is not an address"))?;
    Ok(format!("http://{}/readyz", SocketAddr::new(ip, port)))
}

/// `configmirror check`.
pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let client = kubeclient::for_command(args.kube.clone(), "check").await?;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<String>();
    let timeout = Duration::from_secs(args.timeout_seconds);
    let interval = Duration::from_secs(args.interval_seconds.max(1));
    let deadline = tokio::time::Instant::now() + timeout;
    println!(
        "configmirror check: pods {} in {}, /readyz on port {}, ConfigMirrors in {}{}; retrying for up to {}s",
        args.selector,
        args.namespace,
        args.health_port,
        if args.watch_namespace.is_empty() {
            "all namespaces".to_string()
        } else {
            args.watch_namespace.join(",")
        },
        if args.sharding { " (sharded)" } else { "" },
        timeout.as_secs()
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        let observed = observe(&client, &http, &args).await;
        let report = evaluate(&observed, &args.selector, args.sharding);
        if report.passed() {
            println!("{report}");
            return Ok(());
        }
        if tokio::time::Instant::now() + interval > deadline {
            println!("{report}");
            anyhow::bail!(
                "{} check(s) still failing after {} attempt(s) over {}s",
                report.failures().count(),
                attempt,
                timeout.as_secs()
            );
        }
        let failing: Vec<&str> = report.failures().map(|o| o.check.as_str()).collect();
        println!(
            "attempt {attempt}: {} failing ({}{}); retrying in {}s",
            failing.len(),
            failing[..failing.len().min(5)].join(", "),
            if failing.len() > 5 { ", …" } else { "" },
            interval.as_secs()
        );
        tokio::time::sleep(interval).await;
    }
}

type HttpClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, String>;

async fn observe(client: &Client, http: &HttpClient, args: &CheckArgs) -> Observed {
    let pods = list_pods(client, &args.namespace, &args.selector).await;
    let mut probes = BTreeMap::new();
    if let Ok(pods) = &pods {
        let answers = futures::future::join_all(
            pods.iter()
                .filter_map(|p| Some((p.name.clone(), p.ip.clone()?)))
                .map(|(name, ip)| async move { (name, probe(http, &ip, args.health_port).await) }),
        )
        .await;
        probes.extend(answers);
    }
    let mirrors = list_mirrors(client, &args.watch_namespace).await;
    Observed {
        pods,
        probes,
        mirrors,
    }
}

async fn list_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<PodState>, String> {
    let list = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| e.to_string())?;
    let mut pods: Vec<PodState> = list
        .items
        .into_iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            PodState {
                name: p.name_any(),
                phase: status.phase.unwrap_or_default(),
                ip: status.pod_ip.filter(|ip| !ip.is_empty()),
                terminating: p.metadata.deletion_timestamp.is_some(),
            }
        })
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pods)
}

async fn list_mirrors(client: &Client, namespaces: &[String]) -> Result<Vec<MirrorState>, String> {
    let apis: Vec<Api<ConfigMirror>> = if namespaces.iter().all(|n| n.is_empty()) {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| Api::namespaced(client.clone(), n))
            .collect()
    };
    let mut mirrors = Vec::new();
    for api in apis {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        mirrors.extend(list.items.into_iter().map(|m| {
            MirrorState {
                namespace: m.namespace().unwrap_or_default(),
                name: m.name_any(),
                member: m
                    .status
                    .as_ref()
                    .and_then(|s| s.shard.as_ref())
                    .map(|s| s.member.clone()),
                deleting: m.metadata.deletion_timestamp.is_some(),
            }
        }));
    }
    mirrors.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(mirrors)
}

/// GET /readyz on one pod, bounded in time.
async fn probe(http: &HttpClient, ip: &str, port: u16) -> Probe {
    let url = match readyz_url(ip, port) {
        Ok(u) => u,
        Err(e) => return Probe::Failed(e),
    };
    let request = match http::Request::get(&url).body(String::new()) {
        Ok(r) => r,
        Err(e) => return Probe::Failed(format!("{url}: {e}")),
    };
    let answer = async {
        let response = http
            .request(request)
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        let code = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| format!("GET {url}: reading the body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
            }
            if bytes.len() > 4096 {
                break;
            }
        }
        Ok::<_, String>(Probe::Answered {
            code,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => Probe::Failed(e),
        Err(_) => Probe::Failed(format!("GET {url}: no answer within 5s")),
    }
}

/// An error with its causes (hyper-util's own message is only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
