//! Moving between etcd and lode by snapshot, each way one command, against the real etcd 3.4
//! (Debian's etcd-server and etcd-client, which ./test.sh installs): a randomized keyspace
//! (thousands of keys, overwrites, deletes, txns, leases with keys, a compaction) is written to
//! one store, saved with `etcdctl snapshot save`, restored into the other (`lodectl snapshot
//! restore` / `etcdctl snapshot restore`), and both stores must then answer the same ranges at
//! every revision kept, refuse the same compacted revisions and hold the same leases.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::etcd::{etcdctl, succeeded, Rng};
use common::server::{free_port, ok, DataDir, Lode};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions,
    LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
};

/// A real etcd, killed when dropped.
struct Etcd {
    child: Child,
    url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts etcd (member `name` of a one-member cluster on `peer_url`) on `data_dir`.
fn start_etcd(data_dir: &Path, name: &str, peer_url: &str) -> Etcd {
    let url = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(data_dir.with_extension("etcd.log")).expect("log");
    let child = Command::new("etcd")
        .args(["--name", name])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", peer_url])
        .args(["--initial-advertise-peer-urls", peer_url])
        .args(["--initial-cluster", &format!("{name}={peer_url}")])
        .args(["--logger", "zap", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("etcd (apt-get install etcd-server) runs");
    let etcd = Etcd { child, url };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !etcdctl(&etcd.url, &["endpoint", "health"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "etcd never became healthy: {}",
            std::fs::read_to_string(data_dir.with_extension("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    etcd
}

/// Writes a randomized keyspace through `endpoint`: puts (some large, some with leases),
/// deletes of single keys and of ranges, txns, and a compaction halfway; returns the revision
/// compacted at.
async fn random_keyspace(endpoint: &str, seed: u64, operations: u64) -> i64 {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let mut rng = Rng::new(seed);
    let mut leases = Vec::new();
    for ttl in [600, 1800, 3600] {
        leases.push(client.lease_grant(ttl, None).await.expect("grant").id());
    }
    let mut compacted = 0;
    for n in 0..operations {
        let index = rng.below(2_000);
        let key = format!("k/{index:04}");
        match rng.below(20) {
            0..=11 => {
                let size = match rng.below(50) {
                    0 => 64 << 10,
                    _ => rng.below(300) as usize,
                };
                let value: Vec<u8> = (0..size).map(|i| (i as u64 ^ n) as u8).collect();
                let options = match rng.below(6) {
                    0 => Some(PutOptions::new().with_lease(leases[rng.below(3) as usize])),
                    _ => None,
                };
                client.put(key, value, options).await.expect("put");
            }
            12..=14 => {
                client.delete(key, None).await.expect("delete");
            }
            15 => {
                let prefix = format!("k/{:02}", rng.below(200));
                client
                    .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await
                    .expect("delete range");
            }
            16..=18 => {
                // Never the same key twice in one branch (etcd refuses that).
                let other = format!("k/{:04}", (index + 1 + rng.below(1_999)) % 2_000);
                let txn = Txn::new()
                    .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                    .and_then([
                        TxnOp::put(key.clone(), format!("txn {n}"), None),
                        TxnOp::delete(other, None),
                    ])
                    .or_else([TxnOp::put(key, "created by txn", None)]);
                client.txn(txn).await.expect("txn");
            }
            _ => {
                client
                    .put("counter", n.to_string(), None)
                    .await
                    .expect("put");
            }
        }
        if n == operations / 2 {
            let revision = client
                .get("counter", None)
                .await
                .expect("get")
                .header()
                .map_or(0, |h| h.revision());
            client
                .compact(
                    revision - 50,
                    Some(CompactionOptions::new().with_physical()),
                )
                .await
                .expect("compact");
            compacted = revision - 50;
        }
    }
    compacted
}

/// One pair as both stores report it.
type Pair = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Every pair at `revision` (0: current) and the header revision.
async fn all_at(client: &mut Client, revision: i64) -> Result<(i64, Vec<Pair>), String> {
    let response = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_revision(revision)),
        )
        .await
        .map_err(|error| error.to_string())?;
    let pairs = response
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect();
    Ok((response.header().map_or(0, |h| h.revision()), pairs))
}

/// Leases: (ID, granted TTL, keys), and the TTL each has left.
async fn leases_of(client: &mut Client) -> (Vec<(i64, i64, Vec<Vec<u8>>)>, Vec<i64>) {
    let mut ids: Vec<i64> = client
        .leases()
        .await
        .expect("leases")
        .leases()
        .iter()
        .map(|lease| lease.id())
        .collect();
    ids.sort();
    let mut leases = Vec::new();
    let mut left = Vec::new();
    for id in ids {
        let answer = client
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .expect("time to live");
        let mut keys: Vec<Vec<u8>> = answer.keys().to_vec();
        keys.sort();
        leases.push((id, answer.granted_ttl(), keys));
        left.push(answer.ttl());
    }
    (leases, left)
}

/// Both stores answer the same at every revision from the compaction point to the current
/// one (a sample of them), refuse the revision below it, and hold the same leases.
fn assert_same_keyspace(from: &str, to: &str, compacted: i64) {
    common::runtime().block_on(async {
        let mut from = Client::connect([from], None).await.expect("connect");
        let mut to = Client::connect([to], None).await.expect("connect");
        let (current, pairs) = all_at(&mut from, 0).await.expect("range");
        assert!(pairs.len() > 500, "a keyspace of {} pairs", pairs.len());
        assert_eq!(all_at(&mut to, 0).await.expect("range"), (current, pairs));
        let step = ((current - compacted) / 12).max(1);
        let mut revision = compacted;
        while revision <= current {
            assert_eq!(
                all_at(&mut to, revision).await,
                all_at(&mut from, revision).await,
                "at revision {revision}"
            );
            revision += step;
        }
        let below = all_at(&mut to, compacted - 1).await.expect_err("compacted");
        assert!(below.contains("compacted"), "{below}");
        assert!(all_at(&mut from, compacted - 1).await.is_err());
        let (leases, from_left) = leases_of(&mut from).await;
        assert_eq!(leases.len(), 3);
        assert!(leases.iter().any(|(_, _, keys)| !keys.is_empty()));
        let (to_leases, to_left) = leases_of(&mut to).await;
        assert_eq!(to_leases, leases);
        // What each lease has left moved with it (in seconds; both started within the test,
        // the TTLs are 10 to 60 minutes, so a minute covers any delay between the reads).
        for ((from, to), (id, granted, _)) in from_left.iter().zip(&to_left).zip(&leases) {
            assert!(
                (from - to).abs() <= 60 && *to > granted / 2,
                "lease {id:x}: {from} s left at the source, {to} s after the move"
            );
        }
    });
}

#[test]
fn an_etcd_snapshot_restores_into_a_lode_that_serves_the_same_keyspace() {
    let etcd_dir = DataDir::new("migration-etcd-source");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let etcd = start_etcd(&etcd_dir.0, "source", &peer);
    let compacted = common::runtime().block_on(random_keyspace(&etcd.url, 0x5eed_e7cd, 6_000));
    let saved = etcd_dir.0.with_extension("etcd.snap");
    succeeded(etcdctl(
        &etcd.url,
        &["snapshot", "save", saved.to_str().unwrap()],
    ));

    // lodectl reads etcd's snapshot as etcdctl does.
    let lode_ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lodectl"))
            .args(args)
            .output()
            .expect("lodectl")
    };
    let etcds = common::json(&succeeded(etcdctl(
        &etcd.url,
        &["snapshot", "status", saved.to_str().unwrap(), "-w", "json"],
    )));
    let lodes = common::json(&ok(lode_ctl(&[
        "snapshot",
        "status",
        saved.to_str().unwrap(),
        "-w",
        "json",
    ])));
    assert_eq!(lodes, etcds);

    // One command makes a lode data dir of it.
    let lode_dir = DataDir::new("migration-lode-target");
    let lode_peer = format!("http://127.0.0.1:{}", free_port());
    let restored = ok(lode_ctl(&[
        "snapshot",
        "restore",
        saved.to_str().unwrap(),
        "--data-dir",
        lode_dir.0.to_str().unwrap(),
        "--name",
        "moved",
        "--initial-advertise-peer-urls",
        &lode_peer,
    ]));
    assert!(restored.starts_with("Restored revision"), "{restored}");
    let lode = Lode::start(
        &lode_dir.0,
        &[
            "--name",
            "moved",
            "--initial-advertise-peer-urls",
            &lode_peer,
        ],
    );
    assert_same_keyspace(&etcd.url, &lode.client_url, compacted);
    // It goes on from there: the next write takes the next revision.
    let before: i64 = common::json(&succeeded(etcdctl(
        &lode.client_url,
        &["get", "counter", "-w", "json"],
    )))["header"]["revision"]
        .as_i64()
        .expect("revision");
    let after = common::json(&succeeded(etcdctl(
        &lode.client_url,
        &["put", "new", "v", "-w", "json"],
    )));
    assert_eq!(after["header"]["revision"].as_i64(), Some(before + 1));

    // The database without its SHA-256 (as copied from a member's data dir) restores only
    // when the check is skipped, as with etcdctl.
    let bytes = std::fs::read(&saved).expect("saved");
    let bare = etcd_dir.0.with_extension("bare.db");
    std::fs::write(&bare, &bytes[..bytes.len() - 32]).expect("bare");
    let bare_dir = DataDir::new("migration-lode-bare");
    let refused = lode_ctl(&[
        "snapshot",
        "restore",
        bare.to_str().unwrap(),
        "--data-dir",
        bare_dir.0.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("missing hash"));
    assert!(!bare_dir.0.exists());
    ok(lode_ctl(&[
        "snapshot",
        "restore",
        bare.to_str().unwrap(),
        "--data-dir",
        bare_dir.0.to_str().unwrap(),
        "--skip-hash-check",
    ]));
    let _ = std::fs::remove_file(&saved);
    let _ = std::fs::remove_file(&bare);
}

#[test]
fn a_lode_snapshot_restores_into_an_etcd_that_serves_the_same_keyspace() {
    let lode_dir = DataDir::new("migration-lode-source");
    let lode = Lode::start(&lode_dir.0, &[]);
    let compacted =
        common::runtime().block_on(random_keyspace(&lode.client_url, 0x10de_5eed, 6_000));
    // etcd's own tools, pointed at lode.
    let saved = lode_dir.0.with_extension("lode.snap");
    succeeded(etcdctl(
        &lode.client_url,
        &["snapshot", "save", saved.to_str().unwrap()],
    ));
    let etcds = common::json(&succeeded(etcdctl(
        &lode.client_url,
        &["snapshot", "status", saved.to_str().unwrap(), "-w", "json"],
    )));
    let current = common::json(&succeeded(etcdctl(
        &lode.client_url,
        &["get", "counter", "-w", "json"],
    )))["header"]["revision"]
        .as_i64()
        .expect("revision");
    assert_eq!(etcds["revision"].as_i64(), Some(current));
    let lodes = common::json(&ok(Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args(["snapshot", "status", saved.to_str().unwrap(), "-w", "json"])
        .output()
        .expect("lodectl")));
    assert_eq!(lodes, etcds);

    let etcd_dir = DataDir::new("migration-etcd-target");
    let peer = format!("http://127.0.0.1:{}", free_port());
    succeeded(etcdctl(
        &lode.client_url,
        &[
            "snapshot",
            "restore",
            saved.to_str().unwrap(),
            "--data-dir",
            etcd_dir.0.to_str().unwrap(),
            "--name",
            "moved",
            "--initial-cluster",
            &format!("moved={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ],
    ));
    let etcd = start_etcd(&etcd_dir.0, "moved", &peer);
    assert_same_keyspace(&lode.client_url, &etcd.url, compacted);
    let _ = std::fs::remove_file(&saved);
}
