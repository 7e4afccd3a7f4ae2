//! Which CPUs lode's executors run on.
//!
//! Each executor is pinned to one CPU. Without `--cpuset`, the CPUs are the ones this process
//! may run on (its affinity mask), so `taskset -c 2,3 lode` places lode on CPUs 2 and 3 and
//! several lodes on one machine can be kept apart. Executor `i` gets the `i`-th CPU of the
//! set in ascending order, so placements are predictable; two processes given the same set
//! share those CPUs.
//!
//! `unpinned` leaves the executors' threads to the kernel's scheduler, for machines where
//! more lodes (or other busy processes) run than there are CPUs.
//!
//! One exception to the order: when one CPU of the set takes most of the data disk's
//! completion interrupts (a disk with a single queue, as virtio disks of small VMs have), that
//! CPU goes first, so executor 0 (consensus and the log) runs there. A completion handled on
//! another CPU has to wake the executor across CPUs: on the 2-vCPU reference VM a 4 KiB
//! write+fdatasync took a median 92 us from the interrupt's CPU and 135-167 us from the other.

use std::collections::BTreeSet;

/// Where the executors run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuChoice {
    /// One executor per listed CPU, in ascending order.
    Pinned(Vec<usize>),
    /// The kernel decides.
    Unpinned,
}

/// A CPU list that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuListError {
    #[error("empty CPU list")]
    Empty,
    #[error("'{0}' is not a CPU number or range (expected e.g. 0-3,6)")]
    Malformed(String),
    #[error("range '{0}' runs backwards")]
    Backwards(String),
    #[error("CPU {0} is beyond the largest CPU number lode accepts ({1})")]
    TooLarge(usize, usize),
}

/// Largest CPU number accepted: the kernel's fixed `cpu_set_t` holds this many.
pub const MAX_CPU: usize = libc::CPU_SETSIZE as usize - 1;

/// Parses `--cpuset`: `unpinned`, or a list of CPU numbers and inclusive ranges such as
/// `0-3,6` (the notation of `taskset -c` and `/sys/devices/system/cpu/online`).
pub fn parse(text: &str) -> Result<CpuChoice, CpuListError> {
    let text = text.trim();
    if text == "unpinned" {
        return Ok(CpuChoice::Unpinned);
    }
    parse_list(text).map(CpuChoice::Pinned)
}

/// A CPU list (`0-3,6`), ascending and without repeats.
pub fn parse_list(text: &str) -> Result<Vec<usize>, CpuListError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CpuListError::Empty);
    }
    let mut cpus = BTreeSet::new();
    for part in text.split(',') {
        let part = part.trim();
        let number = |s: &str| -> Result<usize, CpuListError> {
            let cpu: usize = s
                .trim()
                .parse()
                .map_err(|_| CpuListError::Malformed(part.to_string()))?;
            if cpu > MAX_CPU {
                return Err(CpuListError::TooLarge(cpu, MAX_CPU));
            }
            Ok(cpu)
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(CpuListError::Backwards(part.to_string()));
                }
                cpus.extend(first..=last);
            }
            None => {
                cpus.insert(number(part)?);
            }
        }
    }
    Ok(cpus.into_iter().collect())
}

/// Formats CPUs as a list with ranges (`0-3,6`).
pub fn format_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let first = cpus[index];
        let mut last = first;
        while index + 1 < cpus.len() && cpus[index + 1] == last + 1 {
            index += 1;
            last = cpus[index];
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    parts.join(",")
}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn allowed() -> std::io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set. sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it and CPU_ISSET reads within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((0..=MAX_CPU)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

/// Lets the calling thread run wherever the process's main thread may (which lode never pins):
/// a helper thread started from a pinned executor would otherwise share that executor's CPU.
pub fn unpin_current_thread() -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; the calls read and write at most its size. The process
    // ID names the main thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) != 0
            || libc::sched_setaffinity(0, size, &set) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs for `cores` executors: the first `cores` of `chosen` (all of them when `cores` is
/// not given), each one that this process may run on; `consensus_cpu`, when it is in
/// `chosen`, comes first (executor 0 drives consensus and the log).
pub fn assign(
    chosen: &[usize],
    allowed: &[usize],
    cores: Option<usize>,
    consensus_cpu: Option<usize>,
) -> Result<Vec<usize>, String> {
    if let Some(outside) = chosen.iter().find(|cpu| !allowed.contains(cpu)) {
        return Err(format!(
            "CPU {outside} is not one this process may run on (allowed: {})",
            format_list(allowed)
        ));
    }
    let mut chosen = chosen.to_vec();
    if let Some(position) = consensus_cpu.and_then(|cpu| chosen.iter().position(|&c| c == cpu)) {
        let cpu = chosen.remove(position);
        chosen.insert(0, cpu);
    }
    match cores {
        None => Ok(chosen.to_vec()),
        Some(cores) if cores <= chosen.len() => Ok(chosen[..cores].to_vec()),
        Some(cores) => Err(format!(
            "--cores {cores} needs {cores} CPUs but only {} are available ({}); \
             pass --cpuset unpinned to run more executors than CPUs",
            chosen.len(),
            format_list(&chosen)
        )),
    }
}

/// The CPU that takes most of the interrupts of the disk holding `path`, if one does: the
/// disk's device is found through sysfs (`/sys/dev/block/MAJ:MIN`, its PCI device's
/// `msi_irqs`), and each CPU's share of those interrupts is read from `/proc/interrupts`.
/// `None` when anything is missing (not Linux sysfs, not a PCI disk, no interrupts yet) or
/// when the interrupts are spread (a multi-queue disk completes on the submitting CPU).
pub fn disk_interrupt_cpu(path: &std::path::Path) -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    // The data dir may not exist yet: its nearest existing ancestor is on the same disk.
    let existing = path.ancestors().find(|p| p.exists())?;
    let device = std::fs::metadata(existing).ok()?.dev();
    let (major, minor) = (libc::major(device), libc::minor(device));
    let mut block = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    if block.join("partition").exists() {
        block = block.parent()?.to_path_buf();
    }
    // The interrupts belong to the PCI function: the block device's `device`, or a parent.
    let mut dir = std::fs::canonicalize(block.join("device")).ok()?;
    let irqs = loop {
        if let Ok(entries) = std::fs::read_dir(dir.join("msi_irqs")) {
            let irqs: Vec<String> = entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect();
            break irqs;
        }
        dir = dir.parent()?.to_path_buf();
        if dir.as_os_str().len() <= "/sys/devices".len() {
            return None;
        }
    };
    let table = std::fs::read_to_string("/proc/interrupts").ok()?;
    dominant_cpu(&interrupts_per_cpu(&table, &irqs))
}

/// Sums, per CPU, the counts of `/proc/interrupts` rows whose number is in `irqs`: pairs of
/// CPU number (from the header, `CPU0 CPU1 ...`) and count.
fn interrupts_per_cpu(table: &str, irqs: &[String]) -> Vec<(usize, u64)> {
    let mut lines = table.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let mut totals: Vec<(usize, u64)> = Vec::new();
    for name in header.split_whitespace() {
        match name.strip_prefix("CPU").and_then(|n| n.parse().ok()) {
            Some(cpu) => totals.push((cpu, 0)),
            None => return Vec::new(),
        }
    }
    for line in lines {
        let mut fields = line.split_whitespace();
        let Some(number) = fields.next().and_then(|f| f.strip_suffix(':')) else {
            continue;
        };
        if !irqs.iter().any(|irq| irq == number) {
            continue;
        }
        for ((_, total), field) in totals.iter_mut().zip(fields) {
            match field.parse::<u64>() {
                Ok(count) => *total += count,
                Err(_) => break,
            }
        }
    }
    totals
}

/// The CPU with more than half of all the counts, if any.
fn dominant_cpu(per_cpu: &[(usize, u64)]) -> Option<usize> {
    let total: u64 = per_cpu.iter().map(|(_, count)| count).sum();
    per_cpu
        .iter()
        .find(|(_, count)| total > 0 && count * 2 > total)
        .map(|(cpu, _)| *cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_parse_sorted_without_repeats() {
        assert_eq!(parse_list("0-3,6"), Ok(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_list(" 5, 1-2 ,2"), Ok(vec![1, 2, 5]));
        assert_eq!(parse_list("7"), Ok(vec![7]));
        assert_eq!(parse("unpinned"), Ok(CpuChoice::Unpinned));
        assert_eq!(parse("1,0"), Ok(CpuChoice::Pinned(vec![0, 1])));
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(parse_list(""), Err(CpuListError::Empty));
        assert_eq!(parse_list("a"), Err(CpuListError::Malformed("a".into())));
        assert_eq!(parse_list("1,,2"), Err(CpuListError::Malformed("".into())));
        assert_eq!(
            parse_list("3-1"),
            Err(CpuListError::Backwards("3-1".into()))
        );
        assert_eq!(parse_list("-1"), Err(CpuListError::Malformed("-1".into())));
        assert_eq!(
            parse_list("99999"),
            Err(CpuListError::TooLarge(99999, MAX_CPU))
        );
    }

    #[test]
    fn lists_format_with_ranges() {
        assert_eq!(format_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(format_list(&[1]), "1");
        assert_eq!(format_list(&[0, 2, 3]), "0,2-3");
        assert_eq!(format_list(&[]), "");
    }

    #[test]
    fn executors_take_the_first_cpus_of_the_set() {
        assert_eq!(assign(&[1, 3], &[0, 1, 2, 3], Some(1), None), Ok(vec![1]));
        assert_eq!(assign(&[1, 3], &[0, 1, 2, 3], None, None), Ok(vec![1, 3]));
        // The consensus CPU goes first when it is in the set, and is ignored otherwise.
        assert_eq!(assign(&[0, 1], &[0, 1], Some(1), Some(1)), Ok(vec![1]));
        assert_eq!(
            assign(&[0, 1, 2], &[0, 1, 2], None, Some(2)),
            Ok(vec![2, 0, 1])
        );
        assert_eq!(assign(&[0, 1], &[0, 1, 2], None, Some(2)), Ok(vec![0, 1]));
        let too_many = assign(&[1], &[0, 1], Some(2), None).unwrap_err();
        assert!(too_many.contains("--cores 2 needs 2 CPUs"), "{too_many}");
        let outside = assign(&[5], &[0, 1], None, None).unwrap_err();
        assert!(outside.contains("CPU 5 is not one"), "{outside}");
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let allowed = allowed().expect("sched_getaffinity");
        assert!(!allowed.is_empty());
    }

    #[test]
    fn the_cpu_taking_most_of_a_disks_interrupts_is_found() {
        let table = "           CPU0       CPU1       \n\
 35:          0          1  PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n\
 36:         12   15767103  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
 40:     900000          0  PCI-MSIX-0000:00:04.0   1-edge      virtio3-input.0\n\
NMI:          0          0   Non-maskable interrupts\n";
        let irqs = vec!["35".to_string(), "36".to_string()];
        assert_eq!(
            interrupts_per_cpu(table, &irqs),
            vec![(0, 12), (1, 15767104)]
        );
        assert_eq!(dominant_cpu(&interrupts_per_cpu(table, &irqs)), Some(1));
        // Spread interrupts (one queue per CPU) and none at all name no CPU.
        assert_eq!(dominant_cpu(&[(0, 10), (1, 10)]), None);
        assert_eq!(dominant_cpu(&[(0, 0), (1, 0)]), None);
        // CPUs numbered from the header, not by position.
        let offline = "      CPU0  CPU2\n 7:  1  9  x\n";
        assert_eq!(
            dominant_cpu(&interrupts_per_cpu(offline, &["7".to_string()])),
            Some(2)
        );
        assert_eq!(interrupts_per_cpu("garbage\n", &irqs), Vec::new());
    }
}
