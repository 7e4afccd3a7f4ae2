//! etcd's own tools for the tests: Debian's etcdctl (package etcd-client, which ./test.sh
//! installs) run against an endpoint, and a deterministic random source for workloads.

use std::process::{Command, Output};

use super::server::output_with_input;

/// Runs etcdctl (API v3) against `endpoints` (URLs, as users pass them) with a 10 s command
/// timeout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args);
    output_with_input(&mut command, None)
}

/// Standard output of a command that must have succeeded (its stderr in the panic if not).
pub fn succeeded(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// xorshift64*: deterministic and dependency free, so a workload is the same for a seed
/// whichever store it runs against.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
