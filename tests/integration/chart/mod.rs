//! The Helm chart: it lints and renders, the mode and the database follow
//! the values (replicaCount 3 alone means three sharded workers with the
//! chart's PostgreSQL), its schema catches bad values, its hooks (`helm
//! test`'s check, the pre-upgrade job) come with RBAC of their own, it
//! installs, upgrades the CRD and uninstalls without stranding anything
//! (keeping the database's PVC and Secret), and its RBAC is exactly enough.
//!
//! Here the chart is rendered, or installed with the operator run out of
//! cluster under the chart's ServiceAccount tokens; its pods running for
//! real (`helm test`, upgrades between modes) are tests/integration/pods.rs.
//! This module holds what the files below share: rendering and reading the
//! rendered documents.

mod admission;
mod database;
mod hooks;
mod install;
mod rbac;
mod render;
mod tenancy;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;

use crate::support::helm::{chart, helm};

const CRD: &str = "configmirrors.mirror.configmirror.io";

fn documents(rendered: &str) -> Vec<serde_yaml::Value> {
    rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .filter(|d| d.get("kind").is_some())
        .collect()
}

fn kinds(docs: &[serde_yaml::Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn try_named<'a>(
    docs: &'a [serde_yaml::Value],
    kind: &str,
    name: &str,
) -> Option<&'a serde_yaml::Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn named<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    try_named(docs, kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The `helm.sh/hook` annotation of a rendered object: `None` for the
/// release's own resources.
fn hook(doc: &serde_yaml::Value) -> Option<&str> {
    doc["metadata"]["annotations"]["helm.sh/hook"].as_str()
}

/// Release `r` in configmirror-system: the names below.
const OPERATOR: &str = "r-configmirror-operator";
const POSTGRESQL: &str = "r-configmirror-operator-postgresql";
const TEST: &str = "r-configmirror-operator-test";
const UPGRADE: &str = "r-configmirror-operator-prepare-upgrade";

/// `helm template r <chart> -n configmirror-system --set <each>`.
fn template(sets: &[&str]) -> crate::support::helm::HelmResult {
    let c = chart().display().to_string();
    let mut args = vec!["template", "r", c.as_str(), "-n", "configmirror-system"];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(None, &args)
}

fn render(sets: &[&str]) -> Vec<serde_yaml::Value> {
    let r = template(sets);
    assert!(r.ok, "helm template {sets:?} failed:\n{}", r.stderr);
    documents(&r.stdout)
}

/// `helm template r <chart> -n configmirror-system -f <values> <extra...>`.
fn render_values(values: &str, extra: &[&str]) -> Vec<serde_yaml::Value> {
    let c = chart().display().to_string();
    let mut args = vec![
        "template",
        "r",
        &c,
        "-n",
        "configmirror-system",
        "-f",
        values,
    ];
    args.extend_from_slice(extra);
    documents(&crate::support::helm::helm_ok(None, &args))
}

/// The error of a render that must fail.
fn render_error(sets: &[&str]) -> String {
    let r = template(sets);
    assert!(!r.ok, "{sets:?} rendered:\n{}", r.stdout);
    r.stderr
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The operator container's args.
fn operator_args(docs: &[serde_yaml::Value]) -> Vec<String> {
    strings(
        &named(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["args"],
    )
}

/// The operator container's env var `name`, if set.
fn operator_env<'a>(docs: &'a [serde_yaml::Value], name: &str) -> Option<&'a serde_yaml::Value> {
    named(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)
}

/// A rendered Secret's data, decoded.
fn secret_data(doc: &serde_yaml::Value) -> std::collections::BTreeMap<String, String> {
    let secret: Secret = serde_yaml::from_value(doc.clone()).expect("a Secret");
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8")))
        .collect()
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}
