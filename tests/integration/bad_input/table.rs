//! A table of bad and extreme inputs thrown at one running operator with a
//! database: each gets a rejection from the API server or a condition on
//! its mirror, replicas and rows stay byte-exact, the operator never
//! restarts, and a bystander mirror's replicas keep their resourceVersion.

use std::collections::BTreeMap;

use configmirror::api::ConfigMirror;
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::support::db::{TestDatabase, rows};
use crate::support::k8s::*;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually, unique};

/// `prefix` made unique, then padded to exactly `len` characters.
fn name_of_length(prefix: &str, len: usize) -> String {
    let mut name = unique(prefix);
    while name.len() < len {
        name.push('x');
    }
    name
}

fn case_selector(case: &str) -> Option<LabelSelector> {
    match_labels(&[("case", case)])
}

/// `n` match expressions that all hold for a ConfigMap labelled case=`case`.
fn long_selector(case: &str, n: usize) -> LabelSelector {
    let mut expressions: Vec<LabelSelectorRequirement> = (1..n)
        .map(|i| LabelSelectorRequirement {
            key: format!("absent-{i}"),
            operator: "DoesNotExist".into(),
            values: None,
        })
        .collect();
    expressions.push(LabelSelectorRequirement {
        key: "case".into(),
        operator: "In".into(),
        values: Some(vec![case.into()]),
    });
    LabelSelector {
        match_expressions: Some(expressions),
        match_labels: None,
    }
}

/// The API server's answer to creating `spec` as mirror `name`: its error text.
async fn rejected(
    api: &Api<ConfigMirror>,
    name: &str,
    spec: configmirror::api::ConfigMirrorSpec,
) -> String {
    api.create(&PostParams::default(), &ConfigMirror::new(name, spec))
        .await
        .map(|_| panic!("mirror {name} was accepted"))
        .unwrap_err()
        .to_string()
}

async fn ready(s: &Scenario, mirror: &str) -> configmirror::api::ConfigMirrorStatus {
    wait_status(&s.client, &s.home.name, mirror, "Ready", |st| {
        ready_reason(st) == Some(("True".into(), "Synced".into()))
    })
    .await
}

#[tokio::test]
async fn a_table_of_bad_inputs_gets_answers_and_disturbs_no_one() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("table", 1).await;
    let t = s.target_names()[0];
    let mut op = s.operator().database(&db.url).start().await;
    let pid = op.pid();
    let pool = db.pool().await;
    let api = Api::<ConfigMirror>::namespaced(s.client.clone(), &s.home.name);

    // The bystander, whose replica must never be rewritten.
    s.selected_source("bystander", &[("k", "v")]).await;
    let bystander_uid = s.mirror_selected("bystander").await;
    let bystander = wait_cm(&s.client, t, "bystander", "the bystander's replica", |c| {
        is_replica(c, &bystander_uid, &[("k", "v")])
    })
    .await;

    // Rejected by the API server, before the operator sees anything.
    let too_long = rejected(
        &api,
        &"m".repeat(254),
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    assert!(too_long.contains("253"), "254-character name: {too_long}");
    let ns64 = rejected(&api, "ns64", mirror_spec(&"n".repeat(64), &[t], None)).await;
    assert!(
        ns64.contains("spec.sourceNamespace"),
        "64-character namespace: {ns64}"
    );
    let many: Vec<String> = (0..5001).map(|i| format!("target-{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let over = rejected(&api, "over", mirror_spec(&s.source.name, &refs, None)).await;
    assert!(
        over.contains("spec.targetNamespaces"),
        "5,001 targets: {over}"
    );
    let mut huge = configmap("huge", &[("case", "huge")], &[]);
    huge.data = Some(BTreeMap::from([(
        "big".into(),
        "x".repeat(1024 * 1024 + 1),
    )]));
    let err =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(s.client.clone(), &s.source.name)
            .create(&PostParams::default(), &huge)
            .await
            .expect_err("a ConfigMap over 1 MiB");
    assert!(err.to_string().contains("1048576"), "{err}");

    // Names at their limits: 63-character namespaces, a 253-character
    // ConfigMap and mirror.
    let long_source = TestNamespace::create_named(&s.client, &name_of_length("src", 63)).await;
    let long_target = TestNamespace::create_named(&s.client, &name_of_length("dst", 63)).await;
    let long_cm = name_of_length("cm", 253);
    create_cm(
        &s.client,
        &long_source.name,
        &configmap(&long_cm, &[], &[("k", "long")]),
    )
    .await;
    let long_mirror = "l".repeat(253);
    let spec = mirror_spec(&long_source.name, &[&long_target.name], None);
    let uid = create_mirror(&s.client, &s.home.name, &long_mirror, spec)
        .await
        .uid()
        .unwrap();
    wait_cm(
        &s.client,
        &long_target.name,
        &long_cm,
        "the long-named replica",
        |c| is_replica(c, &uid, &[("k", "long")]),
    )
    .await;
    ready(&s, &long_mirror).await;

    // 100 match expressions; the same with one that cannot be parsed.
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("sel", &[("case", "sel")], &[("k", "100")]),
    )
    .await;
    let spec = mirror_spec(&s.source.name, &[t], Some(long_selector("sel", 100)));
    let uid = create_mirror(&s.client, &s.home.name, "sel", spec)
        .await
        .uid()
        .unwrap();
    wait_cm(&s.client, t, "sel", "100 expressions", |c| {
        is_replica(c, &uid, &[("k", "100")])
    })
    .await;
    let mut broken = long_selector("sel", 100);
    broken.match_expressions.as_mut().unwrap()[50].operator = "Within".into();
    create_mirror(
        &s.client,
        &s.home.name,
        "broken",
        mirror_spec(&s.source.name, &[t], Some(broken)),
    )
    .await;
    let st = wait_status(&s.client, &s.home.name, "broken", "InvalidSpec", |st| {
        ready_reason(st).is_some_and(|(_, r)| r == "InvalidSpec")
    })
    .await;
    assert!(condition(&st, "Ready").unwrap().message.contains("Within"));

    // 5,000 listed targets, one of which exists.
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("wide", &[("case", "wide")], &[("k", "w")]),
    )
    .await;
    let mut wide: Vec<String> = (1..5000)
        .map(|i| format!("{}-absent-{i}", s.home.name))
        .collect();
    wide.push(t.to_string());
    let refs: Vec<&str> = wide.iter().map(String::as_str).collect();
    let uid = create_mirror(
        &s.client,
        &s.home.name,
        "wide",
        mirror_spec(&s.source.name, &refs, case_selector("wide")),
    )
    .await
    .uid()
    .unwrap();
    wait_cm(&s.client, t, "wide", "the one present target", |c| {
        is_replica(c, &uid, &[("k", "w")])
    })
    .await;
    let st = wait_status(&s.client, &s.home.name, "wide", "NamespaceMissing", |st| {
        ready_reason(st).is_some_and(|(_, r)| r == "NamespaceMissing")
    })
    .await;
    assert_eq!(st.targets, 5000);
    assert!(
        st.problems.len() <= 20,
        "problems are capped: {}",
        st.problems.len()
    );

    // Just under 1 MiB, NUL in data and in an annotation, SQL metacharacters.
    let tricky = "'); DROP TABLE configmaps; -- $1 \\ % _ \" \u{0}";
    let mut content = configmap("content", &[("case", "content")], &[]);
    content.data = Some(BTreeMap::from([
        ("big".to_string(), "y".repeat(1024 * 1024 - 4096)),
        ("nul".to_string(), "before\u{0}after".to_string()),
        ("sql".to_string(), tricky.to_string()),
    ]));
    content.binary_data = Some(BTreeMap::from([(
        "bin".to_string(),
        ByteString(vec![0, 39, 59, 255]),
    )]));
    content.metadata.annotations = Some(BTreeMap::from([
        ("note".to_string(), tricky.to_string()),
        ("plain".to_string(), "a'b".to_string()),
    ]));
    let source = create_cm(&s.client, &s.source.name, &content).await;
    let uid = create_mirror(
        &s.client,
        &s.home.name,
        "content",
        mirror_spec(&s.source.name, &[t], case_selector("content")),
    )
    .await
    .uid()
    .unwrap();
    let replica = wait_cm(&s.client, t, "content", "the content replica", |c| {
        c.labels().get(configmirror::api::keys::MIRROR_UID) == Some(&uid)
    })
    .await;
    assert!(data_of(&replica) == data_of(&source), "data differs");
    assert_eq!(binary_of(&replica), binary_of(&source));
    ready(&s, "content").await;
    let row = eventually("the content row", WAIT, || async {
        rows(&pool, &s.home.name, "content")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(row.data == data_of(&source), "the row's data differs");
    assert_eq!(row.binary.get("bin"), Some(&vec![0, 39, 59, 255]));
    assert_eq!(row.annotations["plain"], "a'b");
    assert_eq!(
        row.annotations_in_binary.get("note").map(Vec::as_slice),
        Some(tricky.as_bytes())
    );
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM configmaps")
        .fetch_one(&pool)
        .await
        .expect("the configmaps table is still there");
    assert!(tables >= 4, "rows: {tables}");

    // Through all of it: the same process, healthy, and the bystander untouched.
    assert!(op.is_running(), "the operator exited");
    assert_eq!(op.pid(), pid);
    ready(&s, "bystander").await;
    let now = get_cm(&s.client, t, "bystander").await.unwrap();
    assert_eq!(
        now.resource_version(),
        bystander.resource_version(),
        "the bystander's replica was rewritten"
    );
}
