//! Metric names, in one place so the dashboard, the alerts and the tests
//! that check them agree. Labels are bounded: by result, op or shard,
//! never by mirror (per-mirror detail lives in status, events and logs).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

// Reference-compatible series.
pub const REST_CLIENT_REQUESTS: &str = "rest_client_requests_total";
pub const LEADER_ELECTION_MASTER_STATUS: &str = "leader_election_master_status";

pub const BUILD_INFO: &str = "configmirror_build_info";

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
pub const DB_ROWS_WRITTEN: &str = "configmirror_database_rows_written_total";
pub const DB_ERRORS: &str = "configmirror_database_errors_total";
pub const DB_WRITES_REFUSED: &str = "configmirror_database_writes_refused_total";
pub const WRITES_REFUSED_BY_DEADLINE: &str = "configmirror_writes_refused_by_deadline_total";
pub const DB_SYNC_DURATION: &str = "configmirror_database_sync_duration_seconds";
pub const DB_UP: &str = "configmirror_database_up";
pub const DB_MIRRORS_UNSYNCED: &str = "configmirror_database_unsynced_mirrors";
pub const DB_REVISIONS_PRUNED: &str = "configmirror_database_revisions_pruned_total";
pub const DB_ROWS_ORPHANED: &str = "configmirror_database_rows_orphaned_total";

pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
pub const LAG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// What kind of series a name is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A series: name, kind, labels, unit, help text.
pub type Description = (
    &'static str,
    Kind,
    &'static [&'static str],
    Option<Unit>,
    &'static str,
);

/// Every series with its kind, labels, unit and help text, as /metrics
/// describes it (and the README's table lists it).
pub const DESCRIPTIONS: &[Description] = &[
    (
        REST_CLIENT_REQUESTS,
        Kind::Counter,
        &["code", "method"],
        None,
        "Kubernetes API requests by response code and method",
    ),
    (
        LEADER_ELECTION_MASTER_STATUS,
        Kind::Gauge,
        &["name"],
        None,
        "1 while this process holds the leader Lease",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        &["version", "commit"],
        None,
        "1, labelled with the operator's version and the commit it was built from",
    ),
    (
        RECONCILE_TOTAL,
        Kind::Counter,
        &["result"],
        None,
        "Reconciles of ConfigMirrors by result",
    ),
    (
        REPLICA_CONTENT_READS,
        Kind::Counter,
        &["result"],
        None,
        "Replicas read whole (a change someone else made, or one whose content history start-up could not vouch for), by what they held",
    ),
    (
        RECONCILE_DURATION,
        Kind::Histogram,
        &["result"],
        Some(Unit::Seconds),
        "Reconcile duration by result",
    ),
    (
        REPLICA_WRITES,
        Kind::Counter,
        &["op", "result"],
        None,
        "Replica writes by op (create, update, replace, delete) and result",
    ),
    (
        REPLICATION_LAG,
        Kind::Histogram,
        &[],
        Some(Unit::Seconds),
        "From a source change seen to its replica written",
    ),
    (
        CONFLICTS_DETECTED,
        Kind::Counter,
        &[],
        None,
        "Replica names found held by a ConfigMap the mirror does not own",
    ),
    (
        REPLICA_CONFLICTS,
        Kind::Gauge,
        &[],
        None,
        "Replicas currently blocked by a conflict, over all mirrors",
    ),
    (
        MIRRORS,
        Kind::Gauge,
        &[],
        None,
        "ConfigMirrors this process reconciles",
    ),
    (
        MIRRORS_READY,
        Kind::Gauge,
        &[],
        None,
        "ConfigMirrors whose Ready condition is True",
    ),
    (
        SOURCE_WATCHES,
        Kind::Gauge,
        &[],
        None,
        "Source namespaces watched",
    ),
    (
        WATCH_EVENTS,
        Kind::Counter,
        &["watch", "event"],
        None,
        "Watch events by watch (namespaces, sources, replicas, mirrors, coordinator_mirrors, leader_lease) and event (init_apply: listed, apply, delete, error)",
    ),
    (
        WATCH_RELISTS,
        Kind::Counter,
        &["watch"],
        None,
        "Complete lists after a watch's first, by watch: the watch failed or its resourceVersion expired",
    ),
    (
        EVENTS_PUBLISHED,
        Kind::Counter,
        &["type"],
        None,
        "Kubernetes Events published by reason type",
    ),
    (
        DB_ROWS_WRITTEN,
        Kind::Counter,
        &["op"],
        None,
        "configmaps rows changed, by op (created, updated, deleted); each adds a revision",
    ),
    (
        DB_ERRORS,
        Kind::Counter,
        &["kind"],
        None,
        "Failed database syncs by kind (unreachable, timeout, auth, secret, migration, write, superseded, lease_expired)",
    ),
    (
        DB_WRITES_REFUSED,
        Kind::Counter,
        &[],
        None,
        "Row statements PostgreSQL refused because a newer assignment of the mirror had written its rows (a sharded member that lost the mirror)",
    ),
    (
        WRITES_REFUSED_BY_DEADLINE,
        Kind::Counter,
        &[],
        None,
        "ConfigMap and ConfigMirror writes the client did not send because this process's lease (Lease or member heartbeat) had run out by the time they left",
    ),
    (
        DB_ROWS_ORPHANED,
        Kind::Counter,
        &[],
        None,
        "Rows of deleted mirrors left in a database that could not be reached (see the RowsOrphaned event)",
    ),
    (
        DB_SYNC_DURATION,
        Kind::Histogram,
        &["result"],
        Some(Unit::Seconds),
        "Duration of a mirror's database sync by result",
    ),
    (
        DB_UP,
        Kind::Gauge,
        &[],
        None,
        "1 when the operator's default database answers, 0 when not",
    ),
    (
        DB_MIRRORS_UNSYNCED,
        Kind::Gauge,
        &[],
        None,
        "Mirrors whose rows could not be written (DatabaseSynced=False)",
    ),
    (
        DB_REVISIONS_PRUNED,
        Kind::Counter,
        &[],
        None,
        "Revisions deleted by the retention setting",
    ),
    (
        MEMBER_FENCED,
        Kind::Gauge,
        &[],
        None,
        "1 while this member cannot heartbeat and writes nothing",
    ),
    (
        FENCES,
        Kind::Counter,
        &[],
        None,
        "Times this member fenced itself",
    ),
    (
        MEMBER_VALID_UNTIL,
        Kind::Gauge,
        &[],
        Some(Unit::Seconds),
        "Unix time until which this member may write: its last successful heartbeat's start + TTL - margin",
    ),
    (
        HEARTBEAT_DURATION,
        Kind::Histogram,
        &[],
        Some(Unit::Seconds),
        "Round trip of one heartbeat to the coordination database (successful or not)",
    ),
    (
        HEARTBEAT_MAX_GAP,
        Kind::Gauge,
        &[],
        Some(Unit::Seconds),
        "Longest time between two successful heartbeats since this member started",
    ),
    (
        SHARD_OWNED,
        Kind::Gauge,
        &[],
        None,
        "ConfigMirrors this member owns",
    ),
    (
        SHARD_HANDOVERS,
        Kind::Counter,
        &[],
        None,
        "Mirrors this member handed over after draining",
    ),
    (
        HANDOVER_DURATION,
        Kind::Histogram,
        &[],
        Some(Unit::Seconds),
        "From a drain requested to the new owner told",
    ),
    (
        SHARD_MOVES,
        Kind::Counter,
        &["kind"],
        None,
        "Assignment changes by the coordinator, by kind (new, drain, failover, forced)",
    ),
    (
        SHARD_ORPHANED,
        Kind::Gauge,
        &[],
        None,
        "Mirrors with no live member to own them (coordinator)",
    ),
    (
        SHARD_MIRRORS,
        Kind::Gauge,
        &["member"],
        None,
        "Mirrors assigned per member (coordinator)",
    ),
    (
        COORDINATOR_EPOCH,
        Kind::Gauge,
        &[],
        None,
        "The epoch this coordinator writes under",
    ),
    (
        COORDINATOR_REFUSED,
        Kind::Counter,
        &[],
        None,
        "Coordinator writes refused because the epoch was stale",
    ),
    (
        COORDINATOR_STALE_PLANS,
        Kind::Counter,
        &[],
        None,
        "Planned assignment changes left for the next step: the row changed after the read (an acknowledgement, a heartbeat)",
    ),
];

pub fn describe() {
    for &(name, kind, _, unit, help) in DESCRIPTIONS {
        match (kind, unit) {
            (Kind::Counter, None) => describe_counter!(name, help),
            (Kind::Counter, Some(unit)) => describe_counter!(name, unit, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Kind::Histogram, None) => describe_histogram!(name, help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(name, unit, help),
        }
    }
}
