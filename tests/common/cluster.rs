//! Clusters of real lode processes on loopback for tests: members with their flags and data
//! dirs, started and restarted on fixed ports, and the questions tests ask them.

use std::time::{Duration, Instant};

use super::server::{free_port, ok, DataDir, Lode};

/// One member: its flags, data dir and ports, and the process while it runs.
pub struct Member {
    /// First, so that it is dropped (killed, its log shown on a failure) before its data dir.
    pub lode: Option<Lode>,
    pub name: String,
    pub dir: DataDir,
    pub client_port: u16,
    pub args: Vec<String>,
    /// Extra environment variables for the process (fault injection).
    pub env: Vec<(String, String)>,
}

impl Member {
    /// Starts the member, at once even right after a kill (lode waits for its previous run's
    /// sockets itself, as a supervisor restarting it would need).
    pub fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.lode = Some(Lode::start_on_with_env(
            &self.dir.0,
            self.client_port,
            &args,
            &self.env,
        ));
    }

    pub fn peer_url(&self) -> &str {
        let at = self
            .args
            .iter()
            .position(|a| a == "--listen-peer-urls")
            .expect("peer URL flag");
        &self.args[at + 1]
    }

    /// Waits until the member's process exits by itself (at most a minute); panics with
    /// `what` and its log otherwise.
    pub fn wait_for_exit(&mut self, what: &str) {
        let log_path = self.dir.0.with_extension("stderr");
        let child = self
            .lode
            .as_mut()
            .expect("member running")
            .child
            .as_mut()
            .expect("child");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("{what}: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn lode(&self) -> &Lode {
        self.lode.as_ref().expect("member running")
    }

    /// (is leader, raft term) from `endpoint status`, or `None` if it does not answer.
    pub fn status(&self) -> Option<(bool, u64)> {
        let output = self
            .lode
            .as_ref()?
            .ctl(&["endpoint", "status", "-w", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let status = &status[0]["Status"];
        let own = status["header"]["member_id"].as_u64()?;
        Some((
            status["leader"].as_u64()? == own,
            status["raftTerm"].as_u64()?,
        ))
    }
}

pub fn cluster(name: &str) -> Vec<Member> {
    cluster_with(name, &[])
}

/// A cluster whose members all get `extra` flags too.
pub fn cluster_with(name: &str, extra: &[&str]) -> Vec<Member> {
    build_cluster(name, 3, extra, None)
}

/// A cluster of `size` members (each listening for peers, so members can be added).
pub fn cluster_of(name: &str, size: usize) -> Vec<Member> {
    build_cluster(name, size, &[], None)
}

/// The next member (`m<n>` after `n` members), to join the cluster of `members` at `peer_url`
/// once added, its data in `dir` (started as etcd starts a member joining a running cluster:
/// `--initial-cluster-state existing`).
pub fn joiner_of(members: &[Member], dir: &str, peer_url: &str) -> Member {
    let name = format!("m{}", members.len());
    let mut initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    initial.push(format!("{name}={peer_url}"));
    Member {
        dir: DataDir::new(dir),
        client_port: free_port(),
        args: [
            "--name",
            &name,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            &initial.join(","),
            "--initial-cluster-state",
            "existing",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        name,
        env: Vec::new(),
        lode: None,
    }
}

/// A cluster of `size` members whose peer traffic goes through fault-injecting proxies of
/// `network` (member i advertises proxy i, which forwards to its real peer listener).
pub fn cluster_behind_proxies(
    name: &str,
    size: usize,
    network: &std::sync::Arc<super::proxy::Network>,
) -> Vec<Member> {
    build_cluster(name, size, &[], Some(network))
}

/// `cluster_behind_proxies` whose members all get `extra` flags too.
pub fn cluster_behind_proxies_with(
    name: &str,
    size: usize,
    extra: &[&str],
    network: &std::sync::Arc<super::proxy::Network>,
) -> Vec<Member> {
    build_cluster(name, size, extra, Some(network))
}

fn build_cluster(
    name: &str,
    size: usize,
    extra: &[&str],
    network: Option<&std::sync::Arc<super::proxy::Network>>,
) -> Vec<Member> {
    let listen: Vec<String> = (0..size)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let advertised: Vec<String> = listen
        .iter()
        .enumerate()
        .map(|(i, address)| match network {
            Some(network) => super::proxy::start_proxy(network, i, address.clone()),
            None => address.clone(),
        })
        .collect();
    let initial: Vec<String> = advertised
        .iter()
        .enumerate()
        .map(|(i, address)| format!("m{i}=http://{address}"))
        .collect();
    let initial = initial.join(",");
    // Fast elections, unless the test sets its own timing.
    let timing: &[&str] = if extra.contains(&"--heartbeat-interval") {
        &[]
    } else {
        &["--heartbeat-interval", "50", "--election-timeout", "500"]
    };
    (0..size)
        .map(|i| {
            let listen_url = format!("http://{}", listen[i]);
            let advertised_url = format!("http://{}", advertised[i]);
            Member {
                name: format!("m{i}"),
                dir: DataDir::new(&format!("{name}-m{i}")),
                client_port: free_port(),
                args: [
                    "--name",
                    &format!("m{i}"),
                    "--listen-peer-urls",
                    &listen_url,
                    "--initial-advertise-peer-urls",
                    &advertised_url,
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-token",
                    name,
                ]
                .iter()
                .chain(timing)
                .chain(extra)
                .map(|s| s.to_string())
                .collect(),
                env: Vec::new(),
                lode: None,
            }
        })
        .collect()
}

/// Polls until exactly one running member leads in a term above `newer_than_term`; returns its
/// index.
pub fn wait_for_leader(members: &[Member], newer_than_term: u64) -> usize {
    let everyone: Vec<usize> = (0..members.len()).collect();
    wait_for_leader_among(members, &everyone, newer_than_term)
}

/// Like `wait_for_leader`, looking only at `candidates`.
pub fn wait_for_leader_among(
    members: &[Member],
    candidates: &[usize],
    newer_than_term: u64,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leaders: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(
                |&i| matches!(members[i].status(), Some((true, term)) if term > newer_than_term),
            )
            .collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader among {candidates:?}: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn follower_id(member: &Member) -> u64 {
    let output = member.lode().ctl(&["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    status[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("member id")
}

pub fn count(member: &Member, prefix: &str) -> String {
    ok(member
        .lode()
        .ctl(&["get", prefix, "--prefix", "--count-only"]))
}

/// Every member's pairs under `prefix` with their revisions, as `get -w json` prints them.
pub fn dump(member: &Member, prefix: &str) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(&ok(member
        .lode()
        .ctl(&["get", prefix, "--prefix", "-w", "json"])))
    .expect("json");
    json["kvs"].clone()
}

/// Waits until `member` holds `expected` pairs under `prefix`.
pub fn wait_for_count(member: &Member, prefix: &str, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected = format!("{expected}\n");
    while count(member, prefix) != expected {
        assert!(
            Instant::now() < deadline,
            "{} never caught up: {}",
            member.name,
            count(member, prefix)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn member_list(member: &Member) -> Vec<serde_json::Value> {
    let json: serde_json::Value =
        serde_json::from_str(&ok(member.lode().ctl(&["member", "list", "-w", "json"])))
            .expect("json");
    json["members"].as_array().cloned().unwrap_or_default()
}

pub fn own_id(member: &Member) -> u64 {
    follower_id(member)
}

/// Keeps writing through any member until stopped; returns the keys whose writes were
/// acknowledged.
pub fn background_writer(
    endpoints: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let key = format!("w{n:05}");
            n += 1;
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
                .args(["--endpoints", &endpoints, "put", &key, "under load"])
                .output()
                .expect("lodectl");
            if output.status.success() {
                acknowledged.push(key);
            }
        }
        acknowledged
    })
}

/// A client history over a run: one writer puts `h` = 1, 2, 3, ... through any member; readers
/// read it linearizably through any member; each operation is recorded with when it was called
/// and when it was answered (a write that failed or timed out: never, its outcome unknown).
/// `check` then holds the whole history, with a final read after the run, to linearizability
/// (`lode::linearize`): a stale read, a lost acknowledged write or a value never written all
/// fail it; each reader's revisions never go back.
pub struct History {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Writes and reads that succeeded so far.
    progress: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>,
    /// What every call and answer is timed against.
    origin: Instant,
    writer: std::thread::JoinHandle<Vec<lode::linearize::Operation>>,
    readers: Vec<std::thread::JoinHandle<Vec<(lode::linearize::Operation, i64)>>>,
}

fn lodectl_at(endpoints: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args(["--endpoints", endpoints, "--command-timeout", "10"])
        .args(args)
        .output()
        .expect("lodectl")
}

/// `h`'s value and mod revision from a successful `get -w json` (`Some(None)`: no such key;
/// `None`: not an answer this test understands).
fn read_h(output: &std::process::Output) -> Option<Option<(u64, i64)>> {
    use base64::Engine as _;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let Some(kv) = json["kvs"].get(0) else {
        return Some(None);
    };
    let value = base64::engine::general_purpose::STANDARD
        .decode(kv["value"].as_str()?)
        .ok()?;
    let value: u64 = String::from_utf8(value).ok()?.parse().ok()?;
    Some(Some((value, kv["mod_revision"].as_i64()?)))
}

/// Nanoseconds since `origin`.
fn at(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// A read of `h` as the checker takes it.
fn read_operation(call: u64, ret: u64, read: Option<(u64, i64)>) -> lode::linearize::Operation {
    lode::linearize::Operation {
        call,
        ret: Some(ret),
        op: lode::linearize::KvOp::Get {
            key: b"h".to_vec(),
            value: read.map(|(value, _)| value.to_string().into_bytes()),
        },
    }
}

impl History {
    /// Starts the writer and `readers` readers, each going through `endpoints` (host:port).
    pub fn start(endpoints: &[String], readers: usize) -> History {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress = std::sync::Arc::new([
            std::sync::atomic::AtomicU64::new(0),
            std::sync::atomic::AtomicU64::new(0),
        ]);
        let origin = Instant::now();
        let writer = {
            let (stop, endpoints, progress) = (stop.clone(), endpoints.to_vec(), progress.clone());
            std::thread::spawn(move || {
                let mut operations = Vec::new();
                let mut attempted = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    attempted += 1;
                    // A different member first each time, the rest as fallbacks.
                    let mut order = endpoints.clone();
                    order.rotate_left(attempted as usize % endpoints.len());
                    let call = at(origin);
                    let output =
                        lodectl_at(&order.join(","), &["put", "h", &attempted.to_string()]);
                    let ret = output.status.success().then(|| at(origin));
                    if ret.is_some() {
                        progress[0].fetch_add(1, Ordering::Relaxed);
                    }
                    operations.push(lode::linearize::Operation {
                        call,
                        ret,
                        op: lode::linearize::KvOp::Put {
                            key: b"h".to_vec(),
                            value: attempted.to_string().into_bytes(),
                        },
                    });
                }
                operations
            })
        };
        let readers = (0..readers)
            .map(|r| {
                let (stop, endpoints, progress) =
                    (stop.clone(), endpoints.to_vec(), progress.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut n = r;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let endpoint = &endpoints[n % endpoints.len()];
                        let call = at(origin);
                        let output = lodectl_at(endpoint, &["get", "h", "-w", "json"]);
                        let ret = at(origin);
                        // A read that failed told nothing: it is left out.
                        if output.status.success() {
                            if let Some(read) = read_h(&output) {
                                let revision = read.map_or(0, |(_, revision)| revision);
                                seen.push((read_operation(call, ret, read), revision));
                                progress[1].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        History {
            stop,
            progress,
            origin,
            writer,
            readers,
        }
    }

    /// Waits until `writes` more writes were acknowledged and `reads` more reads answered
    /// (the clients make progress under whatever fault is in place).
    pub fn wait_for_progress(&self, writes: u64, reads: u64) {
        use std::sync::atomic::Ordering;
        let target = [
            self.progress[0].load(Ordering::Relaxed) + writes,
            self.progress[1].load(Ordering::Relaxed) + reads,
        ];
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.progress[0].load(Ordering::Relaxed) < target[0]
            || self.progress[1].load(Ordering::Relaxed) < target[1]
        {
            assert!(Instant::now() < deadline, "the clients made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the clients, reads `h` once more through `final_endpoint`, and checks the whole
    /// history for linearizability; returns (writes acknowledged, reads checked).
    pub fn check(self, final_endpoint: &str) -> (u64, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut history = self.writer.join().expect("writer");
        let acknowledged = history.iter().filter(|o| o.ret.is_some()).count() as u64;
        let mut reads = 0;
        for reader in self.readers {
            let seen = reader.join().expect("reader");
            reads += seen.len();
            for window in seen.windows(2) {
                assert!(
                    window[1].1 >= window[0].1,
                    "a reader's revision went back: {:?} then {:?}",
                    window[0],
                    window[1]
                );
            }
            history.extend(seen.into_iter().map(|(operation, _)| operation));
        }
        // The final read may meet an election still settling: asked again until answered.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let call = at(self.origin);
            let output = lodectl_at(final_endpoint, &["get", "h", "-w", "json"]);
            let ret = at(self.origin);
            if output.status.success() {
                let read = read_h(&output).expect("a final read of h");
                history.push(read_operation(call, ret, read));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "h unreadable after the run: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        match lode::linearize::check(&history) {
            lode::linearize::Verdict::Linearizable => {}
            verdict => panic!(
                "the history of {} operations is not linearizable: {verdict:?}",
                history.len()
            ),
        }
        (acknowledged, reads)
    }
}

/// Waits until every running member of `members` holds the same pairs (`get -w json` of the
/// whole keyspace, revisions included).
pub fn wait_for_convergence(members: &[Member], which: &[usize]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dumps: Vec<serde_json::Value> = which.iter().map(|&i| dump(&members[i], "")).collect();
        if dumps.windows(2).all(|w| w[0] == w[1]) {
            // And the same history: etcd's HashKV at one revision, on every member.
            let hash = |member: &Member, revision: i64| -> (u64, i64) {
                let json: serde_json::Value = serde_json::from_str(&ok(member.lode().ctl(&[
                    "endpoint",
                    "hashkv",
                    "--rev",
                    &revision.to_string(),
                    "-w",
                    "json",
                ])))
                .expect("json");
                let answer = &json[0]["HashKV"];
                (
                    answer["hash"].as_u64().expect("hash"),
                    answer["hash_revision"].as_i64().expect("revision"),
                )
            };
            let (_, revision) = hash(&members[which[0]], 0);
            let hashes: Vec<u64> = which
                .iter()
                .map(|&i| hash(&members[i], revision).0)
                .collect();
            assert!(
                hashes.windows(2).all(|w| w[0] == w[1]),
                "members hold different histories at revision {revision}: {hashes:?}"
            );
            return dumps[0].clone();
        }
        assert!(Instant::now() < deadline, "members never converged");
        std::thread::sleep(Duration::from_millis(100));
    }
}
