use super::*;

fn synced(changed: bool) -> Outcome {
    Outcome::Synced {
        database: "default".into(),
        rows: 2,
        changed,
    }
}

fn failed(error: store::Error, failures: u32) -> Outcome {
    Outcome::Failed { error, failures }
}

fn identity(uid: &str) -> MirrorIdentity {
    MirrorIdentity {
        namespace: "ns".into(),
        name: uid.into(),
        uid: uid.into(),
    }
}

/// A job for a mirror with persistence off: no database, no API call.
fn off_job(uid: &str) -> Job {
    Job {
        mirror: identity(uid),
        database: Some(DatabaseSpec {
            enabled: false,
            secret_ref: None,
        }),
        work: Work::Sync(vec![]),
        fence: None,
        lease: None,
    }
}

/// A queue with no database and an API server nobody answers at.
fn queue() -> (Arc<Persistence>, crate::watches::TriggerReceiver) {
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    let databases = Arc::new(Databases::new(
        client,
        store::databases::DefaultDatabase::None,
        Default::default(),
        1,
        store::Deadlines::default(),
    ));
    let (triggers, received) = crate::watches::trigger_channel();
    let limits = Limits {
        concurrency: 2,
        per_database: 1,
    };
    (Persistence::new(databases, limits, triggers), received)
}

#[tokio::test]
async fn jobs_run_apart_and_only_news_reconciles_the_mirror_again() {
    let (queue, mut received) = queue();
    // submit returns at once; the outcome follows.
    queue.submit(off_job("a"));
    let trigger = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        trigger,
        Trigger::Persisted {
            mirror_uid: "a".into()
        }
    );
    let report = queue.report("a");
    assert_eq!(report.outcome, Some(Outcome::Off));
    assert!(!report.busy);
    // The same outcome again is no news: no second reconcile.
    queue.submit(off_job("a"));
    while queue.report("a").busy {
        tokio::task::yield_now().await;
    }
    assert!(received.try_recv().is_err());
    // A forgotten mirror is gone from the queue.
    queue.forget("a");
    assert_eq!(queue.report("a").outcome, None);
}

#[tokio::test]
async fn rows_confirmed_written_are_still_counted_after_a_failure() {
    let (queue, _received) = queue();
    queue
        .mirrors
        .lock()
        .unwrap()
        .insert("a".into(), MirrorRows::default());
    let hashes = HashMap::from([(("t".to_string(), "cfg".to_string()), "h".to_string())]);
    queue.finish("a", false, synced(true), Some(("db".into(), hashes)));
    assert_eq!(queue.known_rows("a"), Some(1), "what was written");
    // A silent database: what the rows are now is unknown, but they
    // were there at the last success.
    let timeout = store::Error::Timeout("db".into(), "writing rows", Duration::from_secs(3));
    queue.finish("a", false, failed(timeout, 1), None);
    assert_eq!(queue.known_rows("a"), Some(2), "the last success's rows");
    let deleted = Outcome::Deleted {
        database: "db".into(),
        rows: 2,
    };
    queue.finish("a", true, deleted, None);
    assert_eq!(queue.known_rows("a"), Some(0));
}

#[test]
fn only_outcomes_that_change_status_are_news() {
    let timeout = || store::Error::Timeout("db".into(), "writing rows", Duration::from_secs(3));
    let refused = || store::Error::Unreachable("db".into(), "refused".into());
    assert!(is_news(None, &synced(false)));
    assert!(!is_news(Some(&synced(true)), &synced(false)));
    assert!(
        is_news(Some(&synced(true)), &synced(true)),
        "new rows move lastSyncTime"
    );
    assert!(is_news(Some(&synced(false)), &failed(timeout(), 1)));
    assert!(!is_news(Some(&failed(timeout(), 1)), &failed(timeout(), 2)));
    assert!(is_news(Some(&failed(timeout(), 2)), &failed(refused(), 3)));
    assert!(is_news(Some(&failed(timeout(), 2)), &synced(false)));
    assert!(is_news(Some(&synced(false)), &Outcome::Off));
}
