//! The gauges only the coordinator sets: orphaned mirrors, its epoch and
//! mirrors per member. Every member runs for coordinator, so each process
//! exports them; only the one coordinating may show anything but 0, or a
//! former coordinator's last orphan count would keep the orphans alert
//! firing (and `max by (member)` would mix two coordinators' views).

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::telemetry::names;

/// The `member` label values this process has exported mirrors for.
static MEMBERS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// One step's view: orphans, and mirrors per member for every member read.
/// A member no longer read (pruned after leaving) drops to 0.
pub(super) fn publish<'a>(orphaned: usize, per_member: impl Iterator<Item = (&'a str, usize)>) {
    metrics::gauge!(names::SHARD_ORPHANED).set(orphaned as f64);
    let mut exported = MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = BTreeSet::new();
    for (member, n) in per_member {
        metrics::gauge!(names::SHARD_MIRRORS, "member" => member.to_string()).set(n as f64);
        seen.insert(member.to_string());
    }
    for gone in exported.difference(&seen) {
        metrics::gauge!(names::SHARD_MIRRORS, "member" => gone.clone()).set(0.0);
    }
    exported.extend(seen);
}

/// Sets every coordinator gauge back to 0 when dropped: when `lead` ends,
/// the Lease lost or the task stopped.
pub(super) struct Withdraw;

impl Drop for Withdraw {
    fn drop(&mut self) {
        metrics::gauge!(names::SHARD_ORPHANED).set(0.0);
        metrics::gauge!(names::COORDINATOR_EPOCH).set(0.0);
        let exported = MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
        for member in exported.iter() {
            metrics::gauge!(names::SHARD_MIRRORS, "member" => member.clone()).set(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_coordinator_that_stops_leaves_only_zeros() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let orphaned = names::SHARD_ORPHANED;
        let epoch = names::COORDINATOR_EPOCH;
        let mirrors = |m: &str| format!("{}{{member=\"{m}\"}}", names::SHARD_MIRRORS);
        metrics::with_local_recorder(&recorder, || {
            let lead = Withdraw;
            metrics::gauge!(epoch).set(7.0);
            publish(3, [("gauges-a", 5), ("gauges-b", 2)].into_iter());
            // gauges-b is pruned: its series stays, at 0.
            publish(4, [("gauges-a", 6)].into_iter());
            let text = handle.render();
            assert_eq!(value(&text, orphaned), Some(4.0), "{text}");
            assert_eq!(value(&text, epoch), Some(7.0), "{text}");
            assert_eq!(value(&text, &mirrors("gauges-a")), Some(6.0), "{text}");
            assert_eq!(value(&text, &mirrors("gauges-b")), Some(0.0), "{text}");
            drop(lead);
        });
        let text = handle.render();
        assert_eq!(value(&text, orphaned), Some(0.0), "{text}");
        assert_eq!(value(&text, epoch), Some(0.0), "{text}");
        assert_eq!(value(&text, &mirrors("gauges-a")), Some(0.0), "{text}");
        assert_eq!(value(&text, &mirrors("gauges-b")), Some(0.0), "{text}");
    }
}
