//! The peer transport between real TCP sockets on loopback: delivery in order, control messages
//! never stuck behind appends, peers of another cluster refused, unreachable peers reported,
//! a peer that moves reached at its new address, a sender missing from the configuration
//! answered at the address its hello gave, snapshot files streamed in chunks, and dashboard
//! reports answered to members only.

mod common;

use std::rc::Rc;
use std::time::{Duration, Instant};

use common::on_executor;
use glommio::net::TcpListener;
use lode::peer::transport::PeerTransport;
use raft::eraftpb::{Entry, Message, MessageType};

fn message(from: u64, to: u64, kind: MessageType, index: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = from;
    m.to = to;
    m.term = 3;
    m.index = index;
    if kind == MessageType::MsgAppend {
        m.entries = vec![Entry {
            index: index + 1,
            term: 3,
            data: vec![7u8; 2048].into(),
            ..Default::default()
        }]
        .into();
    }
    m
}

/// A transport listening on a free loopback port, that address, and its snapshot directory.
fn listening(cluster: u64, id: u64) -> (Rc<PeerTransport>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let transport = PeerTransport::new(cluster, id, dir.path(), None);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    glommio::spawn_local(transport.clone().serve(listener, None)).detach();
    (transport, address, dir)
}

fn snapshot_message(from: u64, to: u64, index: u64) -> Message {
    let mut m = message(from, to, MessageType::MsgSnapshot, index);
    let snapshot = m.mut_snapshot();
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = 3;
    m
}

/// Waits for `transport`'s first snapshot report.
async fn snapshot_report(transport: &PeerTransport) -> (u64, bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(report) = transport.take_snapshot_reports().pop() {
            return report;
        }
        assert!(Instant::now() < deadline, "no snapshot report");
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn snapshots_stream_in_chunks_and_missing_files_are_reported() {
    use lode::snapshotter::{received_file_name, snapshot_file_name};
    on_executor(|| async {
        let (a, a_address, a_dir) = listening(9, 1);
        let (b, b_address, b_dir) = listening(9, 2);
        a.set_peer(2, plain(&b_address));
        b.set_peer(1, plain(&a_address));
        // Three chunks and a bit; content that shows any chunk out of place.
        let file: Vec<u8> = (0..(3 * 256 * 1024 + 1234) as u32)
            .map(|n| (n / 7) as u8 ^ (n >> 16) as u8)
            .collect();
        std::fs::write(a_dir.path().join(snapshot_file_name(500)), &file).unwrap();
        a.send(vec![snapshot_message(1, 2, 500)]);
        let received = receive_until(&b, |r| !r.is_empty()).await;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].get_msg_type(), MessageType::MsgSnapshot);
        assert_eq!(received[0].get_snapshot().get_metadata().index, 500);
        // The file is complete and durable before Raft hears of it.
        let copy = std::fs::read(b_dir.path().join(received_file_name(500))).unwrap();
        assert!(copy == file, "the received snapshot differs");
        assert_eq!(snapshot_report(&a).await, (2, true));

        // A snapshot whose file is gone is reported failed, and nothing reaches b.
        a.send(vec![snapshot_message(1, 2, 600)]);
        assert_eq!(snapshot_report(&a).await, (2, false));
        a.send(vec![message(1, 2, MessageType::MsgHeartbeat, 77)]);
        let after = receive_until(&b, |r| r.iter().any(|m| m.index == 77)).await;
        assert!(after
            .iter()
            .all(|m| m.get_msg_type() != MessageType::MsgSnapshot));
    });
}

/// Collects what `transport` receives until `done` says so (at most a minute).
async fn receive_until(
    transport: &PeerTransport,
    mut done: impl FnMut(&[Message]) -> bool,
) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = Vec::new();
    while !done(&received) {
        assert!(
            Instant::now() < deadline,
            "gave up: {} received",
            received.len()
        );
        let arrival = transport.inbox().arrival();
        let timeout = glommio::timer::sleep(Duration::from_millis(20));
        futures::future::select(Box::pin(arrival), Box::pin(timeout)).await;
        received.extend(transport.inbox().take());
    }
    received
}

#[test]
fn messages_reach_peers_in_order_and_strangers_are_refused() {
    on_executor(|| async {
        let (a, a_address, _a_dir) = listening(9, 1);
        let (b, b_address, _b_dir) = listening(9, 2);
        a.set_peer(2, plain(&b_address));
        b.set_peer(1, plain(&a_address));

        // Appends with heartbeats in between: appends arrive in order, heartbeats all arrive.
        let mut sent = Vec::new();
        for n in 0..2000 {
            let kind = if n % 10 == 0 {
                MessageType::MsgHeartbeat
            } else {
                MessageType::MsgAppend
            };
            sent.push(message(1, 2, kind, n));
        }
        for chunk in sent.chunks(37) {
            a.send(chunk.to_vec());
            glommio::yield_if_needed().await;
        }
        let received = receive_until(&b, |r| r.len() == sent.len()).await;
        let appends: Vec<u64> = received
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgAppend)
            .map(|m| m.index)
            .collect();
        let expected: Vec<u64> = sent
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgAppend)
            .map(|m| m.index)
            .collect();
        assert_eq!(appends, expected);
        assert!(received.iter().all(|m| m.from == 1 && m.to == 2));

        // And back.
        b.send(vec![message(2, 1, MessageType::MsgAppendResponse, 5)]);
        let back = receive_until(&a, |r| !r.is_empty()).await;
        assert_eq!(back[0].get_msg_type(), MessageType::MsgAppendResponse);

        // A member of another cluster is refused: b closes the connection (the stranger then
        // finds b unreachable) and nothing it sent reaches b's inbox.
        let stranger_dir = tempfile::tempdir().expect("temp dir");
        let stranger = PeerTransport::new(77, 5, stranger_dir.path(), None);
        stranger.set_peer(2, plain(&b_address));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            stranger.send(vec![message(5, 2, MessageType::MsgHeartbeat, 0)]);
            glommio::timer::sleep(Duration::from_millis(10)).await;
            if stranger.take_unreachable().contains(&2) {
                break;
            }
            assert!(Instant::now() < deadline, "b never refused the stranger");
        }
        assert!(b.inbox().take().iter().all(|m| m.from != 5));
        // a is still heard.
        a.send(vec![message(1, 2, MessageType::MsgHeartbeat, 4242)]);
        receive_until(&b, |r| r.iter().any(|m| m.index == 4242)).await;
    });
}

#[test]
fn unreachable_peers_are_reported_and_moved_peers_found() {
    on_executor(|| async {
        let (a, _, _a_dir) = listening(9, 1);
        // Nobody listens there: reported unreachable, its queue dropped rather than kept.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = closed.local_addr().unwrap().to_string();
        drop(closed);
        a.set_peer(3, plain(&nowhere));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            a.send(vec![message(1, 3, MessageType::MsgHeartbeat, 1)]);
            if a.take_unreachable().contains(&3) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "peer 3 never reported unreachable"
            );
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }

        // Peer 3 comes up somewhere else: messages follow it there.
        let (c, c_address, _c_dir) = listening(9, 3);
        a.set_peer(3, plain(&c_address));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            a.send(vec![message(1, 3, MessageType::MsgHeartbeat, 99)]);
            glommio::timer::sleep(Duration::from_millis(20)).await;
            if c.inbox().take().iter().any(|m| m.index == 99) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "peer 3 never reached at its new address"
            );
        }
        a.remove_peer(3);
        a.send(vec![message(1, 3, MessageType::MsgHeartbeat, 100)]);
    });
}

/// A member its receiver's configuration does not list yet (added while the receiver was
/// away) names its peer URLs when it connects: the receiver's answers reach it there. A hello
/// never moves a member the configuration does list.
#[test]
fn a_sender_missing_from_the_configuration_is_answered_where_its_hello_says() {
    on_executor(|| async {
        let (newcomer, newcomer_address, _n_dir) = listening(9, 4);
        let (returning, returning_address, _r_dir) = listening(9, 2);
        newcomer.set_own_urls(vec![format!("http://{newcomer_address}")]);
        newcomer.set_peer(2, plain(&returning_address));

        newcomer.send(vec![message(4, 2, MessageType::MsgHeartbeat, 7)]);
        receive_until(&returning, |r| r.iter().any(|m| m.index == 7)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            returning.send(vec![message(2, 4, MessageType::MsgHeartbeatResponse, 8)]);
            glommio::timer::sleep(Duration::from_millis(20)).await;
            if newcomer.inbox().take().iter().any(|m| m.index == 8) {
                break;
            }
            assert!(Instant::now() < deadline, "the newcomer was never answered");
        }

        // A configured member's hello naming elsewhere does not move it.
        let (member, member_address, _m_dir) = listening(9, 3);
        returning.set_peer(3, plain(&member_address));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = closed.local_addr().unwrap().to_string();
        drop(closed);
        member.set_own_urls(vec![format!("http://{nowhere}")]);
        member.set_peer(2, plain(&returning_address));
        member.send(vec![message(3, 2, MessageType::MsgHeartbeat, 9)]);
        receive_until(&returning, |r| r.iter().any(|m| m.index == 9)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            returning.send(vec![message(2, 3, MessageType::MsgHeartbeatResponse, 10)]);
            glommio::timer::sleep(Duration::from_millis(20)).await;
            if member.inbox().take().iter().any(|m| m.index == 10) {
                break;
            }
            assert!(Instant::now() < deadline, "the configured member was moved");
        }
    });
}

#[test]
fn reports_are_answered_to_members_only() {
    on_executor(|| async {
        let (asked, asked_address, _a_dir) = listening(9, 2);
        let (member, _m_address, _m_dir) = listening(9, 1);
        let (stranger, _s_address, _s_dir) = listening(9, 7);
        asked.set_report_source(Box::new(|first| {
            format!("{{\"first\":{first}}}").into_bytes()
        }));
        asked.set_peer(1, plain("127.0.0.1:1"));
        member.set_peer(2, plain(&asked_address));
        stranger.set_peer(2, plain(&asked_address));

        // A member asks twice over one connection, and is answered each time.
        let mut connection = None;
        for first in [0, 5] {
            let report = member
                .ask_report(&mut connection, 2, first)
                .await
                .expect("a member's report query answered");
            assert_eq!(&report[..], format!("{{\"first\":{first}}}").as_bytes());
        }
        // A sender the asked member's configuration does not list is cut off unanswered.
        let mut connection = None;
        let refused = stranger.ask_report(&mut connection, 2, 0).await;
        assert!(refused.is_err(), "{refused:?}");
        // Nor can a member ask one it does not know.
        let unknown = member.ask_report(&mut None, 5, 0).await;
        assert!(unknown.is_err(), "{unknown:?}");
    });
}

/// A peer dialled in the clear at `address`.
fn plain(address: &str) -> lode::peer::transport::PeerAddress {
    lode::peer::transport::PeerAddress {
        address: address.to_string(),
        host: "127.0.0.1".into(),
        tls: false,
    }
}
