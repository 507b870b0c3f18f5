//! PostgreSQL: which database a mirror's rows go to, pools, migrations, and
//! the rows themselves. A persistence database being down never stops
//! replication: callers turn these errors into a condition and a retry.

pub mod coordination;
pub(crate) mod credentials;
pub(crate) mod databases;
pub mod deadline;
pub mod migrate;
pub mod persist;
pub mod rows;

pub use databases::{Database, Databases};
pub use deadline::Deadlines;

/// Why a mirror's rows could not be written. Each is a reason on the
/// DatabaseSynced condition and a label on the error metric.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "persistence is enabled but the operator has no default database (--database-url or --database-secret) and the mirror names no secretRef"
    )]
    NoDatabase,
    #[error(
        "secret {0} is in another namespace; only {1} may be used from there (--database-secret-namespaces)"
    )]
    SecretNotAllowed(String, String),
    #[error("secret {0} not found")]
    SecretNotFound(String),
    #[error("invalid database secret {0}")]
    SecretInvalid(String),
    #[error("reading secret {0}: {1}")]
    SecretRead(String, String),
    #[error("database {0} refused the credentials: {1}")]
    AuthFailed(String, String),
    #[error("database {0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("migrating database {0}: {1}")]
    Migration(String, String),
    #[error("writing to database {0}: {1}")]
    Write(String, String),
    #[error("database {0} did not answer within {2:?} ({1})")]
    Timeout(String, &'static str, std::time::Duration),
    #[error(
        "database {0}: the rows of {1} were written under a newer assignment than this member's (epoch {2}); its write was refused"
    )]
    Superseded(String, String, i64),
    #[error(
        "database {0}: not written, this process's leader Lease was not renewed in time (written once it is)"
    )]
    LeaseExpired(String),
}

impl Error {
    /// The DatabaseSynced reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoDatabase => "NoDatabase",
            Error::SecretNotAllowed(..) => "SecretNotAllowed",
            Error::SecretNotFound(_) => "SecretNotFound",
            Error::SecretInvalid(_) => "SecretInvalid",
            Error::SecretRead(..) => "SecretUnreadable",
            Error::AuthFailed(..) => "AuthenticationFailed",
            Error::Unreachable(..) => "Unreachable",
            Error::Migration(..) => "MigrationFailed",
            Error::Write(..) => "WriteFailed",
            Error::Timeout(..) => "Timeout",
            Error::Superseded(..) => "Superseded",
            Error::LeaseExpired(..) => "LeaseExpired",
        }
    }

    /// Whether waiting can fix it without anyone changing anything.
    pub(crate) fn transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable(..)
                | Error::Timeout(..)
                | Error::Write(..)
                | Error::Migration(..)
                | Error::SecretRead(..)
                | Error::LeaseExpired(..)
        )
    }

    /// Classifies a database error for `database` (a label, never a password).
    pub(crate) fn from_sqlx(database: &str, e: &sqlx::Error) -> Self {
        let text = e.to_string();
        match e {
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("28P01" | "28000")) =>
            {
                Error::AuthFailed(database.into(), text)
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                Error::Unreachable(database.into(), text)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Error::Unreachable(database.into(), text),
            _ => Error::Write(database.into(), text),
        }
    }

    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::NoDatabase => "no_database",
            Error::SecretNotAllowed(..)
            | Error::SecretNotFound(_)
            | Error::SecretInvalid(_)
            | Error::SecretRead(..) => "secret",
            Error::AuthFailed(..) => "auth",
            Error::Unreachable(..) => "unreachable",
            Error::Migration(..) => "migration",
            Error::Write(..) => "write",
            Error::Timeout(..) => "timeout",
            Error::Superseded(..) => "superseded",
            Error::LeaseExpired(..) => "lease_expired",
        }
    }
}
