//! M mirrors, each with K sources, into the same T targets: M×K×T replicas.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::audit::AuditCursor;
use crate::cli::{Cli, MirrorsArgs};
use crate::cluster::{RUN_LABEL, Run};
use crate::observe::Observer;
use crate::operator::Operator;
use crate::report::Report;

use super::{report_operator, report_writes, seconds};

pub async fn run(
    cli: &Cli,
    run: &Run,
    op: &Operator,
    args: &MirrorsArgs,
) -> anyhow::Result<Report> {
    let targets = run.targets(args.targets);
    let mut namespaces = vec![run.home(), run.source()];
    namespaces.extend(targets.iter().cloned());
    run.create_namespaces(&namespaces).await?;
    run.settle(&namespaces).await?;
    let mut sources = Vec::new();
    for m in 0..args.mirrors {
        for k in 0..args.sources {
            let name = run.name(&format!("m{m:03}-s{k:02}"));
            let mirror = format!("m{m:03}");
            run.create_source(
                &run.source(),
                &name,
                &[(RUN_LABEL, &run.id), ("mirror", &mirror)],
                1,
            )
            .await?;
            sources.push(name);
        }
    }
    let observer = Observer::start(&run.client, &sources, &targets, &run.payload).await?;
    let cpu = op.cpu_seconds().await;
    let cursor = AuditCursor::now(cli.audit_log.as_ref());
    let started = Instant::now();
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..args.mirrors)
        .map(|m| {
            let mirror = format!("m{m:03}");
            let targets = &targets;
            async move {
                run.create_mirror(
                    &mirror,
                    targets,
                    &[(RUN_LABEL, &run.id), ("mirror", &mirror)],
                )
                .await
            }
        })
        .buffer_unordered(run.concurrency)
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let total = u64::from(args.mirrors * args.sources * args.targets);
    let bar = run.progress(total, "replicas");
    observer
        .wait_all(&sources, 1, &bar, Duration::from_secs(cli.timeout_seconds))
        .await?;
    bar.finish_and_clear();
    let converged = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut report = Report::new(
        "mirrors",
        &run.id,
        serde_json::json!({"mirrors": args.mirrors, "sources": args.sources, "targets": args.targets}),
    );
    report.row(
        "mirrors × sources × targets",
        format!(
            "{} × {} × {} = {total}",
            args.mirrors, args.sources, args.targets
        ),
    );
    report.row("converged after", seconds(converged));
    report.row(
        "throughput",
        format!("{:.0} replicas/s", total as f64 / converged),
    );
    let latencies: Vec<f64> = sources
        .iter()
        .flat_map(|s| observer.latencies(s, 1, started))
        .collect();
    report.set_latencies(latencies);
    report.latency_row();
    report.set("converged_seconds", converged);
    report.set_convergence(observer.convergence(&sources, 1, started));
    report_writes(&mut report, &cursor, op, run, total as f64, "replica");
    report_operator(&mut report, cli, op, run, cpu).await;
    Ok(report)
}
