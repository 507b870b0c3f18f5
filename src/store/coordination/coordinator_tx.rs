//! The coordinator's writes: each in a transaction that holds the epoch row
//! FOR SHARE and checks it first, so a deposed coordinator changes nothing.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use super::ASSIGNMENTS_CHANNEL;

/// A coordinator's transaction: open only while `epoch` is still current.
pub struct CoordinatorTx<'a> {
    tx: Transaction<'a, Postgres>,
    epoch: i64,
}

/// Takes the next coordinator epoch for `holder`.
pub async fn bump_epoch(pool: &PgPool, holder: &str) -> Result<i64, sqlx::Error> {
    let epoch = sqlx::query_scalar!(
        r#"
        INSERT INTO coordinator_epochs (id, epoch, holder, acquired_at) VALUES (1, 1, $1, now())
        ON CONFLICT (id) DO UPDATE SET epoch = coordinator_epochs.epoch + 1, holder = $1, acquired_at = now()
        RETURNING epoch
        "#,
        holder
    )
    .fetch_one(pool)
    .await?;
    Ok(epoch)
}

/// The coordinator's per-round write: `Ok(false)` when `epoch` is no longer
/// current (PostgreSQL accepted nothing).
pub async fn renew(pool: &PgPool, epoch: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE coordinator_epochs SET renewed_at = now() WHERE id = 1 AND epoch = $1",
        epoch
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn current_epoch(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT epoch FROM coordinator_epochs WHERE id = 1")
        .fetch_optional(pool)
        .await
}

/// Why a coordinator's write was refused.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("coordinator epoch {mine} is stale (current {current:?}): deposed")]
    Deposed { mine: i64, current: Option<i64> },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl<'a> CoordinatorTx<'a> {
    /// Begins, locks the epoch row FOR SHARE and checks it is `epoch`.
    pub async fn begin(pool: &'a PgPool, epoch: i64) -> Result<Self, CoordinatorError> {
        let mut tx = pool.begin().await?;
        let current =
            sqlx::query_scalar!("SELECT epoch FROM coordinator_epochs WHERE id = 1 FOR SHARE")
                .fetch_optional(&mut *tx)
                .await?;
        if current != Some(epoch) {
            return Err(CoordinatorError::Deposed {
                mine: epoch,
                current,
            });
        }
        Ok(Self { tx, epoch })
    }

    /// New mirrors, each to its member.
    pub async fn insert(
        &mut self,
        rows: &[(String, String, String, String)],
    ) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        let (uids, namespaces, names, members) = columns4(rows);
        let n = sqlx::query!(
            r#"
            WITH inserted AS (
                INSERT INTO assignments (mirror_uid, mirror_namespace, mirror_name, member, coordinator_epoch)
                SELECT * , $5::bigint FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
                ON CONFLICT (mirror_uid) DO NOTHING
                RETURNING mirror_uid, member, state, epoch, coordinator_epoch
            )
            INSERT INTO assignment_history (mirror_uid, member, state, next_member, epoch, coordinator_epoch, reason)
            SELECT mirror_uid, member, state, NULL, epoch, coordinator_epoch, 'new' FROM inserted
            "#,
            &uids,
            &namespaces,
            &names,
            &members,
            self.epoch
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(n.rows_affected())
    }

    /// Mirrors moved straight to their new member: their owner is dead, or
    /// (`forced`) it never acknowledged a drain. Each row moves only if it
    /// is still at the epoch the plan read, and a dead owner only if it is
    /// still dead by the database's clock now: its row is then held FOR
    /// SHARE until commit, so a heartbeat landing meanwhile waits, and the
    /// member reads its assignments only after the move. A forced move
    /// takes effect for the new owner only after `forced_hold`, once the
    /// live old owner's trust in its last read has run out. Returns how
    /// many moved.
    pub(crate) async fn reassign(
        &mut self,
        moves: &[Move],
        rules: MoveRules,
    ) -> Result<u64, sqlx::Error> {
        if moves.is_empty() {
            return Ok(0);
        }
        let (uids, to, epochs) = columns(moves);
        let forced: Vec<bool> = moves.iter().map(|m| m.forced).collect();
        let n = sqlx::query!(
            r#"
            WITH dead AS MATERIALIZED (
                SELECT name FROM members
                WHERE heartbeat_at < now() - make_interval(secs => $5)
                   OR (state = 'leaving' AND left_at < now() - make_interval(secs => $6))
                FOR SHARE
            ),
            moved AS (
                UPDATE assignments a SET member = t.member, state = 'active', next_member = NULL,
                    epoch = a.epoch + 1, coordinator_epoch = $7, changed_at = now(),
                    active_from = CASE WHEN t.forced THEN now() + make_interval(secs => $8) END
                FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bool[]) AS t(mirror_uid, member, epoch, forced)
                WHERE a.mirror_uid = t.mirror_uid AND a.epoch = t.epoch
                  AND (t.forced OR a.member IN (SELECT name FROM dead)
                       OR NOT EXISTS (SELECT 1 FROM members m WHERE m.name = a.member))
                RETURNING a.mirror_uid, a.member, a.state, a.epoch, a.coordinator_epoch, t.forced
            )
            INSERT INTO assignment_history (mirror_uid, member, state, next_member, epoch, coordinator_epoch, reason)
            SELECT mirror_uid, member, state, NULL, epoch, coordinator_epoch,
                   CASE WHEN forced THEN 'forced' ELSE 'failover' END
            FROM moved
            "#,
            &uids,
            &to,
            &epochs,
            &forced,
            rules.heartbeat.as_secs_f64(),
            rules.left.as_secs_f64(),
            self.epoch,
            rules.forced_hold.as_secs_f64()
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(n.rows_affected())
    }

    /// Mirrors to move from a live owner: it drains, then hands over. Each
    /// only if still at the epoch the plan read (an acknowledgement that
    /// landed meanwhile is kept). Returns how many.
    pub async fn drain(&mut self, moves: &[Move]) -> Result<u64, sqlx::Error> {
        if moves.is_empty() {
            return Ok(0);
        }
        let (uids, next, epochs) = columns(moves);
        let n = sqlx::query!(
            r#"
            WITH drained AS (
                UPDATE assignments a SET state = 'draining', next_member = t.next_member,
                    epoch = a.epoch + 1, coordinator_epoch = $4, changed_at = now()
                FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(mirror_uid, next_member, epoch)
                WHERE a.mirror_uid = t.mirror_uid AND a.epoch = t.epoch
                RETURNING a.mirror_uid, a.member, a.state, a.next_member, a.epoch, a.coordinator_epoch
            )
            INSERT INTO assignment_history (mirror_uid, member, state, next_member, epoch, coordinator_epoch, reason)
            SELECT mirror_uid, member, state, next_member, epoch, coordinator_epoch, 'drain' FROM drained
            "#,
            &uids,
            &next,
            &epochs,
            self.epoch
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(n.rows_affected())
    }

    /// Assignments of mirrors that no longer exist (at the epoch read).
    pub(crate) async fn remove(&mut self, rows: &[(String, i64)]) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        let (uids, epochs): (Vec<String>, Vec<i64>) = rows.iter().cloned().unzip();
        let n = sqlx::query!(
            r#"
            DELETE FROM assignments a USING UNNEST($1::text[], $2::bigint[]) AS t(mirror_uid, epoch)
            WHERE a.mirror_uid = t.mirror_uid AND a.epoch = t.epoch
            "#,
            &uids,
            &epochs
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(n.rows_affected())
    }

    /// Deletes up to `batch` assignment-history rows older than `age`, and
    /// members silent that long that own nothing (and are about to own
    /// nothing): neither table grows without bound. Returns (history rows,
    /// members) deleted.
    pub(crate) async fn prune(
        &mut self,
        age: std::time::Duration,
        batch: i64,
    ) -> Result<(u64, u64), sqlx::Error> {
        let history = sqlx::query!(
            r#"
            DELETE FROM assignment_history WHERE id IN (
                SELECT id FROM assignment_history
                WHERE recorded_at < now() - make_interval(secs => $1)
                ORDER BY id LIMIT $2
            )
            "#,
            age.as_secs_f64(),
            batch
        )
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        let members = sqlx::query!(
            r#"
            DELETE FROM members m
            WHERE heartbeat_at < now() - make_interval(secs => $1)
              AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.member = m.name OR a.next_member = m.name)
            "#,
            age.as_secs_f64()
        )
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok((history, members))
    }

    /// Commits and tells the workers.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::query!("SELECT pg_notify($1, '')", ASSIGNMENTS_CHANNEL)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await
    }

    /// Commits a change no worker needs to hear about (pruning).
    pub(crate) async fn commit_quietly(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// One assignment to change, as planned from a read at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub uid: String,
    /// The new owner (reassign) or next owner (drain).
    pub to: String,
    /// The assignment's epoch when read; a row changed since is left alone.
    pub epoch: i64,
    /// A reassign of a drain its live owner never acknowledged.
    pub forced: bool,
}

/// The rules of a move straight to a new owner. A member counts as dead,
/// by the database's clock, with no heartbeat for `heartbeat` (TTL + grace)
/// or once it left longer than `left` ago. A forced move from a live owner
/// holds the new owner back for `forced_hold` (see `active_from`).
#[derive(Debug, Clone, Copy)]
pub struct MoveRules {
    pub heartbeat: Duration,
    pub left: Duration,
    pub forced_hold: Duration,
}

fn columns(moves: &[Move]) -> (Vec<String>, Vec<String>, Vec<i64>) {
    let uids = moves.iter().map(|m| m.uid.clone()).collect();
    let to = moves.iter().map(|m| m.to.clone()).collect();
    let epochs = moves.iter().map(|m| m.epoch).collect();
    (uids, to, epochs)
}

type Columns4 = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn columns4(rows: &[(String, String, String, String)]) -> Columns4 {
    let mut c: Columns4 = Default::default();
    for (a, b, d, e) in rows {
        c.0.push(a.clone());
        c.1.push(b.clone());
        c.2.push(d.clone());
        c.3.push(e.clone());
    }
    c
}
