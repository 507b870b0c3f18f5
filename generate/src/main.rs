//! Writes every generated file of the repository from its source: the CRD
//! from the Rust types, the admission policy and the aggregated ClusterRoles
//! (`admission.rs`), the Grafana dashboard and the alert rules from the
//! descriptions here (which use the operator's metric names), and the Helm
//! chart's copies of all of them. `deploy/generate` runs it (and regenerates
//! `.sqlx`); `deploy/generate --check` runs it into a scratch directory and
//! compares.

mod admission;
mod alert_tests;
mod alerts;
mod dashboard;
mod panels;
mod promql;

use std::path::Path;

use anyhow::{Context, bail};

const USAGE: &str = "usage: configmirror-generate <root>
       configmirror-generate --dashboard-rules
Writes every generated file under <root> (the repository, or a scratch
directory to compare with it) and prints each one's path relative to it.
With --dashboard-rules, prints a rule file of the dashboard's queries for
`promtool check rules` to parse (deploy/check-rules).";

/// Every generated file, by path from the repository root, with its content.
fn artefacts() -> Vec<(&'static str, String)> {
    let crd = configmirror::api::crd_yaml();
    let dashboard = dashboard::json();
    let alerts = alerts::yaml();
    let policy = admission::policy_yaml();
    let roles = admission::roles_yaml();
    vec![
        ("crds/configmirror.yaml", crd.clone()),
        ("helm/configmirror-operator/files/crd.yaml", crd),
        ("deploy/manifests/admission-policy.yaml", policy.clone()),
        (
            "helm/configmirror-operator/files/admission-policy.yaml",
            policy,
        ),
        ("deploy/manifests/aggregated-roles.yaml", roles.clone()),
        (
            "helm/configmirror-operator/files/aggregated-roles.yaml",
            roles,
        ),
        (
            "deploy/grafana/configmirror-dashboard.json",
            dashboard.clone(),
        ),
        ("helm/configmirror-operator/files/dashboard.json", dashboard),
        ("deploy/prometheus/configmirror-alerts.yaml", alerts.clone()),
        (
            "deploy/prometheus/tests/configmirror-alerts.test.yaml",
            alert_tests::yaml(),
        ),
        ("helm/configmirror-operator/files/alerts.yaml", alerts),
    ]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(root), None) = (args.next(), args.next()) else {
        bail!("{USAGE}");
    };
    if root == "--dashboard-rules" {
        print!("{}", dashboard::query_rules());
        return Ok(());
    }
    let root = Path::new(&root);
    for (path, content) in artefacts() {
        let file = root.join(path);
        // Unchanged files keep their mtime: crds/ is include_str!'d, and a
        // touched file would rebuild the crates that read it.
        if std::fs::read(&file).ok().as_deref() != Some(content.as_bytes()) {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&file, content)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        println!("{path}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository holds exactly what the generator writes (the same
    /// comparison `deploy/generate --check` makes, for `cargo test` alone).
    #[test]
    fn committed_files_are_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (path, content) in artefacts() {
            let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            assert!(committed == content, "{path} is stale: run deploy/generate");
        }
    }
}
