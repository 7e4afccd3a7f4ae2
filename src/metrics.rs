//! Prometheus's text exposition format (version 0.0.4), for `/metrics`. Pure.
//!
//! Metrics that mean what etcd's mean carry etcd's names (so etcd's dashboards and alerts
//! work); lode's own carry a `lode_` prefix. Histograms kept as HDR histograms (nanoseconds)
//! are exposed with fixed Prometheus buckets: each bucket's count is exact, the sum is the
//! HDR histogram's mean times its count (HDR keeps no exact sum).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// etcd's buckets for `etcd_disk_wal_fsync_duration_seconds`: 1 ms doubling to 8.192 s.
pub const ETCD_DISK_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// lode's buckets for commit stages: 100 µs doubling to about 3.3 s.
pub const STAGE_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// An exposition being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
    /// Metrics whose HELP and TYPE lines are written.
    described: BTreeSet<String>,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels_text(labels: &[(&str, &str)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if let Some((name, value)) = extra {
        parts.push(format!("{name}=\"{}\"", escape(value)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A number as Prometheus writes it.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn describe(&mut self, name: &str, kind: &str, help: &str) {
        if self.described.insert(name.to_string()) {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
        }
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.describe(name, "gauge", help);
        let _ = writeln!(
            self.out,
            "{name}{} {}",
            labels_text(labels, None),
            number(value)
        );
    }

    /// A counter sample (`name` ends in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.describe(name, "counter", help);
        let _ = writeln!(self.out, "{name}{} {value}", labels_text(labels, None));
    }

    /// A counter sample of a fractional quantity (seconds of CPU time).
    pub fn counter_f64(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.describe(name, "counter", help);
        let _ = writeln!(
            self.out,
            "{name}{} {}",
            labels_text(labels, None),
            number(value)
        );
    }

    /// A histogram of nanosecond samples, in seconds, with buckets at `bounds` (seconds).
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        samples_ns: &Histogram<u64>,
        bounds: &[f64],
    ) {
        self.describe(name, "histogram", help);
        for bound in bounds {
            let upto_ns = (bound * 1e9) as u64;
            let count = samples_ns.count_between(0, upto_ns);
            let le = number(*bound);
            let _ = writeln!(
                self.out,
                "{name}_bucket{} {count}",
                labels_text(labels, Some(("le", &le)))
            );
        }
        let total = samples_ns.len();
        let _ = writeln!(
            self.out,
            "{name}_bucket{} {total}",
            labels_text(labels, Some(("le", "+Inf")))
        );
        let sum = samples_ns.mean() * total as f64 / 1e9;
        let _ = writeln!(
            self.out,
            "{name}_sum{} {}",
            labels_text(labels, None),
            number(sum)
        );
        let _ = writeln!(
            self.out,
            "{name}_count{} {total}",
            labels_text(labels, None)
        );
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_in_the_text_format() {
        let mut exposition = Exposition::new();
        exposition.gauge(
            "etcd_server_has_leader",
            "Whether a leader exists.",
            &[],
            1.0,
        );
        exposition.counter(
            "grpc_server_handled_total",
            "RPCs completed.",
            &[("grpc_method", "Range"), ("grpc_code", "OK")],
            3,
        );
        exposition.counter(
            "grpc_server_handled_total",
            "RPCs completed.",
            &[("grpc_method", "Put"), ("grpc_code", "OK")],
            4,
        );
        exposition.gauge("odd", "Escapes.", &[("v", "a\"b\\c\nd")], 0.5);
        let text = exposition.finish();
        assert_eq!(
            text,
            "# HELP etcd_server_has_leader Whether a leader exists.\n\
             # TYPE etcd_server_has_leader gauge\n\
             etcd_server_has_leader 1\n\
             # HELP grpc_server_handled_total RPCs completed.\n\
             # TYPE grpc_server_handled_total counter\n\
             grpc_server_handled_total{grpc_method=\"Range\",grpc_code=\"OK\"} 3\n\
             grpc_server_handled_total{grpc_method=\"Put\",grpc_code=\"OK\"} 4\n\
             # HELP odd Escapes.\n\
             # TYPE odd gauge\n\
             odd{v=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets() {
        let mut samples = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for ns in [500_000u64, 1_500_000, 3_000_000, 3_000_000, 20_000_000_000] {
            samples.record(ns).unwrap();
        }
        let mut exposition = Exposition::new();
        exposition.histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "fsync latency.",
            &[],
            &samples,
            &ETCD_DISK_BUCKETS,
        );
        let text = exposition.finish();
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 2\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 4\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 4\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_count 5\n"));
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("etcd_disk_wal_fsync_duration_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 20.008).abs() < 0.05, "{sum}");
    }
}
