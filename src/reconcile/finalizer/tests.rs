//! The finalizer's patches against the fake API server, and what a deleted
//! mirror's rows decide.

use kube::api::ObjectMeta;

use super::rows::{Rows, decide};
use super::{Error, all_deleted, ensure_with, release};
use crate::api::{ConfigMirror, ConfigMirrorSpec, keys};
use crate::persistence::{Outcome, Report};
use crate::plan::MirrorIdentity;
use crate::plan::{Action, DeleteReason};
use crate::reconcile::apply::Writer;
use crate::reconcile::fakes::{FakeApi, FakeEffects, Sent, api_error, conflict, not_found};
use crate::reconcile::state::Memory;
use crate::store;

fn id() -> MirrorIdentity {
    MirrorIdentity {
        namespace: "team".into(),
        name: "m".into(),
        uid: "u".into(),
    }
}

fn mirror(finalizers: &[&str], rv: &str) -> ConfigMirror {
    let mut m = ConfigMirror::new(
        "m",
        serde_json::from_value::<ConfigMirrorSpec>(spec()).unwrap(),
    );
    m.metadata = ObjectMeta {
        namespace: Some("team".into()),
        name: Some("m".into()),
        uid: Some("u".into()),
        resource_version: Some(rv.into()),
        finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        ..Default::default()
    };
    m
}

fn spec() -> serde_json::Value {
    serde_json::json!({"sourceNamespace": "src", "targetNamespaces": ["dev"]})
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn ensure_adds_the_finalizer_once() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    let m = mirror(&["other"], "5");
    // The API server answers with a version past the cached one.
    *api.next_rv.lock().unwrap() = 5;
    block_on(ensure_with(&api, &memory, &m, &id())).unwrap();
    let added = vec!["other".to_string(), keys::FINALIZER.to_string()];
    assert_eq!(api.sent(), [Sent::Finalizers(added)]);
    // The cache still shows the mirror without it: our write is newer.
    block_on(ensure_with(&api, &memory, &m, &id())).unwrap();
    assert_eq!(api.sent().len(), 1, "our own write is believed");
}

#[test]
fn ensure_sends_nothing_when_the_finalizer_is_on() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    block_on(ensure_with(
        &api,
        &memory,
        &mirror(&[keys::FINALIZER], "5"),
        &id(),
    ))
    .unwrap();
    assert!(api.sent().is_empty());
}

#[test]
fn ensure_keeps_the_cause_of_a_refusal() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    api.fail("finalizers", api_error(409, "Conflict"));
    let e = block_on(ensure_with(&api, &memory, &mirror(&[], "5"), &id())).unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 409));
    assert!(!memory.added_finalizer("u", "4"), "nothing remembered");
}

#[test]
fn release_removes_only_ours_and_tolerates_a_gone_mirror() {
    let api = FakeApi::default();
    block_on(release(&api, &mirror(&["other", keys::FINALIZER], "5"))).unwrap();
    assert_eq!(api.sent(), [Sent::Finalizers(vec!["other".into()])]);
    api.fail("finalizers", not_found());
    block_on(release(&api, &mirror(&[keys::FINALIZER], "5"))).unwrap();
    api.fail("finalizers", api_error(500, "InternalError"));
    let e = block_on(release(&api, &mirror(&[keys::FINALIZER], "5"))).unwrap_err();
    assert_eq!(e.metric_label(), "kube");
    assert!(matches!(e, Error::Kube(_)));
}

fn report(outcome: Option<Outcome>, deleting: bool, busy: bool) -> Report {
    Report {
        outcome,
        last_change: None,
        busy,
        deleting,
    }
}

#[test]
fn rows_decide_between_done_orphaned_and_pending() {
    let deleted = Some(Outcome::Deleted {
        database: "db".into(),
        rows: 3,
    });
    let never = |_: &store::Error| false;
    let always = |_: &store::Error| true;
    let r = report(deleted.clone(), true, false);
    assert_eq!(
        decide(&r, never),
        Rows::Deleted {
            database: "db",
            rows: 3
        }
    );
    // Still running: wait, and do not queue another deletion.
    let r = report(deleted, true, true);
    assert_eq!(decide(&r, never), Rows::Pending { submit: false });
    // The last job synced rows: the deletion starts.
    let r = report(None, false, false);
    assert_eq!(decide(&r, never), Rows::Pending { submit: true });
    let failed = Some(Outcome::Failed {
        error: store::Error::NoDatabase,
        failures: 1,
    });
    let r = report(failed, true, false);
    assert_eq!(decide(&r, never), Rows::Pending { submit: true });
    assert!(matches!(
        decide(&r, always),
        Rows::Orphaned(store::Error::NoDatabase)
    ));
    let r = report(Some(Outcome::Off), true, false);
    assert_eq!(decide(&r, never), Rows::Off);
}

#[test]
fn cleanup_incomplete_says_the_first_cause() {
    let e = Error::CleanupIncomplete {
        remaining: 2,
        first: None,
    };
    assert_eq!(
        e.to_string(),
        "2 replicas could not be deleted yet, first: changed while deleting"
    );
    assert_eq!(e.metric_label(), "cleanup_incomplete");
}

/// One cleanup delete of replica `dev/cfg` through the writer, against the
/// fakes; the outcome the finalizer judges.
fn cleanup_delete(api: &FakeApi, effects: &FakeEffects) -> crate::reconcile::apply::Outcome {
    let id = id();
    let writer = Writer {
        api,
        effects,
        mirror: &id,
        adopt_reference_replicas: false,
    };
    let delete = Action::Delete {
        namespace: "dev".into(),
        name: "cfg".into(),
        resource_version: "7".into(),
        uid: "replica-uid".into(),
        reason: DeleteReason::MirrorDeleted,
    };
    let mut outcome = crate::reconcile::apply::Outcome::default();
    outcome.add(block_on(writer.execute(delete)));
    outcome
}

#[test]
fn cleanup_lets_go_only_when_every_replica_is_deleted() {
    // Deleted (or already gone): the finalizer may go.
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    let mut outcome = cleanup_delete(&api, &fx);
    assert_eq!(outcome.deleted.len(), 1);
    assert!(all_deleted(&mut outcome).is_ok());
    assert_eq!(api.sent().len(), 1);

    // Stale: the replica changed since it was listed.
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("delete", conflict());
    let e = all_deleted(&mut cleanup_delete(&api, &fx)).unwrap_err();
    assert!(matches!(
        e,
        Error::CleanupIncomplete {
            remaining: 1,
            first: None
        }
    ));

    // Failed: the cause is kept.
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    api.fail("delete", api_error(500, "etcd is sad"));
    let e = all_deleted(&mut cleanup_delete(&api, &fx)).unwrap_err();
    assert!(e.to_string().contains("etcd is sad"), "{e}");

    // Fenced: nothing is sent and the finalizer stays for the next owner.
    let (api, fx) = (FakeApi::default(), FakeEffects::default());
    *fx.fenced.lock().unwrap() = true;
    let e = all_deleted(&mut cleanup_delete(&api, &fx)).unwrap_err();
    assert!(matches!(
        e,
        Error::CleanupIncomplete {
            remaining: 1,
            first: None
        }
    ));
    assert!(api.sent().is_empty());
}
