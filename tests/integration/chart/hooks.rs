//! The chart's hooks, as rendered: `helm test`'s check pod and the
//! pre-upgrade/pre-rollback job running `configmirror prepare-upgrade`,
//! each with a ServiceAccount and RBAC of its own, created before it and
//! deleted once it succeeds.

use super::{OPERATOR, TEST, UPGRADE, has_flag, hook, named, render, strings};

/// The `helm.sh/hook-weight` of a rendered hook.
fn weight(doc: &serde_yaml::Value) -> i32 {
    doc["metadata"]["annotations"]["helm.sh/hook-weight"]
        .as_str()
        .expect("a hook weight")
        .parse()
        .unwrap()
}

// Only the check's pod and RBAC are rendered here. The check itself runs in
// tests/integration/pods.rs, where `helm test` passes on a real release whose
// pods run on the node (a faked operator pod no longer works on the shared
// cluster: its kubelet takes the pod over). How `configmirror check` judges
// pods, probes and mirrors, and names what fails, is unit-tested in
// src/check/tests.rs.
#[test]
fn helm_test_renders_a_check_pod_with_rbac_of_its_own() {
    for (sets, sharded) in [(vec![], false), (vec!["replicaCount=3"], true)] {
        let docs = render(&sets);
        let hook = |kind: &str| {
            let d = named(&docs, kind, TEST);
            let annotations = &d["metadata"]["annotations"];
            assert_eq!(annotations["helm.sh/hook"], "test", "{kind}");
            assert_eq!(
                annotations["helm.sh/hook-delete-policy"], "before-hook-creation,hook-succeeded",
                "{kind}"
            );
            (d, weight(d))
        };
        let (pod, pod_weight) = hook("Pod");
        for kind in [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        ] {
            let (_, weight) = hook(kind);
            assert!(weight < pod_weight, "{kind} must exist before the pod");
        }
        let (role, _) = hook("Role");
        assert_eq!(role["metadata"]["namespace"], "configmirror-system");
        assert_eq!(
            role["rules"],
            serde_yaml::from_str::<serde_yaml::Value>(
                "[{apiGroups: [''], resources: [pods], verbs: [list]}]"
            )
            .unwrap()
        );
        let (cluster_role, _) = hook("ClusterRole");
        assert_eq!(
            cluster_role["rules"],
            serde_yaml::from_str::<serde_yaml::Value>(
                "[{apiGroups: [mirror.configmirror.io], resources: [configmirrors], verbs: [get, list]}]"
            )
            .unwrap()
        );
        for binding in ["RoleBinding", "ClusterRoleBinding"] {
            let (b, _) = hook(binding);
            assert_eq!(b["subjects"][0]["name"], TEST);
            assert_eq!(b["roleRef"]["name"], TEST);
        }

        let spec = &pod["spec"];
        assert_eq!(spec["serviceAccountName"], TEST);
        assert_eq!(spec["restartPolicy"], "Never");
        let container = &spec["containers"][0];
        // The operator's own image: no other image to pull or trust.
        assert_eq!(
            container["image"],
            named(&docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["image"]
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        let args = strings(&container["args"]);
        assert_eq!(args[0], "check");
        for arg in [
            "--namespace=configmirror-system",
            "--selector=app.kubernetes.io/instance=r,app.kubernetes.io/name=configmirror-operator",
            "--health-port=8081",
            "--timeout-seconds=180",
        ] {
            assert!(args.contains(&arg.to_string()), "{arg} not in {args:?}");
        }
        assert_eq!(has_flag(&args, "--sharding"), sharded, "{args:?}");
        // The check's own pod is not one of the pods it checks.
        let labels = pod["metadata"]["labels"].as_mapping().unwrap();
        assert_ne!(
            labels
                .get("app.kubernetes.io/name")
                .and_then(|v| v.as_str()),
            Some("configmirror-operator")
        );
    }
    let args = strings(
        &named(
            &render(&["operator.watchNamespaces={a,b}", "test.timeoutSeconds=30"]),
            "Pod",
            TEST,
        )["spec"]["containers"][0]["args"],
    );
    assert!(
        args.contains(&"--watch-namespace=a,b".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--timeout-seconds=30".to_string()),
        "{args:?}"
    );
}

#[test]
fn helm_upgrade_and_rollback_first_run_prepare_upgrade_with_rbac_of_its_own() {
    for (sets, mode) in [
        (vec![], "leader-elect"),
        (vec!["replicaCount=3"], "sharded"),
        (
            vec!["replicaCount=3,sharding.enabled=false"],
            "leader-elect",
        ),
    ] {
        let docs = render(&sets);
        let upgrade_hook = |kind: &str| {
            let d = named(&docs, kind, UPGRADE);
            assert_eq!(hook(d), Some("pre-upgrade,pre-rollback"), "{kind}");
            assert_eq!(
                d["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
                "before-hook-creation,hook-succeeded",
                "{kind}"
            );
            assert_eq!(d["metadata"]["namespace"], "configmirror-system", "{kind}");
            d
        };
        let job = upgrade_hook("Job");
        assert_eq!(weight(job), 0);
        for kind in ["ServiceAccount", "Role", "RoleBinding"] {
            assert!(
                weight(upgrade_hook(kind)) < weight(job),
                "{kind} must exist before the job"
            );
        }
        // Get and scale the operator's StatefulSet, no other; list pods to
        // see the old mode's go.
        assert_eq!(
            upgrade_hook("Role")["rules"],
            serde_yaml::from_str::<serde_yaml::Value>(&format!(
                "[{{apiGroups: [apps], resources: [statefulsets], resourceNames: [{OPERATOR}], verbs: [get]}},
                  {{apiGroups: [apps], resources: [statefulsets/scale], resourceNames: [{OPERATOR}], verbs: [patch]}},
                  {{apiGroups: [''], resources: [pods], verbs: [list]}}]"
            ))
            .unwrap()
        );
        let binding = upgrade_hook("RoleBinding");
        assert_eq!(
            binding["subjects"],
            serde_yaml::from_str::<serde_yaml::Value>(&format!(
                "[{{kind: ServiceAccount, name: {UPGRADE}, namespace: configmirror-system}}]"
            ))
            .unwrap()
        );
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["roleRef"]["name"], UPGRADE);
        assert!(
            !docs
                .iter()
                .any(|d| d["metadata"]["name"] == UPGRADE && hook(d).is_none()),
            "a prepare-upgrade object outside the hook"
        );

        let spec = &job["spec"]["template"]["spec"];
        assert_eq!(spec["serviceAccountName"], UPGRADE);
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        let container = &spec["containers"][0];
        assert_eq!(
            strings(&container["args"]),
            [
                "prepare-upgrade".to_string(),
                "--namespace=configmirror-system".into(),
                format!("--statefulset={OPERATOR}"),
                format!("--mode={mode}"),
                "--timeout-seconds=120".into(),
            ],
            "{sets:?}"
        );
        // The operator's image, pod and container security contexts.
        let operator = &named(&docs, "StatefulSet", OPERATOR)["spec"];
        let operator_pod = &operator["template"]["spec"];
        assert_eq!(container["image"], operator_pod["containers"][0]["image"]);
        assert_eq!(spec["securityContext"], operator_pod["securityContext"]);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            container["securityContext"],
            operator_pod["containers"][0]["securityContext"]
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        // It waits for the pods the operator's selector picks: never its own.
        let labels = job["spec"]["template"]["metadata"]["labels"]
            .as_mapping()
            .unwrap();
        assert!(
            operator["selector"]["matchLabels"]
                .as_mapping()
                .unwrap()
                .iter()
                .any(|(k, v)| labels.get(k) != Some(v)),
            "the operator's selector matches the job's pod"
        );
    }
}
