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

/// The CPUs for `cores` executors: the first `cores` of `chosen` (all of them when `cores` is
/// not given), each one that this process may run on.
pub fn assign(
    chosen: &[usize],
    allowed: &[usize],
    cores: Option<usize>,
) -> Result<Vec<usize>, String> {
    if let Some(outside) = chosen.iter().find(|cpu| !allowed.contains(cpu)) {
        return Err(format!(
            "CPU {outside} is not one this process may run on (allowed: {})",
            format_list(allowed)
        ));
    }
    match cores {
        None => Ok(chosen.to_vec()),
        Some(cores) if cores <= chosen.len() => Ok(chosen[..cores].to_vec()),
        Some(cores) => Err(format!(
            "--cores {cores} needs {cores} CPUs but only {} are available ({}); \
             pass --cpuset unpinned to run more executors than CPUs",
            chosen.len(),
            format_list(chosen)
        )),
    }
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
        assert_eq!(assign(&[1, 3], &[0, 1, 2, 3], Some(1)), Ok(vec![1]));
        assert_eq!(assign(&[1, 3], &[0, 1, 2, 3], None), Ok(vec![1, 3]));
        let too_many = assign(&[1], &[0, 1], Some(2)).unwrap_err();
        assert!(too_many.contains("--cores 2 needs 2 CPUs"), "{too_many}");
        let outside = assign(&[5], &[0, 1], None).unwrap_err();
        assert!(outside.contains("CPU 5 is not one"), "{outside}");
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let allowed = allowed().expect("sched_getaffinity");
        assert!(!allowed.is_empty());
    }
}
