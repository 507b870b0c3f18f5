//! Sharded runs: several members (started here, see `members`) over M
//! mirrors, each replicating its own source ConfigMap into T namespaces.
//!
//! - `chaos`: new-mirror latency; crash failover (kill -9 → the victim's
//!   mirrors updated by live members); movement on join, rolling restart and
//!   leave; then source updates at a steady rate while members are killed,
//!   terminated and paused, reporting replica staleness, loads, moves,
//!   handovers and fences.
//! - `scale`: rounds of updating every source, as throughput (replica
//!   writes/s), to compare 1, 2, 3, 5 members with a capped API client each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::cli::{ChaosArgs, Cli, ScaleArgs};
use crate::cluster::{RUN_LABEL, Run};
use crate::members::Members;
use crate::observe::Observer;
use crate::report::Report;

use super::seconds;

/// The run's mirrors, their sources and where they replicate.
struct Fleet {
    names: Vec<String>,
    targets: Vec<String>,
    observer: Observer,
    /// Seconds from each mirror's creation until every target held its source.
    new_mirror_latencies: Vec<f64>,
}

async fn fleet(cli: &Cli, run: &Run, mirrors: u32, targets: u32) -> anyhow::Result<Fleet> {
    let names: Vec<String> = (0..mirrors).map(|i| format!("m{i:05}")).collect();
    let targets = run.targets(targets);
    let mut namespaces = vec![run.source()];
    namespaces.extend(targets.iter().cloned());
    run.create_namespaces(&namespaces).await?;
    run.settle(&namespaces).await?;
    let observer = Observer::in_namespaces(&run.client, &targets, &run.payload).await?;
    let bar = run.progress(names.len() as u64, "sources");
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(&names)
        .map(|name| {
            let bar = bar.clone();
            async move {
                run.create_source(
                    &run.source(),
                    name,
                    &[("mirror", name), (RUN_LABEL, &run.id)],
                    1,
                )
                .await?;
                bar.inc(1);
                Ok(())
            }
        })
        .buffer_unordered(cli.concurrency)
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<()>>()?;
    bar.finish_and_clear();
    let bar = run.progress(names.len() as u64, "mirrors");
    let created: Vec<anyhow::Result<(String, Instant)>> = futures::stream::iter(&names)
        .map(|name| {
            let (bar, targets) = (bar.clone(), targets.clone());
            async move {
                let at = Instant::now();
                run.create_mirror(name, &targets, &[("mirror", name)])
                    .await?;
                bar.inc(1);
                Ok((name.clone(), at))
            }
        })
        .buffer_unordered(cli.concurrency)
        .collect()
        .await;
    let created: Vec<(String, Instant)> = created.into_iter().collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    wait_version(run, &observer, &names, 1, cli.timeout_seconds, "replicas").await?;
    let new_mirror_latencies = created
        .iter()
        .filter_map(|(name, at)| {
            targets
                .iter()
                .map(|t| observer.first_seen(t, name, 1))
                .collect::<Option<Vec<Instant>>>()
                .and_then(|seen| seen.into_iter().max())
                .map(|last| last.saturating_duration_since(*at).as_secs_f64())
        })
        .collect();
    Ok(Fleet {
        names,
        targets,
        observer,
        new_mirror_latencies,
    })
}

async fn wait_version(
    run: &Run,
    observer: &Observer,
    names: &[String],
    version: u64,
    timeout_seconds: u64,
    what: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let total = names.len() * observer.target_count();
    let bar = run.progress(total as u64, what);
    loop {
        let missing = observer.missing(names, version);
        bar.set_position((total - missing) as u64);
        if missing == 0 {
            bar.finish_and_clear();
            return Ok(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(timeout_seconds),
            "{missing} of {total} replicas did not reach version {version}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sets every source in `names` to `version`, `concurrency` at a time.
async fn bump(cli: &Cli, run: &Run, names: &[String], version: u64) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(names)
        .map(|name| async move { run.update_source(&run.source(), name, version).await })
        .buffer_unordered(cli.concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

fn member_names(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("worker-{i}")).collect()
}

fn cap(mirrors: usize, members: usize) -> usize {
    (1.05 * mirrors as f64 / members as f64).ceil() as usize
}

fn describe(map: &BTreeMap<String, i64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads, coordinator, memory and fences of the members now.
async fn report_members(report: &mut Report, members: &Members) -> anyhow::Result<()> {
    let loads = members.loads().await?;
    report.row("loads (assignments per member)", describe(&loads));
    report.set("loads", &loads);
    let coordinator = members.coordinator().await?;
    let mut fences = 0.0;
    let mut memory = BTreeMap::new();
    for name in members.names() {
        fences += members
            .metric(&name, "configmirror_member_fences_total")
            .await
            .unwrap_or(0.0);
        if let Some(rss) = members.rss(&name) {
            memory.insert(name.clone(), rss);
        }
    }
    let describe_memory = memory
        .iter()
        .map(|(n, b)| {
            let role = if Some(n) == coordinator.as_ref() {
                " (coordinator)"
            } else {
                ""
            };
            format!("{n}{role} {:.1} MiB", *b as f64 / 1048576.0)
        })
        .collect::<Vec<_>>()
        .join(", ");
    report.row("member RSS", describe_memory);
    report.set("member_rss_bytes", &memory);
    report.set("coordinator", &coordinator);
    report.row("fences (live members)", fences);
    report.set("fences", fences);
    Ok(())
}

/// Waits until the active assignments cover every mirror, on `live` members only.
async fn settled(
    members: &Members,
    mirrors: usize,
    live: &[String],
    timeout: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let owners = members.owners().await?;
        let ok = owners.len() == mirrors && owners.values().all(|m| live.contains(m));
        if ok {
            return Ok(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "assignments did not settle on {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn chaos(
    cli: &Cli,
    run: &Run,
    members: &mut Members,
    args: &ChaosArgs,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.members >= 3,
        "--members must be at least 3 (one is killed, one leaves)"
    );
    let mut report = Report::new(
        "chaos",
        &run.id,
        serde_json::json!({
            "members": args.members, "mirrors": args.mirrors, "targets": args.targets,
            "duration_seconds": args.duration_seconds, "update_rate": args.update_rate,
            "action_every_seconds": args.action_every_seconds,
        }),
    );
    let timeout = Duration::from_secs(cli.timeout_seconds);
    let mut live = member_names(args.members);
    for name in &live {
        members.start(name)?;
    }
    members.ready(Duration::from_secs(60)).await?;
    let fleet = fleet(cli, run, args.mirrors, args.targets).await?;
    let m = fleet.names.len();
    settled(members, m, &live, timeout).await?;
    report.summary_row(
        "new-mirror latency, all created at once",
        "new_mirror_latency",
        &fleet.new_mirror_latencies,
        &format!("while {} members ran", args.members),
    );
    let loads = members.loads().await?;
    report.row(
        "initial loads (cap ⌈1.05 × mean⌉)",
        format!("{} (cap {})", describe(&loads), cap(m, live.len())),
    );
    let lone = lone_mirrors(run, &fleet, args.lone_mirrors as usize, timeout).await?;
    let m = m + lone.len();
    report.summary_row(
        "new-mirror latency, one at a time",
        "lone_mirror_latency",
        &lone,
        "",
    );
    let uid_of = mirror_uids(run).await?;
    let mut version = 1;

    // Crash failover: kill -9 a worker that is not the coordinator, update
    // its mirrors at once, and time until live members delivered them.
    let coordinator = members.coordinator().await?.unwrap_or_default();
    let victim = live
        .iter()
        .find(|n| **n != coordinator)
        .cloned()
        .expect("a non-coordinator");
    let owners = members.owners().await?;
    let victims: Vec<String> = fleet
        .names
        .iter()
        .filter(|n| uid_of.get(*n).and_then(|u| owners.get(u)) == Some(&victim))
        .cloned()
        .collect();
    version += 1;
    let mark = members.history_mark().await?;
    let killed = Instant::now();
    members.kill(&victim)?;
    live.retain(|n| *n != victim);
    bump(cli, run, &victims, version).await?;
    wait_version(
        run,
        &fleet.observer,
        &victims,
        version,
        cli.timeout_seconds,
        "failover",
    )
    .await?;
    let failover = killed.elapsed().as_secs_f64();
    report.row(
        "crash failover (kill -9 → its mirrors updated by live members)",
        format!(
            "{} for {} mirrors; moves {}",
            seconds(failover),
            victims.len(),
            describe(&members.moves_since(mark).await?)
        ),
    );
    report.set("failover_seconds", failover);
    report.set("failover_mirrors", victims.len());

    // The victim joins again (a new member for the ring): what moves to it.
    let mark = members.history_mark().await?;
    members.start(&victim)?;
    live.push(victim.clone());
    members.ready(timeout).await?;
    let joined = Instant::now();
    balanced(members, m, &live, timeout).await?;
    let join_moves = members.moves_since(mark).await?;
    report.row(
        "join: moves (bound ⌈M/N⌉ + 2 %)",
        format!(
            "{} in {} (bound {})",
            describe(&join_moves),
            seconds(joined.elapsed().as_secs_f64()),
            m.div_ceil(live.len()) + m / 50
        ),
    );
    report.set("join_moves", &join_moves);

    // A rolling restart of one member: SIGTERM, back at once with its name.
    let mark = members.history_mark().await?;
    let restarted = live[0].clone();
    members.terminate(&restarted).await?;
    members.start(&restarted)?;
    members.ready(timeout).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart_moves = members.moves_since(mark).await?;
    report.row(
        "rolling restart of one member: moves",
        describe(&restart_moves),
    );
    report.set("restart_moves", &restart_moves);

    // One leaves for good: its mirrors wait for the leave grace, then move.
    let mark = members.history_mark().await?;
    let leaver = live.pop().expect("members");
    let left = Instant::now();
    members.terminate(&leaver).await?;
    settled(members, m, &live, timeout).await?;
    let leave_moves = members.moves_since(mark).await?;
    report.row(
        "leave (SIGTERM for good): moves",
        format!(
            "{} after {}",
            describe(&leave_moves),
            seconds(left.elapsed().as_secs_f64())
        ),
    );
    report.set("leave_moves", &leave_moves);
    members.start(&leaver)?;
    live.push(leaver);
    members.ready(timeout).await?;
    balanced(members, m, &live, timeout).await?;

    // Chaos: steady updates while members die, leave and freeze.
    let chaos = chaos_phase(cli, run, members, &fleet, args, &mut live, version).await?;
    report.summary_row(
        "chaos: replica staleness",
        "chaos_staleness",
        &chaos.staleness,
        "updates",
    );
    report.row("chaos: actions", chaos.actions.join(", "));
    report.row("chaos: moves", describe(&chaos.moves));
    report.set("chaos_actions", &chaos.actions);
    report.set("chaos_moves", &chaos.moves);
    report.set_latencies(chaos.staleness);

    let handovers = members.handover_seconds().await?;
    report.summary_row(
        "graceful handover (drain → new owner told)",
        "handover",
        &handovers,
        "",
    );
    report_members(&mut report, members).await?;
    Ok(report)
}

struct ChaosOutcome {
    staleness: Vec<f64>,
    actions: Vec<String>,
    moves: BTreeMap<String, i64>,
}

async fn chaos_phase(
    cli: &Cli,
    run: &Run,
    members: &mut Members,
    fleet: &Fleet,
    args: &ChaosArgs,
    live: &mut Vec<String>,
    base_version: u64,
) -> anyhow::Result<ChaosOutcome> {
    let mark = members.history_mark().await?;
    let started = Instant::now();
    let duration = Duration::from_secs(args.duration_seconds);
    let interval = Duration::from_secs_f64(1.0 / args.update_rate);
    let every = Duration::from_secs(args.action_every_seconds);
    let mut next_action = started + every;
    let mut actions = Vec::new();
    let mut versions: BTreeMap<String, u64> = fleet
        .names
        .iter()
        .map(|n| (n.clone(), base_version))
        .collect();
    let mut updates: Vec<(String, u64, Instant)> = Vec::new();
    // (member, when to bring it back, how).
    let mut pending: Option<(String, Instant, &str)> = None;
    let mut k = 0usize;
    while started.elapsed() < duration {
        let due = started + interval * k as u32;
        tokio::time::sleep_until(due.into()).await;
        let name = &fleet.names[k % fleet.names.len()];
        let v = versions.get_mut(name).expect("known");
        *v += 1;
        let at = Instant::now();
        run.update_source(&run.source(), name, *v).await?;
        updates.push((name.clone(), *v, at));
        k += 1;
        let now = Instant::now();
        if let Some((who, back_at, how)) = pending.clone()
            && now >= back_at
        {
            match how {
                "STOP" => members.resume(&who)?,
                _ => {
                    members.start(&who)?;
                    live.push(who.clone());
                }
            }
            pending = None;
        }
        if pending.is_none() && now >= next_action {
            let who = live[actions.len() % live.len()].clone();
            let t = format!("{:.0}s", started.elapsed().as_secs_f64());
            match actions.len() % 3 {
                0 => {
                    members.kill(&who)?;
                    live.retain(|n| *n != who);
                    pending = Some((who.clone(), now + Duration::from_secs(5), "KILL"));
                    actions.push(format!("{t} kill -9 {who}"));
                }
                1 => {
                    members.terminate(&who).await?;
                    live.retain(|n| *n != who);
                    pending = Some((who.clone(), Instant::now(), "TERM"));
                    actions.push(format!("{t} SIGTERM + restart {who}"));
                }
                _ => {
                    members.pause(&who)?;
                    pending = Some((who.clone(), now + Duration::from_secs(8), "STOP"));
                    actions.push(format!("{t} SIGSTOP 8 s {who}"));
                }
            }
            next_action = now + every;
        }
    }
    if let Some((who, _, how)) = pending {
        match how {
            "STOP" => members.resume(&who)?,
            _ => {
                members.start(&who)?;
                live.push(who);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(cli.timeout_seconds);
    loop {
        let behind = versions
            .iter()
            .filter(|(name, v)| fleet.observer.missing(std::slice::from_ref(*name), **v) > 0)
            .count();
        if behind == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{behind} mirrors never caught up after the chaos"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let staleness = updates
        .iter()
        .filter_map(|(name, v, at)| {
            fleet
                .targets
                .iter()
                .map(|t| fleet.observer.first_seen(t, name, *v))
                .collect::<Option<Vec<Instant>>>()
                .and_then(|seen| seen.into_iter().max())
                .map(|last| last.saturating_duration_since(*at).as_secs_f64())
        })
        .collect();
    Ok(ChaosOutcome {
        staleness,
        actions,
        moves: members.moves_since(mark).await?,
    })
}

/// Waits until every member holds at most the cap and all mirrors are owned.
async fn balanced(
    members: &Members,
    mirrors: usize,
    live: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let cap = cap(mirrors, live.len()) as i64;
    loop {
        settled(members, mirrors, live, timeout).await?;
        let loads = members.loads().await?;
        if live.iter().all(|n| loads.get(n).is_some_and(|l| *l <= cap)) {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "loads did not balance: {loads:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `count` more mirrors one at a time, each with its own source,
/// waiting for each to reach every target: the latency of a new mirror on a
/// settled fleet (assignment, acquisition and the first reconcile).
async fn lone_mirrors(
    run: &Run,
    fleet: &Fleet,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for i in 0..count {
        let name = format!("lone{i:03}");
        run.create_source(
            &run.source(),
            &name,
            &[("mirror", &name), (RUN_LABEL, &run.id)],
            1,
        )
        .await?;
        let at = Instant::now();
        run.create_mirror(&name, &fleet.targets, &[("mirror", &name)])
            .await?;
        while fleet.observer.missing(std::slice::from_ref(&name), 1) > 0 {
            anyhow::ensure!(
                at.elapsed() < timeout,
                "mirror {name} never reached its targets"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let last = fleet
            .targets
            .iter()
            .filter_map(|t| fleet.observer.first_seen(t, &name, 1))
            .max()
            .expect("seen");
        latencies.push(last.saturating_duration_since(at).as_secs_f64());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(latencies)
}

/// Mirror name → UID.
async fn mirror_uids(run: &Run) -> anyhow::Result<BTreeMap<String, String>> {
    let api = kube::Api::<kube::api::DynamicObject>::namespaced_with(
        run.client.clone(),
        &run.home(),
        &crate::cluster::mirror_resource(),
    );
    let list = api.list_metadata(&kube::api::ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|m| Some((m.metadata.name?, m.metadata.uid?)))
        .collect())
}

pub async fn scale(
    cli: &Cli,
    run: &Run,
    members: &mut Members,
    args: &ScaleArgs,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "scale",
        &run.id,
        serde_json::json!({
            "members": args.members, "mirrors": args.mirrors, "targets": args.targets, "rounds": args.rounds,
            "operator_args": cli.operator_args,
        }),
    );
    let live = member_names(args.members);
    for name in &live {
        members.start(name)?;
    }
    members.ready(Duration::from_secs(60)).await?;
    let fleet = fleet(cli, run, args.mirrors, args.targets).await?;
    let m = fleet.names.len();
    balanced(members, m, &live, Duration::from_secs(cli.timeout_seconds)).await?;
    report.summary_row(
        "new-mirror latency, all created at once",
        "new_mirror_latency",
        &fleet.new_mirror_latencies,
        "",
    );
    let replicas = (m * fleet.targets.len()) as f64;
    let mut rates = Vec::new();
    for round in 0..args.rounds {
        let version = 2 + u64::from(round);
        let started = Instant::now();
        bump(cli, run, &fleet.names, version).await?;
        wait_version(
            run,
            &fleet.observer,
            &fleet.names,
            version,
            cli.timeout_seconds,
            "round",
        )
        .await?;
        let took = started.elapsed().as_secs_f64();
        rates.push(replicas / took);
        report.row(
            &format!("round {}", round + 1),
            format!(
                "{replicas} replicas in {} = {:.1}/s",
                seconds(took),
                replicas / took
            ),
        );
    }
    if !rates.is_empty() {
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        report.row(
            "sustained update throughput",
            format!("{mean:.1} replica updates/s with {} members", args.members),
        );
        report.set("throughput_per_second", mean);
        report.set("rounds", &rates);
    }
    report_members(&mut report, members).await?;
    Ok(report)
}
