//! Label selectors: validated once, matched in memory, and turned into the
//! API's query syntax so watches fetch only what a mirror can select.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A valid label selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl Selector {
    pub(crate) fn everything() -> Self {
        Self::default()
    }

    pub fn parse(selector: Option<&LabelSelector>) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self::everything());
        };
        let mut reqs = Vec::new();
        for (k, v) in selector.match_labels.iter().flatten() {
            check_key(k)?;
            check_value(k, v)?;
            reqs.push(Requirement::In(k.clone(), BTreeSet::from([v.clone()])));
        }
        for e in selector.match_expressions.iter().flatten() {
            check_key(&e.key)?;
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            for v in &values {
                check_value(&e.key, v)?;
            }
            let key = e.key.clone();
            reqs.push(match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError(format!(
                        "matchExpressions for key {key:?}: operator {} needs at least one value",
                        e.operator
                    )));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError(format!(
                        "matchExpressions for key {key:?}: operator {} takes no values",
                        e.operator
                    )));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(SelectorError(format!(
                        "matchExpressions for key {key:?}: unknown operator {other:?} \
                         (use In, NotIn, Exists or DoesNotExist)"
                    )));
                }
            });
        }
        reqs.sort();
        reqs.dedup();
        Ok(Self(reqs))
    }

    pub(crate) fn is_everything(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// Adds a requirement that `key` is not `value` (objects without the
    /// label match): how source watches leave replicas out.
    pub(crate) fn and_not(mut self, key: &str, value: &str) -> Self {
        self.0.push(Requirement::NotIn(
            key.into(),
            BTreeSet::from([value.into()]),
        ));
        self.0.sort();
        self.0.dedup();
        self
    }
}

/// The API's label selector syntax, e.g. `app=web,tier in (a,b),!legacy`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) if vs.len() == 1 => {
                    format!("{k}={}", vs.iter().next().unwrap())
                }
                Requirement::In(k, vs) => format!("{k} in ({})", join(vs)),
                Requirement::NotIn(k, vs) if vs.len() == 1 => {
                    format!("{k}!={}", vs.iter().next().unwrap())
                }
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", join(vs)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn join(values: &BTreeSet<String>) -> String {
    values.iter().cloned().collect::<Vec<_>>().join(",")
}

fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn dns_subdomain_ok(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => dns_subdomain_ok(prefix) && name_part_ok(name),
        None => name_part_ok(key),
    };
    if ok {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "invalid label key {key:?}: an optional DNS subdomain prefix and '/', then up to 63 \
             characters of [A-Za-z0-9._-] starting and ending with a letter or digit"
        )))
    }
}

fn check_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || name_part_ok(value) {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "invalid value {value:?} for label {key:?}: up to 63 characters of [A-Za-z0-9._-] \
             starting and ending with a letter or digit"
        )))
    }
}

/// A DNS-1123 label, what namespace names must be.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(match_labels)),
            match_expressions: Some(exprs),
        }
    }

    #[test]
    fn absent_and_empty_selectors_match_everything() {
        assert!(Selector::parse(None).unwrap().matches(&labels(&[])));
        let empty = Selector::parse(Some(&LabelSelector::default())).unwrap();
        assert!(empty.is_everything());
        assert!(empty.matches(&labels(&[("a", "b")])));
        assert_eq!(empty.to_string(), "");
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() {
        let s = Selector::parse(Some(&selector(
            &[("app", "web")],
            vec![
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["prod"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ],
        )))
        .unwrap();
        let base = [("app", "web"), ("tier", "a"), ("team", "x")];
        assert!(s.matches(&labels(&base)));
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("team", ""),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[("app", "api"), ("tier", "a"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("env", "prod")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("legacy", "1")
        ])));
    }

    #[test]
    fn query_string_uses_the_api_syntax() {
        let s = Selector::parse(Some(&selector(
            &[("app", "web")],
            vec![
                expr("tier", "In", &["b", "a"]),
                expr("env", "NotIn", &["prod", "qa"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ],
        )))
        .unwrap()
        .and_not("app.kubernetes.io/managed-by", "configmirror");
        assert_eq!(
            s.to_string(),
            "app=web,tier in (a,b),app.kubernetes.io/managed-by!=configmirror,env notin (prod,qa),team,!legacy"
        );
    }

    #[test]
    fn invalid_selectors_are_rejected_with_a_reason() {
        let cases = [
            selector(&[], vec![expr("a", "Like", &["x"])]),
            selector(&[], vec![expr("a", "In", &[])]),
            selector(&[], vec![expr("a", "Exists", &["x"])]),
            selector(&[("bad key!", "x")], vec![]),
            selector(&[("a", "bad value!")], vec![]),
            selector(&[("UPPER.example/x", "v")], vec![]),
            selector(&[(&"k".repeat(64), "v")], vec![]),
        ];
        for c in cases {
            let err = Selector::parse(Some(&c)).unwrap_err();
            assert!(!err.0.is_empty());
        }
        assert!(Selector::parse(Some(&selector(&[("example.com/app", "")], vec![]))).is_ok());
    }

    #[test]
    fn dns1123_labels() {
        assert!(is_dns1123_label("app-source"));
        assert!(is_dns1123_label(&"a".repeat(63)));
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }
}
