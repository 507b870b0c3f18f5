//! Small mirrors created while a big fan-out is in flight. How long each
//! takes to converge (every one of its targets holds its source) says
//! whether one big mirror starves the others; the fan-out's own convergence
//! and its ratio to the ceiling say what sharing costs it.

use std::time::{Duration, Instant};

use crate::audit::AuditCursor;
use crate::cli::{Cli, FairnessArgs};
use crate::cluster::{RUN_LABEL, Run};
use crate::observe::Observer;
use crate::operator::Operator;
use crate::report::Report;

use super::{ceiling, report_operator, report_writes, seconds};

/// One small mirror, reading a source namespace of its own (as an unrelated
/// team's mirror would, so it also starts a source watch of its own).
struct Probe {
    mirror: String,
    namespace: String,
    source: String,
}

#[derive(serde::Serialize)]
struct Probed {
    /// Seconds after the big mirrors were created.
    created_at: f64,
    /// Seconds from creating the small mirror until all its targets held the source.
    seconds: f64,
    /// Created before the fan-out converged.
    during: bool,
}

pub async fn run(
    cli: &Cli,
    run: &Run,
    op: &Operator,
    args: &FairnessArgs,
) -> anyhow::Result<Report> {
    let ceiling = ceiling::measure(run, args.targets).await?;
    let targets = run.targets(args.targets);
    let small: Vec<String> = (0..args.small_targets)
        .map(|i| run.name(&format!("small{i:02}")))
        .collect();
    // Probe 0 runs alone, before the fan-out: the baseline.
    let probes: Vec<Probe> = (0..=args.probes)
        .map(|j| Probe {
            mirror: format!("probe{j:02}"),
            namespace: run.name(&format!("psrc{j:02}")),
            source: run.name(&format!("probe{j:02}")),
        })
        .collect();
    let mut namespaces = vec![run.home(), run.source()];
    namespaces.extend(targets.iter().cloned());
    namespaces.extend(small.iter().cloned());
    namespaces.extend(probes.iter().map(|p| p.namespace.clone()));
    run.create_namespaces(&namespaces).await?;
    run.settle(&namespaces).await?;

    let big: Vec<String> = (0..args.fanouts)
        .map(|i| run.name(&format!("big{i:02}")))
        .collect();
    let selector = |i: usize| i.to_string();
    for (i, name) in big.iter().enumerate() {
        let fanout = selector(i);
        run.create_source(
            &run.source(),
            name,
            &[(RUN_LABEL, &run.id), ("fanout", &fanout)],
            1,
        )
        .await?;
    }
    for p in &probes {
        run.create_source(&p.namespace, &p.source, &[(RUN_LABEL, &run.id)], 1)
            .await?;
    }
    let big_observer = Observer::start(&run.client, &big, &targets, &run.payload).await?;
    let probe_sources: Vec<String> = probes.iter().map(|p| p.source.clone()).collect();
    let small_observer = Observer::start(&run.client, &probe_sources, &small, &run.payload).await?;
    let timeout = Duration::from_secs(cli.timeout_seconds);
    let baseline = probe(run, &small_observer, &probes[0], &small, timeout).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cpu = op.cpu_seconds().await;
    let cursor = AuditCursor::now(cli.audit_log.as_ref());
    let started = Instant::now();
    // All at once, so that the small mirrors' schedule starts with them.
    futures::future::try_join_all((0..big.len()).map(|i| {
        let (fanout, targets) = (selector(i), &targets);
        async move {
            let labels = [(RUN_LABEL, run.id.as_str()), ("fanout", fanout.as_str())];
            run.create_mirror(&format!("big{i:02}"), targets, &labels)
                .await
        }
    }))
    .await?;
    let interval = Duration::from_millis(args.probe_interval_ms);
    let small_observer = &small_observer;
    let small_targets = &small;
    let probing = futures::future::try_join_all(probes[1..].iter().zip(1u32..).map(|(p, k)| {
        let due = started + interval * k;
        async move {
            tokio::time::sleep_until(due.into()).await;
            let created_at = started.elapsed().as_secs_f64();
            let seconds = probe(run, small_observer, p, small_targets, timeout).await?;
            anyhow::Ok((created_at, seconds))
        }
    }));
    let bar = run.progress(u64::from(args.targets * args.fanouts), "replicas");
    let fanning = big_observer.wait_all(&big, 1, &bar, timeout);
    let (probed, fanned) = tokio::join!(probing, fanning);
    let probed = probed?;
    fanned?;
    bar.finish_and_clear();
    let convergence = big_observer.convergence(&big, 1, started);
    let converged = convergence.last().map_or(0.0, |(t, _)| *t);
    // Writes land in the audit log just after they are acknowledged.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let probed: Vec<Probed> = probed
        .into_iter()
        .map(|(created_at, seconds)| Probed {
            created_at,
            seconds,
            during: created_at < converged,
        })
        .collect();
    let during: Vec<f64> = probed
        .iter()
        .filter(|p| p.during)
        .map(|p| p.seconds)
        .collect();
    let replicas = f64::from(args.targets * args.fanouts);
    let throughput = replicas / converged.max(1e-3);
    let mut report = Report::new(
        "fairness",
        &run.id,
        serde_json::json!({
            "targets": args.targets, "fanouts": args.fanouts, "probes": args.probes,
            "small_targets": args.small_targets, "probe_interval_ms": args.probe_interval_ms,
        }),
    );
    report.row(
        "big fan-out",
        format!(
            "{} mirror(s) × {} targets = {replicas} replicas",
            args.fanouts, args.targets
        ),
    );
    report.row("small mirror alone (before)", seconds(baseline));
    report.summary_row(
        "small mirror during the fan-out",
        "small_during",
        &during,
        "mirrors",
    );
    report.row(
        "each small mirror (created at → converged in)",
        probed
            .iter()
            .map(|p| format!("{:.2} → {:.3}", p.created_at, p.seconds))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let worst = during.iter().copied().fold(0.0, f64::max);
    report.row(
        "goal: < 2 s during the fan-out",
        if during.is_empty() {
            "not measured (the fan-out converged before the first small mirror)".to_string()
        } else if worst < 2.0 {
            format!("met (max {worst:.3} s)")
        } else {
            format!("missed (max {worst:.3} s)")
        },
    );
    report.row("fan-out converged after", seconds(converged));
    report.row("fan-out throughput", format!("{throughput:.0} replicas/s"));
    report.row(
        "ceiling, one namespace (same client, same run)",
        format!("{ceiling:.0} creates/s"),
    );
    report.row("ratio to ceiling", format!("{:.2}", throughput / ceiling));
    report.set("baseline_seconds", baseline);
    report.set("probes", &probed);
    report.set("converged_seconds", converged);
    report.set("throughput_per_second", throughput);
    report.set("ceiling_per_second", ceiling);
    report.set("ratio_to_ceiling", throughput / ceiling);
    let latencies: Vec<f64> = big
        .iter()
        .flat_map(|b| big_observer.latencies(b, 1, started))
        .collect();
    report.set_latencies(latencies);
    report.set_convergence(convergence);
    // The baseline's writes came before the cursor.
    let small_replicas = f64::from(args.probes * args.small_targets);
    report_writes(
        &mut report,
        &cursor,
        op,
        run,
        replicas + small_replicas,
        "replica",
    );
    report_operator(&mut report, cli, op, run, cpu).await;
    Ok(report)
}

/// Creates the probe's mirror; returns the seconds until every small target
/// was seen holding its source.
async fn probe(
    run: &Run,
    observer: &Observer,
    p: &Probe,
    targets: &[String],
    timeout: Duration,
) -> anyhow::Result<f64> {
    let created = Instant::now();
    run.create_mirror_from(&p.mirror, &p.namespace, targets, &[(RUN_LABEL, &run.id)])
        .await?;
    let names = std::slice::from_ref(&p.source);
    observer
        .wait_all(names, 1, &indicatif::ProgressBar::hidden(), timeout)
        .await?;
    let last = targets
        .iter()
        .filter_map(|ns| observer.first_seen(ns, &p.source, 1))
        .max()
        .unwrap_or_else(Instant::now);
    Ok(last.saturating_duration_since(created).as_secs_f64())
}
