//! watch: the events of a key or range printed as etcdctl prints them, and the command run
//! for each (`watch -- CMD`).

use std::process::ExitCode;
use std::time::Duration;

use lode::ctl::output;

use crate::common::{connect, fail, on_executor};
use crate::{Cli, Command, Format};

/// `lodectl watch`.
pub(crate) fn run(cli: &Cli) -> ExitCode {
    let Command::Watch {
        key,
        range_end,
        prefix,
        rev,
        prev_kv,
        progress_notify,
        exec,
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let (key, range_end) = match watch_range(key.clone(), range_end.clone(), *prefix, exec) {
        Ok(range) => range,
        Err(error) => return fail(&error),
    };
    let create = lode::watch::stream::CreateWatch {
        key,
        range_end,
        start_revision: *rev,
        progress_notify: *progress_notify,
        prev_kv: *prev_kv,
        ..Default::default()
    };
    let (endpoints, format, hex, exec) =
        (cli.endpoints.clone(), cli.write_out, cli.hex, exec.clone());
    match on_executor(move || async move { watch(&endpoints, create, format, hex, &exec).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// `lodectl watch`: creates the watch and prints what it is given until the stream ends.
async fn watch(
    endpoints: &[String],
    create: lode::watch::stream::CreateWatch,
    format: Format,
    hex: bool,
    exec: &[String],
) -> Result<(), String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let mut stream = client.watch();
    stream
        .send(lode::api::native::WatchRequest::Create(create))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let (header, response) = stream.next().await.map_err(|e| e.to_string())?;
        if response.canceled {
            let why = if response.compact_revision != 0 {
                format!(
                    "etcdserver: mvcc: required revision has been compacted (compact revision {})",
                    response.compact_revision
                )
            } else {
                response.cancel_reason.clone()
            };
            return Err(format!("watch is canceled by the server: {why}"));
        }
        if response.created {
            continue;
        }
        let mut text = String::new();
        if response.events.is_empty() && response.compact_revision == 0 && header.revision != 0 {
            text.push_str(&format!("progress notify: {}\n", header.revision));
        }
        text.push_str(&match format {
            Format::Json => output::json_watch(&header, &response).to_string() + "\n",
            Format::Fields => output::fields_watch(&header, &response),
            Format::Simple | Format::Table | Format::Protobuf => {
                output::simple_watch(&response, hex)
            }
        });
        {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // Whoever read our output is gone.
                return Ok(());
            }
        }
        for event in &response.events {
            run_for_event(exec, header.revision, event).await?;
        }
    }
}

/// The key and range end of `watch`: from the arguments, or from ETCDCTL_WATCH_KEY and
/// ETCDCTL_WATCH_RANGE_END, with etcdctl's checks.
fn watch_range(
    key: Option<String>,
    range_end: Option<String>,
    prefix: bool,
    exec: &[String],
) -> Result<(bytes::Bytes, bytes::Bytes), String> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={env_range:?}"
        ));
    }
    if exec.is_empty() && std::env::args().any(|arg| arg == "--") {
        return Err("bad number of arguments (found separator --, but no commands)".into());
    }
    let (key, range_end) = match (key, env_key.is_empty()) {
        (Some(_), false) => {
            return Err("bad number of arguments (found conflicting environment key)".into())
        }
        (None, true) => return Err("bad number of arguments".into()),
        (Some(key), true) => (key, range_end),
        (None, false) => (env_key, (!env_range.is_empty()).then_some(env_range)),
    };
    let key = bytes::Bytes::from(key.into_bytes());
    let range_end = match (range_end, prefix) {
        (Some(_), true) => return Err("`range_end` and `--prefix` are mutually exclusive".into()),
        (Some(end), false) => bytes::Bytes::from(end.into_bytes()),
        (None, true) => lode::mvcc::kv::prefix_range_end(&key),
        (None, false) => bytes::Bytes::new(),
    };
    Ok((key, range_end))
}

/// etcdctl's form of a command line in errors: `["cmd" "arg"]`.
fn quoted_command(command: &[String]) -> String {
    let words: Vec<String> = command
        .iter()
        .map(|word| output::go_quote(word.as_bytes()))
        .collect();
    format!("[{}]", words.join(" "))
}

/// Runs the watch's command for one event, with etcdctl's variables (Go-quoted as etcdctl
/// sets them: `"PUT"`, `"key"`), and waits for it (polled: the connection's reader runs on
/// this thread).
async fn run_for_event(
    command: &[String],
    revision: i64,
    event: &lode::watch::Event,
) -> Result<(), String> {
    let Some((program, arguments)) = command.split_first() else {
        return Ok(());
    };
    let kind = match event.kind {
        lode::watch::EventKind::Put => "\"PUT\"",
        lode::watch::EventKind::Delete => "\"DELETE\"",
    };
    let spawned = std::process::Command::new(program)
        .args(arguments)
        .env("ETCD_WATCH_REVISION", revision.to_string())
        .env("ETCD_WATCH_EVENT_TYPE", kind)
        .env("ETCD_WATCH_KEY", output::go_quote(&event.kv.key))
        .env("ETCD_WATCH_VALUE", output::go_quote(&event.kv.value))
        .spawn();
    let failed = |error: String| {
        eprintln!("command {} error ({error})", quoted_command(command));
        // etcdctl exits 1 with that line only.
        Err(String::new())
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return failed(error.to_string()),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return failed(match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => "signal: killed".into(),
                })
            }
            Ok(None) => glommio::timer::sleep(Duration::from_millis(5)).await,
            Err(error) => return failed(error.to_string()),
        }
    }
}
