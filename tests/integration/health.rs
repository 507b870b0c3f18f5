//! /healthz is the liveness probe: it fails when the controller is stuck
//! for real, and recovers when it moves again; an idle controller stays
//! healthy.
//!
//! What truly blocks a reconcile: an API server (or the network to it)
//! that takes requests and never answers. The client waits for an answer
//! until its read timeout (295 s), so the reconcile hangs; no test hook is
//! involved. Here the operator's API traffic passes a proxy that stops
//! forwarding requests while answers still flow back: the watches that are
//! already open keep delivering events (so the operator sees a new mirror),
//! and every request its reconcile sends goes unanswered.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::proxy::SilentProxy;
use crate::support::scenario::Scenario;
use crate::support::{cluster_var, eventually};

fn admin_kubeconfig() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(cluster_var("KUBECONFIG")).unwrap()).unwrap()
}

/// The API server's address, from the cluster's kubeconfig.
fn api_server() -> SocketAddr {
    let kc = admin_kubeconfig();
    let server = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("a server URL");
    server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("server {server}: {e}"))
}

/// The cluster's kubeconfig with the proxy as its server (the API server's
/// certificate names 127.0.0.1).
fn kubeconfig_through(proxy: SocketAddr, dir: &std::path::Path) -> std::path::PathBuf {
    let mut kc = admin_kubeconfig();
    kc["clusters"][0]["cluster"]["server"] = format!("https://{proxy}").into();
    let path = dir.join("through-proxy.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

async fn healthz(op: &Operator) -> Option<(u16, String)> {
    op.get(&op.health_addr, "/healthz").await
}

#[tokio::test]
async fn healthz_fails_while_a_reconcile_hangs_on_the_api_and_recovers() {
    let s = Scenario::new("health", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = SilentProxy::requests_only(api_server()).await;
    let kubeconfig = kubeconfig_through(proxy.addr, dir.path());
    let op = s
        .operator()
        .kubeconfig(&kubeconfig)
        .arg("--stuck-after-seconds=2")
        .start()
        .await;

    // Idle (no mirror at all) for longer than the limit: healthy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(healthz(&op).await, Some((200, "ok".into())));

    // Requests are held from now on; the mirror reaches the operator
    // through its open watch, and its reconcile's requests hang.
    proxy.hold();
    s.selected_source("cfg", &[("k", "v")]).await;
    let uid = s.mirror_selected("m").await;
    let (code, body) = eventually("/healthz to fail", Duration::from_secs(30), || async {
        healthz(&op).await.filter(|(code, _)| *code == 503)
    })
    .await;
    assert_eq!(code, 503);
    assert!(
        body.contains("controller stuck") && body.contains("1 reconcile(s) in flight"),
        "{body}"
    );
    assert!(
        get_cm(&s.client, s.target_names()[0], "cfg")
            .await
            .is_none(),
        "nothing was written while held"
    );

    // The API answers again: the reconcile finishes and /healthz recovers.
    proxy.release();
    wait_cm(&s.client, s.target_names()[0], "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    eventually("/healthz to recover", Duration::from_secs(30), || async {
        healthz(&op).await.filter(|(code, _)| *code == 200)
    })
    .await;
}
