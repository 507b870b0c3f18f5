//! The run's objects on the cluster: namespaces, source ConfigMaps, mirrors
//! (as dynamic objects with only the reference-compatible spec fields), and
//! their cleanup.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};

use crate::cli::Cli;

pub const RUN_LABEL: &str = "configmirror-loadtest/run";

pub fn mirror_resource() -> ApiResource {
    ApiResource {
        group: "mirror.configmirror.io".into(),
        version: "v1alpha1".into(),
        api_version: "mirror.configmirror.io/v1alpha1".into(),
        kind: "ConfigMirror".into(),
        plural: "configmirrors".into(),
    }
}

pub struct Run {
    pub id: String,
    pub client: Client,
    pub concurrency: usize,
    pub payload: String,
    pub quiet: bool,
    namespaces: Mutex<Vec<String>>,
}

/// A client with the operator's own transport, so that the ceiling and the
/// operator are measured over the same kind of connection.
pub async fn client(
    kubeconfig: Option<&std::ffi::OsString>,
    agent: &str,
) -> anyhow::Result<Client> {
    let args = configmirror::config::KubeconfigArgs {
        kubeconfig: kubeconfig.cloned(),
        context: None,
    };
    let mut config = configmirror::kubeclient::load_config(&args).await?;
    configmirror::kubeclient::with_user_agent(&mut config, agent)?;
    Ok(configmirror::kubeclient::plain(&config)?)
}

impl Run {
    pub async fn new(cli: &Cli) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
        let client = client(
            cli.kubeconfig.as_ref(),
            &format!("configmirror-loadtest/{id}"),
        )
        .await?;
        Ok(Self {
            payload: "x".repeat(cli.payload_bytes),
            id,
            client,
            concurrency: cli.concurrency.max(1),
            quiet: cli.quiet,
            namespaces: Mutex::new(Vec::new()),
        })
    }

    /// `lt-<run>-<suffix>`: every name the run creates shares its prefix.
    pub fn name(&self, suffix: &str) -> String {
        format!("lt-{}-{suffix}", self.id)
    }

    pub fn prefix(&self) -> String {
        format!("lt-{}-", self.id)
    }

    pub fn home(&self) -> String {
        self.name("home")
    }

    pub fn source(&self) -> String {
        self.name("src")
    }

    pub fn targets(&self, n: u32) -> Vec<String> {
        (0..n).map(|i| self.name(&format!("t{i:04}"))).collect()
    }

    pub fn progress(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        if self.quiet {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>24} [{bar:40}] {pos}/{len} {elapsed_precise}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }

    /// Creates namespaces `concurrency` at a time.
    pub async fn create_namespaces(&self, names: &[String]) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let known = self.namespaces.lock().unwrap().clone();
        let names: Vec<String> = names
            .iter()
            .filter(|n| !known.contains(n))
            .cloned()
            .collect();
        let names = &names[..];
        let bar = self.progress(names.len() as u64, "namespaces");
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let (api, bar, id) = (api.clone(), bar.clone(), self.id.clone());
                async move {
                    let ns = Namespace {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(BTreeMap::from([(RUN_LABEL.to_string(), id)])),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    api.create(&PostParams::default(), &ns)
                        .await
                        .with_context(|| format!("namespace {name}"))?;
                    bar.inc(1);
                    Ok(())
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        bar.finish_and_clear();
        self.namespaces
            .lock()
            .unwrap()
            .extend(names.iter().cloned());
        results.into_iter().collect()
    }

    /// Waits until the controller manager has finished with new namespaces
    /// (each gets `kube-root-ca.crt` and a ServiceAccount), so its writes do
    /// not compete with what is measured next.
    pub async fn settle(&self, namespaces: &[String]) -> anyhow::Result<()> {
        let api: Api<ConfigMap> = Api::all(self.client.clone());
        let wanted: std::collections::HashSet<&String> = namespaces.iter().collect();
        let deadline = Instant::now() + Duration::from_secs(300);
        let bar = self.progress(namespaces.len() as u64, "namespaces settling");
        loop {
            let list = api
                .list_metadata(&ListParams::default().fields("metadata.name=kube-root-ca.crt"))
                .await?;
            let done = list
                .items
                .iter()
                .filter(|m| {
                    m.metadata
                        .namespace
                        .as_ref()
                        .is_some_and(|ns| wanted.contains(ns))
                })
                .count();
            bar.set_position(done as u64);
            if done >= wanted.len() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "new namespaces did not settle");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bar.finish_and_clear();
        // The ServiceAccounts come in the same pass; give it a moment to finish.
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }

    /// Source content for `version`: the version number plus the payload.
    pub fn content(&self, version: u64) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("version".to_string(), version.to_string()),
            ("payload".to_string(), self.payload.clone()),
        ])
    }

    pub async fn create_source(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        version: u64,
    ) -> anyhow::Result<()> {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            data: Some(self.content(version)),
            ..Default::default()
        };
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &cm)
            .await
            .with_context(|| format!("creating {namespace}/{name}"))?;
        Ok(())
    }

    pub async fn update_source(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> anyhow::Result<()> {
        let patch = serde_json::json!({"data": {"version": version.to_string()}});
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("updating {namespace}/{name}"))?;
        Ok(())
    }

    /// A ConfigMirror with only the reference's fields: sourceNamespace,
    /// targetNamespaces, selector.
    pub async fn create_mirror(
        &self,
        name: &str,
        targets: &[String],
        selector: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.create_mirror_from(name, &self.source(), targets, selector)
            .await
    }

    /// The same, reading another source namespace than the run's.
    pub async fn create_mirror_from(
        &self,
        name: &str,
        source_namespace: &str,
        targets: &[String],
        selector: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let ar = mirror_resource();
        let mut obj = DynamicObject::new(name, &ar).within(&self.home());
        obj.data = serde_json::json!({"spec": {
            "sourceNamespace": source_namespace,
            "targetNamespaces": targets,
            "selector": {"matchLabels": selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        }});
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.home(), &ar)
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating ConfigMirror {name} (is the CRD installed?)"))?;
        Ok(())
    }

    /// Deletes the run's mirrors (their finalizers run while the operator is
    /// up), then its namespaces.
    pub async fn cleanup(&self) {
        let ar = mirror_resource();
        let mirrors = Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.home(), &ar);
        let _ = mirrors
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match mirrors.list_metadata(&ListParams::default()).await {
                Ok(list) if !list.items.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                _ => break,
            }
        }
        let names = std::mem::take(&mut *self.namespaces.lock().unwrap());
        let api: Api<Namespace> = Api::all(self.client.clone());
        futures::stream::iter(names)
            .for_each_concurrent(self.concurrency, |name| {
                let api = api.clone();
                async move {
                    let _ = api.delete(&name, &DeleteParams::background()).await;
                }
            })
            .await;
    }
}
