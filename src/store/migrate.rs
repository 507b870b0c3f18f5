//! Schema migrations, applied under sqlx's advisory lock so N replicas
//! starting at once migrate a database exactly once. Each set keeps its own
//! history table, so persistence and coordination never trip over each
//! other on one database (and neither over a `_sqlx_migrations` of someone else).

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

pub const PERSISTENCE_HISTORY: &str = "_configmirror_persistence_migrations";

/// `configmaps` and `configmap_revisions`: every persistence database.
pub fn persistence() -> Migrator {
    let mut m = sqlx::migrate!("./migrations/persistence");
    m.dangerous_set_table_name(PERSISTENCE_HISTORY);
    m
}

pub const COORDINATION_HISTORY: &str = "_configmirror_coordination_migrations";

/// `members`, `assignments`, `coordinator_epochs`: the operator's own database only.
pub fn coordination() -> Migrator {
    let mut m = sqlx::migrate!("./migrations/coordination");
    m.dangerous_set_table_name(COORDINATION_HISTORY);
    m
}

pub async fn run(pool: &PgPool, migrator: &Migrator) -> Result<(), MigrateError> {
    migrator.run(pool).await
}
