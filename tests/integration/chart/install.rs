//! Installing, upgrading and uninstalling the chart in a private cluster of
//! the test's own (Helm owns the CRD there): the values' mode and database,
//! a changed CRD shipped by `helm upgrade`, and nothing stranded by `helm
//! uninstall` or the README's removal order, while the CRD, the mirrors,
//! their replicas and the database's PVC and Secret are kept; and a CRD
//! applied with kubectl before the chart, adopted as the README says.
//!
//! No kubelet runs in a private cluster, so no chart pod ever starts: the
//! operator runs out of cluster under the chart's ServiceAccount token, and
//! the chart's PostgreSQL is checked as objects (its pod stays Pending).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, ResourceExt};

use super::CRD;
use crate::support::cluster::PrivateCluster;
use crate::support::helm::{chart, helm, helm_ok};
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::{client_for, eventually, service_account_kubeconfig};

#[tokio::test]
async fn install_upgrade_and_uninstall_strand_nothing() {
    let cluster = PrivateCluster::start();
    let kc = cluster.kubeconfig.clone();
    let admin = client_for(&kc, "chart-test").await;
    let c = chart().display().to_string();
    let ns = "configmirror-system";

    // Install: `--set replicaCount=3` and nothing else about the mode or the
    // database: three sharded workers with the chart's PostgreSQL. Its pod
    // never starts here (no kubelet), but its objects, the generated
    // credentials and their fate on upgrade and uninstall are all real.
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
    let statefulsets = Api::<StatefulSet>::namespaced(admin.clone(), ns);
    let sts = statefulsets.get("cm-configmirror-operator").await.unwrap();
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
    let container = sts.spec.unwrap().template.spec.unwrap().containers[0].clone();
    let args = container.args.clone().unwrap();
    assert!(args.contains(&"--sharding".to_string()), "{args:?}");
    assert!(!args.contains(&"--leader-elect".to_string()), "{args:?}");
    let url_from = container
        .env
        .unwrap()
        .into_iter()
        .find(|e| e.name == "DATABASE_URL")
        .and_then(|e| e.value_from?.secret_key_ref)
        .expect("DATABASE_URL from a Secret");
    assert_eq!((url_from.name.as_str(), url_from.key.as_str()), (PG, "url"));
    let pg = statefulsets.get(PG).await.unwrap();
    let retention = pg
        .spec
        .unwrap()
        .persistent_volume_claim_retention_policy
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns);
    let password =
        |secret: Secret| String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let first = secrets.get(PG).await.unwrap();
    let url = String::from_utf8(first.data.as_ref().unwrap()["url"].0.clone()).unwrap();
    assert!(
        url.ends_with(
            "@cm-configmirror-operator-postgresql.configmirror-system.svc:5432/configmirror"
        ),
        "{url}"
    );
    let installed_password = password(first);
    assert_eq!(installed_password.len(), 32);
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
        ("networkpolicy", PG),
        ("configmap", "cm-configmirror-operator-dashboard"),
        ("service", PG),
        ("serviceaccount", PG),
    ] {
        kubectl_get(&kc, ns, kind, name);
    }
    // The StatefulSet controller makes the claim (it stays Pending: no
    // provisioner here).
    let claims = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), ns);
    eventually("the PostgreSQL PVC", Duration::from_secs(60), || async {
        claims.get_opt(PVC).await.unwrap().map(|_| ())
    })
    .await;

    // Upgrade with a changed CRD: the change ships. `--no-hooks`: the
    // pre-upgrade job would never run here (no kubelet in a private
    // cluster) and the upgrade would fail waiting for it; the hook is
    // proven with real pods in pods.rs
    // (`helm_upgrade_between_modes_stops_the_old_mode_before_the_new_one_writes`).
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
            "--no-hooks",
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
    assert_eq!(
        password(secrets.get(PG).await.unwrap()),
        installed_password,
        "helm upgrade changed the database password"
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
    // ... and the database: the PVC (retention policy Retain) and the
    // Secret (resource-policy keep), while the StatefulSet is gone.
    assert!(statefulsets.get_opt(PG).await.unwrap().is_none());
    assert!(
        claims.get_opt(PVC).await.unwrap().is_some(),
        "uninstall removed the PostgreSQL PVC"
    );
    assert_eq!(
        secrets.get_opt(PG).await.unwrap().map(password),
        Some(installed_password.clone()),
        "uninstall removed the PostgreSQL Secret"
    );

    // The README's removal order: reinstall, delete the mirrors while the
    // operator runs, uninstall, delete the CRD, the PVC and the Secret.
    // Nothing is left stuck. The reinstall finds the kept Secret: the kept
    // data's password.
    helm_ok(Some(&kc), &["install", "cm", &c, "-n", ns]);
    assert_eq!(
        password(secrets.get(PG).await.unwrap()),
        installed_password,
        "a reinstall did not reuse the kept password"
    );
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
    claims.delete(PVC, &Default::default()).await.unwrap();
    secrets.delete(PG, &Default::default()).await.unwrap();
    eventually(
        "the PVC and the Secret to be deleted",
        Duration::from_secs(60),
        || async {
            (claims.get_opt(PVC).await.unwrap().is_none()
                && secrets.get_opt(PG).await.unwrap().is_none())
            .then_some(())
        },
    )
    .await;
}

/// The README's "CRD applied with kubectl first": `helm install` refuses a
/// CRD it does not own; `crds.install=false` leaves it to its owner; the
/// documented label and annotations hand it to a release, which then
/// installs, takes it over (keep policy included) and keeps it on
/// uninstall. The kubectl-only admission policy and roles
/// (deploy/manifests) stay beside the chart's, which are named after the
/// release.
#[tokio::test]
async fn a_crd_applied_with_kubectl_first_is_adopted_as_the_readme_says() {
    let cluster = PrivateCluster::start();
    let kc = cluster.kubeconfig.clone();
    let admin = client_for(&kc, "chart-test").await;
    let c = chart().display().to_string();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());

    // A platform team's kubectl-only install: the CRD, the admission policy
    // and the aggregated roles, server-side applied under its own manager.
    kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "--field-manager=platform-team",
            "-f",
            root.join("crds/configmirror.yaml").to_str().unwrap(),
            "-f",
            root.join("deploy/manifests").to_str().unwrap(),
        ],
    );
    let applied = crds.get(CRD).await.unwrap();

    let install_cm = [
        "install",
        "cm",
        &c,
        "-n",
        "configmirror-system",
        "--create-namespace",
    ];
    let refused = helm(Some(&kc), &install_cm);
    assert!(!refused.ok, "helm installed over a CRD it does not own");
    assert!(
        refused.stderr.contains("invalid ownership metadata") && refused.stderr.contains(CRD),
        "{}",
        refused.stderr
    );
    // Only the CRD stood in the way: the policy and roles have other names.
    assert!(
        !refused.stderr.contains("ValidatingAdmissionPolicy")
            && !refused.stderr.contains("ClusterRole"),
        "{}",
        refused.stderr
    );

    // crds.install=false: the CRD stays the platform team's, untouched.
    helm_ok(
        Some(&kc),
        &[
            "install",
            "own",
            &c,
            "-n",
            "cm-own",
            "--create-namespace",
            "--set",
            "crds.install=false",
        ],
    );
    let untouched = crds.get(CRD).await.unwrap();
    assert_eq!(
        untouched.metadata.resource_version,
        applied.metadata.resource_version
    );
    helm_ok(Some(&kc), &["uninstall", "own", "-n", "cm-own"]);
    assert!(crds.get_opt(CRD).await.unwrap().is_some());

    // The README's commands, word for word (release cm in configmirror-system).
    kubectl(
        &kc,
        &["label", "crd", CRD, "app.kubernetes.io/managed-by=Helm"],
    );
    kubectl(
        &kc,
        &[
            "annotate",
            "crd",
            CRD,
            "meta.helm.sh/release-name=cm",
            "meta.helm.sh/release-namespace=configmirror-system",
        ],
    );
    helm_ok(Some(&kc), &install_cm);
    let adopted = crds.get(CRD).await.unwrap();
    assert_eq!(
        adopted
            .annotations()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep"),
        "the release did not take the CRD over"
    );
    assert_eq!(
        adopted
            .labels()
            .get("app.kubernetes.io/instance")
            .map(String::as_str),
        Some("cm")
    );
    for (kind, name) in [
        ("validatingadmissionpolicy", "configmirror-author-rights"),
        (
            "validatingadmissionpolicy",
            "cm-configmirror-operator-author-rights",
        ),
        ("clusterrole", "configmirror-admin"),
        ("clusterrole", "cm-configmirror-operator-admin"),
    ] {
        kubectl(&kc, &["get", kind, name]);
    }

    helm_ok(Some(&kc), &["uninstall", "cm", "-n", "configmirror-system"]);
    assert!(
        crds.get_opt(CRD).await.unwrap().is_some(),
        "uninstall removed the adopted CRD"
    );
    // The kubectl-only objects were never the release's: still there.
    kubectl(
        &kc,
        &[
            "get",
            "validatingadmissionpolicy",
            "configmirror-author-rights",
        ],
    );
    kubectl(&kc, &["get", "clusterrole", "configmirror-admin"]);
}

fn kubectl(kubeconfig: &Path, args: &[&str]) {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The chart's PostgreSQL in release `cm`, and its claim.
const PG: &str = "cm-configmirror-operator-postgresql";
const PVC: &str = "data-cm-configmirror-operator-postgresql-0";

fn kubectl_get(kubeconfig: &Path, namespace: &str, kind: &str, name: &str) {
    let out = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "-n",
            namespace,
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
