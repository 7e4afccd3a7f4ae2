//! What a command that talks to the server asks (`Action`, built in main from the command
//! line), and running it: on an executor, within --command-timeout, its answer printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use glommio::Placement;
use lode::alarm::{AlarmAction, AlarmResponse, AlarmType};
use lode::api::native::Request;
use lode::ctl::output;

use crate::common::{connect, deadline, fail, fetch_status};
use crate::endpoint::{endpoint_hashes, endpoint_health, endpoint_statuses, endpoints_of};
use crate::kv::{print, Printer};
use crate::maintenance::{alarm, defrag};
use crate::member::{connect_to_leader, print_cluster, ClusterPrinter};
use crate::snapshot::save_snapshot;
use crate::Format;

/// What a command asks the server, and how to print the answer.
pub(crate) enum Action {
    Send(Request, Printer),
    EndpointStatus {
        cluster: bool,
    },
    HashKv {
        revision: i64,
        cluster: bool,
    },
    Health {
        cluster: bool,
    },
    Defrag {
        cluster: bool,
    },
    Perf {
        watch: bool,
    },
    /// A membership or leadership request, sent to the leader among the endpoints when
    /// `to_leader`.
    Cluster {
        request: Request,
        printer: ClusterPrinter,
        to_leader: bool,
    },
    SnapshotSave(PathBuf),
    AlarmList,
    AlarmDisarm,
}

/// Runs `action` and prints its answer; the exit status.
pub(crate) fn run(
    action: Action,
    format: Format,
    hex: bool,
    endpoints: Vec<String>,
    command_timeout: Duration,
) -> ExitCode {
    // A snapshot streams for as long as it takes, as etcdctl's does; the commands that visit
    // several endpoints time each visit.
    let timeout = (!matches!(
        action,
        Action::SnapshotSave(_)
            | Action::Health { .. }
            | Action::Defrag { .. }
            | Action::EndpointStatus { .. }
            | Action::HashKv { .. }
            | Action::Perf { watch: true }
    ))
    .then_some(command_timeout);
    let outcome = lode::executor::builder(Placement::Unbound).spawn(move || async move {
        let work = async move {
            match action {
                Action::Health { cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    let checks = endpoints
                        .into_iter()
                        .map(|endpoint| endpoint_health(endpoint, command_timeout));
                    let list = futures::future::join_all(checks).await;
                    let text = match format {
                        Format::Json => output::json_health(&list).to_string() + "\n",
                        Format::Table => output::table_health(&list),
                        Format::Fields => output::fields_health(&list),
                        Format::Simple | Format::Protobuf => {
                            let (out, err) = output::simple_health(&list);
                            eprint!("{err}");
                            out
                        }
                    };
                    if list.iter().any(|health| !health.error.is_empty()) {
                        print!("{text}");
                        return Err("unhealthy cluster".into());
                    }
                    return Ok(text);
                }
                Action::Defrag { cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    return defrag(&endpoints, command_timeout).await;
                }
                Action::EndpointStatus { cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    return endpoint_statuses(&endpoints, command_timeout, format).await;
                }
                Action::HashKv { revision, cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    return endpoint_hashes(&endpoints, revision, command_timeout, format).await;
                }
                Action::Perf { watch: true } => return crate::top::watch(&endpoints).await,
                _ => {}
            }
            let (client, endpoint) = connect(&endpoints).await?;
            match action {
                Action::Health { .. }
                | Action::Defrag { .. }
                | Action::EndpointStatus { .. }
                | Action::HashKv { .. } => Err("handled above".into()),
                Action::Send(request, printer) => {
                    let response = client.request(&request).await.map_err(|e| match printer {
                        // etcdctl's words around the server's.
                        Printer::LeaseGranted => format!("failed to grant lease ({e})"),
                        Printer::LeaseRevoked(_) => format!("failed to revoke lease ({e})"),
                        _ => e.to_string(),
                    })?;
                    print(&printer, &response, format, hex)
                }
                Action::SnapshotSave(file) => {
                    save_snapshot(&client, &file).await?;
                    Ok(format!("Snapshot saved at {}\n", file.display()))
                }
                Action::AlarmList | Action::AlarmDisarm => {
                    let listed = alarm(&client, AlarmAction::Get, 0, AlarmType::None).await?;
                    let answer = if matches!(action, Action::AlarmList) {
                        listed
                    } else {
                        // etcdctl's disarm: deactivate each active alarm, answer what was cleared.
                        let mut cleared = AlarmResponse {
                            header: listed.header,
                            alarms: Vec::new(),
                        };
                        for member in &listed.alarms {
                            let answer = alarm(
                                &client,
                                AlarmAction::Deactivate,
                                member.member_id,
                                member.alarm,
                            )
                            .await?;
                            cleared.header = answer.header;
                            cleared.alarms.extend(answer.alarms);
                        }
                        cleared
                    };
                    match format {
                        Format::Json => Ok(output::json_alarms(&answer).to_string() + "\n"),
                        Format::Fields => Ok(output::fields_alarms(&answer)),
                        Format::Table | Format::Protobuf => {
                            Err("table format is only supported by endpoint status".into())
                        }
                        Format::Simple => Ok(output::simple_alarms(&answer)),
                    }
                }
                Action::Cluster {
                    request,
                    printer,
                    to_leader,
                } => {
                    let client = if to_leader {
                        connect_to_leader(&endpoints).await?
                    } else {
                        client
                    };
                    let response = client.request(&request).await.map_err(|e| e.to_string())?;
                    print_cluster(&printer, &response, format)
                }
                Action::Perf { .. } => {
                    let status = fetch_status(&client).await?;
                    match format {
                        Format::Simple => Ok(output::simple_perf(&endpoint, &status)),
                        Format::Json => {
                            Ok(output::json_perf(&endpoint, &status).to_string() + "\n")
                        }
                        Format::Table | Format::Fields | Format::Protobuf => Err(format!(
                            "{} not supported as output format by perf",
                            format!("{format:?}").to_ascii_lowercase()
                        )),
                    }
                }
            }
        };
        match timeout {
            None => work.await,
            Some(timeout) => deadline(timeout, work).await,
        }
    });
    let result = match outcome {
        Ok(handle) => handle.join().map_err(|e| e.to_string()).and_then(|r| r),
        Err(error) => Err(format!("cannot start an executor: {error}")),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            // What was printed before the failure (a health report) is kept.
            let _ = std::io::Write::flush(&mut std::io::stdout());
            fail(&error)
        }
    }
}
