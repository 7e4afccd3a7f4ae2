//! The server's logs, as etcd writes them: with `--log-format json` (the default, as etcd's
//! zap logger) one JSON object per line whose keys come in zap's order, `level`, `ts`,
//! `logger` (raft's lines only), `caller`, `msg`, then the event's fields; with `console` one
//! line of text per event. `--log-outputs` names where lines go (`default` and `stderr`,
//! `stdout`, file paths appended to), `--log-level` the lowest level written.
//!
//! Lines are written whole with one `write` per output, under a lock (logging is off the hot
//! path: a line per request would be a bug elsewhere).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

/// One place lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stderr,
    Stdout,
    File(PathBuf),
}

/// etcd's `--log-outputs`: comma-separated, `default` meaning stderr (alone, as etcd requires),
/// duplicates dropped.
pub fn parse_outputs(text: &str) -> Result<Vec<Output>, String> {
    let names: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(vec![Output::Stderr]);
    }
    if names.len() > 1 && names.contains(&"default") {
        return Err(format!(
            "--log-outputs {text}: multi logoutput for \"default\" is not supported yet"
        ));
    }
    let mut outputs = Vec::new();
    for name in names {
        let output = match name {
            "default" | "stderr" => Output::Stderr,
            "stdout" => Output::Stdout,
            "systemd/journal" => {
                return Err(
                    "--log-outputs systemd/journal is not supported: log to stderr, which \
                     systemd passes to the journal"
                        .to_string(),
                )
            }
            path => Output::File(PathBuf::from(path)),
        };
        if !outputs.contains(&output) {
            outputs.push(output);
        }
    }
    Ok(outputs)
}

/// The open outputs, shared by the layers.
#[derive(Clone)]
struct Sinks(Arc<Mutex<Vec<Box<dyn Write + Send>>>>);

impl Sinks {
    fn open(outputs: &[Output]) -> Result<Sinks, String> {
        let mut sinks: Vec<Box<dyn Write + Send>> = Vec::new();
        for output in outputs {
            sinks.push(match output {
                Output::Stderr => Box::new(std::io::stderr()),
                Output::Stdout => Box::new(std::io::stdout()),
                Output::File(path) => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("cannot open log output {}: {e}", path.display()))?,
                ),
            });
        }
        Ok(Sinks(Arc::new(Mutex::new(sinks))))
    }

    fn write_line(&self, line: &[u8]) {
        let mut sinks = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for sink in sinks.iter_mut() {
            // A log line that cannot be written has nowhere to be reported.
            let _ = sink.write_all(line);
            let _ = sink.flush();
        }
    }
}

/// A writer for the console format: buffers one event's text, writes it whole on drop.
struct LineWriter {
    sinks: Sinks,
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.sinks.write_line(&self.buffer);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sinks {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sinks: self.clone(),
            buffer: Vec::new(),
        }
    }
}

/// zap's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// zap's short caller: the file's last directory and name, and the line (`wal/writer.rs:637`).
fn short_caller(file: &str, line: Option<u32>) -> String {
    let mut parts = file.rsplit('/');
    let name = parts.next().unwrap_or(file);
    let caller = match parts.next() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_string(),
    };
    match line {
        Some(line) => format!("{caller}:{line}"),
        None => caller,
    }
}

/// Collects an event's message and fields, in the order they were given.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, serde_json::Value::String(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, serde_json::Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, serde_json::Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, serde_json::Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, serde_json::Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, serde_json::Value::String(format!("{value:?}")));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            });
        } else {
            // etcd's field names are kebab-case; Rust's identifiers cannot be.
            self.fields.insert(field.name().replace('_', "-"), value);
        }
    }
}

/// The JSON line of one event.
pub fn json_line(
    level: &Level,
    time: std::time::SystemTime,
    target: &str,
    file: Option<&str>,
    line: Option<u32>,
    message: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut object = serde_json::Map::new();
    object.insert("level".into(), level_name(level).into());
    object.insert(
        "ts".into(),
        humantime::format_rfc3339_micros(time).to_string().into(),
    );
    if target.starts_with("raft") {
        object.insert("logger".into(), "raft".into());
    }
    if let Some(file) = file {
        object.insert("caller".into(), short_caller(file, line).into());
    }
    object.insert("msg".into(), message.into());
    for (key, value) in fields {
        object.entry(key).or_insert(value);
    }
    let mut text = serde_json::Value::Object(object).to_string();
    text.push('\n');
    text
}

/// The layer writing JSON lines.
struct JsonLayer {
    sinks: Sinks,
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = json_line(
            metadata.level(),
            std::time::SystemTime::now(),
            metadata.target(),
            metadata.file(),
            metadata.line(),
            fields.message.as_deref().unwrap_or_default(),
            fields.fields,
        );
        self.sinks.write_line(line.as_bytes());
    }
}

/// Installs the process's logger. `level` is etcd's level name; `RUST_LOG`, when set, filters
/// instead (for developers). Raft's own chatter is kept to warnings unless `debug` is asked.
pub fn init(level: &str, json: bool, outputs: &[Output]) -> Result<(), String> {
    let sinks = Sinks::open(outputs)?;
    let level = match level {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(if level == "debug" {
            "debug".to_string()
        } else {
            format!("{level},raft=warn")
        })
    });
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry.with(JsonLayer { sinks }).try_init()
    } else {
        let terminal =
            outputs == [Output::Stderr] && std::io::IsTerminal::is_terminal(&std::io::stderr());
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(sinks)
                    .with_ansi(terminal),
            )
            .try_init()
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_zaps_keys_in_zaps_order() {
        let mut fields = serde_json::Map::new();
        fields.insert("member-id".into(), "8e9e05c52164694d".into());
        fields.insert("took".into(), "1.2ms".into());
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_765_000_000_123_456);
        let line = json_line(
            &Level::INFO,
            time,
            "lode::server::node",
            Some("src/server/node.rs"),
            Some(657),
            "serving \"clients\"",
            fields,
        );
        assert_eq!(
            line,
            "{\"level\":\"info\",\"ts\":\"2025-12-06T05:46:40.123456Z\",\
             \"caller\":\"server/node.rs:657\",\"msg\":\"serving \\\"clients\\\"\",\
             \"member-id\":\"8e9e05c52164694d\",\"took\":\"1.2ms\"}\n"
        );
        let raft = json_line(
            &Level::WARN,
            time,
            "raft",
            None,
            None,
            "x",
            Default::default(),
        );
        assert!(raft.starts_with(
            "{\"level\":\"warn\",\"ts\":\"2025-12-06T05:46:40.123456Z\",\"logger\":\"raft\",\"msg\""
        ));
    }

    #[test]
    fn outputs_read_as_etcd_reads_them() {
        assert_eq!(parse_outputs("default").unwrap(), [Output::Stderr]);
        assert_eq!(
            parse_outputs("stdout,/var/log/lode.log,stdout").unwrap(),
            [Output::Stdout, Output::File("/var/log/lode.log".into())]
        );
        assert!(parse_outputs("default,stdout").is_err());
        assert!(parse_outputs("systemd/journal").is_err());
    }
}
