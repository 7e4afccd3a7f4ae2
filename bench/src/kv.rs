//! `lode-bench kv`: a lode server over the native protocol, with its floors measured in the same
//! run: the disk's 4 KiB O_DIRECT write + fdatasync (the data dir's file system) and a loopback
//! TCP round trip. A write's latency can not beat their sum on one machine.
//!
//! Scenarios, each at every client count: `put` (256-byte values over a key space per client),
//! `get-serializable`, `get-linearizable` (ReadIndex), `txn-cas` (compare mod_revision, then
//! put), and `put-maintenance`: `put` while, on a connection of its own, an etcd-style
//! physical compaction at the current revision runs a third of the way in and a full snapshot
//! (`lodectl snapshot save`'s request) halfway: its p99 next to `put`'s shows whether
//! compaction and snapshots stall writes. Clients are tasks on one executor sharing
//! `--connections` pipelined connections.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::Placement;
use lode::api::native::{Request, Response};
use lode::client::Client;
use lode::diskprobe::{fdatasync_floor, latency_histogram};
use lode::mvcc::request::*;

use crate::report::{finish_case, in_scratch, print_cases, print_target, CaseResult, LoadArgs};

#[derive(Args)]
pub struct KvArgs {
    /// Directory on the disk to measure: the server's data dir and the floor probe go in a
    /// scratch subdirectory, removed afterwards.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Benchmark a running server at this address instead of starting one.
    #[arg(long)]
    endpoint: Option<String>,
    /// The lode binary to start (default: the one next to lode-bench).
    #[arg(long)]
    lode: Option<PathBuf>,
    /// `--cores` for the lode it starts (default: lode's own default).
    #[arg(long)]
    cores: Option<u64>,
    /// Members of the cluster it starts on this machine (1: a single lode). With more, the
    /// clients talk to the leader.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=7))]
    members: u64,
    /// Where the lodes it starts run: `shared` leaves each its lode default (the first
    /// `--cores` CPUs it may use, the same for every member), `spread` gives member i the
    /// `--cores` CPUs after member i-1's (wrapping around), `unpinned` lets the kernel place
    /// them. Default: `shared` for one member, `unpinned` for a cluster (on a machine with
    /// fewer CPUs than members, pinned members wait for each other's time slices; see
    /// tuning/README.md).
    #[arg(long, value_enum)]
    member_cpus: Option<MemberCpus>,
    /// Extra argument for the lode it starts (repeatable), e.g. `--lode-arg=--snapshot-count=1000`.
    #[arg(long = "lode-arg", allow_hyphen_values = true)]
    lode_args: Vec<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// Scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "put,put-maintenance,put-auto-compaction,get-serializable,get-linearizable,txn-cas"
    )]
    scenarios: Vec<String>,
    /// Print only JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MemberCpus {
    Spread,
    Shared,
    Unpinned,
}

/// Where the members run, by `--member-cpus` or the default for their number.
fn member_cpus(args: &KvArgs) -> MemberCpus {
    args.member_cpus.unwrap_or(if args.members > 1 {
        MemberCpus::Unpinned
    } else {
        MemberCpus::Shared
    })
}

/// The `--cpuset` for member `index`, or none for lode's default.
fn member_cpuset(
    choice: MemberCpus,
    index: usize,
    cores: usize,
    allowed: &[usize],
) -> Option<String> {
    match choice {
        MemberCpus::Shared => None,
        MemberCpus::Unpinned => Some("unpinned".into()),
        MemberCpus::Spread => {
            let mut cpus: Vec<usize> = (0..cores.min(allowed.len()))
                .map(|k| allowed[(index * cores + k) % allowed.len()])
                .collect();
            cpus.sort_unstable();
            Some(lode::cpus::format_list(&cpus))
        }
    }
}

/// Keys per client in the key space.
const KEYS_PER_CLIENT: u64 = 64;

struct Server {
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` distinct free loopback addresses (all held open while chosen, so none repeats).
fn free_addresses(n: usize) -> Result<Vec<String>, String> {
    Ok(crate::report::free_ports(n)?
        .into_iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect())
}

/// Starts the lode (or the cluster of `--members` lodes) the benchmark runs against; returns
/// the processes and each member's native address.
/// Starts the lode (or cluster) to measure; `group` names its data dirs and logs in `scratch`
/// and `extra` adds flags to every member.
fn start_servers(
    args: &KvArgs,
    scratch: &std::path::Path,
    group: &str,
    extra: &[String],
) -> Result<(Vec<Server>, Vec<String>), String> {
    let binary = match &args.lode {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("lode"),
    };
    let members = args.members as usize;
    // Per member: native address, client URL, peer URL.
    let mut free = free_addresses(3 * members)?.into_iter();
    let mut take = || free.next().ok_or_else(|| "no free address".to_string());
    let mut natives = Vec::new();
    let mut client_urls = Vec::new();
    let mut peer_urls = Vec::new();
    for _ in 0..members {
        natives.push(take()?);
        client_urls.push(format!("http://{}", take()?));
        peer_urls.push(format!("http://{}", take()?));
    }
    let initial_cluster: Vec<String> = peer_urls
        .iter()
        .enumerate()
        .map(|(i, url)| format!("m{i}={url}"))
        .collect();
    let allowed = lode::cpus::allowed().map_err(|e| format!("reading CPU affinity: {e}"))?;
    let mut servers = Vec::new();
    let mut addresses = Vec::new();
    for (i, peer_url) in peer_urls.iter().enumerate() {
        let address = natives[i].clone();
        let mut command = Command::new(&binary);
        // A client URL of its own too: lode's default (localhost:2379) may be taken.
        command.args(["--listen-client-urls", &client_urls[i]]);
        if members > 1 {
            command.args(["--name", &format!("m{i}")]);
            command.args(["--listen-peer-urls", peer_url]);
            command.args(["--initial-advertise-peer-urls", peer_url]);
            command.args(["--initial-cluster", &initial_cluster.join(",")]);
        }
        if let Some(cores) = args.cores {
            command.args(["--cores", &cores.to_string()]);
        }
        let cores = args.cores.map_or(allowed.len(), |c| c as usize);
        if let Some(cpuset) = member_cpuset(member_cpus(args), i, cores, &allowed) {
            command.args(["--cpuset", &cpuset]);
        }
        command.args(&args.lode_args).args(extra);
        let log_path = scratch.join(format!("lode-{group}{i}.stderr"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = command
            .arg("--data-dir")
            .arg(scratch.join(format!("data-{group}{i}")))
            .args(["--listen-native", &address])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!(
                    "starting {}: {e} (build it with cargo build --release)",
                    binary.display()
                )
            })?;
        servers.push(Server { child: Some(child) });
        let deadline = Instant::now() + Duration::from_secs(30);
        // lode says it serves once every core listens (a bare connect could reach the port
        // check it makes before its cores start).
        loop {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            if said.contains("serving the native protocol") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not start serving on {address}: {said}",
                    binary.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        addresses.push(address);
    }
    Ok((servers, addresses))
}

/// The address of the member that leads (asking each in turn until one says it does).
async fn find_leader(addresses: &[String]) -> Result<String, String> {
    if addresses.len() == 1 {
        return Ok(addresses[0].clone());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for address in addresses {
            let Ok(client) = Client::connect(address).await else {
                continue;
            };
            if let Ok(Response::Status(status)) = client.request(&Request::Status).await {
                if status.leader != 0 && status.leader == status.header.member_id {
                    return Ok(address.clone());
                }
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    Err("no member became leader".into())
}

/// An echo server on its own thread, for the loopback round-trip floor.
fn start_echo() -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let address = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_nodelay(true);
            let mut buffer = [0u8; 64];
            while stream.read_exact(&mut buffer).is_ok() {
                if stream.write_all(&buffer).is_err() {
                    break;
                }
            }
        }
    });
    Ok(address)
}

pub fn run(args: KvArgs) -> Result<(), String> {
    args.load.check()?;
    for scenario in &args.scenarios {
        if ![
            "put",
            "put-maintenance",
            "put-auto-compaction",
            "get-serializable",
            "get-linearizable",
            "txn-cas",
        ]
        .contains(&scenario.as_str())
        {
            return Err(format!("unknown scenario {scenario}"));
        }
    }
    let (results, stages) = in_scratch(&args.dir, "kv", |scratch| run_in(&args, scratch))?;
    report(&args, &results);
    if !args.json {
        println!("\nwhere the leader's commits went over the whole run (lodectl perf):\n{stages}");
    }
    Ok(())
}

/// Runs every case; returns their results and the leader's commit stages afterwards.
fn run_in(args: &KvArgs, scratch: &std::path::Path) -> Result<(Vec<CaseResult>, String), String> {
    let (_servers, addresses) = match &args.endpoint {
        Some(endpoint) => (Vec::new(), vec![endpoint.clone()]),
        None => start_servers(args, scratch, "", &[])?,
    };
    // `put-auto-compaction` runs against a lode of its own that auto-compacts every quarter of
    // a case (periodic mode: first after one period, then every period), beside the plain one.
    let auto_retention =
        Duration::from_secs_f64(args.load.seconds / 4.0).max(Duration::from_millis(100));
    let (_auto_servers, auto_addresses) =
        if args.scenarios.iter().any(|s| s == "put-auto-compaction") {
            if args.endpoint.is_some() {
                return Err(
                    "put-auto-compaction starts a lode of its own: not with --endpoint".into(),
                );
            }
            start_servers(
                args,
                scratch,
                "auto-compaction-",
                &[
                    "--auto-compaction-mode=periodic".to_string(),
                    format!(
                        "--auto-compaction-retention={}ms",
                        auto_retention.as_millis()
                    ),
                ],
            )?
        } else {
            (Vec::new(), Vec::new())
        };
    let auto_logs: Vec<std::path::PathBuf> = (0..auto_addresses.len())
        .map(|i| scratch.join(format!("lode-auto-compaction-{i}.stderr")))
        .collect();
    let echo = start_echo()?;
    let scratch = scratch.to_path_buf();
    let duration = Duration::from_secs_f64(args.load.seconds);
    let (clients, connections, value_bytes, scenarios) = (
        args.load.clients.clone(),
        args.load.connections,
        args.load.value_bytes,
        args.scenarios.clone(),
    );
    // LODE_BENCH_CPU=N pins the load generator to CPU N (it is unbound otherwise).
    let placement = match std::env::var("LODE_BENCH_CPU")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    lode::executor::builder(placement)
        .spawn(move || async move {
            let address = find_leader(&addresses).await?;
            let auto_address = if auto_addresses.is_empty() {
                None
            } else {
                Some(find_leader(&auto_addresses).await?)
            };
            let mut results = Vec::new();
            let floor = fdatasync_floor(&scratch, 3000)
                .await
                .map_err(|e| format!("floor probe: {e}"))?;
            results.push(CaseResult {
                name: "floor: 4KiB O_DIRECT write+fdatasync".into(),
                ops: floor.histogram.len(),
                elapsed: floor.elapsed,
                histogram: floor.histogram,
            });
            results.push(loopback_round_trip(&echo, 3000).await?);
            for scenario in &scenarios {
                for &count in &clients {
                    let target = match (scenario.as_str(), &auto_address) {
                        ("put-auto-compaction", Some(auto)) => auto.as_str(),
                        _ => address.as_str(),
                    };
                    let compactions_before = completed_compactions(&auto_logs);
                    results.push(
                        scenario_case(target, scenario, count, connections, value_bytes, duration)
                            .await?,
                    );
                    if scenario == "put-auto-compaction" {
                        eprintln!(
                            "  {scenario} {count}: {} auto-compaction(s) during the case \
                             (retention {auto_retention:?})",
                            completed_compactions(&auto_logs) - compactions_before
                        );
                    }
                }
            }
            let stages = match Client::connect(&address).await {
                Ok(client) => match client.request(&Request::Status).await {
                    Ok(Response::Status(status)) => {
                        lode::ctl::output::simple_perf(&address, &status)
                    }
                    other => format!("no status from the leader: {other:?}"),
                },
                Err(error) => format!("cannot reach the leader: {error}"),
            };
            Ok::<_, String>((results, stages))
        })
        .map_err(|e| format!("starting an executor: {e}"))?
        .join()
        .map_err(|e| format!("executor: {e}"))?
}

/// How many auto-compactions the members logging to `logs` completed so far.
fn completed_compactions(logs: &[std::path::PathBuf]) -> usize {
    logs.iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("completed auto periodic compaction")
                .count()
        })
        .sum()
}

async fn loopback_round_trip(address: &str, samples: u64) -> Result<CaseResult, String> {
    let mut stream = glommio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("echo: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut histogram = latency_histogram();
    let message = [7u8; 64];
    let mut answer = [0u8; 64];
    let started = Instant::now();
    for _ in 0..samples {
        let begin = Instant::now();
        stream
            .write_all(&message)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        histogram.saturating_record(begin.elapsed().as_nanos() as u64);
    }
    Ok(CaseResult {
        name: "floor: loopback TCP round trip (64 B)".into(),
        ops: samples,
        elapsed: started.elapsed(),
        histogram,
    })
}

fn key(client: u64, n: u64) -> Bytes {
    Bytes::from(format!("bench/{client:05}/{:03}", n % KEYS_PER_CLIENT))
}

async fn scenario_case(
    address: &str,
    scenario: &str,
    clients: usize,
    connections: usize,
    value_bytes: usize,
    duration: Duration,
) -> Result<CaseResult, String> {
    let mut pool = Vec::new();
    for _ in 0..connections.min(clients) {
        pool.push(Rc::new(
            Client::connect(address)
                .await
                .map_err(|e| format!("connecting to {address}: {e}"))?,
        ));
    }
    let value = Bytes::from(vec![b'v'; value_bytes]);
    // Reads need something to read: one write of every key first.
    if scenario.starts_with("get") || scenario == "txn-cas" {
        for client in 0..clients as u64 {
            for n in 0..KEYS_PER_CLIENT.min(8) {
                let put = Request::Write(WriteRequest::Put(PutRequest {
                    key: key(client, n),
                    value: value.clone(),
                    ..Default::default()
                }));
                pool[0].request(&put).await.map_err(|e| e.to_string())?;
            }
        }
    }
    let histogram = Rc::new(RefCell::new(latency_histogram()));
    let failure: Rc<RefCell<Option<String>>> = Rc::default();
    let started = Instant::now();
    let deadline = started + duration;
    let maintenance = if scenario == "put-maintenance" {
        let connection = Client::connect(address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        Some(glommio::spawn_local(maintain(
            connection, started, duration,
        )))
    } else {
        None
    };
    let tasks: Vec<_> = (0..clients as u64)
        .map(|client| {
            let connection = pool[client as usize % pool.len()].clone();
            let (histogram, failure, value) = (histogram.clone(), failure.clone(), value.clone());
            let scenario = scenario.to_string();
            glommio::spawn_local(async move {
                let mut expected_revision = 0i64;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let request = match scenario.as_str() {
                        "put" | "put-maintenance" | "put-auto-compaction" => {
                            Request::Write(WriteRequest::Put(PutRequest {
                                key: key(client, n),
                                value: value.clone(),
                                ..Default::default()
                            }))
                        }
                        "get-serializable" | "get-linearizable" => Request::Range(RangeRequest {
                            key: key(client, n % 8),
                            serializable: scenario == "get-serializable",
                            ..Default::default()
                        }),
                        _ => Request::Write(WriteRequest::Txn(TxnRequest {
                            compare: vec![Compare {
                                result: CompareResult::Equal,
                                target: CompareTarget::Mod,
                                key: key(client, 0),
                                range_end: Bytes::new(),
                                operand: CompareOperand::Mod(expected_revision),
                            }],
                            success: vec![RequestOp::Put(PutRequest {
                                key: key(client, 0),
                                value: value.clone(),
                                ..Default::default()
                            })],
                            failure: vec![RequestOp::Range(RangeRequest {
                                key: key(client, 0),
                                ..Default::default()
                            })],
                        })),
                    };
                    let begin = Instant::now();
                    match connection.request(&request).await {
                        Ok(Response::Write(WriteResponse::Txn(txn))) => {
                            // Compare-and-swap: learn the key's revision from either branch.
                            expected_revision = if txn.succeeded {
                                txn.header.revision
                            } else {
                                match txn.responses.first() {
                                    Some(ResponseOp::Range(range)) => {
                                        range.kvs.first().map_or(0, |kv| kv.mod_revision)
                                    }
                                    _ => 0,
                                }
                            };
                        }
                        Ok(_) => {}
                        Err(error) => {
                            failure.borrow_mut().get_or_insert(error.to_string());
                            return;
                        }
                    }
                    histogram
                        .borrow_mut()
                        .saturating_record(begin.elapsed().as_nanos() as u64);
                    n += 1;
                }
            })
        })
        .collect();
    let name = format!(
        "{scenario}: {clients} client{}",
        if clients == 1 { "" } else { "s" }
    );
    let what = format!("{scenario} with {clients} clients");
    let result = finish_case(name, &what, tasks, started, &failure, &histogram).await;
    if let Some(maintenance) = maintenance {
        let (compaction, snapshot) = maintenance.await?;
        eprintln!(
            "  {scenario} {clients}: physical compaction took {:.1} ms, snapshot {:.1} ms ({} MiB)",
            compaction.0.as_secs_f64() * 1e3,
            snapshot.0.as_secs_f64() * 1e3,
            snapshot.1 >> 20
        );
    }
    result
}

/// The maintenance of `put-maintenance`: a physical compaction at the current revision a third
/// of the way through the case, then a full snapshot halfway. Returns how long each took (and
/// the snapshot's size).
async fn maintain(
    connection: Client,
    started: Instant,
    duration: Duration,
) -> Result<((Duration, usize), (Duration, usize)), String> {
    let sleep_until =
        |at: Instant| glommio::timer::sleep(at.saturating_duration_since(Instant::now()));
    sleep_until(started + duration / 3).await;
    let revision = match connection.request(&Request::Status).await {
        Ok(Response::Status(status)) => status.header.revision,
        other => return Err(format!("status before compaction: {other:?}")),
    };
    let begin = Instant::now();
    let compact = Request::Write(WriteRequest::Compact(CompactionRequest {
        revision,
        physical: true,
    }));
    connection
        .request(&compact)
        .await
        .map_err(|e| format!("compaction at {revision}: {e}"))?;
    let compaction = (begin.elapsed(), 0);
    sleep_until(started + duration / 2).await;
    let begin = Instant::now();
    let mut size = 0;
    connection
        .snapshot(|piece, _| {
            size += piece.len();
            Ok(())
        })
        .await
        .map_err(|e| format!("snapshot: {e}"))?;
    Ok((compaction, (begin.elapsed(), size)))
}

fn report(args: &KvArgs, results: &[CaseResult]) {
    let title = format!(
        "lode-bench kv: dir {}, {} member(s), {} B values, {} s per case, up to {} connections, lode cores: {}, member CPUs: {}",
        args.dir.display(),
        args.members,
        args.load.value_bytes,
        args.load.seconds,
        args.load.connections,
        args.cores
            .map_or("lode default".to_string(), |n| n.to_string()),
        clap::ValueEnum::to_possible_value(&member_cpus(args))
            .map_or_else(String::new, |v| v.get_name().to_string())
    );
    print_cases("kv", &title, results, &results[0], args.json);
    if args.json {
        return;
    }
    let floor = results[0].micros(0.5) + results[1].micros(0.5);
    if args.members > 1 {
        // A cluster's floor adds one native round trip (the leader to a follower and back,
        // measured as a serializable get's) to the leader's own sync and the client's hop.
        let single = results.iter().find(|r| r.name == "put: 1 client");
        let native = results
            .iter()
            .find(|r| r.name == "get-serializable: 1 client");
        if let (Some(single), Some(native)) = (single, native) {
            let cluster_floor = floor + native.micros(0.5);
            let ratio = single.micros(0.5) / cluster_floor;
            print_target(
                "cluster 1-client put p50 <= 1.5x (fdatasync + loopback RTT + native round trip p50s)",
                &format!(
                    "{:.1} us vs {cluster_floor:.1} us = {ratio:.2}x",
                    single.micros(0.5)
                ),
                ratio <= 1.5,
            );
        }
        return;
    }
    if let Some(single) = results.iter().find(|r| r.name == "put: 1 client") {
        let ratio = single.micros(0.5) / floor;
        print_target(
            "1-client put p50 <= 1.3x (fdatasync p50 + loopback RTT p50)",
            &format!(
                "{:.1} us vs {floor:.1} us = {ratio:.2}x",
                single.micros(0.5)
            ),
            ratio <= 1.3,
        );
    }
    for plain in results.iter().filter(|r| r.name.starts_with("put: ")) {
        for (scenario, what) in [
            ("put-maintenance: ", "compaction + snapshot"),
            ("put-auto-compaction: ", "auto-compaction"),
        ] {
            let with = plain.name.replacen("put: ", scenario, 1);
            if let Some(maintained) = results.iter().find(|r| r.name == with) {
                println!(
                    "{}: p99 {:.0} us with {what} vs {:.0} us without ({:.2}x)",
                    plain.name,
                    maintained.micros(0.99),
                    plain.micros(0.99),
                    maintained.micros(0.99) / plain.micros(0.99)
                );
            }
        }
    }
    if let Some(many) = results.iter().find(|r| r.name == "put: 256 clients") {
        print_target(
            "256-client puts >= 100000/s",
            &format!("{:.0}/s", many.ops_per_second()),
            many.ops_per_second() >= 100_000.0,
        );
    }
}
