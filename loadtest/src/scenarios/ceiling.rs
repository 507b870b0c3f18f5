//! The physical limit: how fast this client creates ConfigMaps on this API
//! server with this concurrency. Fan-out is compared with it.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::cli::{CeilingArgs, Cli};
use crate::cluster::Run;
use crate::operator::Operator;
use crate::report::Report;

/// Creates `count` ConfigMaps in a namespace of their own; returns creates/s.
pub async fn measure(run: &Run, count: u32) -> anyhow::Result<f64> {
    let namespace = run.name("ceiling");
    run.create_namespaces(std::slice::from_ref(&namespace))
        .await?;
    let api: Api<ConfigMap> = Api::namespaced(run.client.clone(), &namespace);
    let bar = run.progress(u64::from(count), "ceiling creates");
    let started = Instant::now();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..count)
        .map(|i| {
            let (api, bar) = (api.clone(), bar.clone());
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("c{i:05}")),
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
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(f64::from(count) / elapsed)
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
