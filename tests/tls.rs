//! TLS as etcd serves it, proven with real processes, certificates made by openssl, and etcd's
//! own etcdctl: the command line kubeadm writes for a control-plane member, mutual TLS on the
//! client and peer URLs, members with the wrong certificate kept out, certificates rotated on
//! disk, self-signed certificates (auto-tls), http and https client URLs side by side.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pki::{served_subject, Pair, Pki};
use common::server::{free_port, http, DataDir, Lode};

/// etcdctl against `endpoints` with `--cacert` and, when given, a client certificate.
fn etcdctl_tls(endpoints: &str, ca: &str, client: Option<&Pair>, args: &[&str]) -> Output {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={ca}"))
        .arg("--command-timeout=10s")
        .arg("--dial-timeout=3s");
    if let Some(client) = client {
        command
            .arg(format!("--cert={}", client.cert()))
            .arg(format!("--key={}", client.key()));
    }
    command.args(args).stdin(Stdio::null());
    command.output().expect("run etcdctl")
}

fn succeeded(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: Output) -> String {
    assert!(
        !output.status.success(),
        "command unexpectedly succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Retries `attempt` until it returns Some, for at most `patience`.
fn eventually<T>(patience: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(found) = attempt() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One member's addresses, on a loopback address of its own (as members on three hosts).
struct Addresses {
    name: String,
    ip: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
}

impl Addresses {
    fn new(index: usize) -> Addresses {
        Addresses {
            name: format!("m{index}"),
            ip: format!("127.0.0.{}", 11 + index),
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
        }
    }

    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer_port)
    }

    fn client_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.client_port)
    }
}

/// The certificates a member is given: a server certificate for its client URLs and a peer
/// certificate, each naming its address, localhost and 127.0.0.1 (as kubeadm makes them).
fn member_certificates(
    pki: &Pki,
    authority: &str,
    member: &Addresses,
    peer_cn: &str,
) -> (Pair, Pair) {
    let ip = format!("IP:{}", member.ip);
    let names = ["IP:127.0.0.1", "DNS:localhost", ip.as_str()];
    let server = pki.issue(
        authority,
        &format!("{}-server", member.name),
        &member.name,
        &names,
    );
    let peer = pki.issue(authority, &format!("{}-peer", member.name), peer_cn, &names);
    (server, peer)
}

/// The command line kubeadm writes for a control-plane etcd member (etcd 3.5), for a cluster
/// of `members`, plus `extra`.
fn kubeadm_flags(
    member: &Addresses,
    members: &[Addresses],
    data_dir: &Path,
    server: &Pair,
    peer: &Pair,
    ca: &str,
    peer_ca: &str,
) -> Vec<String> {
    let cluster: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    vec![
        format!("--advertise-client-urls={}", member.client_url()),
        format!("--cert-file={}", server.cert()),
        "--client-cert-auth=true".into(),
        format!("--data-dir={}", data_dir.display()),
        "--experimental-initial-corrupt-check=true".into(),
        "--experimental-watch-progress-notify-interval=5s".into(),
        format!("--initial-advertise-peer-urls={}", member.peer_url()),
        format!("--initial-cluster={}", cluster.join(",")),
        format!("--key-file={}", server.key()),
        format!(
            "--listen-client-urls=https://127.0.0.1:{},{}",
            member.client_port,
            member.client_url()
        ),
        format!(
            "--listen-metrics-urls=http://127.0.0.1:{}",
            member.metrics_port
        ),
        format!("--listen-peer-urls={}", member.peer_url()),
        format!("--name={}", member.name),
        format!("--peer-cert-file={}", peer.cert()),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-key-file={}", peer.key()),
        format!("--peer-trusted-ca-file={peer_ca}"),
        "--snapshot-count=10000".into(),
        format!("--trusted-ca-file={ca}"),
    ]
}

/// Spawns every member at once, then waits until each serves.
fn start_all(commands: Vec<(Vec<String>, &Addresses, &Path)>) -> Vec<Lode> {
    let children: Vec<_> = commands
        .into_iter()
        .map(|(args, member, data_dir)| {
            let log = std::fs::File::create(data_dir.with_extension("stderr")).expect("log");
            let child = Command::new(env!("CARGO_BIN_EXE_lode"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn lode");
            (child, member.client_url(), data_dir.to_path_buf())
        })
        .collect();
    children
        .into_iter()
        .map(|(child, url, dir)| Lode::adopt(child, &url, &dir))
        .collect()
}

#[test]
fn kubeadms_command_line_forms_a_cluster_over_peer_mtls_and_serves_mtls_clients() {
    let dirs: Vec<DataDir> = (0..3)
        .map(|i| DataDir::new(&format!("tls-kubeadm-{i}")))
        .collect();
    let pki_dir = DataDir::new("tls-kubeadm-pki");
    let pki = Pki::new(&pki_dir.0);
    pki.authority("ca");
    let ca = pki.cert("ca");
    let members: Vec<Addresses> = (0..3).map(Addresses::new).collect();
    let client = pki.issue(
        "ca",
        "apiserver-etcd-client",
        "kube-apiserver-etcd-client",
        &[],
    );
    pki.authority("other-ca");
    let stranger = pki.issue("other-ca", "stranger", "kube-apiserver-etcd-client", &[]);
    let mut commands = Vec::new();
    for (member, dir) in members.iter().zip(&dirs) {
        let (server, peer) = member_certificates(&pki, "ca", member, &member.name);
        commands.push((
            kubeadm_flags(member, &members, &dir.0, &server, &peer, &ca, &ca),
            member,
            dir.0.as_path(),
        ));
    }
    let lodes = start_all(commands);
    let endpoint = |i: usize| members[i].client_url();

    // The cluster formed over peer mTLS: three members with https peer URLs, one leader, a
    // write through one member read linearizably through another.
    // (Members publish their client URLs once a leader is known.)
    let list = eventually(Duration::from_secs(30), || {
        let output = etcdctl_tls(&endpoint(0), &ca, Some(&client), &["member", "list"]);
        let list = String::from_utf8_lossy(&output.stdout).into_owned();
        let published = members.iter().all(|m| list.contains(&m.client_url()));
        (output.status.success() && published).then_some(list)
    })
    .expect("a member list with every member published, over mTLS");
    assert_eq!(list.lines().count(), 3, "{list}");
    for member in &members {
        assert!(list.contains(&member.peer_url()), "{list}");
        assert!(list.contains(&member.client_url()), "{list}");
    }
    let put = eventually(Duration::from_secs(30), || {
        let output = etcdctl_tls(
            &endpoint(0),
            &ca,
            Some(&client),
            &["put", "/registry/a", "1"],
        );
        output.status.success().then_some(())
    });
    assert!(put.is_some(), "no write committed over peer mTLS");
    let read = succeeded(etcdctl_tls(
        &endpoint(2),
        &ca,
        Some(&client),
        &[
            "get",
            "/registry/a",
            "--consistency=l",
            "--print-value-only",
        ],
    ));
    assert_eq!(read, "1\n");
    // The loopback client URL serves too (kubeadm's probes and the API server use it).
    let local = format!("https://127.0.0.1:{}", members[1].client_port);
    assert_eq!(
        succeeded(etcdctl_tls(
            &local,
            &ca,
            Some(&client),
            &["get", "/registry/a", "--print-value-only"]
        )),
        "1\n"
    );

    // An etcd client library over mTLS.
    let ca_pem = std::fs::read(&ca).expect("ca");
    let identity = etcd_client::Identity::from_pem(
        std::fs::read(&client.cert).expect("cert"),
        std::fs::read(&client.key).expect("key"),
    );
    let runtime = common::runtime();
    let value = runtime.block_on(async {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca_pem))
            .identity(identity);
        let options = etcd_client::ConnectOptions::new().with_tls(tls);
        let mut kv = etcd_client::Client::connect([endpoint(1)], Some(options))
            .await
            .expect("connect over mTLS");
        kv.put("/registry/b", "2", None).await.expect("put");
        let got = kv.get("/registry/b", None).await.expect("get");
        got.kvs()[0].value_str().expect("utf-8").to_string()
    });
    assert_eq!(value, "2");

    // Without a client certificate, or with one from another CA, a client is refused; a client
    // trusting another CA refuses the server.
    refused(etcdctl_tls(
        &endpoint(0),
        &ca,
        None,
        &["get", "/registry/a"],
    ));
    refused(etcdctl_tls(
        &endpoint(0),
        &ca,
        Some(&stranger),
        &["get", "/registry/a"],
    ));
    refused(etcdctl_tls(
        &endpoint(0),
        &pki.cert("other-ca"),
        Some(&client),
        &["get", "/registry/a"],
    ));
    // Plain HTTP on a TLS client URL is no way in either.
    let plain = format!("127.0.0.1:{}", members[0].client_port);
    let mut stream = std::net::TcpStream::connect(&plain).expect("connect");
    use std::io::{Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("health"),
        "a plain request was answered on a TLS port"
    );

    // The plain metrics URL answers kubeadm's probes.
    for member in &members {
        let metrics = format!("http://127.0.0.1:{}", member.metrics_port);
        for probe in ["/livez", "/readyz", "/health"] {
            let (status, body) = http(&metrics, "GET", probe, "");
            assert_eq!(status, 200, "{probe}: {body}");
        }
    }

    // A certificate rotated on disk is served to the next connection, with no restart.
    let address = format!("127.0.0.1:{}", members[0].client_port);
    assert!(served_subject(&address, &ca, &client).contains("CN = m0"));
    let names = ["IP:127.0.0.1", "DNS:localhost", "IP:127.0.0.11"];
    let renewed = pki.issue("ca", "m0-renewed", "m0-renewed", &names);
    let current = pki.pair("m0-server");
    std::fs::copy(&renewed.key, &current.key).expect("replace key");
    std::fs::copy(&renewed.cert, &current.cert).expect("replace cert");
    let rotated = eventually(Duration::from_secs(20), || {
        served_subject(&address, &ca, &client)
            .contains("CN = m0-renewed")
            .then_some(())
    });
    assert!(rotated.is_some(), "the renewed certificate is not served");
    assert_eq!(
        succeeded(etcdctl_tls(
            &endpoint(0),
            &ca,
            Some(&client),
            &["get", "/registry/b", "--print-value-only"]
        )),
        "2\n"
    );
    // A broken replacement is refused and the renewed one keeps serving.
    std::fs::write(&current.cert, "not a certificate").expect("break cert");
    assert_eq!(
        succeeded(etcdctl_tls(
            &endpoint(0),
            &ca,
            Some(&client),
            &["get", "/registry/b", "--print-value-only"]
        )),
        "2\n"
    );
    assert!(served_subject(&address, &ca, &client).contains("CN = m0-renewed"));
    assert!(lodes[0]
        .stderr()
        .contains("previous certificate keeps serving"));
    drop(lodes);
}

/// Starts three members where the third's peer certificate is `intruder` (the others'
/// are proper) and checks that it never takes part: the two others commit and it sees
/// nothing; returns the first member's log.
fn third_member_kept_out(
    test: &str,
    intruder_authority: &str,
    intruder_cn: &str,
    allowed_cn: Option<&str>,
    impersonates_first: bool,
) -> String {
    let dirs: Vec<DataDir> = (0..3)
        .map(|i| DataDir::new(&format!("{test}-{i}")))
        .collect();
    let pki_dir = DataDir::new(&format!("{test}-pki"));
    let pki = Pki::new(&pki_dir.0);
    pki.authority("ca");
    if intruder_authority != "ca" {
        pki.authority(intruder_authority);
    }
    let ca = pki.cert("ca");
    let client = pki.issue("ca", "client", "client", &[]);
    let members: Vec<Addresses> = (0..3).map(Addresses::new).collect();
    let mut commands = Vec::new();
    for (i, (member, dir)) in members.iter().zip(&dirs).enumerate() {
        let (authority, cn) = if i == 2 {
            (intruder_authority, intruder_cn)
        } else {
            ("ca", "member")
        };
        let (server, _) = member_certificates(&pki, "ca", member, "member");
        // An impersonator's peer certificate names the first member's address, not its own.
        let named = if i == 2 && impersonates_first {
            &members[0]
        } else {
            member
        };
        let ip = format!("IP:{}", named.ip);
        let names = ["IP:127.0.0.1", "DNS:localhost", ip.as_str()];
        let peer = pki.issue(
            authority,
            &format!("{}-peer-as-{cn}", member.name),
            cn,
            &names,
        );
        // The intruder trusts its own CA for peers, as a member of another cluster would.
        let peer_ca = pki.cert(authority);
        let mut flags = kubeadm_flags(member, &members, &dir.0, &server, &peer, &ca, &peer_ca);
        if let Some(cn) = allowed_cn {
            flags.push(format!("--peer-cert-allowed-cn={cn}"));
        }
        commands.push((flags, member, dir.0.as_path()));
    }
    let lodes = start_all(commands);
    let put = eventually(Duration::from_secs(30), || {
        let output = etcdctl_tls(
            &members[0].client_url(),
            &ca,
            Some(&client),
            &["put", "k", "v"],
        );
        output.status.success().then_some(())
    });
    assert!(put.is_some(), "the two proper members did not commit");
    assert_eq!(
        succeeded(etcdctl_tls(
            &members[1].client_url(),
            &ca,
            Some(&client),
            &["get", "k", "--consistency=l", "--print-value-only"]
        )),
        "v\n"
    );
    // The intruder holds nothing of the cluster's data and cannot commit.
    let seen = succeeded(etcdctl_tls(
        &members[2].client_url(),
        &ca,
        Some(&client),
        &["get", "k", "--consistency=s", "--print-value-only"],
    ));
    assert_eq!(seen, "", "the intruder received the cluster's data");
    let intruder_put = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", members[2].client_url()))
        .arg(format!("--cacert={ca}"))
        .arg(format!("--cert={}", client.cert()))
        .arg(format!("--key={}", client.key()))
        .args(["--command-timeout=3s", "put", "stolen", "x"])
        .output()
        .expect("etcdctl");
    assert!(
        !intruder_put.status.success(),
        "the intruder committed a write"
    );
    assert_eq!(
        succeeded(etcdctl_tls(
            &members[0].client_url(),
            &ca,
            Some(&client),
            &["get", "stolen", "--consistency=l", "--print-value-only"]
        )),
        ""
    );
    // A forged plain-text frame on a TLS peer port changes nothing either.
    let peer = format!("{}:{}", members[0].ip, members[0].peer_port);
    if let Ok(mut stream) = std::net::TcpStream::connect(&peer) {
        use std::io::Write;
        let _ = stream.write_all(&[0x4c; 64]);
    }
    assert_eq!(
        succeeded(etcdctl_tls(
            &members[0].client_url(),
            &ca,
            Some(&client),
            &["put", "after", "forgery"]
        )),
        "OK\n"
    );
    let log = lodes[0].stderr();
    drop(lodes);
    log
}

#[test]
fn a_member_with_a_peer_certificate_from_another_ca_cannot_join_or_send_raft_messages() {
    let log = third_member_kept_out("tls-other-ca", "intruder-ca", "member", None, false);
    assert!(log.contains("refusing a peer connection"), "{log}");
}

#[test]
fn a_member_whose_peer_certificate_is_not_the_allowed_cn_cannot_join_or_send_raft_messages() {
    let log = third_member_kept_out("tls-allowed-cn", "ca", "intruder", Some("member"), false);
    assert!(log.contains("is not the allowed CN"), "{log}");
}

#[test]
fn a_member_cannot_speak_for_a_member_its_certificate_does_not_name() {
    // Signed by the cluster's CA with the right CN, but issued for another member's address.
    let log = third_member_kept_out("tls-impersonation", "ca", "member", None, true);
    assert!(log.contains("cannot speak for that member"), "{log}");
}

#[test]
fn auto_tls_and_http_beside_https_on_one_member() {
    let dir = DataDir::new("tls-auto");
    let secure = format!("https://127.0.0.1:{}", free_port());
    let plain = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("https://127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg(format!("--data-dir={}", dir.0.display()))
        .arg(format!("--listen-client-urls={secure},{plain}"))
        .arg(format!("--advertise-client-urls={secure}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=default={peer}"))
        .args([
            "--auto-tls",
            "--peer-auto-tls",
            "--self-signed-cert-validity=2",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.with_extension("stderr")).expect("log"))
        .spawn()
        .expect("spawn lode");
    let lode = Lode::adopt(child, &secure, &dir.0);
    assert!(dir.0.join("fixtures/client/cert.pem").exists());
    assert!(dir.0.join("fixtures/peer/cert.pem").exists());
    let insecure = |endpoint: &str, args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("--insecure-skip-tls-verify")
            .arg("--insecure-transport=false")
            .arg("--dial-timeout=3s")
            .args(args)
            .output()
            .expect("etcdctl")
    };
    assert_eq!(succeeded(insecure(&secure, &["put", "a", "1"])), "OK\n");
    // The same member on its http URL.
    assert_eq!(
        succeeded(common::etcd::etcdctl(
            &plain,
            &["get", "a", "--print-value-only"]
        )),
        "1\n"
    );
    // A self-signed certificate cannot be verified without skipping verification.
    let verified = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={secure}"))
        .args([
            "--dial-timeout=3s",
            "--insecure-transport=false",
            "get",
            "a",
        ])
        .output()
        .expect("etcdctl");
    refused(verified);
    // lodectl speaks TLS too.
    let lodectl = Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args([
            "--endpoints",
            &secure,
            "--insecure-skip-tls-verify",
            "get",
            "a",
            "--print-value-only",
        ])
        .output()
        .expect("lodectl");
    assert_eq!(succeeded(lodectl), "1\n");
    drop(lode);
}

#[test]
fn https_urls_without_a_certificate_and_bad_tls_settings_are_refused_at_start() {
    let dir = DataDir::new("tls-refused");
    let start = |args: &[String]| -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_lode"))
            .arg(format!("--data-dir={}", dir.0.display()))
            .args(args)
            .output()
            .expect("run lode");
        assert!(!output.status.success(), "started with {args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let secure = format!("https://127.0.0.1:{}", free_port());
    let client_urls = [
        format!("--listen-client-urls={secure}"),
        format!("--advertise-client-urls={secure}"),
    ];
    assert!(start(&client_urls).contains("--cert-file"));
    let mut half = client_urls.to_vec();
    half.push("--cert-file=/nonexistent.crt".into());
    assert!(start(&half).contains("--key-file"));
    let mut missing = client_urls.to_vec();
    missing.extend([
        "--cert-file=/nonexistent.crt".into(),
        "--key-file=/nonexistent.key".into(),
    ]);
    assert!(start(&missing).contains("/nonexistent.crt"));
    let mut old = client_urls.to_vec();
    old.extend(["--auto-tls".into(), "--tls-min-version=TLS1.1".into()]);
    assert!(start(&old).contains("TLS1.2"));
    let mut suites = client_urls.to_vec();
    suites.extend([
        "--auto-tls".into(),
        "--cipher-suites=TLS_RSA_WITH_RC4_128_SHA".into(),
    ]);
    assert!(start(&suites).contains("TLS_RSA_WITH_RC4_128_SHA"));
    let mut both = client_urls.to_vec();
    both.extend([
        "--peer-cert-allowed-cn=a".into(),
        "--peer-cert-allowed-hostname=b".into(),
    ]);
    assert!(start(&both).contains("mutually exclusive"));
    // Nothing was written for a start refused over its settings.
    assert!(!dir.0.join("identity").exists());
}

#[test]
fn a_member_joins_over_peer_mtls_and_one_from_another_ca_cannot() {
    let dirs: Vec<DataDir> = (0..3)
        .map(|i| DataDir::new(&format!("tls-join-{i}")))
        .collect();
    let pki_dir = DataDir::new("tls-join-pki");
    let pki = Pki::new(&pki_dir.0);
    pki.authority("ca");
    pki.authority("intruder-ca");
    let ca = pki.cert("ca");
    let client = pki.issue("ca", "client", "client", &[]);
    let members: Vec<Addresses> = (0..3).map(Addresses::new).collect();
    // The first member alone.
    let (server, peer) = member_certificates(&pki, "ca", &members[0], "member");
    let mut first = kubeadm_flags(
        &members[0],
        &members[..1],
        &dirs[0].0,
        &server,
        &peer,
        &ca,
        &ca,
    );
    first.push("--initial-cluster-state=new".into());
    let mut lodes = start_all(vec![(first, &members[0], dirs[0].0.as_path())]);
    let endpoint = members[0].client_url();
    let put = eventually(Duration::from_secs(30), || {
        etcdctl_tls(&endpoint, &ca, Some(&client), &["put", "before", "join"])
            .status
            .success()
            .then_some(())
    });
    assert!(put.is_some(), "the first member did not serve");
    // A member added, then started with --initial-cluster-state existing: it asks the first
    // for the registry over peer mTLS, joins, and serves the data.
    succeeded(etcdctl_tls(
        &endpoint,
        &ca,
        Some(&client),
        &[
            "member",
            "add",
            "m1",
            &format!("--peer-urls={}", members[1].peer_url()),
        ],
    ));
    let (server, peer) = member_certificates(&pki, "ca", &members[1], "member");
    let mut second = kubeadm_flags(
        &members[1],
        &members[..2],
        &dirs[1].0,
        &server,
        &peer,
        &ca,
        &ca,
    );
    second.push("--initial-cluster-state=existing".into());
    lodes.extend(start_all(vec![(second, &members[1], dirs[1].0.as_path())]));
    let joined = eventually(Duration::from_secs(30), || {
        let output = etcdctl_tls(
            &members[1].client_url(),
            &ca,
            Some(&client),
            &["get", "before", "--consistency=l", "--print-value-only"],
        );
        (String::from_utf8_lossy(&output.stdout) == "join\n").then_some(())
    });
    assert!(
        joined.is_some(),
        "the joined member does not serve the cluster's data"
    );
    // A third, added too, but holding a peer certificate from another CA: it cannot fetch the
    // registry, and stops with the reason.
    succeeded(etcdctl_tls(
        &endpoint,
        &ca,
        Some(&client),
        &[
            "member",
            "add",
            "m2",
            &format!("--peer-urls={}", members[2].peer_url()),
        ],
    ));
    let (server, _) = member_certificates(&pki, "ca", &members[2], "member");
    let ip = format!("IP:{}", members[2].ip);
    let foreign = pki.issue(
        "intruder-ca",
        "m2-foreign-peer",
        "member",
        &["IP:127.0.0.1", "DNS:localhost", &ip],
    );
    let mut third = kubeadm_flags(
        &members[2],
        &members,
        &dirs[2].0,
        &server,
        &foreign,
        &ca,
        &pki.cert("intruder-ca"),
    );
    third.push("--initial-cluster-state=existing".into());
    let output = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(&third)
        .stdout(Stdio::null())
        .output()
        .expect("run lode");
    assert!(!output.status.success(), "a member from another CA joined");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("could not retrieve the cluster's members"),
        "{stderr}"
    );
    drop(lodes);
}

#[test]
fn with_client_certificate_auth_a_certificates_cn_is_the_user_unless_a_token_is_given() {
    let pki_dir = DataDir::new("tls-cn-pki");
    let pki = Pki::new(&pki_dir.0);
    let ca = pki.authority("ca");
    let server = pki.issue("ca", "server", "server", &["IP:127.0.0.1"]);
    let root = pki.issue("ca", "root", "root", &[]);
    let alice = pki.issue("ca", "alice", "alice", &[]);
    let mallory = pki.issue("ca", "mallory", "mallory", &[]);
    let dir = DataDir::new("tls-cn");
    let endpoint = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg(format!("--data-dir={}", dir.0.display()))
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=default={peer}"))
        .arg(format!("--cert-file={}", server.cert()))
        .arg(format!("--key-file={}", server.key()))
        .arg(format!("--trusted-ca-file={}", ca.cert()))
        .args(["--client-cert-auth", "--bcrypt-cost=4"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.with_extension("stderr")).expect("log"))
        .spawn()
        .expect("spawn lode");
    let lode = Lode::adopt(child, &endpoint, &dir.0);
    let as_cn =
        |client: &Pair, args: &[&str]| etcdctl_tls(&endpoint, ca.cert(), Some(client), args);
    for setup in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "config/",
            "--prefix=true",
        ],
        &["user", "add", "alice:alicepw"],
        &["user", "grant-role", "alice", "reader"],
        &["put", "config/a", "1"],
        &["auth", "enable"],
    ] {
        succeeded(as_cn(&root, setup));
    }
    // No token: the certificate's CN is the user.
    assert_eq!(
        succeeded(as_cn(&alice, &["get", "config/a", "--print-value-only"])),
        "1\n"
    );
    assert!(refused(as_cn(&alice, &["put", "config/a", "2"])).contains("permission denied"));
    assert_eq!(succeeded(as_cn(&root, &["put", "config/a", "2"])), "OK\n");
    // A CN that names no user may do nothing.
    assert!(refused(as_cn(&mallory, &["get", "config/a"])).contains("permission denied"));
    // A token speaks for its user whatever the certificate says.
    assert_eq!(
        succeeded(as_cn(
            &mallory,
            &["--user", "root:rootpw", "put", "config/a", "3"]
        )),
        "OK\n"
    );
    assert!(refused(as_cn(
        &root,
        &["--user", "alice:alicepw", "put", "config/a", "4"]
    ))
    .contains("permission denied"));
    // lodectl's certificate identifies it the same way over the native protocol.
    let lodectl = |client: &Pair, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lodectl"))
            .args(["--endpoints", &endpoint, "--cacert", ca.cert()])
            .args(["--cert", client.cert(), "--key", client.key()])
            .args(args)
            .output()
            .expect("lodectl")
    };
    assert_eq!(
        succeeded(lodectl(&alice, &["get", "config/a", "--print-value-only"])),
        "3\n"
    );
    assert!(refused(lodectl(&alice, &["put", "config/a", "5"])).contains("permission denied"));
    drop(lode);
}
