//! The coordinator decides atomically: what lands between its read and its
//! write (a drain acknowledgement, a heartbeat of a member it judged dead)
//! is kept, and the write planned from the stale read changes nothing.
//! Against a real PostgreSQL, through the coordinator's own step with its
//! test hook between the read and the write.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use configmirror::shard::Timing;
use configmirror::shard::coordinator::step_with;
use configmirror::store::coordination::{self, CoordinatorTx, Move};
use configmirror::store::migrate;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::db::TestDatabase;

async fn assignment(pool: &PgPool, uid: &str) -> (String, String, i64) {
    sqlx::query_as("SELECT member, state, epoch FROM assignments WHERE mirror_uid = $1")
        .bind(uid)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn history(pool: &PgPool, uid: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT reason FROM assignment_history WHERE mirror_uid = $1 ORDER BY id")
        .bind(uid)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// x has been draining for 10 minutes (past the drain timeout) and d has
/// been silent for a minute (past TTL + grace).
async fn past_drain_timeout_and_d_silent(pool: &PgPool) {
    sqlx::query(
        "UPDATE assignments SET changed_at = now() - interval '10 minutes' WHERE mirror_uid = 'x'",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE members SET heartbeat_at = now() - interval '1 minute' WHERE name = 'd'")
        .execute(pool)
        .await
        .unwrap();
}

/// A migrated coordination database with registered members and a
/// coordinator epoch.
struct Coordination {
    _db: TestDatabase,
    pool: PgPool,
    members: HashMap<&'static str, Uuid>,
    epoch: i64,
}

impl Coordination {
    async fn new(names: &[&'static str]) -> Self {
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        migrate::run_within(
            &db.url.parse().unwrap(),
            migrate::coordination(),
            "test",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let members: HashMap<&str, Uuid> = names.iter().map(|m| (*m, Uuid::new_v4())).collect();
        for (name, incarnation) in &members {
            coordination::register(&pool, name, *incarnation)
                .await
                .unwrap();
        }
        let epoch = coordination::bump_epoch(&pool, "test").await.unwrap();
        Self {
            _db: db,
            pool,
            members,
            epoch,
        }
    }
}

#[tokio::test]
async fn what_lands_between_the_coordinators_read_and_write_is_kept() {
    let Coordination {
        _db,
        pool,
        members,
        epoch,
    } = Coordination::new(&["a", "b", "c", "d"]).await;
    let timing = Timing::default();

    // x: owned by a, draining to b for longer than the drain timeout, so
    // the coordinator plans to force it. y: owned by d, whose last
    // heartbeat is a minute old, so the coordinator plans a failover.
    let mut tx = CoordinatorTx::begin(&pool, epoch).await.unwrap();
    tx.insert(&[
        ("x".into(), "ns".into(), "x".into(), "a".into()),
        ("y".into(), "ns".into(), "y".into(), "d".into()),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let x_epoch = assignment(&pool, "x").await.2;
    let mut tx = CoordinatorTx::begin(&pool, epoch).await.unwrap();
    let drain = Move {
        uid: "x".into(),
        to: "b".into(),
        epoch: x_epoch,
        forced: false,
    };
    assert_eq!(tx.drain(&[drain]).await.unwrap(), 1);
    tx.commit().await.unwrap();
    past_drain_timeout_and_d_silent(&pool).await;
    let draining_epoch = assignment(&pool, "x").await.2;

    let index = Arc::new(RwLock::new(HashMap::from([
        ("x".to_string(), ("ns".to_string(), "x".to_string())),
        ("y".to_string(), ("ns".to_string(), "y".to_string())),
    ])));
    let landed = async {
        // a finishes its drain; d was only slow, and heartbeats.
        let acked = coordination::acknowledge_drain(&pool, "x", "a", members["a"], draining_epoch)
            .await
            .unwrap();
        assert!(acked.is_some(), "the acknowledgement applies");
        assert!(
            coordination::heartbeat(&pool, "d", members["d"])
                .await
                .unwrap()
        );
    };
    step_with(&pool, epoch, &index, &timing, true, landed)
        .await
        .unwrap();

    assert_eq!(
        assignment(&pool, "x").await,
        ("b".to_string(), "active".to_string(), draining_epoch + 1),
        "the acknowledgement is kept"
    );
    assert_eq!(history(&pool, "x").await, ["new", "drain", "handover"]);
    assert_eq!(
        assignment(&pool, "y").await.0,
        "d",
        "a live member's mirror stays"
    );
    assert_eq!(history(&pool, "y").await, ["new"]);

    // The next step plans from what landed: nothing is forced or failed over.
    step_with(&pool, epoch, &index, &timing, true, async {})
        .await
        .unwrap();
    let reasons: Vec<String> = [history(&pool, "x").await, history(&pool, "y").await].concat();
    assert!(
        !reasons.iter().any(|r| r == "forced" || r == "failover"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn the_coordinator_prunes_old_history_and_long_gone_members_only() {
    let Coordination {
        _db, pool, epoch, ..
    } = Coordination::new(&["alive", "gone", "gone-but-owning"]).await;
    let mut tx = CoordinatorTx::begin(&pool, epoch).await.unwrap();
    tx.insert(&[
        ("x".into(), "ns".into(), "x".into(), "alive".into()),
        (
            "y".into(),
            "ns".into(),
            "y".into(),
            "gone-but-owning".into(),
        ),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // 12,000 old history rows (more than one pruning batch), 3 recent ones.
    sqlx::query(
        "INSERT INTO assignment_history (mirror_uid, member, state, epoch, coordinator_epoch, reason, recorded_at) \
         SELECT 'old', 'gone', 'active', i, 1, 'new', now() - interval '30 days' FROM generate_series(1, 12000) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE assignment_history SET recorded_at = now() - interval '1 hour' WHERE mirror_uid IN ('x', 'y')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE members SET heartbeat_at = now() - interval '30 days' WHERE name IN ('gone', 'gone-but-owning')",
    )
    .execute(&pool)
    .await
    .unwrap();

    configmirror::shard::coordinator::prune(&pool, epoch, Duration::from_secs(7 * 24 * 3600)).await;

    let left: Vec<String> =
        sqlx::query_scalar("SELECT mirror_uid FROM assignment_history ORDER BY mirror_uid")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(left, ["x", "y"], "only recent history stays");
    let members: Vec<String> = sqlx::query_scalar("SELECT name FROM members ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        members,
        ["alive", "gone-but-owning"],
        "a member that still owns a mirror stays"
    );

    // A deposed coordinator prunes nothing.
    sqlx::query(
        "INSERT INTO assignment_history (mirror_uid, member, state, epoch, coordinator_epoch, reason, recorded_at) \
         VALUES ('old', 'gone', 'active', 1, 1, 'new', now() - interval '30 days')",
    )
    .execute(&pool)
    .await
    .unwrap();
    coordination::bump_epoch(&pool, "newer").await.unwrap();
    configmirror::shard::coordinator::prune(&pool, epoch, Duration::from_secs(7 * 24 * 3600)).await;
    let old: i64 =
        sqlx::query_scalar("SELECT count(*) FROM assignment_history WHERE mirror_uid = 'old'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old, 1);
}

/// A drain its live owner never acknowledged is forced after the drain
/// timeout, but the new owner may act on it only once the old owner's last
/// read of its assignments can no longer be trusted; a failover from a dead
/// owner holds nothing back.
#[tokio::test]
async fn a_forced_move_holds_its_new_owner_back_for_the_ownership_validity() {
    let Coordination {
        _db,
        pool,
        members,
        epoch,
    } = Coordination::new(&["a", "b", "c", "d"]).await;
    let timing = Timing::default();
    let mut tx = CoordinatorTx::begin(&pool, epoch).await.unwrap();
    tx.insert(&[
        ("x".into(), "ns".into(), "x".into(), "a".into()),
        ("y".into(), "ns".into(), "y".into(), "d".into()),
    ])
    .await
    .unwrap();
    let drain = Move {
        uid: "x".into(),
        to: "b".into(),
        epoch: 1,
        forced: false,
    };
    assert_eq!(tx.drain(&[drain]).await.unwrap(), 1);
    tx.commit().await.unwrap();
    past_drain_timeout_and_d_silent(&pool).await;
    let index = Arc::new(RwLock::new(HashMap::from([
        ("x".to_string(), ("ns".to_string(), "x".to_string())),
        ("y".to_string(), ("ns".to_string(), "y".to_string())),
    ])));
    step_with(&pool, epoch, &index, &timing, true, async {})
        .await
        .unwrap();
    assert_eq!(history(&pool, "x").await, ["new", "drain", "forced"]);
    assert_eq!(history(&pool, "y").await, ["new", "failover"]);

    let mut held = HashMap::new();
    for member in ["a", "b", "c"] {
        for h in coordination::assignments_of(&pool, member).await.unwrap() {
            if h.row.member == member {
                held.insert(h.row.mirror_uid.clone(), (member, h.held_for));
            }
        }
    }
    let (x_owner, x_held) = held["x"];
    let x_held = x_held.expect("a forced move is held back");
    assert_ne!(x_owner, "a", "x moved");
    assert!(
        x_held <= timing.ownership_valid()
            && x_held > timing.ownership_valid() - Duration::from_secs(2),
        "held for {x_held:?}, ownership valid {:?}",
        timing.ownership_valid()
    );
    assert_eq!(held["y"].1, None, "a dead owner's mirror is not held back");
    // The old owner's acknowledgement, late, applies nothing.
    let late = coordination::acknowledge_drain(&pool, "x", "a", members["a"], 2).await;
    assert_eq!(late.unwrap(), None);
}

#[tokio::test]
async fn rows_written_late_by_a_member_that_lost_the_mirror_are_refused() {
    use configmirror::plan::{MirrorIdentity, SourceConfigMap};
    use configmirror::store::persist::{self, Fence};
    use configmirror::store::{Database, Deadlines, Error, rows::row_of};

    use crate::support::db::rows;
    use crate::support::k8s::configmap;

    let test_db = TestDatabase::create().await;
    let db = Database::new(
        "test".into(),
        "test".into(),
        test_db.url.parse().unwrap(),
        2,
        Deadlines::default(),
    );
    db.ready().await.unwrap();
    let mirror = MirrorIdentity {
        namespace: "home".into(),
        name: "m".into(),
        uid: "uid-m".into(),
    };
    let rows_of = |v: &str| {
        let mut cm = configmap("cfg", &[], &[("v", v)]);
        cm.metadata.namespace = Some("src".into());
        vec![row_of(&SourceConfigMap::from_configmap(&cm))]
    };
    let keep = [("src".to_string(), "cfg".to_string())];
    let a = Fence {
        epoch: 3,
        member: "a".into(),
    };
    let b = Fence {
        epoch: 5,
        member: "b".into(),
    };
    let pool = test_db.pool().await;
    let stored = |pool: PgPool| async move { rows(&pool, "home", "m").await[0].data["v"].clone() };

    persist::sync(&db, &mirror, Some(&a), &rows_of("1"), &keep)
        .await
        .unwrap();
    assert_eq!(stored(pool.clone()).await, "1");
    // The mirror moved to b (a newer epoch), which writes its content...
    persist::sync(&db, &mirror, Some(&b), &rows_of("2"), &keep)
        .await
        .unwrap();
    // ... and a's statement, sent before it lost the mirror, arrives late.
    let late = persist::sync(&db, &mirror, Some(&a), &rows_of("1"), &keep).await;
    assert!(matches!(late, Err(Error::Superseded(_, _, 3))), "{late:?}");
    assert_eq!(late.unwrap_err().reason(), "Superseded");
    // A late deletion is refused just the same.
    let late = persist::delete_all(&db, &mirror, Some(&a)).await;
    assert!(matches!(late, Err(Error::Superseded(..))), "{late:?}");
    assert_eq!(stored(pool.clone()).await, "2", "the new owner's rows stay");
    let revisions = crate::support::db::revisions(&pool, "home", "m").await;
    assert_eq!(
        revisions.len(),
        2,
        "no revision from the refused writes: {revisions:?}"
    );

    // The same epoch goes on writing; unsharded writes carry no fence.
    persist::sync(&db, &mirror, Some(&b), &rows_of("3"), &keep)
        .await
        .unwrap();
    assert_eq!(stored(pool.clone()).await, "3");
    persist::sync(&db, &mirror, None, &rows_of("4"), &keep)
        .await
        .unwrap();
    assert_eq!(stored(pool.clone()).await, "4");
}
