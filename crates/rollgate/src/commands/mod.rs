//! One module per command group. Each command talks to the server through
//! [`Client`] and prints through [`crate::output`]; `serve` runs the server
//! itself.

pub mod audit;
pub mod config;
pub mod data;
pub mod deliveries;
pub mod eval;
pub mod experiment;
pub mod flags;
pub mod incident;
pub mod metrics;
pub mod report;
pub mod rollout;
pub mod serve;
pub mod simulate;
pub mod tokens;

use anyhow::{Context as _, anyhow};

use crate::cli::{Command, Global};
use crate::client::Client;

/// Runs a client command on a single-threaded runtime: it waits on one
/// request at a time.
pub fn run(command: Command, global: &Global) -> anyhow::Result<()> {
    // The simulator needs no server.
    let command = match command {
        Command::Simulate(args) => return simulate::run(global, &args),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = Client::new(&global.server, global.token.clone())?;
    runtime.block_on(async {
        match command {
            Command::Apply(args) => config::apply(&client, global, &args).await,
            Command::Export(args) => config::export(&client, global, &args).await,
            Command::Flags(command) => flags::run(&client, global, command).await,
            Command::Metrics(command) => metrics::run(&client, global, command).await,
            Command::Experiment(command) => experiment::run(&client, global, command).await,
            Command::Rollout(command) => rollout::run(&client, global, command).await,
            Command::Token(command) => tokens::run(&client, global, command).await,
            Command::Eval(args) => eval::run(&client, global, &args).await,
            Command::Audit(args) => audit::run(&client, global, &args).await,
            Command::Deliveries(args) => deliveries::run(&client, global, &args).await,
            Command::Report(command) => report::run(&client, global, command).await,
            Command::Incident(command) => incident::run(&client, global, command).await,
            Command::Serve(_) => Err(anyhow!("`serve` does not run as a client command")),
            Command::Migrate(_) | Command::Backup(_) | Command::Restore(_) => Err(anyhow!(
                "`migrate`, `backup` and `restore` do not run as client commands"
            )),
            Command::Simulate(_) => Err(anyhow!("`simulate` does not run as a client command")),
        }
    })
}

/// Checks a flag key given on the command line before it goes into a URL.
fn flag_key(key: &str) -> anyhow::Result<&str> {
    ::flags::check_key(key).map_err(|e| anyhow!("invalid flag key: {e}"))?;
    Ok(key)
}
