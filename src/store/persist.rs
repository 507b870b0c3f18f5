//! Writes a mirror's rows: one statement per sync, whatever the number of
//! rows, that upserts what changed, deletes what is gone, and appends a
//! revision for each. Unchanged rows are not touched (their xmin stays).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;

use super::rows::Row;
use crate::plan::MirrorIdentity;

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

/// Upserts `changed` (rows whose hash may differ from the database's) and
/// deletes this mirror's rows whose (namespace, name) is not in `keep`.
pub async fn sync(
    pool: &PgPool,
    mirror: &MirrorIdentity,
    changed: &[Row],
    keep: &[(String, String)],
) -> Result<Changes, sqlx::Error> {
    let col = |f: fn(&Row) -> String| changed.iter().map(f).collect::<Vec<String>>();
    let json = |f: fn(&Row) -> serde_json::Value| {
        changed.iter().map(f).collect::<Vec<serde_json::Value>>()
    };
    let names = col(|r| r.name.clone());
    let namespaces = col(|r| r.namespace.clone());
    let hashes = col(|r| r.content_hash.clone());
    let uids = col(|r| r.source_uid.clone());
    let data = json(|r| r.data.clone());
    let binary = json(|r| r.binary_data.clone());
    let moved = json(|r| r.data_in_binary.clone());
    let labels = json(|r| r.labels.clone());
    let annotations = json(|r| r.annotations.clone());
    let immutable: Vec<bool> = changed.iter().map(|r| r.immutable).collect();
    let keep_namespaces: Vec<String> = keep.iter().map(|(ns, _)| ns.clone()).collect();
    let keep_names: Vec<String> = keep.iter().map(|(_, n)| n.clone()).collect();

    let counts = sqlx::query!(
        r#"
        WITH input AS (
            SELECT * FROM UNNEST($3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::jsonb[], $8::bool[],
                                 $9::jsonb[], $10::jsonb[], $11::text[], $12::text[])
                AS t(name, namespace, data, binary_data, data_in_binary, immutable, labels, annotations,
                     content_hash, source_uid)
        ),
        keep AS (
            SELECT * FROM UNNEST($13::text[], $14::text[]) AS k(namespace, name)
        ),
        upserted AS (
            INSERT INTO configmaps AS c (name, namespace, data, binary_data, data_in_binary, immutable, labels,
                                         annotations, content_hash, source_uid, configmirror_namespace, configmirror_name)
            SELECT name, namespace, data, binary_data, data_in_binary, immutable, labels, annotations,
                   content_hash, source_uid, $1, $2
            FROM input
            ON CONFLICT (name, namespace, configmirror_namespace, configmirror_name) DO UPDATE SET
                data = EXCLUDED.data, binary_data = EXCLUDED.binary_data, data_in_binary = EXCLUDED.data_in_binary,
                immutable = EXCLUDED.immutable, labels = EXCLUDED.labels, annotations = EXCLUDED.annotations,
                content_hash = EXCLUDED.content_hash, source_uid = EXCLUDED.source_uid, updated_at = now()
            WHERE c.content_hash IS DISTINCT FROM EXCLUDED.content_hash
            RETURNING c.id, c.name, c.namespace, c.content_hash, c.source_uid, c.data, c.binary_data,
                      c.data_in_binary, c.immutable, c.labels, c.annotations, (c.xmax = 0) AS inserted
        ),
        gone AS MATERIALIZED (
            -- A set difference (hashed), computed once (MATERIALIZED: the planner
            -- must not re-run it per row), not a per-row anti-join.
            SELECT namespace, name FROM configmaps
            WHERE configmirror_namespace = $1 AND configmirror_name = $2
            EXCEPT
            SELECT namespace, name FROM keep
        ),
        deleted AS (
            DELETE FROM configmaps c
            USING gone g
            WHERE c.configmirror_namespace = $1 AND c.configmirror_name = $2
              AND c.namespace = g.namespace AND c.name = g.name
            RETURNING c.id, c.name, c.namespace, c.content_hash, c.source_uid, c.data, c.binary_data,
                      c.data_in_binary, c.immutable, c.labels, c.annotations
        ),
        revisions AS (
            INSERT INTO configmap_revisions (configmap_id, name, namespace, configmirror_namespace, configmirror_name,
                                             operation, content_hash, source_uid, data, binary_data, data_in_binary,
                                             immutable, labels, annotations)
            SELECT id, name, namespace, $1, $2, CASE WHEN inserted THEN 'created' ELSE 'updated' END,
                   content_hash, source_uid, data, binary_data, data_in_binary, immutable, labels, annotations
            FROM upserted
            UNION ALL
            SELECT id, name, namespace, $1, $2, 'deleted',
                   content_hash, source_uid, data, binary_data, data_in_binary, immutable, labels, annotations
            FROM deleted
            RETURNING operation
        )
        SELECT operation AS "operation!", count(*) AS "count!" FROM revisions GROUP BY operation
        "#,
        mirror.namespace,
        mirror.name,
        &names,
        &namespaces,
        &data,
        &binary,
        &moved,
        &immutable,
        &labels,
        &annotations,
        &hashes,
        &uids,
        &keep_namespaces,
        &keep_names,
    )
    .fetch_all(pool)
    .await?;

    let by_op: BTreeMap<String, i64> = counts.into_iter().map(|r| (r.operation, r.count)).collect();
    let get = |op: &str| by_op.get(op).copied().unwrap_or(0) as u64;
    Ok(Changes {
        created: get("created"),
        updated: get("updated"),
        deleted: get("deleted"),
    })
}

/// Deletes all rows of a mirror (recording each deletion).
pub async fn delete_all(pool: &PgPool, mirror: &MirrorIdentity) -> Result<Changes, sqlx::Error> {
    sync(pool, mirror, &[], &[]).await
}

/// How long revisions are kept: by age, and/or the newest N per ConfigMap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_per_configmap: Option<u32>,
}

/// Deletes revisions the retention no longer keeps; returns how many.
pub async fn prune(pool: &PgPool, retention: Retention) -> Result<u64, sqlx::Error> {
    let mut pruned = 0;
    if let Some(age) = retention.max_age {
        pruned += sqlx::query!(
            "DELETE FROM configmap_revisions WHERE recorded_at < now() - make_interval(secs => $1)",
            age.as_secs_f64()
        )
        .execute(pool)
        .await?
        .rows_affected();
    }
    if let Some(keep) = retention.max_per_configmap {
        pruned += sqlx::query!(
            r#"
            DELETE FROM configmap_revisions r
            USING (
                SELECT id FROM (
                    SELECT id, row_number() OVER (
                        PARTITION BY configmirror_namespace, configmirror_name, namespace, name
                        ORDER BY id DESC) AS rank
                    FROM configmap_revisions
                ) ranked
                WHERE rank > $1
            ) old
            WHERE r.id = old.id
            "#,
            i64::from(keep)
        )
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(pruned)
}
