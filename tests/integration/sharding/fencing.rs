//! A member that lost its lease or its mirror writes nothing more: no
//! replica, no status, no row. Faults as they happen: a silent partition of
//! the member's database connection (also one that begins just after a
//! heartbeat statement went out), a frozen process (SIGSTOP) in the middle
//! of its reconciles, a drain while the mirror's reconciles are running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{SETTLE, bump_sources};
use crate::leader::IN_THE_PIPE;
use crate::support::audit::{AuditCursor, summary};
use crate::support::db::TestDatabase;
use crate::support::k8s::*;
use crate::support::proxy::SilentProxy;
use crate::support::scenario::Scenario;
use crate::support::shard::{
    Shards, Writes, assert_writes_within_ownership, mirrors, ownership_intervals, replicated,
};
use crate::support::{eventually, wall_now};

const MIRRORS: usize = 20;

/// The UID of mirror `m{i:04}` (replicas and mirrors share that name).
fn object_uid<'a>(uids: &'a [String], name: &str) -> &'a String {
    let i: usize = name.trim_start_matches('m').parse().expect("m{i:04}");
    &uids[i]
}

/// The sources of the first `n` mirrors change every 300 ms until stopped.
struct Churn {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Churn {
    fn start(s: &Scenario, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, client, source) = (stop.clone(), s.client.clone(), s.source.name.clone());
        let task = tokio::spawn(async move {
            let mut v = 1;
            while !flag.load(Ordering::Relaxed) {
                v += 1;
                for i in 0..n {
                    let patch = serde_json::json!({"data": {"v": format!("u{v}")}});
                    patch_cm(&client, &source, &format!("m{i:04}"), patch).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Self { stop, task }
    }

    /// Stops changing, then sets every source to `v` and waits for the
    /// replicas to follow.
    async fn finish(self, s: &Scenario, n: usize, v: &str) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        bump_sources(s, n, v).await;
        replicated(s, n, v, Duration::from_secs(60)).await;
    }
}

/// Starts "a" and waits until it coordinates (so it stays the coordinator
/// while the tests cut other members off).
async fn coordinator_a(shards: &mut Shards, s: &Scenario) {
    shards.start(s, "a").await;
    eventually("a to coordinate", SETTLE, || async {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM coordinator_epochs WHERE id = 1")
                .fetch_optional(&shards.pool)
                .await
                .ok()
                .flatten();
        (holder.as_deref() == Some("a")).then_some(())
    })
    .await;
}

/// After the episode: every mirror's rows hold `v`, and still do once late
/// statements had time to land (they would make rows older).
async fn rows_stay_at(db: &TestDatabase, s: &Scenario, n: usize, v: &str) {
    let pool = db.pool().await;
    let all_at = || async {
        for i in 0..n {
            let name = format!("m{i:04}");
            let found = crate::support::db::rows(&pool, &s.home.name, &name).await;
            if found.is_empty() || found.iter().any(|r| r.data["v"] != v) {
                return Err(format!(
                    "{name}: rows {:?}",
                    found.iter().map(|r| &r.data).collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    };
    eventually(&format!("every mirror's rows at {v}"), WAIT, || async {
        all_at().await.ok()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Err(stale) = all_at().await {
        panic!("a late write made rows stale: {stale}");
    }
}

/// How a member's database connection is cut.
#[derive(Clone, Copy, Debug)]
enum Partition {
    /// At whatever moment: connections stay open, nothing passes.
    Silent,
    /// Just after a heartbeat statement went out: the database records the
    /// heartbeat, the member never learns it did.
    AfterHeartbeatSent,
}

/// "a" (the coordinator) reaches the database directly, "b" through a proxy
/// that can fall silent; MIRRORS mirrors whose sources change every 300 ms.
struct Cut {
    db: TestDatabase,
    proxy: SilentProxy,
    s: Scenario,
    shards: Shards,
    uids: Vec<String>,
}

struct Measured {
    fenced: f64,
    moved: f64,
}

impl Cut {
    async fn new(prefix: &str) -> Self {
        let db = TestDatabase::create().await;
        let parts = db.parts();
        let direct = format!("{}:{}", parts["host"], parts["port"]);
        let proxy = SilentProxy::start(direct.parse().unwrap()).await;
        // Plaintext through the proxy: a TLS session (the server offers it,
        // and `prefer` takes it) would hide the bytes `hold_after` looks for.
        let through_proxy = format!(
            "{}?sslmode=disable",
            db.url.replace(&direct, &proxy.addr.to_string())
        );
        let s = Scenario::new(prefix, 1).await;
        let mut shards = Shards::new(&s, &db.url, &[]).await;
        coordinator_a(&mut shards, &s).await;
        shards.start_on(&s, "b", &through_proxy).await;
        let uids = mirrors(&s, MIRRORS).await;
        replicated(&s, MIRRORS, "1", Duration::from_secs(60)).await;
        Self {
            db,
            proxy,
            s,
            shards,
            uids,
        }
    }

    /// Cuts b off once it holds its share: it must send no ConfigMap or
    /// status write after its lease (the start of its last successful
    /// heartbeat + TTL − margin) + 100 ms, and a must own all its mirrors
    /// within TTL + grace + 2 s (+5 s for this shared machine). Then b is
    /// let back in.
    async fn partition(&self, how: Partition) -> Measured {
        self.shards.settled(&self.uids, &["a", "b"], SETTLE).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = self.shards.get_ref("b");
        let audit = AuditCursor::now();
        match how {
            Partition::Silent => self.proxy.hold(),
            Partition::AfterHeartbeatSent => {
                // Only b's own statements carry its incarnation; the
                // heartbeat is the one it sends every second.
                let incarnation: uuid::Uuid =
                    sqlx::query_scalar("SELECT incarnation FROM members WHERE name = 'b'")
                        .fetch_one(&self.shards.pool)
                        .await
                        .unwrap();
                self.proxy.hold_after(incarnation.as_bytes());
                eventually("b's next heartbeat to go out", WAIT, || async {
                    self.proxy.triggered().then_some(())
                })
                .await;
            }
        }
        let held = Instant::now();
        eventually("b to fence", Duration::from_secs(20), || async {
            (b.metric("configmirror_member_fenced").await == Some(1.0)).then_some(())
        })
        .await;
        let fenced = held.elapsed().as_secs_f64();
        let valid_until = b
            .metric("configmirror_member_valid_until_seconds")
            .await
            .expect("b's lease deadline");
        self.shards
            .settled(&self.uids, &["a"], Duration::from_secs(4 + 2 + 2 + 5))
            .await;
        let moved = held.elapsed().as_secs_f64();
        let released_at = wall_now();
        let late: Vec<_> = audit
            .attempted_writes(&b.agent(), &self.s.namespaces())
            .into_iter()
            .filter(|e| {
                let sent = e.request_received_timestamp.unwrap_or(f64::MAX);
                sent > valid_until + 0.1 && sent < released_at
            })
            .collect();
        eprintln!(
            "measured ({how:?}): partition -> fenced {fenced:.2}s, -> b's mirrors owned by a {moved:.2}s"
        );
        let how_late: Vec<String> = late
            .iter()
            .map(|e| {
                let sent = e.request_received_timestamp.unwrap_or(f64::MAX);
                format!("{:.3}s", sent - valid_until)
            })
            .collect();
        assert!(
            late.is_empty(),
            "b wrote after its lease ended at {valid_until} (received that much later: {how_late:?}): {}",
            summary(&late)
        );
        self.proxy.release();
        eventually("b to heartbeat again", SETTLE, || async {
            (b.metric("configmirror_member_fenced").await == Some(0.0)).then_some(())
        })
        .await;
        Measured { fenced, moved }
    }

    /// What b sent into the partitions reached PostgreSQL late and was
    /// refused there: the rows equal the sources.
    async fn finish(self, churn: Churn) {
        self.shards.settled(&self.uids, &["a", "b"], SETTLE).await;
        churn.finish(&self.s, MIRRORS, "final").await;
        rows_stay_at(&self.db, &self.s, MIRRORS, "final").await;
    }
}

fn report(what: &str, runs: &[Measured]) {
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (fence_p50, fence_max) = stats(runs.iter().map(|m| m.fenced).collect());
    let (move_p50, move_max) = stats(runs.iter().map(|m| m.moved).collect());
    eprintln!(
        "measured: {what}, {} runs: partition -> fenced p50 {fence_p50:.2}s max {fence_max:.2}s \
         (design 3 s); -> mirrors moved p50 {move_p50:.2}s max {move_max:.2}s",
        runs.len()
    );
}

/// Issue 14, test 1: a silent partition of a member's database connection
/// while sources change every 300 ms, five times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_cut_off_from_its_database_writes_nothing_after_its_lease() {
    let cut = Cut::new("shardcut").await;
    let churn = Churn::start(&cut.s, MIRRORS);
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(cut.partition(Partition::Silent).await);
    }
    report("silent partition", &runs);
    cut.finish(churn).await;
}

/// Issue 14, test 2: the partition begins just after a heartbeat statement
/// was sent. PostgreSQL records that heartbeat; the member, never answered,
/// must still stop at the deadline of the heartbeat before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_in_the_middle_of_a_heartbeat_fences_on_the_same_deadline() {
    let cut = Cut::new("shardmidhb").await;
    let churn = Churn::start(&cut.s, MIRRORS);
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(cut.partition(Partition::AfterHeartbeatSent).await);
    }
    report("partition after a heartbeat was sent", &runs);
    cut.finish(churn).await;
}

/// Issue 14, test 3: a member frozen for 10 s (SIGSTOP) in the middle of its
/// reconciles, then woken: it sends nothing (replica, status, row) until it
/// has a new lease and owns a mirror again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_frozen_mid_reconcile_writes_nothing_until_it_owns_again() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("shardstop", 2).await;
    let mut shards = Shards::new(&s, &db.url, &[]).await;
    coordinator_a(&mut shards, &s).await;
    shards.start(&s, "b").await;
    let uids = mirrors(&s, MIRRORS).await;
    shards.settled(&uids, &["a", "b"], SETTLE).await;
    replicated(&s, MIRRORS, "1", Duration::from_secs(60)).await;
    let churn = Churn::start(&s, MIRRORS);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let audit = AuditCursor::now();
    shards.get_ref("b").signal("-STOP");
    let (stopped, stopped_at) = (Instant::now(), wall_now());
    // A frozen member is a crashed one to the others.
    shards.settled(&uids, &["a"], Duration::from_secs(15)).await;
    let failover = stopped.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;
    let woke_at = wall_now();
    shards.get_ref("b").signal("-CONT");
    eprintln!("measured: member frozen -> its mirrors owned by the other {failover:.2}s");

    // It comes back and is given its share again.
    shards.settled(&uids, &["a", "b"], SETTLE).await;
    churn.finish(&s, MIRRORS, "final").await;
    rows_stay_at(&db, &s, MIRRORS, "final").await;

    let agent = shards.get_ref("b").agent();
    let sent_after = |t: f64| {
        move |e: &crate::support::audit::AuditEvent| e.request_received_timestamp.unwrap_or(0.0) > t
    };
    let (in_the_pipe, after_waking): (Vec<_>, Vec<_>) = audit
        .attempted_writes(&agent, &s.namespaces())
        .into_iter()
        .filter(sent_after(woke_at))
        .partition(|e| !sent_after(woke_at + IN_THE_PIPE)(e));
    // Requests b had already sent into its connection when it froze go out
    // as it resumes: they were decided while b owned the mirror.
    let intervals = ownership_intervals(&shards.pool).await;
    for e in &in_the_pipe {
        let uid = object_uid(&uids, &e.object_ref.name);
        let owned_then = intervals.get(uid).is_some_and(|spans| {
            spans.iter().any(|(who, from, to)| {
                who == "b" && *from <= stopped_at && to.is_none_or(|t| stopped_at <= t)
            })
        });
        assert!(
            owned_then,
            "b sent {} on waking for a mirror it did not own when frozen",
            e.object_ref.name
        );
    }
    let writes = Writes {
        uids: &uids,
        targets: &s.target_names(),
        home: &s.home.name,
        owned_since: Some(woke_at),
    };
    let checked = assert_writes_within_ownership(&after_waking, &shards.pool, &writes).await;
    eprintln!(
        "measured: frozen member: {} writes in the pipe when it froze, {checked} decided after waking",
        in_the_pipe.len()
    );
    assert!(
        checked > 0,
        "b wrote nothing after it came back (it owns mirrors again)"
    );
}

/// Issue 14, test 4: a new member joins while every mirror's reconciles are
/// running (6 replicas each, one write at a time, sources changing every
/// 300 ms): the mirrors it takes are drained, and their old owners send no
/// write after the handover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_mirror_gets_no_write_from_its_old_owner_after_the_handover() {
    let db = TestDatabase::create().await;
    let s = Scenario::new("sharddrain", 6).await;
    let mut shards = Shards::new(&s, &db.url, &["--write-concurrency=1"]).await;
    coordinator_a(&mut shards, &s).await;
    shards.start(&s, "b").await;
    let n = 20;
    let uids = mirrors(&s, n).await;
    shards.settled(&uids, &["a", "b"], SETTLE).await;
    replicated(&s, n, "1", Duration::from_secs(60)).await;
    let churn = Churn::start(&s, n);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let audit = AuditCursor::now();
    shards.start(&s, "c").await;
    shards.settled(&uids, &["a", "b", "c"], SETTLE).await;
    churn.finish(&s, n, "final").await;

    // How c got its share: drains (the case under test) and, if a member
    // was judged dead meanwhile, failovers; both are checked below.
    let moves: Vec<(String, String)> = sqlx::query_as(
        "SELECT member, reason FROM assignment_history WHERE reason <> 'new' ORDER BY id",
    )
    .fetch_all(&shards.pool)
    .await
    .unwrap();
    let handovers = moves.iter().filter(|(_, r)| r == "handover").count();
    assert!(
        moves.iter().any(|(to, r)| to == "c" && r == "handover"),
        "c took no mirror through a drain: {moves:?}"
    );
    let writes = Writes {
        uids: &uids,
        targets: &s.target_names(),
        home: &s.home.name,
        owned_since: None,
    };
    let mut sent = Vec::new();
    for member in ["a", "b", "c"] {
        sent.extend(audit.attempted_writes(&shards.get_ref(member).agent(), &s.namespaces()));
    }
    let checked = assert_writes_within_ownership(&sent, &shards.pool, &writes).await;
    eprintln!(
        "measured: drain under load: {handovers} handovers of {} moves, {checked} writes checked against ownership",
        moves.len()
    );
    assert!(checked >= n * 6, "too few writes checked: {checked}");
}
