//! The chart's RBAC is exactly enough: the operator, run out of cluster as
//! an installed release's ServiceAccount (leader election in the release
//! namespace, a mirror persisting through a database Secret it may read),
//! is refused nothing it needs, and nothing beyond its rules is allowed.
//!
//! This release is on the shared cluster, whose node schedules its operator
//! pod, but that pod never runs: its image may not be pulled (the node has
//! no registry, and nothing should try one), so it waits in
//! ErrImageNeverPull. The operator that counts is the one run out of
//! cluster.

use std::path::Path;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::support::helm::{chart, helm_ok};
use crate::support::k8s::*;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, client_for, eventually, service_account_kubeconfig, unique};

#[tokio::test]
async fn the_charts_rbac_is_enough_for_the_operator_and_no_more() {
    let s = Scenario::new("rbac", 1).await;
    let release_ns = TestNamespace::create(&s.client, "rbac-release").await;
    let release = unique("r");
    let c = chart().display().to_string();
    let kubeconfig = crate::support::cluster_var("KUBECONFIG");
    helm_ok(
        Some(Path::new(&kubeconfig)),
        &[
            "install",
            &release,
            &c,
            "-n",
            &release_ns.name,
            "--set",
            "crds.install=false",
            "--set",
            &format!("database.secretNamespaces={{{}}}", s.home.name),
            // The operator runs out of cluster below with its own test
            // database; the chart's PostgreSQL would only add a pod and a
            // PVC this test has no use for.
            "--set",
            "postgresql.enabled=false",
            "--set",
            "image.pullPolicy=Never",
        ],
    );
    let sa = format!("{release}-configmirror-operator");
    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = service_account_kubeconfig(
        &s.client,
        Path::new(&kubeconfig),
        &release_ns.name,
        &sa,
        dir.path(),
    )
    .await;

    // The operator as the chart runs it: that identity, leader election in
    // its own namespace, a mirror whose database Secret is in its namespace.
    let db = crate::support::db::TestDatabase::create().await;
    crate::persistence::secret(&s.client, &s.home.name, "db", &db.parts()).await;
    let op = s
        .operator()
        .kubeconfig(&sa_kubeconfig)
        .arg("--leader-elect")
        .arg(format!("--namespace={}", release_ns.name))
        .start()
        .await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let mut spec = crate::persistence::mirror_with_secret(&s, None, "db");
    spec.selector = match_labels(&[("replicate", "true")]);
    let mirror = create_mirror(&s.client, &s.home.name, "m", spec).await;
    let uid = mirror.uid().unwrap();
    let t = s.target_names()[0];
    wait_cm(&s.client, t, "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    wait_status(&s.client, &s.home.name, "m", "Ready and persisted", |st| {
        ready_reason(st) == Some(("True".into(), "Synced".into()))
            && condition(st, "DatabaseSynced").is_some_and(|c| c.status == "True")
    })
    .await;
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"data": {"k": "v2"}}),
    )
    .await;
    wait_cm(&s.client, t, "cfg", "updated replica", |c| {
        is_replica(c, &uid, &[("k", "v2")])
    })
    .await;
    eventually("an event on the mirror", WAIT, || async {
        let events =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.client.clone(), &s.home.name)
                .list(&ListParams::default())
                .await
                .ok()?;
        events
            .items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("m"))
            .then_some(())
    })
    .await;
    delete_mirror(&s.client, &s.home.name, "m").await;
    wait_mirror_gone(&s.client, &s.home.name, "m").await;
    wait_cm_gone(&s.client, t, "cfg").await;
    let denied: Vec<_> = op
        .log_lines()
        .into_iter()
        .filter(|l| l.to_string().contains("forbidden") || l.to_string().contains("Forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "the operator was refused something it needs: {denied:?}"
    );

    // And nothing beyond its rules.
    let sa_client = client_for(&sa_kubeconfig, "rbac-probe").await;
    let forbidden =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(forbidden(
        Api::<Secret>::all(sa_client.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Secret>::namespaced(sa_client.clone(), t)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(sa_client.clone(), t)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<StatefulSet>::all(sa_client.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    helm_ok(
        Some(Path::new(&kubeconfig)),
        &["uninstall", &release, "-n", &release_ns.name],
    );
}
