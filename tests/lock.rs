//! etcd's Lock and Election services on real `lode` processes, driven by the Rust
//! `etcd-client` crate; Debian's etcdctl `lock` and `elect` (which build both on leases, txns
//! and watches); and mutual exclusion with fencing through leader kills.
//!
//! Waiting is asserted by revisions, not by time: a waiter's answer carries a header revision
//! after the release it waited for.

mod common;

use common::{grpc_error, runtime};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{cluster, wait_for_leader, wait_for_leader_among};
use common::server::{ok, DataDir, Lode};
use etcd_client::{
    Client, Compare, CompareOp, LeaderKey, LockOptions, ProclaimOptions, ResignOptions, Txn, TxnOp,
};

async fn connect(endpoints: &[String]) -> Client {
    Client::connect(endpoints, None).await.expect("connect")
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("a header").revision()
}

#[test]
fn a_waiter_gets_the_lock_only_after_its_release() {
    let dir = DataDir::new("lock-grpc");
    let lode = Lode::start(&dir.0, &[]);
    let endpoints = vec![lode.client_url.clone()];
    runtime().block_on(async {
        let mut client = connect(&endpoints).await;
        let first_lease = client.lease_grant(30, None).await.unwrap().id();
        let second_lease = client.lease_grant(30, None).await.unwrap().id();
        let held = client
            .lock("job", Some(LockOptions::new().with_lease(first_lease)))
            .await
            .expect("lock");
        assert_eq!(held.key(), format!("job/{first_lease:x}").as_bytes());

        let mut waiter_client = client.clone();
        let waiter = tokio::spawn(async move {
            waiter_client
                .lock("job", Some(LockOptions::new().with_lease(second_lease)))
                .await
        });
        // The waiter queued (its key exists) without holding the lock.
        let queued = format!("job/{second_lease:x}");
        while client.get(queued.as_str(), None).await.unwrap().count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!waiter.is_finished());
        let released = client.unlock(held.key()).await.expect("unlock");
        let second = waiter.await.unwrap().expect("the waiter's lock");
        assert_eq!(second.key(), queued.as_bytes());
        assert!(revision(second.header()) >= revision(released.header()));

        // A holder whose lease is revoked loses the lock to the next in line.
        let third_lease = client.lease_grant(30, None).await.unwrap().id();
        let mut third_client = client.clone();
        let third = tokio::spawn(async move {
            third_client
                .lock("job", Some(LockOptions::new().with_lease(third_lease)))
                .await
        });
        let third_key = format!("job/{third_lease:x}");
        while client.get(third_key.as_str(), None).await.unwrap().count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let revoked = client.lease_revoke(second_lease).await.unwrap();
        let third = third.await.unwrap().expect("the third lock");
        assert_eq!(third.key(), third_key.as_bytes());
        assert!(revision(third.header()) >= revision(revoked.header()));

        // A lock with a lease that does not exist: etcd's message, code Unknown.
        let refused = client
            .lock("job", Some(LockOptions::new().with_lease(12345)))
            .await
            .unwrap_err();
        assert_eq!(
            grpc_error(refused),
            (
                tonic::Code::Unknown,
                "etcdserver: requested lease not found".into()
            )
        );
    });
}

#[test]
fn elections_campaign_proclaim_observe_and_resign() {
    let dir = DataDir::new("election-grpc");
    let lode = Lode::start(&dir.0, &[]);
    let endpoints = vec![lode.client_url.clone()];
    runtime().block_on(async {
        let mut client = connect(&endpoints).await;
        let missing = client.leader("vote").await.unwrap_err();
        assert_eq!(
            grpc_error(missing),
            (tonic::Code::Unknown, "election: no leader".into())
        );
        let mut observer = client.observe("vote").await.expect("observe");

        let first_lease = client.lease_grant(30, None).await.unwrap().id();
        let second_lease = client.lease_grant(30, None).await.unwrap().id();
        let won = client
            .campaign("vote", "a", first_lease)
            .await
            .expect("campaign");
        let leader: LeaderKey = won.leader().expect("a leader key").clone();
        assert_eq!(leader.key(), format!("vote/{first_lease:x}").as_bytes());
        assert_eq!(leader.lease(), first_lease);
        let current = client.leader("vote").await.unwrap();
        assert_eq!(current.kv().unwrap().value(), b"a");

        let mut second_client = client.clone();
        let second =
            tokio::spawn(async move { second_client.campaign("vote", "b", second_lease).await });
        let second_key = format!("vote/{second_lease:x}");
        while client.get(second_key.as_str(), None).await.unwrap().count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client
            .proclaim(
                "a2",
                Some(ProclaimOptions::new().with_leader(leader.clone())),
            )
            .await
            .expect("proclaim");
        assert!(!second.is_finished(), "a campaign won while another led");
        assert_eq!(
            client.leader("vote").await.unwrap().kv().unwrap().value(),
            b"a2"
        );
        client
            .resign(Some(ResignOptions::new().with_leader(leader.clone())))
            .await
            .expect("resign");
        let second = second.await.unwrap().expect("the second campaign");
        assert_eq!(second.leader().unwrap().key(), second_key.as_bytes());
        assert_eq!(
            client.leader("vote").await.unwrap().kv().unwrap().value(),
            b"b"
        );
        // The old leadership proclaims no more.
        let stale = client
            .proclaim("a3", Some(ProclaimOptions::new().with_leader(leader)))
            .await
            .unwrap_err();
        assert_eq!(
            grpc_error(stale),
            (tonic::Code::Unknown, "election: not leader".into())
        );
        let no_leader = client.proclaim("x", None).await.unwrap_err();
        assert_eq!(
            grpc_error(no_leader),
            (
                tonic::Code::Unknown,
                "\"leader\" field must be provided".into()
            )
        );

        // The observer saw every leader and proclamation, in order.
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let response = tokio::time::timeout(Duration::from_secs(60), observer.message())
                .await
                .expect("an observation within a minute")
                .expect("the stream works")
                .expect("the stream goes on");
            seen.push(String::from_utf8_lossy(response.kv().unwrap().value()).into_owned());
        }
        assert_eq!(seen, ["a", "a2", "b"]);
    });
}

/// Runs etcdctl (API v3) against `endpoint`, with its output read line by line.
fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl runs")
}

fn first_line(child: &mut std::process::Child) -> String {
    let stdout = child.stdout.as_mut().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    line
}

fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) with a child's pid and SIGINT has no memory effects.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

/// etcdctl's lock and elect against `endpoint`: the second contender gets the lock or the
/// leadership once the first is interrupted (which releases it).
fn etcdctl_lock_and_elect(endpoint: &str) {
    let mut holder = etcdctl(endpoint, &["lock", "mutex"]);
    let held = first_line(&mut holder);
    assert!(held.starts_with("mutex/"), "{held}");
    let mut waiter = etcdctl(endpoint, &["lock", "mutex"]);
    // Released on SIGINT; the waiter then holds it under its own key.
    interrupt(&holder);
    assert!(holder.wait().unwrap().success());
    let next = first_line(&mut waiter);
    assert!(
        next.starts_with("mutex/") && next != held,
        "{next} after {held}"
    );
    interrupt(&waiter);
    assert!(waiter.wait().unwrap().success());
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args([
            "lock",
            "mutex",
            "--",
            "sh",
            "-c",
            "echo $ETCD_LOCK_KEY; exit 3",
        ])
        .output()
        .unwrap();
    // etcdctl 3.4 exits 1 when the command fails (3.5 passes the command's status on).
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("mutex/"));

    let mut leader = etcdctl(endpoint, &["elect", "ballot", "p1"]);
    assert!(first_line(&mut leader).starts_with("ballot/"));
    let mut observer = etcdctl(endpoint, &["elect", "-l", "ballot"]);
    assert!(first_line(&mut observer).starts_with("ballot/"));
    let mut candidate = etcdctl(endpoint, &["elect", "ballot", "p2"]);
    interrupt(&leader);
    assert!(leader.wait().unwrap().success());
    assert!(first_line(&mut candidate).starts_with("ballot/"));
    for child in [&mut candidate, &mut observer] {
        interrupt(child);
        let _ = child.wait();
    }
}

#[test]
fn etcdctl_lock_and_elect_on_one_member_and_three() {
    let dir = DataDir::new("lock-etcdctl");
    let lode = Lode::start(&dir.0, &[]);
    etcdctl_lock_and_elect(&lode.client_url);

    let mut members = cluster("lock-etcdctl-cluster");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    etcdctl_lock_and_elect(&members[(leader + 1) % 3].lode().client_url);
}

#[test]
fn lodectl_lock_runs_a_command_and_elect_observes() {
    let dir = DataDir::new("lock-lodectl");
    let lode = Lode::start(&dir.0, &[]);
    let ran = ok(lode.ctl(&[
        "lock",
        "job",
        "sh",
        "-c",
        "echo key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV",
    ]));
    assert!(
        ran.starts_with("key=job/") && ran.contains(" rev="),
        "{ran}"
    );
    let failed = lode.ctl(&["lock", "job", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3));

    let mut holder = lode.ctl_process(&["lock", "job"]);
    holder.stdout(Stdio::piped());
    let mut holder = holder.spawn().unwrap();
    let key = first_line(&mut holder);
    assert!(key.starts_with("job/"), "{key}");
    let mut observer = lode.ctl_process(&["elect", "-l", "poll"]);
    observer.stdout(Stdio::piped());
    let mut observer = observer.spawn().unwrap();
    let mut candidate = lode.ctl_process(&["elect", "poll", "yes"]);
    candidate.stdout(Stdio::piped());
    let mut candidate = candidate.spawn().unwrap();
    assert!(first_line(&mut candidate).starts_with("poll/"));
    assert!(first_line(&mut observer).starts_with("poll/"));
    // Interrupted, each lets go: the lock and the leadership are free again.
    for child in [&mut holder, &mut candidate, &mut observer] {
        interrupt(child);
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(
        ok(lode.ctl(&["get", "job/", "--prefix", "--count-only"])),
        "0\n"
    );
    assert_eq!(
        ok(lode.ctl(&["get", "poll/", "--prefix", "--count-only"])),
        "0\n"
    );
}

/// Keeps `lease` alive from its own task until `stop`, reconnecting through any endpoint.
fn keep_alive(
    endpoints: Vec<String>,
    lease: i64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut client) = Client::connect(&endpoints, None).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok((mut keeper, mut answers)) = client.lease_keep_alive(lease).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while !stop.load(Ordering::Relaxed) {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(2), answers.message()).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                    // The lease is gone: nothing to keep alive.
                    Ok(Ok(Some(_))) => return,
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    })
}

/// One worker: `sections` critical sections under the lock, each reading the counter and
/// writing counter + 1 guarded by a compare on its lock key's create revision (fencing).
/// Returns (revision, value written) of every write acknowledged.
async fn worker(endpoints: Vec<String>, id: usize, sections: usize) -> Vec<(i64, i64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut written = Vec::new();
    let mut client = connect(&endpoints).await;
    let mut lease = 0;
    let mut keeper = None;
    let mut section = 0;
    // Each attempt logs under a key of its own: an attempt whose outcome was unknown but that
    // did commit keeps its entry when the section is tried again.
    let mut attempt = 0;
    while section < sections {
        if lease == 0 {
            match client.lease_grant(5, None).await {
                Ok(granted) => {
                    lease = granted.id();
                    keeper = Some(keep_alive(endpoints.clone(), lease, stop.clone()));
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let held = match client
            .lock("fenced", Some(LockOptions::new().with_lease(lease)))
            .await
        {
            Ok(held) => held,
            Err(error) => {
                // The lease ran out while the cluster changed leaders: start a new session.
                if error.to_string().contains("lease not found")
                    || error.to_string().contains("session is expired")
                {
                    lease = 0;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let key = held.key().to_vec();
        let Ok(own) = client.get(key.clone(), None).await else {
            continue;
        };
        let Some(created) = own.kvs().first().map(|kv| kv.create_revision()) else {
            lease = 0; // lost with its lease
            continue;
        };
        let Ok(read) = client.get("counter", None).await else {
            continue;
        };
        let value: i64 = read
            .kvs()
            .first()
            .map_or(0, |kv| kv.value_str().unwrap().parse().unwrap());
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                created,
            )])
            .and_then([
                TxnOp::put("counter", (value + 1).to_string(), None),
                TxnOp::put(format!("log/{id}/{attempt}"), (value + 1).to_string(), None),
            ]);
        attempt += 1;
        match client.txn(txn).await {
            Ok(done) if done.succeeded() => {
                written.push((revision(done.header()), value + 1));
                section += 1;
            }
            // Fenced off (the lock was lost meanwhile), or an unknown outcome: the section
            // is not counted as done; an unknown outcome that did commit shows up in the
            // final state and is accounted for there.
            _ => {}
        }
        let _ = client.unlock(key).await;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(keeper) = keeper {
        keeper.abort();
    }
    let _ = client.lease_revoke(lease).await;
    written
}

#[test]
fn fenced_lock_holders_never_overlap_through_leader_kills() {
    let mut members = cluster("lock-fencing");
    for member in &mut members {
        member.start();
    }
    let mut leader = wait_for_leader(&members, 0);
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| m.lode().client_url.clone())
        .collect();
    let (workers, sections) = (4, 12);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..workers)
        .map(|id| {
            // Each worker talks to the cluster from a different member first.
            let mut order = endpoints.clone();
            order.rotate_left(id % endpoints.len());
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                let written = runtime().block_on(worker(order, id, sections));
                acknowledged.lock().unwrap().extend(written);
            })
        })
        .collect();
    // Two leader kills while they work (each restarted once a new leader is in place).
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        let term = members[leader].status().map_or(0, |(_, term)| term);
        members[leader].lode.as_mut().unwrap().kill();
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let next = wait_for_leader_among(&members, &survivors, term);
        members[leader].start();
        leader = next;
    }
    for thread in threads {
        thread.join().expect("a worker");
    }
    // Every acknowledged write is there, and the writes form one sequence 1, 2, 3, ... in
    // revision order: two holders at once would have written the same value twice.
    let mut written = acknowledged.lock().unwrap().clone();
    written.sort();
    let values: Vec<i64> = written.iter().map(|&(_, value)| value).collect();
    let total = runtime().block_on(async {
        let mut client = connect(&endpoints).await;
        let counter = client.get("counter", None).await.unwrap();
        let counter: i64 = counter.kvs()[0].value_str().unwrap().parse().unwrap();
        let logs = client
            .get("log/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap();
        let mut logged: Vec<i64> = logs
            .kvs()
            .iter()
            .map(|kv| kv.value_str().unwrap().parse().unwrap())
            .collect();
        logged.sort();
        // Writes whose acknowledgement was lost are in the log too, each with its own value.
        assert_eq!(
            logged,
            (1..=counter).collect::<Vec<i64>>(),
            "no value written twice"
        );
        // Every acknowledged write is in the final state.
        for value in &values {
            assert!(logged.contains(value), "acknowledged value {value} lost");
        }
        counter
    });
    assert_eq!(written.len(), workers * sections);
    assert!(total >= written.len() as i64);
    let mut unique = values.clone();
    unique.dedup();
    assert_eq!(unique, values, "a value was written twice: {written:?}");
    assert!(
        values.windows(2).all(|pair| pair[0] < pair[1]),
        "{written:?}"
    );
}

/// The value of the next leader or proclamation `observer` is given.
async fn observed(observer: &mut etcd_client::ObserveStream) -> String {
    let response = tokio::time::timeout(Duration::from_secs(60), observer.message())
        .await
        .expect("an observation within a minute")
        .expect("the stream works")
        .expect("the stream goes on");
    String::from_utf8_lossy(response.kv().unwrap().value()).into_owned()
}

#[test]
fn an_observer_outlives_the_compaction_of_the_leaders_history() {
    let dir = DataDir::new("election-compacted");
    let lode = Lode::start(&dir.0, &[]);
    let endpoints = vec![lode.client_url.clone()];
    runtime().block_on(async {
        let mut client = connect(&endpoints).await;
        let lease = client.lease_grant(60, None).await.unwrap().id();
        let won = client.campaign("poll", "first", lease).await.unwrap();
        let leader = won.leader().unwrap().clone();
        // The leader's key is older than the compaction point when the observer starts.
        for i in 0..5 {
            client.put(format!("noise{i}"), "x", None).await.unwrap();
        }
        let revision = revision(client.get("noise0", None).await.unwrap().header());
        client.compact(revision, None).await.unwrap();
        let mut observer = client.observe("poll").await.expect("observe");
        assert_eq!(observed(&mut observer).await, "first");
        client
            .proclaim("second", Some(ProclaimOptions::new().with_leader(leader)))
            .await
            .unwrap();
        // The next observation is the proclamation, not the same leader again.
        assert_eq!(observed(&mut observer).await, "second");
    });
}
