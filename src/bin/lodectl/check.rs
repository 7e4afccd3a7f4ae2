//! check perf: etcdctl's benchmark of rate-limited puts from many clients, and its PASS or
//! FAIL.

use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use lode::api::native::{Request, Response};
use lode::ctl::{perf, requests};
use lode::mvcc::request::{CompactionRequest, WriteRequest, WriteResponse};

use crate::common::{connect, deadline, fail, run_session};
use crate::maintenance::defrag_line;
use crate::{Cli, Command};

#[derive(Subcommand)]
pub(crate) enum CheckCommand {
    /// etcdctl's check perf: 60 seconds of rate-limited puts under the prefix from many
    /// clients, then PASS or FAIL on throughput, slowest request and standard deviation; the
    /// keys are deleted after.
    Perf {
        /// Workload: s (150 writes/s, 50 clients), m (1,000/200), l (8,000/500) or xl
        /// (15,000/1,000); small, medium, large, xLarge too.
        #[arg(long, default_value = "s")]
        load: String,
        /// Prefix of the keys written.
        #[arg(long, default_value = perf::DEFAULT_PREFIX)]
        prefix: String,
        /// Compact to the revision of the cleanup after the check.
        #[arg(long)]
        auto_compact: bool,
        /// Defragment after the check (lode never needs it: says so).
        #[arg(long)]
        auto_defrag: bool,
    },
}

/// `lodectl check perf`.
pub(crate) fn run(cli: &Cli) -> ExitCode {
    let Command::Check {
        command:
            CheckCommand::Perf {
                load,
                prefix,
                auto_compact,
                auto_defrag,
            },
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let profile = match perf::profile(load) {
        Ok(profile) => profile,
        Err(error) => return fail(&error),
    };
    let run = CheckPerf {
        endpoints: cli.endpoints.clone(),
        profile,
        prefix: prefix.clone(),
        auto_compact: *auto_compact,
        auto_defrag: *auto_defrag,
        command_timeout: cli.command_timeout,
    };
    run_session(move |signals| async move { check_perf(run, signals).await })
}

/// What `check perf` runs.
struct CheckPerf {
    endpoints: Vec<String>,
    profile: perf::Profile,
    prefix: String,
    auto_compact: bool,
    auto_defrag: bool,
    command_timeout: Duration,
}

/// Raises the soft limit of open files to the hard limit (`check perf --load xl` opens a
/// thousand connections).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A small xorshift source for the keys' random numbers.
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Xorshift {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Xorshift((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `check perf`: etcdctl's run (a put every 1/limit seconds handed to whichever of the
/// clients is free, for 60 seconds or until interrupted), its cleanup and its verdict; the
/// exit status is 0 on PASS, 1 on FAIL.
async fn check_perf(run: CheckPerf, signals: Arc<AtomicBool>) -> Result<u8, String> {
    use futures::{SinkExt as _, StreamExt as _};
    use std::io::Write as _;
    if run.profile.clients > 900 {
        raise_open_files_limit();
    }
    let (first, endpoint) = connect(&run.endpoints).await?;
    let first = Rc::new(first);
    let mut clients = vec![first.clone()];
    while clients.len() < run.profile.clients {
        let (client, _) = connect(std::slice::from_ref(&endpoint)).await?;
        clients.push(Rc::new(client));
    }
    let options = requests::GetOptions {
        prefix: true,
        limit: 1,
        ..Default::default()
    };
    let existing = requests::range_request(&run.prefix, None, &options)?;
    let existing = deadline(run.command_timeout, async {
        first
            .request(&Request::Range(existing))
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    if matches!(&existing, Response::Range(r) if !r.kvs.is_empty()) {
        return Err(format!(
            "prefix {:?} has keys. Delete with 'lodectl del --prefix {}' first",
            run.prefix, run.prefix
        ));
    }

    let measured = Rc::new(std::cell::RefCell::new(perf::Measured::default()));
    let (mut sender, receiver) =
        futures::channel::mpsc::channel::<bytes::Bytes>(run.profile.clients);
    let receiver = Rc::new(futures::lock::Mutex::new(receiver));
    let value = bytes::Bytes::from(vec![0u8; perf::VALUE_SIZE]);
    let started = Instant::now();
    let mut workers = Vec::new();
    for client in &clients {
        let (client, receiver, measured, value) = (
            client.clone(),
            receiver.clone(),
            measured.clone(),
            value.clone(),
        );
        workers.push(glommio::spawn_local(async move {
            loop {
                let key = {
                    let mut receiver = receiver.lock().await;
                    receiver.next().await
                };
                let Some(key) = key else { return };
                let put = Request::Write(WriteRequest::Put(lode::mvcc::request::PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                }));
                let sent = Instant::now();
                let answer = client.request(&put).await;
                let latency = sent.elapsed().as_secs_f64();
                let mut measured = measured.borrow_mut();
                match answer {
                    Ok(_) => measured.latencies.push(latency),
                    Err(error) => *measured.errors.entry(error.to_string()).or_default() += 1,
                }
            }
        }));
    }
    // The rate limiter: the n-th put is due n/limit seconds after the start (a stall is
    // made up for at once, up to a second's worth).
    let interval = Duration::from_secs_f64(1.0 / run.profile.limit as f64);
    let run_for = Duration::from_secs(perf::DURATION_SECONDS);
    let mut random = Xorshift::seeded();
    let mut due = started;
    loop {
        let now = Instant::now();
        if now >= started + run_for || signals.load(Ordering::Relaxed) {
            break;
        }
        if due > now {
            glommio::timer::sleep(due - now).await;
        } else if now - due > Duration::from_secs(1) {
            due = now;
        }
        let key = bytes::Bytes::from(perf::key(&run.prefix, random.next()));
        if sender.send(key).await.is_err() {
            break;
        }
        due += interval;
    }
    drop(sender);
    for worker in workers {
        worker.await;
    }
    let mut measured = measured.take();
    measured.total_seconds = started.elapsed().as_secs_f64();

    // Cleanup, as etcdctl's: delete the prefix, then compact to that revision if asked.
    let delete = requests::delete_request(&run.prefix, None, true, false, false)?;
    let deleted = deadline(Duration::from_secs(30), async {
        first
            .request(&Request::Write(WriteRequest::DeleteRange(delete)))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match deleted {
        Err(error) => println!("FAIL: Cleanup failed during key deletion: ERROR({error})"),
        Ok(Response::Write(WriteResponse::DeleteRange(answer))) if run.auto_compact => {
            let revision = answer.header.revision;
            println!("Compacting with revision {revision}");
            let _ = std::io::stdout().flush();
            let compact = Request::Write(WriteRequest::Compact(CompactionRequest {
                revision,
                physical: true,
            }));
            deadline(Duration::from_secs(30), async {
                first.request(&compact).await.map_err(|e| e.to_string())
            })
            .await?;
            println!("Compacted with revision {revision}");
        }
        Ok(_) => {}
    }
    if run.auto_defrag {
        for endpoint in &run.endpoints {
            print!("{}", defrag_line(endpoint));
        }
    }
    let (text, ok) = perf::verdict(&measured, run.profile);
    print!("{text}");
    let _ = std::io::stdout().flush();
    Ok(if ok { 0 } else { 1 })
}
