//! lode configured as etcd is: clusters from etcd YAML config files and from `ETCD_*`
//! variables alone (served to Debian's etcdctl, a member restarted at once after SIGKILL),
//! etcd's flag rules (unknown flags, flags refused or without effect, variables shadowed),
//! `--listen-metrics-urls`, zap JSON logs and auto-compaction on its schedule.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::etcd::{etcdctl, succeeded};
use common::server::{free_port, http, DataDir, Lode};

/// Spawns lode with `args` and `env` (and nothing else from this process's environment that
/// names a flag), stderr to a fresh `<dir>.stderr`, and waits until it serves.
fn start(dir: &Path, client_url: &str, args: &[String], env: &[(String, String)]) -> Lode {
    let log = std::fs::File::create(dir.with_extension("stderr")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn lode");
    Lode::adopt(child, client_url, dir)
}

/// One member's etcd settings, as (key, value) pairs named as etcd's flags.
struct Settings {
    dir: DataDir,
    client_url: String,
    pairs: Vec<(String, String)>,
}

/// Settings of a three-member cluster on free loopback ports.
fn three_members(name: &str) -> Vec<Settings> {
    let peers: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let initial: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, url)| format!("m{i}={url}"))
        .collect();
    (0..3)
        .map(|i| {
            let dir = DataDir::new(&format!("{name}-m{i}"));
            let client_url = format!("http://127.0.0.1:{}", free_port());
            let pairs = [
                ("name", format!("m{i}")),
                ("data-dir", dir.0.display().to_string()),
                ("listen-client-urls", client_url.clone()),
                ("advertise-client-urls", client_url.clone()),
                ("listen-peer-urls", peers[i].clone()),
                ("initial-advertise-peer-urls", peers[i].clone()),
                ("initial-cluster", initial.join(",")),
                ("initial-cluster-token", name.to_string()),
                ("initial-cluster-state", "new".to_string()),
                ("heartbeat-interval", "50".to_string()),
                ("election-timeout", "500".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            Settings {
                dir,
                client_url,
                pairs,
            }
        })
        .collect()
}

/// Starts three members together with `how` (each member's settings to its args and env).
fn start_three(
    settings: &[Settings],
    how: impl Fn(&Settings) -> (Vec<String>, Vec<(String, String)>) + Sync,
) -> Vec<Lode> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = settings
            .iter()
            .map(|member| {
                let how = &how;
                scope.spawn(move || {
                    let (args, env) = how(member);
                    start(&member.dir.0, &member.client_url, &args, &env)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("started"))
            .collect()
    })
}

/// The cluster serves etcdctl through every member; one member killed and restarted at once
/// with the same configuration rejoins.
fn check_cluster(
    settings: &[Settings],
    mut members: Vec<Lode>,
    how: impl Fn(&Settings) -> (Vec<String>, Vec<(String, String)>),
) {
    let all: Vec<String> = settings.iter().map(|s| s.client_url.clone()).collect();
    for (i, url) in all.iter().enumerate() {
        assert_eq!(
            succeeded(etcdctl(url, &["put", &format!("k{i}"), "v"])),
            "OK\n"
        );
    }
    let list = succeeded(etcdctl(&all.join(","), &["member", "list"]));
    assert_eq!(list.lines().count(), 3, "{list}");
    // A follower killed and started again at once rejoins and catches up.
    let status = succeeded(etcdctl(&all[0], &["endpoint", "status", "-w", "json"]));
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    let leader = status[0]["Status"]["leader"].as_u64().expect("leader");
    let own = status[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("id");
    let victim = if leader == own { 1 } else { 0 };
    members[victim].kill();
    let (args, env) = how(&settings[victim]);
    members[victim] = start(
        &settings[victim].dir.0,
        &settings[victim].client_url,
        &args,
        &env,
    );
    let other = (victim + 1) % 3;
    assert_eq!(
        succeeded(etcdctl(&all[other], &["put", "after", "restart"])),
        "OK\n"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = etcdctl(
            &all[victim],
            &["get", "", "--prefix", "--keys-only", "--consistency=s"],
        );
        let keys = String::from_utf8_lossy(&got.stdout).to_string();
        if keys.split_whitespace().count() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up: {keys}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cluster_started_from_etcd_yaml_config_files_serves_etcdctl() {
    let settings = three_members("config-yaml");
    let how = |member: &Settings| {
        let path = member.dir.0.with_extension("yml");
        // Written as etcd's sample file writes it: quoted strings, a list for log-outputs,
        // keys lode does not need at their etcd defaults, TLS blocks left off.
        let mut text = String::from("# etcd.conf.yml\n");
        for (key, value) in &member.pairs {
            match key.as_str() {
                "heartbeat-interval" | "election-timeout" => {
                    text.push_str(&format!("{key}: {value}\n"))
                }
                _ => text.push_str(&format!("{key}: '{value}'\n")),
            }
        }
        text.push_str(
            "wal-dir:\nsnapshot-count: 10000\nquota-backend-bytes: 0\nmax-snapshots: 5\n\
             max-wals: 5\ncors:\ndiscovery:\ndiscovery-fallback: 'proxy'\n\
             strict-reconfig-check: true\nenable-v2: false\nenable-pprof: false\n\
             proxy: 'off'\nproxy-failure-wait: 5000\n\
             client-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  \
             trusted-ca-file:\n  auto-tls: false\n\
             peer-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  \
             trusted-ca-file:\n  auto-tls: false\n  allowed-cn:\n\
             self-signed-cert-validity: 1\nlog-level: info\nlogger: zap\n\
             log-outputs: [stderr]\nforce-new-cluster: false\n\
             auto-compaction-mode: periodic\nauto-compaction-retention: \"1\"\n\
             experimental-watch-progress-notify-interval: 5000000000\n",
        );
        std::fs::write(&path, text).expect("config file");
        (
            vec!["--config-file".to_string(), path.display().to_string()],
            Vec::new(),
        )
    };
    let members = start_three(&settings, how);
    let log = members[0].stderr();
    assert!(log.contains("loaded server configuration"), "{log}");
    assert!(log.contains("has no effect in lode"), "{log}");
    check_cluster(&settings, members, how);
}

#[test]
fn a_cluster_started_from_etcd_variables_alone_serves_etcdctl() {
    let settings = three_members("config-env");
    let how = |member: &Settings| {
        let env = member
            .pairs
            .iter()
            .map(|(key, value)| {
                (
                    format!("ETCD_{}", key.to_ascii_uppercase().replace('-', "_")),
                    value.clone(),
                )
            })
            .collect();
        (Vec::new(), env)
    };
    let members = start_three(&settings, how);
    let log = members[0].stderr();
    assert!(
        log.contains("recognized and used environment variable ETCD_INITIAL_CLUSTER"),
        "{log}"
    );
    check_cluster(&settings, members, how);
}

/// Runs lode expecting it to refuse the configuration; its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = DataDir::new("config-refused");
    let output = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg(format!("--data-dir={}", dir.0.display()))
        .arg(format!(
            "--listen-client-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .output()
        .expect("run lode");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(!dir.0.exists(), "a refused start changes nothing");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_flags_variables_and_files_are_refused_with_the_reason() {
    assert!(refused(&["--no-such-flag=1"], &[]).contains("unknown flag --no-such-flag"));
    assert!(refused(&["stray"], &[]).contains("'stray' is not a valid flag"));
    let tls = refused(&["--cert-file", "/etc/etcd/server.crt"], &[]);
    assert!(tls.contains("--key-file"), "{tls}");
    let auth = refused(&[], &[("ETCD_AUTH_TOKEN", "opaque")]);
    assert!(auth.contains("unknown auth token type"), "{auth}");
    // A key that cannot be read stops the start, naming it.
    let dir = DataDir::new("config-jwt-key");
    let missing_key = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg(format!("--data-dir={}", dir.0.display()))
        .arg(format!(
            "--listen-client-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .args(["--auth-token", "jwt,pub-key=/nonexistent/jwt.pub"])
        .output()
        .expect("run lode");
    assert!(!missing_key.status.success());
    assert!(String::from_utf8_lossy(&missing_key.stderr)
        .contains("--auth-token: /nonexistent/jwt.pub: No such file"));
    assert!(refused(&["--auth-token", "jwt"], &[]).contains("pub-key"));
    assert!(refused(&["--pre-vote", "false"], &[]).contains("'false' is not a valid flag"));
    assert!(refused(&["--heartbeat-interval=soon"], &[]).contains("soon"));
    assert!(refused(&["--log-level=loud"], &[]).contains("loud"));
    assert!(refused(&["--auto-compaction-retention=-1"], &[]).contains("negative"));
    let file = std::env::temp_dir().join(format!("lode-bad-{}.yml", std::process::id()));
    std::fs::write(&file, "name: x\nnmae: y\n").expect("file");
    let bad = refused(&[&format!("--config-file={}", file.display())], &[]);
    let _ = std::fs::remove_file(&file);
    assert!(bad.contains("unknown key 'nmae'"), "{bad}");
}

#[test]
fn a_start_refused_for_a_busy_address_leaves_the_data_dir_untouched() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", busy.local_addr().expect("address"));
    let dir = DataDir::new("config-busy-port");
    let output = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg(format!("--data-dir={}", dir.0.display()))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--initial-cluster-token", "first-try"])
        .output()
        .expect("run lode");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let log = common::server::messages(&String::from_utf8_lossy(&output.stderr));
    assert!(log.contains("already in use"), "{log}");
    // Nothing was fixed by the failed start: not even the identity a later start would read.
    assert!(!dir.0.exists(), "{log}");
}

#[test]
fn variables_shadowed_by_flags_and_flags_without_effect_are_said_once_in_json_lines() {
    let dir = DataDir::new("config-notices");
    let client_url = format!("http://127.0.0.1:{}", free_port());
    let args = [
        format!("--data-dir={}", dir.0.display()),
        format!("-listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        "--name".to_string(),
        "from-flag".to_string(),
        "--backend-bbolt-freelist-type=map".to_string(),
        "--experimental-initial-corrupt-check=true".to_string(),
    ];
    let env = [
        ("ETCD_NAME".to_string(), "from-variable".to_string()),
        ("ETCD_NOT_A_FLAG".to_string(), "1".to_string()),
    ];
    let lode = start(&dir.0, &client_url, &args, &env);
    let log = lode.stderr();
    let mut names = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = value.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(&keys[..2], ["level", "ts"], "{line}");
        assert!(keys.contains(&"msg"), "{line}");
        names.push(object["msg"].as_str().unwrap_or_default().to_string());
    }
    let said = |text: &str| names.iter().filter(|m| m.contains(text)).count();
    assert_eq!(said("ETCD_NAME is shadowed"), 1, "{log}");
    assert_eq!(
        said("unrecognized environment variable ETCD_NOT_A_FLAG"),
        1,
        "{log}"
    );
    assert_eq!(said("--backend-bbolt-freelist-type=map"), 1, "{log}");
    assert_eq!(
        said("--experimental-initial-corrupt-check=true"),
        1,
        "{log}"
    );
    let status = succeeded(etcdctl(&client_url, &["member", "list"]));
    assert!(status.contains("from-flag"), "{status}");
}

#[test]
fn metrics_urls_serve_metrics_and_probes_only() {
    let dir = DataDir::new("config-metrics");
    let metrics_url = format!("http://127.0.0.1:{}", free_port());
    let lode = Lode::start(&dir.0, &[&format!("--listen-metrics-urls={metrics_url}")]);
    let (status, body) = http(&metrics_url, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("etcd_server_has_leader 1"), "{body}");
    let (status, body) = http(&metrics_url, "GET", "/health", "");
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"health\":\"true\",\"reason\":\"\"}")
    );
    assert_eq!(http(&metrics_url, "GET", "/livez", "").0, 200);
    assert_eq!(http(&metrics_url, "GET", "/readyz", "").0, 200);
    assert_eq!(http(&metrics_url, "POST", "/health", "").0, 405);
    // Not the API: no gateway, no version, no gRPC, no native protocol there.
    assert_eq!(http(&metrics_url, "POST", "/v3/kv/range", "{}").0, 404);
    assert_eq!(http(&metrics_url, "GET", "/version", "").0, 404);
    // The client URL still serves everything.
    assert_eq!(http(&lode.client_url, "GET", "/version", "").0, 200);
    assert_eq!(http(&lode.client_url, "GET", "/metrics", "").0, 200);
}

#[test]
fn periodic_auto_compaction_compacts_on_its_schedule() {
    let dir = DataDir::new("config-auto-compaction");
    // Before the process starts, so before its compactor does.
    let started = Instant::now();
    let lode = Lode::start(
        &dir.0,
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=2s",
        ],
    );
    // Writes keep coming; after the first period, what was current two seconds earlier is
    // compacted, and reads below it are refused as etcd refuses them.
    let deadline = started + Duration::from_secs(60);
    loop {
        assert_eq!(
            succeeded(etcdctl(&lode.client_url, &["put", "tick", "v"])),
            "OK\n"
        );
        let old = etcdctl(&lode.client_url, &["get", "tick", "--rev=2"]);
        if !old.status.success() {
            let error = String::from_utf8_lossy(&old.stderr);
            assert!(
                error.contains("required revision has been compacted"),
                "{error}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never compacted: {}",
            lode.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the first period"
    );
    let log = lode.stderr();
    assert!(log.contains("completed auto periodic compaction"), "{log}");
}
