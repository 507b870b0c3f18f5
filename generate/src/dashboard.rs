//! The Grafana dashboard's JSON model: its fixed frame (variables, time,
//! tags) and the layout that turns sections of graphs into panels with ids
//! and grid positions. What the panels show is in `panels`.
//!
//! Structs rather than `json!`: serde_json (without `preserve_order`, which
//! would change the operator's own JSON too) sorts a `Value`'s keys, and the
//! file keeps Grafana's order.

use serde::Serialize;

use crate::panels;
use configmirror::telemetry::names;

/// A titled row of graphs.
pub(crate) struct Section {
    pub title: &'static str,
    pub graphs: Vec<Graph>,
}

/// One time-series panel: what it shows, before layout.
pub(crate) struct Graph {
    title: &'static str,
    unit: &'static str,
    description: &'static str,
    queries: Vec<(String, &'static str)>,
}

impl Graph {
    pub(crate) fn new(title: &'static str, unit: &'static str) -> Self {
        Self {
            title,
            unit,
            description: "",
            queries: Vec::new(),
        }
    }

    pub(crate) fn about(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Adds a query and its legend; queries get ref ids A, B, C... in order.
    pub(crate) fn query(mut self, expr: String, legend: &'static str) -> Self {
        self.queries.push((expr, legend));
        self
    }
}

const PANELS_PER_LINE: u32 = 3;
const GRAPH_WIDTH: u32 = 8;
const GRAPH_HEIGHT: u32 = 8;
const FULL_WIDTH: u32 = 24;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dashboard {
    title: &'static str,
    uid: &'static str,
    schema_version: u32,
    version: u32,
    editable: bool,
    tags: [&'static str; 2],
    time: TimeRange,
    refresh: &'static str,
    templating: Templating,
    panels: Vec<Panel>,
}

#[derive(Serialize)]
struct TimeRange {
    from: &'static str,
    to: &'static str,
}

#[derive(Serialize)]
struct Templating {
    list: Vec<Variable>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Variable {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    datasource: Option<Datasource>,
    query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    include_all: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    all_value: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi: Option<bool>,
    label: &'static str,
}

#[derive(Serialize, Clone, Copy)]
struct Datasource {
    #[serde(rename = "type")]
    kind: &'static str,
    uid: &'static str,
}

/// The dashboard's own data source variable.
const PROMETHEUS: Datasource = Datasource {
    kind: "prometheus",
    uid: "${datasource}",
};

#[derive(Serialize)]
#[serde(untagged)]
enum Panel {
    Row(Row),
    Graph(Box<TimeSeries>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    id: u32,
    collapsed: bool,
    grid_pos: GridPos,
    panels: [(); 0],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TimeSeries {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    id: u32,
    description: &'static str,
    datasource: Datasource,
    grid_pos: GridPos,
    field_config: serde_json::Value,
    options: serde_json::Value,
    targets: Vec<Target>,
}

#[derive(Serialize)]
struct GridPos {
    h: u32,
    w: u32,
    x: u32,
    y: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    ref_id: String,
    expr: String,
    legend_format: &'static str,
    datasource: Datasource,
}

/// The dashboard as the file holds it: pretty JSON, ending in a newline.
pub(crate) fn json() -> String {
    let dashboard = Dashboard {
        title: "ConfigMirror",
        uid: "configmirror",
        schema_version: 39,
        version: 1,
        editable: true,
        tags: ["configmirror", "kubernetes"],
        time: TimeRange {
            from: "now-1h",
            to: "now",
        },
        refresh: "30s",
        templating: Templating { list: variables() },
        panels: layout(panels::sections()),
    };
    let mut json = serde_json::to_string_pretty(&dashboard).expect("the dashboard serializes");
    json.push('\n');
    json
}

/// Data source, then namespace and pod (replica) pickers: every query is
/// narrowed by the last two.
fn variables() -> Vec<Variable> {
    let picker = |name, query, label| Variable {
        name,
        kind: "query",
        datasource: Some(PROMETHEUS),
        query,
        include_all: Some(true),
        all_value: Some(".*"),
        multi: Some(true),
        label,
    };
    vec![
        Variable {
            name: "datasource",
            kind: "datasource",
            datasource: None,
            query: "prometheus".into(),
            include_all: None,
            all_value: None,
            multi: None,
            label: "Data source",
        },
        picker(
            "namespace",
            format!("label_values({}, namespace)", names::MIRRORS),
            "Namespace",
        ),
        picker(
            "pod",
            format!(
                "label_values({}{{namespace=~\"$namespace\"}}, pod)",
                names::MIRRORS
            ),
            "Replica",
        ),
    ]
}

/// Each section is a full-width row followed by its graphs, three to a line;
/// ids count every panel, rows included, from 1.
fn layout(sections: Vec<Section>) -> Vec<Panel> {
    let mut panels = Vec::new();
    let mut y = 0;
    for section in sections {
        let id = next_id(&panels);
        panels.push(Panel::Row(Row {
            kind: "row",
            title: section.title,
            id,
            collapsed: false,
            grid_pos: GridPos {
                h: 1,
                w: FULL_WIDTH,
                x: 0,
                y,
            },
            panels: [],
        }));
        y += 1;
        let count = u32::try_from(section.graphs.len()).expect("few graphs");
        for (i, graph) in (0u32..).zip(section.graphs) {
            let grid_pos = GridPos {
                h: GRAPH_HEIGHT,
                w: GRAPH_WIDTH,
                x: (i % PANELS_PER_LINE) * GRAPH_WIDTH,
                y: y + (i / PANELS_PER_LINE) * GRAPH_HEIGHT,
            };
            let id = next_id(&panels);
            panels.push(Panel::Graph(Box::new(time_series(graph, id, grid_pos))));
        }
        y += count.div_ceil(PANELS_PER_LINE) * GRAPH_HEIGHT;
    }
    panels
}

fn next_id(panels: &[Panel]) -> u32 {
    u32::try_from(panels.len()).expect("few panels") + 1
}

fn time_series(graph: Graph, id: u32, grid_pos: GridPos) -> TimeSeries {
    let targets = (b'A'..)
        .zip(graph.queries)
        .map(|(ref_id, (expr, legend_format))| Target {
            ref_id: char::from(ref_id).to_string(),
            expr,
            legend_format,
            datasource: PROMETHEUS,
        })
        .collect();
    TimeSeries {
        kind: "timeseries",
        title: graph.title,
        id,
        description: graph.description,
        datasource: PROMETHEUS,
        grid_pos,
        // These keys are in alphabetical order already, so `json!` keeps it.
        field_config: serde_json::json!({ "defaults": { "unit": graph.unit }, "overrides": [] }),
        options: serde_json::json!({
            "legend": { "displayMode": "list", "placement": "bottom" },
            "tooltip": { "mode": "multi" }
        }),
        targets,
    }
}

/// Grafana's variables as PromQL can read them: any namespace and pod, a
/// five-minute rate window.
const VARIABLES: [(&str, &str); 3] = [
    ("$namespace", ".*"),
    ("$pod", ".*"),
    ("$__rate_interval", "5m"),
];

/// Every panel query as a recording rule, variables substituted, so that
/// `promtool check rules` parses each one as PromQL.
pub(crate) fn query_rules() -> String {
    let dashboard: serde_json::Value = serde_json::from_str(&json()).expect("the dashboard parses");
    let mut out = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    for (i, expr) in queries(&dashboard).into_iter().enumerate() {
        let expr = VARIABLES
            .iter()
            .fold(expr, |e, (variable, value)| e.replace(variable, value));
        let expr = serde_json::to_string(&expr).expect("a string serializes");
        out += &format!("      - record: dashboard:query_{i}\n        expr: {expr}\n");
    }
    out
}

/// Every query of every panel.
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    graphs(dashboard)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("a query").to_string())
        .collect()
}

/// The panels that are graphs (not rows).
fn graphs(dashboard: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dashboard() -> serde_json::Value {
        serde_json::from_str(&json()).unwrap()
    }

    /// A panel without a unit shows bare numbers; one without a description
    /// leaves its reader to guess what is counted.
    #[test]
    fn every_panel_has_a_unit_a_description_and_a_query() {
        let dashboard = dashboard();
        let mut checked = 0;
        for panel in graphs(&dashboard) {
            let title = &panel["title"];
            let unit = panel["fieldConfig"]["defaults"]["unit"].as_str();
            assert!(unit.is_some_and(|u| !u.is_empty()), "{title}: no unit");
            let description = panel["description"].as_str().unwrap_or_default();
            assert!(description.len() > 10, "{title}: no description");
            assert!(
                !panel["targets"].as_array().unwrap().is_empty(),
                "{title}: no query"
            );
            checked += 1;
        }
        assert!(checked > 20, "only {checked} panels");
    }

    /// What promtool parses has no Grafana variable left.
    #[test]
    fn query_rules_substitute_every_variable() {
        let rules = query_rules();
        assert!(!rules.contains('$'), "{rules}");
        assert_eq!(
            rules.matches("record:").count(),
            queries(&dashboard()).len()
        );
    }
}
