//! The scenarios, and the fan-out step most of them start from.

pub mod ceiling;
pub mod fairness;
pub mod fanout;
pub mod idle;
pub mod mirrors;
pub mod noise;
pub mod shards;
pub mod updates;

use std::time::{Duration, Instant};

use crate::audit::{self, AuditCursor};
use crate::cli::Cli;
use crate::cluster::{RUN_LABEL, Run};
use crate::observe::Observer;
use crate::operator::Operator;
use crate::report::Report;

/// A converged fan-out: one source, a mirror, N replicas.
pub struct Fanout {
    /// Replicas/s of the raw client doing the same fan-out, observed alike.
    pub observed_ceiling: f64,
    pub source: String,
    pub targets: Vec<String>,
    pub observer: Observer,
    pub started: Instant,
    pub converged_after: f64,
}

/// Creates the namespaces, the source (version 1) and a mirror, and waits
/// until every target holds the source's content.
pub async fn fan_out(cli: &Cli, run: &Run, n: u32) -> anyhow::Result<Fanout> {
    let targets = run.targets(n);
    let mut namespaces = vec![run.home(), run.source()];
    namespaces.extend(targets.iter().cloned());
    run.create_namespaces(&namespaces).await?;
    run.settle(&namespaces).await?;
    let observed_ceiling =
        ceiling::observed_fanout(run, &targets, Duration::from_secs(cli.timeout_seconds)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let source = run.name("cfg");
    run.create_source(&run.source(), &source, &[(RUN_LABEL, &run.id)], 1)
        .await?;
    let observer = Observer::start(
        &run.client,
        std::slice::from_ref(&source),
        &targets,
        &run.payload,
    )
    .await?;
    let started = Instant::now();
    run.create_mirror("fanout", &targets, &[(RUN_LABEL, &run.id)])
        .await?;
    let bar = run.progress(u64::from(n), "replicas");
    observer
        .wait_all(
            std::slice::from_ref(&source),
            1,
            &bar,
            Duration::from_secs(cli.timeout_seconds),
        )
        .await?;
    bar.finish_and_clear();
    let converged_after = started.elapsed().as_secs_f64();
    Ok(Fanout {
        observed_ceiling,
        source,
        targets,
        observer,
        started,
        converged_after,
    })
}

/// Adds the operator's writes since `cursor` to the report, per replica.
pub fn report_writes(
    report: &mut Report,
    cursor: &AuditCursor,
    op: &Operator,
    run: &Run,
    per: f64,
    per_what: &str,
) {
    match cursor.writes(&op.agent, &run.prefix()) {
        Some(writes) => {
            let total = audit::total(&writes);
            report.row(
                "operator writes",
                format!("{total} ({})", describe(&writes)),
            );
            report.row(
                &format!("writes per {per_what}"),
                format!("{:.3}", total as f64 / per.max(1.0)),
            );
            report.set("writes", &writes);
            report.set("writes_per_replica", total as f64 / per.max(1.0));
        }
        None => report.row(
            "operator writes",
            "not measured (no --audit-log / CONFIGMIRROR_AUDIT_LOG)",
        ),
    }
}

fn describe(writes: &crate::observe::VerbCounts) -> String {
    if writes.is_empty() {
        return "none".into();
    }
    writes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operator's memory and CPU, and the database rows, when known.
pub async fn report_operator(
    report: &mut Report,
    cli: &Cli,
    op: &Operator,
    run: &Run,
    cpu_before: Option<f64>,
) {
    if let Some(rss) = op.rss().await {
        report.row("operator RSS", format!("{:.1} MiB", rss as f64 / 1048576.0));
        report.set("operator_rss_bytes", rss);
    }
    if let (Some(before), Some(after)) = (cpu_before, op.cpu_seconds().await) {
        report.row("operator CPU", format!("{:.2} s", after - before));
        report.set("operator_cpu_seconds", after - before);
    }
    if let Some(url) = &cli.database_url {
        match database_rows(url, &run.home()).await {
            Ok(rows) => {
                report.row("database rows", rows);
                report.set("database_rows", rows);
            }
            Err(e) => report.row("database rows", format!("not read: {e}")),
        }
    }
}

async fn database_rows(url: &str, mirror_namespace: &str) -> anyhow::Result<i64> {
    let pool = sqlx::PgPool::connect(url).await?;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(
        "SELECT count(*) FROM configmaps WHERE configmirror_namespace = $1".to_string(),
    ))
    .bind(mirror_namespace)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(rows)
}

pub fn seconds(s: f64) -> String {
    format!("{s:.3} s")
}
