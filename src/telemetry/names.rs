//! Metric names, in one place so the dashboard, the alerts and the tests
//! that check them agree. Labels are bounded: by result, op or shard,
//! never by mirror (per-mirror detail lives in status, events and logs).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

// Reference-compatible series.
pub const REST_CLIENT_REQUESTS: &str = "rest_client_requests_total";
pub const LEADER_ELECTION_MASTER_STATUS: &str = "leader_election_master_status";

pub const RECONCILE_TOTAL: &str = "configmirror_reconcile_total";
pub const RECONCILE_DURATION: &str = "configmirror_reconcile_duration_seconds";
pub const REPLICA_WRITES: &str = "configmirror_replica_writes_total";
pub const REPLICATION_LAG: &str = "configmirror_replication_lag_seconds";
pub const REPLICA_CONTENT_READS: &str = "configmirror_replica_content_reads_total";
pub const CONFLICTS_DETECTED: &str = "configmirror_conflicts_detected_total";
pub const REPLICA_CONFLICTS: &str = "configmirror_replica_conflicts";
pub const MIRRORS: &str = "configmirror_mirrors";
pub const MIRRORS_READY: &str = "configmirror_mirrors_ready";
pub const SOURCE_WATCHES: &str = "configmirror_source_namespaces_watched";
pub const WATCH_EVENTS: &str = "configmirror_watch_events_total";
pub const WATCH_RELISTS: &str = "configmirror_watch_relists_total";
pub const EVENTS_PUBLISHED: &str = "configmirror_events_published_total";
pub const MEMBER_FENCED: &str = "configmirror_member_fenced";
pub const FENCES: &str = "configmirror_member_fences_total";
pub const MEMBER_VALID_UNTIL: &str = "configmirror_member_valid_until_seconds";
pub const HEARTBEAT_DURATION: &str = "configmirror_member_heartbeat_duration_seconds";
pub const HEARTBEAT_MAX_GAP: &str = "configmirror_member_heartbeat_max_gap_seconds";
pub const SHARD_OWNED: &str = "configmirror_shard_owned_mirrors";
pub const SHARD_HANDOVERS: &str = "configmirror_shard_handovers_total";
pub const HANDOVER_DURATION: &str = "configmirror_shard_handover_duration_seconds";
pub const SHARD_MOVES: &str = "configmirror_shard_moves_total";
pub const SHARD_ORPHANED: &str = "configmirror_shard_orphaned_mirrors";
pub const SHARD_MIRRORS: &str = "configmirror_shard_mirrors";
pub const COORDINATOR_EPOCH: &str = "configmirror_coordinator_epoch";
pub const COORDINATOR_REFUSED: &str = "configmirror_coordinator_writes_refused_total";
pub const COORDINATOR_STALE_PLANS: &str = "configmirror_coordinator_stale_plans_total";
pub const DB_ROWS_WRITTEN: &str = "configmirror_db_rows_written_total";
pub const DB_ERRORS: &str = "configmirror_db_errors_total";
pub const DB_WRITES_REFUSED: &str = "configmirror_db_writes_refused_total";
pub const WRITES_REFUSED_BY_DEADLINE: &str = "configmirror_writes_refused_by_deadline_total";
pub const DB_SYNC_DURATION: &str = "configmirror_db_sync_duration_seconds";
pub const DB_UP: &str = "configmirror_database_up";
pub const DB_MIRRORS_UNSYNCED: &str = "configmirror_mirrors_database_unsynced";
pub const DB_REVISIONS_PRUNED: &str = "configmirror_db_revisions_pruned_total";
pub const DB_ROWS_ORPHANED: &str = "configmirror_rows_orphaned_total";

pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
pub const LAG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

pub fn describe() {
    describe_counter!(
        REST_CLIENT_REQUESTS,
        "Kubernetes API requests by response code and method"
    );
    describe_gauge!(
        LEADER_ELECTION_MASTER_STATUS,
        "1 while this process holds the leader Lease"
    );
    describe_counter!(RECONCILE_TOTAL, "Reconciles of ConfigMirrors by result");
    describe_counter!(
        REPLICA_CONTENT_READS,
        "Replicas read whole (a change someone else made, or one whose content history start-up could not vouch for), by what they held"
    );
    describe_histogram!(
        RECONCILE_DURATION,
        Unit::Seconds,
        "Reconcile duration by result"
    );
    describe_counter!(
        REPLICA_WRITES,
        "Replica writes by op (create, update, replace, delete) and result"
    );
    describe_histogram!(
        REPLICATION_LAG,
        Unit::Seconds,
        "From a source change seen to its replica written"
    );
    describe_counter!(
        CONFLICTS_DETECTED,
        "Replica names found held by a ConfigMap the mirror does not own"
    );
    describe_gauge!(
        REPLICA_CONFLICTS,
        "Replicas currently blocked by a conflict, over all mirrors"
    );
    describe_gauge!(MIRRORS, "ConfigMirrors this process reconciles");
    describe_gauge!(MIRRORS_READY, "ConfigMirrors whose Ready condition is True");
    describe_gauge!(SOURCE_WATCHES, "Source namespaces watched");
    describe_counter!(
        WATCH_EVENTS,
        "Watch events by watch (namespaces, sources, replicas, mirrors, coordinator_mirrors, leader_lease) and event (init_apply: listed, apply, delete, error)"
    );
    describe_counter!(
        WATCH_RELISTS,
        "Complete lists after a watch's first, by watch: the watch failed or its resourceVersion expired"
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        "Kubernetes Events published by reason type"
    );
    describe_counter!(
        DB_ROWS_WRITTEN,
        "configmaps rows changed, by op (created, updated, deleted); each adds a revision"
    );
    describe_counter!(
        DB_ERRORS,
        "Failed database syncs by kind (unreachable, timeout, auth, secret, migration, write, superseded, lease_expired)"
    );
    describe_counter!(
        DB_WRITES_REFUSED,
        "Row statements PostgreSQL refused because a newer assignment of the mirror had written its rows (a sharded member that lost the mirror)"
    );
    describe_counter!(
        WRITES_REFUSED_BY_DEADLINE,
        "ConfigMap and ConfigMirror writes the client did not send because this process's lease (Lease or member heartbeat) had run out by the time they left"
    );
    describe_counter!(
        DB_ROWS_ORPHANED,
        "Rows of deleted mirrors left in a database that could not be reached (see the RowsOrphaned event)"
    );
    describe_histogram!(
        DB_SYNC_DURATION,
        Unit::Seconds,
        "Duration of a mirror's database sync by result"
    );
    describe_gauge!(
        DB_UP,
        "1 when the operator's default database answers, 0 when not"
    );
    describe_gauge!(
        DB_MIRRORS_UNSYNCED,
        "Mirrors whose rows could not be written (DatabaseSynced=False)"
    );
    describe_counter!(
        DB_REVISIONS_PRUNED,
        "Revisions deleted by the retention setting"
    );
    describe_gauge!(
        MEMBER_FENCED,
        "1 while this member cannot heartbeat and writes nothing"
    );
    describe_counter!(FENCES, "Times this member fenced itself");
    describe_gauge!(
        MEMBER_VALID_UNTIL,
        Unit::Seconds,
        "Unix time until which this member may write: its last successful heartbeat's start + TTL - margin"
    );
    describe_histogram!(
        HEARTBEAT_DURATION,
        Unit::Seconds,
        "Round trip of one heartbeat to the coordination database (successful or not)"
    );
    describe_gauge!(SHARD_OWNED, "ConfigMirrors this member owns");
    describe_counter!(
        SHARD_HANDOVERS,
        "Mirrors this member handed over after draining"
    );
    describe_histogram!(
        HANDOVER_DURATION,
        Unit::Seconds,
        "From a drain requested to the new owner told"
    );
    describe_counter!(
        SHARD_MOVES,
        "Assignment changes by the coordinator, by kind (new, drain, failover, forced)"
    );
    describe_gauge!(
        SHARD_ORPHANED,
        "Mirrors with no live member to own them (coordinator)"
    );
    describe_gauge!(SHARD_MIRRORS, "Mirrors assigned per member (coordinator)");
    describe_gauge!(COORDINATOR_EPOCH, "The epoch this coordinator writes under");
    describe_counter!(
        COORDINATOR_REFUSED,
        "Coordinator writes refused because the epoch was stale"
    );
    describe_counter!(
        COORDINATOR_STALE_PLANS,
        "Planned assignment changes left for the next step: the row changed after the read (an acknowledgement, a heartbeat)"
    )
}

/// Creates every series with a known, finite label set at zero, so
/// dashboards and alerts see them (and rates start) before the first event.
pub fn initialize() {
    for op in ["create", "update", "replace", "delete"] {
        for result in ["success", "conflict", "stale", "skipped", "error"] {
            metrics::counter!(REPLICA_WRITES, "op" => op, "result" => result).increment(0);
        }
    }
    metrics::counter!(RECONCILE_TOTAL, "result" => "success").increment(0);
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
    for kind in [
        "no_database",
        "secret",
        "auth",
        "unreachable",
        "migration",
        "write",
        "timeout",
        "superseded",
        "lease_expired",
    ] {
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
