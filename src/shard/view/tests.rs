use super::*;

pub(crate) fn owned(uid: &str, epoch: i64) -> (String, Owned) {
    let (namespace, name) = ("ns".to_string(), format!("mirror-{uid}"));
    (
        uid.to_string(),
        Owned {
            epoch,
            namespace,
            name,
        },
    )
}

pub(crate) fn fresh_view() -> ShardView {
    ShardView::new("m", Arc::new(WriteDeadline::closed()))
}

fn later() -> Instant {
    Instant::now() + std::time::Duration::from_secs(60)
}

fn view(uids: &[&str]) -> ShardView {
    let v = fresh_view();
    v.renew(Instant::now() + std::time::Duration::from_secs(60));
    v.unfence();
    v.set_owned(uids.iter().map(|u| owned(u, 1)).collect(), later());
    v
}

#[test]
fn a_new_view_owns_nothing_until_registered_and_read() {
    let v = fresh_view();
    v.set_owned([owned("u", 1)].into(), later());
    assert!(!v.owns("u"), "fenced until heartbeating");
    v.unfence();
    assert!(!v.owns("u"), "stale until the assignments are read again");
    assert!(v.active().is_none());
    v.set_owned([owned("u", 1)].into(), later());
    assert_eq!(v.active().map(|(_, a)| a.len()), Some(1));
    assert!(v.owns("u"));
}

#[test]
fn a_reconcile_starts_only_on_owned_mirrors_and_counts_as_in_flight() {
    let v = view(&["a"]);
    assert!(v.begin("a"));
    assert!(!v.begin("b"));
    assert!(v.in_flight("a"));
    v.release("a");
    assert!(v.in_flight("a"), "a drain waits for the running reconcile");
    assert!(!v.begin("a"), "and no new one starts");
    v.end("a");
    assert!(!v.in_flight("a"));
}

#[test]
fn heartbeats_while_unfenced_keep_ownership_fresh() {
    let v = view(&["a"]);
    let changes = v.changes();
    let activation = v.active().map(|(n, _)| n);
    for _ in 0..3 {
        assert!(!v.unfence(), "not fenced before");
        assert!(
            v.owns("a") && v.begin("a"),
            "every heartbeat must not make the view stale"
        );
        v.end("a");
    }
    v.set_owned([owned("a", 1)].into(), later());
    assert_eq!(
        v.active().map(|(n, _)| n),
        activation,
        "no new activation without a fence"
    );
    assert!(!changes.has_changed().unwrap(), "nothing to catch up");
}

#[test]
fn fencing_stops_everything_until_fresh_again() {
    let v = view(&["a"]);
    let changes = v.changes();
    assert!(v.fence());
    assert!(!v.owns("a") && !v.writable() && !v.begin("a"));
    // A heartbeat works again: it renews, then unfences.
    v.renew(later());
    assert!(v.unfence());
    assert!(v.writable() && !v.owns("a"));
    let before = v.active();
    v.set_owned([owned("a", 2), owned("b", 1)].into(), later());
    assert!(before.is_none());
    assert_eq!(v.active().map(|(n, _)| n), Some(2), "a second activation");
    assert!(v.owns("a") && v.owns("b"));
    assert_eq!(v.epoch("a"), Some(2));
    assert!(changes.has_changed().unwrap());
}

#[test]
fn writes_stop_at_the_lease_deadline_even_without_a_fence() {
    let v = view(&["a"]);
    assert!(v.begin("a") && v.may_write("a"));
    // The heartbeat task may be stuck: the deadline alone stops writes.
    let now = Instant::now();
    let v2 = fresh_view();
    v2.renew(now);
    v2.unfence();
    v2.set_owned([owned("a", 1)].into(), later());
    assert!(v2.begin("a"));
    assert!(!v2.may_write("a") && !v2.writable());
    assert!(v2.expired(now));
    // A later success starts a new term (the lease had run out): the
    // running reconcile stays stopped; a new one, after a fresh read,
    // writes. An older success never shortens the lease.
    v2.renew(now + std::time::Duration::from_secs(60));
    v2.renew(now);
    assert!(!v2.may_write("a") && !v2.expired(now));
    v2.end("a");
    v2.set_owned([owned("a", 1)].into(), later());
    assert!(v2.begin("a") && v2.may_write("a"));
}

#[test]
fn a_reconcile_writes_only_under_the_epoch_it_began_with() {
    let v = view(&["a"]);
    assert!(v.begin("a"));
    assert!(v.may_write("a"));
    assert!(!v.may_write("b"), "not in flight");
    // Moved away and back under a new epoch: the old reconcile is stale.
    v.set_owned([owned("a", 2)].into(), later());
    assert!(!v.may_write("a"));
    v.end("a");
    assert!(v.begin("a") && v.may_write("a"));
    // A drain ends the running reconcile's writes at once.
    v.release("a");
    assert!(!v.may_write("a"));
}

#[test]
fn a_read_of_the_assignments_is_trusted_for_a_bounded_time_only() {
    let v = view(&["a"]);
    let first = v.active().map(|(n, _)| n);
    assert!(v.begin("a") && v.may_write("a"));
    // The reads stop working while heartbeats go on: the last read runs
    // out, and with it every write, though the lease still holds.
    let now = Instant::now();
    v.set_owned([owned("a", 1)].into(), now);
    assert!(v.writable(), "the lease itself holds");
    assert!(!v.may_write("a") && !v.owns("a") && v.active().is_none());
    assert!(v.expire_ownership(now), "stale once");
    assert!(!v.expire_ownership(now));
    v.end("a");
    assert!(!v.begin("a"));
    // A read that works again resumes, with a catch-up of every mirror.
    v.set_owned([owned("a", 1)].into(), later());
    assert!(v.begin("a") && v.may_write("a"));
    assert_ne!(v.active().map(|(n, _)| n), first, "a new activation");
}

#[test]
fn a_woken_member_writes_nothing_until_it_has_read_its_assignments() {
    // Frozen mid-reconcile past its lease, the mirror moved meanwhile;
    // on waking, its first heartbeat renews the lease before the
    // watchdog fences, and the last read is not yet old.
    let v = view(&["a"]);
    assert!(v.begin("a") && v.may_write("a"));
    v.fence();
    v.renew(later());
    assert!(v.unfence());
    assert!(
        !v.may_write("a"),
        "the reconcile from before the pause may not write"
    );
    assert!(
        !v.writable(),
        "nor may anything leave the client while that reconcile runs"
    );
    v.end("a");
    assert!(v.writable(), "the lease holds again once it ended");
    v.set_owned(HashMap::new(), later());
    assert!(!v.begin("a") && !v.may_write("a"), "moved away meanwhile");
}

#[test]
fn a_pause_past_the_lease_is_a_new_term_even_without_a_fence() {
    // The heartbeat after the pause may renew before the watchdog has
    // fenced: the renewal itself sees the lease had run out.
    let d = Arc::new(WriteDeadline::closed());
    let v = ShardView::new("m", d.clone());
    let now = Instant::now();
    v.renew(now + std::time::Duration::from_millis(1));
    v.unfence();
    v.set_owned([owned("a", 1)].into(), later());
    assert!(v.begin("a"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    v.renew(later());
    assert!(!v.may_write("a") && !d.holds() && v.active().is_none());
    v.end("a");
    assert!(d.holds());
    v.set_owned([owned("a", 1)].into(), later());
    assert!(v.begin("a") && v.may_write("a"), "a new reconcile writes");
}

#[test]
fn writes_stop_while_they_can_still_arrive_before_the_deadline() {
    let v = view(&["a"]);
    assert!(v.begin("a"));
    let d = Arc::new(WriteDeadline::closed());
    let v2 = ShardView::new("m", d.clone());
    // (`now` captured: the check below must not depend on how long this
    // test takes on a loaded machine.)
    let now = Instant::now();
    v2.renew(now + crate::kubeclient::IN_TRANSIT / 2);
    v2.unfence();
    v2.set_owned([owned("a", 1)].into(), later());
    assert!(v2.begin("a"));
    assert!(
        !v2.may_write("a") && !d.holds(),
        "too late to arrive in time"
    );
    assert!(!v2.expired(now), "though the lease itself holds");
}

#[tokio::test]
async fn a_drain_or_a_fence_cancels_the_running_reconcile() {
    use futures::FutureExt;
    let v = view(&["a", "b"]);
    assert!(v.begin("a") && v.begin("b"));
    let (a, b) = (v.cancelled("a"), v.cancelled("b"));
    let none = v.cancelled("c");
    v.release("a");
    a.await;
    assert!(b.now_or_never().is_none(), "the other one runs on");
    let b = v.cancelled("b");
    v.fence();
    b.await;
    assert!(none.now_or_never().is_none(), "nothing to cancel");
}
