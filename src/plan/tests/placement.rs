//! Which replicas exist: targets, deletes, conflicts and cleanup.

use super::*;

#[test]
fn a_deleted_or_deselected_source_deletes_its_replicas() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.sources = vec![source(
        "app-config",
        &[("replicate", "false")],
        &[("k", "v")],
    )];
    let p = w.plan();
    assert_eq!(p.actions.len(), 2);
    assert!(p.actions.iter().all(|a| matches!(
        a,
        Action::Delete {
            reason: DeleteReason::SourceGone,
            ..
        }
    )));
    w.sources.clear();
    assert_eq!(w.plan().actions.len(), 2);
}

#[test]
fn a_namespace_leaving_the_targets_loses_its_replica() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.spec = spec(&["dev"], match_labels(&[("replicate", "true")]));
    let p = w.plan();
    assert!(
        matches!(&p.actions[..], [Action::Delete { namespace, reason: DeleteReason::NotTargeted, .. }] if namespace == "prod")
    );
}

#[test]
fn a_new_source_namespace_converges() {
    let mut w = World::new(&["dev"]);
    w.converge();
    let mut s = spec(&["dev"], match_labels(&[("replicate", "true")]));
    s.source_namespace = "other-source".into();
    w.spec = s;
    let mut cm = source_cm("other-config", &[("replicate", "true")], &[("x", "y")]);
    cm.metadata.namespace = Some("other-source".into());
    w.sources
        .push(Arc::new(SourceConfigMap::from_configmap(&cm)));
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("dev", "other-config")]);
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Delete { name, .. } if name == "app-config"))
    );
}

#[test]
fn kubernetes_managed_configmaps_and_replicas_are_never_sources() {
    let mut w = World::new(&["dev"]);
    w.spec = spec(&["dev"], None);
    w.sources = vec![
        source("kube-root-ca.crt", &[], &[("ca.crt", "pem")]),
        source(
            "someone-elses-replica",
            &[
                (keys::MANAGED_BY, keys::MANAGED_BY_VALUE),
                (keys::MIRROR_UID, "other"),
            ],
            &[],
        ),
        source("plain", &[], &[]),
    ];
    assert_eq!(creates(&w.plan()), vec![pair("dev", "plain")]);
}

#[test]
fn a_name_held_by_another_mirror_is_a_conflict_and_others_proceed() {
    let mut w = World::new(&["dev", "prod"]);
    let src = w.sources[0].clone();
    let mut theirs = written_replica(&src, "dev", "7");
    theirs.mirror_uid = Some("other-mirror-uid".into());
    theirs.mirror = Some("team-b/theirs".into());
    w.replicas.observe(theirs);
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("prod", "app-config")]);
    assert_eq!(
        p.conflicts,
        vec![Conflict {
            namespace: "dev".into(),
            name: "app-config".into(),
            holder: Holder::OtherMirror("team-b/theirs".into())
        }]
    );
    // And the other mirror's replica is never deleted as our orphan.
    w.spec = spec(&["prod"], match_labels(&[("replicate", "true")]));
    assert!(w.plan().actions.iter().all(|a| a.namespace() != "dev"));
}

#[test]
fn a_known_unmanaged_configmap_is_a_conflict_not_a_create() {
    let mut w = World::new(&["dev", "prod"]);
    w.known.insert(pair("dev", "app-config"), Holder::Unmanaged);
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("prod", "app-config")]);
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].holder, Holder::Unmanaged);
}

#[test]
fn missing_and_terminating_namespaces_get_no_writes() {
    let mut w = World::new(&["dev", "later"]);
    w.namespaces.insert(
        "dev".into(),
        NamespaceMeta {
            labels: BTreeMap::new(),
            terminating: true,
            ..Default::default()
        },
    );
    let p = w.plan();
    assert!(p.actions.is_empty());
    assert_eq!(p.targets.missing.iter().collect::<Vec<_>>(), ["later"]);
}

#[test]
fn a_replica_in_a_terminating_namespace_is_left_to_namespace_deletion() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.namespaces.insert(
        "prod".into(),
        NamespaceMeta {
            labels: BTreeMap::new(),
            terminating: true,
            ..Default::default()
        },
    );
    assert!(w.plan().actions.is_empty());
}

#[test]
fn empty_target_selector_skips_source_and_system_namespaces() {
    let mut w = World::new(&["dev"]);
    w.spec = validate(&ConfigMirrorSpec {
        source_namespace: "app-source".into(),
        target_namespace_selector: Some(LabelSelector::default()),
        selector: match_labels(&[("replicate", "true")]),
        ..Default::default()
    })
    .unwrap();
    let targets: Vec<_> = creates(&w.plan()).into_iter().map(|(ns, _)| ns).collect();
    assert_eq!(targets, ["dev", "prod", "staging"]);
}

#[test]
fn cleanup_deletes_only_this_mirrors_replicas() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    let mut theirs = written_replica(&w.sources[0], "staging", "9");
    theirs.mirror_uid = Some("other".into());
    w.replicas.observe(theirs);
    let all: Vec<ReplicaMeta> = ["dev", "prod", "staging"]
        .iter()
        .filter_map(|ns| w.replicas.get(ns, "app-config").cloned())
        .collect();
    let actions = plan_cleanup(&mirror(), &all);
    let namespaces: Vec<_> = actions.iter().map(|a| a.namespace()).collect();
    assert_eq!(namespaces, ["dev", "prod"]);
}

#[test]
fn the_index_never_goes_back_to_an_older_version() {
    let src = source("app-config", &[], &[]);
    let mut index = ReplicaIndex::default();
    assert!(index.observe(written_replica(&src, "dev", "20")));
    assert!(
        !index.observe(written_replica(&src, "dev", "19")),
        "a late watch event"
    );
    assert!(!index.observe(written_replica(&src, "dev", "20")));
    assert!(index.observe(written_replica(&src, "dev", "21")));
    index.forget("dev", "app-config", "21");
    assert!(index.get("dev", "app-config").is_none());
    assert!(
        !index.observe(written_replica(&src, "dev", "21")),
        "an event from before our delete"
    );
    assert!(
        index.observe(written_replica(&src, "dev", "30")),
        "recreated later"
    );
    assert_eq!(index.owned_by(UID).count(), 1);
}
