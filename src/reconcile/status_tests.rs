//! Status is a pure function of the plan and the outcome: these check its
//! counts, conditions, bounds, and that nothing in it churns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

use super::apply::{Failure, Outcome};
use super::status::{StatusInput, build, invalid_spec, is_ready};
use crate::api::{MAX_PROBLEMS, ShardStatus};
use crate::plan::{Conflict, Holder, ReplicaPlan, ResolvedTargets, SourceConfigMap, SpecError};

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap())
}

fn source(name: &str) -> Arc<SourceConfigMap> {
    Arc::new(SourceConfigMap::from_configmap(&ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("src".into()),
            ..Default::default()
        },
        ..Default::default()
    }))
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn plan(present: &[&str], missing: &[&str], in_sync: &[&str]) -> ReplicaPlan {
    ReplicaPlan {
        sources: vec![source("cfg")],
        targets: ResolvedTargets {
            present: set(present),
            missing: set(missing),
            ..Default::default()
        },
        in_sync: BTreeMap::from([("cfg".to_string(), set(in_sync))]),
        ..Default::default()
    }
}

fn shard() -> ShardStatus {
    ShardStatus {
        member: "local".into(),
        epoch: 0,
    }
}

fn input<'a>(
    plan: &'a ReplicaPlan,
    outcome: &'a Outcome,
    previous: Option<&'a crate::api::ConfigMirrorStatus>,
    now: Time,
) -> StatusInput<'a> {
    StatusInput {
        generation: Some(3),
        previous,
        plan,
        outcome,
        now,
        shard: shard(),
        database: None,
    }
}

#[test]
fn a_fully_synced_mirror_is_ready_with_counts() {
    let p = plan(&["a", "b"], &[], &["a"]);
    let o = Outcome {
        written: vec![("cfg".into(), "b".into())],
        ..Default::default()
    };
    let s = build(&input(&p, &o, None, at(0)));
    assert!(is_ready(&s));
    assert_eq!(
        (s.sources, s.targets, s.replicas, s.conflicts),
        (1, 2, 2, 0)
    );
    assert_eq!(s.observed_generation, Some(3));
    let entry = &s.replicated_config_maps[0];
    assert_eq!(
        (entry.target_count, entry.targets.clone()),
        (2, vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(entry.last_sync_time, Some(at(0)));
    assert_eq!(s.shard.as_ref().unwrap().member, "local");
}

#[test]
fn nothing_churns_when_nothing_changed() {
    let p = plan(&["a"], &[], &["a"]);
    let o = Outcome::default();
    let first = build(&input(&p, &o, None, at(0)));
    let again = build(&input(&p, &o, Some(&first), at(500)));
    assert_eq!(
        first, again,
        "a pass without writes yields the identical status"
    );
}

#[test]
fn last_sync_time_moves_only_when_a_replica_was_written() {
    let p = plan(&["a"], &[], &["a"]);
    let first = build(&input(&p, &Outcome::default(), None, at(0)));
    let p2 = plan(&["a"], &[], &[]);
    let wrote = Outcome {
        written: vec![("cfg".into(), "a".into())],
        ..Default::default()
    };
    let second = build(&input(&p2, &wrote, Some(&first), at(60)));
    assert_eq!(
        second.replicated_config_maps[0].last_sync_time,
        Some(at(60))
    );
    // Ready stayed True, so its transition time did not move.
    let ready = |s: &crate::api::ConfigMirrorStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .clone()
    };
    assert_eq!(ready(&second).last_transition_time, at(0));
}

#[test]
fn conflicts_missing_namespaces_and_failures_make_it_not_ready() {
    let p = ReplicaPlan {
        conflicts: vec![Conflict {
            namespace: "a".into(),
            name: "cfg".into(),
            holder: Holder::Unmanaged,
        }],
        ..plan(&["a", "b"], &["later"], &["b"])
    };
    let s = build(&input(&p, &Outcome::default(), None, at(0)));
    assert!(!is_ready(&s));
    let reason = |t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(reason("Ready"), Some(("False".into(), "Conflict".into())));
    assert_eq!(
        reason("Conflict"),
        Some(("True".into(), "ReplicaConflict".into()))
    );
    let reasons: Vec<&str> = s.problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons, ["Conflict", "NamespaceMissing"]);
    assert!(s.problems[0].message.contains("never overwrites"));

    let failed = Outcome {
        failures: vec![Failure {
            namespace: "b".into(),
            name: "cfg".into(),
            op: "update",
            source: kube::Error::Api(kube::core::Status::failure("boom", "InternalError").boxed()),
        }],
        ..Default::default()
    };
    let s = build(&input(&plan(&["b"], &[], &[]), &failed, None, at(0)));
    assert_eq!(s.conditions[0].reason, "WriteFailed");
}

#[test]
fn lists_stay_bounded_whatever_the_size() {
    let namespaces: Vec<String> = (0..3000).map(|i| format!("ns-{i:04}")).collect();
    let refs: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let mut p = plan(&refs, &refs[..50], &refs);
    p.sources = (0..150).map(|i| source(&format!("cfg-{i:03}"))).collect();
    p.in_sync = p
        .sources
        .iter()
        .map(|s| (s.name.clone(), set(&refs)))
        .collect();
    p.conflicts = (0..40)
        .map(|i| Conflict {
            namespace: format!("ns-{i}"),
            name: "cfg".into(),
            holder: Holder::Unmanaged,
        })
        .collect();
    let s = build(&input(&p, &Outcome::default(), None, at(0)));
    assert_eq!(s.problems.len(), MAX_PROBLEMS);
    assert_eq!(s.problems.last().unwrap().reason, "More");
    assert_eq!(s.replicated_config_maps.len(), 100);
    assert!(
        s.replicated_config_maps
            .iter()
            .all(|e| e.targets.len() <= 20)
    );
    assert_eq!(s.replicated_config_maps[0].target_count, 3000);
    let bytes = serde_json::to_vec(&s).unwrap().len();
    assert!(bytes < 200_000, "status is {bytes} bytes");
}

#[test]
fn invalid_spec_keeps_the_rest_of_the_status() {
    let p = plan(&["a"], &[], &["a"]);
    let ok = build(&input(&p, &Outcome::default(), None, at(0)));
    let bad = invalid_spec(Some(&ok), Some(4), &SpecError::NoTargets, &at(10), shard());
    assert!(!is_ready(&bad));
    assert_eq!(bad.conditions[0].reason, "InvalidSpec");
    assert!(bad.conditions[0].message.contains("needs targets"));
    assert_eq!(bad.replicas, 1, "the replicas are still there");
    assert_eq!(bad.observed_generation, Some(4));
    let again = invalid_spec(Some(&bad), Some(4), &SpecError::NoTargets, &at(99), shard());
    assert_eq!(bad, again, "no churn while the spec stays invalid");
}

#[test]
fn a_denial_makes_ready_false_forbidden_and_is_listed_once() {
    use crate::plan::Denial;
    use crate::plan::policy::{Role, Why};
    use crate::reconcile::status::new_denials;

    let mut p = plan(&["a"], &[], &["a"]);
    p.denials = vec![
        Denial {
            role: Role::Source,
            namespace: "team-b".into(),
            why: Why::NotOptedIn,
        },
        Denial {
            role: Role::Target,
            namespace: "kube-system".into(),
            why: Why::Protected,
        },
    ];
    let o = Outcome::default();
    let s = build(&input(&p, &o, None, at(0)));
    assert!(!is_ready(&s));
    let ready = &s.conditions[0];
    assert_eq!(ready.reason, "Forbidden");
    assert!(ready.message.contains("team-b"), "{}", ready.message);
    assert!(ready.message.contains("1 more"), "{}", ready.message);
    let forbidden: Vec<&str> = s
        .problems
        .iter()
        .filter(|p| p.reason == "Forbidden")
        .map(|p| p.namespace.as_str())
        .collect();
    assert_eq!(forbidden, ["kube-system", "team-b"]);
    // Both are news the first time, neither on the next pass.
    assert_eq!(new_denials(None, &p).len(), 2);
    assert!(new_denials(Some(&s), &p).is_empty());
    let again = build(&input(&p, &o, Some(&s), at(60)));
    assert_eq!(again, s, "an unchanged denial writes no new status");
}
