//! A mirror's own database (`secretRef`) is reached over TLS unless its
//! Secret says otherwise: `require` by default, `verify-full` when the
//! Secret gives `sslrootcert`. Both local PostgreSQL servers serve TLS: the
//! shared one with the cluster CA's certificate, a private one with its own.

use std::collections::BTreeMap;

use crate::persistence::{database_synced, mirror_with_secret, secret};
use crate::support::db::{TestDatabase, cluster_ca_pem, operator_tls, parts_of};
use crate::support::k8s::*;
use crate::support::postgres::PrivatePostgres;
use crate::support::scenario::Scenario;
use crate::tenancy::{mirror_on_secret, tenant_scenario};

fn with(
    mut parts: BTreeMap<&'static str, String>,
    key: &'static str,
    value: String,
) -> BTreeMap<&'static str, String> {
    parts.insert(key, value);
    parts
}

#[tokio::test]
async fn tenant_databases_use_tls_unless_the_secret_disables_it() {
    let (plain, verified, disabled) = (
        TestDatabase::create().await,
        TestDatabase::create().await,
        TestDatabase::create().await,
    );
    let s = Scenario::new("dbtls", 1).await;
    let _op = s.operator().start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let ns = s.home.name.clone();
    // No sslmode: require. The cluster's CA: verify-full, which against
    // 127.0.0.1 holds only with the certificate's IP SAN.
    secret(&s.client, &ns, "plain", &plain.parts()).await;
    let ca = cluster_ca_pem();
    secret(
        &s.client,
        &ns,
        "verified",
        &with(verified.parts(), "sslrootcert", ca),
    )
    .await;
    let off = with(disabled.parts(), "sslmode", "disable".into());
    secret(&s.client, &ns, "disabled", &off).await;
    for name in ["plain", "verified", "disabled"] {
        let spec = mirror_with_secret(&s, None, name);
        create_mirror(&s.client, &ns, name, spec).await;
    }
    for name in ["plain", "verified", "disabled"] {
        database_synced(&s, name, "True", "Synced").await;
    }
    for (db, tls) in [(&plain, true), (&verified, true), (&disabled, false)] {
        let sessions = db.operator_tls().await;
        eprintln!("measured: {} operator sessions ssl = {sessions:?}", db.name);
        assert!(!sessions.is_empty(), "no operator session on {}", db.name);
        assert!(
            sessions.iter().all(|s| *s == tls),
            "{}: sessions {sessions:?}, expected ssl = {tls}",
            db.name
        );
    }
}

#[tokio::test]
async fn a_root_certificate_of_another_ca_is_unreachable_and_the_right_one_connects() {
    let pg = PrivatePostgres::start();
    let parts = parts_of(&pg.url());
    let (s, op) = tenant_scenario("dbca", &[]).await;
    let ns = s.home.name.clone();
    // The cluster's CA did not sign this server's certificate.
    let wrong = with(parts.clone(), "sslrootcert", cluster_ca_pem());
    mirror_on_secret(&s, "m", "tenant-db", &wrong).await;
    let message = database_synced(&s, "m", "False", "Unreachable").await;
    assert!(
        message.contains(&format!("database {ns}/tenant-db is unreachable")),
        "{message}"
    );
    assert!(
        message.contains("sslrootcert"),
        "no hint at the Secret: {message}"
    );
    for word in ["certificate", "UnknownIssuer", "TLS handshake", "127.0.0.1"] {
        assert!(!message.contains(word), "{word:?} in {message}");
    }
    assert!(
        op.logged_contains("certificate"),
        "the operator's log lacks the TLS cause"
    );
    assert!(operator_tls(&pg.url(), "postgres").await.is_empty());

    secret(
        &s.client,
        &ns,
        "tenant-db",
        &with(parts, "sslrootcert", pg.ca_pem()),
    )
    .await;
    database_synced(&s, "m", "True", "Synced").await;
    let sessions = operator_tls(&pg.url(), "postgres").await;
    assert!(
        !sessions.is_empty() && sessions.iter().all(|s| *s),
        "sessions {sessions:?}"
    );
}

#[tokio::test]
async fn a_server_without_tls_is_refused_until_the_secret_says_disable() {
    // What tells `require` from sqlx's own `prefer`: prefer would connect.
    let pg = PrivatePostgres::start_without_tls();
    let parts = parts_of(&pg.url());
    let (s, _op) = tenant_scenario("dbnotls", &[]).await;
    let ns = s.home.name.clone();
    mirror_on_secret(&s, "m", "tenant-db", &parts).await;
    let message = database_synced(&s, "m", "False", "Unreachable").await;
    assert!(message.contains("unreachable"), "{message}");
    assert!(operator_tls(&pg.url(), "postgres").await.is_empty());

    let off = with(parts, "sslmode", "disable".into());
    secret(&s.client, &ns, "tenant-db", &off).await;
    database_synced(&s, "m", "True", "Synced").await;
    let sessions = operator_tls(&pg.url(), "postgres").await;
    assert!(
        !sessions.is_empty() && sessions.iter().all(|s| !*s),
        "sessions {sessions:?}"
    );
}
