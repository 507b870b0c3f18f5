//! After a fan-out converged, nothing changes for a while: how many writes
//! does the operator make? (The goal is none; the Go reference made ~670/s.)

use std::time::Duration;

use crate::audit::AuditCursor;
use crate::cli::{Cli, IdleArgs};
use crate::cluster::Run;
use crate::operator::Operator;
use crate::report::Report;

use super::{fan_out, report_operator, report_writes, seconds};

pub async fn run(cli: &Cli, run: &Run, op: &Operator, args: &IdleArgs) -> anyhow::Result<Report> {
    let fo = fan_out(cli, run, args.targets).await?;
    // Let the convergence's own writes (status, events) land first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = op.cpu_seconds().await;
    let cursor = AuditCursor::now(cli.audit_log.as_ref());
    let bar = run.progress(args.seconds, "idle seconds");
    for _ in 0..args.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut report = Report::new(
        "idle",
        &run.id,
        serde_json::json!({"targets": args.targets, "seconds": args.seconds}),
    );
    report.row("targets", args.targets);
    report.row("converged after", seconds(fo.converged_after));
    report.row("quiet period", format!("{} s", args.seconds));
    report_writes(&mut report, &cursor, op, run, args.seconds as f64, "second");
    report_operator(&mut report, cli, op, run, cpu).await;
    Ok(report)
}
