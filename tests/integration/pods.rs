//! The chart as users run it: `helm install` on the local node, the
//! operator's image in real pods, the chart's own PostgreSQL, pod deletes,
//! rolling upgrades and scaling, each checked against what the operator
//! must guarantee (one writer per mirror, no stale replica, RBAC enough).
//!
//! Durations printed as `measured:` lines feed loadtest/RESULTS.md; the
//! bounds asserted are the acceptance limits, far above them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::support::audit::{AuditCursor, AuditEvent};
use crate::support::k8s::*;
use crate::support::release::{Release, is_ready};
use crate::support::scenario::Scenario;
use crate::support::shard::{self, loads, mirrors, replicated};
use crate::support::{TestNamespace, eventually};

const MIRRORS: usize = 300;

fn cap(m: usize, n: usize) -> usize {
    (1.05 * m as f64 / n as f64).ceil() as usize
}

async fn bump_sources(s: &Scenario, range: std::ops::Range<usize>, v: &str) {
    for i in range {
        patch_cm(
            &s.client,
            &s.source.name,
            &format!("m{i:04}"),
            serde_json::json!({"data": {"v": v}}),
        )
        .await;
    }
}

/// The coordinator among `pods`: the one whose metrics say it holds the
/// coordinator Lease. Panics unless exactly one does.
async fn the_coordinator(r: &Release, pods: &BTreeMap<String, Pod>) -> String {
    let lease = format!("{}-coordinator", r.fullname);
    let series = format!("leader_election_master_status{{name=\"{lease}\"}} 1");
    eventually(
        "exactly one coordinator",
        Duration::from_secs(30),
        || async {
            let mut holders = Vec::new();
            for (name, pod) in pods {
                let (code, text) = Release::pod_get(pod, 8080, "/metrics").await?;
                if code != 200 {
                    return None;
                }
                if text.lines().any(|l| l == series) {
                    holders.push(name.clone());
                }
            }
            let holder = r.lease(&lease).await?.spec?.holder_identity?;
            (holders.len() == 1 && holders[0] == holder).then(|| holders.remove(0))
        },
    )
    .await
}

/// The live members the chart's database knows.
async fn members(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM members WHERE state = 'active' AND heartbeat_at > now() - interval '4 seconds' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// The host process of a pod's one container: its uid and whether its root
/// filesystem is mounted read-only, read from /proc (the node is this host).
fn container_process(pod: &Pod) -> (u32, bool) {
    let uid = pod.uid().unwrap();
    let id = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    let id = id.trim_start_matches("containerd://");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(cgroup) = std::fs::read_to_string(path.join("cgroup")) else {
            continue;
        };
        if !cgroup.contains(&format!("pod{uid}/{id}")) {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let Some(real_uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
        else {
            continue;
        };
        let mounts = std::fs::read_to_string(path.join("mountinfo")).unwrap_or_default();
        let read_only = mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 5 && f[4] == "/" && f[5].split(',').any(|o| o == "ro")
        });
        return (real_uid, read_only);
    }
    panic!(
        "no host process for container {id} of pod {}",
        pod.name_any()
    );
}

/// A writer for `s`'s mirror sources that bumps source `m0000`..`m{n}` to
/// 1, 2, 3, ... every `every`, and records how long each version took to
/// reach every replica.
struct Prober {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
}

impl Prober {
    fn start(s: &Scenario, n: usize, every: Duration, tag: &'static str) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let client = s.client.clone();
        let source = s.source.name.clone();
        let targets: Vec<String> = s.target_names().iter().map(|t| t.to_string()).collect();
        let task = tokio::spawn(async move {
            let mut staleness = Vec::new();
            let mut version = 0;
            while !*stopped.borrow() {
                version += 1;
                let v = format!("{tag}{version}");
                let written = Instant::now();
                for i in 0..n {
                    patch_cm(
                        &client,
                        &source,
                        &format!("m{i:04}"),
                        serde_json::json!({"data": {"v": v}}),
                    )
                    .await;
                }
                // Wait for this version everywhere (never more than 60 s).
                loop {
                    let mut all = true;
                    'check: for i in 0..n {
                        for t in &targets {
                            let cm = get_cm(&client, t, &format!("m{i:04}")).await;
                            if cm.as_ref().and_then(|c| data_of(c).get("v").cloned())
                                != Some(v.clone())
                            {
                                all = false;
                                break 'check;
                            }
                        }
                    }
                    if all || written.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                staleness.push(written.elapsed());
                let _ = tokio::time::timeout(every, stopped.changed()).await;
            }
            staleness
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<Duration> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap()
    }
}

fn summary(samples: &[Duration]) -> String {
    let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return "no samples".into();
    }
    format!(
        "n={} p50={:.2}s max={:.2}s",
        s.len(),
        s[s.len() / 2],
        s[s.len() - 1]
    )
}

/// Deletes `victim` and returns how long until every one of its mirrors,
/// updated right after the delete, has that update in every replica.
async fn failover(
    s: &Scenario,
    r: &Release,
    owners: &HashMap<String, String>,
    names: &HashMap<String, usize>,
    victim: &str,
    v: &str,
) -> Duration {
    let old_uid = r.operator_pods().await[victim].uid();
    let theirs: Vec<usize> = names
        .iter()
        .filter_map(|(uid, i)| (owners.get(uid)? == victim).then_some(*i))
        .collect();
    assert!(!theirs.is_empty(), "{victim} owns no mirror");
    let start = Instant::now();
    r.delete_pod(victim).await;
    for i in &theirs {
        bump_sources(s, *i..*i + 1, v).await;
    }
    let targets = s.target_names();
    eventually(
        &format!("{victim}'s mirrors to be served again"),
        Duration::from_secs(15),
        || async {
            for i in &theirs {
                for t in &targets {
                    let cm = get_cm(&s.client, t, &format!("m{i:04}")).await?;
                    if data_of(&cm).get("v").map(String::as_str) != Some(v) {
                        return None;
                    }
                }
            }
            Some(())
        },
    )
    .await;
    let took = start.elapsed();
    // The pod comes back (a new one, same name) and rejoins as a member.
    let pods = r.wait_ready(3, Duration::from_secs(120)).await;
    assert_ne!(pods[victim].uid(), old_uid, "{victim} was not replaced");
    eprintln!(
        "measured: {victim} deleted: its mirrors served again after {:.2}s, the pod back Ready after {:.2}s",
        took.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_install_with_three_replicas_runs_sharded_pods_that_survive_deletes_upgrades_and_scaling()
 {
    let audit = AuditCursor::now();
    let s = Scenario::new("pods", 2).await;

    // 1. Defaults with three replicas: sharded pods, the chart's database.
    let installed = Instant::now();
    let r = Release::install(&s.client, &s.home.name, &["replicaCount=3"]).await;
    let pods = r.wait_ready(3, Duration::from_secs(120)).await;
    eprintln!(
        "measured: helm install --wait of 3 sharded pods + PostgreSQL took {:.1}s",
        installed.elapsed().as_secs_f64()
    );
    for (name, pod) in &pods {
        let spec = pod.spec.as_ref().unwrap();
        let args = spec.containers[0].args.clone().unwrap_or_default();
        assert!(args.iter().any(|a| a == "--sharding"), "{name}: {args:?}");
        let status = pod.status.as_ref().unwrap();
        let container = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            container.restart_count, 0,
            "{name} restarted: probes failing?"
        );
        let (uid, read_only) = container_process(pod);
        assert_eq!(uid, 65532, "{name} runs as uid {uid}");
        assert!(read_only, "{name}'s root filesystem is writable");
        let started = status.start_time.as_ref().unwrap().0;
        let ready = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_transition_time.as_ref())
            .unwrap()
            .0;
        eprintln!(
            "measured: {name} start to Ready {:.1}s",
            (ready - started).get_seconds() as f64
        );
        let (code, body) = Release::pod_get(pod, 8081, "/readyz").await.unwrap();
        assert_eq!(code, 200, "{name} /readyz: {body}");
    }
    let database_pod = r
        .pods_api()
        .get(&format!("{}-postgresql-0", r.fullname))
        .await
        .unwrap();
    assert!(
        is_ready(&database_pod),
        "the chart's PostgreSQL is not Ready"
    );
    let pool = r.database().await;
    let names: Vec<String> = pods.keys().cloned().collect();
    eventually(
        "the members to be the pods",
        Duration::from_secs(30),
        || async { (members(&pool).await == names).then_some(()) },
    )
    .await;
    let coordinator = the_coordinator(&r, &pods).await;

    let uids = mirrors(&s, MIRRORS).await;
    let live: Vec<&str> = names.iter().map(String::as_str).collect();
    let owners = shard::settled(&pool, &uids, &live, Duration::from_secs(120)).await;
    let load = loads(&owners);
    assert_eq!(load.len(), 3, "{load:?}");
    assert!(load.values().all(|l| *l <= cap(MIRRORS, 3)), "{load:?}");
    replicated(&s, MIRRORS, "1", Duration::from_secs(120)).await;
    let index: HashMap<String, usize> = uids.iter().cloned().zip(0..).collect();

    // 2. A worker's pod deleted, then the coordinator's, then another
    // worker's (three samples for the measurement).
    let worker = names.iter().find(|n| **n != coordinator).unwrap().clone();
    let mut failovers = vec![failover(&s, &r, &owners, &index, &worker, "2").await];
    let pods = r.wait_ready(3, Duration::from_secs(60)).await;
    let coordinator = the_coordinator(&r, &pods).await;
    failovers.push(failover(&s, &r, &owners, &index, &coordinator, "3").await);
    let pods = r.wait_ready(3, Duration::from_secs(60)).await;
    let coordinator = the_coordinator(&r, &pods).await;
    let other = names
        .iter()
        .find(|n| **n != coordinator && **n != worker)
        .unwrap()
        .clone();
    failovers.push(failover(&s, &r, &owners, &index, &other, "3b").await);
    eprintln!(
        "measured: failover after a pod delete {}",
        summary(&failovers)
    );
    let pods = r.wait_ready(3, Duration::from_secs(60)).await;
    the_coordinator(&r, &pods).await;
    eventually(
        "the members to be the pods again",
        Duration::from_secs(30),
        || async { (members(&pool).await == names).then_some(()) },
    )
    .await;
    bump_sources(&s, 0..MIRRORS, "4").await;
    replicated(&s, MIRRORS, "4", Duration::from_secs(90)).await;

    // 3. A rolling restart moves nothing and leaves nothing stale for long.
    let before = shard::settled(&pool, &uids, &live, Duration::from_secs(60)).await;
    let (history_before,): (i64,) =
        sqlx::query_as("SELECT coalesce(max(id), 0) FROM assignment_history")
            .fetch_one(&pool)
            .await
            .unwrap();
    let prober = Prober::start(&s, 10, Duration::from_secs(1), "roll-");
    let rolled = Instant::now();
    r.upgrade(&["operator.resyncSeconds=601"]);
    let pods = r.wait_ready(3, Duration::from_secs(120)).await;
    eventually(
        "the rollout to finish",
        Duration::from_secs(180),
        || async {
            let sts = r.statefulsets().get(&r.fullname).await.ok()?;
            let st = sts.status?;
            (st.update_revision.is_some()
                && st.current_revision == st.update_revision
                && st.updated_replicas == Some(3)
                && st.ready_replicas == Some(3))
            .then_some(())
        },
    )
    .await;
    let staleness = prober.finish().await;
    eprintln!(
        "measured: rolling upgrade took {:.1}s; replica staleness during it {}",
        rolled.elapsed().as_secs_f64(),
        summary(&staleness)
    );
    assert!(
        staleness.iter().all(|d| *d <= Duration::from_secs(30)),
        "a replica was stale for over 30 s: {}",
        summary(&staleness)
    );
    for pod in pods.values() {
        let args = pod.spec.as_ref().unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(
            args.iter().any(|a| a == "--resync-seconds=601"),
            "not upgraded: {args:?}"
        );
    }
    let after = shard::settled(&pool, &uids, &live, Duration::from_secs(60)).await;
    assert_eq!(before, after, "a mirror moved during the rolling restart");
    let moves: Vec<(String, String, String)> =
        sqlx::query_as("SELECT mirror_uid, member, reason FROM assignment_history WHERE id > $1")
            .bind(history_before)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        moves.is_empty(),
        "assignments changed in the rollout: {moves:?}"
    );

    // 4. Scale out to five and back to three, by helm.
    r.upgrade(&["replicaCount=5"]);
    let pods = r.wait_ready(5, Duration::from_secs(120)).await;
    let five: Vec<&str> = pods.keys().map(String::as_str).collect();
    let owners5 = shard::settled(&pool, &uids, &five, Duration::from_secs(120)).await;
    assert_eq!(loads(&owners5).len(), 5, "{:?}", loads(&owners5));
    bump_sources(&s, 0..MIRRORS, "5").await;
    replicated(&s, MIRRORS, "5", Duration::from_secs(90)).await;
    r.upgrade(&["replicaCount=3"]);
    let pods = r.wait_ready(3, Duration::from_secs(120)).await;
    let three: Vec<&str> = pods.keys().map(String::as_str).collect();
    // The two removed members hold their mirrors for the leave grace (20 s).
    let owners3 = shard::settled(&pool, &uids, &three, Duration::from_secs(120)).await;
    assert_eq!(loads(&owners3).len(), 3);
    bump_sources(&s, 0..MIRRORS, "6").await;
    replicated(&s, MIRRORS, "6", Duration::from_secs(90)).await;

    // At every point, each mirror had one member writing it: every accepted
    // replica write by a pod happened while that pod owned the mirror.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = audit.events();
    let writes = shard::Writes {
        uids: &uids,
        targets: &s.target_names(),
        home: &s.home.name,
        owned_since: None,
    };
    let checked = shard::assert_writes_within_ownership(&events, &pool, &writes).await;
    assert!(
        checked >= MIRRORS * 2 * 5,
        "too few replica writes checked: {checked}"
    );

    // 7. The chart's RBAC was enough: no request made with a token of the
    // release's service accounts (the operator's, and the upgrade hook's
    // that ran for each helm upgrade) was refused, and the operator's made
    // plenty.
    let prefix = format!("system:serviceaccount:{}:", r.namespace);
    let operator_account = format!("{prefix}{}", r.fullname);
    let mine: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.user.username.starts_with(&prefix) && e.stage == "ResponseComplete")
        .collect();
    let by_operator = mine
        .iter()
        .filter(|e| e.user.username == operator_account)
        .count();
    assert!(
        by_operator > 100,
        "only {by_operator} requests by {operator_account}"
    );
    let by_hook = mine
        .iter()
        .filter(|e| e.user.username.ends_with("-prepare-upgrade"))
        .count();
    assert!(by_hook > 0, "the upgrade hook made no request");
    let refused: Vec<String> = mine
        .iter()
        .filter(|e| e.response_status.code == 403)
        .map(|e| {
            format!(
                "{} {} {}/{}",
                e.user.username, e.verb, e.object_ref.resource, e.object_ref.namespace
            )
        })
        .collect();
    assert!(refused.is_empty(), "the chart's RBAC refused: {refused:?}");

    // 6. `helm test` passes; `helm uninstall` keeps the CRD, the mirrors,
    // their replicas and the database's volume claim.
    let test = r.helm(&["test", &r.name, "--timeout", "180s"]);
    assert!(
        test.ok,
        "helm test failed:\n{}\n{}",
        test.stdout, test.stderr
    );
    r.uninstall();
    assert!(get_mirror(&s.client, &s.home.name, "m0000").await.is_some());
    assert!(
        get_cm(&s.client, s.target_names()[0], "m0000")
            .await
            .is_some()
    );
    let claims = Api::<PersistentVolumeClaim>::namespaced(s.client.clone(), &s.home.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(claims.items.len(), 1, "the database's claim is kept");
    eventually(
        "the release's pods to go",
        Duration::from_secs(60),
        || async {
            r.pods_api()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_a_single_replica_release_never_runs_two_active_controllers() {
    let audit = AuditCursor::now();
    let s = Scenario::new("pods1", 2).await;
    let r = Release::install(&s.client, &s.home.name, &["replicaCount=1"]).await;
    let pods = r.wait_ready(1, Duration::from_secs(120)).await;
    let first = pods.keys().next().unwrap().clone();
    let args = pods[&first].spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    mirrors(&s, 5).await;
    replicated(&s, 5, "1", Duration::from_secs(60)).await;

    let prober = Prober::start(&s, 5, Duration::from_millis(500), "scale-");
    r.scale(2).await;
    r.wait_ready(2, Duration::from_secs(120)).await;
    // Hand the Lease over: the leader's pod goes, the standby takes over.
    r.delete_pod(&first).await;
    r.wait_ready(2, Duration::from_secs(120)).await;
    r.scale(1).await;
    r.wait_ready(1, Duration::from_secs(120)).await;
    r.scale(2).await;
    r.wait_ready(2, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let staleness = prober.finish().await;
    eprintln!(
        "measured: staleness while scaling 1-2-1-2 {}",
        summary(&staleness)
    );

    // Every write attempt by a pod (accepted or not), in time order, by the
    // pod incarnation that made it: the writer changes only when the Lease
    // changed hands.
    let lease = r
        .lease(&format!("{}-leader", r.fullname))
        .await
        .expect("the leader Lease");
    let transitions = lease.spec.unwrap().lease_transitions.unwrap_or(0) as usize;
    let namespaces = s.namespaces();
    let mut writes: Vec<(f64, String)> = audit
        .events()
        .iter()
        .filter(|e| {
            e.stage == "ResponseComplete"
                && e.is_write()
                && matches!(
                    e.object_ref.resource.as_str(),
                    "configmaps" | "configmirrors"
                )
                && namespaces.contains(&e.object_ref.namespace.as_str())
        })
        .filter_map(|e| Some((e.stage_timestamp?, e.pod_uid()?.to_string())))
        .collect();
    writes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut runs: Vec<&str> = Vec::new();
    for (_, m) in &writes {
        if runs.last() != Some(&m.as_str()) {
            runs.push(m);
        }
    }
    assert!(runs.len() >= 2, "the Lease never changed writers: {runs:?}");
    assert!(
        runs.len() <= transitions + 1,
        "{} runs of writers for {transitions} Lease transitions: {runs:?}",
        runs.len()
    );
    r.uninstall();
}

#[tokio::test]
async fn pod_traffic_to_addresses_outside_the_cluster_is_dropped() {
    let client = crate::support::client().await;
    let ns = TestNamespace::create(&client, "guard").await;
    // An address of this machine outside the pod and Service ranges.
    let route = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "get", "192.0.2.123"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    let outside = route
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .unwrap_or("169.254.1.1")
        .to_string();
    let dropped = || {
        let out = std::process::Command::new("iptables")
            .args(["-t", "raw", "-L", "CONFIGMIRROR-GUARD", "-v", "-x", "-n"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("DROP"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .expect("the guard chain's DROP rule")
    };
    let before = dropped();
    let images = std::fs::read_to_string(crate::support::release::local_images()).unwrap();
    let values: serde_yaml::Value = serde_yaml::from_str(&images).unwrap();
    let image = format!(
        "{}:{}",
        values["postgresql"]["image"]["repository"]
            .as_str()
            .unwrap(),
        values["postgresql"]["image"]["tag"].as_str().unwrap()
    );
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 999},
            "containers": [{
                "name": "probe",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["pg_isready", "-h", outside, "-p", "5432", "-t", "3"],
            }],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    pods.create(&Default::default(), &pod).await.unwrap();
    let phase = eventually(
        "the probe pod to finish",
        Duration::from_secs(60),
        || async {
            let p = pods.get("probe").await.ok()?;
            let phase = p.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        },
    )
    .await;
    assert_eq!(phase, "Failed", "a pod reached {outside}");
    assert!(
        dropped() > before,
        "the guard dropped nothing from the pod to {outside}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_upgrade_between_modes_stops_the_old_mode_before_the_new_one_writes() {
    let audit = AuditCursor::now();
    let s = Scenario::new("podsmode", 2).await;
    let r = Release::install(&s.client, &s.home.name, &["replicaCount=1"]).await;
    let uids_of = |pods: &BTreeMap<String, Pod>| -> Vec<String> {
        pods.values().filter_map(|p| p.uid()).collect()
    };
    let mut generations = vec![uids_of(&r.wait_ready(1, Duration::from_secs(120)).await)];
    let n = 20;
    let uids = mirrors(&s, n).await;
    replicated(&s, n, "1", Duration::from_secs(60)).await;

    let prober = Prober::start(&s, 5, Duration::from_millis(500), "mode-");
    // Leader election -> sharding (sharding.enabled is auto).
    r.upgrade(&["replicaCount=3"]);
    let pods = r.wait_ready(3, Duration::from_secs(120)).await;
    for pod in pods.values() {
        let args = pod.spec.as_ref().unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(args.iter().any(|a| a == "--sharding"), "{args:?}");
    }
    generations.push(uids_of(&pods));
    let live: Vec<&str> = pods.keys().map(String::as_str).collect();
    shard::settled(&r.database().await, &uids, &live, Duration::from_secs(60)).await;
    // ... and back.
    r.upgrade(&["replicaCount=1"]);
    let pods = r.wait_ready(1, Duration::from_secs(120)).await;
    let args = pods
        .values()
        .next()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    generations.push(uids_of(&pods));
    let staleness = prober.finish().await;
    eprintln!(
        "measured: staleness across two mode switches {}",
        summary(&staleness)
    );
    bump_sources(&s, 0..n, "2").await;
    replicated(&s, n, "2", Duration::from_secs(60)).await;

    // Every write attempt by a pod, by incarnation: each generation's last
    // write comes before the next generation's first.
    let namespaces = s.namespaces();
    let mut span: HashMap<String, (f64, f64)> = HashMap::new();
    for e in audit.events().iter().filter(|e| {
        e.stage == "ResponseComplete"
            && e.is_write()
            && matches!(
                e.object_ref.resource.as_str(),
                "configmaps" | "configmirrors"
            )
            && namespaces.contains(&e.object_ref.namespace.as_str())
    }) {
        let (Some(uid), Some(at)) = (e.pod_uid(), e.stage_timestamp) else {
            continue;
        };
        let s = span.entry(uid.to_string()).or_insert((at, at));
        s.0 = s.0.min(at);
        s.1 = s.1.max(at);
    }
    let known: Vec<&String> = generations.iter().flatten().collect();
    let strays: Vec<&String> = span.keys().filter(|u| !known.contains(u)).collect();
    assert!(
        strays.is_empty(),
        "writes by pods of no generation: {strays:?}"
    );
    let bounds: Vec<(f64, f64)> = generations
        .iter()
        .map(|g| {
            g.iter().filter_map(|u| span.get(u)).fold(
                (f64::INFINITY, f64::NEG_INFINITY),
                |(a, b), (first, last)| (a.min(*first), b.max(*last)),
            )
        })
        .collect();
    for (i, pair) in bounds.windows(2).enumerate() {
        assert!(
            pair[0].1.is_finite() && pair[1].0.is_finite(),
            "generation {i} or {} wrote nothing: {bounds:?}",
            i + 1
        );
        assert!(
            pair[0].1 < pair[1].0,
            "generation {i} still wrote at {} after generation {} began at {}",
            pair[0].1,
            i + 1,
            pair[1].0
        );
    }
    r.uninstall();
}
