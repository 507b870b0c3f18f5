//! The chart's admission policy and aggregated roles: on by default, each
//! off by its own value, named after the release, and the same objects as
//! the kubectl-only manifests in deploy/manifests.

use super::{OPERATOR, render, try_named};

const POLICY: &str = "r-configmirror-operator-author-rights";

fn manifest(path: &str, kind: &str, name: &str) -> serde_yaml::Value {
    let yaml = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    yaml.split("\n---\n")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {path}"))
}

/// The chart reads the generated files; deploy/generate writes both.
#[test]
fn the_charts_files_are_the_kubectl_manifests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["admission-policy.yaml", "aggregated-roles.yaml"] {
        let chart = std::fs::read(root.join("helm/configmirror-operator/files").join(file));
        let deploy = std::fs::read(root.join("deploy/manifests").join(file));
        assert_eq!(chart.unwrap(), deploy.unwrap(), "{file}");
    }
}

#[test]
fn the_policy_binding_and_aggregated_roles_render_by_default_and_each_turns_off() {
    let defaults = render(&[]);
    let policy = try_named(&defaults, "ValidatingAdmissionPolicy", POLICY)
        .expect("the policy renders by default");
    let shipped = manifest(
        "deploy/manifests/admission-policy.yaml",
        "ValidatingAdmissionPolicy",
        "configmirror-author-rights",
    );
    assert_eq!(
        policy["spec"], shipped["spec"],
        "the chart's policy is deploy/'s"
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let binding = try_named(&defaults, "ValidatingAdmissionPolicyBinding", POLICY)
        .expect("the binding renders by default");
    assert_eq!(binding["spec"]["policyName"], POLICY);
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
    for role in ["view", "edit", "admin"] {
        let name = format!("{OPERATOR}-{role}");
        let rendered = try_named(&defaults, "ClusterRole", &name)
            .unwrap_or_else(|| panic!("no ClusterRole {name} by default"));
        let label = format!("rbac.authorization.k8s.io/aggregate-to-{role}");
        assert_eq!(rendered["metadata"]["labels"][label.as_str()], "true");
        let shipped = manifest(
            "deploy/manifests/aggregated-roles.yaml",
            "ClusterRole",
            &format!("configmirror-{role}"),
        );
        assert_eq!(rendered["rules"], shipped["rules"], "{name}");
    }

    let off = render(&["admission.enabled=false"]);
    assert!(
        !off.iter().any(|d| d["kind"] == "ValidatingAdmissionPolicy"
            || d["kind"] == "ValidatingAdmissionPolicyBinding"),
        "admission.enabled=false still renders the policy"
    );
    assert!(try_named(&off, "ClusterRole", &format!("{OPERATOR}-admin")).is_some());
    let off = render(&["rbac.aggregateToDefaultRoles=false"]);
    assert!(
        !off.iter().any(|d| d["metadata"]["labels"]
            .as_mapping()
            .is_some_and(|l| l.keys().any(|k| k
                .as_str()
                .is_some_and(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))))),
        "rbac.aggregateToDefaultRoles=false still renders aggregated roles"
    );
    assert!(try_named(&off, "ValidatingAdmissionPolicy", POLICY).is_some());
}
