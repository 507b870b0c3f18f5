//! The one place that decides which ConfigMirrors this process reconciles.
//! Everything else asks it. Today: the `--watch-namespace` scope (all
//! namespaces when empty); sharding narrows it to this member's assignment.

use std::collections::BTreeSet;

use kube::ResourceExt;

use crate::api::ConfigMirror;

#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Namespaces whose mirrors this process handles; empty means all.
    namespaces: BTreeSet<String>,
}

impl Scope {
    pub fn new(namespaces: impl IntoIterator<Item = String>) -> Self {
        Self {
            namespaces: namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
        }
    }

    /// The single namespace to watch mirrors in, when the scope is exactly one.
    pub fn single_namespace(&self) -> Option<&str> {
        match self.namespaces.len() {
            1 => self.namespaces.iter().next().map(String::as_str),
            _ => None,
        }
    }

    pub fn in_namespace_scope(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.contains(namespace)
    }

    pub fn owns(&self, mirror: &ConfigMirror) -> bool {
        self.in_namespace_scope(&mirror.namespace().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(ns: &str) -> ConfigMirror {
        let mut m = ConfigMirror::new("m", Default::default());
        m.metadata.namespace = Some(ns.into());
        m
    }

    #[test]
    fn empty_scope_owns_everything() {
        let s = Scope::new(Vec::<String>::new());
        assert!(s.owns(&mirror("a")) && s.owns(&mirror("b")));
        assert_eq!(s.single_namespace(), None);
    }

    #[test]
    fn namespace_scope_owns_only_its_namespaces() {
        let s = Scope::new(["a".to_string(), "c".to_string()]);
        assert!(s.owns(&mirror("a")) && s.owns(&mirror("c")));
        assert!(!s.owns(&mirror("b")));
        assert_eq!(Scope::new(["a".to_string()]).single_namespace(), Some("a"));
    }
}
