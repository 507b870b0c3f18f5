use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    configmirror_loadtest::run(configmirror_loadtest::cli::Cli::parse()).await
}
