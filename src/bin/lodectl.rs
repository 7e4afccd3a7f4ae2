//! lodectl: lode's command-line client, shaped like etcdctl (commands, flags and output
//! formats), speaking lode's native protocol. `lodectl log inspect` works offline on a data dir.

use std::cell::Cell;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use glommio::Placement;
use lode::alarm::{AlarmAction, AlarmRequest, AlarmResponse, AlarmType};
use lode::api::native::{
    CoordinationRequest, CoordinationResponse, LeaseAnswer, LeaseQuery, MemberRequest, Request,
    Response, StatusResponse,
};
use lode::client::Client;
use lode::ctl::{output, requests, txn_syntax};
use lode::lease::{LeaseOutcome, LeaseRequest};
use lode::mvcc::request::{CompactionRequest, LeaseResponse, WriteRequest, WriteResponse};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Simple,
    Json,
    Table,
}

#[derive(Parser)]
#[command(
    name = "lodectl",
    version,
    about = "lode's command-line client (etcdctl's commands and flags)"
)]
struct Cli {
    /// Server addresses, comma separated: host:port, or a client URL (http://host:port, as
    /// lode's --listen-client-urls and etcdctl take them); the first that answers is used.
    #[arg(
        long,
        global = true,
        env = "LODECTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// Seconds a command may take before it fails with etcdctl's "context deadline exceeded"
    /// (not `snapshot save`, which streams as long as it takes).
    #[arg(long, global = true, default_value_t = 5.0, value_parser = parse_timeout)]
    command_timeout: f64,
    /// Output format.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    write_out: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Puts the given key into the store.
    Put {
        /// The key.
        key: String,
        /// The value (omit with --ignore-value).
        value: Option<String>,
        /// Lease ID (in hexadecimal) to attach the key to.
        #[arg(long, default_value = "0")]
        lease: String,
        /// Return the previous key-value pair.
        #[arg(long)]
        prev_kv: bool,
        /// Keep the current value.
        #[arg(long)]
        ignore_value: bool,
        /// Keep the current lease.
        #[arg(long)]
        ignore_lease: bool,
    },
    /// Gets the key or a range of keys.
    Get {
        /// The key.
        key: String,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Get keys with matching prefix.
        #[arg(long)]
        prefix: bool,
        /// Get keys that are greater than or equal to the given key.
        #[arg(long)]
        from_key: bool,
        /// Maximum number of results.
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Revision to read at (0: latest).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Get only the keys.
        #[arg(long)]
        keys_only: bool,
        /// Get only the count.
        #[arg(long)]
        count_only: bool,
        /// Sort target: CREATE, KEY, MODIFY, VALUE, or VERSION.
        #[arg(long)]
        sort_by: Option<String>,
        /// Order of results: ASCEND or DESCEND.
        #[arg(long)]
        order: Option<String>,
        /// Linearizable (l) or serializable (s).
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Print only values.
        #[arg(long)]
        print_value_only: bool,
    },
    /// Removes the key or a range of keys.
    Del {
        /// The key.
        key: String,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Delete keys with matching prefix.
        #[arg(long)]
        prefix: bool,
        /// Delete keys that are greater than or equal to the given key.
        #[arg(long)]
        from_key: bool,
        /// Return the deleted key-value pairs.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Runs a transaction read from standard input in etcdctl's syntax: compares, a blank
    /// line, success requests, a blank line, failure requests.
    Txn {
        /// Print prompts for each section.
        #[arg(short, long)]
        interactive: bool,
    },
    /// Compacts the history up to a revision.
    Compaction {
        /// The revision.
        revision: i64,
        /// Wait until the compaction is physically done.
        #[arg(long)]
        physical: bool,
    },
    /// Snapshot commands.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Watches a key or range and prints its events as they happen (until interrupted).
    Watch {
        /// The key (or the start of the range).
        key: String,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Watch every key with the key as prefix.
        #[arg(long)]
        prefix: bool,
        /// Revision to start watching from (0: the next one).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Print each event's previous pair too.
        #[arg(long)]
        prev_kv: bool,
        /// Ask for progress notifications while idle.
        #[arg(long)]
        progress_notify: bool,
    },
    /// Acquires a named lock (as etcdctl's `lock`): runs a command while holding it, with
    /// ETCD_LOCK_KEY and ETCD_LOCK_REV set, or prints the lock's key and holds it until
    /// interrupted.
    Lock {
        /// The lock.
        name: String,
        /// The command to run while holding the lock, with its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        /// TTL of the lock's lease in seconds: how long a holder that stops answering (or
        /// is cut off) keeps the lock.
        #[arg(long, default_value_t = 10)]
        ttl: i64,
    },
    /// Observes and takes part in a leader election (as etcdctl's `elect`): campaigns with
    /// the proposal and holds leadership until interrupted, or with -l prints every leader.
    Elect {
        /// The election.
        name: String,
        /// The value to lead with.
        proposal: Option<String>,
        /// Observe only.
        #[arg(short = 'l', long)]
        listen: bool,
    },
    /// Lease commands.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
    /// Endpoint commands.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Where the endpoint's commits spend their time: p50/p99 of each stage (proposal
    /// queueing, log syncs, replication round trip per follower, commit to apply, apply to
    /// response) since it started.
    Perf,
    /// Membership commands.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Transfers leadership to another voting member (asked of the leader among the
    /// endpoints).
    MoveLeader {
        /// The member ID (hexadecimal) to lead.
        transferee: String,
    },
    /// Alarm commands.
    Alarm {
        #[command(subcommand)]
        command: AlarmCommand,
    },
    /// Work with a log directory offline (lode must not be running on it).
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
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

#[derive(Subcommand)]
enum MemberCommand {
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

#[derive(Subcommand)]
enum AlarmCommand {
    /// Lists the active alarms.
    List,
    /// Clears every active alarm.
    Disarm,
}

#[derive(Subcommand)]
enum LeaseCommand {
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

#[derive(Subcommand)]
enum EndpointCommand {
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

/// What a command asks the server, and how to print the answer.
enum Action {
    Send(Request, Printer),
    EndpointStatus,
    HashKv(i64),
    Perf,
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

enum ClusterPrinter {
    Added(String),
    Removed(u64),
    Updated(u64),
    Promoted(u64),
    List,
    MovedTo(u64),
}

fn member_id_arg(id: &str) -> Result<u64, String> {
    u64::from_str_radix(id, 16)
        .map_err(|_| format!("bad member ID arg ({id}), expecting ID in Hex"))
}

fn peer_urls_arg(urls: &str) -> Vec<String> {
    urls.split(',').map(str::to_string).collect()
}

enum Printer {
    Range {
        keys_only: bool,
        count_only: bool,
        values_only: bool,
        request: Box<lode::mvcc::request::RangeRequest>,
    },
    Write,
    Compaction(i64),
    LeaseGranted,
    LeaseRevoked(i64),
    TimeToLive {
        keys: bool,
    },
    Leases,
}

fn lease_id_arg(id: &str) -> Result<i64, String> {
    i64::from_str_radix(id, 16)
        .map_err(|error| format!("bad lease ID arg ({error}), expecting ID in Hex"))
}

fn build(command: Command) -> Result<Action, String> {
    Ok(match command {
        Command::Put {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        } => {
            let value = match (value, ignore_value) {
                (Some(value), false) => value,
                (None, true) => String::new(),
                (Some(_), true) => {
                    return Err("put command needs 1 argument when --ignore-value is set".into())
                }
                (None, false) => {
                    return Err(
                        "put command needs 1 argument and input from stdin or 2 arguments".into(),
                    )
                }
            };
            let lease = i64::from_str_radix(&lease, 16)
                .map_err(|_| format!("bad lease ID ({lease}), expecting ID in Hex"))?;
            let request =
                requests::put_request(&key, &value, lease, prev_kv, ignore_value, ignore_lease);
            Action::Send(Request::Write(WriteRequest::Put(request)), Printer::Write)
        }
        Command::Get {
            key,
            range_end,
            prefix,
            from_key,
            limit,
            rev,
            keys_only,
            count_only,
            sort_by,
            order,
            consistency,
            print_value_only,
        } => {
            let options = requests::GetOptions {
                prefix,
                from_key,
                limit,
                rev,
                keys_only,
                count_only,
                sort_by,
                order,
                consistency: Some(consistency),
            };
            let request = requests::range_request(&key, range_end.as_deref(), &options)?;
            Action::Send(
                Request::Range(request.clone()),
                Printer::Range {
                    keys_only,
                    count_only,
                    values_only: print_value_only,
                    request: Box::new(request),
                },
            )
        }
        Command::Del {
            key,
            range_end,
            prefix,
            from_key,
            prev_kv,
        } => {
            let request =
                requests::delete_request(&key, range_end.as_deref(), prefix, from_key, prev_kv)?;
            Action::Send(
                Request::Write(WriteRequest::DeleteRange(request)),
                Printer::Write,
            )
        }
        Command::Txn { interactive } => {
            if interactive {
                eprintln!("compares:\n(blank line)\nsuccess requests (get, put, del):\n(blank line)\nfailure requests (get, put, del):\n(blank line)");
            }
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| format!("reading stdin: {e}"))?;
            let txn = txn_syntax::parse_txn(&input)?;
            Action::Send(Request::Write(WriteRequest::Txn(txn)), Printer::Write)
        }
        Command::Compaction { revision, physical } => Action::Send(
            Request::Write(WriteRequest::Compact(CompactionRequest {
                revision,
                physical,
            })),
            Printer::Compaction(revision),
        ),
        Command::Lease { command } => match command {
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
        },
        Command::Endpoint {
            command: EndpointCommand::Status,
        } => Action::EndpointStatus,
        Command::Endpoint {
            command: EndpointCommand::Hashkv { rev },
        } => Action::HashKv(rev),
        Command::Perf => Action::Perf,
        Command::Member { command } => {
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
            Action::Cluster {
                request: Request::Member(request),
                printer,
                to_leader,
            }
        }
        Command::MoveLeader { transferee } => {
            let target = member_id_arg(&transferee)?;
            Action::Cluster {
                request: Request::MoveLeader(target),
                printer: ClusterPrinter::MovedTo(target),
                to_leader: true,
            }
        }
        Command::Snapshot {
            command: SnapshotCommand::Save { file },
        } => Action::SnapshotSave(file),
        Command::Alarm {
            command: AlarmCommand::List,
        } => Action::AlarmList,
        Command::Alarm {
            command: AlarmCommand::Disarm,
        } => Action::AlarmDisarm,
        Command::Log { .. }
        | Command::Lock { .. }
        | Command::Elect { .. }
        | Command::Watch { .. }
        | Command::Snapshot {
            command: SnapshotCommand::Restore { .. } | SnapshotCommand::Status { .. },
        } => unreachable!("handled before connecting"),
    })
}

/// Runs a lock or election session on an executor with SIGINT and SIGTERM caught (`work` gets
/// the flag they set); its result is the exit status.
fn run_session<W, F>(work: W) -> ExitCode
where
    W: FnOnce(Arc<AtomicBool>) -> F + Send + 'static,
    F: std::future::Future<Output = Result<u8, String>> + 'static,
{
    let signals = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(error) = signal_hook::flag::register(signal, signals.clone()) {
            eprintln!("Error: catching signals: {error}");
            return ExitCode::from(1);
        }
    }
    let outcome = lode::executor::builder(Placement::Unbound)
        .spawn(move || async move { work(signals).await })
        .map_err(|e| e.to_string())
        .and_then(|handle| handle.join().map_err(|e| e.to_string()))
        .and_then(|result| result);
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}

/// A lease kept alive in the background for a lock or election (etcd's concurrency session).
struct Session {
    client: Rc<Client>,
    lease: i64,
    lost: Rc<Cell<bool>>,
    keeper: glommio::task::JoinHandle<()>,
}

impl Session {
    async fn open(client: Rc<Client>, ttl: i64) -> Result<Session, String> {
        let grant = Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl }));
        let (lease, ttl) = match client.request(&grant).await.map_err(|e| e.to_string())? {
            Response::Write(WriteResponse::Lease(LeaseResponse {
                outcome: LeaseOutcome::Granted { id, ttl },
                ..
            })) => (id, ttl),
            other => return Err(format!("unexpected response {other:?}")),
        };
        let lost = Rc::new(Cell::new(false));
        let (keeper_client, keeper_lost) = (client.clone(), lost.clone());
        let keeper = glommio::spawn_local(async move {
            let period = std::time::Duration::from_secs_f64((ttl as f64 / 3.0).max(0.5));
            let full = std::time::Duration::from_secs(ttl.max(1) as u64);
            let mut renewed_at = std::time::Instant::now();
            loop {
                glommio::timer::sleep(period).await;
                let sent = std::time::Instant::now();
                let renewed = keeper_client
                    .request(&Request::Lease(LeaseQuery::KeepAlive(lease)))
                    .await;
                match renewed {
                    Ok(Response::Lease(LeaseAnswer::KeepAlive { ttl, .. })) if ttl > 0 => {
                        renewed_at = sent;
                    }
                    // Failed renewals (no leader, a timeout) are retried, but once a whole
                    // TTL passed since the last one the cluster may have expired the lease:
                    // the session is lost, as etcd's client decides.
                    Err(lode::client::ClientError::Server { .. })
                        if renewed_at.elapsed() < full => {}
                    _ => {
                        keeper_lost.set(true);
                        return;
                    }
                }
            }
        })
        .detach();
        Ok(Session {
            client,
            lease,
            lost,
            keeper,
        })
    }

    /// Sends a request that waits (Lock, Campaign) and its answer; when it fails, or a signal
    /// arrives first, the session ends: revoking its lease takes this contender's key out of
    /// the queue.
    async fn wait(
        self,
        request: &Request,
        signals: &AtomicBool,
    ) -> Result<(Session, Response), String> {
        match unless_signalled(&self.client, request, signals).await {
            Some(Ok(response)) => Ok((self, response)),
            Some(Err(error)) => {
                self.close().await;
                Err(error)
            }
            None => {
                self.close().await;
                Err("context canceled".into())
            }
        }
    }

    /// Holds what the session won until a signal arrives, then sends `release` (Unlock,
    /// Resign), ends the session and answers exit status 0; if the lease is lost first, fails
    /// with `lost`.
    async fn hold(self, release: Request, signals: &AtomicBool, lost: &str) -> Result<u8, String> {
        if !signal_or_lost(signals, &self.lost).await {
            return Err(lost.into());
        }
        let _ = self.client.request(&release).await;
        self.close().await;
        Ok(0)
    }

    /// Ends the session: its lease is revoked (deleting any key still held with it).
    async fn close(self) {
        self.keeper.cancel();
        let revoke = Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id: self.lease }));
        let _ = self.client.request(&revoke).await;
    }
}

/// Waits until a signal arrives (true) or `lost` is set (false).
async fn signal_or_lost(signals: &AtomicBool, lost: &Cell<bool>) -> bool {
    loop {
        if signals.load(Ordering::Relaxed) {
            return true;
        }
        if lost.get() {
            return false;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends `request`, unless a signal arrives first (`None`).
async fn unless_signalled(
    client: &Client,
    request: &Request,
    signals: &AtomicBool,
) -> Option<Result<Response, String>> {
    let answer = client.request(request);
    let signalled = async {
        while !signals.load(Ordering::Relaxed) {
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    match futures::future::select(Box::pin(answer), Box::pin(signalled)).await {
        futures::future::Either::Left((answer, _)) => Some(answer.map_err(|e| e.to_string())),
        futures::future::Either::Right(_) => None,
    }
}

/// `lodectl lock`.
async fn lock(
    endpoints: &[String],
    name: String,
    command: Vec<String>,
    ttl: i64,
    signals: Arc<AtomicBool>,
) -> Result<u8, String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let client = Rc::new(client);
    let session = Session::open(client.clone(), ttl).await?;
    let request = Request::Coordination(CoordinationRequest::Lock {
        name: bytes::Bytes::from(name.into_bytes()),
        lease: session.lease,
    });
    let (session, answer) = session.wait(&request, &signals).await?;
    let (header, key) = match answer {
        Response::Coordination(CoordinationResponse::Locked { header, key }) => (header, key),
        other => {
            session.close().await;
            return Err(format!("unexpected response {other:?}"));
        }
    };
    let unlock = Request::Coordination(CoordinationRequest::Unlock { key: key.clone() });
    if let Some((program, arguments)) = command.split_first() {
        let mut child = std::process::Command::new(program)
            .args(arguments)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", header.revision.to_string())
            .spawn()
            .map_err(|e| format!("running {program}: {e}"))?;
        // Polled, not waited on: the session's keep-alives run on this thread.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => glommio::timer::sleep(std::time::Duration::from_millis(20)).await,
                Err(error) => return Err(format!("waiting for {program}: {error}")),
            }
        };
        let _ = client.request(&unlock).await;
        session.close().await;
        return match status.code() {
            Some(0) => Ok(0),
            Some(code) => {
                eprintln!("Error: exit status {code}");
                Ok(code.clamp(1, 255) as u8)
            }
            None => Err("the command was killed by a signal".into()),
        };
    }
    print!("{}\n\n", String::from_utf8_lossy(&key));
    let _ = std::io::stdout().flush();
    session.hold(unlock, &signals, "session expired").await
}

/// `lodectl elect`: campaigns with `proposal`, or (none) observes.
async fn elect(
    endpoints: &[String],
    name: String,
    proposal: Option<String>,
    signals: Arc<AtomicBool>,
) -> Result<u8, String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let name = bytes::Bytes::from(name.into_bytes());
    let Some(proposal) = proposal else {
        let mut observed = client.observe(name).await.map_err(|e| e.to_string())?;
        loop {
            let next = observed.next();
            let signalled = async {
                while !signals.load(Ordering::Relaxed) {
                    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                }
            };
            match futures::future::select(Box::pin(next), Box::pin(signalled)).await {
                futures::future::Either::Left((Ok((_, kv)), _)) => {
                    print!(
                        "{}\n{}\n",
                        String::from_utf8_lossy(&kv.key),
                        String::from_utf8_lossy(&kv.value)
                    );
                    let _ = std::io::stdout().flush();
                }
                futures::future::Either::Left((Err(error), _)) => {
                    return Err(format!("elect: observer lost ({error})"))
                }
                futures::future::Either::Right(_) => return Ok(0),
            }
        }
    };
    let client = Rc::new(client);
    let session = Session::open(client.clone(), 60).await?;
    let request = Request::Coordination(CoordinationRequest::Campaign {
        name,
        lease: session.lease,
        value: bytes::Bytes::from(proposal.into_bytes()),
    });
    let (session, answer) = session.wait(&request, &signals).await?;
    let leader = match answer {
        Response::Coordination(CoordinationResponse::Campaigned { leader, .. }) => leader,
        other => {
            session.close().await;
            return Err(format!("unexpected response {other:?}"));
        }
    };
    let current = Request::Coordination(CoordinationRequest::Leader {
        name: leader.name.clone(),
    });
    if let Ok(Response::Coordination(CoordinationResponse::Leader { kv, .. })) =
        client.request(&current).await
    {
        print!(
            "{}\n{}\n",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        );
        let _ = std::io::stdout().flush();
    }
    let resign = Request::Coordination(CoordinationRequest::Resign { leader });
    session
        .hold(resign, &signals, "elect: session expired")
        .await
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

/// `lodectl watch`: creates the watch and prints what it is given until the stream ends.
async fn watch(
    endpoints: &[String],
    create: lode::watch::stream::CreateWatch,
    format: Format,
) -> Result<(), String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let mut stream = client.watch();
    stream
        .send(lode::api::native::WatchRequest::Create(create))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let (header, response) = stream.next().await.map_err(|e| e.to_string())?;
        if response.canceled {
            let why = if response.compact_revision != 0 {
                format!(
                    "etcdserver: mvcc: required revision has been compacted (compact revision {})",
                    response.compact_revision
                )
            } else {
                response.cancel_reason.clone()
            };
            return Err(format!("watch is canceled by the server: {why}"));
        }
        if response.created {
            continue;
        }
        let text = match format {
            Format::Json => output::json_watch(&header, &response).to_string() + "\n",
            Format::Simple | Format::Table => output::simple_watch(&response),
        };
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Whoever read our output is gone.
            return Ok(());
        }
    }
}

/// A client of the endpoint that leads (etcdctl's move-leader looks for it the same way).
async fn connect_to_leader(endpoints: &[String]) -> Result<Client, String> {
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

fn print_cluster(
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

async fn fetch_status(client: &Client) -> Result<StatusResponse, String> {
    match client.request(&Request::Status).await {
        Ok(Response::Status(status)) => Ok(status),
        Ok(response) => Err(format!("unexpected response {response:?}")),
        Err(error) => Err(error.to_string()),
    }
}

fn print(printer: &Printer, response: &Response, format: Format) -> Result<String, String> {
    if format == Format::Table {
        return Err("table format is only supported by endpoint status".into());
    }
    Ok(match (printer, response, format) {
        (Printer::Range { .. }, Response::Range(r), Format::Json) => {
            output::json_range(r).to_string() + "\n"
        }
        (
            Printer::Range {
                values_only: true,
                request,
                ..
            },
            Response::Range(r),
            _,
        ) => {
            let mut out = String::new();
            if request.count_only {
                out = format!("{}\n", r.count);
            } else {
                for kv in &r.kvs {
                    out.push_str(&String::from_utf8_lossy(&kv.value));
                    out.push('\n');
                }
            }
            out
        }
        (
            Printer::Range {
                keys_only,
                count_only,
                request,
                ..
            },
            Response::Range(r),
            _,
        ) => {
            let mut request = (**request).clone();
            request.keys_only = *keys_only;
            request.count_only = *count_only;
            output::simple_range(r, &request)
        }
        (Printer::LeaseRevoked(id), Response::Write(WriteResponse::Lease(_)), Format::Simple) => {
            output::simple_lease_revoked(*id)
        }
        (
            Printer::LeaseGranted,
            Response::Write(WriteResponse::Lease(LeaseResponse {
                outcome: LeaseOutcome::Granted { id, ttl },
                ..
            })),
            Format::Simple,
        ) => output::simple_lease_granted(*id, *ttl),
        (_, Response::Write(w), Format::Json) => output::json_write(w).to_string() + "\n",
        (
            Printer::TimeToLive { keys: with_keys },
            Response::Lease(LeaseAnswer::TimeToLive {
                header,
                id,
                ttl,
                granted_ttl,
                keys,
            }),
            format,
        ) => match format {
            Format::Json => {
                output::json_time_to_live(header, *id, *ttl, *granted_ttl, keys).to_string() + "\n"
            }
            _ => output::simple_time_to_live(*id, *ttl, *granted_ttl, with_keys.then_some(keys)),
        },
        (Printer::Leases, Response::Lease(LeaseAnswer::Leases { header, ids }), format) => {
            match format {
                Format::Json => output::json_leases(header, ids).to_string() + "\n",
                _ => output::simple_leases(ids),
            }
        }
        (Printer::Compaction(revision), Response::Write(WriteResponse::Compact(_)), _) => {
            format!("compacted revision {revision}\n")
        }
        (_, Response::Write(WriteResponse::Put(r)), _) => output::simple_put(r),
        (_, Response::Write(WriteResponse::DeleteRange(r)), _) => output::simple_delete(r),
        (_, Response::Write(WriteResponse::Txn(r)), _) => output::simple_txn(r),
        (_, other, _) => return Err(format!("unexpected response {other:?}")),
    })
}

/// Streams a snapshot into `path`: written to `<path>.part` piece by piece, synced, then
/// renamed, so `path` only ever holds a complete snapshot (as etcdctl does).
async fn save_snapshot(client: &Client, path: &std::path::Path) -> Result<(), String> {
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

async fn alarm(
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

fn parse_timeout(text: &str) -> Result<f64, String> {
    let text = text.strip_suffix('s').unwrap_or(text);
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(seconds),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

async fn connect(endpoints: &[String]) -> Result<(Client, String), String> {
    let mut last = String::from("no endpoints given");
    for endpoint in endpoints {
        let address = if endpoint.contains("://") {
            match lode::server::urls::parse_url(endpoint) {
                Ok(url) => url.authority(),
                Err(error) => {
                    last = error;
                    continue;
                }
            }
        } else {
            endpoint.clone()
        };
        match Client::connect(&address).await {
            Ok(client) => return Ok((client, endpoint.clone())),
            Err(error) => last = format!("{endpoint}: {error}"),
        }
    }
    Err(format!("cannot connect to any endpoint ({last})"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Log {
        command: LogCommand::Inspect { dir, records },
    } = &cli.command
    {
        let dir = if dir.join("wal").is_dir() {
            dir.join("wal")
        } else {
            dir.clone()
        };
        return match lode::wal::inspect::inspect_dir(&dir) {
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
        };
    }
    if let Command::Snapshot {
        command: SnapshotCommand::Status { file },
    } = &cli.command
    {
        return match lode::restore::status(file) {
            Ok(status) => {
                match cli.write_out {
                    Format::Simple => print!("{}", output::simple_snapshot_status(&status)),
                    Format::Table => print!("{}", output::table_snapshot_status(&status)),
                    Format::Json => println!("{}", output::json_snapshot_status(&status)),
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Snapshot {
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
    {
        let restored = lode::server::urls::parse_urls(initial_advertise_peer_urls)
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
                let cluster = lode::membership::initial_cluster(
                    &spec,
                    name,
                    &peer_urls,
                    initial_cluster_token,
                )?;
                let data_dir = data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{name}.lode")));
                lode::restore::restore(file, &data_dir, &cluster, name, !skip_hash_check)
                    .map(|restored| (restored, data_dir))
            });
        return match restored {
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
        };
    }
    if let Command::Watch {
        key,
        range_end,
        prefix,
        rev,
        prev_kv,
        progress_notify,
    } = &cli.command
    {
        let key = bytes::Bytes::from(key.clone().into_bytes());
        let range_end = if *prefix {
            lode::mvcc::kv::prefix_range_end(&key)
        } else {
            bytes::Bytes::from(range_end.clone().unwrap_or_default().into_bytes())
        };
        let create = lode::watch::stream::CreateWatch {
            key,
            range_end,
            start_revision: *rev,
            progress_notify: *progress_notify,
            prev_kv: *prev_kv,
            ..Default::default()
        };
        let (endpoints, format) = (cli.endpoints.clone(), cli.write_out);
        let outcome = lode::executor::builder(Placement::Unbound)
            .spawn(move || async move { watch(&endpoints, create, format).await })
            .map_err(|e| e.to_string())
            .and_then(|handle| handle.join().map_err(|e| e.to_string()))
            .and_then(|result| result);
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Lock { name, command, ttl } = &cli.command {
        let (endpoints, name, command, ttl) =
            (cli.endpoints.clone(), name.clone(), command.clone(), *ttl);
        return run_session(move |signals| async move {
            lock(&endpoints, name, command, ttl, signals).await
        });
    }
    if let Command::Elect {
        name,
        proposal,
        listen,
    } = &cli.command
    {
        let (endpoints, name, proposal, listen) = (
            cli.endpoints.clone(),
            name.clone(),
            proposal.clone(),
            *listen,
        );
        match (&proposal, listen) {
            (None, false) => {
                eprintln!("Error: no proposal argument but -l not set");
                return ExitCode::from(1);
            }
            (Some(_), true) => {
                eprintln!("Error: proposal given but -l is set");
                return ExitCode::from(1);
            }
            _ => {}
        }
        return run_session(move |signals| async move {
            elect(&endpoints, name, proposal, signals).await
        });
    }
    if let Command::Lease {
        command: LeaseCommand::KeepAlive { id, once },
    } = &cli.command
    {
        let id = match lease_id_arg(id) {
            Ok(id) => id,
            Err(error) => {
                eprintln!("Error: {error}");
                return ExitCode::from(1);
            }
        };
        let (endpoints, format, once) = (cli.endpoints.clone(), cli.write_out, *once);
        let outcome = lode::executor::builder(Placement::Unbound)
            .spawn(move || async move { keep_alive(&endpoints, id, once, format).await })
            .map_err(|e| e.to_string())
            .and_then(|handle| handle.join().map_err(|e| e.to_string()))
            .and_then(|result| result);
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
    }
    let format = cli.write_out;
    let endpoints = cli.endpoints.clone();
    let command_timeout = cli.command_timeout;
    let action = match build(cli.command) {
        Ok(action) => action,
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::from(1);
        }
    };
    let timeout = (!matches!(action, Action::SnapshotSave(_)))
        .then(|| std::time::Duration::from_secs_f64(command_timeout));
    let outcome = lode::executor::builder(Placement::Unbound).spawn(move || async move {
        let work = async move {
            let (client, endpoint) = connect(&endpoints).await?;
            match action {
                Action::Send(request, printer) => {
                    let response = client.request(&request).await.map_err(|e| match printer {
                        // etcdctl's words around the server's.
                        Printer::LeaseGranted => format!("failed to grant lease ({e})"),
                        Printer::LeaseRevoked(_) => format!("failed to revoke lease ({e})"),
                        _ => e.to_string(),
                    })?;
                    print(&printer, &response, format)
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
                        Format::Table => {
                            Err("table format is only supported by endpoint status".into())
                        }
                        Format::Simple => Ok(output::simple_alarms(&answer)),
                    }
                }
                Action::EndpointStatus => {
                    let status = fetch_status(&client).await?;
                    Ok(match format {
                        Format::Simple => output::simple_status(&endpoint, &status),
                        Format::Json => output::json_status(&endpoint, &status).to_string() + "\n",
                        Format::Table => output::table_status(&endpoint, &status),
                    })
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
                Action::HashKv(revision) => {
                    let response = client
                        .request(&Request::HashKv(revision))
                        .await
                        .map_err(|e| e.to_string())?;
                    let Response::HashKv {
                        header,
                        hash,
                        compact_revision,
                        hash_revision,
                    } = response
                    else {
                        return Err(format!("unexpected response {response:?}"));
                    };
                    Ok(output::hash_kv(
                        &endpoint,
                        &header,
                        hash,
                        compact_revision,
                        hash_revision,
                        format == Format::Json,
                        format == Format::Table,
                    ))
                }
                Action::Perf => {
                    let status = fetch_status(&client).await?;
                    match format {
                        Format::Simple => Ok(output::simple_perf(&endpoint, &status)),
                        Format::Json => {
                            Ok(output::json_perf(&endpoint, &status).to_string() + "\n")
                        }
                        Format::Table => {
                            Err("table format is only supported by endpoint status".into())
                        }
                    }
                }
            }
        };
        match timeout {
            // A snapshot streams for as long as it takes, as etcdctl's does.
            None => work.await,
            Some(timeout) => {
                let expired = glommio::timer::sleep(timeout);
                match futures::future::select(Box::pin(work), Box::pin(expired)).await {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => Err("context deadline exceeded".into()),
                }
            }
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
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}
