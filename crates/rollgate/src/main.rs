//! `rollgate`: the server (`rollgate serve`), the upkeep of its store
//! (`migrate`, `backup`, `restore`) and the command line that manages it over
//! HTTP (`apply`, `export`, `flags`, `metrics`, `token`, `eval`, `audit`, `deliveries`).
//!
//! Architecture invariant: apart from `serve`, which wires the store into the
//! server, and `migrate`, `backup` and `restore`, which work on the store
//! itself, the CLI knows the server only through its public HTTP API, exactly
//! as any other client would. It prints text for people (`--json` prints the
//! server's JSON for scripts), errors on standard error, and exits with 1 on
//! any failure.

mod cli;
mod client;
mod commands;
mod convert;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(&args),
        Command::Migrate(args) => commands::data::migrate(&args),
        Command::Backup(args) => commands::data::backup(&args),
        Command::Restore(args) => commands::data::restore(&args),
        command => commands::run(command, &cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
