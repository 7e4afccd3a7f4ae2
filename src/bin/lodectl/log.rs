//! log inspect: decodes a log directory offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::{Cli, Command};

#[derive(Subcommand)]
pub(crate) enum LogCommand {
    /// Decode every segment: records, terms, indexes, checksums, torn tails and corruption.
    /// Exits 0 when recovery would accept the log, 1 when it would refuse.
    Inspect {
        /// The log directory (a data dir's `wal/`, or the data dir itself).
        dir: PathBuf,
        /// List every record, not only per-segment summaries.
        #[arg(long)]
        records: bool,
    },
}

/// `lodectl log inspect`.
pub(crate) fn inspect(cli: &Cli) -> ExitCode {
    let Command::Log {
        command: LogCommand::Inspect { dir, records },
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let dir = if dir.join("wal").is_dir() {
        dir.join("wal")
    } else {
        dir.clone()
    };
    match lode::wal::inspect::inspect_dir(&dir) {
        Ok(report) => {
            print!("{}", lode::wal::inspect::render(&report, *records));
            if report.is_healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}
