//! The series /metrics shows from the start, before any event: dashboards
//! and alerts then read 0 rather than "No data", and rates start at the
//! first scrape. Only series with a known, finite label set are created
//! here; per-member series appear with their member.

use super::names::*;

/// Every mode's series. Histograms too: a registered histogram is rendered
/// with zero counts in every bucket (the exporter drains each registered
/// handle into a distribution whether or not it holds samples).
pub fn initialize() {
    metrics::gauge!(BUILD_INFO, "version" => crate::VERSION, "commit" => crate::COMMIT).set(1.0);
    for op in ["create", "update", "replace", "delete"] {
        for result in ["success", "conflict", "stale", "skipped", "error"] {
            metrics::counter!(REPLICA_WRITES, "op" => op, "result" => result).increment(0);
        }
    }
    metrics::counter!(RECONCILE_TOTAL, "result" => "success").increment(0);
    register(metrics::histogram!(RECONCILE_DURATION, "result" => "success"));
    register(metrics::histogram!(REPLICATION_LAG));
    // The labels persistence/job.rs records under.
    for result in ["changed", "unchanged", "error"] {
        register(metrics::histogram!(DB_SYNC_DURATION, "result" => result));
    }
    for result in ["in_sync", "drifted", "gone"] {
        metrics::counter!(REPLICA_CONTENT_READS, "result" => result).increment(0);
    }
    metrics::counter!(CONFLICTS_DETECTED).increment(0);
    for kind in ["normal", "warning"] {
        metrics::counter!(EVENTS_PUBLISHED, "type" => kind).increment(0);
    }
    for op in ["created", "updated", "deleted"] {
        metrics::counter!(DB_ROWS_WRITTEN, "op" => op).increment(0);
    }
    metrics::counter!(DB_ROWS_ORPHANED).increment(0);
    for watch in crate::watches::Watch::ALL.map(crate::watches::Watch::label) {
        for event in crate::watches::EVENT_KINDS {
            metrics::counter!(WATCH_EVENTS, "watch" => watch, "event" => event).increment(0);
        }
        metrics::counter!(WATCH_RELISTS, "watch" => watch).increment(0);
    }
    for &kind in crate::store::Error::METRIC_LABELS {
        metrics::counter!(DB_ERRORS, "kind" => kind).increment(0);
    }
    metrics::counter!(DB_WRITES_REFUSED).increment(0);
    metrics::counter!(WRITES_REFUSED_BY_DEADLINE).increment(0);
    metrics::counter!(DB_REVISIONS_PRUNED).increment(0);
    metrics::counter!(FENCES).increment(0);
    metrics::counter!(SHARD_HANDOVERS).increment(0);
    metrics::counter!(COORDINATOR_REFUSED).increment(0);
    metrics::counter!(COORDINATOR_STALE_PLANS).increment(0);
    for kind in ["new", "drain", "failover", "forced"] {
        metrics::counter!(SHARD_MOVES, "kind" => kind).increment(0);
    }
    for gauge in [
        REPLICA_CONFLICTS,
        MIRRORS,
        MIRRORS_READY,
        SOURCE_WATCHES,
        DB_MIRRORS_UNSYNCED,
    ] {
        metrics::gauge!(gauge).set(0.0);
    }
}

/// What a sharded member exports besides: its own membership, and the
/// coordinator's gauges at 0 until it coordinates (`shard::coordinator`
/// sets them back to 0 when it stops).
pub fn initialize_sharding() {
    register(metrics::histogram!(HEARTBEAT_DURATION));
    register(metrics::histogram!(HANDOVER_DURATION));
    for gauge in [
        MEMBER_FENCED,
        SHARD_OWNED,
        HEARTBEAT_MAX_GAP,
        SHARD_ORPHANED,
        COORDINATOR_EPOCH,
    ] {
        metrics::gauge!(gauge).set(0.0);
    }
}

/// Registering a histogram is what exports it; no sample is recorded.
fn register(_histogram: metrics::Histogram) {}
