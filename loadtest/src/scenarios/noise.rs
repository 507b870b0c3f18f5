//! ConfigMaps nobody selects, in the source namespace and elsewhere: the
//! operator's memory must not grow with them. A source update afterwards
//! shows replication still works.

use std::time::Duration;

use crate::cli::{Cli, NoiseArgs};
use crate::cluster::Run;
use crate::operator::Operator;
use crate::report::Report;

use super::{fan_out, report_operator};

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("unknown".into(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    })
}

pub async fn run(cli: &Cli, run: &Run, op: &Operator, args: &NoiseArgs) -> anyhow::Result<Report> {
    let fo = fan_out(cli, run, args.targets).await?;
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
    let before = op.rss().await;

    let elsewhere = run.name("noise");
    run.create_namespaces(std::slice::from_ref(&elsewhere))
        .await?;
    // Half in the source namespace (no label any mirror selects), half elsewhere.
    let names: Vec<(String, String)> = (0..args.configmaps)
        .map(|i| {
            let ns = if i % 2 == 0 {
                run.source()
            } else {
                elsewhere.clone()
            };
            (ns, format!("noise-{i:06}"))
        })
        .collect();
    super::ceiling::create_all(run, &names, "unselected ConfigMaps").await?;
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
    let after = op.rss().await;

    // Still replicating: a source update reaches every target.
    run.update_source(&run.source(), &fo.source, 2).await?;
    let bar = run.progress(u64::from(args.targets), "update after noise");
    fo.observer
        .wait_all(
            std::slice::from_ref(&fo.source),
            2,
            &bar,
            Duration::from_secs(cli.timeout_seconds),
        )
        .await?;
    bar.finish_and_clear();

    let mut report = Report::new(
        "noise",
        &run.id,
        serde_json::json!({"configmaps": args.configmaps, "targets": args.targets}),
    );
    report.row("unselected ConfigMaps", args.configmaps);
    report.row("operator RSS with 0", mib(before));
    report.row(
        &format!("operator RSS with {}", args.configmaps),
        mib(after),
    );
    if let (Some(b), Some(a)) = (before, after) {
        report.row(
            "difference",
            format!("{:+.1} MiB", (a as f64 - b as f64) / 1048576.0),
        );
    }
    report.row(
        "replication after the noise",
        format!("{} targets updated", args.targets),
    );
    report.set("rss_before_bytes", before);
    report.set("rss_after_bytes", after);
    report_operator(&mut report, cli, op, run, None).await;
    Ok(report)
}
