//! What the dashboard shows, section by section: each graph's title, unit,
//! description and queries, written with the operator's metric-name
//! constants so a renamed metric cannot leave the dashboard behind. Order
//! is layout order (three graphs to a line).

use crate::dashboard::{Graph, Section};
use crate::promql::{aggregate, increase, quantile, rate, sum_rate_by};
use configmirror::telemetry::names::*;

/// Exposed by metrics-process (the process collector), not named by the
/// operator itself.
const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";

pub(crate) fn sections() -> Vec<Section> {
    vec![
        Section {
            title: "Replication",
            graphs: replication(),
        },
        Section {
            title: "Database",
            graphs: database(),
        },
        Section {
            title: "Sharding",
            graphs: sharding(),
        },
        Section {
            title: "Process",
            graphs: process(),
        },
    ]
}

fn replication() -> Vec<Graph> {
    vec![
        Graph::new("Replica writes by op", "wps")
            .about("Accepted replica writes per second. At rest this is 0.")
            .query(
                sum_rate_by("op", REPLICA_WRITES, &[r#"result="success""#]),
                "{{op}}",
            ),
        Graph::new("Replica write results", "wps")
            .about("success, conflict (a name held by someone else), stale (a precondition failed: retried), skipped, error.")
            .query(sum_rate_by("result", REPLICA_WRITES, &[]), "{{result}}"),
        Graph::new("Replication lag", "s")
            .about("From a source change seen by the operator to its replica written.")
            .query(quantile("0.5", REPLICATION_LAG, None), "p50")
            .query(quantile("0.99", REPLICATION_LAG, None), "p99"),
        Graph::new("Reconciles by result", "ops")
            .about("Reconciles per second by result: success, or what failed (kube, sync_failed, ...); failed ones are retried with backoff.")
            .query(sum_rate_by("result", RECONCILE_TOTAL, &[]), "{{result}}"),
        Graph::new("Reconcile duration p99", "s")
            .about("99th percentile of one reconcile's duration, by result.")
            .query(
            quantile("0.99", RECONCILE_DURATION, Some("result")),
            "{{result}}",
        ),
        Graph::new("Conflicts", "short")
            .about("Replicas blocked by ConfigMaps the operator does not own; each mirror's status.problems names them.")
            .query(aggregate("max", REPLICA_CONFLICTS), "blocked replicas")
            .query(
                increase(None, CONFLICTS_DETECTED, "1h"),
                "detected in the last hour",
            ),
        Graph::new("Mirrors", "short")
            .about("ConfigMirrors reconciled by the selected replicas, and how many of them are Ready.")
            .query(aggregate("sum", MIRRORS), "reconciled")
            .query(aggregate("sum", MIRRORS_READY), "Ready"),
        Graph::new("Source namespaces watched", "short")
            .about("Namespaces whose ConfigMaps the operator watches as sources.")
            .query(aggregate("sum", SOURCE_WATCHES), "namespaces"),
        Graph::new("Events published", "ops")
            .about("Kubernetes Events the operator publishes on mirrors, by type (Normal, Warning).")
            .query(sum_rate_by("type", EVENTS_PUBLISHED, &[]), "{{type}}"),
    ]
}

fn database() -> Vec<Graph> {
    vec![
        Graph::new("Rows written by op", "wps")
            .about("Each changed row also appends one revision.")
            .query(sum_rate_by("op", DB_ROWS_WRITTEN, &[]), "{{op}}"),
        Graph::new("Database errors by kind", "ops")
            .about("Failed database syncs per second: unreachable, timeout, auth, secret, migration, write, superseded, lease_expired, ...")
            .query(sum_rate_by("kind", DB_ERRORS, &[]), "{{kind}}"),
        Graph::new("Database sync duration p99", "s")
            .about("99th percentile of one mirror's database sync, by result (changed, unchanged, error).")
            .query(
            quantile("0.99", DB_SYNC_DURATION, Some("result")),
            "{{result}}",
        ),
        Graph::new("Database up / mirrors behind", "short")
            .about("1 while the operator's default database answers; mirrors whose rows could not be written (DatabaseSynced=False).")
            .query(aggregate("min", DB_UP), "database up")
            .query(
                aggregate("max", DB_MIRRORS_UNSYNCED),
                "mirrors with rows behind",
            ),
        Graph::new("Revisions pruned", "short")
            .about("Revisions deleted by the retention setting in the last hour.")
            .query(increase(None, DB_REVISIONS_PRUNED, "1h"), "last hour"),
    ]
}

fn sharding() -> Vec<Graph> {
    vec![
        Graph::new("Mirrors per member", "short")
            .about("As the coordinator assigns them (consistent hashing, capped at 1.05 x the mean).")
            .query(aggregate("max by (member)", SHARD_MIRRORS), "{{member}}"),
        Graph::new("Owned mirrors per replica", "short")
            .about("What each member reconciles right now.")
            .query(aggregate("max by (pod)", SHARD_OWNED), "{{pod}}"),
        Graph::new("Assignment moves", "short")
            .about("new, drain (handover from a live member), failover (from a dead one), forced (a drain not acknowledged in time).")
            .query(increase(Some("kind"), SHARD_MOVES, "5m"), "{{kind}}"),
        Graph::new("Handover duration", "s")
            .about("From a drain requested to the new owner told.")
            .query(quantile("0.5", HANDOVER_DURATION, None), "p50")
            .query(quantile("0.99", HANDOVER_DURATION, None), "p99"),
        Graph::new("Orphaned mirrors", "short")
            .about("Mirrors no live member owns: replication for them is paused.")
            .query(aggregate("max", SHARD_ORPHANED), "orphaned"),
        Graph::new("Fenced members / coordinator epoch", "short")
            .about("Members that cannot heartbeat and write nothing; the coordinator's epoch (it rises with each new coordinator); coordinator writes refused as stale.")
            .query(aggregate("sum", MEMBER_FENCED), "fenced members")
            .query(aggregate("max", COORDINATOR_EPOCH), "coordinator epoch")
            .query(
                increase(None, COORDINATOR_REFUSED, "5m"),
                "refused coordinator writes",
            ),
        Graph::new("Heartbeat round trip p99", "s")
            .about("A member fences itself after TTL - margin (3 s by default) without a successful heartbeat; a p99 approaching that means false fences.")
            .query(quantile("0.99", HEARTBEAT_DURATION, Some("pod")), "{{pod}}"),
    ]
}

fn process() -> Vec<Graph> {
    vec![
        Graph::new("API requests by code", "reqps")
            .about("Kubernetes API requests per second by response code.")
            .query(sum_rate_by("code", REST_CLIENT_REQUESTS, &[]), "{{code}}"),
        Graph::new("Leader", "short")
            .about("1 for the replica holding the leader Lease.")
            .query(
                aggregate("max by (pod)", LEADER_ELECTION_MASTER_STATUS),
                "{{pod}}",
            ),
        Graph::new("Resident memory", "bytes")
            .about("Resident set size of each replica's process.")
            .query(
                crate::promql::select(PROCESS_RESIDENT_MEMORY, &[]),
                "{{pod}}",
            ),
        Graph::new("CPU", "percentunit")
            .about("CPU time each replica's process uses, as a share of one core.")
            .query(rate(PROCESS_CPU_SECONDS, &[]), "{{pod}}"),
    ]
}
