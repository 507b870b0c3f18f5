//! The few PromQL shapes the dashboard uses, so each panel names only its
//! metric and what it groups by. Every dashboard query is narrowed by the
//! dashboard's `namespace` and `pod` variables.

/// `metric{namespace=~"$namespace", pod=~"$pod"}`, plus `extra` matchers.
pub(crate) fn select(metric: &str, extra: &[&str]) -> String {
    let mut matchers = vec![r#"namespace=~"$namespace""#, r#"pod=~"$pod""#];
    matchers.extend_from_slice(extra);
    format!("{metric}{{{}}}", matchers.join(", "))
}

/// Per-second rate over Grafana's rate interval.
pub(crate) fn rate(metric: &str, extra: &[&str]) -> String {
    format!("rate({}[$__rate_interval])", select(metric, extra))
}

/// `sum by (label) (rate(...))`.
pub(crate) fn sum_rate_by(label: &str, metric: &str, extra: &[&str]) -> String {
    format!("sum by ({label}) ({})", rate(metric, extra))
}

/// `agg(selected metric)`, e.g. `max(...)`, `sum(...)`, `max by (pod) (...)`.
pub(crate) fn aggregate(agg: &str, metric: &str) -> String {
    let selected = select(metric, &[]);
    match agg.split_once(' ') {
        Some(_) => format!("{agg} ({selected})"),
        None => format!("{agg}({selected})"),
    }
}

/// `sum(increase(...[window]))`, or `sum by (label) (...)` with a label.
pub(crate) fn increase(by: Option<&str>, metric: &str, window: &str) -> String {
    let inner = format!("increase({}[{window}])", select(metric, &[]));
    match by {
        Some(label) => format!("sum by ({label}) ({inner})"),
        None => format!("sum({inner})"),
    }
}

/// The `quantile` (written as the query shows it, e.g. "0.99") of a
/// histogram, split by `by` when given. `histogram` is the base name: the
/// `_bucket` series is what the query reads.
pub(crate) fn quantile(quantile: &str, histogram: &str, by: Option<&str>) -> String {
    let labels = by.map_or_else(|| "le".to_string(), |by| format!("le, {by}"));
    format!(
        "histogram_quantile({quantile}, sum by ({labels}) ({}))",
        rate(&format!("{histogram}_bucket"), &[])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_read_as_written_by_hand() {
        assert_eq!(
            sum_rate_by("op", "w_total", &[r#"result="success""#]),
            r#"sum by (op) (rate(w_total{namespace=~"$namespace", pod=~"$pod", result="success"}[$__rate_interval]))"#
        );
        assert_eq!(
            aggregate("max by (pod)", "g"),
            r#"max by (pod) (g{namespace=~"$namespace", pod=~"$pod"})"#
        );
        assert_eq!(
            aggregate("min", "g"),
            r#"min(g{namespace=~"$namespace", pod=~"$pod"})"#
        );
        assert_eq!(
            quantile("0.5", "h_seconds", Some("result")),
            r#"histogram_quantile(0.5, sum by (le, result) (rate(h_seconds_bucket{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval])))"#
        );
    }
}
