//! lodectl: lode's operator tool. `lodectl log inspect DIR` decodes a log offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lodectl", version, about = "lode's operator tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with a log directory offline (lode must not be running on it).
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Subcommand)]
enum LogCommand {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Log {
            command: LogCommand::Inspect { dir, records },
        } => {
            let dir = if dir.join("wal").is_dir() {
                dir.join("wal")
            } else {
                dir
            };
            match lode::wal::inspect::inspect_dir(&dir) {
                Ok(report) => {
                    print!("{}", lode::wal::inspect::render(&report, records));
                    if report.is_healthy() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(error) => {
                    eprintln!("lodectl: {error}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
