//! Writes a mirror's rows: upserts what changed and deletes what is gone,
//! appending a revision for each, in statements of bounded size (see
//! `batch`), each within the statement deadline. Unchanged rows are not
//! touched (their xmin stays). Every statement is atomic and idempotent, so
//! a sync cut short by an error is completed by the next one.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgBindIterExt;
use sqlx::types::Json;

use super::rows::Row;
use super::{Database, Error};
use crate::plan::MirrorIdentity;
use crate::plan::model::JsonText;

pub(crate) mod batch;

pub(crate) use batch::Limits;

/// Rows changed by one sync, by revision operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.created + self.updated + self.deleted > 0
    }
}

/// What a sharded member's row statements carry: the assignment epoch its
/// reconcile began under. PostgreSQL applies a statement only if no newer
/// epoch has written the mirror's rows (`mirror_write_epochs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
    pub member: String,
}

/// Upserts `changed` (rows whose hash may differ from the database's) and
/// deletes this mirror's rows whose (namespace, name) is not in `keep`,
/// each statement under `fence` when there is one.
pub async fn sync(
    db: &Database,
    mirror: &MirrorIdentity,
    fence: Option<&Fence>,
    changed: &[Row],
    keep: &[(String, String)],
) -> Result<Changes, Error> {
    let mut changes = Changes::default();
    for rows in batch::batches(changed, Limits::default()) {
        let (created, updated) = upsert(db, mirror, fence, rows).await?;
        changes.created += created;
        changes.updated += updated;
    }
    changes.deleted = delete_gone(db, mirror, fence, keep, Limits::default()).await?;
    Ok(changes)
}

/// Deletes all rows of a mirror (recording each deletion).
pub async fn delete_all(
    db: &Database,
    mirror: &MirrorIdentity,
    fence: Option<&Fence>,
) -> Result<Changes, Error> {
    sync(db, mirror, fence, &[], &[]).await
}

fn refused(db: &Database, mirror: &MirrorIdentity, fence: Option<&Fence>) -> Error {
    metrics::counter!(crate::telemetry::names::DB_WRITES_REFUSED).increment(1);
    Error::Superseded(db.label.clone(), mirror.key(), fence.map_or(0, |f| f.epoch))
}

/// One statement: upserts `rows` and records a revision for each row that
/// changed; returns (created, updated). Columns are bound straight from the
/// rows (no per-column copies): the statement's buffer is the only copy.
// Long only because of its one SQL statement, which reads best whole.
async fn upsert(
    db: &Database,
    mirror: &MirrorIdentity,
    fence: Option<&Fence>,
    rows: &[Row],
) -> Result<(u64, u64), Error> {
    let text = |f: fn(&Row) -> &str| rows.iter().map(f).bind_iter();
    let json = |f: fn(&Row) -> &JsonText| rows.iter().map(move |r| Json(f(r).raw())).bind_iter();
    let counts = sqlx::query!(
        r#"
        WITH fence AS (
            INSERT INTO mirror_write_epochs AS f (mirror_uid, configmirror_namespace, configmirror_name, epoch, member)
            SELECT $14::text, $1, $2, $15::bigint, $16::text WHERE $15::bigint IS NOT NULL
            ON CONFLICT (mirror_uid) DO UPDATE SET epoch = EXCLUDED.epoch, member = EXCLUDED.member, written_at = now()
            WHERE f.epoch <= EXCLUDED.epoch
            RETURNING 1
        ),
        allowed AS (
            SELECT $15::bigint IS NULL OR EXISTS (SELECT 1 FROM fence) AS ok
        ),
        input AS (
            SELECT * FROM UNNEST($3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::jsonb[], $8::bool[],
                                 $9::jsonb[], $10::jsonb[], $11::jsonb[], $12::text[], $13::text[])
                AS t(name, namespace, data, binary_data, data_in_binary, immutable, labels, annotations,
                     annotations_in_binary, content_hash, source_uid)
            WHERE (SELECT ok FROM allowed)
        ),
        upserted AS (
            INSERT INTO configmaps AS c (name, namespace, data, binary_data, data_in_binary, immutable, labels,
                                         annotations, annotations_in_binary, content_hash, source_uid,
                                         configmirror_namespace, configmirror_name)
            SELECT name, namespace, data, binary_data, data_in_binary, immutable, labels, annotations,
                   annotations_in_binary, content_hash, source_uid, $1, $2
            FROM input
            ON CONFLICT (name, namespace, configmirror_namespace, configmirror_name) DO UPDATE SET
                data = EXCLUDED.data, binary_data = EXCLUDED.binary_data, data_in_binary = EXCLUDED.data_in_binary,
                immutable = EXCLUDED.immutable, labels = EXCLUDED.labels, annotations = EXCLUDED.annotations,
                annotations_in_binary = EXCLUDED.annotations_in_binary, content_hash = EXCLUDED.content_hash,
                source_uid = EXCLUDED.source_uid, updated_at = now()
            WHERE c.content_hash IS DISTINCT FROM EXCLUDED.content_hash
            RETURNING c.id, c.name, c.namespace, c.content_hash, c.source_uid, c.data, c.binary_data,
                      c.data_in_binary, c.immutable, c.labels, c.annotations, c.annotations_in_binary,
                      (c.xmax = 0) AS inserted
        ),
        revisions AS (
            INSERT INTO configmap_revisions (configmap_id, name, namespace, configmirror_namespace, configmirror_name,
                                             operation, content_hash, source_uid, data, binary_data, data_in_binary,
                                             immutable, labels, annotations, annotations_in_binary)
            SELECT id, name, namespace, $1, $2, CASE WHEN inserted THEN 'created' ELSE 'updated' END,
                   content_hash, source_uid, data, binary_data, data_in_binary, immutable, labels, annotations,
                   annotations_in_binary
            FROM upserted
            RETURNING operation
        )
        SELECT operation AS "operation!", count(*) AS "count!" FROM revisions GROUP BY operation
        UNION ALL
        SELECT 'refused', 1 WHERE NOT (SELECT ok FROM allowed)
        "#,
        mirror.namespace,
        mirror.name,
        text(|r| &r.name) as _,
        text(|r| &r.namespace) as _,
        json(|r| &r.data) as _,
        json(|r| &r.binary_data) as _,
        rows.iter().map(|r| Json(&r.data_in_binary)).bind_iter() as _,
        rows.iter().map(|r| r.immutable).bind_iter() as _,
        json(|r| &r.labels) as _,
        json(|r| &r.annotations) as _,
        json(|r| &r.annotations_in_binary) as _,
        text(|r| &r.content_hash) as _,
        text(|r| &r.source_uid) as _,
        &mirror.uid,
        fence.map(|f| f.epoch),
        fence.map(|f| f.member.as_str()),
    )
    .fetch_all(&db.pool);
    let counts = db.within("writing rows", counts).await?;
    let by_op: BTreeMap<String, i64> = counts.into_iter().map(|r| (r.operation, r.count)).collect();
    if by_op.contains_key("refused") {
        return Err(refused(db, mirror, fence));
    }
    let get = |op: &str| by_op.get(op).copied().unwrap_or(0) as u64;
    Ok((get("created"), get("updated")))
}

/// Deletes this mirror's rows not in `keep`, recording each deletion, in
/// statements of at most `limits` rows and (stored) bytes: a mirror deleted
/// with thousands of large rows copies them into revisions a slice at a
/// time, each slice well within the statement deadline.
// Long only because of its one SQL statement, which reads best whole.
#[allow(clippy::too_many_lines)]
async fn delete_gone(
    db: &Database,
    mirror: &MirrorIdentity,
    fence: Option<&Fence>,
    keep: &[(String, String)],
    limits: Limits,
) -> Result<u64, Error> {
    let max_rows = i64::try_from(limits.rows).unwrap_or(i64::MAX);
    let max_bytes = i64::try_from(limits.bytes).unwrap_or(i64::MAX);
    let mut deleted = 0;
    loop {
        let pass = sqlx::query!(
            r#"
            WITH fence AS (
                INSERT INTO mirror_write_epochs AS f (mirror_uid, configmirror_namespace, configmirror_name, epoch, member)
                SELECT $7::text, $1, $2, $8::bigint, $9::text WHERE $8::bigint IS NOT NULL
                ON CONFLICT (mirror_uid) DO UPDATE SET epoch = EXCLUDED.epoch, member = EXCLUDED.member, written_at = now()
                WHERE f.epoch <= EXCLUDED.epoch
                RETURNING 1
            ),
            allowed AS (
                SELECT $8::bigint IS NULL OR EXISTS (SELECT 1 FROM fence) AS ok
            ),
            keep AS (
                SELECT * FROM UNNEST($3::text[], $4::text[]) AS k(namespace, name)
            ),
            gone AS MATERIALIZED (
                -- A set difference (hashed), computed once (MATERIALIZED: the planner
                -- must not re-run it per row), not a per-row anti-join.
                SELECT namespace, name FROM configmaps
                WHERE configmirror_namespace = $1 AND configmirror_name = $2 AND (SELECT ok FROM allowed)
                EXCEPT
                SELECT namespace, name FROM keep
            ),
            chosen AS MATERIALIZED (
                -- The first of them, up to $5 rows and $6 stored bytes (always one).
                -- pg_column_size reads a TOASTed value's size, not the value.
                SELECT id FROM (
                    SELECT c.id,
                           row_number() OVER (ORDER BY c.id) AS n,
                           sum(pg_column_size(c.data) + pg_column_size(c.binary_data)
                               + coalesce(pg_column_size(c.annotations), 0)
                               + pg_column_size(c.annotations_in_binary)) OVER (ORDER BY c.id) AS running
                    FROM configmaps c
                    JOIN gone g ON c.namespace = g.namespace AND c.name = g.name
                    WHERE c.configmirror_namespace = $1 AND c.configmirror_name = $2
                ) sized
                WHERE n = 1 OR (n <= $5 AND running <= $6)
            ),
            deleted AS (
                DELETE FROM configmaps c
                USING chosen
                WHERE c.id = chosen.id
                RETURNING c.id, c.name, c.namespace, c.content_hash, c.source_uid, c.data, c.binary_data,
                          c.data_in_binary, c.immutable, c.labels, c.annotations, c.annotations_in_binary
            ),
            revisions AS (
                INSERT INTO configmap_revisions (configmap_id, name, namespace, configmirror_namespace,
                                                 configmirror_name, operation, content_hash, source_uid, data,
                                                 binary_data, data_in_binary, immutable, labels, annotations,
                                                 annotations_in_binary)
                SELECT id, name, namespace, $1, $2, 'deleted', content_hash, source_uid, data, binary_data,
                       data_in_binary, immutable, labels, annotations, annotations_in_binary
                FROM deleted
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM revisions) AS "deleted!", (SELECT count(*) FROM gone) AS "gone!",
                   NOT (SELECT ok FROM allowed) AS "refused!"
            "#,
            mirror.namespace,
            mirror.name,
            keep.iter().map(|(ns, _)| ns.as_str()).bind_iter() as _,
            keep.iter().map(|(_, n)| n.as_str()).bind_iter() as _,
            max_rows,
            max_bytes,
            &mirror.uid,
            fence.map(|f| f.epoch),
            fence.map(|f| f.member.as_str()),
        )
        .fetch_one(&db.pool);
        let pass = db.within("deleting rows", pass).await?;
        if pass.refused {
            return Err(refused(db, mirror, fence));
        }
        deleted += pass.deleted as u64;
        // `gone` was counted before this pass deleted: more remain only
        // when it deleted fewer (and something).
        if pass.deleted == 0 || pass.deleted >= pass.gone {
            return Ok(deleted);
        }
    }
}

/// How long revisions are kept: by age, and/or the newest N per ConfigMap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Retention {
    pub max_age: Option<Duration>,
    pub max_per_configmap: Option<u32>,
}

/// Revisions one pruning statement deletes at most: each statement then
/// ends well within the database deadline however far behind retention is.
pub(crate) const PRUNE_BATCH: i64 = 5_000;

/// Deletes up to `PRUNE_BATCH` revisions per rule that the retention no
/// longer keeps; returns how many, and whether a rule may have more.
pub(crate) async fn prune_some(
    pool: &PgPool,
    retention: Retention,
) -> Result<(u64, bool), sqlx::Error> {
    let (mut pruned, mut more) = (0, false);
    if let Some(age) = retention.max_age {
        let n = sqlx::query!(
            r#"
            DELETE FROM configmap_revisions WHERE id IN (
                SELECT id FROM configmap_revisions
                WHERE recorded_at < now() - make_interval(secs => $1)
                LIMIT $2
            )
            "#,
            age.as_secs_f64(),
            PRUNE_BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned += n;
        more |= n >= PRUNE_BATCH as u64;
    }
    if let Some(keep) = retention.max_per_configmap {
        let n = sqlx::query!(
            r#"
            DELETE FROM configmap_revisions WHERE id IN (
                SELECT id FROM (
                    SELECT id, row_number() OVER (
                        PARTITION BY configmirror_namespace, configmirror_name, namespace, name
                        ORDER BY id DESC) AS rank
                    FROM configmap_revisions
                ) ranked
                WHERE rank > $1
                LIMIT $2
            )
            "#,
            i64::from(keep),
            PRUNE_BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned += n;
        more |= n >= PRUNE_BATCH as u64;
    }
    Ok((pruned, more))
}
