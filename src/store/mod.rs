//! PostgreSQL: which database a mirror's rows go to, pools, migrations, and
//! the rows themselves. A persistence database being down never stops
//! replication: callers turn these errors into a condition and a retry.

pub mod coordination;
pub(crate) mod credentials;
pub(crate) mod databases;
pub mod deadline;
pub mod hosts;
pub mod migrate;
pub mod persist;
pub mod rows;

use std::sync::Arc;

pub use databases::{Database, Databases};
pub use deadline::Deadlines;

/// The error underneath a store error, kept whole: its type can be asked
/// (`downcast`) and its own chain reached through `source()`. Shared, so an
/// outcome holding it clones cheaply into every report of the mirror; two
/// causes are equal when they say the same.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The underlying error, when it is an `E`.
    pub(crate) fn downcast<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

/// A cause known only by what it says (a message, not an error value).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Said(String);

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause::new(Said(message))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause::new(Said(message.to_string()))
    }
}

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
    #[error(
        "secret {0} points at host {1}, which --database-allowed-hosts does not allow; no connection was attempted"
    )]
    HostNotAllowed(String, String),
    #[error("reading secret {0}: {1}")]
    SecretRead(String, #[source] Cause),
    #[error("database {0} refused the credentials: {1}")]
    AuthFailed(String, #[source] Cause),
    #[error("database {0} is unreachable: {1}")]
    Unreachable(String, #[source] Cause),
    /// A mirror's own database (`secretRef`) could not be connected to.
    /// The tenant who wrote the Secret chose the host, so what status says
    /// must not probe the network for them: refused, filtered, silent, the
    /// OS's or TLS's words all read the same. The cause is for the
    /// operator's log only (`withheld_cause`).
    #[error(
        "database {0} is unreachable (check the Secret's host, port, sslmode and sslrootcert; the operator's log has the cause)"
    )]
    TenantUnreachable(String, #[source] Cause),
    #[error("migrating database {0}: {1}")]
    Migration(String, #[source] Cause),
    #[error("writing to database {0}: {1}")]
    Write(String, #[source] Cause),
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
            Error::HostNotAllowed(..) => "HostNotAllowed",
            Error::AuthFailed(..) => "AuthenticationFailed",
            Error::Unreachable(..) | Error::TenantUnreachable(..) => "Unreachable",
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
                | Error::TenantUnreachable(..)
                | Error::Timeout(..)
                | Error::Write(..)
                | Error::Migration(..)
                | Error::SecretRead(..)
                | Error::LeaseExpired(..)
        )
    }

    /// Classifies a database error for `database` (a label, never a password).
    pub(crate) fn from_sqlx(database: &str, e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("28P01" | "28000")) =>
            {
                Error::AuthFailed(database.into(), Cause::new(e))
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                Error::Unreachable(database.into(), Cause::new(e))
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Error::Unreachable(database.into(), Cause::new(e)),
            _ => Error::Write(database.into(), Cause::new(e)),
        }
    }

    /// A failure to connect, classified: a server's refusal of the
    /// credentials is `AuthFailed`, and a database that does not exist
    /// (known only after authentication) stays a server answer; anything
    /// else before a session exists (I/O, TLS, a protocol the client does
    /// not understand, a server that cannot take sessions) is Unreachable.
    pub(crate) fn from_connect(database: &str, e: sqlx::Error) -> Self {
        match Error::from_sqlx(database, e) {
            Error::Write(database, cause) => Error::Unreachable(database, cause),
            other => other,
        }
    }

    /// What status may say of this error for a tenant's database: a failure
    /// before authentication says only that the database is unreachable.
    /// Authentication failures, a missing database and everything after a
    /// session exists are about the tenant's own credentials and data, and
    /// stay as they are.
    pub(crate) fn for_tenant(self) -> Self {
        match self {
            Error::Unreachable(database, cause) if !is_missing_database(&cause) => {
                Error::TenantUnreachable(database, cause)
            }
            Error::Timeout(database, CONNECTING, limit) => {
                let said = Error::Timeout(database.clone(), CONNECTING, limit).to_string();
                Error::TenantUnreachable(database, Cause::from(said))
            }
            other => other,
        }
    }

    /// The cause status does not show, for the operator's log.
    pub(crate) fn withheld_cause(&self) -> Option<&Cause> {
        match self {
            Error::TenantUnreachable(_, cause) => Some(cause),
            _ => None,
        }
    }

    /// Every value `metric_label` gives: the series exported from start.
    pub(crate) const METRIC_LABELS: &[&'static str] = &[
        "no_database",
        "secret",
        "host_not_allowed",
        "auth",
        "unreachable",
        "migration",
        "write",
        "timeout",
        "superseded",
        "lease_expired",
    ];

    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::NoDatabase => "no_database",
            Error::SecretNotAllowed(..)
            | Error::SecretNotFound(_)
            | Error::SecretInvalid(_)
            | Error::SecretRead(..) => "secret",
            Error::HostNotAllowed(..) => "host_not_allowed",
            Error::AuthFailed(..) => "auth",
            Error::Unreachable(..) | Error::TenantUnreachable(..) => "unreachable",
            Error::Migration(..) => "migration",
            Error::Write(..) => "write",
            Error::Timeout(..) => "timeout",
            Error::Superseded(..) => "superseded",
            Error::LeaseExpired(..) => "lease_expired",
        }
    }
}

/// What a Timeout says of a connection that was never established.
pub(crate) const CONNECTING: &str = "connecting";

fn is_missing_database(cause: &Cause) -> bool {
    matches!(cause.downcast::<sqlx::Error>(),
        Some(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000"))
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
