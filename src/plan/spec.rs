//! A mirror's spec, checked once into a form the planner trusts.

use std::collections::BTreeSet;

use super::selector::{Selector, SelectorError, is_dns1123_label};
use crate::api::{ConfigMirrorSpec, MAX_TARGET_NAMESPACES};

/// A spec that passed every check the schema may have missed (objects
/// written before the CRD had its rules, or with validation bypassed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    pub source_namespace: String,
    pub target_namespaces: BTreeSet<String>,
    pub target_selector: Option<Selector>,
    pub source_selector: Selector,
}

/// A permanent spec error: retrying cannot help until the spec changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("sourceNamespace {0:?} is not a valid namespace name (a DNS-1123 label)")]
    SourceNamespace(String),
    #[error("targetNamespaces entry {0:?} is not a valid namespace name (a DNS-1123 label)")]
    TargetNamespace(String),
    #[error("targetNamespaces has {0} entries; at most {MAX_TARGET_NAMESPACES} are allowed")]
    TooManyTargets(usize),
    #[error(
        "sourceNamespace {0:?} is also listed in targetNamespaces: a namespace cannot mirror into itself"
    )]
    SourceIsTarget(String),
    #[error("set targetNamespaces, targetNamespaceSelector, or both: a mirror needs targets")]
    NoTargets,
    #[error("invalid selector: {0}")]
    Selector(SelectorError),
    #[error("invalid targetNamespaceSelector: {0}")]
    TargetSelector(SelectorError),
}

pub fn validate(spec: &ConfigMirrorSpec) -> Result<ValidSpec, SpecError> {
    if !is_dns1123_label(&spec.source_namespace) {
        return Err(SpecError::SourceNamespace(spec.source_namespace.clone()));
    }
    if spec.target_namespaces.len() > MAX_TARGET_NAMESPACES {
        return Err(SpecError::TooManyTargets(spec.target_namespaces.len()));
    }
    if let Some(bad) = spec.target_namespaces.iter().find(|n| !is_dns1123_label(n)) {
        return Err(SpecError::TargetNamespace(bad.clone()));
    }
    if spec.target_namespaces.contains(&spec.source_namespace) {
        return Err(SpecError::SourceIsTarget(spec.source_namespace.clone()));
    }
    if spec.target_namespaces.is_empty() && spec.target_namespace_selector.is_none() {
        return Err(SpecError::NoTargets);
    }
    let source_selector = Selector::parse(spec.selector.as_ref()).map_err(SpecError::Selector)?;
    let target_selector = spec
        .target_namespace_selector
        .as_ref()
        .map(|s| Selector::parse(Some(s)))
        .transpose()
        .map_err(SpecError::TargetSelector)?;
    Ok(ValidSpec {
        source_namespace: spec.source_namespace.clone(),
        target_namespaces: spec.target_namespaces.iter().cloned().collect(),
        target_selector,
        source_selector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn spec(source: &str, targets: &[&str]) -> ConfigMirrorSpec {
        ConfigMirrorSpec {
            source_namespace: source.into(),
            target_namespaces: targets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_spec_is_valid() {
        let v = validate(&spec("app-source", &["dev", "prod"])).unwrap();
        assert_eq!(v.target_namespaces.len(), 2);
        assert!(v.source_selector.is_everything());
        assert!(v.target_selector.is_none());
    }

    #[test]
    fn every_permanent_error_is_caught() {
        assert_eq!(
            validate(&spec("Bad_NS", &["dev"])),
            Err(SpecError::SourceNamespace("Bad_NS".into()))
        );
        assert_eq!(
            validate(&spec("src", &["ok", "no way"])),
            Err(SpecError::TargetNamespace("no way".into()))
        );
        assert_eq!(
            validate(&spec("src", &["dev", "src"])),
            Err(SpecError::SourceIsTarget("src".into()))
        );
        assert_eq!(validate(&spec("src", &[])), Err(SpecError::NoTargets));
        let many: Vec<String> = (0..=MAX_TARGET_NAMESPACES)
            .map(|i| format!("ns-{i}"))
            .collect();
        let mut s = spec("src", &[]);
        s.target_namespaces = many;
        assert_eq!(
            validate(&s),
            Err(SpecError::TooManyTargets(MAX_TARGET_NAMESPACES + 1))
        );

        let mut s = spec("src", &["dev"]);
        s.selector = Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Matches".into(),
                values: Some(vec!["x".into()]),
            }]),
            match_labels: None,
        });
        assert!(matches!(validate(&s), Err(SpecError::Selector(_))));
    }

    #[test]
    fn five_thousand_targets_are_allowed() {
        let mut s = spec("src", &[]);
        s.target_namespaces = (0..MAX_TARGET_NAMESPACES)
            .map(|i| format!("ns-{i}"))
            .collect();
        assert_eq!(
            validate(&s).unwrap().target_namespaces.len(),
            MAX_TARGET_NAMESPACES
        );
    }

    #[test]
    fn a_selector_alone_is_enough() {
        let mut s = spec("src", &[]);
        s.target_namespace_selector = Some(LabelSelector::default());
        assert!(
            validate(&s)
                .unwrap()
                .target_selector
                .unwrap()
                .is_everything()
        );
    }
}
