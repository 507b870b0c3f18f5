//! A steady rate of source updates into T targets. A replica's latency for
//! an update is the time until it shows that version or a newer one.

use std::time::{Duration, Instant};

use crate::audit::AuditCursor;
use crate::cli::{Cli, UpdatesArgs};
use crate::cluster::Run;
use crate::operator::Operator;
use crate::report::Report;

use super::{ceiling, fan_out, report_operator, report_writes, seconds};

pub async fn run(
    cli: &Cli,
    run: &Run,
    op: &Operator,
    args: &UpdatesArgs,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 200.0,
        "--rate must be in (0, 200]"
    );
    let ceiling = ceiling::measure(run, args.targets).await?;
    let fo = fan_out(cli, run, args.targets).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cpu = op.cpu_seconds().await;
    let cursor = AuditCursor::now(cli.audit_log.as_ref());
    let count = ((args.rate * args.duration_seconds as f64).round() as u64).max(1);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let bar = run.progress(count, "source updates");
    let started = Instant::now();
    let mut written: Vec<(u64, Instant)> = Vec::new();
    for k in 0..count {
        let due = started + interval * k as u32;
        tokio::time::sleep_until(due.into()).await;
        let version = k + 2;
        let at = Instant::now();
        run.update_source(&run.source(), &fo.source, version)
            .await?;
        written.push((version, at));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let last = written.last().map(|(v, _)| *v).unwrap_or(1);
    let bar = run.progress(u64::from(args.targets), "last update");
    fo.observer
        .wait_all(
            std::slice::from_ref(&fo.source),
            last,
            &bar,
            Duration::from_secs(cli.timeout_seconds),
        )
        .await?;
    bar.finish_and_clear();
    let behind = written
        .last()
        .map(|(_, t)| t.elapsed().as_secs_f64())
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let latencies: Vec<f64> = written
        .iter()
        .flat_map(|(v, t)| fo.observer.latencies(&fo.source, *v, *t))
        .collect();
    let mut report = Report::new(
        "updates",
        &run.id,
        serde_json::json!({"targets": args.targets, "rate": args.rate, "duration_seconds": args.duration_seconds}),
    );
    report.row("targets", args.targets);
    report.row("source updates", format!("{count} at {:.1}/s", args.rate));
    report.set_latencies(latencies);
    report.latency_row();
    report.row("last update fully replicated after", seconds(behind));
    report.row(
        "ceiling (same client, same run)",
        format!("{ceiling:.0} creates/s"),
    );
    report.set("ceiling_per_second", ceiling);
    report.set("updates", count);
    let mut points: Vec<(f64, usize)> = written
        .iter()
        .map(|(v, t)| {
            (
                t.duration_since(started).as_secs_f64(),
                fo.observer.latencies(&fo.source, *v, *t).len(),
            )
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    report.set_convergence(points);
    report_writes(
        &mut report,
        &cursor,
        op,
        run,
        count as f64 * f64::from(args.targets),
        "source update × target",
    );
    report_operator(&mut report, cli, op, run, cpu).await;
    Ok(report)
}
