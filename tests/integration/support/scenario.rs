//! The usual shape of a replication test: a namespace for the mirror, a
//! source namespace, some targets, and an operator scoped to the mirror's
//! namespace.

use kube::Client;

use super::operator::{Operator, OperatorBuilder};
use super::{TestNamespace, client, k8s};

pub struct Scenario {
    pub client: Client,
    /// Where the ConfigMirror lives (the operator's --watch-namespace).
    pub home: TestNamespace,
    pub source: TestNamespace,
    pub targets: Vec<TestNamespace>,
}

impl Scenario {
    pub async fn new(prefix: &str, targets: usize) -> Self {
        let client = client().await;
        k8s::install_crd(&client).await;
        let home = TestNamespace::create(&client, &format!("{prefix}-home")).await;
        let source = TestNamespace::create(&client, &format!("{prefix}-src")).await;
        let mut t = Vec::new();
        for i in 0..targets {
            t.push(TestNamespace::create(&client, &format!("{prefix}-t{i}")).await);
        }
        Self {
            client,
            home,
            source,
            targets: t,
        }
    }

    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }

    /// An operator for this scenario's mirrors, not yet started.
    pub fn operator(&self) -> OperatorBuilder {
        Operator::scoped(&[&self.home.name])
    }

    /// Creates a source ConfigMap labelled `replicate=true`.
    pub async fn selected_source(&self, name: &str, data: &[(&str, &str)]) {
        k8s::create_cm(
            &self.client,
            &self.source.name,
            &k8s::configmap(name, &[("replicate", "true")], data),
        )
        .await;
    }

    /// Creates a mirror in `home` over every target, selecting
    /// `replicate=true`; returns its UID.
    pub async fn mirror_selected(&self, name: &str) -> String {
        let spec = k8s::mirror_spec(
            &self.source.name,
            &self.target_names(),
            k8s::match_labels(&[("replicate", "true")]),
        );
        let mirror = k8s::create_mirror(&self.client, &self.home.name, name, spec).await;
        kube::ResourceExt::uid(&mirror).expect("a created mirror has a UID")
    }

    /// Namespaces whose writes count as this test's.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut all = vec![self.home.name.as_str(), self.source.name.as_str()];
        all.extend(self.target_names());
        all
    }
}
