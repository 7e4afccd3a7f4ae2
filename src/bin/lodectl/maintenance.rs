//! alarm list and disarm, and defrag (lode never needs defragmenting: it says so).

use std::time::Duration;

use clap::Subcommand;
use lode::alarm::{AlarmAction, AlarmRequest, AlarmResponse, AlarmType};
use lode::api::native::{Request, Response};
use lode::client::Client;

use crate::common::{connect, deadline, fetch_status};

#[derive(Subcommand)]
pub(crate) enum AlarmCommand {
    /// Lists the active alarms.
    List,
    /// Clears every active alarm.
    Disarm,
}

pub(crate) async fn alarm(
    client: &Client,
    action: AlarmAction,
    member_id: u64,
    alarm: AlarmType,
) -> Result<AlarmResponse, String> {
    let request = Request::Alarm(AlarmRequest {
        action,
        member_id,
        alarm,
    });
    match client.request(&request).await.map_err(|e| e.to_string())? {
        Response::Alarm(answer) => Ok(answer),
        other => Err(format!("unexpected response {other:?}")),
    }
}

/// What `defrag` says of a member: lode has nothing to defragment.
pub(crate) fn defrag_line(endpoint: &str) -> String {
    format!(
        "Nothing to defragment on member[{endpoint}]: lode keeps the keyspace in memory, so freed versions are freed memory\n"
    )
}

/// `defrag`: every endpoint is asked for its status (so the answer is a member's, not a
/// guess), then said to need no defragmenting; those that do not answer fail as etcdctl's.
pub(crate) async fn defrag(
    endpoints: &[String],
    command_timeout: Duration,
) -> Result<String, String> {
    use std::io::Write as _;
    let mut failures = 0;
    for endpoint in endpoints {
        let answered = deadline(command_timeout, async {
            let (client, _) = connect(std::slice::from_ref(endpoint)).await?;
            fetch_status(&client).await
        })
        .await;
        match answered {
            Ok(_) => print!("{}", defrag_line(endpoint)),
            Err(error) => {
                eprintln!("Failed to defragment etcd member[{endpoint}] ({error})");
                failures += 1;
            }
        }
        let _ = std::io::stdout().flush();
    }
    if failures > 0 {
        // etcdctl exits 1 with no further message.
        return Err(String::new());
    }
    Ok(String::new())
}
