//! The report of a run: per scenario and client count, each system's throughput, latencies,
//! CPU per operation and the lode/etcd ratios, as a table or JSON lines.

use hdrhistogram::Histogram;

use super::load::Measured;
use super::systems::System;
use super::{counts, EtcdArgs};
use crate::report::print_target;

pub(super) fn report(
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
            if let (Some(open), Some(lode)) = (find(System::LodeDashboard, scenario, clients), lode)
            {
                ratio_line("  lode-dashboard/lode", open, lode);
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
    // lode's and etcd's put results at a client count, when both ran.
    let puts =
        |clients: usize| find(System::Lode, "put", clients).zip(find(System::Etcd, "put", clients));
    // The 1-client put targets: a single member's earlier ones, then issue 20's by cluster size.
    if let Some((lode, etcd)) = puts(1) {
        let p50 = lode.micros(0.5) / etcd.micros(0.5);
        let p99 = lode.micros(0.99) / etcd.micros(0.99);
        let cpu = lode.cpu_micros_per_op / etcd.cpu_micros_per_op;
        if single {
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
            if let Some(null) = find(System::Null, "put", 1) {
                let floor = null.micros(0.5) + floor_micros(0.5);
                let to_floor = lode.micros(0.5) / floor;
                print_target(
                    "1 member: 1-client put p50 <= 1.15x the floor (null gRPC + fdatasync)",
                    &format!("{to_floor:.2}x ({:.1} vs {floor:.1} us)", lode.micros(0.5)),
                    to_floor <= 1.15,
                );
            }
            print_target(
                "1 member: 1-client put p99 <= 0.5x etcd's",
                &format!("{p99:.2}x"),
                p99 <= 0.5,
            );
        } else {
            print_target(
                &format!("{} members: 1-client put p50 <= 0.5x etcd's", args.members),
                &format!("{p50:.2}x"),
                p50 <= 0.5,
            );
            print_target(
                &format!("{} members: 1-client put p99 <= 0.5x etcd's", args.members),
                &format!("{p99:.2}x"),
                p99 <= 0.5,
            );
            print_target(
                &format!(
                    "{} members: server CPU per 1-client put <= 0.35x etcd's",
                    args.members
                ),
                &format!(
                    "{cpu:.2}x ({:.1} vs {:.1} us/op, all members)",
                    lode.cpu_micros_per_op, etcd.cpu_micros_per_op
                ),
                cpu <= 0.35,
            );
        }
    }
    let (wanted, counts): (f64, &[usize]) = if single {
        (3.0, &[256])
    } else {
        (4.0, &[64, 256])
    };
    for &clients in counts {
        if let Some((lode, etcd)) = puts(clients) {
            let times = lode.ops_per_second() / etcd.ops_per_second();
            print_target(
                &format!(
                    "{} member(s): {clients}-client put throughput >= {wanted}x etcd's",
                    args.members
                ),
                &format!("{times:.2}x"),
                times >= wanted,
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
