//! A release of the chart running as pods on the local node: installed with
//! helm from the repository's chart, its operator pods, its PostgreSQL, and
//! what the host can see of them (pod IPs are reachable from the host over
//! the node's bridge).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;

use super::helm::{HelmResult, chart, helm, helm_ok};
use super::{cluster_var, eventually};

/// Values that point the chart at the images `deploy/image` imported into
/// the node (there is no registry here); every other value is the chart's.
pub fn local_images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/local-images-values.yaml")
}

pub struct Release {
    pub name: String,
    pub namespace: String,
    /// The chart's full name: the operator StatefulSet and its pods' prefix.
    pub fullname: String,
    pub client: Client,
    kubeconfig: PathBuf,
}

impl Release {
    /// `helm install --wait` into `namespace` with the chart's defaults plus
    /// `sets`. On this shared test cluster two things differ from a user's
    /// install: the CRD is the tests' own (several releases cannot each own
    /// it) and the operator handles only this release's namespace, so
    /// releases and the other tests' operators never touch each other's
    /// mirrors.
    pub async fn install(client: &Client, namespace: &str, sets: &[&str]) -> Self {
        let name = super::unique("cm");
        let kubeconfig = PathBuf::from(cluster_var("KUBECONFIG"));
        let watch = format!("operator.watchNamespaces={{{namespace}}}");
        let mut args = vec![
            "install",
            &name,
            chart_path(),
            "-n",
            namespace,
            "-f",
            local_images_path(),
            "--set",
            "crds.install=false",
            "--set",
            &watch,
            "--wait",
            "--timeout",
            "180s",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        helm_ok(Some(&kubeconfig), &args);
        let fullname = format!("{name}-configmirror-operator");
        Self {
            name,
            namespace: namespace.to_string(),
            fullname,
            client: client.clone(),
            kubeconfig,
        }
    }

    /// `helm upgrade --reuse-values --wait` with `sets`.
    pub fn upgrade(&self, sets: &[&str]) {
        let mut args = vec![
            "upgrade",
            &self.name,
            chart_path(),
            "-n",
            &self.namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "300s",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        helm_ok(Some(&self.kubeconfig), &args);
    }

    pub fn helm(&self, args: &[&str]) -> HelmResult {
        let mut all = args.to_vec();
        all.extend(["-n", &self.namespace]);
        helm(Some(&self.kubeconfig), &all)
    }

    pub fn statefulsets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The operator's pods (by its StatefulSet's own selector), by name.
    pub async fn operator_pods(&self) -> BTreeMap<String, Pod> {
        let sts = self.statefulsets().get(&self.fullname).await.unwrap();
        let selector = sts
            .spec
            .unwrap()
            .selector
            .match_labels
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        self.pods_api()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect()
    }

    /// Waits until exactly `n` operator pods are Ready and none is being
    /// deleted; returns them.
    pub async fn wait_ready(&self, n: usize, timeout: Duration) -> BTreeMap<String, Pod> {
        eventually(&format!("{n} Ready operator pods"), timeout, || async {
            let pods = self.operator_pods().await;
            (pods.len() == n
                && pods
                    .values()
                    .all(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none()))
            .then_some(pods)
        })
        .await
    }

    /// The chart's PostgreSQL, from the host through its Service, with the
    /// credentials the chart generated.
    pub async fn database(&self) -> PgPool {
        let name = format!("{}-postgresql", self.fullname);
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("the chart's database Secret {name}: {e}"));
        let data = secret.data.unwrap_or_default();
        let key = |k: &str| {
            String::from_utf8(
                data.get(k)
                    .unwrap_or_else(|| panic!("{name} has no key {k}"))
                    .0
                    .clone(),
            )
            .unwrap()
        };
        let service = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(&name)
            .await
            .unwrap();
        let ip = service.spec.unwrap().cluster_ip.unwrap();
        let options = sqlx::postgres::PgConnectOptions::new()
            .host(&ip)
            .port(5432)
            .username(&key("username"))
            .password(&key("password"))
            .database(&key("database"));
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options)
    }

    /// The holder of a Lease in the release's namespace.
    pub async fn lease(&self, name: &str) -> Option<Lease> {
        Api::<Lease>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .unwrap()
    }

    /// GETs `path` on port `port` of a pod, by its IP (reachable from the host).
    pub async fn pod_get(pod: &Pod, port: u16, path: &str) -> Option<(u16, String)> {
        let ip = pod.status.as_ref()?.pod_ip.clone()?;
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "3", "-w", "\n%{http_code}"])
            .arg(format!("http://{ip}:{port}{path}"))
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_string()))
    }

    pub async fn scale(&self, replicas: i32) {
        self.statefulsets()
            .patch_scale(
                &self.fullname,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
    }

    pub async fn delete_pod(&self, name: &str) {
        self.pods_api()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    /// `helm uninstall --wait`.
    pub fn uninstall(&self) {
        helm_ok(
            Some(&self.kubeconfig),
            &[
                "uninstall",
                &self.name,
                "-n",
                &self.namespace,
                "--wait",
                "--timeout",
                "120s",
            ],
        );
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn chart_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| chart().display().to_string())
}

fn local_images_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| local_images().display().to_string())
}
