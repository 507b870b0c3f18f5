//! Which namespaces a mirror replicates into.

use std::collections::BTreeSet;

use super::model::Namespaces;
use super::policy::NamespacePolicy;
use super::spec::ValidSpec;

/// The target namespaces of one mirror, split by whether they exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedTargets {
    /// Existing and not being deleted: replicas belong here.
    pub present: BTreeSet<String>,
    /// Listed but absent: reported, filled when they appear.
    pub missing: BTreeSet<String>,
    /// Listed but denied by the policy (protected): reported, never written.
    pub forbidden: BTreeSet<String>,
}

impl ResolvedTargets {
    pub(crate) fn count(&self) -> usize {
        self.present.len() + self.missing.len()
    }
}

pub(crate) fn resolve(
    spec: &ValidSpec,
    namespaces: &Namespaces,
    policy: &NamespacePolicy,
) -> ResolvedTargets {
    let mut out = ResolvedTargets::default();
    // The source namespace is never a target, whatever the list or selector says.
    for name in spec
        .target_namespaces
        .iter()
        .filter(|n| **n != spec.source_namespace)
    {
        if policy.target_denial(name).is_some() {
            out.forbidden.insert(name.clone());
            continue;
        }
        match namespaces.get(name) {
            Some(ns) if ns.terminating => {}
            Some(_) => {
                out.present.insert(name.clone());
            }
            None => {
                out.missing.insert(name.clone());
            }
        }
    }
    if let Some(selector) = &spec.target_selector {
        for (name, ns) in namespaces {
            if *name != spec.source_namespace
                && !ns.terminating
                && policy.selectable(name)
                && selector.matches(&ns.labels)
            {
                out.present.insert(name.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::NamespaceMeta;
    use crate::plan::selector::Selector;

    fn ns(labels: &[(&str, &str)], terminating: bool) -> NamespaceMeta {
        NamespaceMeta {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            terminating,
            ..Default::default()
        }
    }

    fn world() -> Namespaces {
        Namespaces::from([
            ("app-source".into(), ns(&[("team", "a")], false)),
            ("dev".into(), ns(&[("team", "a")], false)),
            ("prod".into(), ns(&[("team", "b")], false)),
            ("old".into(), ns(&[("team", "a")], true)),
            ("kube-system".into(), ns(&[("team", "a")], false)),
            ("configmirror-system".into(), ns(&[], false)),
        ])
    }

    fn spec(list: &[&str], selector: Option<Selector>) -> ValidSpec {
        ValidSpec {
            source_namespace: "app-source".into(),
            target_namespaces: list.iter().map(|s| s.to_string()).collect(),
            target_selector: selector,
            source_selector: Selector::everything(),
        }
    }

    fn policy() -> NamespacePolicy {
        NamespacePolicy {
            excluded: ["configmirror-system".to_string()].into(),
            protected: ["kube-system".to_string()].into(),
            require_source_opt_in: false,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listed_targets_split_into_present_and_missing() {
        let t = resolve(&spec(&["dev", "staging", "old"], None), &world(), &policy());
        assert_eq!(t.present, set(&["dev"]));
        assert_eq!(t.missing, set(&["staging"]));
        assert_eq!(t.count(), 2);
    }

    #[test]
    fn the_source_namespace_is_never_a_target() {
        let t = resolve(
            &spec(&["app-source", "dev"], Some(Selector::everything())),
            &world(),
            &policy(),
        );
        assert!(!t.present.contains("app-source"));
        assert!(!t.missing.contains("app-source"));
    }

    #[test]
    fn empty_selector_reaches_everything_but_source_system_and_terminating() {
        let t = resolve(
            &spec(&[], Some(Selector::everything())),
            &world(),
            &policy(),
        );
        assert_eq!(t.present, set(&["dev", "prod"]));
    }

    #[test]
    fn explicit_listing_reaches_an_excluded_namespace_but_not_a_protected_one() {
        let t = resolve(
            &spec(&["configmirror-system", "kube-system"], None),
            &world(),
            &policy(),
        );
        assert_eq!(t.present, set(&["configmirror-system"]));
        assert_eq!(t.forbidden, set(&["kube-system"]));
        let open = NamespacePolicy {
            protected: BTreeSet::new(),
            ..policy()
        };
        let t = resolve(&spec(&["kube-system"], None), &world(), &open);
        assert_eq!(t.present, set(&["kube-system"]));
        assert!(t.forbidden.is_empty());
    }

    #[test]
    fn selector_and_list_are_united() {
        let team_b = Selector::parse(Some(
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([("team".to_string(), "b".to_string())].into()),
                match_expressions: None,
            },
        ))
        .unwrap();
        let t = resolve(&spec(&["dev"], Some(team_b)), &world(), &policy());
        assert_eq!(t.present, set(&["dev", "prod"]));
    }
}
