//! snapshot save (streamed from the server), and snapshot status and restore (offline).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use lode::client::Client;
use lode::ctl::output;

use crate::common::fail;
use crate::{Cli, Command, Format};

#[derive(Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Stores a fresh snapshot of the whole keyspace from the server in FILE.
    Save {
        /// Where to store it.
        file: PathBuf,
    },
    /// Makes a new data dir from a snapshot (offline): the keyspace from FILE, the membership
    /// of a new cluster from the flags, which mean what lode's bootstrap flags mean.
    Restore {
        /// The snapshot (from `lodectl snapshot save` or `etcdctl snapshot save`).
        file: PathBuf,
        /// The data dir to create [default: <name>.lode].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The restored member's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The new cluster: name=peer-url pairs [default: <name>=<initial-advertise-peer-urls>].
        #[arg(long)]
        initial_cluster: Option<String>,
        /// The new cluster's token.
        #[arg(long, default_value = lode::membership::DEFAULT_CLUSTER_TOKEN)]
        initial_cluster_token: String,
        /// The restored member's peer URLs.
        #[arg(long, default_value = lode::membership::DEFAULT_PEER_URL)]
        initial_advertise_peer_urls: String,
        /// Restore even if the SHA-256 at the end of a download does not match (every block's
        /// checksum is still checked).
        #[arg(long)]
        skip_hash_check: bool,
    },
    /// Checks a snapshot file (offline) and prints its hash, revision, keys and size.
    Status {
        /// The snapshot (from `lodectl snapshot save` or `etcdctl snapshot save`).
        file: PathBuf,
    },
}

/// Streams a snapshot into `path`: written to `<path>.part` piece by piece, synced, then
/// renamed, so `path` only ever holds a complete snapshot (as etcdctl does).
pub(crate) async fn save_snapshot(client: &Client, path: &std::path::Path) -> Result<(), String> {
    use std::io::Write as _;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".part");
    let temporary = std::path::PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)
        .map_err(|e| format!("creating {}: {e}", temporary.display()))?;
    let streamed = client
        .snapshot(|piece, _remaining| {
            file.write_all(piece)
                .map_err(|e| format!("writing {}: {e}", temporary.display()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|()| {
            file.sync_all()
                .map_err(|e| format!("syncing {}: {e}", temporary.display()))
        })
        .and_then(|()| {
            std::fs::rename(&temporary, path)
                .map_err(|e| format!("renaming to {}: {e}", path.display()))
        });
    if streamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    streamed
}

/// `lodectl snapshot status`.
pub(crate) fn status(cli: &Cli) -> ExitCode {
    let Command::Snapshot {
        command: SnapshotCommand::Status { file },
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    match lode::restore::status(file) {
        Ok(status) => {
            match cli.write_out {
                Format::Simple => print!("{}", output::simple_snapshot_status(&status)),
                Format::Table => print!("{}", output::table_snapshot_status(&status)),
                Format::Json => println!("{}", output::json_snapshot_status(&status)),
                Format::Fields | Format::Protobuf => {
                    return fail("fields not supported as output format by snapshot status")
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}

/// `lodectl snapshot restore`.
pub(crate) fn restore(cli: &Cli) -> ExitCode {
    let Command::Snapshot {
        command:
            SnapshotCommand::Restore {
                file,
                data_dir,
                name,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls,
                skip_hash_check,
            },
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let restored = lode::urls::parse_urls(initial_advertise_peer_urls)
        .map_err(|e| format!("--initial-advertise-peer-urls: {e}"))
        .and_then(|peer_urls| {
            let spec = initial_cluster.clone().unwrap_or_else(|| {
                peer_urls
                    .0
                    .iter()
                    .map(|url| format!("{name}={url}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let cluster =
                lode::membership::initial_cluster(&spec, name, &peer_urls, initial_cluster_token)?;
            let data_dir = data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{name}.lode")));
            lode::restore::restore(file, &data_dir, &cluster, name, !skip_hash_check)
                .map(|restored| (restored, data_dir))
        });
    match restored {
        Ok((restored, data_dir)) => {
            println!(
                "Restored revision {} ({} keys) into {} as member {:x} of cluster {:x}",
                restored.revision,
                restored.keys,
                data_dir.display(),
                restored.identity.member_id,
                restored.identity.cluster_id
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}
