//! `herald`: the command line for developers and operators. Each subcommand lives in its own
//! module; this file parses (clap), runs, and turns every failure into one line and an exit code:
//! 2 for a usage error, 1 for anything else, never a backtrace.

mod args;
mod dlq;
mod inbox;
mod listen;
mod publish;
mod revoke;
mod token;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // clap's message is several lines (usage, tip); one line says it all.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid usage").trim_start_matches("error: ");
            eprintln!("herald: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Token(a) => token::run(a),
        Command::Publish(a) => publish::run(*a).await,
        Command::Listen(a) => listen::run(a).await,
        Command::Inbox(a) => inbox::run(a).await,
        Command::Dlq(a) => dlq::run(a).await,
        Command::Revoke(a) => revoke::run(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}
