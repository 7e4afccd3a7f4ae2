//! lease grant, revoke, timetolive, list and keep-alive.

use std::process::ExitCode;

use clap::Subcommand;
use glommio::Placement;
use lode::api::native::{LeaseAnswer, LeaseQuery, Request, Response};
use lode::ctl::output;
use lode::lease::LeaseRequest;
use lode::mvcc::request::WriteRequest;

use crate::action::Action;
use crate::common::{connect, fail};
use crate::kv::Printer;
use crate::{Cli, Command, Format};

#[derive(Subcommand)]
pub(crate) enum LeaseCommand {
    /// Creates a lease with a TTL in seconds.
    Grant {
        /// TTL in seconds.
        ttl: String,
    },
    /// Revokes a lease and deletes its keys.
    Revoke {
        /// The lease ID (hexadecimal).
        id: String,
    },
    /// Shows a lease's TTL and remaining time.
    Timetolive {
        /// The lease ID (hexadecimal).
        id: String,
        /// Also list the keys attached to it.
        #[arg(long)]
        keys: bool,
    },
    /// Lists every lease.
    List,
    /// Keeps a lease alive until interrupted (or once).
    KeepAlive {
        /// The lease ID (hexadecimal).
        id: String,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
}

fn lease_id_arg(id: &str) -> Result<i64, String> {
    i64::from_str_radix(id, 16)
        .map_err(|error| format!("bad lease ID arg ({error}), expecting ID in Hex"))
}

/// What the lease commands ask the server (keep-alive runs on its own).
pub(crate) fn build(command: LeaseCommand) -> Result<Action, String> {
    Ok(match command {
        LeaseCommand::Grant { ttl } => {
            let ttl: i64 = ttl.parse().map_err(|error| format!("bad TTL ({error})"))?;
            Action::Send(
                Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl })),
                Printer::LeaseGranted,
            )
        }
        LeaseCommand::Revoke { id } => {
            let id = lease_id_arg(&id)?;
            Action::Send(
                Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id })),
                Printer::LeaseRevoked(id),
            )
        }
        LeaseCommand::Timetolive { id, keys } => Action::Send(
            Request::Lease(LeaseQuery::TimeToLive {
                id: lease_id_arg(&id)?,
                keys,
            }),
            Printer::TimeToLive { keys },
        ),
        LeaseCommand::List => Action::Send(Request::Lease(LeaseQuery::Leases), Printer::Leases),
        LeaseCommand::KeepAlive { .. } => unreachable!("handled before connecting"),
    })
}

/// `lodectl lease keep-alive`.
pub(crate) fn run_keep_alive(cli: &Cli) -> ExitCode {
    let Command::Lease {
        command: LeaseCommand::KeepAlive { id, once },
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let id = match lease_id_arg(id) {
        Ok(id) => id,
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::from(1);
        }
    };
    let (endpoints, format, once) = (cli.endpoints.clone(), cli.write_out, *once);
    if matches!(format, Format::Table) {
        return fail("table not supported as output format by lease keep-alive");
    }
    let outcome = lode::executor::builder(Placement::Unbound)
        .spawn(move || async move { keep_alive(&endpoints, id, once, format).await })
        .map_err(|e| e.to_string())
        .and_then(|handle| handle.join().map_err(|e| e.to_string()))
        .and_then(|result| result);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}

/// `lodectl lease keep-alive`: renews the lease every third of its TTL and prints each answer,
/// until the lease is gone (or after one renewal with `once`), as etcdctl's.
async fn keep_alive(
    endpoints: &[String],
    id: i64,
    once: bool,
    format: Format,
) -> Result<(), String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    loop {
        let response = client
            .request(&Request::Lease(LeaseQuery::KeepAlive(id)))
            .await
            .map_err(|e| e.to_string())?;
        let Response::Lease(LeaseAnswer::KeepAlive { header, ttl, .. }) = response else {
            return Err(format!("unexpected response {response:?}"));
        };
        if ttl <= 0 {
            if once {
                return Err("etcdserver: requested lease not found".into());
            }
            if format != Format::Json {
                println!("lease {id:016x} expired or revoked.");
            }
            return Ok(());
        }
        let line = match format {
            Format::Json => output::json_keep_alive(&header, id, ttl).to_string() + "\n",
            Format::Fields => output::fields_keep_alive(&header, id, ttl),
            _ => output::simple_keep_alive(id, ttl),
        };
        print!("{line}");
        let _ = std::io::stdout().flush();
        if once {
            return Ok(());
        }
        glommio::timer::sleep(std::time::Duration::from_secs_f64(
            (ttl as f64 / 3.0).max(0.5),
        ))
        .await;
    }
}
