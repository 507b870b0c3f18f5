//! Every database call has a deadline. A database that refuses connections
//! fails fast by itself; one that hangs (a network partition: connections
//! open, no reply) would otherwise hold whoever waits on it forever, and
//! with it a reconcile slot or a persistence worker. PostgreSQL's own
//! `statement_timeout` and `lock_timeout` cover a slow server; only a
//! client-side deadline covers a silent one.

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use super::Error;

/// `application_name` of the operator's persistence sessions.
pub const APPLICATION_NAME: &str = "configmirror";

/// How long each kind of call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Getting a connection from the pool, connecting included.
    pub acquire: Duration,
    /// One statement (also PostgreSQL's `statement_timeout`).
    pub statement: Duration,
    /// A migration run, waiting for the advisory lock included.
    pub migration: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::from_statement(Duration::from_secs(10))
    }
}

impl Deadlines {
    /// The deadlines that follow from one statement deadline.
    pub fn from_statement(statement: Duration) -> Self {
        Self {
            acquire: statement.min(Duration::from_secs(5)),
            statement,
            migration: statement * 3,
        }
    }

    /// Server-side limits for every session, so a slow server ends a
    /// statement (or a lock wait) itself and frees the connection; and TCP
    /// keepalives, so the server drops connections of clients that vanished.
    /// (sqlx exposes no client socket options: the client's side of a
    /// silent connection is covered by the deadlines above.)
    pub(crate) fn session_options(&self, options: PgConnectOptions) -> PgConnectOptions {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        // Named, so a DBA sees in pg_stat_activity whose connections these are.
        options.application_name(APPLICATION_NAME).options([
            ("statement_timeout", ms(self.statement)),
            ("lock_timeout", ms(self.statement / 2)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.statement * 6),
            ),
            ("tcp_keepalives_idle", "30".to_string()),
            ("tcp_keepalives_interval", "10".to_string()),
            ("tcp_keepalives_count", "3".to_string()),
        ])
    }
}

/// Runs `call` (`what`, on database `label`) within `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    label: &str,
    what: &'static str,
    call: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(Err(e)) if is_server_timeout(&e) => Err(Error::Timeout(label.to_string(), what, limit)),
        Ok(result) => result.map_err(|e| Error::from_sqlx(label, e)),
        Err(_) => Err(Error::Timeout(label.to_string(), what, limit)),
    }
}

/// Whether PostgreSQL itself ended the statement at a deadline we set:
/// `statement_timeout` (57014, query_canceled) or `lock_timeout` (55P03,
/// lock_not_available). A slow server then reads as the same Timeout as a
/// silent one, not as a failed write.
pub(crate) fn is_server_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("57014" | "55P03")))
}

/// sqlx reports both a refusing and a silent database as "pool timed out"
/// (it retries refused connects until its acquire timeout). A TCP connect
/// tells them apart: refused is Unreachable, accepted-then-silent is a
/// Timeout.
pub(crate) async fn classify_acquire_failure(
    error: Error,
    options: &PgConnectOptions,
    limit: Duration,
) -> Error {
    let Error::Unreachable(label, cause) = &error else {
        return error;
    };
    let pool_timed_out = matches!(
        cause.downcast::<sqlx::Error>(),
        Some(sqlx::Error::PoolTimedOut)
    );
    if !pool_timed_out || options.get_socket().is_some() {
        return error;
    }
    let address = (options.get_host().to_string(), options.get_port());
    let probe = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(address),
    )
    .await;
    match probe {
        // It accepts connections but never answered ours.
        Ok(Ok(_)) | Err(_) => Error::Timeout(label.clone(), super::CONNECTING, limit),
        Ok(Err(_)) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Cause;

    #[tokio::test]
    async fn a_call_past_its_deadline_is_a_timeout_naming_what_and_where() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, sqlx::Error>(())
        };
        let e = within(Duration::from_millis(10), "tenant/db", "writing rows", slow)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "Timeout");
        assert!(e.transient());
        assert_eq!(
            e.to_string(),
            "database tenant/db did not answer within 10ms (writing rows)"
        );
    }

    #[tokio::test]
    async fn a_refused_connect_stays_unreachable_and_a_silent_one_is_a_timeout() {
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused_port = refused.local_addr().unwrap().port();
        drop(refused);
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let pool_timeout =
            || Error::Unreachable("db".into(), Cause::new(sqlx::Error::PoolTimedOut));
        let options = |port| PgConnectOptions::new().host("127.0.0.1").port(port);
        let limit = Duration::from_secs(5);
        let e = classify_acquire_failure(pool_timeout(), &options(refused_port), limit).await;
        assert_eq!(e.reason(), "Unreachable");
        let e = classify_acquire_failure(pool_timeout(), &options(silent_port), limit).await;
        assert_eq!(e.reason(), "Timeout");
    }

    #[test]
    fn deadlines_follow_the_statement_deadline() {
        let d = Deadlines::from_statement(Duration::from_secs(3));
        assert_eq!(d.acquire, Duration::from_secs(3));
        assert_eq!(d.migration, Duration::from_secs(9));
        let d = Deadlines::from_statement(Duration::from_secs(20));
        assert_eq!(d.acquire, Duration::from_secs(5));
    }
}
