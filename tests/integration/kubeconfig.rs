//! The operator finds its cluster as kubectl does: a KUBECONFIG that lists
//! several files is merged (the first file's current-context wins), and
//! `--context` picks another context of the merged configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::cluster_var;
use crate::support::k8s::{data_of, labels, wait_cm};
use crate::support::scenario::Scenario;

/// A kubeconfig whose current-context names no context, plus a context of
/// its own that no flag selects: kubectl with it alone fails, and so must we.
const BOGUS: &str = "apiVersion: v1
kind: Config
current-context: nowhere
clusters:
- name: elsewhere
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: elsewhere
  context:
    cluster: elsewhere
    user: elsewhere
users:
- name: elsewhere
  user:
    token: not-a-token
";

/// `<bogus>:<the cluster's kubeconfig>` and the real context's name.
fn two_files(dir: &Path) -> (PathBuf, String) {
    let bogus = dir.join("bogus.kubeconfig");
    std::fs::write(&bogus, BOGUS).unwrap();
    let real = PathBuf::from(cluster_var("KUBECONFIG"));
    let context = kube::config::Kubeconfig::read_from(&real)
        .unwrap()
        .current_context
        .expect("the cluster's kubeconfig has a current-context");
    assert_ne!(context, "nowhere");
    let list = std::env::join_paths([&bogus, &real]).unwrap();
    (PathBuf::from(list), context)
}

#[tokio::test]
async fn a_kubeconfig_list_with_context_reaches_the_cluster_and_without_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (list, context) = two_files(dir.path());

    // The merged current-context is the first file's, which resolves to
    // nothing: the operator exits, naming it.
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_configmirror"))
        .args(["run", "--log-format", "text"])
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .args(["--health-probe-bind-address", "127.0.0.1:0"])
        .args(["--watch-namespace", "kubeconfig-nothing-here"])
        .env("KUBECONFIG", &list)
        .env_remove("CONFIGMIRROR_CONTEXT")
        .env_remove("DATABASE_URL")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the operator exits without a usable context")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("nowhere"), "names the context: {stderr}");

    // The same list with --context: ready, and replicating on the real cluster.
    let s = Scenario::new("kubeconfig", 1).await;
    let _op = s
        .operator()
        .kubeconfig(&list)
        .arg("--context")
        .arg(context)
        .start()
        .await;
    s.selected_source("cfg", &[("k", "v")]).await;
    s.mirror_selected("m").await;
    wait_cm(&s.client, s.target_names()[0], "cfg", "replicated", |cm| {
        data_of(cm) == labels(&[("k", "v")])
    })
    .await;
}
