//! The status write against the fake API server: only changed content, only
//! while this member may write, and our write believed over the cache.

use super::write_status_with;
use crate::api::ConfigMirrorStatus;
use crate::plan::MirrorIdentity;
use crate::reconcile::fakes::{FakeApi, Sent, api_error};
use crate::reconcile::state::Memory;

fn id() -> MirrorIdentity {
    MirrorIdentity {
        namespace: "team".into(),
        name: "m".into(),
        uid: "u".into(),
    }
}

fn status(sources: i32) -> ConfigMirrorStatus {
    ConfigMirrorStatus {
        sources,
        ..Default::default()
    }
}

fn write(
    api: &FakeApi,
    may_write: &(impl Fn() -> bool + Sync),
    memory: &Memory,
    previous: Option<&ConfigMirrorStatus>,
    new: ConfigMirrorStatus,
) -> Result<bool, kube::Error> {
    futures::executor::block_on(write_status_with(
        api,
        may_write,
        memory,
        &id(),
        previous,
        new,
    ))
}

#[test]
fn a_changed_status_is_written_and_believed_over_the_cache() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    assert!(write(&api, &|| true, &memory, Some(&status(1)), status(2)).unwrap());
    assert_eq!(api.sent(), [Sent::Status]);
    // The fake answered resourceVersion 1; the cache is at 0.
    let cached = status(1);
    assert_eq!(
        memory.current_status("u", "0", Some(&cached)),
        Some(status(2))
    );
}

#[test]
fn an_unchanged_status_is_not_written() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    assert!(!write(&api, &|| true, &memory, Some(&status(1)), status(1)).unwrap());
    assert!(api.sent().is_empty());
}

#[test]
fn fenced_sends_nothing() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    assert!(!write(&api, &|| false, &memory, None, status(1)).unwrap());
    assert!(api.sent().is_empty());
}

#[test]
fn refused_by_the_write_deadline_is_left_to_the_new_owner() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    api.fail("status", api_error(500, "deadline"));
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let may_write = || calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
    assert!(!write(&api, &may_write, &memory, None, status(1)).unwrap());
    assert_eq!(api.sent().len(), 1);
    assert_eq!(memory.current_status("u", "0", None), None);
}

#[test]
fn a_failed_write_keeps_its_cause() {
    let (api, memory) = (FakeApi::default(), Memory::default());
    api.fail("status", api_error(422, "Invalid"));
    let e = write(&api, &|| true, &memory, None, status(1)).unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 422));
}
