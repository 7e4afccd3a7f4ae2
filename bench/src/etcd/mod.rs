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

use clap::Args;

use lode::diskprobe::fdatasync_floor;

use crate::report::{in_scratch, LoadArgs};
use load::{run_case, run_watch_case, Measured};
use systems::{enable_auth, leader_endpoint, start, System};

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

mod load;
mod report;
mod systems;

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
            let _dashboards = (system == System::LodeDashboard)
                .then(|| systems::DashboardReaders::open(&servers.endpoints));
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
        report::report(&args, &server_cpus, &floor, &results);
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
