//! Each write outcome against the fake API server: what is sent, what the
//! plan's outcome says, and what the caches are told.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::{Done, Outcome, Writer};
use crate::api::keys;
use crate::plan::{Action, DeleteReason, Holder, MirrorIdentity, SourceConfigMap, Target};
use crate::reconcile::fakes::{
    FakeApi, FakeEffects, Sent, Told, already_exists, api_error, conflict, not_found,
};

fn mirror() -> MirrorIdentity {
    MirrorIdentity {
        namespace: "team".into(),
        name: "m".into(),
        uid: "mirror-uid".into(),
    }
}

fn target(namespace: &str) -> Target {
    let source = SourceConfigMap::from_configmap(&ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("src".into()),
            name: Some("cfg".into()),
            ..Default::default()
        },
        ..Default::default()
    });
    Target {
        namespace: namespace.into(),
        source: Arc::new(source),
    }
}

fn found(labels: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("dev".into()),
            name: Some("cfg".into()),
            resource_version: Some("7".into()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(api: &FakeApi, effects: &FakeEffects, action: Action) -> Done {
    let id = mirror();
    let writer = Writer {
        api,
        effects,
        mirror: &id,
        adopt_reference_replicas: false,
    };
    futures::executor::block_on(writer.execute(action))
}

fn create(namespace: &str) -> Action {
    Action::Create(target(namespace))
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn created_is_written_and_observed() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    let done = run(&api, &fx, create("dev"));
    assert!(matches!(done, Done::Written { ref namespace, .. } if namespace == "dev"));
    assert_eq!(api.sent(), [Sent::Create(s("dev"), s("cfg"))]);
    assert_eq!(fx.told(), [Told::Observed(s("dev"), s("cfg"), s("1"))]);
}

#[test]
fn updated_is_a_replace_guarded_by_the_version_read() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    let update = Action::Update {
        target: target("dev"),
        resource_version: s("41"),
    };
    let done = run(&api, &fx, update);
    assert!(matches!(done, Done::Written { .. }));
    assert_eq!(api.sent(), [Sent::Replace(s("dev"), s("cfg"), s("41"))]);
    assert_eq!(fx.told().len(), 1);
}

#[test]
fn conflict_names_the_holder_and_is_remembered() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("create", already_exists());
    *api.existing.lock().unwrap() = Some(found(&[]));
    let done = run(&api, &fx, create("dev"));
    let Done::Conflict(c) = done else {
        panic!("{done:?}")
    };
    assert_eq!(
        (c.namespace.as_str(), c.holder.clone()),
        ("dev", Holder::Unmanaged)
    );
    assert_eq!(
        api.sent(),
        [
            Sent::Create(s("dev"), s("cfg")),
            Sent::Get(s("dev"), s("cfg"))
        ]
    );
    assert_eq!(
        fx.told(),
        [Told::Conflict(s("dev"), s("cfg"), Holder::Unmanaged)]
    );
}

#[test]
fn our_own_replica_found_on_create_is_stale_and_observed() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("create", already_exists());
    let ours = [
        (keys::MANAGED_BY, keys::MANAGED_BY_VALUE),
        (keys::MIRROR_UID, "mirror-uid"),
    ];
    *api.existing.lock().unwrap() = Some(found(&ours));
    assert!(matches!(run(&api, &fx, create("dev")), Done::Stale));
    assert_eq!(fx.told(), [Told::Observed(s("dev"), s("cfg"), s("7"))]);
}

#[test]
fn stale_when_the_replica_changed_since_the_plan() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("replace", conflict());
    let update = Action::Update {
        target: target("dev"),
        resource_version: s("41"),
    };
    assert!(matches!(run(&api, &fx, update), Done::Stale));
    assert!(fx.told().is_empty(), "nothing was written");

    api.fail("delete", conflict());
    let delete = Action::Delete {
        namespace: s("dev"),
        name: s("cfg"),
        resource_version: s("3"),
        uid: s("u"),
        reason: DeleteReason::SourceGone,
    };
    assert!(matches!(run(&api, &fx, delete), Done::Stale));
}

#[test]
fn failed_keeps_the_cause() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("create", api_error(500, "InternalError"));
    let Done::Failed(f) = run(&api, &fx, create("dev")) else {
        panic!("a failure")
    };
    assert_eq!(
        (f.op, f.namespace.as_str(), f.name.as_str()),
        ("create", "dev", "cfg")
    );
    assert!(matches!(&f.source, kube::Error::Api(s) if s.code == 500));
    assert!(
        std::error::Error::source(&f).is_some(),
        "the cause is chained"
    );
}

#[test]
fn fenced_sends_nothing() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    *fx.fenced.lock().unwrap() = true;
    assert!(matches!(run(&api, &fx, create("dev")), Done::Stale));
    assert!(api.sent().is_empty());
    assert!(fx.told().is_empty());
}

#[test]
fn refused_by_the_write_deadline_is_stale_not_failed() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("create", api_error(500, "deadline"));
    // Allowed when checked before sending, no longer once it came back.
    fx.may_write_answers.lock().unwrap().extend([true, false]);
    assert!(matches!(run(&api, &fx, create("dev")), Done::Stale));
    assert_eq!(api.sent().len(), 1);
}

#[test]
fn deleted_forgets_the_replica_even_when_already_gone() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("delete", not_found());
    let delete = Action::Delete {
        namespace: s("dev"),
        name: s("cfg"),
        resource_version: s("3"),
        uid: s("u"),
        reason: DeleteReason::NotTargeted,
    };
    let done = run(&api, &fx, delete);
    assert!(matches!(
        done,
        Done::Deleted {
            reason: DeleteReason::NotTargeted,
            ..
        }
    ));
    assert_eq!(fx.told(), [Told::Deleted(s("dev"), s("cfg"), s("3"))]);
}

#[test]
fn a_gone_namespace_is_skipped() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("create", not_found());
    assert!(matches!(run(&api, &fx, create("dev")), Done::Skipped));
}

#[test]
fn the_outcome_collects_and_sorts() {
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("create", api_error(500, "a"));
    api.fail("create", api_error(500, "b"));
    let mut out = Outcome::default();
    for ns in ["z", "a"] {
        out.add(run(&api, &fx, create(ns)));
    }
    out.add(run(&api, &fx, create("m")));
    out.add(Done::Stale);
    let out = out.sorted();
    let failed: Vec<&str> = out.failures.iter().map(|f| f.namespace.as_str()).collect();
    assert_eq!(failed, ["a", "z"]);
    assert_eq!((out.written.len(), out.stale), (1, 1));
}
