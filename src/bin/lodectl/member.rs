//! member add, remove, update, list and promote, and move-leader: membership and leadership
//! requests (promote and move-leader asked of the leader), and how etcdctl prints the answers.

use clap::Subcommand;
use lode::api::native::{MemberRequest, Request, Response};
use lode::client::Client;
use lode::ctl::output;

use crate::action::Action;
use crate::common::{connect, fetch_status};
use crate::Format;

#[derive(Subcommand)]
pub(crate) enum MemberCommand {
    /// Adds a member (it is then started with --initial-cluster-state existing).
    Add {
        /// The new member's name (for the settings printed).
        name: String,
        /// Its peer URLs, comma separated.
        #[arg(long)]
        peer_urls: String,
        /// Add it as a learner (replicated to, not voting).
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member.
    Remove {
        /// Its ID (hexadecimal).
        id: String,
    },
    /// Changes a member's peer URLs.
    Update {
        /// Its ID (hexadecimal).
        id: String,
        /// Its new peer URLs, comma separated.
        #[arg(long)]
        peer_urls: String,
    },
    /// Lists the members.
    List {
        /// Confirm with the leader first (etcd's --consistency=l).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Promotes a learner that has caught up to a voting member.
    Promote {
        /// Its ID (hexadecimal).
        id: String,
    },
}

pub(crate) enum ClusterPrinter {
    Added(String),
    Removed(u64),
    Updated(u64),
    Promoted(u64),
    List,
    MovedTo(u64),
}

pub(crate) fn member_id_arg(id: &str) -> Result<u64, String> {
    u64::from_str_radix(id, 16)
        .map_err(|_| format!("bad member ID arg ({id}), expecting ID in Hex"))
}

fn peer_urls_arg(urls: &str) -> Vec<String> {
    urls.split(',').map(str::to_string).collect()
}

/// What the member commands ask the server.
pub(crate) fn build(command: MemberCommand) -> Result<Action, String> {
    let (request, printer, to_leader) = match command {
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => (
            MemberRequest::Add {
                peer_urls: peer_urls_arg(&peer_urls),
                is_learner: learner,
            },
            ClusterPrinter::Added(name),
            false,
        ),
        MemberCommand::Remove { id } => {
            let id = member_id_arg(&id)?;
            (
                MemberRequest::Remove(id),
                ClusterPrinter::Removed(id),
                false,
            )
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = member_id_arg(&id)?;
            (
                MemberRequest::Update {
                    id,
                    peer_urls: peer_urls_arg(&peer_urls),
                },
                ClusterPrinter::Updated(id),
                false,
            )
        }
        MemberCommand::List { consistency } => {
            let linearizable = match consistency.as_str() {
                "l" => true,
                "s" => false,
                other => return Err(format!("unknown consistency flag {other:?}")),
            };
            (
                MemberRequest::List { linearizable },
                ClusterPrinter::List,
                false,
            )
        }
        // Only the leader knows whether a learner caught up.
        MemberCommand::Promote { id } => {
            let id = member_id_arg(&id)?;
            (
                MemberRequest::Promote(id),
                ClusterPrinter::Promoted(id),
                true,
            )
        }
    };
    Ok(Action::Cluster {
        request: Request::Member(request),
        printer,
        to_leader,
    })
}

/// A client of the endpoint that leads (etcdctl's move-leader looks for it the same way).
pub(crate) async fn connect_to_leader(endpoints: &[String]) -> Result<Client, String> {
    for endpoint in endpoints {
        let Ok((client, _)) = connect(std::slice::from_ref(endpoint)).await else {
            continue;
        };
        if let Ok(status) = fetch_status(&client).await {
            if status.leader != 0 && status.leader == status.header.member_id {
                return Ok(client);
            }
        }
    }
    Err(format!("no leader endpoint given at {endpoints:?}"))
}

pub(crate) fn print_cluster(
    printer: &ClusterPrinter,
    response: &Response,
    format: Format,
) -> Result<String, String> {
    match (printer, response, format) {
        (ClusterPrinter::MovedTo(target), Response::MoveLeader { header }, _) => Ok(format!(
            "Leadership transferred from {:x} to {target:x}\n",
            header.member_id
        )),
        (
            _,
            Response::Members {
                header,
                member,
                members,
            },
            Format::Json,
        ) => Ok(output::json_members(header, member.as_ref(), members).to_string() + "\n"),
        (ClusterPrinter::List, Response::Members { members, .. }, Format::Table) => {
            Ok(output::table_members(members))
        }
        (
            ClusterPrinter::List,
            Response::Members {
                header, members, ..
            },
            Format::Fields,
        ) => Ok(output::fields_members(header, members)),
        (_, _, Format::Fields | Format::Protobuf) => {
            Err("fields not supported as output format by this command".into())
        }
        (_, Response::Members { .. }, Format::Table) => {
            Err("table format is only supported by endpoint status and member list".into())
        }
        (ClusterPrinter::List, Response::Members { members, .. }, _) => {
            Ok(output::simple_members(members))
        }
        (
            ClusterPrinter::Added(name),
            Response::Members {
                header,
                member: Some(added),
                members,
            },
            _,
        ) => Ok(output::member_added(
            name,
            header.cluster_id,
            added,
            members,
        )),
        (ClusterPrinter::Removed(id), Response::Members { header, .. }, _) => Ok(format!(
            "Member {id:16x} removed from cluster {:16x}\n",
            header.cluster_id
        )),
        (ClusterPrinter::Updated(id), Response::Members { header, .. }, _) => Ok(format!(
            "Member {id:16x} updated in cluster {:16x}\n",
            header.cluster_id
        )),
        (ClusterPrinter::Promoted(id), Response::Members { header, .. }, _) => Ok(format!(
            "Member {id:16x} promoted in cluster {:16x}\n",
            header.cluster_id
        )),
        (_, other, _) => Err(format!("unexpected response {other:?}")),
    }
}
