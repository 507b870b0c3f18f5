//! names.rs is the catalogue: every name it declares is described, and the
//! README's Observability table is exactly that catalogue.

use std::path::Path;

use super::names::{DESCRIPTIONS, Kind};

fn repo_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The string values of names.rs's `pub const X: &str = "...";` lines.
fn declared_names() -> Vec<String> {
    repo_file("src/telemetry/names.rs")
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("pub const ")?;
            let (_, value) = rest.split_once(": &str = \"")?;
            Some(value.strip_suffix("\";")?.to_string())
        })
        .collect()
}

/// The README table's rows, one per series, in catalogue order.
pub(crate) fn readme_table() -> String {
    let mut table =
        String::from("| Series | Type | Labels | Meaning |\n| --- | --- | --- | --- |\n");
    for &(name, kind, labels, _, help) in DESCRIPTIONS {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let labels: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
        table += &format!("| `{name}` | {kind} | {} | {help} |\n", labels.join(", "));
    }
    table
}

#[test]
fn every_declared_name_is_described_once() {
    let declared = declared_names();
    assert!(declared.len() > 30, "names.rs parsed badly: {declared:?}");
    for name in &declared {
        let n = DESCRIPTIONS.iter().filter(|d| d.0 == name).count();
        assert_eq!(n, 1, "{name} is described {n} times");
    }
    assert_eq!(
        DESCRIPTIONS.len(),
        declared.len(),
        "a description without a name"
    );
}

#[test]
fn names_follow_prometheus_conventions() {
    for &(name, kind, _, unit, _) in DESCRIPTIONS {
        assert_eq!(
            kind == Kind::Counter,
            name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        if unit == Some(metrics::Unit::Seconds) {
            assert!(name.ends_with("_seconds"), "{name}: unit seconds");
        }
        if let Some(rest) = name.strip_prefix("configmirror_") {
            // One prefix per subsystem: the database's series all start so.
            let database = ["db_", "rows_", "mirrors_database"];
            assert!(
                !database.iter().any(|p| rest.starts_with(p)),
                "{name}: the database's series start configmirror_database_"
            );
        }
    }
}

#[test]
fn the_readme_lists_every_series_with_its_labels() {
    let readme = repo_file("README.md");
    let table = readme_table();
    let section = readme
        .split("\n## Observability\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has an Observability section");
    assert!(
        section.contains(&table),
        "README.md's Observability section must hold this table, as is:\n\n{table}"
    );
}
