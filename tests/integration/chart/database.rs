//! The mode and the database follow the values: replicaCount 3 alone means
//! three sharded workers with the chart's own PostgreSQL (rendered here in
//! full), a database of the user's turns that off, sharding.enabled forces
//! either mode, and values that cannot work refuse to render, saying what to
//! set.

use super::{
    OPERATOR, POSTGRESQL, has_flag, named, operator_args, operator_env, render, render_error,
    secret_data, strings, try_named,
};

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
