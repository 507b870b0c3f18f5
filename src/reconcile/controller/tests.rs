use super::*;
use crate::api::ConfigMirrorSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn mirror(ns: &str, name: &str, uid: &str, spec: ConfigMirrorSpec) -> Arc<ConfigMirror> {
    let mut m = ConfigMirror::new(name, spec);
    m.metadata.namespace = Some(ns.into());
    m.metadata.uid = Some(uid.into());
    Arc::new(m)
}

fn spec(
    source: &str,
    targets: &[&str],
    app: Option<&str>,
    any_namespace: bool,
) -> ConfigMirrorSpec {
    ConfigMirrorSpec {
        source_namespace: source.into(),
        target_namespaces: targets.iter().map(|s| s.to_string()).collect(),
        target_namespace_selector: any_namespace.then(LabelSelector::default),
        selector: app.map(|a| LabelSelector {
            match_labels: Some([("app".to_string(), a.to_string())].into()),
            match_expressions: None,
        }),
        database: None,
    }
}

fn names(refs: Vec<ObjectRef<ConfigMirror>>) -> Vec<String> {
    let mut n: Vec<String> = refs.into_iter().map(|r| r.name).collect();
    n.sort();
    n
}

fn world() -> Vec<Arc<ConfigMirror>> {
    vec![
        mirror(
            "team-a",
            "web",
            "u1",
            spec("src", &["dev"], Some("web"), false),
        ),
        mirror(
            "team-a",
            "api",
            "u2",
            spec("src", &["prod"], Some("api"), false),
        ),
        mirror("team-a", "all", "u3", spec("other", &[], None, true)),
        mirror(
            "team-b",
            "web",
            "u4",
            spec("src", &["dev"], Some("web"), false),
        ),
    ]
}

#[test]
fn source_changes_reach_mirrors_whose_selector_matched_before_or_after() {
    let scope = Scope::new(["team-a".to_string()]);
    let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
    let t = Trigger::Source {
        namespace: "src".into(),
        labels: vec![labels("web"), labels("api")],
    };
    assert_eq!(names(mirrors_for(&t, &world(), &scope)), ["api", "web"]);
    let t = Trigger::Source {
        namespace: "src".into(),
        labels: vec![labels("db")],
    };
    assert!(mirrors_for(&t, &world(), &scope).is_empty());
}

#[test]
fn replica_and_namespace_changes_reach_the_right_mirrors() {
    let scope = Scope::default();
    let t = Trigger::Replica {
        mirror_uid: "u2".into(),
    };
    assert_eq!(names(mirrors_for(&t, &world(), &scope)), ["api"]);
    let t = Trigger::Namespace {
        name: "prod".into(),
    };
    assert_eq!(names(mirrors_for(&t, &world(), &scope)), ["all", "api"]);
    let t = Trigger::Namespace { name: "src".into() };
    assert_eq!(
        names(mirrors_for(&t, &world(), &scope)),
        ["all", "api", "web", "web"]
    );
}

#[test]
fn wanted_sources_groups_selectors_by_namespace_in_scope() {
    let scope = Scope::new(["team-a".to_string()]);
    let open = NamespacePolicy::default();
    let wanted = wanted_sources(&world(), &scope, &open, &Namespaces::new());
    assert_eq!(wanted.keys().collect::<Vec<_>>(), ["other", "src"]);
    assert_eq!(wanted["src"].len(), 2);
    assert!(wanted["other"].iter().next().unwrap().is_everything());
    // A source the policy denies is not watched for anyone.
    let protected = NamespacePolicy {
        protected: ["other".to_string()].into(),
        ..Default::default()
    };
    let wanted = wanted_sources(&world(), &scope, &protected, &Namespaces::new());
    assert_eq!(wanted.keys().collect::<Vec<_>>(), ["src"]);
}

#[test]
fn only_spec_deletion_and_finalizer_changes_pass_the_predicate() {
    let m = world()[0].as_ref().clone();
    let base = mirror_predicate(&m);
    let mut status_only = m.clone();
    status_only.status = Some(Default::default());
    status_only.metadata.resource_version = Some("99".into());
    assert_eq!(mirror_predicate(&status_only), base);
    let mut new_spec = m.clone();
    new_spec.metadata.generation = Some(2);
    assert_ne!(mirror_predicate(&new_spec), base);
    let mut finalized = m.clone();
    finalized.metadata.finalizers = Some(vec!["x".into()]);
    assert_ne!(mirror_predicate(&finalized), base);
}
