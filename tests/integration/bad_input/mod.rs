//! Bad input gets a clear answer and loses nothing.

mod table;

use std::collections::BTreeMap;
use std::time::Duration;

use configmirror::api::{ConfigMirror, keys};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::support::audit::{AuditCursor, summary};
use crate::support::k8s::*;
use crate::support::scenario::Scenario;
use crate::support::{TestNamespace, eventually};

#[tokio::test]
async fn the_crd_rejects_impossible_specs_with_readable_messages() {
    let s = Scenario::new("crdval", 0).await;
    let api = Api::<ConfigMirror>::namespaced(s.client.clone(), &s.home.name);
    let cases = [
        (
            mirror_spec("src", &["dev", "src"], None),
            "sourceNamespace must not be listed in targetNamespaces",
        ),
        (mirror_spec("src", &[], None), "a mirror needs targets"),
        (
            mirror_spec("Not_A_Namespace", &["dev"], None),
            "spec.sourceNamespace",
        ),
        (
            mirror_spec("src", &["dev", "UPPER"], None),
            "spec.targetNamespaces[1]",
        ),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &ConfigMirror::new(&format!("bad-{i}"), spec),
            )
            .await
            .expect_err("an invalid spec was accepted");
        let text = err.to_string();
        assert!(text.contains(expected), "case {i}: {text}");
    }
    // 5,000 targets are allowed.
    let many: Vec<String> = (0..5000).map(|i| format!("target-{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    api.create(
        &PostParams::default(),
        &ConfigMirror::new("many", mirror_spec("src", &refs, None)),
    )
    .await
    .expect("5,000 targets");
}

#[tokio::test]
async fn an_empty_selector_never_copies_or_touches_kube_root_ca() {
    let s = Scenario::new("rootca", 1).await;
    let op = s.operator().start().await;
    let t = s.target_names()[0];
    let root = wait_cm(
        &s.client,
        t,
        "kube-root-ca.crt",
        "the root CA ConfigMap",
        |_| true,
    )
    .await;
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("plain", &[], &[("k", "v")]),
    )
    .await;
    let audit = AuditCursor::now();
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        "m",
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    let uid = mirror.uid().unwrap();
    wait_cm(&s.client, t, "plain", "replica", |c| {
        is_replica(c, &uid, &[("k", "v")])
    })
    .await;
    let st = wait_status(&s.client, &s.home.name, "m", "Ready", |st| st.replicas == 1).await;
    assert_eq!(st.sources, 1, "kube-root-ca.crt counted as a source");
    let after = get_cm(&s.client, t, "kube-root-ca.crt").await.unwrap();
    assert_eq!(after.resource_version(), root.resource_version());
    assert!(!after.labels().contains_key(keys::MIRROR_UID));
    let touched: Vec<_> = audit
        .operator_writes(&op.agent(), &[])
        .into_iter()
        .filter(|e| e.object_ref.name == "kube-root-ca.crt")
        .collect();
    assert!(touched.is_empty(), "{}", summary(&touched));
}

#[tokio::test]
async fn mirrors_pointing_at_each_other_do_not_loop() {
    let s = Scenario::new("loop", 0).await;
    let _op = s.operator().start().await;
    let other = TestNamespace::create(&s.client, "loop-other").await;
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("from-one", &[], &[("k", "1")]),
    )
    .await;
    create_cm(
        &s.client,
        &other.name,
        &configmap("from-two", &[], &[("k", "2")]),
    )
    .await;
    let a = create_mirror(
        &s.client,
        &s.home.name,
        "a",
        mirror_spec(&s.source.name, &[&other.name], None),
    )
    .await;
    let b = create_mirror(
        &s.client,
        &s.home.name,
        "b",
        mirror_spec(&other.name, &[&s.source.name], None),
    )
    .await;
    wait_cm(&s.client, &other.name, "from-one", "a's replica", |c| {
        is_replica(c, &a.uid().unwrap(), &[("k", "1")])
    })
    .await;
    wait_cm(&s.client, &s.source.name, "from-two", "b's replica", |c| {
        is_replica(c, &b.uid().unwrap(), &[("k", "2")])
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Each namespace holds its own ConfigMap and exactly one replica: no echo.
    for (ns, mirror) in [(&s.source.name, "a"), (&other.name, "b")] {
        let st = get_mirror(&s.client, &s.home.name, mirror)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!((st.sources, st.replicas), (1, 1), "{mirror}: {st:?}");
        let names: Vec<String> =
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(s.client.clone(), ns)
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|c| c.name_any())
                .filter(|n| n != "kube-root-ca.crt")
                .collect();
        assert_eq!(names.len(), 2, "{ns}: {names:?}");
    }
}

#[tokio::test]
async fn an_invalid_selector_is_a_permanent_error_without_a_retry_storm() {
    let s = Scenario::new("badsel", 1).await;
    let op = s.operator().start().await;
    let selector = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app".into(),
            operator: "Resembles".into(),
            values: Some(vec!["web".into()]),
        }]),
        match_labels: None,
    };
    let audit = AuditCursor::now();
    create_mirror(
        &s.client,
        &s.home.name,
        "m",
        mirror_spec(&s.source.name, &s.target_names(), Some(selector)),
    )
    .await;
    let st = wait_status(&s.client, &s.home.name, "m", "InvalidSpec", |st| {
        ready_reason(st).is_some_and(|(_, reason)| reason == "InvalidSpec")
    })
    .await;
    let ready = condition(&st, "Ready").unwrap();
    assert!(
        ready.message.contains("unknown operator \"Resembles\""),
        "{}",
        ready.message
    );
    let before = op
        .metric("configmirror_reconcile_total{result=\"success\"}")
        .await
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = op
        .metric("configmirror_reconcile_total{result=\"success\"}")
        .await
        .unwrap_or(0.0);
    // A retry storm would be ~5 reconciles in 10 s (backoff from 0.5 s).
    // Allowed: the one the finalizer write triggers, and one for a test
    // namespace the operator's watch (listed from the API server's cache,
    // which may lag behind under load) learns about only now.
    assert!(
        after - before <= 2.0,
        "reconciled {} more times while nothing changed",
        after - before
    );
    let status_writes = audit
        .operator_writes(&op.agent(), &[&s.home.name])
        .into_iter()
        .filter(|e| e.object_ref.subresource == "status")
        .count();
    assert_eq!(status_writes, 1, "InvalidSpec status written once");

    // Fixing the spec recovers it.
    create_cm(
        &s.client,
        &s.source.name,
        &configmap("web", &[("app", "web")], &[("k", "v")]),
    )
    .await;
    patch_mirror_spec(&s.client, &s.home.name, "m", serde_json::json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}})).await;
    wait_cm(
        &s.client,
        s.target_names()[0],
        "web",
        "replica after the fix",
        |c| data_of(c) == labels(&[("k", "v")]),
    )
    .await;
}

#[tokio::test]
async fn long_names_huge_configmaps_and_binary_data_replicate_exactly() {
    let s = Scenario::new("huge", 1).await;
    let _op = s.operator().start().await;
    let t = s.target_names()[0];
    // Close to the 1 MiB limit, with every byte value in binaryData.
    let big: String = (0..1_000_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut cm = configmap("huge", &[], &[]);
    cm.data = Some(BTreeMap::from([
        ("big.txt".to_string(), big),
        ("unicode".to_string(), "grüß 🚀 \u{7f}".to_string()),
    ]));
    let all_bytes: Vec<u8> = (0..=255u8).chain([0xC3, 0x28, 0xFF, 0xFE, 0x00]).collect();
    cm.binary_data = Some(BTreeMap::from([(
        "bytes.bin".to_string(),
        ByteString(all_bytes),
    )]));
    let source = create_cm(&s.client, &s.source.name, &cm).await;
    let name = "m".repeat(253);
    let mirror = create_mirror(
        &s.client,
        &s.home.name,
        &name,
        mirror_spec(&s.source.name, &[t], None),
    )
    .await;
    let uid = mirror.uid().unwrap();
    let replica = wait_cm(&s.client, t, "huge", "the 1 MiB replica", |c| {
        c.labels().get(keys::MIRROR_UID) == Some(&uid)
    })
    .await;
    assert!(data_of(&replica) == data_of(&source), "data differs");
    assert_eq!(
        binary_of(&replica),
        binary_of(&source),
        "binaryData differs"
    );
    assert_eq!(
        replica.annotations().get(keys::MIRROR),
        Some(&format!("{}/{name}", s.home.name))
    );
    eventually("the 253-character mirror to be Ready", WAIT, || async {
        let st = get_mirror(&s.client, &s.home.name, &name).await?.status?;
        (st.replicas == 1).then_some(())
    })
    .await;
}
