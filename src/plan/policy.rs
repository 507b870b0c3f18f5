//! Which namespaces a mirror may read from and write into. Admission checks
//! the author's own rights when a mirror is created, but admission can be
//! off or bypassed, so the operator enforces its own rules on every pass:
//! protected namespaces, and the source's opt-in.

use std::collections::BTreeSet;
use std::fmt;

use super::model::Namespaces;
use crate::api::keys;

/// The namespace rules that hold for every mirror.
#[derive(Debug, Clone, Default)]
pub struct NamespacePolicy {
    /// Never reached by a target selector (an explicit `targetNamespaces`
    /// entry still reaches them, unless they are protected).
    pub excluded: BTreeSet<String>,
    /// Never a source or a target, listed or selected. Empty under
    /// `--allow-protected-namespaces`.
    pub protected: BTreeSet<String>,
    /// `--require-source-opt-in`: a source namespace must name the
    /// mirror's namespace in its `allow-mirrors-from` annotation.
    pub require_source_opt_in: bool,
}

/// Which side of the mirror a denied namespace is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Source,
    Target,
}

/// Why the policy denies a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// In `--protected-namespaces`.
    Protected,
    /// The source namespace does not name the mirror's namespace in its
    /// `allow-mirrors-from` annotation (under `--require-source-opt-in`).
    NotOptedIn,
}

/// A namespace this mirror may not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Denial {
    pub role: Role,
    pub namespace: String,
    pub why: Why,
}

impl Denial {
    /// Identifies the denial across passes, for its confirmation.
    pub(crate) fn key(&self) -> String {
        key(self.role, &self.namespace)
    }
}

/// The key of a denial of `namespace` on the `role` side.
pub(crate) fn key(role: Role, namespace: &str) -> String {
    let role = match role {
        Role::Source => "source",
        Role::Target => "target",
    };
    format!("{role}/{namespace}")
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = &self.namespace;
        match (self.role, self.why) {
            (Role::Source, Why::Protected) => write!(
                f,
                "source namespace {ns} is protected (--protected-namespaces): nothing is read from it"
            ),
            (Role::Target, Why::Protected) => write!(
                f,
                "target namespace {ns} is protected (--protected-namespaces): nothing is written into it"
            ),
            (_, Why::NotOptedIn) => write!(
                f,
                "source namespace {ns} does not allow mirrors from this namespace: it needs the annotation {}",
                keys::ALLOW_MIRRORS_FROM
            ),
        }
    }
}

impl NamespacePolicy {
    /// Whether a target selector may reach `namespace`.
    pub(crate) fn selectable(&self, namespace: &str) -> bool {
        !self.excluded.contains(namespace) && !self.protected.contains(namespace)
    }

    /// The denial of a listed target namespace, if any.
    pub(crate) fn target_denial(&self, namespace: &str) -> Option<Denial> {
        self.protected.contains(namespace).then(|| Denial {
            role: Role::Target,
            namespace: namespace.to_string(),
            why: Why::Protected,
        })
    }

    /// The denial of reading `source` for a mirror living in
    /// `mirror_namespace`, if any. A mirror may always read its own
    /// namespace: its author already writes there.
    pub(crate) fn source_denial(
        &self,
        mirror_namespace: &str,
        source: &str,
        namespaces: &Namespaces,
    ) -> Option<Denial> {
        let deny = |why| {
            Some(Denial {
                role: Role::Source,
                namespace: source.to_string(),
                why,
            })
        };
        if self.protected.contains(source) {
            return deny(Why::Protected);
        }
        if self.require_source_opt_in && source != mirror_namespace {
            let annotation = namespaces
                .get(source)
                .and_then(|ns| ns.allow_mirrors_from.as_deref());
            if !allows(annotation, mirror_namespace) {
                return deny(Why::NotOptedIn);
            }
        }
        None
    }
}

/// Whether an `allow-mirrors-from` value (`*`, or namespaces separated by
/// commas) names `mirror_namespace`.
pub(crate) fn allows(annotation: Option<&str>, mirror_namespace: &str) -> bool {
    annotation.is_some_and(|value| {
        value
            .split(',')
            .map(str::trim)
            .any(|entry| entry == "*" || entry == mirror_namespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NamespaceMeta;

    fn policy(opt_in: bool) -> NamespacePolicy {
        NamespacePolicy {
            excluded: ["quiet".to_string()].into(),
            protected: ["kube-system".to_string()].into(),
            require_source_opt_in: opt_in,
        }
    }

    fn world(annotation: Option<&str>) -> Namespaces {
        Namespaces::from([(
            "team-b".to_string(),
            NamespaceMeta {
                allow_mirrors_from: annotation.map(String::from),
                ..Default::default()
            },
        )])
    }

    #[test]
    fn the_annotation_names_namespaces_or_everyone() {
        assert!(allows(Some("*"), "team-a"));
        assert!(allows(Some("team-c, team-a"), "team-a"));
        assert!(!allows(Some("team-ab,team"), "team-a"));
        assert!(!allows(Some(""), "team-a"));
        assert!(!allows(None, "team-a"));
    }

    #[test]
    fn a_protected_source_is_denied_whatever_its_annotation() {
        let mut namespaces = world(None);
        namespaces.insert(
            "kube-system".into(),
            NamespaceMeta {
                allow_mirrors_from: Some("*".into()),
                ..Default::default()
            },
        );
        let denial = policy(true).source_denial("team-a", "kube-system", &namespaces);
        assert_eq!(denial.map(|d| d.why), Some(Why::Protected));
        let denial = policy(false).source_denial("team-a", "kube-system", &namespaces);
        assert_eq!(denial.map(|d| d.why), Some(Why::Protected));
    }

    #[test]
    fn opt_in_is_checked_only_when_required_and_never_for_the_own_namespace() {
        let none = world(None);
        assert_eq!(policy(false).source_denial("team-a", "team-b", &none), None);
        let denied = policy(true)
            .source_denial("team-a", "team-b", &none)
            .unwrap();
        assert_eq!((denied.role, denied.why), (Role::Source, Why::NotOptedIn));
        assert!(denied.to_string().contains(keys::ALLOW_MIRRORS_FROM));
        assert_eq!(policy(true).source_denial("team-b", "team-b", &none), None);
        let opted = world(Some("team-a"));
        assert_eq!(policy(true).source_denial("team-a", "team-b", &opted), None);
        // A namespace the cache does not know has no annotation.
        assert!(
            policy(true)
                .source_denial("team-a", "absent", &opted)
                .is_some()
        );
    }

    #[test]
    fn protected_namespaces_are_neither_listed_nor_selected() {
        let p = policy(false);
        assert!(!p.selectable("kube-system"));
        assert!(!p.selectable("quiet"));
        assert!(p.selectable("dev"));
        assert_eq!(
            p.target_denial("kube-system").unwrap().key(),
            "target/kube-system"
        );
        // Excluded is only about selectors: a listed entry is fine.
        assert_eq!(p.target_denial("quiet"), None);
    }
}
