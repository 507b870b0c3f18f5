//! Criterion benches of the pure parts: planning, hashing, selector matching.
//! `cargo bench --bench plan`; results in loadtest/RESULTS.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use configmirror::api::ConfigMirrorSpec;
use configmirror::plan::hash::content_hash;
use configmirror::plan::model::ReplicaContent;
use configmirror::plan::replica::desired_configmap;
use configmirror::plan::selector::Selector;
use configmirror::plan::{
    KnownConflicts, MirrorIdentity, NamespaceMeta, NamespacePolicy, Namespaces, PlanInput,
    ReplicaIndex, ReplicaMeta, SourceConfigMap, plan, validate,
};
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;

fn mirror() -> MirrorIdentity {
    MirrorIdentity {
        namespace: "configmirror-system".into(),
        name: "bench".into(),
        uid: "bench-uid".into(),
    }
}

fn source(name: &str) -> Arc<SourceConfigMap> {
    Arc::new(SourceConfigMap::from_configmap(&ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("src".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(BTreeMap::from([(
                "replicate".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "config.yaml".to_string(),
            "key: value\n".repeat(10),
        )])),
        ..Default::default()
    }))
}

struct World {
    spec: configmirror::plan::ValidSpec,
    sources: Vec<Arc<SourceConfigMap>>,
    namespaces: Namespaces,
    replicas: ReplicaIndex,
}

/// `sources` × `targets`, with every replica already in sync (the steady
/// state a reconcile plans over) when `converged`.
fn world(sources: usize, targets: usize, converged: bool) -> World {
    let target_names: Vec<String> = (0..targets).map(|i| format!("ns-{i:05}")).collect();
    // 10,000 targets is past the list's 5,000: select them by label, as one would.
    let spec = validate(&ConfigMirrorSpec {
        source_namespace: "src".into(),
        target_namespace_selector: Some(LabelSelector::default()),
        selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "replicate".to_string(),
                "true".to_string(),
            )])),
            match_expressions: None,
        }),
        ..Default::default()
    })
    .unwrap();
    let sources: Vec<_> = (0..sources)
        .map(|i| source(&format!("cfg-{i:04}")))
        .collect();
    let mut namespaces: Namespaces = target_names
        .iter()
        .map(|n| (n.clone(), NamespaceMeta::default()))
        .collect();
    namespaces.insert("src".into(), NamespaceMeta::default());
    let mut replicas = ReplicaIndex::default();
    if converged {
        for ns in &target_names {
            for s in &sources {
                let mut cm = desired_configmap(&mirror(), s, ns, Some("1".into()));
                cm.metadata.uid = Some(format!("{ns}-{}", s.name));
                replicas.observe(ReplicaMeta::from_configmap(&cm));
            }
        }
    }
    World {
        spec,
        sources,
        namespaces,
        replicas,
    }
}

fn bench_plan(c: &mut Criterion) {
    let policy = NamespacePolicy::default();
    let known = KnownConflicts::new();
    for (name, sources, targets) in [
        ("1 source x 10,000 targets", 1, 10_000),
        ("1,000 sources x 10 targets", 1_000, 10),
    ] {
        for converged in [false, true] {
            let w = world(sources, targets, converged);
            let label = format!(
                "plan {name} ({})",
                if converged {
                    "in sync"
                } else {
                    "all to create"
                }
            );
            c.bench_function(&label, |b| {
                b.iter(|| {
                    let p = plan(&PlanInput {
                        mirror: &mirror(),
                        spec: &w.spec,
                        candidates: &w.sources,
                        replicas: &w.replicas,
                        namespaces: &w.namespaces,
                        policy: &policy,
                        known_conflicts: &known,
                    });
                    std::hint::black_box(p.actions.len())
                })
            });
        }
    }
}

fn bench_hash(c: &mut Criterion) {
    let mut content = ReplicaContent::default();
    content
        .data
        .insert("big.txt".into(), "x".repeat(768 * 1024));
    content
        .binary_data
        .insert("blob".into(), ByteString(vec![7u8; 256 * 1024]));
    c.bench_function("content hash of a 1 MiB ConfigMap", |b| {
        b.iter(|| content_hash(std::hint::black_box(&content)))
    });
}

fn bench_selector(c: &mut Criterion) {
    let selector = Selector::parse(Some(&LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            },
            LabelSelectorRequirement {
                key: "legacy".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
        ]),
    }))
    .unwrap();
    let objects: Vec<BTreeMap<String, String>> = (0..10_000)
        .map(|i| {
            BTreeMap::from([
                (
                    "app".to_string(),
                    if i % 2 == 0 { "web" } else { "api" }.to_string(),
                ),
                ("tier".to_string(), ["a", "b", "c"][i % 3].to_string()),
                ("team".to_string(), format!("team-{}", i % 50)),
            ])
        })
        .collect();
    c.bench_function("selector over 10,000 label sets", |b| {
        b.iter(|| objects.iter().filter(|l| selector.matches(l)).count())
    });
}

/// The coordinator's placement: 10,000 mirrors over 5 members, from nothing
/// and after a sixth joins (sticky: only what must move moves).
fn bench_assign(c: &mut Criterion) {
    use configmirror::shard::assign::{Role, assign};
    use std::collections::{BTreeMap, HashMap};
    let mirrors: Vec<String> = (0..10_000).map(|i| format!("mirror-uid-{i:05}")).collect();
    let five: BTreeMap<String, Role> = (0..5)
        .map(|i| (format!("worker-{i}"), Role::Eligible))
        .collect();
    let mut six = five.clone();
    six.insert("worker-5".into(), Role::Eligible);
    let empty = HashMap::new();
    c.bench_function("assign 10,000 mirrors to 5 members", |b| {
        b.iter(|| std::hint::black_box(assign(&mirrors, &five, &empty).len()))
    });
    let placed = assign(&mirrors, &five, &empty);
    c.bench_function("assign 10,000 mirrors after a 6th member joins", |b| {
        b.iter(|| std::hint::black_box(assign(&mirrors, &six, &placed).len()))
    });
}

criterion_group!(
    benches,
    bench_plan,
    bench_hash,
    bench_selector,
    bench_assign
);
criterion_main!(benches);
