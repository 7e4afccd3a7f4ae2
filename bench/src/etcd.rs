//! `lode-bench etcd`: lode and a real etcd (Debian's `etcd-server`, or `--etcd PATH`) started
//! side by side on this machine and driven through etcd's gRPC API by the same load generator
//! in the same run: put, get (linearizable and serializable) and txn compare-and-swap at each
//! client count, with ops/s, p50/p99/p99.9 from HDR histograms, the servers' CPU time per
//! operation (from /proc), and lode/etcd ratios.
//!
//! Both servers get the same CPUs (`--server-cpus`, default all but one) and the load
//! generator the rest, so neither competes with the client differently. A do-nothing gRPC server
//! (`lode-bench null-grpc`) on the same CPUs gives the floor of gRPC itself, and the disk's
//! O_DIRECT write+fdatasync is probed in the same run: a put can be no faster than the two
//! together.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use lode_protocol::etcd::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::maintenance_client::MaintenanceClient;
use pb::watch_client::WatchClient;
use tonic::transport::Channel;

use lode::diskprobe::fdatasync_floor;

use crate::report::{free_ports, in_scratch, print_target, LoadArgs};

#[derive(Args)]
pub struct EtcdArgs {
    /// Directory on the disk to measure: both servers' data dirs go in a scratch subdirectory,
    /// removed afterwards.
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// The lode binary (default: the one next to lode-bench).
    #[arg(long)]
    lode: Option<std::path::PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: std::path::PathBuf,
    /// Members of each cluster (1 or 3), all on this machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    members: u64,
    /// CPUs for the servers, e.g. 0 or 0-2 (default: every CPU but one, which the load
    /// generator takes: the last that does not take the data disk's interrupts).
    #[arg(long)]
    server_cpus: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// Watcher counts of the watch scenario (event latency from a put to each watcher).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    watchers: Vec<usize>,
    /// Extra argument for the lodes it starts (repeatable), e.g. `--lode-arg=--idle-spin-us=20`.
    #[arg(long = "lode-arg", allow_hyphen_values = true)]
    lode_args: Vec<String>,
    /// Systems to drive: lode, etcd, null (a gRPC server that does nothing), lode-tls and
    /// etcd-tls (mutual TLS on client and peer URLs, certificates made for the run), and
    /// lode-auth and etcd-auth (auth on; the load speaks for a user whose role may read and
    /// write every key, so every request is checked against its permissions).
    #[arg(long, value_delimiter = ',', default_value = "lode,etcd,null")]
    systems: Vec<String>,
    /// Scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "put,get-linearizable,get-serializable,txn-cas,watch,lease-grant,lease-keepalive"
    )]
    scenarios: Vec<String>,
    /// Print only JSON lines.
    #[arg(long)]
    json: bool,
}

/// Keys per client.
const KEYS_PER_CLIENT: u64 = 64;

/// Running server processes, killed when dropped.
struct Servers {
    children: Vec<Child>,
    /// Client URLs, one per member.
    endpoints: Vec<String>,
    /// Auth is on: calls carry a token.
    auth: bool,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Servers {
    /// The servers' resident memory now, in KiB (summed).
    fn rss_kib(&self) -> u64 {
        self.children
            .iter()
            .filter_map(|child| {
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()
            })
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }

    /// CPU time the servers used so far, in microseconds.
    fn cpu_micros(&self) -> u64 {
        // SAFETY: sysconf only reads a configuration value.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        self.children
            .iter()
            .filter_map(|child| std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok())
            .filter_map(|stat| {
                // Fields after the command name (which may hold spaces) in parentheses.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let user: u64 = fields.get(11)?.parse().ok()?;
                let system: u64 = fields.get(12)?.parse().ok()?;
                Some((user + system) * 1_000_000 / ticks_per_second)
            })
            .sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Lode,
    Etcd,
    /// `lode-bench null-grpc`: etcd's KV service answering at once, the floor of gRPC.
    Null,
    /// lode with mutual TLS on its client and peer URLs (kubeadm's settings).
    LodeTls,
    /// etcd with the same certificates and settings.
    EtcdTls,
    /// lode with auth on.
    LodeAuth,
    /// etcd with auth on.
    EtcdAuth,
}

impl System {
    const ALL: [System; 7] = [
        System::Lode,
        System::Etcd,
        System::Null,
        System::LodeTls,
        System::EtcdTls,
        System::LodeAuth,
        System::EtcdAuth,
    ];

    fn name(self) -> &'static str {
        match self {
            System::Lode => "lode",
            System::Etcd => "etcd",
            System::Null => "null",
            System::LodeTls => "lode-tls",
            System::EtcdTls => "etcd-tls",
            System::LodeAuth => "lode-auth",
            System::EtcdAuth => "etcd-auth",
        }
    }

    /// The server program it runs.
    fn program(self) -> System {
        match self {
            System::LodeTls | System::LodeAuth => System::Lode,
            System::EtcdTls | System::EtcdAuth => System::Etcd,
            other => other,
        }
    }

    fn tls(self) -> bool {
        matches!(self, System::LodeTls | System::EtcdTls)
    }

    fn auth(self) -> bool {
        matches!(self, System::LodeAuth | System::EtcdAuth)
    }
}

/// Adds the run's auth token to every call (auth systems); nothing otherwise.
#[derive(Clone, Default)]
struct TokenHeader(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for TokenHeader {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// A connection whose calls carry the run's token.
type BenchChannel = tonic::service::interceptor::InterceptedService<Channel, TokenHeader>;

/// The user the auth systems' load speaks for, and its password.
const BENCH_USER: (&str, &str) = ("bench", "bench-password");

/// Turns auth on as an operator would: root, and a user whose role may read and write every
/// key (not root, so every request is checked against permissions).
async fn enable_auth(endpoint: &str) -> Result<(), String> {
    use pb::auth_client::AuthClient;
    let channel = endpoint_of(endpoint)?
        .connect()
        .await
        .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    let mut auth = AuthClient::new(channel);
    let failed = |what: &'static str| move |e: tonic::Status| format!("{what}: {e}");
    for (name, password) in [("root", "root-password"), BENCH_USER] {
        auth.user_add(pb::AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            ..Default::default()
        })
        .await
        .map_err(failed("user add"))?;
    }
    auth.role_add(pb::AuthRoleAddRequest {
        name: BENCH_USER.0.into(),
    })
    .await
    .map_err(failed("role add"))?;
    auth.role_grant_permission(pb::AuthRoleGrantPermissionRequest {
        name: BENCH_USER.0.into(),
        perm: Some(lode_protocol::etcd::authpb::Permission {
            perm_type: lode_protocol::etcd::authpb::permission::Type::Readwrite as i32,
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
        }),
    })
    .await
    .map_err(failed("grant permission"))?;
    for (user, role) in [("root", "root"), (BENCH_USER.0, BENCH_USER.0)] {
        auth.user_grant_role(pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await
        .map_err(failed("grant role"))?;
    }
    auth.auth_enable(pb::AuthEnableRequest {})
        .await
        .map_err(failed("auth enable"))?;
    Ok(())
}

/// A token for the bench user (auth systems), to put on every call of a case.
async fn token_for(servers: &Servers, endpoint: &str) -> Result<TokenHeader, String> {
    if !servers.auth {
        return Ok(TokenHeader(None));
    }
    let channel = endpoint_of(endpoint)?
        .connect()
        .await
        .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    let token = pb::auth_client::AuthClient::new(channel)
        .authenticate(pb::AuthenticateRequest {
            name: BENCH_USER.0.into(),
            password: BENCH_USER.1.into(),
        })
        .await
        .map_err(|e| format!("authenticate: {e}"))?
        .into_inner()
        .token;
    let header = token
        .parse()
        .map_err(|e| format!("token {token:?} as metadata: {e}"))?;
    Ok(TokenHeader(Some(header)))
}

/// The certificates of the TLS systems: one CA, a certificate for every server (client and
/// peer URLs on 127.0.0.1) and one for the load generator, made once per run.
struct Certificates {
    ca: std::path::PathBuf,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client: tonic::transport::ClientTlsConfig,
}

static CERTIFICATES: std::sync::OnceLock<Certificates> = std::sync::OnceLock::new();

fn make_certificates(scratch: &std::path::Path) -> Result<&'static Certificates, String> {
    if let Some(made) = CERTIFICATES.get() {
        return Ok(made);
    }
    let failed = |e: rcgen::Error| format!("making test certificates: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).map_err(failed)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lode-bench CA");
    let ca = ca_params.self_signed(&ca_key).map_err(failed)?;
    let issue = |cn: &str, names: Vec<String>| -> Result<(String, String), String> {
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(failed)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = issue("member", vec!["127.0.0.1".into(), "localhost".into()])?;
    let (client_cert, client_key) = issue("lode-bench", Vec::new())?;
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf, String> {
        let path = scratch.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    };
    let made = Certificates {
        ca: write("ca.crt", &ca.pem())?,
        server_cert: write("server.crt", &server_cert)?,
        server_key: write("server.key", &server_key)?,
        client: tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
            .identity(tonic::transport::Identity::from_pem(
                client_cert,
                client_key,
            )),
    };
    Ok(CERTIFICATES.get_or_init(|| made))
}

/// A channel builder for `endpoint`: over TLS with the run's certificates for `https://`.
fn endpoint_of(endpoint: &str) -> Result<tonic::transport::Endpoint, String> {
    let built = Channel::from_shared(endpoint.to_string()).map_err(|e| e.to_string())?;
    if !endpoint.starts_with("https://") {
        return Ok(built);
    }
    let certificates = CERTIFICATES
        .get()
        .ok_or("TLS endpoint before the certificates were made")?;
    built
        .tls_config(certificates.client.clone())
        .map_err(|e| format!("TLS settings: {e}"))
}

/// Starts a cluster of `members` of `system` on `cpus`, data under `scratch`.
fn start(
    system: System,
    args: &EtcdArgs,
    scratch: &std::path::Path,
    cpus: &str,
) -> Result<Servers, String> {
    let members = match system {
        System::Null => 1,
        _ => args.members as usize,
    };
    let ports = free_ports(3 * members)?;
    let scheme = if system.tls() { "https" } else { "http" };
    let client_url = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[3 * i]);
    let peer_url = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[3 * i + 1]);
    let initial_cluster: Vec<String> = (0..members)
        .map(|i| format!("m{i}={}", peer_url(i)))
        .collect();
    let lode = match &args.lode {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("lode"),
    };
    let mut servers = Servers {
        children: Vec::new(),
        endpoints: Vec::new(),
        auth: system.auth(),
    };
    if system == System::Null {
        let bench = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new("taskset")
            .args(["-c", cpus])
            .arg(bench)
            .args(["null-grpc", "--listen", &format!("127.0.0.1:{}", ports[0])])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the null gRPC server: {e}"))?;
        servers.children.push(child);
        servers.endpoints.push(client_url(0));
        return Ok(servers);
    }
    for i in 0..members {
        let data_dir = scratch.join(format!("{}-{i}", system.name()));
        let log = std::fs::File::create(scratch.join(format!("{}-{i}.log", system.name())))
            .map_err(|e| e.to_string())?;
        let mut command = match system.program() {
            System::Lode => {
                let mut command = Command::new(&lode);
                command.args(["--cpuset", cpus]).args([
                    "--listen-native",
                    &format!("127.0.0.1:{}", ports[3 * i + 2]),
                ]);
                command.args(&args.lode_args);
                command
            }
            System::Etcd => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus]).arg(&args.etcd);
                command.args(["--logger", "zap", "--log-level", "error"]);
                command
            }
            _ => unreachable!("started above"),
        };
        if system.tls() {
            let made = make_certificates(scratch)?;
            let path = |p: &std::path::Path| p.display().to_string();
            command
                .args(["--cert-file", &path(&made.server_cert)])
                .args(["--key-file", &path(&made.server_key)])
                .args(["--trusted-ca-file", &path(&made.ca)])
                .arg("--client-cert-auth=true")
                .args(["--peer-cert-file", &path(&made.server_cert)])
                .args(["--peer-key-file", &path(&made.server_key)])
                .args(["--peer-trusted-ca-file", &path(&made.ca)])
                .arg("--peer-client-cert-auth=true");
        }
        command
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url(i)])
            .args(["--advertise-client-urls", &client_url(i)])
            .args(["--listen-peer-urls", &peer_url(i)])
            .args(["--initial-advertise-peer-urls", &peer_url(i)])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            .args(["--initial-cluster-token", "lode-bench"])
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().map_err(|e| {
            format!(
                "starting {}: {e} (etcd: apt-get install etcd-server; lode: cargo build --release)",
                system.name()
            )
        })?;
        servers.children.push(child);
        servers.endpoints.push(client_url(i));
    }
    Ok(servers)
}

/// The endpoint of the member that leads, once there is one and every member answers (the null
/// server's once it accepts connections).
async fn leader_endpoint(system: System, servers: &Servers) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if system == System::Null {
            let endpoint = &servers.endpoints[0];
            let channel = endpoint_of(endpoint)?;
            if channel.connect().await.is_ok() {
                return Ok(endpoint.clone());
            }
            if Instant::now() > deadline {
                return Err("the null gRPC server did not listen within a minute".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut leader = None;
        let mut answered = 0;
        for endpoint in &servers.endpoints {
            let Ok(channel) = endpoint_of(endpoint)?.connect().await else {
                continue;
            };
            if let Ok(status) = MaintenanceClient::new(channel)
                .status(pb::StatusRequest {})
                .await
            {
                answered += 1;
                let status = status.into_inner();
                let own = status.header.map(|h| h.member_id).unwrap_or_default();
                if status.leader != 0 && status.leader == own {
                    leader = Some(endpoint.clone());
                }
            }
        }
        if let (Some(leader), true) = (leader, answered == servers.endpoints.len()) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            return Err("the cluster did not elect a leader within a minute".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One case's outcome.
struct Measured {
    ops: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
    cpu_micros_per_op: f64,
    /// The servers' resident memory right after the case.
    rss_kib: u64,
}

impl Measured {
    /// A case's outcome from its latencies, wall time, the servers' CPU time over it (us) and
    /// their memory after it.
    fn new(histogram: Histogram<u64>, elapsed: Duration, cpu_micros: u64, rss_kib: u64) -> Self {
        let ops = histogram.len();
        Measured {
            ops,
            elapsed,
            cpu_micros_per_op: cpu_micros as f64 / ops.max(1) as f64,
            histogram,
            rss_kib,
        }
    }

    fn micros(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn key(client: usize, n: u64) -> Bytes {
    Bytes::from(format!("bench/{client:04}/{:03}", n % KEYS_PER_CLIENT))
}

/// `count` HTTP/2 connections to `endpoint`, with TCP_NODELAY, whose calls carry `token`.
async fn connect_channels(
    endpoint: &str,
    count: usize,
    token: &TokenHeader,
) -> Result<Vec<BenchChannel>, String> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = endpoint_of(endpoint)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
        channels.push(tonic::service::interceptor::InterceptedService::new(
            channel,
            token.clone(),
        ));
    }
    Ok(channels)
}

/// Runs `scenario` with `clients` clients against `endpoint` for the configured time.
async fn run_case(
    args: &EtcdArgs,
    servers: &Servers,
    endpoint: &str,
    scenario: &str,
    clients: usize,
) -> Result<Measured, String> {
    let connections = clients.min(args.load.connections).max(1);
    let token = token_for(servers, endpoint).await?;
    let channels = connect_channels(endpoint, connections, &token).await?;
    // Every key exists before reads and compare-and-swaps start.
    let value = Bytes::from(vec![b'v'; args.load.value_bytes]);
    if !["put", "lease-grant", "lease-keepalive"].contains(&scenario) {
        let mut kv = KvClient::new(channels[0].clone());
        for client in 0..clients {
            for n in 0..KEYS_PER_CLIENT {
                kv.put(pb::PutRequest {
                    key: key(client, n),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("preparing keys: {e}"))?;
            }
        }
    }
    let duration = Duration::from_secs_f64(args.load.seconds);
    let cpu_before = servers.cpu_micros();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut kv = KvClient::new(channels[client % connections].clone());
        let mut lease = LeaseClient::new(channels[client % connections].clone());
        let scenario = scenario.to_string();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .map_err(|e| e.to_string())?;
            // Keep-alives: each client renews its own lease on a stream of its own, one
            // keep-alive in flight, as etcd's clients keep a session alive.
            let mut keep_alive = None;
            if scenario == "lease-keepalive" {
                let granted = lease
                    .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
                    .await
                    .map_err(|e| format!("granting: {e}"))?
                    .into_inner();
                let (mut sender, requests) = futures::channel::mpsc::channel(1);
                // etcd answers the call only with its first response: the first keep-alive
                // goes before the call is awaited (and is not measured).
                {
                    use futures::SinkExt;
                    sender
                        .send(pb::LeaseKeepAliveRequest { id: granted.id })
                        .await
                        .map_err(|e| format!("keep-alive: {e}"))?;
                }
                let mut answers = lease
                    .lease_keep_alive(requests)
                    .await
                    .map_err(|e| format!("keep-alive stream: {e}"))?
                    .into_inner();
                answers
                    .message()
                    .await
                    .map_err(|e| format!("keep-alive: {e}"))?;
                keep_alive = Some((granted.id, sender, answers));
            }
            let mut n = 0u64;
            let mut expected = value.clone();
            while Instant::now() < deadline {
                let key = key(client, n);
                let began = Instant::now();
                let outcome = match scenario.as_str() {
                    "put" => kv
                        .put(pb::PutRequest {
                            key,
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    "get-linearizable" | "get-serializable" => kv
                        .range(pb::RangeRequest {
                            key,
                            serializable: scenario == "get-serializable",
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    "txn-cas" => {
                        // Compare-and-swap one key of this client's: the value last seen.
                        let key = self::key(client, 0);
                        let next = Bytes::from(format!("{client}-{n}"));
                        let txn = pb::TxnRequest {
                            compare: vec![pb::Compare {
                                result: pb::compare::CompareResult::Equal as i32,
                                target: pb::compare::CompareTarget::Value as i32,
                                key: key.clone(),
                                range_end: Bytes::new(),
                                target_union: Some(pb::compare::TargetUnion::Value(
                                    expected.clone(),
                                )),
                            }],
                            success: vec![pb::RequestOp {
                                request: Some(pb::request_op::Request::RequestPut(
                                    pb::PutRequest {
                                        key: key.clone(),
                                        value: next.clone(),
                                        ..Default::default()
                                    },
                                )),
                            }],
                            failure: vec![pb::RequestOp {
                                request: Some(pb::request_op::Request::RequestRange(
                                    pb::RangeRequest {
                                        key,
                                        ..Default::default()
                                    },
                                )),
                            }],
                        };
                        kv.txn(txn).await.map(|response| {
                            let response = response.into_inner();
                            if response.succeeded {
                                expected = next;
                            } else if let Some(pb::response_op::Response::ResponseRange(range)) =
                                response
                                    .responses
                                    .into_iter()
                                    .next()
                                    .and_then(|r| r.response)
                            {
                                if let Some(kv) = range.kvs.into_iter().next() {
                                    expected = kv.value;
                                }
                            }
                        })
                    }
                    "lease-grant" => lease
                        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 })
                        .await
                        .map(|_| ()),
                    "lease-keepalive" => {
                        use futures::SinkExt;
                        let Some((id, sender, answers)) = keep_alive.as_mut() else {
                            return Err("no keep-alive stream".into());
                        };
                        sender
                            .send(pb::LeaseKeepAliveRequest { id: *id })
                            .await
                            .map_err(|e| format!("keep-alive: {e}"))?;
                        match answers.message().await {
                            Ok(Some(answer)) if answer.ttl > 0 => Ok(()),
                            Ok(Some(_)) => return Err("keep-alive: the lease is gone".into()),
                            Ok(None) => return Err("keep-alive: the stream ended".into()),
                            Err(status) => Err(status),
                        }
                    }
                    other => return Err(format!("unknown scenario {other}")),
                };
                outcome.map_err(|e| format!("{scenario}: {e}"))?;
                let elapsed = began.elapsed().as_nanos() as u64;
                histogram.saturating_record(elapsed.max(1));
                n += 1;
            }
            Ok::<Histogram<u64>, String>(histogram)
        }));
    }
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    for task in tasks {
        let part = task.await.map_err(|e| e.to_string())??;
        histogram.add(&part).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let cpu = servers.cpu_micros().saturating_sub(cpu_before);
    Ok(Measured::new(histogram, elapsed, cpu, servers.rss_kib()))
}

/// Watchers sharing one watch stream in the watch scenario.
const WATCHERS_PER_STREAM: usize = 100;

/// The watch scenario: `watchers` watchers of one key (100 per stream, the streams spread over
/// the connections) and one writer putting that key, each put carrying the time it was sent;
/// the writer puts again once every watcher got the previous event (closed loop), so each
/// latency is a put's commit plus its fan-out to every watcher. ops are events received.
async fn run_watch_case(
    args: &EtcdArgs,
    servers: &Servers,
    endpoint: &str,
    watchers: usize,
) -> Result<Measured, String> {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let streams = watchers.div_ceil(WATCHERS_PER_STREAM);
    let connections = streams.min(args.load.connections).max(1);
    let token = token_for(servers, endpoint).await?;
    let channels = connect_channels(endpoint, connections, &token).await?;
    let watched = Bytes::from_static(b"watch/key");
    let origin = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let mut tasks = Vec::new();
    for stream in 0..streams {
        let count = WATCHERS_PER_STREAM.min(watchers - stream * WATCHERS_PER_STREAM);
        let creates: Vec<pb::WatchRequest> = (0..count)
            .map(|_| pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key: watched.clone(),
                        ..Default::default()
                    },
                )),
            })
            .collect();
        // The request side stays open: closing it ends the stream.
        let requests = futures::stream::iter(creates).chain(futures::stream::pending());
        let mut client = WatchClient::new(channels[stream % connections].clone())
            .max_decoding_message_size(64 << 20);
        let mut responses = client
            .watch(requests)
            .await
            .map_err(|e| format!("watch: {e}"))?
            .into_inner();
        let (received, created, histogram) = (received.clone(), created.clone(), histogram.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(response)) = responses.message().await {
                if response.created {
                    created.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let now = origin.elapsed().as_nanos() as u64;
                let mut latencies = Vec::with_capacity(response.events.len());
                for event in &response.events {
                    let Some(kv) = &event.kv else { continue };
                    let Some(sent) = kv.value.get(..8) else {
                        continue;
                    };
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(sent);
                    latencies.push(now.saturating_sub(u64::from_le_bytes(bytes)).max(1));
                }
                if let Ok(mut histogram) = histogram.lock() {
                    for latency in &latencies {
                        histogram.saturating_record(*latency);
                    }
                }
                received.fetch_add(latencies.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while created.load(Ordering::Relaxed) < watchers as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {watchers} watches were created",
                created.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut kv = KvClient::new(channels[0].clone());
    let duration = Duration::from_secs_f64(args.load.seconds);
    let cpu_before = servers.cpu_micros();
    let started = Instant::now();
    let mut puts = 0u64;
    while started.elapsed() < duration {
        let mut value = vec![b'v'; args.load.value_bytes.max(8)];
        value[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
        kv.put(pb::PutRequest {
            key: watched.clone(),
            value: Bytes::from(value),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("put: {e}"))?;
        puts += 1;
        let everyone = puts * watchers as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < everyone {
            if Instant::now() > deadline {
                return Err(format!(
                    "put {puts}: {} of {everyone} events arrived within a minute",
                    received.load(Ordering::Relaxed)
                ));
            }
            tokio::task::yield_now().await;
        }
    }
    let elapsed = started.elapsed();
    let cpu = servers.cpu_micros().saturating_sub(cpu_before);
    let rss_kib = servers.rss_kib();
    for task in &tasks {
        task.abort();
    }
    let histogram = histogram
        .lock()
        .map_err(|_| "a watcher task panicked".to_string())?
        .clone();
    Ok(Measured::new(histogram, elapsed, cpu, rss_kib))
}

/// True for the scenarios the do-nothing gRPC server answers (its KV service).
fn scenario_on_null(scenario: &str) -> bool {
    !["watch", "lease-grant", "lease-keepalive"].contains(&scenario)
}

/// The client counts of `scenario` (watchers for the watch scenario).
fn counts<'a>(args: &'a EtcdArgs, scenario: &str) -> &'a [usize] {
    if scenario == "watch" {
        &args.watchers
    } else {
        &args.load.clients
    }
}

/// The CPUs for the servers and for the load generator.
fn cpu_split(args: &EtcdArgs) -> Result<(String, Vec<usize>), String> {
    let allowed = lode::cpus::allowed().map_err(|e| format!("reading CPU affinity: {e}"))?;
    let servers = match &args.server_cpus {
        Some(list) => lode::cpus::parse_list(list).map_err(|e| format!("--server-cpus: {e}"))?,
        None if allowed.len() > 1 => {
            // Leave the load generator a CPU that does not take the disk's interrupts: the
            // servers' fdatasyncs complete faster where they are handled (see cpus.rs).
            let disk = lode::cpus::disk_interrupt_cpu(&args.dir);
            let spare = allowed
                .iter()
                .rev()
                .find(|&&cpu| Some(cpu) != disk)
                .copied()
                .unwrap_or(allowed[allowed.len() - 1]);
            allowed
                .iter()
                .copied()
                .filter(|&cpu| cpu != spare)
                .collect()
        }
        None => allowed.clone(),
    };
    let client: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|cpu| !servers.contains(cpu))
        .collect();
    let client = if client.is_empty() { allowed } else { client };
    Ok((lode::cpus::format_list(&servers), client))
}

pub fn run(args: EtcdArgs) -> Result<(), String> {
    args.load.check()?;
    for scenario in &args.scenarios {
        if ![
            "put",
            "get-linearizable",
            "get-serializable",
            "txn-cas",
            "watch",
            "lease-grant",
            "lease-keepalive",
        ]
        .contains(&scenario.as_str())
        {
            return Err(format!("unknown scenario {scenario}"));
        }
    }
    let mut systems = Vec::new();
    for name in &args.systems {
        match System::ALL.iter().find(|s| s.name() == name) {
            Some(system) if !systems.contains(system) => systems.push(*system),
            Some(_) => {}
            None => {
                return Err(format!(
                    "unknown system {name} (lode, etcd, null, lode-tls, etcd-tls, lode-auth, \
                     etcd-auth)"
                ))
            }
        }
    }
    let (server_cpus, client_cpus) = cpu_split(&args)?;
    in_scratch(&args.dir.clone(), "etcd", |scratch| {
        let probe_dir = scratch.to_path_buf();
        // On the servers' first CPU, where their logs' fdatasyncs run.
        let probe_cpu = lode::cpus::parse_list(&server_cpus)
            .ok()
            .and_then(|cpus| cpus.first().copied());
        let placement = probe_cpu.map_or(glommio::Placement::Unbound, glommio::Placement::Fixed);
        let floor = lode::executor::builder(placement)
            .spawn(move || async move { fdatasync_floor(&probe_dir, 2000).await })
            .map_err(|e| format!("floor probe: {e}"))?
            .join()
            .map_err(|e| format!("floor probe: {e}"))?
            .map_err(|e| format!("floor probe: {e}"))?
            .histogram;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(client_cpus.len())
            .on_thread_start(move || pin_to(&client_cpus))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut results: Vec<(System, String, usize, Measured)> = Vec::new();
        for &system in &systems {
            let servers = start(system, &args, scratch, &server_cpus)?;
            let measured = runtime.block_on(async {
                let endpoint = leader_endpoint(system, &servers).await?;
                if system.auth() {
                    enable_auth(&endpoint).await?;
                }
                let mut cases = Vec::new();
                for scenario in &args.scenarios {
                    // The do-nothing server serves the KV service only.
                    if system == System::Null && !scenario_on_null(scenario) {
                        continue;
                    }
                    for &clients in counts(&args, scenario) {
                        let measured = if scenario == "watch" {
                            run_watch_case(&args, &servers, &endpoint, clients).await?
                        } else {
                            run_case(&args, &servers, &endpoint, scenario, clients).await?
                        };
                        cases.push((system, scenario.clone(), clients, measured));
                    }
                }
                Ok::<_, String>(cases)
            });
            let log = std::fs::read_to_string(scratch.join(format!("{}-0.log", system.name())))
                .unwrap_or_default();
            results.extend(measured.map_err(|e| format!("{}: {e}\n{log}", system.name()))?);
        }
        report(&args, &server_cpus, &floor, &results);
        Ok(())
    })
}

/// Pins the calling thread to `cpus`.
fn pin_to(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn report(
    args: &EtcdArgs,
    server_cpus: &str,
    floor: &Histogram<u64>,
    results: &[(System, String, usize, Measured)],
) {
    let find = |system, scenario: &str, clients| {
        results
            .iter()
            .find(|(s, sc, c, _)| *s == system && sc == scenario && *c == clients)
            .map(|(_, _, _, m)| m)
    };
    let floor_micros = |quantile| floor.value_at_quantile(quantile) as f64 / 1000.0;
    if !args.json {
        println!(
            "lode-bench etcd: dir {}, {} member(s) each, servers on CPUs {server_cpus}, {} B values, {} s per case, up to {} connections",
            args.dir.display(),
            args.members,
            args.load.value_bytes,
            args.load.seconds,
            args.load.connections
        );
        println!(
            "{:<34} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "case", "ops", "ops/s", "p50 us", "p99 us", "p99.9 us", "cpu us/op", "rss MiB"
        );
        println!(
            "{:<34} {:>9} {:>10} {:>9.1} {:>9.1} {:>9.1}",
            "floor: 4KiB write+fdatasync",
            floor.len(),
            "",
            floor_micros(0.5),
            floor_micros(0.99),
            floor_micros(0.999)
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "etcd",
            "system": "floor: 4KiB O_DIRECT write+fdatasync",
            "ops": floor.len(),
            "p50_us": floor_micros(0.5),
            "p99_us": floor_micros(0.99),
            "p999_us": floor_micros(0.999),
        })
    );
    let ratio_line = |label: &str, a: &Measured, b: &Measured| {
        println!(
            "{:<34} {:>9} {:>10.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            label,
            "",
            a.ops_per_second() / b.ops_per_second(),
            a.micros(0.5) / b.micros(0.5),
            a.micros(0.99) / b.micros(0.99),
            a.micros(0.999) / b.micros(0.999),
            a.cpu_micros_per_op / b.cpu_micros_per_op.max(f64::MIN_POSITIVE)
        );
    };
    for scenario in &args.scenarios {
        for &clients in counts(args, scenario) {
            for system in System::ALL {
                let Some(m) = find(system, scenario, clients) else {
                    continue;
                };
                let name = format!("{}: {scenario}, {clients} clients", system.name());
                if !args.json {
                    println!(
                        "{name:<34} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1}",
                        m.ops,
                        m.ops_per_second(),
                        m.micros(0.5),
                        m.micros(0.99),
                        m.micros(0.999),
                        m.cpu_micros_per_op,
                        m.rss_kib as f64 / 1024.0
                    );
                }
                println!(
                    "{}",
                    serde_json::json!({
                        "bench": "etcd",
                        "system": system.name(),
                        "scenario": scenario,
                        "clients": clients,
                        "members": if system == System::Null { 1 } else { args.members },
                        "tls": system.tls(),
                        "ops": m.ops,
                        "ops_per_sec": m.ops_per_second(),
                        "p50_us": m.micros(0.5),
                        "p99_us": m.micros(0.99),
                        "p999_us": m.micros(0.999),
                        "cpu_us_per_op": m.cpu_micros_per_op,
                        "rss_kib": m.rss_kib,
                    })
                );
            }
            if args.json {
                continue;
            }
            let lode = find(System::Lode, scenario, clients);
            if let (Some(lode), Some(etcd)) = (lode, find(System::Etcd, scenario, clients)) {
                ratio_line("  lode/etcd", lode, etcd);
            }
            if let (Some(lode), Some(null)) = (lode, find(System::Null, scenario, clients)) {
                ratio_line("  lode/null", lode, null);
            }
            let lode_tls = find(System::LodeTls, scenario, clients);
            if let (Some(lode_tls), Some(etcd_tls)) =
                (lode_tls, find(System::EtcdTls, scenario, clients))
            {
                ratio_line("  lode-tls/etcd-tls", lode_tls, etcd_tls);
            }
            if let (Some(lode_tls), Some(lode)) = (lode_tls, lode) {
                ratio_line("  lode-tls/lode", lode_tls, lode);
            }
            let lode_auth = find(System::LodeAuth, scenario, clients);
            let etcd_auth = find(System::EtcdAuth, scenario, clients);
            if let (Some(lode_auth), Some(etcd_auth)) = (lode_auth, etcd_auth) {
                ratio_line("  lode-auth/etcd-auth", lode_auth, etcd_auth);
            }
            if let (Some(lode_auth), Some(lode)) = (lode_auth, lode) {
                ratio_line("  lode-auth/lode", lode_auth, lode);
            }
            let etcd = find(System::Etcd, scenario, clients);
            if let (Some(etcd_auth), Some(etcd)) = (etcd_auth, etcd) {
                ratio_line("  etcd-auth/etcd", etcd_auth, etcd);
            }
        }
    }
    if args.json {
        return;
    }
    let single = args.members == 1;
    if let (true, Some(lode), Some(null)) = (
        single,
        find(System::Lode, "put", 1),
        find(System::Null, "put", 1),
    ) {
        println!(
            "1-client put p50: lode {:.1} us = null gRPC {:.1} + fdatasync {:.1} + {:.1} us of lode",
            lode.micros(0.5),
            null.micros(0.5),
            floor_micros(0.5),
            lode.micros(0.5) - null.micros(0.5) - floor_micros(0.5)
        );
    }
    if let (Some(lode), Some(etcd)) = (find(System::Lode, "put", 1), find(System::Etcd, "put", 1)) {
        let p50 = lode.micros(0.5) / etcd.micros(0.5);
        let p99 = lode.micros(0.99) / etcd.micros(0.99);
        print_target(
            "1-client put p50 <= 0.6x etcd's",
            &format!("{p50:.2}x"),
            p50 <= 0.6,
        );
        print_target(
            "1-client put p99 <= 0.4x etcd's",
            &format!("{p99:.2}x"),
            p99 <= 0.4,
        );
    }
    if let (Some(lode), Some(etcd)) = (
        find(System::Lode, "watch", 1),
        find(System::Etcd, "watch", 1),
    ) {
        let p50 = lode.micros(0.5) / etcd.micros(0.5);
        print_target(
            "1-watcher event latency p50 <= 0.6x etcd's",
            &format!("{p50:.2}x"),
            p50 <= 0.6,
        );
        if let Some(fan_out) = find(System::Lode, "watch", 10_000) {
            let ratio = fan_out.histogram.max() as f64 / 1000.0 / lode.micros(0.99);
            print_target(
                "10,000 watchers: latest event <= 10x the 1-watcher p99",
                &format!(
                    "{:.1} us vs {:.1} us = {ratio:.1}x, server rss {:.1} MiB",
                    fan_out.histogram.max() as f64 / 1000.0,
                    lode.micros(0.99),
                    fan_out.rss_kib as f64 / 1024.0
                ),
                ratio <= 10.0,
            );
        }
    }
    for scenario in &args.scenarios {
        if let (Some(lode), Some(etcd)) = (
            find(System::Lode, scenario, 256),
            find(System::Etcd, scenario, 256),
        ) {
            let ratio = lode.ops_per_second() / etcd.ops_per_second();
            print_target(
                &format!("256-client {scenario} throughput >= 2x etcd's"),
                &format!("{ratio:.2}x"),
                ratio >= 2.0,
            );
        }
    }
}
