//! The load generator: drives any operator that serves the ConfigMirror CRD
//! (using only the reference-compatible spec fields) and measures what it
//! does: convergence, latency, API writes, memory and CPU, database rows.

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod members;
pub mod observe;
pub mod operator;
pub mod report;
pub mod scenarios;
pub mod stats;

use cli::{Cli, Scenario};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.scenario, Scenario::Chaos(_) | Scenario::Scale(_)) {
        return run_sharded(cli).await;
    }
    let run = cluster::Run::new(&cli).await?;
    let operator = operator::Operator::attach(&cli, &run).await?;
    let result = tokio::time::timeout(std::time::Duration::from_secs(cli.timeout_seconds), async {
        match &cli.scenario {
            Scenario::Fanout(a) => scenarios::fanout::run(&cli, &run, &operator, a).await,
            Scenario::Mirrors(a) => scenarios::mirrors::run(&cli, &run, &operator, a).await,
            Scenario::Updates(a) => scenarios::updates::run(&cli, &run, &operator, a).await,
            Scenario::Idle(a) => scenarios::idle::run(&cli, &run, &operator, a).await,
            Scenario::Noise(a) => scenarios::noise::run(&cli, &run, &operator, a).await,
            Scenario::Ceiling(a) => scenarios::ceiling::run(&cli, &run, &operator, a).await,
            Scenario::Fairness(a) => scenarios::fairness::run(&cli, &run, &operator, a).await,
            Scenario::Chaos(_) | Scenario::Scale(_) => unreachable!("run_sharded runs these"),
        }
    })
    .await;
    let outcome = finish(&cli, result);
    if !cli.keep {
        run.cleanup().await;
    }
    operator.stop().await;
    outcome
}

/// The sharded scenarios start their own members instead of one operator.
async fn run_sharded(cli: Cli) -> anyhow::Result<()> {
    let run = cluster::Run::new(&cli).await?;
    let mut members = members::Members::new(&cli, &run).await?;
    let result = tokio::time::timeout(std::time::Duration::from_secs(cli.timeout_seconds), async {
        match &cli.scenario {
            Scenario::Chaos(a) => scenarios::shards::chaos(&cli, &run, &mut members, a).await,
            Scenario::Scale(a) => scenarios::shards::scale(&cli, &run, &mut members, a).await,
            _ => unreachable!("only sharded scenarios come here"),
        }
    })
    .await;
    let outcome = finish(&cli, result);
    if !cli.keep {
        // Mirrors' finalizers need a live member.
        run.cleanup().await;
    }
    members.shutdown(cli.keep).await;
    outcome
}

fn finish(
    cli: &Cli,
    result: Result<anyhow::Result<report::Report>, tokio::time::error::Elapsed>,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(report)) => {
            report.print();
            let written = report.write(&cli.out)?;
            for path in written {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(anyhow::anyhow!(
            "the run exceeded --timeout-seconds {}",
            cli.timeout_seconds
        )),
    }
}
