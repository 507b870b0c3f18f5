//! Admission by the author's own rights: a ConfigMirror is admitted only
//! when the user creating it (or changing its spec) could read its sources,
//! write its targets and read its database Secret themselves, and the
//! aggregated roles give namespace admins, editors and viewers ConfigMirror
//! rights the normal way. Users act by impersonation; their rights are the
//! RoleBindings each test gives them.

use configmirror::api::{ConfigMirror, ConfigMirrorSpec, DatabaseSpec, SecretRef};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::tenants::{
    create_as, dry_run_create, grant, refusal, until_allowed, user, user_client,
};
use crate::support::{TestNamespace, client};

/// `team-a` (where the mirror lives and what it may write) and `team-b`
/// (a source its author may or may not read).
struct Teams {
    admin: Client,
    a: TestNamespace,
    b: TestNamespace,
}

impl Teams {
    async fn new(prefix: &str) -> Self {
        let admin = client().await;
        install_crd(&admin).await;
        let a = TestNamespace::create(&admin, &format!("{prefix}-team-a")).await;
        let b = TestNamespace::create(&admin, &format!("{prefix}-team-b")).await;
        Self { admin, a, b }
    }

    /// A user who is admin in team-a and nothing else.
    async fn team_a_admin(&self) -> Client {
        let name = user("team-a-admin");
        grant(&self.admin, &self.a.name, &name, "admin").await;
        user_client(&name).await
    }

    /// A user who is admin in team-a and may read team-b.
    async fn team_a_admin_reading_b(&self) -> Client {
        self.team_a_admin_reading_b_named().await.1
    }

    async fn team_a_admin_reading_b_named(&self) -> (String, Client) {
        let name = user("team-a-admin-reads-b");
        grant(&self.admin, &self.a.name, &name, "admin").await;
        grant(&self.admin, &self.b.name, &name, "view").await;
        let client = user_client(&name).await;
        (name, client)
    }

    fn b_into_a(&self) -> ConfigMirrorSpec {
        mirror_spec(&self.b.name, &[&self.a.name], None)
    }
}

fn assert_refused(result: Result<ConfigMirror, String>, says: &str) {
    match result {
        Ok(m) => panic!(
            "admitted {}, expected a refusal saying {says:?}",
            m.name_any()
        ),
        Err(message) => assert!(
            message.contains(says) && message.contains("(403)"),
            "refused, but with {message:?}, not {says:?}"
        ),
    }
}

#[tokio::test]
async fn a_mirror_of_a_namespace_its_author_cannot_read_is_refused_and_one_they_can_replicates() {
    let t = Teams::new("adm-read").await;
    let alice = t.team_a_admin().await;
    assert_refused(
        create_as(&alice, &t.a.name, "m", t.b_into_a()).await,
        &format!("you may not list configmaps in {}", t.b.name),
    );
    assert!(get_mirror(&t.admin, &t.a.name, "m").await.is_none());

    // Admin in team-a alone may create a ConfigMirror at all only through
    // configmirror-admin, aggregated into the built-in admin role.
    let _op = Operator::scoped(&[&t.a.name]).start().await;
    create_cm(
        &t.admin,
        &t.b.name,
        &configmap("settings", &[], &[("k", "v")]),
    )
    .await;
    let bob = t.team_a_admin_reading_b().await;
    let mirror = create_as(&bob, &t.a.name, "m", t.b_into_a())
        .await
        .expect("a user who may read team-b may mirror it");
    let uid = mirror.uid().unwrap();
    wait_cm(&t.admin, &t.a.name, "settings", "replicated", |cm| {
        is_replica(cm, &uid, &[("k", "v")])
    })
    .await;
}

#[tokio::test]
async fn targets_a_selector_and_a_secret_beyond_the_authors_rights_are_refused() {
    let t = Teams::new("adm-write").await;
    let other = TestNamespace::create(&t.admin, "adm-write-other").await;
    let bob = t.team_a_admin_reading_b().await;

    // Writable, then one that is not: the refusal names that one.
    let spec = mirror_spec(&t.b.name, &[&t.a.name, &other.name], None);
    assert_refused(
        dry_run_create(&bob, &t.a.name, "m", spec).await,
        &format!("you may not create configmaps in {}", other.name),
    );

    let mut spec = t.b_into_a();
    spec.target_namespace_selector = Some(LabelSelector::default());
    assert_refused(
        dry_run_create(&bob, &t.a.name, "m", spec).await,
        "you may not create configmaps cluster-wide (needed for targetNamespaceSelector)",
    );

    // The Secret's namespace defaults to the mirror's, where bob is admin.
    for namespace in [&t.a.name, &other.name] {
        Api::<Secret>::namespaced(t.admin.clone(), namespace)
            .create(&PostParams::default(), &db_secret())
            .await
            .unwrap();
    }
    let with_secret = |namespace: Option<&str>| {
        let mut spec = t.b_into_a();
        spec.database = Some(DatabaseSpec {
            enabled: true,
            secret_ref: Some(SecretRef {
                name: "db".into(),
                namespace: namespace.map(String::from),
            }),
        });
        spec
    };
    dry_run_create(&bob, &t.a.name, "m", with_secret(None))
        .await
        .expect("bob may get team-a's Secret");
    assert_refused(
        dry_run_create(&bob, &t.a.name, "m", with_secret(Some(&other.name))).await,
        &format!("you may not get secret {}/db", other.name),
    );
    // Persistence off: the operator never reads the Secret, nothing to check.
    let mut off = with_secret(Some(&other.name));
    off.database.as_mut().unwrap().enabled = false;
    dry_run_create(&bob, &t.a.name, "m", off)
        .await
        .expect("a Secret the operator will not read is not checked");
}

fn db_secret() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            ..Default::default()
        },
        string_data: Some([("uri".to_string(), "postgres://x@db/x".to_string())].into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_spec_change_is_checked_again_and_nothing_else_is() {
    let t = Teams::new("adm-update").await;
    let other = TestNamespace::create(&t.admin, "adm-update-other").await;
    let bob = t.team_a_admin_reading_b().await;
    create_as(&bob, &t.a.name, "m", t.b_into_a())
        .await
        .expect("admitted");

    let add_other = serde_json::json!({"spec": {"targetNamespaces": [t.a.name, other.name]}});
    let refused = Api::<ConfigMirror>::namespaced(bob.clone(), &t.a.name)
        .patch("m", &PatchParams::default(), &Patch::Merge(&add_other))
        .await
        .map_err(refusal);
    assert_refused(
        refused,
        &format!("you may not create configmaps in {}", other.name),
    );
    let stored = get_mirror(&t.admin, &t.a.name, "m").await.unwrap();
    assert_eq!(stored.spec.target_namespaces, vec![t.a.name.clone()]);

    // A mirror bob could not author, made by the cluster admin: bob may
    // still label it (the spec is unchanged), and a status write (the
    // operator's, through the status subresource) is not an author's.
    let admins = mirror_spec(&t.b.name, &[&t.a.name, &other.name], None);
    create_mirror(&t.admin, &t.a.name, "admins", admins).await;
    let mirrors = Api::<ConfigMirror>::namespaced(bob.clone(), &t.a.name);
    let label = serde_json::json!({"metadata": {"labels": {"owner": "bob"}}});
    mirrors
        .patch("admins", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("a metadata-only change asks for no right");
    let status_writer = user("status-writer");
    grant(&t.admin, &t.a.name, &status_writer, "configmirror-edit").await;
    grant_status_patch(&t.admin, &t.a.name, &status_writer).await;
    let status = serde_json::json!({"status": {"sources": 7}});
    Api::<ConfigMirror>::namespaced(user_client(&status_writer).await, &t.a.name)
        .patch_status("admins", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("the status subresource is not checked");
}

/// A Role allowing `configmirrors/status` patch: what the operator has.
async fn grant_status_patch(admin: &Client, namespace: &str, user: &str) {
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
    let role = Role {
        metadata: ObjectMeta {
            name: Some("status-writer".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["mirror.configmirror.io".into()]),
            resources: Some(vec!["configmirrors/status".into()]),
            verbs: vec!["patch".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "status-writer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "status-writer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    });
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding).unwrap(),
        )
        .await
        .unwrap();
    until_allowed(admin, user, namespace, "patch", "configmirrors/status").await;
}

#[tokio::test]
async fn a_viewer_lists_mirrors_and_creates_none() {
    let t = Teams::new("adm-view").await;
    create_mirror(&t.admin, &t.a.name, "m", t.b_into_a()).await;
    let viewer = user("viewer");
    grant(&t.admin, &t.a.name, &viewer, "view").await;
    let viewer = user_client(&viewer).await;
    let listed = Api::<ConfigMirror>::namespaced(viewer.clone(), &t.a.name)
        .list(&ListParams::default())
        .await
        .expect("view includes configmirror-view");
    assert_eq!(listed.items.len(), 1);
    let refused = create_as(&viewer, &t.a.name, "mine", t.b_into_a())
        .await
        .expect_err("view grants no create");
    // RBAC's refusal, before admission: the policy never saw it.
    assert!(
        refused.contains("cannot create resource \"configmirrors\""),
        "{refused}"
    );
}

#[tokio::test]
async fn long_target_lists_pass_with_cluster_wide_rights_and_are_refused_clearly_without() {
    let t = Teams::new("adm-long").await;
    let names: Vec<String> = (0..configmirror::api::MAX_TARGET_NAMESPACES)
        .map(|i| format!("{}-t{i}", t.a.name))
        .collect();
    let many = ConfigMirrorSpec {
        target_namespaces: names,
        ..t.b_into_a()
    };
    // The cluster admin may create ConfigMaps everywhere: one check covers
    // all 5,000, well inside the policy's cost budget.
    dry_run_create(&t.admin, &t.a.name, "m", many.clone())
        .await
        .expect("5,000 targets by the cluster admin");
    let (bob_name, bob) = t.team_a_admin_reading_b_named().await;
    assert_refused(
        dry_run_create(&bob, &t.a.name, "m", many).await,
        "targetNamespaces lists 5000 namespaces, more than the 20 this policy checks one by one",
    );
    // 21 writable namespaces are refused the same way: the bound, not the
    // rights, decides past 20.
    let mut writable = Vec::new();
    for _ in 0..20 {
        let ns = TestNamespace::create(&t.admin, "adm-long-w").await;
        grant(&t.admin, &ns.name, &bob_name, "edit").await;
        writable.push(ns);
    }
    let twenty: Vec<&str> = writable.iter().map(|n| n.name.as_str()).collect();
    dry_run_create(&bob, &t.a.name, "m", mirror_spec(&t.b.name, &twenty, None))
        .await
        .expect("20 writable targets are checked one by one and admitted");
    let mut twenty_one = twenty.clone();
    twenty_one.push(&t.a.name);
    assert_refused(
        dry_run_create(
            &bob,
            &t.a.name,
            "m",
            mirror_spec(&t.b.name, &twenty_one, None),
        )
        .await,
        "targetNamespaces lists 21 namespaces",
    );
}
