//! The chart's namespace policy values reach the operator as flags.

use super::*;

#[test]
fn the_namespace_policy_values_become_flags() {
    let args = operator_args(&render(&[]));
    assert!(
        args.contains(&"--protected-namespaces=kube-system,kube-public,kube-node-lease".into()),
        "{args:?}"
    );
    assert!(!has_flag(&args, "--allow-protected-namespaces"));
    assert!(!has_flag(&args, "--require-source-opt-in"));

    let args = operator_args(&render(&[
        "operator.protectedNamespaces={kube-system,vault}",
        "operator.allowProtectedNamespaces=true",
        "operator.requireSourceOptIn=true",
    ]));
    assert!(args.contains(&"--protected-namespaces=kube-system,vault".into()));
    assert!(has_flag(&args, "--allow-protected-namespaces"));
    assert!(has_flag(&args, "--require-source-opt-in"));

    let error = render_error(&["operator.protectedNamespaces={Kube_System}"]);
    assert!(error.contains("/operator/protectedNamespaces"), "{error}");
}
