//! The physical limit: how fast this client creates ConfigMaps on this API
//! server with this concurrency. Fan-out is compared with it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::cli::{CeilingArgs, Cli};
use crate::cluster::Run;
use crate::observe::Observer;
use crate::operator::Operator;
use crate::report::Report;

/// Creates `count` ConfigMaps in a namespace of their own; returns creates/s.
pub async fn measure(run: &Run, count: u32) -> anyhow::Result<f64> {
    let namespace = run.name("ceiling");
    run.create_namespaces(std::slice::from_ref(&namespace))
        .await?;
    let names: Vec<(String, String)> = (0..count)
        .map(|i| (namespace.clone(), format!("c{i:05}")))
        .collect();
    let started = Instant::now();
    create_all(run, &names, "ceiling creates").await?;
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// The raw client doing the fan-out itself: one ConfigMap of the same name
/// and content into each target namespace, watched by the same observer
/// that times the operator. Replicas/s until the observer has seen them
/// all: the physical limit of a fan-out measured this way.
pub async fn observed_fanout(
    run: &Run,
    targets: &[String],
    timeout: Duration,
) -> anyhow::Result<f64> {
    let name = run.name("ceiling");
    let observer = Observer::start(
        &run.client,
        std::slice::from_ref(&name),
        targets,
        &run.payload,
    )
    .await?;
    let names: Vec<(String, String)> = targets
        .iter()
        .map(|ns| (ns.clone(), name.clone()))
        .collect();
    let started = Instant::now();
    create_all(run, &names, "raw fan-out").await?;
    observer
        .wait_all(
            std::slice::from_ref(&name),
            1,
            &indicatif::ProgressBar::hidden(),
            timeout,
        )
        .await?;
    Ok(targets.len() as f64 / started.elapsed().as_secs_f64())
}

/// Creates (namespace, name) ConfigMaps `run.concurrency` at a time.
pub async fn create_all(run: &Run, names: &[(String, String)], what: &str) -> anyhow::Result<()> {
    let bar = run.progress(names.len() as u64, what);
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(names.iter().cloned())
        .map(|(namespace, name)| {
            let bar = bar.clone();
            let api: Api<ConfigMap> = Api::namespaced(run.client.clone(), &namespace);
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..Default::default()
                },
                data: Some(run.content(1)),
                ..Default::default()
            };
            async move {
                api.create(&PostParams::default(), &cm).await?;
                bar.inc(1);
                Ok(())
            }
        })
        .buffer_unordered(run.concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

pub async fn run(
    cli: &Cli,
    run: &Run,
    _op: &Operator,
    args: &CeilingArgs,
) -> anyhow::Result<Report> {
    let rate = measure(run, args.count).await?;
    let mut report = Report::new(
        "ceiling",
        &run.id,
        serde_json::json!({"count": args.count, "concurrency": cli.concurrency}),
    );
    report.row("ConfigMaps created", args.count);
    report.row("concurrency", cli.concurrency);
    report.row("create throughput", format!("{rate:.0} /s"));
    report.set("creates_per_second", rate);
    Ok(report)
}
