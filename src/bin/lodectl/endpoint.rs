//! endpoint health, status and hashkv, each asked of every endpoint, and the endpoints a
//! command covers (--endpoints, or every member's with --cluster).

use std::time::{Duration, Instant};

use clap::Subcommand;
use lode::alarm::{AlarmAction, AlarmType};
use lode::api::native::{MemberRequest, Request, Response};
use lode::ctl::{flags, output};

use crate::common::{connect, deadline, fetch_status, within};
use crate::maintenance::alarm;
use crate::Format;

#[derive(Subcommand)]
pub(crate) enum EndpointCommand {
    /// Checks each endpoint: a linearizable read of the key "health" and no active alarm.
    Health,
    /// Prints the status of each endpoint.
    Status,
    /// Prints the hash of the endpoint's history above its compaction point (etcd's HashKV),
    /// for comparing members at the same revision.
    Hashkv {
        /// The revision to hash up to (0: the latest applied).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// The endpoints a command covers: --endpoints, or with `cluster` every member's client URLs
/// from the member list of the first endpoint that answers (etcdctl's `--cluster`).
pub(crate) async fn endpoints_of(
    endpoints: &[String],
    cluster: bool,
    command_timeout: Duration,
) -> Result<Vec<String>, String> {
    if !cluster {
        return Ok(endpoints.to_vec());
    }
    let listed = deadline(command_timeout, async {
        let (client, _) = connect(endpoints).await?;
        let request = Request::Member(MemberRequest::List { linearizable: true });
        match client.request(&request).await.map_err(|e| e.to_string())? {
            Response::Members { members, .. } => Ok(members),
            other => Err(format!("unexpected response {other:?}")),
        }
    })
    .await
    .map_err(|e| format!("failed to fetch endpoints from etcd cluster member list: {e}"))?;
    Ok(listed
        .into_iter()
        .flat_map(|member| member.client_urls)
        .collect())
}

/// One endpoint's health as etcdctl's `endpoint health` checks it: a linearizable read of
/// the key "health" (timed), then no active alarm.
pub(crate) async fn endpoint_health(
    endpoint: String,
    command_timeout: Duration,
) -> output::EndpointHealth {
    let mut health = output::EndpointHealth {
        endpoint,
        ..Default::default()
    };
    let client = match connect(std::slice::from_ref(&health.endpoint)).await {
        Ok((client, _)) => client,
        Err(error) => {
            health.error = error;
            return health;
        }
    };
    let started = Instant::now();
    let checked = within(command_timeout, async {
        let read = Request::Range(lode::mvcc::request::RangeRequest {
            key: bytes::Bytes::from_static(b"health"),
            ..Default::default()
        });
        let read = client.request(&read).await.map_err(|e| e.to_string());
        let took = flags::go_duration_string(started.elapsed());
        // As etcdctl: a user who may not read the key still got an answer through consensus.
        let denied = lode::auth::AuthError::PermissionDenied.to_string();
        match read {
            Err(error) if error != denied => return (took, Err(error)),
            _ => {}
        }
        let alarms = alarm(&client, AlarmAction::Get, 0, AlarmType::None).await;
        (took, Ok(alarms))
    })
    .await;
    match checked {
        None => {
            health.took = flags::go_duration_string(started.elapsed());
            health.error = "context deadline exceeded".into();
        }
        Some((took, Err(error))) => {
            health.took = took;
            health.error = error;
        }
        Some((took, Ok(alarms))) => {
            health.took = took;
            match alarms {
                Ok(answer) if answer.alarms.is_empty() => health.health = true,
                Ok(answer) => {
                    health.error = String::from("Active Alarm(s): ");
                    for member in &answer.alarms {
                        health.error.push_str(match member.alarm {
                            AlarmType::Nospace | AlarmType::LogDiskFull => "NOSPACE ",
                            AlarmType::Corrupt => "CORRUPT ",
                            AlarmType::None => "UNKNOWN ",
                        });
                    }
                }
                Err(_) => health.error = "Unable to fetch the alarm list".into(),
            }
        }
    }
    health
}

/// `endpoint status` of every endpoint, as etcdctl: those that do not answer are reported on
/// standard error and make the command fail after the others are printed.
pub(crate) async fn endpoint_statuses(
    endpoints: &[String],
    command_timeout: Duration,
    format: Format,
) -> Result<String, String> {
    let mut statuses = Vec::new();
    let mut failed = false;
    for endpoint in endpoints {
        let answered = deadline(command_timeout, async {
            let (client, _) = connect(std::slice::from_ref(endpoint)).await?;
            fetch_status(&client).await
        })
        .await;
        match answered {
            Ok(status) => statuses.push((endpoint.clone(), status)),
            Err(error) => {
                eprintln!("Failed to get the status of endpoint {endpoint} ({error})");
                failed = true;
            }
        }
    }
    let text = match format {
        Format::Simple | Format::Protobuf => statuses
            .iter()
            .map(|(endpoint, status)| output::simple_status(endpoint, status))
            .collect(),
        Format::Json => {
            let list: Vec<serde_json::Value> = statuses
                .iter()
                .map(|(endpoint, status)| output::json_status(endpoint, status)[0].clone())
                .collect();
            serde_json::Value::Array(list).to_string() + "\n"
        }
        Format::Table => output::table_statuses(&statuses),
        Format::Fields => statuses
            .iter()
            .map(|(endpoint, status)| output::fields_status(endpoint, status))
            .collect(),
    };
    if failed {
        print!("{text}");
        return Err(String::new());
    }
    Ok(text)
}

/// `endpoint hashkv` of every endpoint, as etcdctl.
pub(crate) async fn endpoint_hashes(
    endpoints: &[String],
    revision: i64,
    command_timeout: Duration,
    format: Format,
) -> Result<String, String> {
    let mut hashes = Vec::new();
    let mut last_error = None;
    for endpoint in endpoints {
        let answered = deadline(command_timeout, async {
            let (client, _) = connect(std::slice::from_ref(endpoint)).await?;
            client
                .request(&Request::HashKv(revision))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match answered {
            Ok(Response::HashKv {
                header,
                hash,
                compact_revision,
                hash_revision,
            }) => hashes.push((
                endpoint.clone(),
                header,
                hash,
                compact_revision,
                hash_revision,
            )),
            Ok(other) => last_error = Some(format!("unexpected response {other:?}")),
            Err(error) => {
                eprintln!("Failed to get the hash of endpoint {endpoint} ({error})");
                last_error = Some(error);
            }
        }
    }
    let text = match format {
        Format::Simple | Format::Protobuf => hashes
            .iter()
            .map(|(endpoint, header, hash, compact, hash_revision)| {
                output::hash_kv(
                    endpoint,
                    header,
                    *hash,
                    *compact,
                    *hash_revision,
                    false,
                    false,
                )
            })
            .collect(),
        Format::Json => {
            let list: Vec<serde_json::Value> = hashes
                .iter()
                .map(|(endpoint, header, hash, compact, hash_revision)| {
                    output::json_hash_kv(endpoint, header, *hash, *compact, *hash_revision)
                })
                .collect();
            serde_json::Value::Array(list).to_string() + "\n"
        }
        Format::Table => {
            let rows: Vec<(String, u32, i64, i64)> = hashes
                .iter()
                .map(|(endpoint, _, hash, compact, hash_revision)| {
                    (endpoint.clone(), *hash, *hash_revision, *compact)
                })
                .collect();
            output::table_hash_kv(&rows)
        }
        Format::Fields => hashes
            .iter()
            .map(|(endpoint, header, hash, _, _)| output::fields_hash_kv(endpoint, header, *hash))
            .collect(),
    };
    if let Some(error) = last_error {
        print!("{text}");
        return Err(error);
    }
    Ok(text)
}
