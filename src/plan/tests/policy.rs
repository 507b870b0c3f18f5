//! Planning under the namespace policy: denied sources and targets get no
//! writes, and their replicas are deleted with reason Forbidden (which the
//! reconcile holds until the denial is confirmed).

use super::*;
use crate::plan::policy::{Role, Why};

fn forbidden_deletes(plan: &ReplicaPlan) -> Vec<(String, String)> {
    plan.actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Delete {
                    reason: DeleteReason::Forbidden,
                    ..
                }
            )
        })
        .map(|a| (a.namespace().to_string(), a.name().to_string()))
        .collect()
}

#[test]
fn a_listed_protected_target_is_denied_and_gets_nothing() {
    let w = World::new(&["dev", "kube-system"]);
    let p = w.plan();
    assert_eq!(creates(&p), vec![pair("dev", "app-config")]);
    assert_eq!(
        p.denials,
        vec![Denial {
            role: Role::Target,
            namespace: "kube-system".into(),
            why: Why::Protected,
        }]
    );
    assert!(p.targets.forbidden.contains("kube-system"));
    assert!(!p.targets.missing.contains("kube-system"));
}

#[test]
fn a_target_becoming_protected_deletes_its_replica_as_forbidden() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.policy.protected.insert("prod".into());
    let p = w.plan();
    assert_eq!(forbidden_deletes(&p), vec![pair("prod", "app-config")]);
    assert_eq!(p.actions.len(), 1, "dev is left alone");
}

#[test]
fn a_source_without_opt_in_is_not_read_and_its_replicas_are_forbidden() {
    let mut w = World::new(&["dev", "prod"]);
    w.converge();
    w.policy.require_source_opt_in = true;
    let p = w.plan();
    assert!(p.sources.is_empty(), "nothing is read from a denied source");
    assert_eq!(
        forbidden_deletes(&p),
        vec![pair("dev", "app-config"), pair("prod", "app-config")]
    );
    assert_eq!(p.denials.len(), 1);
    assert_eq!(p.denials[0].why, Why::NotOptedIn);

    // The source namespace opts in for the mirror's namespace: all is well.
    w.namespaces
        .get_mut("app-source")
        .unwrap()
        .allow_mirrors_from = Some("other, configmirror-system".into());
    let p = w.plan();
    assert!(p.denials.is_empty());
    assert!(p.actions.is_empty());
}

#[test]
fn a_protected_source_is_denied_even_with_opt_in() {
    let mut w = World::new(&["dev"]);
    w.policy.protected.insert("app-source".into());
    w.namespaces
        .get_mut("app-source")
        .unwrap()
        .allow_mirrors_from = Some("*".into());
    let p = w.plan();
    assert!(p.actions.is_empty());
    assert_eq!(p.denials[0].why, Why::Protected);
    assert_eq!(p.denials[0].role, Role::Source);
}
