//! The systems compared: starting lode, etcd or the do-nothing gRPC server on the server CPUs
//! (with TLS and auth when asked), the processes killed when dropped, and finding the leader.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lode_protocol::etcd::etcdserverpb as pb;
use pb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

use super::EtcdArgs;
use crate::report::free_ports;

/// Running server processes, killed when dropped.
pub(super) struct Servers {
    pub(super) children: Vec<Child>,
    /// Client URLs, one per member.
    pub(super) endpoints: Vec<String>,
    /// Auth is on: calls carry a token.
    pub(super) auth: bool,
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
    pub(super) fn rss_kib(&self) -> u64 {
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
    pub(super) fn cpu_micros(&self) -> u64 {
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
pub(super) enum System {
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
    /// lode with its dashboard open on every member for the whole run (a page's feed read).
    LodeDashboard,
}

impl System {
    pub(super) const ALL: [System; 8] = [
        System::Lode,
        System::Etcd,
        System::Null,
        System::LodeTls,
        System::EtcdTls,
        System::LodeAuth,
        System::EtcdAuth,
        System::LodeDashboard,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            System::Lode => "lode",
            System::Etcd => "etcd",
            System::Null => "null",
            System::LodeTls => "lode-tls",
            System::EtcdTls => "etcd-tls",
            System::LodeAuth => "lode-auth",
            System::EtcdAuth => "etcd-auth",
            System::LodeDashboard => "lode-dashboard",
        }
    }

    /// The server program it runs.
    pub(super) fn program(self) -> System {
        match self {
            System::LodeTls | System::LodeAuth | System::LodeDashboard => System::Lode,
            System::EtcdTls | System::EtcdAuth => System::Etcd,
            other => other,
        }
    }

    pub(super) fn tls(self) -> bool {
        matches!(self, System::LodeTls | System::EtcdTls)
    }

    pub(super) fn auth(self) -> bool {
        matches!(self, System::LodeAuth | System::EtcdAuth)
    }
}

/// Readers of each member's dashboard feed (`/dashboard/events`), as an open page reads it,
/// until dropped.
pub(super) struct DashboardReaders {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl DashboardReaders {
    /// Opens the feed of every member at `endpoints` (`http://host:port`).
    pub(super) fn open(endpoints: &[String]) -> DashboardReaders {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = endpoints
            .iter()
            .map(|endpoint| {
                let address = endpoint.trim_start_matches("http://").to_string();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let Ok(mut stream) = std::net::TcpStream::connect(&address) else {
                        return;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    let request =
                        format!("GET /dashboard/events HTTP/1.1\r\nHost: {address}\r\n\r\n");
                    if stream.write_all(request.as_bytes()).is_err() {
                        return;
                    }
                    let mut buffer = vec![0u8; 64 << 10];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok(0) = stream.read(&mut buffer) {
                            return;
                        }
                    }
                })
            })
            .collect();
        DashboardReaders { stop, threads }
    }
}

impl Drop for DashboardReaders {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Adds the run's auth token to every call (auth systems); nothing otherwise.
#[derive(Clone, Default)]
pub(super) struct TokenHeader(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

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
pub(super) type BenchChannel =
    tonic::service::interceptor::InterceptedService<Channel, TokenHeader>;

/// The user the auth systems' load speaks for, and its password.
pub(super) const BENCH_USER: (&str, &str) = ("bench", "bench-password");

/// Turns auth on as an operator would: root, and a user whose role may read and write every
/// key (not root, so every request is checked against permissions).
pub(super) async fn enable_auth(endpoint: &str) -> Result<(), String> {
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
pub(super) async fn token_for(servers: &Servers, endpoint: &str) -> Result<TokenHeader, String> {
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
pub(super) struct Certificates {
    pub(super) ca: std::path::PathBuf,
    pub(super) server_cert: std::path::PathBuf,
    pub(super) server_key: std::path::PathBuf,
    pub(super) client: tonic::transport::ClientTlsConfig,
}

pub(super) static CERTIFICATES: std::sync::OnceLock<Certificates> = std::sync::OnceLock::new();

pub(super) fn make_certificates(
    scratch: &std::path::Path,
) -> Result<&'static Certificates, String> {
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
pub(super) fn endpoint_of(endpoint: &str) -> Result<tonic::transport::Endpoint, String> {
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
pub(super) fn start(
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
pub(super) async fn leader_endpoint(system: System, servers: &Servers) -> Result<String, String> {
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
