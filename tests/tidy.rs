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
    "src/dashboard.rs",
    "src/duration.rs",
    "src/etcd_db.rs",
    "src/ids.rs",
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

// ---------------------------------------------------------------------------------------------
// Layering: no module imports, directly or through others, a module that imports it back.
//
// Every directory module (the crate, `server`, `api`, `consensus`, `mvcc`, ...) is checked on
// its own: its nodes are its children, and a reference from anything under child `a` to
// anything under child `b` is an edge `a -> b`. References are the paths of `use` declarations
// and the `crate::`, `super::` and `self::` paths in code (outside `#[cfg(test)]` items), each
// resolved through re-exports and imports to the module that defines the item. A module's
// `pub use` of its own children (its table of contents) is no edge. Any cycle fails the test
// and is printed with every edge among its modules and the places that make them.
//
// A directory module's own file (`mod.rs`, or `x.rs` for a directory `x/`) and its children are
// read as one unit: the children use what the parent declares for them (`super::Limits`) and
// the parent may call into its children (`Wal`'s writes are in `wal/writer.rs`), so edges
// between a parent's own items and its children are not part of the graph; the parent's own
// items count as the parent in the scope above.

use std::collections::{BTreeMap, BTreeSet};

/// Module cycles tolerated for now, as (scope, members in name order). Each says why and what
/// ends it.
const ALLOWED_CYCLES: &[(&str, &[&str])] = &[];

/// A module path below the crate root: `["server", "grpc", "kv"]`.
type ModPath = Vec<String>;

/// `text` with comments, string and character literals blanked (lines kept).
fn strip_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if !ident_before && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
        } {
            // A raw string: r"..", r#".."#, br"..".
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(chars[i..j.min(chars.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' && next == Some('\\') {
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.extend([' ', ' ', ' ']);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `code` with every item marked `#[cfg(test)]` blanked, and the names of modules so marked
/// that live in files of their own (`#[cfg(test)] mod tests;`).
fn strip_test_items(code: &str) -> (String, Vec<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut out = code.to_string();
    let mut test_files = Vec::new();
    let mut from = 0;
    while let Some(found) = out[from..].find(MARK) {
        let start = from + found;
        let bytes = out.as_bytes();
        let mut j = start + MARK.len();
        let mut depth = 0usize;
        while j < bytes.len() {
            match bytes[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    let item = out[start + MARK.len()..j].trim();
                    if let Some(name) = item
                        .strip_prefix("mod ")
                        .or_else(|| item.strip_prefix("pub mod "))
                    {
                        test_files.push(name.trim().to_string());
                    }
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let blanked: String = out[start..j]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..j, &blanked);
        from = j;
    }
    (out, test_files)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The leaves of a use tree (`a::{b, c::{d as e, *}}`), each as (path, name it binds).
fn use_leaves(tree: &str) -> Vec<(Vec<String>, String)> {
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut path = prefix.to_vec();
            path.extend(head);
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        walk(&path, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            walk(&path, &inner[start..], out);
            return;
        }
        let (path_text, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p, Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut path = prefix.to_vec();
        path.extend(
            path_text
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        if path.last().is_some_and(|last| last == "self") {
            path.pop();
        }
        let name = alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
        out.push((path, name));
    }
    let mut out = Vec::new();
    walk(
        &[],
        &tree.split_whitespace().collect::<Vec<_>>().join(" "),
        &mut out,
    );
    out
}

/// One use declaration or path in code: where, the path as written, and whether it is a
/// `pub use` (a re-export).
struct Reference {
    line: usize,
    path: Vec<String>,
    reexport: bool,
}

/// One source file of the crate, read.
struct ModuleFile {
    file: String,
    module: ModPath,
    /// Names of the items it defines.
    defines: BTreeSet<String>,
    /// Names its use declarations bind, to the paths they name (as written); `*` for globs.
    binds: Vec<(String, Vec<String>)>,
    references: Vec<Reference>,
}

fn read_module_file(
    file: &str,
    module: ModPath,
    code: &str,
    children: &BTreeSet<String>,
) -> ModuleFile {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut defines = BTreeSet::new();
    let mut binds = Vec::new();
    let mut references = Vec::new();
    let words: Vec<(usize, &str)> = code
        .match_indices(|c: char| !is_ident(c))
        .scan(0, |start, (at, sep)| {
            let word = (*start, &code[*start..at]);
            *start = at + sep.len();
            Some(word)
        })
        .filter(|(_, w)| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        if matches!(
            pair[0].1,
            "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "mod" | "union"
        ) {
            defines.insert(pair[1].1.to_string());
        }
    }
    // Use declarations, blanked afterwards so their paths are not read twice.
    let mut rest = code.to_string();
    for &(at, word) in &words {
        if word != "use" || (at > 0 && code[..at].ends_with('$')) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            continue;
        };
        let tree = &code[at + 3..at + end];
        let before = code[..at].trim_end();
        let reexport = before.ends_with("pub")
            || before.ends_with(')') && {
                let open = before.rfind('(').unwrap_or(0);
                before[..open].trim_end().ends_with("pub")
            };
        for (path, name) in use_leaves(tree) {
            binds.push((name, path.clone()));
            references.push(Reference {
                line: line_of(at),
                path,
                reexport,
            });
        }
        let blanked: String = code[at..at + end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        rest.replace_range(at..at + end, &blanked);
    }
    // Paths in code: `crate::..`, `super::..`, `self::..`, and `child::..` for a child module.
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < rest.len() {
        let starts_word = i == 0
            || !(is_ident(bytes[i - 1] as char) || bytes[i - 1] == b'$' || bytes[i - 1] == b':');
        let word_end = rest[i..]
            .find(|c: char| !is_ident(c))
            .map_or(rest.len(), |n| i + n);
        let word = &rest[i..word_end];
        if starts_word
            && !word.is_empty()
            && rest[word_end..].starts_with("::")
            && (matches!(word, "crate" | "super" | "self") || children.contains(word))
        {
            let mut path = vec![word.to_string()];
            let mut j = word_end;
            while rest[j..].starts_with("::") {
                let seg_start = j + 2;
                let seg_end = rest[seg_start..]
                    .find(|c: char| !is_ident(c))
                    .map_or(rest.len(), |n| seg_start + n);
                if seg_end == seg_start {
                    break;
                }
                path.push(rest[seg_start..seg_end].to_string());
                j = seg_end;
            }
            references.push(Reference {
                line: line_of(i),
                path,
                reexport: false,
            });
            i = j;
        } else {
            i = word_end.max(i + 1);
        }
    }
    ModuleFile {
        file: file.to_string(),
        module,
        defines,
        binds,
        references,
    }
}

/// The crate's modules, read from `src/` (binaries left out).
fn crate_modules(root: &Path) -> BTreeMap<ModPath, ModuleFile> {
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut texts = BTreeMap::new();
    let mut test_modules = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src").to_path_buf();
        if relative.starts_with("bin") {
            continue;
        }
        let mut module: ModPath = relative
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if module
            .last()
            .is_some_and(|last| last == "mod" || last == "lib")
        {
            module.pop();
        }
        let text = std::fs::read_to_string(&file).expect("source file");
        let (code, tests) = strip_test_items(&strip_comments_and_literals(&text));
        for name in tests {
            let mut test_module = module.clone();
            test_module.push(name);
            test_modules.insert(test_module);
        }
        texts.insert(module, (format!("src/{}", relative.display()), code));
    }
    let paths: BTreeSet<ModPath> = texts.keys().cloned().collect();
    texts
        .into_iter()
        .filter(|(module, _)| !test_modules.iter().any(|t| module.starts_with(t)))
        .map(|(module, (file, code))| {
            let children: BTreeSet<String> = paths
                .iter()
                .filter(|p| p.len() == module.len() + 1 && p.starts_with(&module))
                .map(|p| p[module.len()].clone())
                .collect();
            let read = read_module_file(&file, module.clone(), &code, &children);
            (module, read)
        })
        .collect()
}

/// `path` as written in `module`, made absolute; `None` for another crate's path.
fn absolute(
    module: &[String],
    path: &[String],
    modules: &BTreeMap<ModPath, ModuleFile>,
) -> Option<ModPath> {
    let mut base: ModPath = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) => {
            let mut child = base.clone();
            child.push(first.to_string());
            if !modules.contains_key(&child) {
                return None;
            }
        }
        None => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module defining what the absolute `path` names, through imports and re-exports.
fn defining_module(
    path: &[String],
    modules: &BTreeMap<ModPath, ModuleFile>,
    depth: usize,
) -> ModPath {
    let known = (0..=path.len())
        .rev()
        .find(|&n| modules.contains_key(&path[..n]))
        .unwrap_or(0);
    let module = &path[..known];
    let Some(name) = path.get(known) else {
        return module.to_vec();
    };
    let Some(read) = modules.get(module) else {
        return module.to_vec();
    };
    if read.defines.contains(name) || depth > 8 {
        return module.to_vec();
    }
    for (bound, target) in &read.binds {
        if bound == name {
            if let Some(target) = absolute(module, target, modules) {
                let mut target = target;
                target.extend(path[known + 1..].iter().cloned());
                return defining_module(&target, modules, depth + 1);
            }
            return module.to_vec();
        }
    }
    for (bound, target) in &read.binds {
        if bound == "*" {
            let Some(mut glob) = absolute(module, &target[..target.len() - 1], modules) else {
                continue;
            };
            if glob.starts_with(module) && glob != module {
                glob.extend(path[known..].iter().cloned());
                let found = defining_module(&glob, modules, depth + 1);
                if found.len() > module.len() {
                    return found;
                }
            }
        }
    }
    module.to_vec()
}

/// Edges between siblings: (scope, from, to) -> places. `from`/`to` are child names or `""`
/// for the scope's own items.
type Edges = BTreeMap<(ModPath, String, String), Vec<String>>;

fn module_edges(modules: &BTreeMap<ModPath, ModuleFile>) -> Edges {
    let mut edges = Edges::new();
    for read in modules.values() {
        for reference in &read.references {
            let Some(mut path) = absolute(&read.module, &reference.path, modules) else {
                continue;
            };
            if path.last().is_some_and(|last| last == "*") {
                path.pop();
            }
            let target = defining_module(&path, modules, 0);
            let from = &read.module;
            if reference.reexport && target.starts_with(from) {
                continue;
            }
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let a = from.get(common).cloned().unwrap_or_default();
            let b = target.get(common).cloned().unwrap_or_default();
            if a == b || a.is_empty() || b.is_empty() {
                continue;
            }
            edges
                .entry((from[..common].to_vec(), a, b))
                .or_default()
                .push(format!(
                    "{}:{}: {}",
                    read.file,
                    reference.line,
                    reference.path.join("::")
                ));
        }
    }
    edges
}

/// The cycles among siblings: per scope, each strongly connected set of two or more, with one
/// cycle through it.
fn module_cycles(edges: &Edges) -> Vec<(ModPath, Vec<String>, Vec<String>)> {
    let mut scopes: BTreeMap<&ModPath, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for (scope, from, to) in edges.keys() {
        let graph = scopes.entry(scope).or_default();
        graph.entry(from).or_default().insert(to);
        graph.entry(to).or_default();
    }
    let mut cycles = Vec::new();
    for (scope, graph) in scopes {
        let reach = |start: &str| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(node) = stack.pop() {
                for &next in &graph[node] {
                    if seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
            seen
        };
        let mut placed = BTreeSet::new();
        for &node in graph.keys() {
            if placed.contains(node) {
                continue;
            }
            let forward = reach(node);
            if !forward.contains(node) {
                continue;
            }
            let component: BTreeSet<&str> = forward
                .into_iter()
                .filter(|other| reach(other).contains(node))
                .collect();
            placed.extend(component.iter().copied());
            // One cycle from `node` back to itself: breadth first inside the component.
            let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([node]);
            'search: while let Some(at) = queue.pop_front() {
                for &next in &graph[at] {
                    if !component.contains(next) || parent.contains_key(next) {
                        continue;
                    }
                    parent.insert(next, at);
                    if next == node {
                        break 'search;
                    }
                    queue.push_back(next);
                }
            }
            let mut cycle = vec![node.to_string()];
            let mut at = parent[node];
            while at != node {
                cycle.push(at.to_string());
                at = parent[at];
            }
            cycle.push(node.to_string());
            cycle.reverse();
            let component = component.into_iter().map(String::from).collect();
            cycles.push((scope.clone(), cycle, component));
        }
    }
    cycles
}

fn node_name(scope: &[String], node: &str) -> String {
    let mut path = vec!["crate".to_string()];
    path.extend(scope.iter().cloned());
    if node.is_empty() {
        format!("{} (own items)", path.join("::"))
    } else {
        path.push(node.to_string());
        path.join("::")
    }
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = crate_modules(root);
    assert!(modules.len() > 100, "only {} modules found", modules.len());
    let edges = module_edges(&modules);
    assert!(
        edges.contains_key(&(vec![], "server".into(), "api".into())),
        "the check no longer sees the server use the api"
    );
    let mut report = Vec::new();
    let cycles = module_cycles(&edges);
    for (scope, members) in ALLOWED_CYCLES {
        let found = cycles.iter().any(|(s, _, component)| {
            s.join("::") == *scope
                && component
                    .iter()
                    .map(String::as_str)
                    .eq(members.iter().copied())
        });
        if !found {
            report.push(format!(
                "allowed cycle {scope:?} {members:?} is gone: take it off the list"
            ));
        }
    }
    for (scope, cycle, component) in cycles {
        let scope_name = scope.join("::");
        if ALLOWED_CYCLES.iter().any(|(s, members)| {
            *s == scope_name
                && component
                    .iter()
                    .map(String::as_str)
                    .eq(members.iter().copied())
        }) {
            continue;
        }
        let names: Vec<String> = cycle.iter().map(|n| node_name(&scope, n)).collect();
        let all: Vec<String> = component.iter().map(|n| node_name(&scope, n)).collect();
        report.push(format!(
            "cycle among {}:\n  {}",
            all.join(", "),
            names.join(" -> ")
        ));
        report.push("  its edges:".to_string());
        for ((edge_scope, from, to), places) in &edges {
            if *edge_scope != scope || !component.contains(from) || !component.contains(to) {
                continue;
            }
            report.push(format!(
                "  {} -> {} ({} places), e.g.",
                node_name(&scope, from),
                node_name(&scope, to),
                places.len()
            ));
            for place in places.iter().take(3) {
                report.push(format!("    {place}"));
            }
        }
    }
    assert!(report.is_empty(), "module cycles:\n{}", report.join("\n"));
}

#[test]
fn the_cycle_check_reads_paths_as_the_compiler_does() {
    let leaves = use_leaves("crate::{a::{self, B as C}, d::*, e}");
    let leaves: Vec<(String, String)> =
        leaves.into_iter().map(|(p, n)| (p.join("::"), n)).collect();
    assert_eq!(
        leaves,
        vec![
            ("crate::a".into(), "a".into()),
            ("crate::a::B".into(), "C".into()),
            ("crate::d::*".into(), "*".into()),
            ("crate::e".into(), "e".into()),
        ]
    );
    let code = strip_comments_and_literals(
        "let s = \"crate::x\"; // crate::y\nlet c = '\"'; crate::z::f();",
    );
    assert!(!code.contains("crate::x") && !code.contains("crate::y") && code.contains("crate::z"));
    let (code, tests) = strip_test_items(
        "fn a() {}\n#[cfg(test)]\nmod tests { use crate::q; }\n#[cfg(test)]\nmod more;\n",
    );
    assert!(!code.contains("crate::q") && code.contains("fn a"));
    assert_eq!(tests, vec!["more".to_string()]);
    let mut edges = Edges::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.insert((vec![], from.into(), to.into()), vec![]);
    }
    let cycles = module_cycles(&edges);
    let abc = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        cycles,
        vec![(vec![], abc(&["a", "b", "c", "a"]), abc(&["a", "b", "c"]))]
    );
}
