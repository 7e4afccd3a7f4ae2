//! `lodectl perf --watch`: the dashboard's leader-latency view in the terminal, for machines
//! without a browser. Follows the endpoint's `/dashboard/events` (server-sent events, one a
//! second) and redraws the last second's stages and the followers until interrupted.

use futures::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Dialer, DIALER};

/// Follows the first endpoint that answers until the connection ends.
pub(crate) async fn watch(endpoints: &[String]) -> Result<String, String> {
    let dialer = DIALER.get_or_init(|| Dialer::new(crate::flags::Security::default()));
    let mut last = String::from("no endpoints given");
    for endpoint in endpoints {
        match follow(dialer, endpoint).await {
            Ok(()) => return Ok(String::new()),
            Err(error) => last = format!("{endpoint}: {error}"),
        }
    }
    Err(last)
}

async fn follow(dialer: &Dialer, endpoint: &str) -> Result<(), String> {
    let mut stream = dialer.open_stream(endpoint).await?;
    let host = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let request = format!(
        "GET /dashboard/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut headers_done = false;
    loop {
        let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the server closed the feed".into());
        }
        pending.extend_from_slice(&chunk[..read]);
        if !headers_done {
            let Some(end) = find(&pending, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!(
                    "no dashboard feed: {}",
                    head.lines().next().unwrap_or_default()
                ));
            }
            pending.drain(..end + 4);
            headers_done = true;
        }
        // Chunked transfer encoding wraps the events; only the `data:` lines matter, and an
        // event never holds a line break, so each is read whole between "data: " and "\n\n".
        while let Some(start) = find(&pending, b"data: ") {
            let Some(length) = find(&pending[start..], b"\n\n") else {
                break;
            };
            let event = String::from_utf8_lossy(&pending[start + 6..start + length]).to_string();
            pending.drain(..start + length + 2);
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&event) {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(render(endpoint, &event).as_bytes());
                let _ = out.flush();
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// One screen: clear, then the last sample's stages and followers.
fn render(endpoint: &str, event: &serde_json::Value) -> String {
    let Some(sample) = event["samples"].as_array().and_then(|s| s.last()) else {
        return String::new();
    };
    let mut out = String::from("\x1b[2J\x1b[H");
    out += &format!(
        "lode {endpoint}: leader {} · term {} · revision {} (Ctrl-C to stop)\n\n",
        sample["leader"]
            .as_str()
            .filter(|l| !l.is_empty())
            .unwrap_or("none"),
        sample["term"],
        sample["revision"],
    );
    out += &format!(
        "{:<44} {:>8} {:>10} {:>10} {:>10}\n",
        "stage (last second)", "count", "p50 us", "p99 us", "p99.9 us"
    );
    for stage in sample["stages"].as_array().into_iter().flatten() {
        out += &format!(
            "{:<44} {:>8} {:>10.0} {:>10.0} {:>10.0}\n",
            stage["stage"].as_str().unwrap_or_default(),
            stage["count"],
            stage["p50_us"].as_f64().unwrap_or_default(),
            stage["p99_us"].as_f64().unwrap_or_default(),
            stage["p999_us"].as_f64().unwrap_or_default(),
        );
    }
    let followers = sample["followers"].as_array().cloned().unwrap_or_default();
    if !followers.is_empty() {
        out += &format!(
            "\n{:<20} {:>14} {:>8}\n",
            "follower", "lag (entries)", "active"
        );
        for follower in followers {
            out += &format!(
                "{:<20} {:>14} {:>8}\n",
                follower["id"].as_str().unwrap_or_default(),
                follower["lag_entries"],
                if follower["active"] == true {
                    "yes"
                } else {
                    "no"
                },
            );
        }
    }
    out
}
