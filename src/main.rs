use clap::Parser;
use configmirror::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => configmirror::run::run(*args).await,
        Command::Migrate(args) => configmirror::run::migrate(args).await,
        Command::Check(args) => configmirror::check::run(args).await,
        Command::PrepareUpgrade(args) => Ok(configmirror::upgrade::run(args).await?),
        Command::Crdgen => {
            print!("{}", configmirror::api::crd_yaml());
            Ok(())
        }
    }
}
