//! The `process_*` metrics Prometheus's client libraries export for every process (CPU time,
//! memory, file descriptors, start time), read from `/proc/self` when `/metrics` is asked for.
//! etcd's dashboards chart them and `etcdctl check datascale` reads the resident memory, so they
//! carry the client libraries' names, types and meanings exactly. A figure `/proc` cannot give
//! (another OS, a restricted mount) is left out rather than reported as zero.

use crate::metrics::Exposition;

/// What `/proc/self/stat` says about this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Resident set size, in pages.
    pub resident_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold spaces
/// or parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcessStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields 3.. of proc(5); index 0 here is field 3 (state).
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    Some(ProcessStat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time (seconds since the epoch) from `/proc/stat`'s `btime` line.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// A soft limit from `/proc/self/limits` (`None` when the line is missing; `Some(None)` when
/// unlimited).
pub fn parse_soft_limit(text: &str, name: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as u64)
}

fn page_bytes() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (bytes > 0).then_some(bytes as u64)
}

/// Adds this process's `process_*` metrics to `out`.
pub fn expose(out: &mut Exposition) {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_stat(&text));
    let ticks = clock_ticks_per_second();
    if let (Some(stat), Some(ticks)) = (stat, ticks) {
        out.counter_f64(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            &[],
            stat.cpu_ticks as f64 / ticks as f64,
        );
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            &[],
            entries.count() as f64,
        );
    }
    if let Some(limit) = parse_soft_limit(&limits, "Max open files") {
        out.gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            &[],
            limit.map_or(u64::MAX as f64, |limit| limit as f64),
        );
    }
    if let Some(stat) = stat {
        out.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[],
            stat.virtual_bytes as f64,
        );
    }
    if let Some(limit) = parse_soft_limit(&limits, "Max address space") {
        out.gauge(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            &[],
            // Unlimited is reported as the largest value, as Prometheus's collectors do.
            limit.map_or(u64::MAX as f64, |limit| limit as f64),
        );
    }
    if let (Some(stat), Some(page)) = (stat, page_bytes()) {
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
            (stat.resident_pages * page) as f64,
        );
    }
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| parse_boot_time(&text));
    if let (Some(stat), Some(ticks), Some(boot)) = (stat, ticks, boot) {
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[],
            boot as f64 + stat.start_ticks as f64 / ticks as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name holding spaces and a parenthesis must not shift the fields.
        let text = "4242 (lode (core) 1) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 130 0 0 20 0 9 0 8800 1234567 890 18446744073709551615 1 1 0 0 0 0 0 \
                    4096 17410 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(ProcessStat {
                cpu_ticks: 380,
                start_ticks: 8800,
                virtual_bytes: 1234567,
                resident_pages: 890,
            })
        );
        assert_eq!(parse_stat("4242 (lode) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn limits_and_boot_time_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         unlimited            unlimited            bytes\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(parse_soft_limit(limits, "Max open files"), Some(Some(1024)));
        assert_eq!(parse_soft_limit(limits, "Max address space"), Some(None));
        assert_eq!(parse_soft_limit(limits, "Max processes"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1765000000\nprocesses 9\n"),
            Some(1765000000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process_is_described() {
        let mut out = Exposition::new();
        expose(&mut out);
        let text = out.finish();
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        let resident: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
            .and_then(|value| value.parse().ok())
            .expect("resident memory");
        assert!(resident > 1e5, "{resident}");
    }
}
