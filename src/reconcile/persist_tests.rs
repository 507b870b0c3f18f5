//! The persistence step against a fake queue: the job it hands over, and
//! what status says from the queue's report.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

use super::queue;
use crate::persistence::{Job, Outcome, Report, Work};
use crate::plan::{MirrorIdentity, SourceConfigMap};
use crate::reconcile::fakes::FakeQueue;
use crate::store;

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn job(sources: usize) -> Job {
    let source = Arc::new(SourceConfigMap::from_configmap(&ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("src".into()),
            name: Some("cfg".into()),
            ..Default::default()
        },
        ..Default::default()
    }));
    Job {
        mirror: MirrorIdentity {
            namespace: "team".into(),
            name: "m".into(),
            uid: "u".into(),
        },
        database: None,
        work: Work::Sync(vec![source; sources]),
        fence: None,
        lease: None,
    }
}

fn report(outcome: Option<Outcome>) -> Report {
    Report {
        outcome,
        last_change: None,
        busy: true,
        deleting: false,
    }
}

#[test]
fn the_rows_are_queued_and_never_waited_for() {
    let q = FakeQueue::new(report(None));
    // First pass, nothing known yet: status says nothing of the database.
    assert!(queue(&q, job(2), Some(1), None, &now()).is_none());
    let jobs = q.jobs.lock().unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(matches!(&jobs[0].work, Work::Sync(s) if s.len() == 2));
}

#[test]
fn synced_rows_make_the_condition_true() {
    let synced = Outcome::Synced {
        database: "db".into(),
        rows: 2,
        changed: true,
    };
    let q = FakeQueue::new(report(Some(synced)));
    let p = queue(&q, job(2), Some(4), None, &now()).expect("persistence is on");
    assert_eq!(
        (p.condition.status.as_str(), p.condition.reason.as_str()),
        ("True", "Synced")
    );
    assert_eq!(
        p.condition.message,
        "2 rows in database db match the sources"
    );
    assert_eq!(p.condition.observed_generation, Some(4));
    assert!(p.retry.is_none());
}

#[test]
fn a_failed_job_keeps_its_reason_and_retries() {
    let failed = Outcome::Failed {
        error: store::Error::NoDatabase,
        failures: 1,
    };
    let q = FakeQueue::new(report(Some(failed)));
    let p = queue(&q, job(1), None, None, &now()).expect("a failure is reported");
    assert_eq!(p.condition.status, "False");
    assert_eq!(p.condition.reason, store::Error::NoDatabase.reason());
    assert!(p.retry.is_some());
    assert!(!p.status.connected);
}

#[test]
fn persistence_off_says_nothing() {
    let q = FakeQueue::new(report(Some(Outcome::Off)));
    assert!(queue(&q, job(1), None, None, &now()).is_none());
    assert_eq!(q.jobs.lock().unwrap().len(), 1);
}

#[test]
fn fenced_rows_say_superseded_or_lease_expired_and_retry() {
    for (error, reason) in [
        (
            store::Error::Superseded("db".into(), "team/m".into(), 3),
            "Superseded",
        ),
        (store::Error::LeaseExpired("db".into()), "LeaseExpired"),
    ] {
        let failed = Outcome::Failed { error, failures: 1 };
        let q = FakeQueue::new(report(Some(failed)));
        let p = queue(&q, job(1), Some(2), None, &now()).expect("a refusal is reported");
        assert_eq!(
            (p.condition.status.as_str(), p.condition.reason.as_str()),
            ("False", reason)
        );
        assert!(p.retry.is_some(), "{reason}: retried, never dropped");
        // The job was still handed over: the queue, not the reconcile,
        // learns that it may not write.
        assert_eq!(q.jobs.lock().unwrap().len(), 1);
    }
}
