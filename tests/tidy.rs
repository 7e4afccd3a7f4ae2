//! The pure modules stay pure: no executor, file system, network, clock, threads, processes
//! or environment in their code (their tests may use a clock). What they need of the world
//! comes in as arguments, so they can be tested deterministically and driven by a simulator.

use std::path::{Path, PathBuf};

/// Files and directories (every `.rs` below) that must not touch the world.
const PURE: &[&str] = &[
    "src/alarm.rs",
    "src/api",
    "src/auth/authorize.rs",
    "src/auth/error.rs",
    "src/auth/perms.rs",
    "src/auth/request.rs",
    "src/auth/store.rs",
    "src/bbolt",
    "src/compactor.rs",
    "src/config",
    "src/ctl",
    "src/duration.rs",
    "src/etcd_db.rs",
    "src/lease.rs",
    "src/linearize.rs",
    "src/members.rs",
    "src/mvcc",
    "src/replica",
    "src/snapshot.rs",
    "src/wal/format.rs",
    "src/wal/index.rs",
    "src/wal/recovery.rs",
    "src/watch",
];

/// What pure code never names.
const WORLD: &[&str] = &[
    "glommio",
    "tokio",
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "std::env",
    "Instant::now",
    "SystemTime::now",
    "libc::",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The places in `text` (its code before any `#[cfg(test)]`, comments left out) that name the
/// world: (line number, line).
fn worldly_lines(text: &str) -> Vec<(usize, String)> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            !line.starts_with("//")
        })
        .filter(|(_, line)| WORLD.iter().any(|word| line.contains(word)))
        .map(|(number, line)| (number + 1, line.trim().to_string()))
        .collect()
}

#[test]
fn the_pure_modules_touch_no_io_clock_or_thread() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for path in PURE {
        let path = root.join(path);
        assert!(
            path.exists(),
            "{} is listed as pure but does not exist",
            path.display()
        );
        rust_files(&path, &mut files);
    }
    assert!(files.len() > 30, "only {} files found", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source file");
        for (number, line) in worldly_lines(&text) {
            found.push(format!("{}:{number}: {line}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "pure modules reach into the world:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_what_it_looks_for() {
    let worldly = "use std::fs;\n// std::net in a comment\nfn f() { let t = std::time::Instant::now(); }\n#[cfg(test)]\nmod tests { fn g() { std::thread::sleep(d) } }\n";
    let lines: Vec<usize> = worldly_lines(worldly).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, vec![1, 3]);
}
