//! The Helm chart: it lints and renders, the mode and the database follow
//! the values (replicaCount 3 alone means three sharded workers with the
//! chart's PostgreSQL), its schema catches bad values, it installs, upgrades
//! the CRD and uninstalls without stranding anything (keeping the database's
//! PVC and Secret), its RBAC is exactly enough, and `helm test`'s check
//! passes on a settled release and names what fails.
//!
//! No kubelet runs in these clusters, so no chart pod ever starts: the
//! operator runs out of cluster under the chart's ServiceAccount tokens, and
//! the chart's PostgreSQL is checked as objects (its pods stay Pending).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::support::cluster::PrivateCluster;
use crate::support::helm::{chart, helm, helm_ok};
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, client_for, eventually, service_account_kubeconfig, unique};

const CRD: &str = "configmirrors.mirror.configmirror.io";

fn all_features() -> String {
    chart()
        .join("ci/all-features-values.yaml")
        .display()
        .to_string()
}

fn documents(rendered: &str) -> Vec<serde_yaml::Value> {
    rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .filter(|d| d.get("kind").is_some())
        .collect()
}

fn kinds(docs: &[serde_yaml::Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn try_named<'a>(
    docs: &'a [serde_yaml::Value],
    kind: &str,
    name: &str,
) -> Option<&'a serde_yaml::Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn named<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    try_named(docs, kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// Release `r` in configmirror-system: the names below.
const OPERATOR: &str = "r-configmirror-operator";
const POSTGRESQL: &str = "r-configmirror-operator-postgresql";
const TEST: &str = "r-configmirror-operator-test";

/// `helm template r <chart> -n configmirror-system --set <each>`.
fn template(sets: &[&str]) -> crate::support::helm::HelmResult {
    let c = chart().display().to_string();
    let mut args = vec!["template", "r", c.as_str(), "-n", "configmirror-system"];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(None, &args)
}

fn render(sets: &[&str]) -> Vec<serde_yaml::Value> {
    let r = template(sets);
    assert!(r.ok, "helm template {sets:?} failed:\n{}", r.stderr);
    documents(&r.stdout)
}

/// The error of a render that must fail.
fn render_error(sets: &[&str]) -> String {
    let r = template(sets);
    assert!(!r.ok, "{sets:?} rendered:\n{}", r.stdout);
    r.stderr
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The operator container's args.
fn operator_args(docs: &[serde_yaml::Value]) -> Vec<String> {
    strings(
        &named(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["args"],
    )
}

/// The operator container's env var `name`, if set.
fn operator_env<'a>(docs: &'a [serde_yaml::Value], name: &str) -> Option<&'a serde_yaml::Value> {
    named(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)
}

/// A rendered Secret's data, decoded.
fn secret_data(doc: &serde_yaml::Value) -> std::collections::BTreeMap<String, String> {
    let secret: Secret = serde_yaml::from_value(doc.clone()).expect("a Secret");
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8")))
        .collect()
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_chart_lints_and_renders_with_defaults_and_with_every_feature() {
    let c = chart().display().to_string();
    helm_ok(None, &["lint", &c]);
    helm_ok(None, &["lint", &c, "-f", &all_features()]);
    let postgresql_values = chart()
        .join("ci/postgresql-values.yaml")
        .display()
        .to_string();
    helm_ok(None, &["lint", &c, "-f", &postgresql_values]);

    let defaults = documents(&helm_ok(
        None,
        &["template", "r", &c, "-n", "configmirror-system"],
    ));
    let k = kinds(&defaults);
    for kind in [
        "StatefulSet",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Secret",
        "CustomResourceDefinition",
        "Pod",
    ] {
        assert!(k.contains(kind), "{kind} missing by default: {k:?}");
    }
    for kind in [
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(!k.contains(kind), "{kind} rendered by default");
    }
    // One replica: leader election all the same (scaling later is safe),
    // with the chart's PostgreSQL as its database.
    let args = operator_args(&defaults);
    assert!(has_flag(&args, "--leader-elect"), "{args:?}");
    assert!(!has_flag(&args, "--sharding"), "{args:?}");
    named(&defaults, "StatefulSet", POSTGRESQL);
    named(&defaults, "Secret", POSTGRESQL);
    assert_eq!(
        named(&defaults, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/configmirror/configmirror:0.1.0"
    );

    // The chart's PostgreSQL with its settings changed renders them.
    let custom = documents(&helm_ok(
        None,
        &[
            "template",
            "r",
            &c,
            "-n",
            "configmirror-system",
            "-f",
            &postgresql_values,
        ],
    ));
    let pg = named(&custom, "StatefulSet", POSTGRESQL);
    assert_eq!(
        pg["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/postgres:15.10@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    let claim = &pg["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"], "fast-ssd");
    assert_eq!(claim["accessModes"][0], "ReadWriteOncePod");
    assert_eq!(claim["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(
        pg["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Delete"
    );
    let url = &secret_data(named(&custom, "Secret", POSTGRESQL))["url"];
    assert!(
        url.starts_with("postgres://mirror:")
            && url.ends_with(
                "@r-configmirror-operator-postgresql.configmirror-system.svc:5432/mirrors"
            ),
        "{url}"
    );
    let policy = serde_yaml::to_string(named(&custom, "NetworkPolicy", POSTGRESQL)).unwrap();
    assert!(
        policy.contains("app.kubernetes.io/name: configmirror-operator\n"),
        "only the operator reaches PostgreSQL: {policy}"
    );
    let operator_policy = serde_yaml::to_string(named(&custom, "NetworkPolicy", OPERATOR)).unwrap();
    for allowed in [
        "app.kubernetes.io/name: configmirror-operator-test",
        "app.kubernetes.io/name: configmirror-operator-postgresql",
    ] {
        assert!(
            operator_policy.contains(allowed),
            "{allowed} not in {operator_policy}"
        );
    }

    // Every feature on, with the monitoring APIs present.
    let all = documents(&helm_ok(
        None,
        &[
            "template",
            "r",
            &c,
            "-n",
            "configmirror-system",
            "-f",
            &all_features(),
            "--api-versions",
            "monitoring.coreos.com/v1/ServiceMonitor",
            "--api-versions",
            "monitoring.coreos.com/v1/PrometheusRule",
        ],
    ));
    let k = kinds(&all);
    for kind in [
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(
            k.contains(kind),
            "{kind} missing with every feature on: {k:?}"
        );
    }
    let sts = named(&all, "StatefulSet", OPERATOR);
    assert_eq!(sts["spec"]["replicas"], 3);
    assert!(
        try_named(&all, "StatefulSet", POSTGRESQL).is_none(),
        "a database of the user's turns the chart's PostgreSQL off"
    );
    let args =
        serde_yaml::to_string(&sts["spec"]["template"]["spec"]["containers"][0]["args"]).unwrap();
    assert!(
        !args.contains("--leader-elect"),
        "sharding replaces leader election"
    );
    for flag in [
        "--sharding",
        "--coordinator-lease=r-configmirror-operator-coordinator",
        "--leave-grace-seconds=30",
        "--watch-namespace=team-a,team-b",
        "--adopt-reference-replicas",
        "--database-secret-namespaces=platform-db",
        "--revision-max-age=90d",
    ] {
        assert!(args.contains(flag), "{flag} not in {args}");
    }
    // Without the monitoring APIs, their objects are left out: the chart installs on a bare cluster.
    let bare = kinds(&documents(&helm_ok(
        None,
        &["template", "r", &c, "-f", &all_features()],
    )));
    assert!(!bare.contains("ServiceMonitor") && !bare.contains("PrometheusRule"));

    // Security context: non-root, read-only root, no capabilities, RuntimeDefault seccomp.
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0]["securityContext"];
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(container["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );

    // Least privilege: no Secret access cluster-wide; Secrets only per listed namespace.
    for cluster_role in all.iter().filter(|d| d["kind"] == "ClusterRole") {
        let cluster_role = serde_yaml::to_string(cluster_role).unwrap();
        assert!(
            !cluster_role.contains("secrets"),
            "cluster-wide Secret access: {cluster_role}"
        );
    }
    let secret_roles: BTreeSet<String> = all
        .iter()
        .filter(|d| {
            d["kind"] == "Role"
                && serde_yaml::to_string(&d["rules"])
                    .unwrap()
                    .contains("secrets")
        })
        .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        secret_roles,
        BTreeSet::from(["team-a".into(), "team-b".into(), "platform-db".into()])
    );

    // The CRD template is crds/ exactly, plus the keep policy; the chart's
    // dashboard and alert files are deploy/'s.
    assert_eq!(
        repo_file("helm/configmirror-operator/files/crd.yaml"),
        repo_file("crds/configmirror.yaml")
    );
    assert_eq!(
        repo_file("helm/configmirror-operator/files/dashboard.json"),
        repo_file("deploy/grafana/configmirror-dashboard.json")
    );
    assert_eq!(
        repo_file("helm/configmirror-operator/files/alerts.yaml"),
        repo_file("deploy/prometheus/configmirror-alerts.yaml")
    );
    let mut rendered_crd = find(&defaults, "CustomResourceDefinition").clone();
    assert_eq!(
        rendered_crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    rendered_crd["metadata"] = serde_yaml::from_str(&format!("name: {CRD}")).unwrap();
    let committed: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("crds/configmirror.yaml")).unwrap();
    assert!(
        rendered_crd == committed,
        "the chart's CRD differs from crds/configmirror.yaml"
    );
    assert!(
        !chart().join("crds").exists(),
        "a crds/ folder would never be upgraded by Helm"
    );
}

#[test]
fn replica_count_three_alone_means_sharded_workers_with_the_charts_postgresql() {
    let docs = render(&["replicaCount=3"]);
    let args = operator_args(&docs);
    for flag in [
        "--sharding",
        "--coordinator-lease=r-configmirror-operator-coordinator",
    ] {
        assert!(args.contains(&flag.to_string()), "{flag} not in {args:?}");
    }
    assert!(
        !has_flag(&args, "--leader-elect"),
        "--sharding and --leader-elect conflict: {args:?}"
    );
    assert!(!has_flag(&args, "--database-secret"), "{args:?}");
    let url = operator_env(&docs, "DATABASE_URL").expect("DATABASE_URL");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], POSTGRESQL);
    assert_eq!(url["valueFrom"]["secretKeyRef"]["key"], "url");
    assert!(try_named(&docs, "PodDisruptionBudget", OPERATOR).is_some());

    // The Secret: generated credentials, kept by `helm uninstall`.
    let secret = named(&docs, "Secret", POSTGRESQL);
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let data = secret_data(secret);
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["database", "password", "url", "username"]
    );
    assert_eq!(data["username"], "configmirror");
    assert_eq!(data["database"], "configmirror");
    assert_eq!(data["password"].len(), 32);
    assert!(data["password"].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        data["url"],
        format!(
            "postgres://configmirror:{}@r-configmirror-operator-postgresql.configmirror-system.svc:5432/configmirror",
            data["password"]
        )
    );

    // The Service.
    let service = named(&docs, "Service", POSTGRESQL);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["ports"][0]["port"], 5432);

    // The StatefulSet: one replica, a retained PVC, the official image's
    // interface, probes through pg_isready, locked down.
    let sts = named(&docs, "StatefulSet", POSTGRESQL);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        serde_yaml::from_str::<serde_yaml::Value>("{whenDeleted: Retain, whenScaled: Retain}")
            .unwrap()
    );
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "8Gi");
    assert!(claim["spec"].get("storageClassName").is_none());
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["serviceAccountName"], POSTGRESQL);
    assert_eq!(
        named(&docs, "ServiceAccount", POSTGRESQL)["automountServiceAccountToken"],
        false
    );
    for (key, value) in [
        ("runAsNonRoot", serde_yaml::Value::from(true)),
        ("runAsUser", 999.into()),
        ("runAsGroup", 999.into()),
        ("fsGroup", 999.into()),
    ] {
        assert_eq!(pod["securityContext"][key], value, "{key}");
    }
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "docker.io/library/postgres:15");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    let env: std::collections::BTreeMap<String, serde_yaml::Value> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(env["POSTGRES_USER"]["value"], "configmirror");
    assert_eq!(env["POSTGRES_DB"]["value"], "configmirror");
    assert_eq!(env["PGDATA"]["value"], "/var/lib/postgresql/data/pgdata");
    assert_eq!(
        env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"],
        POSTGRESQL
    );
    assert_eq!(
        env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"],
        "password"
    );
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(
            strings(&container[probe]["exec"]["command"]),
            [
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-U",
                "configmirror",
                "-d",
                "configmirror"
            ],
            "{probe}"
        );
    }
    assert!(container["resources"]["requests"]["memory"].is_string());
    let mounts: Vec<String> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        mounts,
        ["/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"]
    );

    // The operator's selector never picks the database pod (its Service,
    // PodDisruptionBudget and NetworkPolicy select by it).
    let operator_selector =
        named(&docs, "StatefulSet", OPERATOR)["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .unwrap()
            .clone();
    let pg_labels = pod_labels(sts);
    assert!(
        operator_selector
            .iter()
            .any(|(k, v)| pg_labels.get(k) != Some(v)),
        "the operator's selector matches the PostgreSQL pod"
    );

    // The chart's PostgreSQL has no API access: nothing binds its ServiceAccount.
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
    {
        assert!(
            !serde_yaml::to_string(&binding["subjects"])
                .unwrap()
                .contains(POSTGRESQL),
            "{binding:?}"
        );
    }

    // Without persistence: an emptyDir, no claim.
    let docs = render(&["replicaCount=3", "postgresql.persistence.enabled=false"]);
    let sts = named(&docs, "StatefulSet", POSTGRESQL);
    assert!(sts["spec"].get("volumeClaimTemplates").is_none());
    let volumes = serde_yaml::to_string(&sts["spec"]["template"]["spec"]["volumes"]).unwrap();
    assert!(volumes.contains("name: data\n  emptyDir: {}"), "{volumes}");
}

fn pod_labels(workload: &serde_yaml::Value) -> serde_yaml::Mapping {
    workload["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap()
        .clone()
}

#[test]
fn the_mode_and_the_database_follow_the_values() {
    let postgresql_rendered =
        |docs: &[serde_yaml::Value]| docs.iter().any(|d| d["metadata"]["name"] == POSTGRESQL);

    // A database of the user's turns the chart's PostgreSQL off.
    let docs = render(&["replicaCount=3", "database.urlSecret.name=mine"]);
    assert!(!postgresql_rendered(&docs));
    assert!(has_flag(&operator_args(&docs), "--sharding"));
    let url = operator_env(&docs, "DATABASE_URL").expect("DATABASE_URL");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "mine");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["key"], "url");

    let docs = render(&["replicaCount=3", "database.credentialsSecret=creds"]);
    assert!(!postgresql_rendered(&docs));
    let args = operator_args(&docs);
    assert!(has_flag(&args, "--sharding"), "{args:?}");
    assert!(
        args.contains(&"--database-secret=configmirror-system/creds".to_string()),
        "{args:?}"
    );
    assert!(operator_env(&docs, "DATABASE_URL").is_none());

    // sharding.enabled=false: leader election, at any count.
    let docs = render(&["replicaCount=3", "sharding.enabled=false"]);
    let args = operator_args(&docs);
    assert!(has_flag(&args, "--leader-elect"), "{args:?}");
    assert!(
        args.contains(&"--leader-election-id=r-configmirror-operator-leader".to_string()),
        "{args:?}"
    );
    assert!(!has_flag(&args, "--sharding"), "{args:?}");
    assert!(
        postgresql_rendered(&docs),
        "persistence still has its database"
    );

    // sharding.enabled=true forces it, even for one replica.
    let args = operator_args(&render(&["sharding.enabled=true"]));
    assert!(has_flag(&args, "--sharding") && !has_flag(&args, "--leader-elect"));
    // "auto" is the default spelled out.
    let args = operator_args(&render(&["replicaCount=2", "sharding.enabled=auto"]));
    assert!(has_flag(&args, "--sharding"), "{args:?}");

    // No database at all: one replica elects a leader and runs without one ...
    let docs = render(&["postgresql.enabled=false"]);
    assert!(!postgresql_rendered(&docs));
    assert!(has_flag(&operator_args(&docs), "--leader-elect"));
    assert!(operator_env(&docs, "DATABASE_URL").is_none());
    // ... three cannot shard, and the chart says what to set ...
    let error = render_error(&["replicaCount=3", "postgresql.enabled=false"]);
    for hint in [
        "replicaCount=3",
        "needs a database",
        "postgresql.enabled=true",
        "database.urlSecret.name",
        "sharding.enabled=false",
    ] {
        assert!(error.contains(hint), "{hint:?} not in: {error}");
    }
    // ... unless leader election is asked for.
    let docs = render(&[
        "replicaCount=3",
        "postgresql.enabled=false",
        "sharding.enabled=false",
    ]);
    assert!(has_flag(&operator_args(&docs), "--leader-elect"));
    assert!(!postgresql_rendered(&docs));
    let error = render_error(&["sharding.enabled=true", "postgresql.enabled=false"]);
    assert!(
        error.contains("sharding.enabled=true needs a database"),
        "{error}"
    );
    let error = render_error(&["database.urlSecret.name=a", "database.credentialsSecret=b"]);
    assert!(error.contains("not both"), "{error}");
}

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
            (
                d,
                annotations["helm.sh/hook-weight"]
                    .as_str()
                    .unwrap()
                    .parse::<i32>()
                    .unwrap(),
            )
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
fn the_values_schema_rejects_bad_values_clearly() {
    let c = chart().display().to_string();
    for (set, field) in [
        ("replicaCount=three", "/replicaCount"),
        ("replicaCount=0", "/replicaCount"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("database.revisionMaxAge=soon", "/database/revisionMaxAge"),
        ("replicas=3", "replicas"),
        ("sharding.enabled=yes", "/sharding/enabled"),
        (
            "postgresql.persistentVolumeClaimRetentionPolicy.whenDeleted=Keep",
            "/postgresql/persistentVolumeClaimRetentionPolicy/whenDeleted",
        ),
        (
            "postgresql.auth.username=Bad-Name",
            "/postgresql/auth/username",
        ),
    ] {
        let r = helm(None, &["template", "r", &c, "--set", set]);
        assert!(!r.ok, "{set} was accepted");
        assert!(
            r.stderr.contains("schema") && r.stderr.contains(field),
            "{set}: {}",
            r.stderr
        );
    }
}

#[tokio::test]
async fn the_charts_rbac_is_enough_for_the_operator_and_no_more() {
    let s = Scenario::new("rbac", 1).await;
    let release_ns = TestNamespace::create(&s.client, "rbac-release").await;
    let release = unique("r");
    let c = chart().display().to_string();
    let kubeconfig = crate::support::cluster_var("KUBECONFIG");
    helm_ok(
        Some(Path::new(&kubeconfig)),
        &[
            "install",
            &release,
            &c,
            "-n",
            &release_ns.name,
            "--set",
            "crds.install=false",
            "--set",
            &format!("database.secretNamespaces={{{}}}", s.home.name),
            // The operator runs out of cluster below with its own test
            // database; the chart's PostgreSQL would only add a pod that
            // never starts (no kubelet here) and a PVC that never binds.
            "--set",
            "postgresql.enabled=false",
        ],
    );
    let sa = format!("{release}-configmirror-operator");
    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = service_account_kubeconfig(
        &s.client,
        Path::new(&kubeconfig),
        &release_ns.name,
        &sa,
        dir.path(),
    )
    .await;

    // The operator as the chart runs it: that identity, leader election in
    // its own namespace, a mirror whose database Secret is in its namespace.
    let db = crate::support::db::TestDatabase::create().await;
    crate::persistence::secret(&s.client, &s.home.name, "db", &db.parts()).await;
    let op = s
        .operator()
        .kubeconfig(&sa_kubeconfig)
        .arg("--leader-elect")
        .arg(format!("--namespace={}", release_ns.name))
        .start()
        .await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let mut spec = crate::persistence::mirror_with_secret(&s, None, "db");
    spec.selector = match_labels(&[("replicate", "true")]);
    let mirror = create_mirror(&s.client, &s.home.name, "m", spec).await;
    let uid = mirror.uid().unwrap();
    let t = s.target_names()[0];
    wait_cm(&s.client, t, "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    wait_status(&s.client, &s.home.name, "m", "Ready and persisted", |st| {
        ready_reason(st) == Some(("True".into(), "Synced".into()))
            && condition(st, "DatabaseSynced").is_some_and(|c| c.status == "True")
    })
    .await;
    patch_cm(
        &s.client,
        &s.source.name,
        "cfg",
        serde_json::json!({"data": {"k": "v2"}}),
    )
    .await;
    wait_cm(&s.client, t, "cfg", "updated replica", |c| {
        is_replica(c, &uid, &[("k", "v2")])
    })
    .await;
    eventually("an event on the mirror", WAIT, || async {
        let events =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.client.clone(), &s.home.name)
                .list(&ListParams::default())
                .await
                .ok()?;
        events
            .items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("m"))
            .then_some(())
    })
    .await;
    delete_mirror(&s.client, &s.home.name, "m").await;
    wait_mirror_gone(&s.client, &s.home.name, "m").await;
    wait_cm_gone(&s.client, t, "cfg").await;
    let denied: Vec<_> = op
        .log_lines()
        .into_iter()
        .filter(|l| l.to_string().contains("forbidden") || l.to_string().contains("Forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "the operator was refused something it needs: {denied:?}"
    );

    // And nothing beyond its rules.
    let sa_client = client_for(&sa_kubeconfig, "rbac-probe").await;
    let forbidden =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(forbidden(
        Api::<Secret>::all(sa_client.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Secret>::namespaced(sa_client.clone(), t)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(sa_client.clone(), t)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<StatefulSet>::all(sa_client.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    helm_ok(
        Some(Path::new(&kubeconfig)),
        &["uninstall", &release, "-n", &release_ns.name],
    );
}

#[tokio::test]
async fn install_upgrade_and_uninstall_strand_nothing() {
    let cluster = PrivateCluster::start();
    let kc = cluster.kubeconfig.clone();
    let admin = client_for(&kc, "chart-test").await;
    let c = chart().display().to_string();
    let ns = "configmirror-system";

    // Install: `--set replicaCount=3` and nothing else about the mode or the
    // database: three sharded workers with the chart's PostgreSQL. Its pod
    // never starts here (no kubelet), but its objects, the generated
    // credentials and their fate on upgrade and uninstall are all real.
    helm_ok(
        Some(&kc),
        &[
            "install",
            "cm",
            &c,
            "-n",
            ns,
            "--create-namespace",
            "--set",
            "replicaCount=3",
            "--set",
            "dashboard.enabled=true",
            "--set",
            "networkPolicy.enabled=true",
        ],
    );
    let statefulsets = Api::<StatefulSet>::namespaced(admin.clone(), ns);
    let sts = statefulsets.get("cm-configmirror-operator").await.unwrap();
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
    let container = sts.spec.unwrap().template.spec.unwrap().containers[0].clone();
    let args = container.args.clone().unwrap();
    assert!(args.contains(&"--sharding".to_string()), "{args:?}");
    assert!(!args.contains(&"--leader-elect".to_string()), "{args:?}");
    let url_from = container
        .env
        .unwrap()
        .into_iter()
        .find(|e| e.name == "DATABASE_URL")
        .and_then(|e| e.value_from?.secret_key_ref)
        .expect("DATABASE_URL from a Secret");
    assert_eq!((url_from.name.as_str(), url_from.key.as_str()), (PG, "url"));
    let pg = statefulsets.get(PG).await.unwrap();
    let retention = pg
        .spec
        .unwrap()
        .persistent_volume_claim_retention_policy
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns);
    let password =
        |secret: Secret| String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let first = secrets.get(PG).await.unwrap();
    let url = String::from_utf8(first.data.as_ref().unwrap()["url"].0.clone()).unwrap();
    assert!(
        url.ends_with(
            "@cm-configmirror-operator-postgresql.configmirror-system.svc:5432/configmirror"
        ),
        "{url}"
    );
    let installed_password = password(first);
    assert_eq!(installed_password.len(), 32);
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = crds.get(CRD).await.unwrap();
    assert_eq!(
        crd.annotations()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep")
    );
    for (kind, name) in [
        ("poddisruptionbudget", "cm-configmirror-operator"),
        ("networkpolicy", "cm-configmirror-operator"),
        ("networkpolicy", PG),
        ("configmap", "cm-configmirror-operator-dashboard"),
        ("service", PG),
        ("serviceaccount", PG),
    ] {
        kubectl_get(&kc, ns, kind, name);
    }
    // The StatefulSet controller makes the claim (it stays Pending: no
    // provisioner here).
    let claims = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), ns);
    eventually("the PostgreSQL PVC", Duration::from_secs(60), || async {
        claims.get_opt(PVC).await.unwrap().map(|_| ())
    })
    .await;

    // Upgrade with a changed CRD: the change ships.
    let changed = tempfile::tempdir().unwrap();
    copy_dir(&chart(), changed.path());
    let crd_file = changed.path().join("files/crd.yaml");
    let text = std::fs::read_to_string(&crd_file).unwrap();
    let marker = "    - jsonPath: .metadata.creationTimestamp";
    assert!(text.contains(marker));
    std::fs::write(&crd_file, text.replace(marker, &format!("    - jsonPath: .spec.sourceNamespace\n      name: Source\n      type: string\n{marker}"))).unwrap();
    helm_ok(
        Some(&kc),
        &[
            "upgrade",
            "cm",
            changed.path().to_str().unwrap(),
            "-n",
            ns,
            "--set",
            "replicaCount=3",
        ],
    );
    let upgraded = crds.get(CRD).await.unwrap();
    let columns: Vec<String> = upgraded.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert!(
        columns.contains(&"Source".to_string()),
        "the CRD change did not ship: {columns:?}"
    );
    assert_eq!(
        password(secrets.get(PG).await.unwrap()),
        installed_password,
        "helm upgrade changed the database password"
    );

    // A mirror, reconciled by the operator out of cluster as the chart's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let sa_kc =
        service_account_kubeconfig(&admin, &kc, ns, "cm-configmirror-operator", dir.path()).await;
    for n in ["app-source", "dev"] {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
            .create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": n}})).unwrap(),
            )
            .await
            .unwrap();
    }
    create_cm(&admin, "app-source", &configmap("cfg", &[], &[("k", "v")])).await;
    let mirror = create_mirror(&admin, ns, "m", mirror_spec("app-source", &["dev"], None)).await;
    let uid = mirror.uid().unwrap();
    let mut op = Operator::scoped(&[ns]).kubeconfig(&sa_kc).start().await;
    wait_cm(&admin, "dev", "cfg", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    op.terminate().await;

    // `helm uninstall` keeps the CRD, the ConfigMirror and its replica.
    helm_ok(Some(&kc), &["uninstall", "cm", "-n", ns]);
    assert!(
        crds.get_opt(CRD).await.unwrap().is_some(),
        "uninstall removed the CRD"
    );
    assert!(
        get_mirror(&admin, ns, "m").await.is_some(),
        "uninstall removed the ConfigMirror"
    );
    assert!(
        get_cm(&admin, "dev", "cfg").await.is_some(),
        "uninstall removed a replica"
    );
    // ... and the database: the PVC (retention policy Retain) and the
    // Secret (resource-policy keep), while the StatefulSet is gone.
    assert!(statefulsets.get_opt(PG).await.unwrap().is_none());
    assert!(
        claims.get_opt(PVC).await.unwrap().is_some(),
        "uninstall removed the PostgreSQL PVC"
    );
    assert_eq!(
        secrets.get_opt(PG).await.unwrap().map(password),
        Some(installed_password.clone()),
        "uninstall removed the PostgreSQL Secret"
    );

    // The README's removal order: reinstall, delete the mirrors while the
    // operator runs, uninstall, delete the CRD, the PVC and the Secret.
    // Nothing is left stuck. The reinstall finds the kept Secret: the kept
    // data's password.
    helm_ok(Some(&kc), &["install", "cm", &c, "-n", ns]);
    assert_eq!(
        password(secrets.get(PG).await.unwrap()),
        installed_password,
        "a reinstall did not reuse the kept password"
    );
    let sa_kc =
        service_account_kubeconfig(&admin, &kc, ns, "cm-configmirror-operator", dir.path()).await;
    let mut op = Operator::scoped(&[ns]).kubeconfig(&sa_kc).start().await;
    let status = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "delete",
            "configmirrors",
            "--all",
            "--all-namespaces",
            "--timeout=60s",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    wait_mirror_gone(&admin, ns, "m").await;
    wait_cm_gone(&admin, "dev", "cfg").await;
    op.terminate().await;
    helm_ok(Some(&kc), &["uninstall", "cm", "-n", ns]);
    crds.delete(CRD, &Default::default()).await.unwrap();
    eventually("the CRD to be deleted", Duration::from_secs(60), || async {
        crds.get_opt(CRD).await.unwrap().is_none().then_some(())
    })
    .await;
    claims.delete(PVC, &Default::default()).await.unwrap();
    secrets.delete(PG, &Default::default()).await.unwrap();
    eventually(
        "the PVC and the Secret to be deleted",
        Duration::from_secs(60),
        || async {
            (claims.get_opt(PVC).await.unwrap().is_none()
                && secrets.get_opt(PG).await.unwrap().is_none())
            .then_some(())
        },
    )
    .await;
}

/// The chart's PostgreSQL in release `cm`, and its claim.
const PG: &str = "cm-configmirror-operator-postgresql";
const PVC: &str = "data-cm-configmirror-operator-postgresql-0";

fn kubectl_get(kubeconfig: &Path, namespace: &str, kind: &str, name: &str) {
    let out = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "-n",
            namespace,
            "get",
            kind,
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{kind}/{name} missing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `helm test`'s check, run as the chart renders it (its RBAC applied, its
/// args) but out of cluster, since no kubelet runs its pod here: the
/// operator's "pod" is a Pod object whose status says Running at 127.0.0.1,
/// where a real operator process serves /readyz.
#[tokio::test]
async fn helm_tests_check_passes_on_a_settled_release_and_names_what_fails() {
    let s = Scenario::new("check", 1).await;
    let release_ns = TestNamespace::create(&s.client, "check-release").await;
    let release = unique("r");
    let kubeconfig = std::path::PathBuf::from(crate::support::cluster_var("KUBECONFIG"));
    let c = chart().display().to_string();
    let rendered = documents(&helm_ok(
        None,
        &[
            "template",
            &release,
            &c,
            "-n",
            &release_ns.name,
            "--show-only",
            "templates/tests/check.yaml",
            "--set",
            "postgresql.enabled=false",
            "--set",
            &format!("operator.watchNamespaces={{{}}}", s.home.name),
        ],
    ));
    let test_name = format!("{release}-configmirror-operator-test");
    let rbac: Vec<&serde_yaml::Value> = rendered.iter().filter(|d| d["kind"] != "Pod").collect();
    assert_eq!(rbac.len(), 5, "{rendered:?}");
    let dir = tempfile::tempdir().unwrap();
    let rbac_file = dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac_file,
        rbac.iter()
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect::<Vec<_>>()
            .join("---\n"),
    )
    .unwrap();
    let kubectl = |verb: &str| {
        std::process::Command::new("kubectl")
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), verb, "-f"])
            .arg(&rbac_file)
            .output()
            .unwrap()
    };
    let applied = kubectl("apply");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let test_kubeconfig = service_account_kubeconfig(
        &s.client,
        &kubeconfig,
        &release_ns.name,
        &test_name,
        dir.path(),
    )
    .await;
    let mut args = strings(&find(&rendered, "Pod")["spec"]["containers"][0]["args"]);

    // The release's one operator pod, Running at 127.0.0.1, and the operator.
    let op = s.operator().start().await;
    let port = op.health_addr.rsplit_once(':').unwrap().1.to_string();
    for a in args.iter_mut() {
        if a.starts_with("--health-port=") {
            *a = format!("--health-port={port}");
        }
        if a.starts_with("--timeout-seconds=") {
            *a = "--timeout-seconds=30".into();
        }
    }
    let pods = Api::<Pod>::namespaced(s.client.clone(), &release_ns.name);
    let pod_named = |name: &str| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {
                "app.kubernetes.io/name": "configmirror-operator",
                "app.kubernetes.io/instance": release,
            }},
            "spec": {"containers": [{"name": "operator", "image": "configmirror"}]},
        }))
        .unwrap()
    };
    let running = format!("{release}-configmirror-operator-0");
    pods.create(&Default::default(), &pod_named(&running))
        .await
        .unwrap();
    pods.patch_status(
        &running,
        &Default::default(),
        &kube::api::Patch::Merge(serde_json::json!({"status": {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        }})),
    )
    .await
    .unwrap();
    s.selected_source("cfg", &[("k", "v")]).await;
    s.mirror_selected("m").await;
    wait_status(&s.client, &s.home.name, "m", "a shard member", |st| {
        st.shard.as_ref().is_some_and(|sh| !sh.member.is_empty())
    })
    .await;

    let (ok, out) = run_check(&test_kubeconfig, &args);
    assert!(ok, "the check failed on a settled release:\n{out}");
    for line in [
        format!("[ok]   pod {running}: Running, 127.0.0.1"),
        format!("[ok]   readyz {running}: 200"),
        "[ok]   mirrors: 1 of 1 have status.shard.member".to_string(),
        "all 3 checks passed".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} not in:\n{out}");
    }

    // The operator gone, a pod that never ran, a mirror nobody reconciled:
    // each named, and the exit status says so.
    drop(op);
    let pending = format!("{release}-configmirror-operator-1");
    pods.create(&Default::default(), &pod_named(&pending))
        .await
        .unwrap();
    s.mirror_selected("unowned").await;
    for a in args.iter_mut() {
        if a.starts_with("--timeout-seconds=") {
            *a = "--timeout-seconds=2".into();
        }
    }
    let (ok, out) = run_check(&test_kubeconfig, &args);
    assert!(!ok, "the check passed:\n{out}");
    for line in [
        format!("[FAIL] readyz {running}: GET http://127.0.0.1:{port}/readyz"),
        format!("[FAIL] pod {pending}: Pending (want Running)"),
        format!("[FAIL] readyz {pending}: not probed: no pod IP"),
        format!(
            "[FAIL] mirror {}/unowned: no status.shard.member yet",
            s.home.name
        ),
        "still failing".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} not in:\n{out}");
    }

    // The test's identity can do no more than that.
    let test_client = client_for(&test_kubeconfig, "check-rbac-probe").await;
    let forbidden =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(forbidden(
        Api::<Secret>::namespaced(test_client.clone(), &release_ns.name)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Pod>::namespaced(test_client.clone(), &s.home.name)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Pod>::namespaced(test_client.clone(), &release_ns.name)
            .delete(&pending, &Default::default())
            .await
            .map(|_| ())
    ));

    let deleted = kubectl("delete");
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
}

/// `configmirror check <args>` as `kubeconfig`: (succeeded, stdout + stderr).
fn run_check(kubeconfig: &Path, args: &[String]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_configmirror"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running configmirror check");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
