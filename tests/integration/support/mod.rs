//! What every integration test needs: the cluster's coordinates, clients with
//! a recognisable user agent, throw-away namespaces, the audit log and a
//! private PostgreSQL.

pub mod audit;
pub mod cluster;
pub mod db;
pub mod helm;
pub mod k8s;
pub mod operator;
pub mod postgres;
pub mod proxy;
pub mod release;
pub mod scenario;
pub mod shard;
pub mod tenants;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};

/// The label every test namespace carries, so a person can find leftovers.
pub const TEST_LABEL: &str = "configmirror.io/test";

/// An environment variable the cluster script exports; panics (the test
/// fails) with the way to fix it when it is missing.
pub fn cluster_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: integration tests need the local control plane. \
             Run `deploy/local/cluster up && eval \"$(deploy/local/cluster env)\"`, \
             or the README's test command"
        )
    })
}

pub fn database_url() -> String {
    cluster_var("DATABASE_URL")
}

/// A random lowercase suffix for names that must not collide between tests.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

/// A client for the local API server whose requests carry `user_agent`, so
/// the audit log can tell this test's writes from everyone else's.
pub async fn client_with_agent(user_agent: &str) -> Client {
    client_for(std::path::Path::new(&cluster_var("KUBECONFIG")), user_agent).await
}

/// A client for the cluster of `kubeconfig`.
pub async fn client_for(kubeconfig: &std::path::Path, user_agent: &str) -> Client {
    let options = kube::config::KubeConfigOptions::default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
    let mut config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .expect("kubeconfig");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(user_agent).expect("user agent"),
    ));
    Client::try_from(config).expect("client")
}

pub async fn client() -> Client {
    client_with_agent("configmirror-tests").await
}

/// Creates a labelled namespace with a unique name; deleted when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        Self::create_labelled(client, prefix, &[]).await
    }

    pub async fn create_labelled(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        Self::create_exact(client, unique(prefix), labels).await
    }

    /// A namespace with exactly this name.
    pub async fn create_named(client: &Client, name: &str) -> Self {
        Self::create_exact(client, name.to_string(), &[]).await
    }

    async fn create_exact(client: &Client, name: String, labels: &[(&str, &str)]) -> Self {
        let mut all = std::collections::BTreeMap::from([(TEST_LABEL.to_string(), "true".into())]);
        all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await: delete from a runtime and client of its own (a
        // kube Client's worker lives on the runtime that made it, which is
        // blocked right here). Best effort: the cluster is throw-away anyway.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    let client = client().await;
                    // The test's operator is gone by now: release its
                    // finalizers, or the namespace would wait forever.
                    let mirrors =
                        Api::<configmirror::api::ConfigMirror>::namespaced(client.clone(), &name);
                    if let Ok(list) = mirrors.list_metadata(&Default::default()).await {
                        for m in list.items {
                            let patch = serde_json::json!({"metadata": {"finalizers": null}});
                            let _ = mirrors
                                .patch_metadata(
                                    &m.metadata.name.unwrap_or_default(),
                                    &Default::default(),
                                    &kube::api::Patch::Merge(&patch),
                                )
                                .await;
                        }
                    }
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await;
                });
            }
        })
        .join();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kubeconfig for `namespace/service_account` (a TokenRequest token) on
/// the cluster of `admin_kubeconfig`: to run the operator as the chart's
/// ServiceAccount would run it.
pub async fn service_account_kubeconfig(
    admin: &Client,
    admin_kubeconfig: &std::path::Path,
    namespace: &str,
    service_account: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{service_account}: {e}"))
        .status
        .expect("a token")
        .token;
    let mut kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(admin_kubeconfig).unwrap()).unwrap();
    kc["users"][0]["user"] = serde_yaml::from_str(&format!("token: {token}")).unwrap();
    let path = dir.join(format!("{service_account}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

/// The wall clock in seconds since the epoch, as the audit log and
/// PostgreSQL's timestamps give it.
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
