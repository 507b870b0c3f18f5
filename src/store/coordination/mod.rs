//! The coordination tables: members, assignments, the coordinator's epoch.
//! Member writes are conditional on the member's incarnation (a stale
//! process with the same name changes nothing); coordinator writes run in a
//! transaction that holds the epoch row FOR SHARE and checks it first (a
//! deposed coordinator changes nothing, and a new one's bump waits for it).

mod coordinator_tx;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

pub use coordinator_tx::{
    CoordinatorError, CoordinatorTx, Move, MoveRules, bump_epoch, current_epoch, renew,
};
/// NOTIFY channel: assignments changed (payload: a member name, or empty).
pub(crate) const ASSIGNMENTS_CHANNEL: &str = "configmirror_assignments";
/// NOTIFY channel: membership changed.
pub(crate) const MEMBERS_CHANNEL: &str = "configmirror_members";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MemberRow {
    pub name: String,
    pub state: String,
    /// Seconds since the last heartbeat, by the database's clock.
    pub heartbeat_age: f64,
    /// Seconds since it said it was leaving.
    pub left_age: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    pub mirror_uid: String,
    pub mirror_namespace: String,
    pub mirror_name: String,
    pub member: String,
    pub state: String,
    pub next_member: Option<String>,
    pub epoch: i64,
}

/// An `AssignmentRow` from a query record with its columns (each query
/// has its own record type, so a macro rather than a `From`).
macro_rules! assignment_row {
    ($r:expr) => {
        AssignmentRow {
            mirror_uid: $r.mirror_uid,
            mirror_namespace: $r.mirror_namespace,
            mirror_name: $r.mirror_name,
            member: $r.member,
            state: $r.state,
            next_member: $r.next_member,
            epoch: $r.epoch,
        }
    };
}

/// A member's assignment as it reads it, with how long a forced move to it
/// still holds it back (`None`: it may act on it now).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub row: AssignmentRow,
    pub held_for: Option<Duration>,
}

/// Registers this process as `name` (a new incarnation), active.
pub async fn register(pool: &PgPool, name: &str, incarnation: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO members (name, incarnation, state, started_at, heartbeat_at)
        VALUES ($1, $2, 'active', now(), now())
        ON CONFLICT (name) DO UPDATE SET incarnation = EXCLUDED.incarnation, state = 'active',
            started_at = now(), heartbeat_at = now(), left_at = NULL
        "#,
        name,
        incarnation
    )
    .execute(pool)
    .await?;
    sqlx::query!("SELECT pg_notify($1, $2)", MEMBERS_CHANNEL, name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Heartbeat; `false` when another incarnation owns the name now.
pub async fn heartbeat(pool: &PgPool, name: &str, incarnation: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE members SET heartbeat_at = now() WHERE name = $1 AND incarnation = $2",
        name,
        incarnation
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Says this incarnation is leaving (SIGTERM): its mirrors are held for the grace.
pub(crate) async fn leave(pool: &PgPool, name: &str, incarnation: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE members SET state = 'leaving', left_at = now() WHERE name = $1 AND incarnation = $2",
        name,
        incarnation
    )
    .execute(pool)
    .await?;
    sqlx::query!("SELECT pg_notify($1, $2)", MEMBERS_CHANNEL, name)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn members(pool: &PgPool) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        SELECT name, state,
               EXTRACT(EPOCH FROM now() - heartbeat_at)::float8 AS "heartbeat_age!",
               EXTRACT(EPOCH FROM now() - left_at)::float8 AS left_age
        FROM members ORDER BY name
        "#
    )
    .fetch_all(pool)
    .await
}

/// Assignments a member owns or is about to receive.
pub async fn assignments_of(pool: &PgPool, member: &str) -> Result<Vec<Held>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        SELECT mirror_uid, mirror_namespace, mirror_name, member, state, next_member, epoch,
               CASE WHEN active_from > now()
                    THEN EXTRACT(EPOCH FROM active_from - now())::float8 END AS held_for
        FROM assignments WHERE member = $1 OR next_member = $1
        "#,
        member
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Held {
            held_for: r.held_for.map(Duration::from_secs_f64),
            row: assignment_row!(r),
        })
        .collect())
}

/// Every assignment, with the seconds since it last changed.
pub(crate) async fn all_assignments(
    pool: &PgPool,
) -> Result<Vec<(AssignmentRow, f64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        SELECT mirror_uid, mirror_namespace, mirror_name, member, state, next_member, epoch,
               EXTRACT(EPOCH FROM now() - changed_at)::float8 AS "age!"
        FROM assignments
        "#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (assignment_row!(r), r.age))
        .collect())
}

/// The old owner's half of a handover: it finished its in-flight work and
/// hands the mirror to `next_member`. Returns the seconds the drain took
/// (by the database's clock) when it applied.
pub async fn acknowledge_drain(
    pool: &PgPool,
    mirror_uid: &str,
    member: &str,
    incarnation: Uuid,
    epoch: i64,
) -> Result<Option<f64>, sqlx::Error> {
    let row = sqlx::query!(
        r#"
        WITH acked AS (
            UPDATE assignments a
            SET member = a.next_member, next_member = NULL, state = 'active', epoch = a.epoch + 1,
                changed_at = now(), active_from = NULL
            FROM (SELECT changed_at AS drained_at FROM assignments WHERE mirror_uid = $1) d
            WHERE a.mirror_uid = $1 AND a.member = $2 AND a.state = 'draining' AND a.epoch = $4
              AND EXISTS (SELECT 1 FROM members WHERE name = $2 AND incarnation = $3)
            RETURNING a.mirror_uid, a.member, a.state, a.epoch, a.coordinator_epoch, d.drained_at
        ),
        history AS (
            INSERT INTO assignment_history (mirror_uid, member, state, next_member, epoch, coordinator_epoch, reason)
            SELECT mirror_uid, member, state, NULL, epoch, coordinator_epoch, 'handover' FROM acked
        )
        SELECT EXTRACT(EPOCH FROM now() - drained_at)::float8 AS "seconds!", member AS "next!"
        FROM acked
        "#,
        mirror_uid,
        member,
        incarnation,
        epoch
    )
    .fetch_optional(pool)
    .await?;
    if let Some(r) = &row {
        // Tell the new owner at once.
        sqlx::query!("SELECT pg_notify($1, $2)", ASSIGNMENTS_CHANNEL, r.next)
            .execute(pool)
            .await?;
    }
    Ok(row.map(|r| r.seconds))
}

/// A listener on both channels.
pub(crate) async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([ASSIGNMENTS_CHANNEL, MEMBERS_CHANNEL])
        .await?;
    Ok(listener)
}
