//! etcdctl's `check perf`: its load profiles, the keys and values it writes, and its verdict
//! lines from the latencies measured (the running is lodectl's).

use std::collections::BTreeMap;

/// The prefix etcdctl's check perf writes under unless told otherwise.
pub const DEFAULT_PREFIX: &str = "/etcdctl-check-perf/";
/// Bytes of each key after the prefix (etcdctl's).
pub const KEY_SIZE: usize = 256;
/// Bytes of each value (etcdctl's: zeros).
pub const VALUE_SIZE: usize = 1024;
/// How long the puts run, in seconds (etcdctl's, for every profile).
pub const DURATION_SECONDS: u64 = 60;

/// A load profile: puts a second and the connections that send them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Target rate (puts a second).
    pub limit: u64,
    /// Concurrent clients, each its own connection.
    pub clients: usize,
}

/// The profile etcdctl names `s`/`small`, `m`/`medium`, `l`/`large` or `xl`/`xLarge`.
pub fn profile(load: &str) -> Result<Profile, String> {
    let (limit, clients) = match load {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1_000, 200),
        "l" | "large" => (8_000, 500),
        "xl" | "xLarge" => (15_000, 1_000),
        other => return Err(format!("unknown load option {other}")),
    };
    Ok(Profile { limit, clients })
}

/// One key as etcdctl makes it: the prefix, then `KEY_SIZE` bytes holding `random` (a
/// non-negative 63-bit number) as Go's `binary.PutVarint` writes it (zig-zag, then base-128
/// groups, low first), zeros after.
pub fn key(prefix: &str, random: u64) -> Vec<u8> {
    let mut out = prefix.as_bytes().to_vec();
    let signed = (random >> 1) as i64;
    let mut zigzag = ((signed << 1) ^ (signed >> 63)) as u64;
    let start = out.len();
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.resize(start + KEY_SIZE, 0);
    out
}

/// What the run measured: every successful request's latency in seconds, the failures by
/// error, and how long the run took.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Latencies of the requests that succeeded.
    pub latencies: Vec<f64>,
    /// Failures, by error message.
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the start of the run to the last answer.
    pub total_seconds: f64,
}

/// etcdctl's verdict lines (each `\n`-terminated) and whether the check passed: errors,
/// throughput at least 90% of the target, slowest request under 500 ms, standard deviation
/// under 100 ms, then `PASS` or `FAIL`.
pub fn verdict(measured: &Measured, profile: Profile) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    if !measured.errors.is_empty() {
        out.push_str("FAIL: too many errors\n");
        for (error, count) in &measured.errors {
            out.push_str(&format!("FAIL: ERROR({error}) -> {count}\n"));
        }
        ok = false;
    }
    let count = measured.latencies.len() as f64;
    let rps = if measured.total_seconds > 0.0 {
        count / measured.total_seconds
    } else {
        0.0
    };
    let slowest = measured.latencies.iter().copied().fold(0.0, f64::max);
    let stddev = if measured.latencies.is_empty() {
        0.0
    } else {
        let mean = measured.latencies.iter().sum::<f64>() / count;
        let variance = measured
            .latencies
            .iter()
            .map(|latency| (latency - mean) * (latency - mean))
            .sum::<f64>()
            / count;
        variance.sqrt()
    };
    if rps / profile.limit as f64 <= 0.9 {
        out.push_str(&format!(
            "FAIL: Throughput too low: {} writes/s\n",
            rps as i64 + 1
        ));
        ok = false;
    } else {
        out.push_str(&format!(
            "PASS: Throughput is {} writes/s\n",
            rps as i64 + 1
        ));
    }
    if slowest > 0.5 {
        out.push_str(&format!("Slowest request took too long: {slowest:.6}s\n"));
        ok = false;
    } else {
        out.push_str(&format!("PASS: Slowest request took {slowest:.6}s\n"));
    }
    if stddev > 0.1 {
        out.push_str(&format!("Stddev too high: {stddev:.6}s\n"));
        ok = false;
    } else {
        out.push_str(&format!("PASS: Stddev is {stddev:.6}s\n"));
    }
    out.push_str(if ok { "PASS\n" } else { "FAIL\n" });
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_etcdctls() {
        assert_eq!(
            profile("s"),
            Ok(Profile {
                limit: 150,
                clients: 50
            })
        );
        assert_eq!(profile("medium").map(|p| p.limit), Ok(1_000));
        assert_eq!(profile("l").map(|p| p.clients), Ok(500));
        assert_eq!(profile("xLarge").map(|p| p.limit), Ok(15_000));
        assert!(profile("xxl").is_err());
    }

    #[test]
    fn keys_are_fixed_size_varints() {
        let key = key("/p/", 300 << 1);
        assert_eq!(key.len(), 3 + KEY_SIZE);
        // 300 zig-zagged is 600: 0xd8 0x04.
        assert_eq!(&key[3..6], &[0xd8, 0x04, 0]);
    }

    #[test]
    fn verdicts_follow_etcdctls_thresholds() {
        let fast = Measured {
            latencies: vec![0.001; 9_000],
            errors: BTreeMap::new(),
            total_seconds: 60.0,
        };
        let (text, ok) = verdict(
            &fast,
            profile("s").unwrap_or(Profile {
                limit: 150,
                clients: 50,
            }),
        );
        assert!(ok, "{text}");
        assert_eq!(
            text,
            "PASS: Throughput is 151 writes/s\nPASS: Slowest request took 0.001000s\nPASS: Stddev is 0.000000s\nPASS\n"
        );
        let mut slow = fast.clone();
        slow.latencies.push(0.9);
        slow.total_seconds = 120.0;
        slow.errors.insert("boom".into(), 2);
        let (text, ok) = verdict(
            &slow,
            Profile {
                limit: 150,
                clients: 50,
            },
        );
        assert!(!ok);
        assert!(text.starts_with("FAIL: too many errors\nFAIL: ERROR(boom) -> 2\nFAIL: Throughput too low: 76 writes/s\nSlowest request took too long: 0.900000s\n"), "{text}");
        assert!(text.ends_with("FAIL\n"));
    }
}
