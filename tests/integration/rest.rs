//! At rest the operator writes nothing: not after converging, not after a
//! restart. The Go reference rewrote replicas forever here.

use std::time::Duration;

use kube::ResourceExt;

use crate::support::audit::{AuditCursor, summary};
use crate::support::eventually;
use crate::support::k8s::*;
use crate::support::operator::Operator;
use crate::support::scenario::Scenario;

#[tokio::test]
async fn no_writes_at_rest_or_after_a_restart() {
    let s = Scenario::new("rest", 100).await;
    let mut op = s.operator().start().await;
    s.selected_source("cfg", &[("k", "v")]).await;
    let audit = AuditCursor::now();
    let uid = s.mirror_selected("m").await;
    eventually("100 replicas", Duration::from_secs(120), || async {
        (replicas_of(&s.client, &uid).await.len() == 100).then_some(())
    })
    .await;
    wait_status(&s.client, &s.home.name, "m", "Ready", |st| {
        st.replicas == 100
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let converge = audit.operator_writes(&op.agent(), &s.namespaces());
    let creates = converge
        .iter()
        .filter(|e| e.verb == "create" && e.object_ref.resource == "configmaps")
        .count();
    assert_eq!(creates, 100, "exactly one create per replica");
    assert!(
        converge.len() <= 104,
        "converging took {} writes: {}",
        converge.len(),
        summary(&converge)
    );

    // 30 s of rest.
    let idle = AuditCursor::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let writes = idle.operator_writes(&op.agent(), &s.namespaces());
    assert!(writes.is_empty(), "writes at rest: {}", summary(&writes));

    // A restart re-reads everything and writes nothing.
    op.terminate().await;
    let after_restart = AuditCursor::now();
    let again = Operator::scoped(&[&s.home.name]).start().await;
    again.wait_reconciled(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let writes = after_restart.operator_writes(&again.agent(), &s.namespaces());
    assert!(
        writes.is_empty(),
        "writes after a restart: {}",
        summary(&writes)
    );
    assert_eq!(
        get_mirror(&s.client, &s.home.name, "m")
            .await
            .unwrap()
            .uid()
            .unwrap(),
        uid
    );
}
