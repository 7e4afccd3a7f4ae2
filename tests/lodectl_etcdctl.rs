//! lodectl takes what etcdctl users type: `version`, `defrag`, `endpoint health`, `check perf`,
//! `make-mirror`, `get`'s revision filters, `watch ... -- CMD`, `-w fields`, etcdctl's global
//! flags and their ETCDCTL_* variables, against real `lode` processes.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::server::{failed, free_port, ok, DataDir, Lode};
use common::{json, on_executor};

/// lodectl with no --endpoints and no ETCDCTL_*/LODECTL_* variables but `env`.
fn lodectl_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lodectl"));
    for (name, _) in std::env::vars() {
        if name.starts_with("ETCDCTL_") || name.starts_with("LODECTL_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lodectl")
}

/// An address nothing listens on.
fn dead_endpoint() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Polls `check` every 100 ms until it holds, for at most a minute.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within a minute");
}

/// The member ID of a single-member lode.
fn member_id(lode: &Lode) -> u64 {
    json(&ok(lode.ctl(&["endpoint", "status", "-w", "json"])))[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("member ID")
}

#[test]
fn lodectl_version_prints_etcdctls_lines_and_its_own() {
    let printed = ok(lodectl_with_env(&["version"], &[]));
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "etcdctl version: 3.5.0");
    assert_eq!(lines[1], "API version: 3.5");
    assert_eq!(
        lines[2],
        format!("lodectl version: {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn lodectl_defrag_says_lode_needs_none_for_each_endpoint() {
    let dir = DataDir::new("ctl-defrag");
    let lode = Lode::start(&dir.0, &[]);
    let said = ok(lode.ctl(&["defrag"]));
    assert_eq!(
        said,
        format!(
            "Nothing to defragment on member[{}]: lode keeps the keyspace in memory, so freed versions are freed memory\n",
            lode.address
        )
    );
    // --cluster: every member's client URL, from the member list.
    let said = ok(lode.ctl(&["defrag", "--cluster"]));
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with(&format!(
            "Nothing to defragment on member[{}]",
            lode.client_url
        )),
        "{said}"
    );
    // An endpoint that does not answer fails as etcdctl's does; the others are still told.
    let dead = dead_endpoint();
    let endpoints = format!("{},{dead}", lode.address);
    let output = lodectl_with_env(&["--endpoints", &endpoints, "defrag"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("Failed to defragment etcd member[{dead}] (")),
        "{stderr}"
    );
}

#[test]
fn lodectl_endpoint_health_answers_as_etcdctl() {
    let dir = DataDir::new("ctl-health");
    let lode = Lode::start(&dir.0, &[]);
    let healthy = ok(lode.ctl(&["endpoint", "health"]));
    let prefix = format!(
        "{} is healthy: successfully committed proposal: took = ",
        lode.address
    );
    assert!(healthy.starts_with(&prefix), "{healthy}");
    assert_eq!(healthy.lines().count(), 1);
    let took = healthy.trim_end().trim_start_matches(&prefix);
    assert!(
        ["ns", "µs", "ms", "s"]
            .iter()
            .any(|unit| took.ends_with(unit)),
        "a Go duration: {took}"
    );

    let listed = json(&ok(lode.ctl(&["endpoint", "health", "-w", "json"])));
    assert_eq!(listed[0]["endpoint"], lode.address.as_str());
    assert_eq!(listed[0]["health"], true);
    assert!(listed[0]["took"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(listed[0].get("error").is_none(), "{listed}");

    let table = ok(lode.ctl(&["endpoint", "health", "-w", "table"]));
    assert!(
        table.contains("ENDPOINT") && table.contains("HEALTH"),
        "{table}"
    );
    assert!(table.contains("true"), "{table}");

    let fields = ok(lode.ctl(&["endpoint", "health", "-w", "fields"]));
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines[0], format!("\"Endpoint\" : \"{}\"", lode.address));
    assert_eq!(lines[1], "\"Health\" : true");
    assert!(lines[2].starts_with("\"Took\" : "), "{fields}");
    assert_eq!(lines[3], "\"Error\" : ");

    // --cluster checks every member's client URLs.
    let cluster = ok(lode.ctl(&["endpoint", "health", "--cluster"]));
    assert!(
        cluster.starts_with(&format!("{} is healthy", lode.client_url)),
        "{cluster}"
    );

    // An endpoint that does not answer is unhealthy: its line on stderr, exit 1.
    let dead = dead_endpoint();
    let endpoints = format!("{},{dead}", lode.address);
    let output = lodectl_with_env(&["--endpoints", &endpoints, "endpoint", "health"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with(&prefix));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{dead} is unhealthy: failed to commit proposal: ")),
        "{stderr}"
    );
    assert!(stderr.ends_with("Error: unhealthy cluster\n"), "{stderr}");
    let output = lodectl_with_env(
        &[
            "--endpoints",
            &endpoints,
            "endpoint",
            "health",
            "-w",
            "json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let listed = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(listed[1]["endpoint"], dead.as_str());
    assert_eq!(listed[1]["health"], false);
    assert!(listed[1]["error"].as_str().is_some_and(|e| !e.is_empty()));

    // An active alarm makes the member unhealthy, with etcdctl's reason. (CORRUPT: lode clears
    // a NOSPACE alarm itself while the keyspace is under its quota.)
    let id = member_id(&lode);
    let address = lode.address.clone();
    on_executor(move || async move {
        use lode::alarm::{AlarmAction, AlarmRequest, AlarmType};
        let client = lode::client::Client::connect(&address)
            .await
            .expect("connect");
        let activate = lode::api::native::Request::Alarm(AlarmRequest {
            action: AlarmAction::Activate,
            member_id: id,
            alarm: AlarmType::Corrupt,
        });
        client.request(&activate).await.expect("alarm activated");
    });
    let output = lode.ctl(&["endpoint", "health"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{} is unhealthy: failed to commit proposal: Active Alarm(s): CORRUPT \n",
            lode.address
        )),
        "{stderr}"
    );
    ok(lode.ctl(&["alarm", "disarm"]));
    ok(lode.ctl(&["endpoint", "health"]));
}

#[test]
fn lodectl_get_filters_by_mod_and_create_revisions() {
    let dir = DataDir::new("ctl-revfilters");
    let lode = Lode::start(&dir.0, &[]);
    ok(lode.ctl(&["put", "k/a", "1"])); // revision 2
    ok(lode.ctl(&["put", "k/b", "1"])); // 3
    ok(lode.ctl(&["put", "k/c", "1"])); // 4
    ok(lode.ctl(&["put", "k/a", "2"])); // 5: k/a created at 2, modified at 5
    let keys = |flags: &[&str]| {
        let mut args = vec!["get", "k/", "--prefix", "--keys-only"];
        args.extend_from_slice(flags);
        ok(lode.ctl(&args))
    };
    assert_eq!(keys(&["--min-mod-revision", "4"]), "k/a\nk/c\n");
    assert_eq!(keys(&["--max-mod-revision", "3"]), "k/b\n");
    assert_eq!(keys(&["--min-create-revision", "3"]), "k/b\nk/c\n");
    assert_eq!(keys(&["--max-create-revision", "2"]), "k/a\n");
    assert_eq!(
        keys(&["--min-mod-revision=3", "--max-mod-revision=4"]),
        "k/b\nk/c\n"
    );
    // etcdctl 3.6's spellings too.
    assert_eq!(
        keys(&["--min-create-rev", "3", "--max-create-rev", "3"]),
        "k/b\n"
    );
    let refused = failed(lode.ctl(&[
        "get",
        "k/",
        "--prefix",
        "--min-mod-revision",
        "5",
        "--max-mod-revision",
        "4",
    ]));
    assert!(
        refused.contains("min mod revision (5) > max mod revision (4)"),
        "{refused}"
    );
    let refused = failed(lode.ctl(&["get", "k/", "--min-create-revision", "x"]));
    assert!(refused.contains("--min-create-revision"), "{refused}");
}

#[test]
fn lodectl_prints_fields_as_etcdctl() {
    let dir = DataDir::new("ctl-fields");
    let lode = Lode::start(&dir.0, &[]);
    ok(lode.ctl(&["put", "f", "say \"hi\"\n"]));
    let status = json(&ok(lode.ctl(&["endpoint", "status", "-w", "json"])));
    let header = &status[0]["Status"]["header"];
    let (cluster, member) = (
        header["cluster_id"].as_u64().expect("cluster ID"),
        header["member_id"].as_u64().expect("member ID"),
    );
    let term = header["raft_term"].as_u64().expect("term");
    let got = ok(lode.ctl(&["get", "f", "-w", "fields"]));
    assert_eq!(
        got,
        format!(
            "\"ClusterID\" : {cluster}\n\"MemberID\" : {member}\n\"Revision\" : 2\n\"RaftTerm\" : {term}\n\
             \"Key\" : \"f\"\n\"CreateRevision\" : 2\n\"ModRevision\" : 2\n\"Version\" : 1\n\
             \"Value\" : \"say \\\"hi\\\"\\n\"\n\"Lease\" : 0\n\"More\" : false\n\"Count\" : 1\n"
        )
    );
    let put = ok(lode.ctl(&["put", "f", "v2", "--prev-kv", "-w", "fields"]));
    assert!(put.starts_with("\"ClusterID\" : "), "{put}");
    assert!(put.contains("\"Revision\" : 3\n"), "{put}");
    assert!(put.contains("\"PrevKey\" : \"f\"\n"), "{put}");
    assert!(put.contains("\"PrevVersion\" : 1\n"), "{put}");
    let deleted = ok(lode.ctl(&["del", "f", "-w", "fields"]));
    assert!(deleted.contains("\"Deleted\" : 1\n"), "{deleted}");
    let txn = lode.ctl_with_input(&["txn", "-w", "fields"], Some("\nput t 1\nget t\n\n\n"));
    let txn = ok(txn);
    assert!(txn.contains("\"Succeeded\" : true\n"), "{txn}");
    assert!(txn.contains("\"Key\" : \"t\"\n"), "{txn}");
    let members = ok(lode.ctl(&["member", "list", "-w", "fields"]));
    assert!(
        members.contains(&format!("\"ID\" : {member}\n")),
        "{members}"
    );
    assert!(
        members.contains(&format!("\"ClientURL\" : \"{}\"\n", lode.client_url)),
        "{members}"
    );
    assert!(members.contains("\"IsLearner\" : false\n"), "{members}");
    let status = ok(lode.ctl(&["endpoint", "status", "-w", "fields"]));
    assert!(status.contains("\"RaftAppliedIndex\" : "), "{status}");
    assert!(
        status.contains(&format!("\"Endpoint\" : \"{}\"\n", lode.address)),
        "{status}"
    );
    let granted = ok(lode.ctl(&["lease", "grant", "100", "-w", "fields"]));
    assert!(granted.contains("\"TTL\" : 100\n"), "{granted}");
    // Commands without a fields form say so.
    let refused = failed(lode.ctl(&["perf", "-w", "fields"]));
    assert!(
        refused.contains("not supported as output format"),
        "{refused}"
    );
    let refused = failed(lode.ctl(&["get", "f", "-w", "protobuf"]));
    assert!(refused.contains("protobuf not supported"), "{refused}");

    // --hex: keys and values as etcdctl prints them.
    ok(lode.ctl(&["put", "hx", "ok"]));
    assert_eq!(
        ok(lode.ctl(&["get", "hx", "--hex"])),
        "\\x68\\x78\n\\x6f\\x6b\n"
    );
    assert_eq!(
        ok(lode.ctl(&["get", "hx", "--hex=true", "--print-value-only"])),
        "\\x6f\\x6b\n"
    );
    assert_eq!(ok(lode.ctl(&["get", "hx", "--hex=false"])), "hx\nok\n");
}

#[test]
fn lodectl_takes_etcdctls_global_flags_and_variables() {
    let dir = DataDir::new("ctl-globals");
    let lode = Lode::start(&dir.0, &[]);
    ok(lode.ctl(&["put", "g", "1"]));
    let endpoint = lode.address.as_str();

    // Every variable stands for its flag.
    let got = ok(lodectl_with_env(
        &["get", "g"],
        &[
            ("ETCDCTL_ENDPOINTS", endpoint),
            ("ETCDCTL_API", "3"),
            ("ETCDCTL_COMMAND_TIMEOUT", "10s"),
            ("ETCDCTL_DIAL_TIMEOUT", "3s"),
            ("ETCDCTL_KEEPALIVE_TIME", "30s"),
            ("ETCDCTL_KEEPALIVE_TIMEOUT", "10s"),
            ("ETCDCTL_INSECURE_TRANSPORT", "true"),
            ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "false"),
        ],
    ));
    assert_eq!(got, "g\n1\n");
    let as_json = ok(lodectl_with_env(
        &["get", "g"],
        &[
            ("ETCDCTL_ENDPOINTS", endpoint),
            ("ETCDCTL_WRITE_OUT", "json"),
        ],
    ));
    assert_eq!(json(&as_json)["count"], 1);
    let as_hex = ok(lodectl_with_env(
        &["get", "g"],
        &[("ETCDCTL_ENDPOINTS", endpoint), ("ETCDCTL_HEX", "true")],
    ));
    assert_eq!(as_hex, "\\x67\n\\x31\n");
    // The command line wins over the variables.
    let got = ok(lodectl_with_env(
        &["--endpoints", endpoint, "-w", "simple", "get", "g"],
        &[
            ("ETCDCTL_ENDPOINTS", &dead_endpoint()),
            ("ETCDCTL_WRITE_OUT", "json"),
        ],
    ));
    assert_eq!(got, "g\n1\n");
    // LODECTL_ENDPOINTS still works, and is read before ETCDCTL_ENDPOINTS.
    let got = ok(lodectl_with_env(
        &["get", "g"],
        &[
            ("LODECTL_ENDPOINTS", endpoint),
            ("ETCDCTL_ENDPOINTS", &dead_endpoint()),
        ],
    ));
    assert_eq!(got, "g\n1\n");

    // etcdctl's flag forms.
    let flags = [
        "--command-timeout=5s",
        "--dial-timeout",
        "1s",
        "--keepalive-time=2s",
        "--keepalive-timeout",
        "6s",
        "--insecure-transport=true",
        "--insecure-skip-tls-verify=false",
        "--insecure-discovery",
    ];
    let mut args = flags.to_vec();
    args.extend(["get", "g"]);
    assert_eq!(ok(lode.ctl(&args)), "g\n1\n");
    // A bare number of seconds is still a command timeout.
    assert_eq!(
        ok(lode.ctl(&["--command-timeout", "60", "get", "g"])),
        "g\n1\n"
    );
    // --debug prints the settings in etcdctl's form on stderr.
    let debug = lode.ctl(&["--debug", "get", "g"]);
    let stderr = String::from_utf8_lossy(&debug.stderr).into_owned();
    assert_eq!(ok(debug), "g\n1\n");
    assert!(stderr.contains("ETCDCTL_DIAL_TIMEOUT=2s\n"), "{stderr}");
    assert!(stderr.contains("ETCDCTL_COMMAND_TIMEOUT=5s\n"), "{stderr}");

    // Bad values fail clearly, before anything is sent.
    for (args, expected) in [
        (
            vec!["--dial-timeout", "soon", "get", "g"],
            "invalid value 'soon' for '--dial-timeout",
        ),
        (
            vec!["--dial-timeout", "2", "get", "g"],
            "missing unit in duration",
        ),
        (
            vec!["--command-timeout", "0", "get", "g"],
            "is not a positive duration",
        ),
        (
            vec!["--keepalive-time", "5x", "get", "g"],
            "invalid duration",
        ),
        (vec!["--hex=maybe", "get", "g"], "invalid boolean"),
        (vec!["-w", "yaml", "get", "g"], "invalid value 'yaml'"),
    ] {
        let refused = failed(lode.ctl(&args));
        assert!(refused.contains(expected), "{args:?}: {refused}");
    }
    let refused = failed(lodectl_with_env(
        &["get", "g"],
        &[
            ("ETCDCTL_ENDPOINTS", endpoint),
            ("ETCDCTL_DIAL_TIMEOUT", "whenever"),
        ],
    ));
    assert!(refused.contains("--dial-timeout"), "{refused}");

    // A user against a server whose auth is off goes on without a token, as etcdctl does.
    assert_eq!(
        ok(lode.ctl(&["--user", "root:pw", "get", "g", "--print-value-only"])),
        "1\n"
    );
    // DNS discovery is refused, not ignored; a password needs a user; a TLS setting makes a
    // bare endpoint a TLS one, which this plain server does not speak (never a silent fallback
    // to plain text); a certificate needs its key.
    for (args, expected) in [
        (vec!["--password", "pw", "get", "g"], "without --user"),
        (vec!["--discovery-srv", "example.com", "get", "g"], "DNS"),
        (vec!["--cert=c.pem", "get", "g"], "--cert and --key"),
        (vec!["--key", "k.pem", "get", "g"], "--cert and --key"),
        (
            vec!["--cacert", "/nonexistent-ca.pem", "get", "g"],
            "/nonexistent-ca.pem",
        ),
        (
            vec![
                "--insecure-transport=false",
                "--insecure-skip-tls-verify",
                "get",
                "g",
            ],
            "cannot connect",
        ),
        (
            vec!["--insecure-skip-tls-verify", "get", "g"],
            "cannot connect",
        ),
    ] {
        let refused = failed(lode.ctl(&args));
        assert!(refused.contains(expected), "{args:?}: {refused}");
    }
    let refused = failed(lodectl_with_env(
        &["get", "g"],
        &[("ETCDCTL_ENDPOINTS", endpoint), ("ETCDCTL_CERT", "c.pem")],
    ));
    assert!(refused.contains("--cert and --key"), "{refused}");

    // ETCDCTL_API: 3 is what lodectl speaks, 2 is refused.
    let refused = failed(lodectl_with_env(
        &["get", "g"],
        &[("ETCDCTL_ENDPOINTS", endpoint), ("ETCDCTL_API", "2")],
    ));
    assert!(
        refused.contains("ETCDCTL_API=2 is not supported"),
        "{refused}"
    );
    let refused = failed(lodectl_with_env(
        &["get", "g"],
        &[("ETCDCTL_ENDPOINTS", endpoint), ("ETCDCTL_API", "4")],
    ));
    assert!(refused.contains("unsupported API version: 4"), "{refused}");
}

#[test]
fn lodectl_watch_runs_a_command_for_every_event() {
    let dir = DataDir::new("ctl-watch-exec");
    let lode = Lode::start(&dir.0, &[]);
    let record = dir.0.with_extension("events");
    let _ = std::fs::remove_file(&record);
    let script = format!(
        "printf '%s|%s|%s|%s\\n' \"$ETCD_WATCH_REVISION\" \"$ETCD_WATCH_EVENT_TYPE\" \
         \"$ETCD_WATCH_KEY\" \"$ETCD_WATCH_VALUE\" >> '{}'",
        record.display()
    );
    let mut watch = lode
        .ctl_process(&["watch", "w/", "--prefix", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lodectl watch");
    let stdout = watch.stdout.take().expect("stdout");
    let lines = common::server::lines_of(stdout);
    // The watch starts at the next revision: write until the first event is seen.
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while printed.is_empty() {
        assert!(Instant::now() < deadline, "the watch never printed");
        ok(lode.ctl(&["put", "w/first", "1"]));
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            printed.push(line);
        }
    }
    let _ = std::fs::remove_file(&record);
    let put = json(&ok(lode.ctl(&["put", "w/k", "a \"v\"", "-w", "json"])));
    let put_revision = put["header"]["revision"].as_i64().expect("revision");
    let deleted = json(&ok(lode.ctl(&["del", "w/k", "-w", "json"])));
    let delete_revision = deleted["header"]["revision"].as_i64().expect("revision");
    let expected = format!(
        "{put_revision}|\"PUT\"|\"w/k\"|\"a \\\"v\\\"\"\n{delete_revision}|\"DELETE\"|\"w/k\"|\"\"\n"
    );
    eventually("the command ran for both events", || {
        std::fs::read_to_string(&record)
            .map(|text| text.ends_with(&expected))
            .unwrap_or(false)
    });
    // The events were printed as usual too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.ends_with(&["DELETE".into(), "w/k".into(), "".into()]) {
        let left = deadline.saturating_duration_since(Instant::now());
        printed.push(lines.recv_timeout(left).expect("the events are printed"));
    }
    assert!(printed.contains(&"a \"v\"".to_string()), "{printed:?}");
    let _ = watch.kill();
    let _ = watch.wait();

    // A failing command ends the watch with etcdctl's line.
    let mut failing = lode
        .ctl_process(&["watch", "x", "--", "false"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lodectl watch");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(Instant::now() < deadline, "the watch did not end");
        ok(lode.ctl(&["put", "x", "1"]));
        if let Some(status) = failing.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut failing.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(
        stderr.contains("command [\"false\"] error (exit status 1)"),
        "{stderr}"
    );

    // etcdctl's argument errors.
    let refused = failed(lode.ctl(&["watch", "x", "--"]));
    assert!(
        refused.contains("found separator --, but no commands"),
        "{refused}"
    );
    let refused = failed(lode.ctl(&["watch", "x", "y", "--prefix"]));
    assert!(refused.contains("mutually exclusive"), "{refused}");
    let refused = failed(lode.ctl(&["watch"]));
    assert!(refused.contains("bad number of arguments"), "{refused}");
    let conflicting = lode
        .ctl_process(&["watch", "x"])
        .env("ETCDCTL_WATCH_KEY", "y")
        .output()
        .expect("lodectl watch");
    let refused = failed(conflicting);
    assert!(
        refused.contains("found conflicting environment key"),
        "{refused}"
    );
}

#[test]
fn lodectl_make_mirror_copies_then_follows_the_source() {
    let (source_dir, destination_dir) = (
        DataDir::new("ctl-mirror-src"),
        DataDir::new("ctl-mirror-dst"),
    );
    let source = Lode::start(&source_dir.0, &[]);
    let destination = Lode::start(&destination_dir.0, &[]);
    ok(source.ctl(&["put", "m/a", "1"]));
    ok(source.ctl(&["put", "m/b", "2"]));
    ok(source.ctl(&["put", "other", "not mirrored"]));
    let mut mirror = source
        .ctl_process(&[
            "make-mirror",
            "--prefix",
            "m/",
            "--dest-prefix",
            "copy/",
            &destination.client_url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lodectl make-mirror");
    let stdout = mirror.stdout.take().expect("stdout");
    let lines = common::server::lines_of(stdout);
    let copied = || ok(destination.ctl(&["get", "", "--prefix"]));
    eventually("the base copy", || copied() == "copy/a\n1\ncopy/b\n2\n");
    // Later changes follow, one txn per revision.
    ok(source.ctl(&["put", "m/c", "3"]));
    ok(source.ctl(&["del", "m/a"]));
    ok(source.ctl_with_input(&["txn"], Some("\nput m/d 4\nput m/e 5\n\n\n")));
    ok(source.ctl(&["put", "other2", "not mirrored"]));
    eventually("the changes", || {
        copied() == "copy/b\n2\ncopy/c\n3\ncopy/d\n4\ncopy/e\n5\n"
    });
    // Every 30 seconds the keys synced so far: 2 copied, then 4 changes (a put, a delete and
    // a txn of two puts).
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("make-mirror prints its count");
        if let Ok(count) = line.trim().parse::<u64>() {
            break count;
        }
    };
    assert_eq!(count, 6);
    let _ = mirror.kill();
    let _ = mirror.wait();

    // --no-dest-prefix mirrors to the root; the two cannot be combined; a destination is needed.
    let mut to_root = source
        .ctl_process(&[
            "make-mirror",
            "--prefix",
            "m/",
            "--no-dest-prefix",
            &destination.address,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lodectl make-mirror");
    eventually("the copy to the root", || {
        ok(destination.ctl(&["get", "b"])) == "b\n2\n"
    });
    let _ = to_root.kill();
    let _ = to_root.wait();
    let refused = failed(source.ctl(&[
        "make-mirror",
        "--dest-prefix",
        "x",
        "--no-dest-prefix",
        &destination.address,
    ]));
    assert!(
        refused.contains("cannot be set at the same time"),
        "{refused}"
    );
    let refused = failed(source.ctl(&["make-mirror"]));
    assert!(refused.contains("make-mirror takes one destination argument"));
    let refused =
        failed(source.ctl(&["make-mirror", "--dest-cert", "c.pem", &destination.address]));
    assert!(refused.contains("--dest-cert and --dest-key"), "{refused}");
}

/// Whether `line` is one of etcdctl's check perf lines.
fn is_check_perf_line(line: &str) -> bool {
    let number_then = |rest: &str, suffix: &str| {
        rest.strip_suffix(suffix)
            .is_some_and(|n| !n.is_empty() && n.parse::<f64>().is_ok())
    };
    if let Some(rest) = line.strip_prefix("PASS: Throughput is ") {
        return number_then(rest, " writes/s");
    }
    if let Some(rest) = line.strip_prefix("FAIL: Throughput too low: ") {
        return number_then(rest, " writes/s");
    }
    for prefix in [
        "PASS: Slowest request took ",
        "Slowest request took too long: ",
        "PASS: Stddev is ",
        "Stddev too high: ",
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return number_then(rest, "s") && rest.contains('.');
        }
    }
    line == "PASS"
        || line == "FAIL"
        || line == "FAIL: too many errors"
        || (line.starts_with("FAIL: ERROR(") && line.contains(") -> "))
}

#[test]
fn lodectl_check_perf_runs_etcdctls_small_load_and_cleans_up() {
    let dir = DataDir::new("ctl-check-perf");
    let lode = Lode::start(&dir.0, &[]);
    ok(lode.ctl(&["put", "keep", "me"]));
    let output = lode.ctl(&["check", "perf", "--load", "s", "--auto-compact"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    // The cleanup's compaction, then the verdict; PASS or FAIL depends on the machine.
    assert!(lines.len() >= 6, "{stdout}");
    assert!(
        lines[0].starts_with("Compacting with revision "),
        "{stdout}"
    );
    assert!(lines[1].starts_with("Compacted with revision "), "{stdout}");
    for line in &lines[2..] {
        assert!(
            is_check_perf_line(line),
            "not one of etcdctl's lines: {line:?}"
        );
    }
    let verdict = *lines.last().expect("a verdict");
    assert_eq!(
        output.status.code(),
        Some(if verdict == "PASS" { 0 } else { 1 }),
        "{stdout}"
    );
    assert!(lines.iter().any(|l| l.contains("Throughput")), "{stdout}");
    // The keys are gone, the others kept.
    assert_eq!(
        ok(lode.ctl(&["get", perf_prefix(), "--prefix", "--count-only"])),
        "0\n"
    );
    assert_eq!(ok(lode.ctl(&["get", "keep"])), "keep\nme\n");
}

fn perf_prefix() -> &'static str {
    "/etcdctl-check-perf/"
}

#[test]
fn lodectl_check_perf_refuses_bad_input() {
    let dir = DataDir::new("ctl-check-perf-bad");
    let lode = Lode::start(&dir.0, &[]);
    let refused = failed(lode.ctl(&["check", "perf", "--load", "xxl"]));
    assert!(refused.contains("unknown load option xxl"), "{refused}");
    // A prefix that already holds keys is refused before anything is written.
    ok(lode.ctl(&["put", "/mine/k", "v"]));
    let refused = failed(lode.ctl(&["check", "perf", "--prefix", "/mine/"]));
    assert!(refused.contains("prefix \"/mine/\" has keys"), "{refused}");
    assert_eq!(
        ok(lode.ctl(&["get", "/mine/", "--prefix", "--count-only"])),
        "1\n"
    );
}
