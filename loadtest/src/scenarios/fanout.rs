//! One source into N target namespaces: convergence, latency, writes per
//! replica, and the throughput as a share of the API server's ceiling.

use std::time::Duration;

use crate::audit::AuditCursor;
use crate::cli::{Cli, FanoutArgs};
use crate::cluster::Run;
use crate::operator::Operator;
use crate::report::Report;

use super::{ceiling, fan_out, report_operator, report_writes, seconds};

pub async fn run(cli: &Cli, run: &Run, op: &Operator, args: &FanoutArgs) -> anyhow::Result<Report> {
    let ceiling = ceiling::measure(run, args.targets).await?;
    let cpu = op.cpu_seconds().await;
    let cursor = AuditCursor::now(cli.audit_log.as_ref());
    let fo = fan_out(cli, run, args.targets).await?;
    // Writes land in the audit log just after they are acknowledged.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let n = f64::from(args.targets);
    let throughput = n / fo.converged_after;
    let mut report = Report::new(
        "fanout",
        &run.id,
        serde_json::json!({"targets": args.targets}),
    );
    report.row("targets", args.targets);
    report.row("converged after", seconds(fo.converged_after));
    let latencies = fo.observer.latencies(&fo.source, 1, fo.started);
    report.set_latencies(latencies);
    report.latency_row();
    report.row("fan-out throughput", format!("{throughput:.0} replicas/s"));
    report.row(
        "ceiling, one namespace (same client, same run)",
        format!("{ceiling:.0} creates/s"),
    );
    report.row("ratio to ceiling", format!("{:.2}", throughput / ceiling));
    report.row(
        "raw fan-out by the client, observed alike",
        format!("{:.0} replicas/s", fo.observed_ceiling),
    );
    report.row(
        "ratio to the raw fan-out",
        format!("{:.2}", throughput / fo.observed_ceiling),
    );
    report.set("observed_ceiling_per_second", fo.observed_ceiling);
    report.set(
        "ratio_to_observed_ceiling",
        throughput / fo.observed_ceiling,
    );
    report.set("converged_seconds", fo.converged_after);
    report.set("throughput_per_second", throughput);
    report.set("ceiling_per_second", ceiling);
    report.set("ratio_to_ceiling", throughput / ceiling);
    report.set_convergence(fo.observer.convergence(
        std::slice::from_ref(&fo.source),
        1,
        fo.started,
    ));
    report_writes(&mut report, &cursor, op, run, n, "replica");
    report_operator(&mut report, cli, op, run, cpu).await;
    Ok(report)
}
