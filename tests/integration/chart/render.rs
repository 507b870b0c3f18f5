//! Rendering the chart with no cluster: it lints, renders what the values
//! ask for (and nothing they do not), locked down and least-privileged, its
//! CRD, dashboard and alerts are the repository's, its schema rejects bad
//! values clearly, and it works as a subchart of a parent chart.

use std::collections::BTreeSet;
use std::path::Path;

use super::{
    CRD, OPERATOR, POSTGRESQL, TEST, UPGRADE, documents, find, has_flag, hook, kinds, named,
    operator_args, render, render_error, render_values, secret_data, strings, try_named,
};
use crate::support::helm::{chart, helm, helm_ok};

fn all_features() -> String {
    chart()
        .join("ci/all-features-values.yaml")
        .display()
        .to_string()
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_chart_lints_and_renders_with_defaults_and_with_every_feature() {
    let c = chart().display().to_string();
    // --strict: a lint warning fails as an error would.
    helm_ok(None, &["lint", "--strict", &c]);
    helm_ok(None, &["lint", "--strict", &c, "-f", &all_features()]);
    let postgresql_values = chart()
        .join("ci/postgresql-values.yaml")
        .display()
        .to_string();
    helm_ok(None, &["lint", "--strict", &c, "-f", &postgresql_values]);

    let defaults = documents(&helm_ok(
        None,
        &["template", "r", &c, "-n", "configmirror-system"],
    ));
    // The release's own resources; hooks are not among them (Helm creates
    // them at their moment and deletes them after: hooks.rs).
    let resources: Vec<serde_yaml::Value> = defaults
        .iter()
        .filter(|d| hook(d).is_none())
        .cloned()
        .collect();
    let k = kinds(&resources);
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
    ] {
        assert!(k.contains(kind), "{kind} missing by default: {k:?}");
    }
    // No bare pod or job: those run only as hooks.
    assert!(!k.contains("Pod") && !k.contains("Job"), "{k:?}");
    assert_eq!(hook(named(&defaults, "Pod", TEST)), Some("test"));
    assert_eq!(
        hook(named(&defaults, "Job", UPGRADE)),
        Some("pre-upgrade,pre-rollback")
    );
    let k = kinds(&defaults);
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
    let custom = render_values(&postgresql_values, &[]);
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
    let all = render_values(
        &all_features(),
        &[
            "--api-versions",
            "monitoring.coreos.com/v1/ServiceMonitor",
            "--api-versions",
            "monitoring.coreos.com/v1/PrometheusRule",
        ],
    );
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
        "--database-timeout-seconds=5",
        "--persistence-concurrency=4",
        "--persistence-per-database=1",
        "--database-idle-close-seconds=300",
        "--orphan-rows-after-seconds=120",
        "--stuck-after-seconds=600",
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
fn the_values_schema_rejects_bad_values_clearly() {
    let c = chart().display().to_string();
    for (set, field) in [
        ("replicaCount=three", "/replicaCount"),
        ("replicaCount=0", "/replicaCount"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("database.revisionMaxAge=soon", "/database/revisionMaxAge"),
        ("replicas=3", "replicas"),
        ("sharding.enabled=yes", "/sharding/enabled"),
        ("admission.enabled=yes", "/admission/enabled"),
        (
            "rbac.aggregateToDefaultRoles=yes",
            "/rbac/aggregateToDefaultRoles",
        ),
        (
            "postgresql.persistentVolumeClaimRetentionPolicy.whenDeleted=Keep",
            "/postgresql/persistentVolumeClaimRetentionPolicy/whenDeleted",
        ),
        (
            "postgresql.auth.username=Bad-Name",
            "/postgresql/auth/username",
        ),
        ("image.digest=latest", "/image/digest"),
        ("service.type=ExternalName", "/service/type"),
        ("service.port=0", "/service/port"),
        ("extraEnv[0].value=x", "/extraEnv/0"),
        ("extraVolumeMounts[0].name=x", "/extraVolumeMounts/0"),
        (
            "topologySpreadConstraints[0].whenUnsatisfiable=Maybe",
            "/topologySpreadConstraints/0",
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

#[test]
fn the_schema_rejects_typos_in_known_sections_and_accepts_what_a_parent_passes() {
    for (set, section, key) in [
        (
            "operator.watchNamespace=team-a",
            "/operator",
            "watchNamespace",
        ),
        ("image.tags=1.0", "/image", "tags"),
        (
            "postgresql.persistence.sise=1Gi",
            "/postgresql/persistence",
            "sise",
        ),
        ("replicas=3", "at ''", "replicas"),
        ("service.prot=9090", "/service", "prot"),
        (
            "podDisruptionBudget.minAvailabel=1",
            "/podDisruptionBudget",
            "minAvailabel",
        ),
    ] {
        let stderr = render_error(&[set]);
        assert!(
            stderr.contains("schema") && stderr.contains(section) && stderr.contains(key),
            "{set}: {stderr}"
        );
    }
    // What Helm hands a subchart besides its own values: `global` (always,
    // any content) and the parent's `condition` key.
    let docs = render(&[
        "global.imageRegistry=registry.example.com",
        "global.labels.team=platform",
        "enabled=true",
    ]);
    named(&docs, "StatefulSet", OPERATOR);
}

/// A parent chart in a temporary directory depending on this chart through
/// file://, built offline with `helm dependency build`.
fn parent_chart() -> tempfile::TempDir {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(
        parent.path().join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n  \
             - name: configmirror-operator\n    version: \">=0.0.0-0\"\n    \
             repository: file://{}\n    condition: configmirror-operator.enabled\n",
            chart().display()
        ),
    )
    .unwrap();
    // A parent's own values commonly carry globals for all its subcharts.
    std::fs::write(
        parent.path().join("values.yaml"),
        "global:\n  imageRegistry: registry.example.com\n  storageClass: fast\n",
    )
    .unwrap();
    helm_ok(
        None,
        &["dependency", "build", parent.path().to_str().unwrap()],
    );
    parent
}

#[test]
fn the_chart_renders_as_a_subchart_of_a_parent_chart() {
    let parent = parent_chart();
    let p = parent.path().to_str().unwrap();
    let operator = "p-configmirror-operator";
    let template = |sets: &[&str]| {
        let mut args = vec!["template", "p", p, "-n", "platform"];
        for set in sets {
            args.extend(["--set", set]);
        }
        helm(None, &args)
    };

    // No values for the subchart: its defaults, with `global` passed in.
    let r = template(&[]);
    assert!(r.ok, "as a subchart with defaults:\n{}", r.stderr);
    let docs = documents(&r.stdout);
    let sts = named(&docs, "StatefulSet", operator);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["metadata"]["namespace"], "platform");
    named(&docs, "CustomResourceDefinition", CRD);

    // Values for the subchart under its name, the condition among them.
    let r = template(&[
        "configmirror-operator.enabled=true",
        "configmirror-operator.replicaCount=3",
        "configmirror-operator.operator.watchNamespaces={team-a}",
        "global.extra=1",
    ]);
    assert!(r.ok, "as a subchart with values:\n{}", r.stderr);
    let docs = documents(&r.stdout);
    let sts = named(&docs, "StatefulSet", operator);
    assert_eq!(sts["spec"]["replicas"], 3);
    let args = strings(&sts["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(has_flag(&args, "--sharding"), "{args:?}");
    assert!(
        args.contains(&"--watch-namespace=team-a".to_string()),
        "{args:?}"
    );

    // The condition turns it off entirely.
    let r = template(&["configmirror-operator.enabled=false"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        documents(&r.stdout).is_empty(),
        "rendered with its condition false:\n{}",
        r.stdout
    );

    // The subchart's schema still applies through the parent.
    let r = template(&["configmirror-operator.operator.watchNamespace=team-a"]);
    assert!(
        !r.ok,
        "a typo under operator was accepted through the parent"
    );
    assert!(
        r.stderr.contains("configmirror-operator") && r.stderr.contains("watchNamespace"),
        "{}",
        r.stderr
    );
}

/// The operator's pod spec in rendered documents.
fn pod_spec(docs: &[serde_yaml::Value]) -> &serde_yaml::Value {
    &named(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]
}

#[test]
fn scheduling_service_image_and_extra_values_render_where_they_belong() {
    let selector: serde_yaml::Value = serde_yaml::from_str(
        "matchLabels: {app.kubernetes.io/name: configmirror-operator, app.kubernetes.io/instance: r}",
    )
    .unwrap();

    // Defaults: replicas spread across nodes, softly (a one-node cluster
    // still runs them all), counting this release's operator pods only; a
    // headless Service on 8080; the image by tag; nothing extra.
    let defaults = render(&[]);
    let pod = pod_spec(&defaults);
    let spread: serde_yaml::Value = serde_yaml::from_str(
        "- {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}",
    )
    .unwrap();
    let mut expected = spread.clone();
    expected[0]["labelSelector"] = selector.clone();
    assert_eq!(pod["topologySpreadConstraints"], expected);
    let service = named(&defaults, "Service", OPERATOR);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/configmirror/configmirror:0.1.0"
    );
    assert!(pod["volumes"].is_null() && pod["containers"][0]["volumeMounts"].is_null());
    let env = strings(
        &pod["containers"][0]["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["name"].clone())
            .collect(),
    );
    assert_eq!(
        env,
        ["POD_NAME", "POD_NAMESPACE", "RUST_LOG", "DATABASE_URL"]
    );
    // No constraints at all when asked.
    let none = render(&["topologySpreadConstraints=null"]);
    assert!(pod_spec(&none)["topologySpreadConstraints"].is_null());

    // Every one of them set (ci/all-features-values.yaml).
    let all = render_values(&all_features(), &[]);
    let pod = pod_spec(&all);
    let container = &pod["containers"][0];
    let digest = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    assert_eq!(
        container["image"],
        format!("registry.example.com/configmirror@{digest}").as_str(),
        "a digest replaces the tag"
    );
    // The test pod and the pre-upgrade Job run the same pinned image.
    assert_eq!(
        named(&all, "Pod", TEST)["spec"]["containers"][0]["image"],
        container["image"]
    );
    assert_eq!(
        named(&all, "Job", UPGRADE)["spec"]["template"]["spec"]["containers"][0]["image"],
        container["image"]
    );
    let constraints = pod["topologySpreadConstraints"].as_sequence().unwrap();
    assert_eq!(constraints.len(), 2);
    assert_eq!(constraints[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        constraints[0]["labelSelector"], selector,
        "the chart's selector added"
    );
    assert_eq!(
        constraints[1]["labelSelector"]["matchLabels"]["team"], "platform",
        "a constraint's own selector is kept"
    );
    let env = container["env"].as_sequence().unwrap();
    assert_eq!(env[0]["name"], "POD_NAME", "the chart's own come first");
    let proxy = env
        .iter()
        .find(|e| e["name"] == "HTTPS_PROXY")
        .expect("extraEnv");
    assert_eq!(proxy["value"], "http://proxy.example.com:3128");
    let ca = env
        .iter()
        .find(|e| e["name"] == "CA_BUNDLE")
        .expect("extraEnv");
    assert_eq!(ca["valueFrom"]["configMapKeyRef"]["key"], "bundle.pem");
    assert_eq!(pod["volumes"][0]["name"], "corporate-ca");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "corporate-ca");
    assert_eq!(container["volumeMounts"][0]["name"], "corporate-ca");
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/etc/ssl/corporate"
    );
    let service = named(&all, "Service", OPERATOR);
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert!(
        service["spec"]["clusterIP"].is_null(),
        "only a ClusterIP Service is headless"
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(service["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        service["metadata"]["labels"]["app.kubernetes.io/name"], "configmirror-operator",
        "the chart's labels stay"
    );
    let pdb = &named(&all, "PodDisruptionBudget", OPERATOR)["spec"];
    assert_eq!(pdb["minAvailable"], 2);
    assert!(pdb["maxUnavailable"].is_null());
}

#[test]
fn the_pod_disruption_budget_takes_max_unavailable_or_min_available_never_both() {
    let budget = |sets: &[&str]| {
        let mut all = vec!["replicaCount=3"];
        all.extend(sets);
        named(&render(&all), "PodDisruptionBudget", OPERATOR)["spec"].clone()
    };
    let default = budget(&[]);
    assert_eq!(default["maxUnavailable"], 1);
    assert!(default["minAvailable"].is_null());
    let max = budget(&["podDisruptionBudget.maxUnavailable=2"]);
    assert_eq!(max["maxUnavailable"], 2);
    assert!(max["minAvailable"].is_null());
    let min = budget(&["podDisruptionBudget.minAvailable=50%"]);
    assert_eq!(min["minAvailable"], "50%");
    assert!(min["maxUnavailable"].is_null(), "{min:?}");
    let error = render_error(&[
        "replicaCount=3",
        "podDisruptionBudget.maxUnavailable=1",
        "podDisruptionBudget.minAvailable=2",
    ]);
    assert!(
        error.contains("set maxUnavailable or minAvailable, not both"),
        "{error}"
    );
    // One replica: no budget, whatever it says.
    assert!(try_named(&render(&[]), "PodDisruptionBudget", OPERATOR).is_none());
}

#[test]
fn the_artifact_hub_annotations_match_the_chart_and_the_samples() {
    let meta: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("helm/configmirror-operator/Chart.yaml")).unwrap();
    assert_eq!(meta["kubeVersion"], ">=1.30.0-0");
    let annotation = |key: &str| -> serde_yaml::Value {
        serde_yaml::from_str(
            meta["annotations"][key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} annotation")),
        )
        .unwrap()
    };
    assert_eq!(meta["annotations"]["artifacthub.io/license"], "Apache-2.0");

    // The images listed are the ones the chart's defaults run.
    let defaults = render(&[]);
    let image = |name: &str| {
        named(&defaults, "StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone()
    };
    let images: Vec<serde_yaml::Value> = annotation("artifacthub.io/images")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["image"].clone())
        .collect();
    assert_eq!(images, [image(OPERATOR), image(POSTGRESQL)]);

    // The CRD listed is the chart's, and its example is the README's sample.
    let crds = annotation("artifacthub.io/crds");
    assert_eq!(crds[0]["name"], CRD);
    let crd = find(&defaults, "CustomResourceDefinition");
    assert_eq!(crds[0]["kind"], crd["spec"]["names"]["kind"]);
    assert_eq!(crds[0]["version"], crd["spec"]["versions"][0]["name"]);
    let sample = documents(&repo_file("deploy/samples/app-config.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "ConfigMirror")
        .unwrap();
    assert_eq!(annotation("artifacthub.io/crdsExamples")[0], sample);

    for key in ["artifacthub.io/links", "artifacthub.io/changes"] {
        assert!(
            !annotation(key).as_sequence().unwrap().is_empty(),
            "{key} is empty"
        );
    }
}
