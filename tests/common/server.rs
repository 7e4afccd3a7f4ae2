//! Starting real `lode` processes for tests: free ports on 127.0.0.1, data dirs under Cargo's
//! target tmp dir (a real file system), always stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, never the same twice in this test process (tests run in
/// parallel, and a port released and handed out again would let two servers share it), and
/// outside the kernel's ephemeral range: a port from that range can be taken at any moment as
/// the source port of some process's outgoing connection, and a member restarted on its fixed
/// port would then find it in use.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    // Different test processes start at different places; each walks on from there.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let span = u32::from(high - low);
    let mut candidate =
        low + ((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % span) as u16;
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..span {
        candidate = if candidate + 1 >= high {
            low
        } else {
            candidate + 1
        };
        if handed_out.contains(&candidate) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            handed_out.insert(candidate);
            return candidate;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A fresh data directory, removed when dropped.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(name: &str) -> DataDir {
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("stderr"));
    }
}

/// A running `lode`.
pub struct Lode {
    pub child: Option<Child>,
    /// Its client address (host:port of `--listen-client-urls`), where lodectl's native
    /// protocol, etcd's gRPC API and HTTP are all served.
    pub address: String,
    /// Its client URL (`--listen-client-urls`).
    pub client_url: String,
    pub data_dir: PathBuf,
}

impl Lode {
    /// Starts lode on `data_dir` and waits until it accepts connections. A start that fails
    /// (a port taken in the meantime) is retried on another port; lode's stderr goes to
    /// `<data_dir>.stderr` and is shown if it never comes up.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Lode {
        for _ in 0..5 {
            let client_url = format!("http://127.0.0.1:{}", free_port());
            let log = std::fs::File::create(data_dir.with_extension("stderr"));
            let mut lode = Lode::spawn(data_dir, client_url, log, extra, &[]);
            if lode.wait_ready(0) {
                return lode;
            }
            lode.kill();
        }
        let log = std::fs::read_to_string(data_dir.with_extension("stderr")).unwrap_or_default();
        panic!("lode did not start on {}: {log}", data_dir.display());
    }

    /// Starts lode on a fixed client port (a cluster member keeps its addresses across
    /// restarts) and waits until it serves; panics with its stderr if it does not. Called at
    /// once after a kill, as a supervisor would: lode itself waits for its old sockets to go.
    pub fn start_on(data_dir: &Path, client_port: u16, extra: &[&str]) -> Lode {
        Lode::start_on_with_env(data_dir, client_port, extra, &[])
    }

    /// `start_on` with extra environment variables for lode (fault injection).
    pub fn start_on_with_env(
        data_dir: &Path,
        client_port: u16,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Lode {
        let log_path = data_dir.with_extension("stderr");
        let starts_before = serving_lines(&std::fs::read_to_string(&log_path).unwrap_or_default());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let mut lode = Lode::spawn(data_dir, client_url, log, extra, env);
        if !lode.wait_ready(starts_before) {
            panic!(
                "lode did not start on {}: {}",
                data_dir.display(),
                lode.stderr()
            );
        }
        lode
    }

    /// Spawns lode on `data_dir` serving clients on `client_url`, started with etcd's flags
    /// only (as users start it), its stderr into `log`.
    fn spawn(
        data_dir: &Path,
        client_url: String,
        log: std::io::Result<std::fs::File>,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Lode {
        let child = Command::new(env!("CARGO_BIN_EXE_lode"))
            .envs(env.iter().cloned())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log.expect("lode log file"))
            .spawn()
            .expect("spawn lode");
        Lode {
            child: Some(child),
            address: client_url.trim_start_matches("http://").to_string(),
            client_url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Takes over a lode the test spawned itself (configured its own way, its stderr going to
    /// a fresh `<data_dir>.stderr`) serving clients on `client_url`; waits until it serves and panics
    /// with its log if it does not.
    pub fn adopt(child: Child, client_url: &str, data_dir: &Path) -> Lode {
        let mut lode = Lode {
            child: Some(child),
            address: client_url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_string(),
            client_url: client_url.to_string(),
            data_dir: data_dir.to_path_buf(),
        };
        if !lode.wait_ready(0) {
            panic!(
                "lode did not start on {}: {}",
                data_dir.display(),
                lode.stderr()
            );
        }
        lode
    }

    /// True once lode's stderr holds more "serving" lines than `starts_before` (every core
    /// listens by then; a bare connect could reach the port check lode makes before its cores
    /// start); false if it exited first or never said so.
    fn wait_ready(&mut self, starts_before: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if serving_lines(&self.stderr()) > starts_before {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// What lode wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("stderr")).unwrap_or_default()
    }

    /// Runs lodectl against this server.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with_input(args, None)
    }

    /// A function running lodectl against this server, for another thread.
    pub fn ctl_command(&self) -> impl Fn(&[&str]) -> Output + Send + 'static {
        let address = self.address.clone();
        move |args| {
            Command::new(env!("CARGO_BIN_EXE_lodectl"))
                .args(["--endpoints", &address])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run lodectl")
        }
    }

    /// A lodectl command against this server, to spawn (for commands that run until killed).
    pub fn ctl_process(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lodectl"));
        command
            .args(["--endpoints", &self.address])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs lodectl with `input` on its standard input.
    pub fn ctl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lodectl"));
        command.args(["--endpoints", &self.address]).args(args);
        output_with_input(&mut command, input)
    }

    /// Sends SIGKILL and reaps.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Lode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- lode stderr ({}) ---\n{}", self.address, self.stderr());
        }
        self.kill();
    }
}

/// stdout of a successful command, or a panic with its stderr.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a failed command, or a panic.
pub fn failed(output: Output) -> String {
    assert!(!output.status.success(), "command unexpectedly succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The messages of lode's log lines (zap JSON lines, as lode writes them by default), one a
/// line; lines that are not JSON are kept as they are.
pub fn messages(log: &str) -> String {
    let mut out = String::new();
    for line in log.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.get("msg").is_some() => {
                out.push_str(value["msg"].as_str().unwrap_or_default());
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// How many times lode said it serves in `stderr`.
fn serving_lines(stderr: &str) -> usize {
    stderr.matches("serving the native protocol").count()
}

/// `--listen-client-urls` and `--advertise-client-urls` on a free port (tests run many lode
/// processes at once; the default, localhost:2379, would collide).
pub fn client_urls() -> [String; 4] {
    let url = format!("http://127.0.0.1:{}", free_port());
    [
        "--listen-client-urls".into(),
        url.clone(),
        "--advertise-client-urls".into(),
        url,
    ]
}

/// Starts lode on `data_dir` (on `address`, or a free port) expecting it to refuse: checks the
/// exit code is 1 and returns what it printed on stderr.
pub fn refused_start(data_dir: &Path, address: Option<&str>) -> String {
    let url = format!(
        "http://{}",
        address.map_or_else(|| format!("127.0.0.1:{}", free_port()), str::to_string)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .output()
        .expect("run lode");
    assert_eq!(output.status.code(), Some(1), "lode should refuse to start");
    messages(&String::from_utf8_lossy(&output.stderr))
}

/// The lines a child writes to `stdout`, as they come, read by a thread of their own (ends when
/// the child closes it or the receiver is dropped).
pub fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Runs `command` with `input` (if any) on its standard input; its output.
pub fn output_with_input(command: &mut Command, input: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    if let (Some(input), Some(stdin)) = (input, child.stdin.as_mut()) {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("command output")
}

/// One HTTP/1.1 exchange with a server at `url` (`http://host:port`) on a fresh connection: the status and the body.
pub fn http(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with_headers(url, method, path, &[], body)
}

/// `http` with extra request `headers` (name, value).
pub fn http_with_headers(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}
