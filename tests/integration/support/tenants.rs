//! Admission by the author's own rights, on for every test: the policy, its
//! binding and the aggregated roles from deploy/manifests (what a
//! kubectl-only install applies), and users whose rights come from their
//! own bindings, acting through impersonation.

use std::sync::atomic::{AtomicBool, Ordering};

use configmirror::api::{ConfigMirror, ConfigMirrorSpec};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Config, Resource};
use serde::Deserialize;

use super::k8s::WAIT;
use super::{cluster_var, eventually, unique};

const POLICY_YAML: &str = include_str!("../../../deploy/manifests/admission-policy.yaml");
const ROLES_YAML: &str = include_str!("../../../deploy/manifests/aggregated-roles.yaml");

/// A user bound, cluster-wide, to configmirror-edit and nothing else: may
/// create a ConfigMirror anywhere, may read no ConfigMap, so the policy is
/// in force exactly when it refuses this user's mirror.
const PROBE_USER: &str = "configmirror-tests:admission-probe";

/// Set once this process saw the policy refuse the probe.
static IN_FORCE: AtomicBool = AtomicBool::new(false);

fn documents<T: serde::de::DeserializeOwned>(yaml: &str, kind: &str) -> Vec<T> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("a YAML document"))
        .filter(|doc| doc["kind"] == kind)
        .map(|doc| serde_yaml::from_value(doc).unwrap_or_else(|e| panic!("a {kind}: {e}")))
        .collect()
}

async fn apply<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let name = object.meta().name.clone().expect("a named object");
    api.patch(
        &name,
        &PatchParams::apply("configmirror-tests").force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// Applies (or refreshes) the policy, its binding and the aggregated roles,
/// and waits until the policy refuses a mirror and the built-in `admin`
/// role carries the ConfigMirror rights. Needs the CRD established.
pub async fn install_admission(client: &Client) {
    for role in documents::<ClusterRole>(ROLES_YAML, "ClusterRole") {
        apply(&Api::all(client.clone()), &role).await;
    }
    for policy in documents::<ValidatingAdmissionPolicy>(POLICY_YAML, "ValidatingAdmissionPolicy") {
        apply(&Api::all(client.clone()), &policy).await;
    }
    let bindings = documents::<ValidatingAdmissionPolicyBinding>(
        POLICY_YAML,
        "ValidatingAdmissionPolicyBinding",
    );
    for binding in bindings {
        apply(&Api::all(client.clone()), &binding).await;
    }
    let probe_binding = cluster_binding_object(
        "configmirror-tests-admission-probe",
        PROBE_USER,
        "configmirror-edit",
    );
    apply(&Api::all(client.clone()), &probe_binding).await;
    if IN_FORCE.load(Ordering::SeqCst) {
        return;
    }
    let probe = user_client(PROBE_USER).await;
    eventually("the admission policy to be in force", WAIT, || {
        let probe = probe.clone();
        async move {
            let spec = ConfigMirrorSpec {
                source_namespace: "kube-system".into(),
                target_namespaces: vec!["default".into()],
                ..Default::default()
            };
            let refused = dry_run_create(&probe, "default", "admission-probe", spec)
                .await
                .err()?;
            refused
                .contains("you may not list configmaps in kube-system")
                .then_some(())
        }
    })
    .await;
    eventually("configmirror-admin aggregated into admin", WAIT, || async {
        let admin = Api::<ClusterRole>::all(client.clone())
            .get("admin")
            .await
            .ok()?;
        serde_json::to_string(&admin.rules)
            .ok()?
            .contains("configmirrors")
            .then_some(())
    })
    .await;
    IN_FORCE.store(true, Ordering::SeqCst);
}

/// A client acting as `user` (no groups but system:authenticated, which the
/// API server adds): its rights are the bindings that name it.
pub async fn user_client(user: &str) -> Client {
    let path = cluster_var("KUBECONFIG");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(user.into());
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("configmirror-tests"),
    ));
    Client::try_from(config).expect("client")
}

/// A unique user name, so parallel tests never share rights.
pub fn user(prefix: &str) -> String {
    unique(&format!("configmirror-tests:{prefix}"))
}

/// Binds `user` to `cluster_role` in `namespace` (deleted with it).
pub async fn grant(client: &Client, namespace: &str, user: &str, cluster_role: &str) {
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(unique(cluster_role)),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        role_ref: role_ref(cluster_role),
        subjects: Some(vec![user_subject(user)]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("binding {user} to {cluster_role} in {namespace}: {e}"));
    // Every role the tests grant (view, edit, admin, configmirror-*) lets
    // its holder get ConfigMirrors.
    until_allowed(client, user, namespace, "get", "configmirrors").await;
}

/// Waits until the API server's authorizer lets `user` do `verb` on
/// `resource` (of the ConfigMirror group; `kind/sub` for a subresource) in
/// `namespace`. A binding reaches the authorizer's cache a moment after it
/// is stored; on a loaded machine that moment is long enough for the next
/// request to be judged without it, and refused by RBAC before admission
/// ever sees it.
pub async fn until_allowed(
    client: &Client,
    user: &str,
    namespace: &str,
    verb: &str,
    resource: &str,
) {
    let (resource, subresource) = match resource.split_once('/') {
        Some((kind, sub)) => (kind, Some(sub.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                group: Some(ConfigMirror::group(&()).into_owned()),
                resource: Some(resource.into()),
                subresource,
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    let what = format!("{user} to be allowed to {verb} {resource} in {namespace}");
    eventually(&what, WAIT, || async {
        let answer = reviews.create(&PostParams::default(), &review).await.ok()?;
        answer.status?.allowed.then_some(())
    })
    .await;
}

fn role_ref(cluster_role: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: cluster_role.into(),
    }
}

fn user_subject(user: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: user.into(),
        namespace: None,
    }
}

fn cluster_binding_object(name: &str, user: &str, cluster_role: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: role_ref(cluster_role),
        subjects: Some(vec![user_subject(user)]),
    }
}

/// Creates the mirror as the client's user; the API server's message on
/// refusal.
pub async fn create_as(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: ConfigMirrorSpec,
) -> Result<ConfigMirror, String> {
    create_with(client, namespace, name, spec, &PostParams::default()).await
}

/// As `create_as`, stored nowhere: for checks that need no mirror after.
pub async fn dry_run_create(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: ConfigMirrorSpec,
) -> Result<ConfigMirror, String> {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    create_with(client, namespace, name, spec, &params).await
}

async fn create_with(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: ConfigMirrorSpec,
    params: &PostParams,
) -> Result<ConfigMirror, String> {
    Api::<ConfigMirror>::namespaced(client.clone(), namespace)
        .create(params, &ConfigMirror::new(name, spec))
        .await
        .map_err(refusal)
}

/// What a refusal says: the API server's message, with its code.
pub fn refusal(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => panic!("not an answer from the API server: {other}"),
    }
}
