//! The load generator: drives any operator that serves the ConfigMirror CRD
//! (using only the reference-compatible spec fields) and measures what it
//! does: convergence, latency, API writes, memory and CPU, database rows.

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod observe;
pub mod operator;
pub mod report;
pub mod scenarios;
pub mod stats;

use cli::{Cli, Scenario};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
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
        }
    })
    .await;
    let outcome = match result {
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
    };
    if !cli.keep {
        run.cleanup().await;
    }
    operator.stop().await;
    outcome
}
