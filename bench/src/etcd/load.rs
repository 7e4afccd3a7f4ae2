//! The load: each scenario (put, get, txn, lease calls, watch) run at one client count against
//! one system, measured into HDR histograms with the servers' CPU time and memory.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use lode_protocol::etcd::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::watch_client::WatchClient;

use super::systems::{endpoint_of, token_for, BenchChannel, Servers, TokenHeader};
use super::EtcdArgs;

/// Keys per client.
pub(super) const KEYS_PER_CLIENT: u64 = 64;

/// One case's outcome.
pub(super) struct Measured {
    pub(super) ops: u64,
    pub(super) elapsed: Duration,
    pub(super) histogram: Histogram<u64>,
    pub(super) cpu_micros_per_op: f64,
    /// The servers' resident memory right after the case.
    pub(super) rss_kib: u64,
}

impl Measured {
    /// A case's outcome from its latencies, wall time, the servers' CPU time over it (us) and
    /// their memory after it.
    pub(super) fn new(
        histogram: Histogram<u64>,
        elapsed: Duration,
        cpu_micros: u64,
        rss_kib: u64,
    ) -> Self {
        let ops = histogram.len();
        Measured {
            ops,
            elapsed,
            cpu_micros_per_op: cpu_micros as f64 / ops.max(1) as f64,
            histogram,
            rss_kib,
        }
    }

    pub(super) fn micros(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub(super) fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

pub(super) fn key(client: usize, n: u64) -> Bytes {
    Bytes::from(format!("bench/{client:04}/{:03}", n % KEYS_PER_CLIENT))
}

/// `count` HTTP/2 connections to `endpoint`, with TCP_NODELAY, whose calls carry `token`.
pub(super) async fn connect_channels(
    endpoint: &str,
    count: usize,
    token: &TokenHeader,
) -> Result<Vec<BenchChannel>, String> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = endpoint_of(endpoint)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
        channels.push(tonic::service::interceptor::InterceptedService::new(
            channel,
            token.clone(),
        ));
    }
    Ok(channels)
}

/// Runs `scenario` with `clients` clients against `endpoint` for the configured time.
pub(super) async fn run_case(
    args: &EtcdArgs,
    servers: &Servers,
    endpoint: &str,
    scenario: &str,
    clients: usize,
) -> Result<Measured, String> {
    let connections = clients.min(args.load.connections).max(1);
    let token = token_for(servers, endpoint).await?;
    let channels = connect_channels(endpoint, connections, &token).await?;
    // Every key exists before reads and compare-and-swaps start.
    let value = Bytes::from(vec![b'v'; args.load.value_bytes]);
    if !["put", "lease-grant", "lease-keepalive"].contains(&scenario) {
        let mut kv = KvClient::new(channels[0].clone());
        for client in 0..clients {
            for n in 0..KEYS_PER_CLIENT {
                kv.put(pb::PutRequest {
                    key: key(client, n),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("preparing keys: {e}"))?;
            }
        }
    }
    let duration = Duration::from_secs_f64(args.load.seconds);
    let cpu_before = servers.cpu_micros();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut kv = KvClient::new(channels[client % connections].clone());
        let mut lease = LeaseClient::new(channels[client % connections].clone());
        let scenario = scenario.to_string();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .map_err(|e| e.to_string())?;
            // Keep-alives: each client renews its own lease on a stream of its own, one
            // keep-alive in flight, as etcd's clients keep a session alive.
            let mut keep_alive = None;
            if scenario == "lease-keepalive" {
                let granted = lease
                    .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
                    .await
                    .map_err(|e| format!("granting: {e}"))?
                    .into_inner();
                let (mut sender, requests) = futures::channel::mpsc::channel(1);
                // etcd answers the call only with its first response: the first keep-alive
                // goes before the call is awaited (and is not measured).
                {
                    use futures::SinkExt;
                    sender
                        .send(pb::LeaseKeepAliveRequest { id: granted.id })
                        .await
                        .map_err(|e| format!("keep-alive: {e}"))?;
                }
                let mut answers = lease
                    .lease_keep_alive(requests)
                    .await
                    .map_err(|e| format!("keep-alive stream: {e}"))?
                    .into_inner();
                answers
                    .message()
                    .await
                    .map_err(|e| format!("keep-alive: {e}"))?;
                keep_alive = Some((granted.id, sender, answers));
            }
            let mut n = 0u64;
            let mut expected = value.clone();
            while Instant::now() < deadline {
                let key = key(client, n);
                let began = Instant::now();
                let outcome = match scenario.as_str() {
                    "put" => kv
                        .put(pb::PutRequest {
                            key,
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    "get-linearizable" | "get-serializable" => kv
                        .range(pb::RangeRequest {
                            key,
                            serializable: scenario == "get-serializable",
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    "txn-cas" => {
                        // Compare-and-swap one key of this client's: the value last seen.
                        let key = self::key(client, 0);
                        let next = Bytes::from(format!("{client}-{n}"));
                        let txn = pb::TxnRequest {
                            compare: vec![pb::Compare {
                                result: pb::compare::CompareResult::Equal as i32,
                                target: pb::compare::CompareTarget::Value as i32,
                                key: key.clone(),
                                range_end: Bytes::new(),
                                target_union: Some(pb::compare::TargetUnion::Value(
                                    expected.clone(),
                                )),
                            }],
                            success: vec![pb::RequestOp {
                                request: Some(pb::request_op::Request::RequestPut(
                                    pb::PutRequest {
                                        key: key.clone(),
                                        value: next.clone(),
                                        ..Default::default()
                                    },
                                )),
                            }],
                            failure: vec![pb::RequestOp {
                                request: Some(pb::request_op::Request::RequestRange(
                                    pb::RangeRequest {
                                        key,
                                        ..Default::default()
                                    },
                                )),
                            }],
                        };
                        kv.txn(txn).await.map(|response| {
                            let response = response.into_inner();
                            if response.succeeded {
                                expected = next;
                            } else if let Some(pb::response_op::Response::ResponseRange(range)) =
                                response
                                    .responses
                                    .into_iter()
                                    .next()
                                    .and_then(|r| r.response)
                            {
                                if let Some(kv) = range.kvs.into_iter().next() {
                                    expected = kv.value;
                                }
                            }
                        })
                    }
                    "lease-grant" => lease
                        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 })
                        .await
                        .map(|_| ()),
                    "lease-keepalive" => {
                        use futures::SinkExt;
                        let Some((id, sender, answers)) = keep_alive.as_mut() else {
                            return Err("no keep-alive stream".into());
                        };
                        sender
                            .send(pb::LeaseKeepAliveRequest { id: *id })
                            .await
                            .map_err(|e| format!("keep-alive: {e}"))?;
                        match answers.message().await {
                            Ok(Some(answer)) if answer.ttl > 0 => Ok(()),
                            Ok(Some(_)) => return Err("keep-alive: the lease is gone".into()),
                            Ok(None) => return Err("keep-alive: the stream ended".into()),
                            Err(status) => Err(status),
                        }
                    }
                    other => return Err(format!("unknown scenario {other}")),
                };
                outcome.map_err(|e| format!("{scenario}: {e}"))?;
                let elapsed = began.elapsed().as_nanos() as u64;
                histogram.saturating_record(elapsed.max(1));
                n += 1;
            }
            Ok::<Histogram<u64>, String>(histogram)
        }));
    }
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    for task in tasks {
        let part = task.await.map_err(|e| e.to_string())??;
        histogram.add(&part).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let cpu = servers.cpu_micros().saturating_sub(cpu_before);
    Ok(Measured::new(histogram, elapsed, cpu, servers.rss_kib()))
}

/// Watchers sharing one watch stream in the watch scenario.
pub(super) const WATCHERS_PER_STREAM: usize = 100;

/// The watch scenario: `watchers` watchers of one key (100 per stream, the streams spread over
/// the connections) and one writer putting that key, each put carrying the time it was sent;
/// the writer puts again once every watcher got the previous event (closed loop), so each
/// latency is a put's commit plus its fan-out to every watcher. ops are events received.
pub(super) async fn run_watch_case(
    args: &EtcdArgs,
    servers: &Servers,
    endpoint: &str,
    watchers: usize,
) -> Result<Measured, String> {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let streams = watchers.div_ceil(WATCHERS_PER_STREAM);
    let connections = streams.min(args.load.connections).max(1);
    let token = token_for(servers, endpoint).await?;
    let channels = connect_channels(endpoint, connections, &token).await?;
    let watched = Bytes::from_static(b"watch/key");
    let origin = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let mut tasks = Vec::new();
    for stream in 0..streams {
        let count = WATCHERS_PER_STREAM.min(watchers - stream * WATCHERS_PER_STREAM);
        let creates: Vec<pb::WatchRequest> = (0..count)
            .map(|_| pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key: watched.clone(),
                        ..Default::default()
                    },
                )),
            })
            .collect();
        // The request side stays open: closing it ends the stream.
        let requests = futures::stream::iter(creates).chain(futures::stream::pending());
        let mut client = WatchClient::new(channels[stream % connections].clone())
            .max_decoding_message_size(64 << 20);
        let mut responses = client
            .watch(requests)
            .await
            .map_err(|e| format!("watch: {e}"))?
            .into_inner();
        let (received, created, histogram) = (received.clone(), created.clone(), histogram.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(response)) = responses.message().await {
                if response.created {
                    created.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let now = origin.elapsed().as_nanos() as u64;
                let mut latencies = Vec::with_capacity(response.events.len());
                for event in &response.events {
                    let Some(kv) = &event.kv else { continue };
                    let Some(sent) = kv.value.get(..8) else {
                        continue;
                    };
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(sent);
                    latencies.push(now.saturating_sub(u64::from_le_bytes(bytes)).max(1));
                }
                if let Ok(mut histogram) = histogram.lock() {
                    for latency in &latencies {
                        histogram.saturating_record(*latency);
                    }
                }
                received.fetch_add(latencies.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while created.load(Ordering::Relaxed) < watchers as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {watchers} watches were created",
                created.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut kv = KvClient::new(channels[0].clone());
    let duration = Duration::from_secs_f64(args.load.seconds);
    let cpu_before = servers.cpu_micros();
    let started = Instant::now();
    let mut puts = 0u64;
    while started.elapsed() < duration {
        let mut value = vec![b'v'; args.load.value_bytes.max(8)];
        value[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
        kv.put(pb::PutRequest {
            key: watched.clone(),
            value: Bytes::from(value),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("put: {e}"))?;
        puts += 1;
        let everyone = puts * watchers as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < everyone {
            if Instant::now() > deadline {
                return Err(format!(
                    "put {puts}: {} of {everyone} events arrived within a minute",
                    received.load(Ordering::Relaxed)
                ));
            }
            tokio::task::yield_now().await;
        }
    }
    let elapsed = started.elapsed();
    let cpu = servers.cpu_micros().saturating_sub(cpu_before);
    let rss_kib = servers.rss_kib();
    for task in &tasks {
        task.abort();
    }
    let histogram = histogram
        .lock()
        .map_err(|_| "a watcher task panicked".to_string())?
        .clone();
    Ok(Measured::new(histogram, elapsed, cpu, rss_kib))
}
