//! The Helm chart: it lints and renders, its schema catches bad values, it
//! installs, upgrades the CRD and uninstalls without stranding anything, and
//! its RBAC is exactly enough.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::support::cluster::PrivateCluster;
use crate::support::helm::{chart, helm, helm_ok};
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, client_for, eventually, service_account_kubeconfig, unique};

const CRD: &str = "configmirrors.mirror.configmirror.io";

fn all_features() -> String {
    chart()
        .join("ci/all-features-values.yaml")
        .display()
        .to_string()
}

fn documents(rendered: &str) -> Vec<serde_yaml::Value> {
    rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .filter(|d| d.get("kind").is_some())
        .collect()
}

fn kinds(docs: &[serde_yaml::Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_chart_lints_and_renders_with_defaults_and_with_every_feature() {
    let c = chart().display().to_string();
    helm_ok(None, &["lint", &c]);
    helm_ok(None, &["lint", &c, "-f", &all_features()]);

    let defaults = documents(&helm_ok(
        None,
        &["template", "r", &c, "-n", "configmirror-system"],
    ));
    let k = kinds(&defaults);
    for kind in [
        "StatefulSet",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "CustomResourceDefinition",
    ] {
        assert!(k.contains(kind), "{kind} missing by default: {k:?}");
    }
    for kind in [
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(!k.contains(kind), "{kind} rendered by default");
    }
    let args =
        find(&defaults, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        !serde_yaml::to_string(&args)
            .unwrap()
            .contains("--leader-elect"),
        "one replica needs no election"
    );

    // Every feature on, with the monitoring APIs present.
    let all = documents(&helm_ok(
        None,
        &[
            "template",
            "r",
            &c,
            "-n",
            "configmirror-system",
            "-f",
            &all_features(),
            "--api-versions",
            "monitoring.coreos.com/v1/ServiceMonitor",
            "--api-versions",
            "monitoring.coreos.com/v1/PrometheusRule",
        ],
    ));
    let k = kinds(&all);
    for kind in [
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(
            k.contains(kind),
            "{kind} missing with every feature on: {k:?}"
        );
    }
    let sts = find(&all, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"], 3);
    let args =
        serde_yaml::to_string(&sts["spec"]["template"]["spec"]["containers"][0]["args"]).unwrap();
    assert!(
        !args.contains("--leader-elect"),
        "sharding replaces leader election"
    );
    for flag in [
        "--sharding",
        "--coordinator-lease=r-configmirror-operator-coordinator",
        "--leave-grace-seconds=30",
        "--watch-namespace=team-a,team-b",
        "--adopt-reference-replicas",
        "--database-secret-namespaces=platform-db",
        "--revision-max-age=90d",
    ] {
        assert!(args.contains(flag), "{flag} not in {args}");
    }
    // Without the monitoring APIs, their objects are left out: the chart installs on a bare cluster.
    let bare = kinds(&documents(&helm_ok(
        None,
        &["template", "r", &c, "-f", &all_features()],
    )));
    assert!(!bare.contains("ServiceMonitor") && !bare.contains("PrometheusRule"));

    // Security context: non-root, read-only root, no capabilities, RuntimeDefault seccomp.
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0]["securityContext"];
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(container["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );

    // Least privilege: no Secret access cluster-wide; Secrets only per listed namespace.
    let cluster_role = serde_yaml::to_string(find(&all, "ClusterRole")).unwrap();
    assert!(
        !cluster_role.contains("secrets"),
        "cluster-wide Secret access: {cluster_role}"
    );
    let secret_roles: BTreeSet<String> = all
        .iter()
        .filter(|d| {
            d["kind"] == "Role"
                && serde_yaml::to_string(&d["rules"])
                    .unwrap()
                    .contains("secrets")
        })
        .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        secret_roles,
        BTreeSet::from(["team-a".into(), "team-b".into(), "platform-db".into()])
    );

    // The CRD template is crds/ exactly, plus the keep policy; the chart's
    // dashboard and alert files are deploy/'s.
    assert_eq!(
        repo_file("helm/configmirror-operator/files/crd.yaml"),
        repo_file("crds/configmirror.yaml")
    );
    assert_eq!(
        repo_file("helm/configmirror-operator/files/dashboard.json"),
        repo_file("deploy/grafana/configmirror-dashboard.json")
    );
    assert_eq!(
        repo_file("helm/configmirror-operator/files/alerts.yaml"),
        repo_file("deploy/prometheus/configmirror-alerts.yaml")
    );
    let mut rendered_crd = find(&defaults, "CustomResourceDefinition").clone();
    assert_eq!(
        rendered_crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    rendered_crd["metadata"] = serde_yaml::from_str(&format!("name: {CRD}")).unwrap();
    let committed: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("crds/configmirror.yaml")).unwrap();
    assert!(
        rendered_crd == committed,
        "the chart's CRD differs from crds/configmirror.yaml"
    );
    assert!(
        !chart().join("crds").exists(),
        "a crds/ folder would never be upgraded by Helm"
    );
}

#[test]
fn the_values_schema_rejects_bad_values_clearly() {
    let c = chart().display().to_string();
    for (set, field) in [
        ("replicaCount=three", "/replicaCount"),
        ("replicaCount=0", "/replicaCount"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("database.revisionMaxAge=soon", "/database/revisionMaxAge"),
        ("replicas=3", "replicas"),
    ] {
        let r = helm(None, &["template", "r", &c, "--set", set]);
        assert!(!r.ok, "{set} was accepted");
        assert!(
            r.stderr.contains("schema") && r.stderr.contains(field),
            "{set}: {}",
            r.stderr
        );
    }
}

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

#[tokio::test]
async fn install_upgrade_and_uninstall_strand_nothing() {
    let cluster = PrivateCluster::start();
    let kc = cluster.kubeconfig.clone();
    let admin = client_for(&kc, "chart-test").await;
    let c = chart().display().to_string();
    let ns = "configmirror-system";

    // Install: 3 replicas, leader election on, every enabled object there.
    helm_ok(
        Some(&kc),
        &[
            "install",
            "cm",
            &c,
            "-n",
            ns,
            "--create-namespace",
            "--set",
            "replicaCount=3",
            "--set",
            "dashboard.enabled=true",
            "--set",
            "networkPolicy.enabled=true",
        ],
    );
    let sts = Api::<StatefulSet>::namespaced(admin.clone(), ns)
        .get("cm-configmirror-operator")
        .await
        .unwrap();
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
    let args = sts.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = crds.get(CRD).await.unwrap();
    assert_eq!(
        crd.annotations()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep")
    );
    for (kind, name) in [
        ("poddisruptionbudget", "cm-configmirror-operator"),
        ("networkpolicy", "cm-configmirror-operator"),
        ("configmap", "cm-configmirror-operator-dashboard"),
    ] {
        let out = std::process::Command::new("kubectl")
            .args([
                "--kubeconfig",
                kc.to_str().unwrap(),
                "-n",
                ns,
                "get",
                kind,
                name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind}/{name} missing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Upgrade with a changed CRD: the change ships.
    let changed = tempfile::tempdir().unwrap();
    copy_dir(&chart(), changed.path());
    let crd_file = changed.path().join("files/crd.yaml");
    let text = std::fs::read_to_string(&crd_file).unwrap();
    let marker = "    - jsonPath: .metadata.creationTimestamp";
    assert!(text.contains(marker));
    std::fs::write(&crd_file, text.replace(marker, &format!("    - jsonPath: .spec.sourceNamespace\n      name: Source\n      type: string\n{marker}"))).unwrap();
    helm_ok(
        Some(&kc),
        &[
            "upgrade",
            "cm",
            changed.path().to_str().unwrap(),
            "-n",
            ns,
            "--set",
            "replicaCount=3",
        ],
    );
    let upgraded = crds.get(CRD).await.unwrap();
    let columns: Vec<String> = upgraded.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert!(
        columns.contains(&"Source".to_string()),
        "the CRD change did not ship: {columns:?}"
    );

    // A mirror, reconciled by the operator out of cluster as the chart's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let sa_kc =
        service_account_kubeconfig(&admin, &kc, ns, "cm-configmirror-operator", dir.path()).await;
    for n in ["app-source", "dev"] {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
            .create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": n}})).unwrap(),
            )
            .await
            .unwrap();
    }
    create_cm(&admin, "app-source", &configmap("cfg", &[], &[("k", "v")])).await;
    let mirror = create_mirror(&admin, ns, "m", mirror_spec("app-source", &["dev"], None)).await;
    let uid = mirror.uid().unwrap();
    let mut op = Operator::scoped(&[ns]).kubeconfig(&sa_kc).start().await;
    wait_cm(&admin, "dev", "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    op.terminate().await;

    // `helm uninstall` keeps the CRD, the ConfigMirror and its replica.
    helm_ok(Some(&kc), &["uninstall", "cm", "-n", ns]);
    assert!(
        crds.get_opt(CRD).await.unwrap().is_some(),
        "uninstall removed the CRD"
    );
    assert!(
        get_mirror(&admin, ns, "m").await.is_some(),
        "uninstall removed the ConfigMirror"
    );
    assert!(
        get_cm(&admin, "dev", "cfg").await.is_some(),
        "uninstall removed a replica"
    );

    // The README's removal order: reinstall, delete the mirrors while the
    // operator runs, uninstall, delete the CRD. Nothing is left stuck.
    helm_ok(Some(&kc), &["install", "cm", &c, "-n", ns]);
    let sa_kc =
        service_account_kubeconfig(&admin, &kc, ns, "cm-configmirror-operator", dir.path()).await;
    let mut op = Operator::scoped(&[ns]).kubeconfig(&sa_kc).start().await;
    let status = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "delete",
            "configmirrors",
            "--all",
            "--all-namespaces",
            "--timeout=60s",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    wait_mirror_gone(&admin, ns, "m").await;
    wait_cm_gone(&admin, "dev", "cfg").await;
    op.terminate().await;
    helm_ok(Some(&kc), &["uninstall", "cm", "-n", ns]);
    crds.delete(CRD, &Default::default()).await.unwrap();
    eventually("the CRD to be deleted", Duration::from_secs(60), || async {
        crds.get_opt(CRD).await.unwrap().is_none().then_some(())
    })
    .await;
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
