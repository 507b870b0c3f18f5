//! Schema migrations, applied under sqlx's advisory lock so N replicas
//! starting at once migrate a database exactly once. Each set keeps its own
//! history table, so persistence and coordination never trip over each
//! other on one database (and neither over a `_sqlx_migrations` of someone else).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::deadline::is_server_timeout;
use super::{CONNECTING, Cause, Error};

pub(crate) const PERSISTENCE_HISTORY: &str = "_configmirror_persistence_migrations";

/// `configmaps` and `configmap_revisions`: every persistence database.
pub(crate) fn persistence() -> Migrator {
    let mut m = sqlx::migrate!("./migrations/persistence");
    m.dangerous_set_table_name(PERSISTENCE_HISTORY);
    m
}

pub(crate) const COORDINATION_HISTORY: &str = "_configmirror_coordination_migrations";

/// `members`, `assignments`, `coordinator_epochs`: the operator's own database only.
pub fn coordination() -> Migrator {
    let mut m = sqlx::migrate!("./migrations/coordination");
    m.dangerous_set_table_name(COORDINATION_HISTORY);
    m
}

/// Runs `migrator` on a connection of its own whose statements and lock
/// waits (sqlx's advisory lock included) PostgreSQL ends at `deadline`, as
/// the client ends the whole run: another session holding the lock, or a
/// database that hangs, costs a Timeout and a later retry, never a stuck
/// caller. The pool's sessions keep their shorter statement deadline, which
/// a migration statement may need to exceed.
pub async fn run_within(
    options: &PgConnectOptions,
    migrator: Migrator,
    label: &str,
    deadline: Duration,
) -> Result<(), Error> {
    // Whether a session was ever had: a deadline passed before one says
    // the database never answered (a silent or filtered host), not that
    // migrating took too long.
    let connected = AtomicBool::new(false);
    let run = async {
        let mut conn = PgConnection::connect_with(options)
            .await
            .map_err(|e| Error::from_connect(label, e))?;
        connected.store(true, Ordering::Relaxed);
        let limit = format!("{}ms", deadline.as_millis());
        let limited = sqlx::query(
            "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $1, false)",
        )
        .bind(&limit)
        .execute(&mut conn)
        .await
        .map_err(|e| Error::from_sqlx(label, e));
        let result = match limited {
            // What `run` does, minus its `Acquire` bound, which makes the
            // future fail `Send` in a spawned task (sqlx's own workaround).
            Ok(_) => migrator
                .run_direct(None, &mut conn, false)
                .await
                .map_err(|e| migration_error(label, deadline, e)),
            Err(e) => Err(e),
        };
        let _ = conn.close().await;
        result
    };
    tokio::time::timeout(deadline, run)
        .await
        .unwrap_or_else(|_| {
            let stage = if connected.load(Ordering::Relaxed) {
                "migrating"
            } else {
                CONNECTING
            };
            Err(Error::Timeout(label.to_string(), stage, deadline))
        })
}

fn migration_error(label: &str, deadline: Duration, e: MigrateError) -> Error {
    match e {
        MigrateError::Execute(inner) if is_server_timeout(&inner) => {
            Error::Timeout(label.to_string(), "migrating", deadline)
        }
        MigrateError::Execute(inner) => match Error::from_sqlx(label, inner) {
            Error::Write(db, message) => Error::Migration(db, message),
            other => other,
        },
        other => Error::Migration(label.to_string(), Cause::new(other)),
    }
}
