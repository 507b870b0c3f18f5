use std::borrow::Cow;
use std::time::Duration;

use sqlx::Connection;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::*;

/// What a PostgreSQL server answers with a SQLSTATE (the driver's own
/// type cannot be built outside sqlx).
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
struct ServerSaid(&'static str, &'static str);

impl DatabaseError for ServerSaid {
    fn message(&self) -> &str {
        self.1
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.0))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

fn server(code: &'static str, message: &'static str) -> sqlx::Error {
    sqlx::Error::Database(Box::new(ServerSaid(code, message)))
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn refused_connect() -> sqlx::Error {
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(closed_port());
    PgConnection::connect_with(&options).await.unwrap_err()
}

/// Words that would tell a tenant what is behind a host it chose.
const REVEALING: &[&str] = &[
    "refused",
    "os error",
    "Connection",
    "127.0.0.1",
    "certificate",
    "UnknownIssuer",
    "did not answer",
    "timed out",
    "unexpected",
];

#[tokio::test]
async fn every_failure_to_connect_to_a_tenant_database_reads_the_same() {
    let refused = refused_connect().await;
    assert!(
        refused.to_string().contains("refused"),
        "a real refusal: {refused}"
    );
    let failures = [
        Error::from_connect("t/db", refused),
        Error::from_connect("t/db", sqlx::Error::PoolTimedOut),
        Error::from_connect(
            "t/db",
            sqlx::Error::Tls("invalid peer certificate: UnknownIssuer".into()),
        ),
        Error::from_connect(
            "t/db",
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x48".into()),
        ),
        Error::from_connect(
            "t/db",
            server("57P03", "the database system is starting up"),
        ),
        Error::Timeout("t/db".into(), CONNECTING, Duration::from_secs(5)),
    ];
    let said: Vec<String> = failures
        .iter()
        .map(|e| e.clone().for_tenant().to_string())
        .collect();
    for (failure, message) in failures.iter().zip(&said) {
        assert_eq!(message, &said[0], "{failure} reads differently");
        let tenant = failure.clone().for_tenant();
        assert_eq!(tenant.reason(), "Unreachable", "{failure}");
        assert!(tenant.transient(), "{failure}");
        assert_eq!(tenant.metric_label(), "unreachable");
        // The operator's log keeps what status does not say.
        let cause = tenant.withheld_cause().expect("a withheld cause");
        assert!(!cause.to_string().is_empty());
    }
    assert!(
        said[0].contains("database t/db is unreachable"),
        "{}",
        said[0]
    );
    for word in REVEALING {
        assert!(!said[0].contains(word), "{word:?} in {}", said[0]);
    }
}

#[tokio::test]
async fn the_operators_own_database_keeps_the_whole_cause() {
    let e = Error::from_connect("default", refused_connect().await);
    assert_eq!(e.reason(), "Unreachable");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(e.withheld_cause().is_none());
}

#[test]
fn what_the_tenant_owns_is_still_said() {
    let auth = Error::from_connect(
        "t/db",
        server("28P01", "password authentication failed for user \"app\""),
    )
    .for_tenant();
    assert_eq!(auth.reason(), "AuthenticationFailed");
    assert!(auth.to_string().contains("password authentication failed"));
    // Only an authenticated client learns that a database is missing.
    let missing = Error::from_connect("t/db", server("3D000", "database \"app\" does not exist"))
        .for_tenant();
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    // Once a session exists, the database's answers are the tenant's own.
    let slow = Error::Timeout("t/db".into(), "writing rows", Duration::from_secs(5));
    assert_eq!(slow.clone().for_tenant(), slow);
    let write = Error::from_sqlx("t/db", server("23505", "duplicate key")).for_tenant();
    assert_eq!(write.reason(), "WriteFailed");
    for secret in [
        Error::SecretInvalid("t/db: missing key \"host\"".into()),
        Error::HostNotAllowed("t/db".into(), "10.0.0.1".into()),
    ] {
        assert_eq!(secret.clone().for_tenant(), secret);
    }
}

#[tokio::test]
async fn a_migration_that_never_connected_times_out_connecting() {
    // Accepts the connection and never answers: a silent or filtered host.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let options = PgConnectOptions::new().host("127.0.0.1").port(port);
    let e = migrate::run_within(
        &options,
        migrate::persistence(),
        "t/db",
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        Error::Timeout("t/db".into(), CONNECTING, Duration::from_millis(300))
    );
    assert_eq!(e.for_tenant().reason(), "Unreachable");
}
