//! What a tenant controls cannot turn the operator against others: a
//! mirror's own database Secret may only point at the hosts
//! `--database-allowed-hosts` lists, and a host outside gets no connection
//! attempt at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::persistence::{database_synced, mirror_with_secret, secret};
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;

/// A scenario with a source "cfg" and its operator, whose database
/// statements have a 2 s deadline, started with `args`.
pub async fn tenant_scenario(prefix: &str, args: &[String]) -> (Scenario, Operator) {
    let s = Scenario::new(prefix, 1).await;
    let mut builder = s.operator().arg("--database-timeout-seconds=2");
    for arg in args {
        builder = builder.arg(arg.clone());
    }
    let op = builder.start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    (s, op)
}

/// The Secret `secret_name` in the mirror's namespace, holding `data`, and
/// mirror `mirror` persisting into the database it names.
pub async fn mirror_on_secret(
    s: &Scenario,
    mirror: &str,
    secret_name: &str,
    data: &BTreeMap<&str, String>,
) {
    secret(&s.client, &s.home.name, secret_name, data).await;
    let spec = mirror_with_secret(s, None, secret_name);
    create_mirror(&s.client, &s.home.name, mirror, spec).await;
}

/// A TCP listener that counts the connections made to it and answers none.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

fn secret_at(port: u16) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("host", "127.0.0.1".to_string()),
        ("port", port.to_string()),
        ("dbname", "tenant".to_string()),
        ("username", "tenant".to_string()),
        ("password", "tenant".to_string()),
    ])
}

/// Runs one mirror whose Secret points at a counting listener, under an
/// operator started with `allowed`; returns the mirror's DatabaseSynced
/// reason once it is False, and how many connections the listener saw.
async fn tenant_database(prefix: &str, allowed: Option<&str>) -> (String, usize) {
    let (port, accepted) = counting_listener().await;
    let args: Vec<String> = allowed
        .map(|hosts| format!("--database-allowed-hosts={hosts}"))
        .into_iter()
        .collect();
    let (s, _op) = tenant_scenario(prefix, &args).await;
    mirror_on_secret(&s, "m", "tenant-db", &secret_at(port)).await;
    // Replication never waits on the database, allowed or not.
    wait_cm(&s.client, s.target_names()[0], "cfg", "replicated", |cm| {
        data_of(cm) == labels(&[("k", "v")])
    })
    .await;
    let status = wait_status(&s.client, &s.home.name, "m", "DatabaseSynced=False", |st| {
        condition(st, "DatabaseSynced").is_some_and(|c| c.status == "False")
    })
    .await;
    // Time for any retry to try again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reason = condition(&status, "DatabaseSynced").unwrap().reason.clone();
    (reason, accepted.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_tenant_database_outside_the_allowed_hosts_gets_no_connection_attempt() {
    let (reason, connections) =
        tenant_database("hosts-refused", Some("10.255.0.0/16,db.example.org")).await;
    assert_eq!(reason, "HostNotAllowed");
    assert_eq!(connections, 0, "the listener saw a connection attempt");
}

#[tokio::test]
async fn without_the_list_the_same_secret_is_connected_to() {
    // The control: the listener does see the operator when it may connect.
    let (reason, connections) = tenant_database("hosts-open", None).await;
    assert_ne!(reason, "HostNotAllowed");
    assert!(connections > 0, "no connection attempt seen ({reason})");
}

/// What status would tell a tenant of the host its Secret names.
const REVEALING: &[&str] = &[
    "refused",
    "os error",
    "Connection",
    "127.0.0.1",
    "did not answer",
    "timed out",
];

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refusing_and_a_silent_tenant_host_both_read_only_unreachable() {
    use k8s_openapi::api::events::v1::Event;

    let (silent_port, accepted) = counting_listener().await;
    let (s, op) = tenant_scenario("unreach", &[]).await;
    let ns = s.home.name.clone();
    for (name, port) in [("refusing", closed_port()), ("silent", silent_port)] {
        mirror_on_secret(&s, &format!("m-{name}"), name, &secret_at(port)).await;
    }
    let mut said = Vec::new();
    for name in ["refusing", "silent"] {
        let mirror = format!("m-{name}");
        let message = database_synced(&s, &mirror, "False", "Unreachable").await;
        let status = get_mirror(&s.client, &ns, &mirror)
            .await
            .unwrap()
            .status
            .unwrap();
        let database = status.database_status.as_ref().unwrap();
        assert!(!database.connected);
        assert_eq!(database.message.as_deref(), Some(message.as_str()));
        assert!(message.contains("unreachable"), "{message}");
        assert!(message.contains(&format!("{ns}/{name}")), "{message}");
        for word in REVEALING {
            assert!(!message.contains(word), "{word:?} in {message}");
        }
        said.push(message.replace(&format!("{ns}/{name}"), "SECRET"));
    }
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "the silent host was never reached"
    );
    assert_eq!(
        said[0], said[1],
        "a refusing host reads unlike a silent one"
    );
    let events = kube::Api::<Event>::namespaced(s.client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    for note in events.items.iter().filter_map(|e| e.note.as_deref()) {
        for word in REVEALING {
            assert!(!note.contains(word), "{word:?} in event {note}");
        }
    }
    // The operator's own log keeps what status withholds.
    assert!(
        op.logged_contains("refused"),
        "the cause is not in the operator's log"
    );
}
