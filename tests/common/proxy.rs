//! A fault-injecting TCP proxy in front of each member's peer listener, for partition tests.
//!
//! Members advertise the proxy's address as their peer URL, so every peer connection to member
//! `j` goes through proxy `j`. The proxy reads the sender's member ID from the first frame's
//! header (lode's peer wire: `u32 length | u16 version | u16 kind | u64 cluster | u64 from`)
//! and applies the fault set for that link, per direction: pass, delay, or blackhole (bytes
//! read and thrown away; the sender sees nothing wrong). When a blackholed link passes again
//! its connections are closed, so both ends start over on clean frame boundaries, as after a
//! real network fault that ends in a reset.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to bytes on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded.
    Pass,
    /// Forwarded after this long.
    Delay(Duration),
    /// Thrown away.
    Blackhole,
}

/// The faults between members, by (sender index, receiver index).
#[derive(Default)]
pub struct Network {
    ids: Mutex<Vec<u64>>,
    faults: Mutex<HashMap<(usize, usize), Fault>>,
    stop: AtomicBool,
}

impl Network {
    /// Tells the proxies which member ID each index has (learned once members run).
    pub fn set_ids(&self, ids: Vec<u64>) {
        *self.ids.lock().unwrap_or_else(|p| p.into_inner()) = ids;
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .position(|&known| known == id)
    }

    /// Sets the fault on the link from `from` to `to` (one direction).
    pub fn set(&self, from: usize, to: usize, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((from, to), fault);
    }

    /// Cuts `member` off from every other of `count` members, both directions.
    pub fn isolate(&self, member: usize, count: usize) {
        for other in (0..count).filter(|&o| o != member) {
            self.set(member, other, Fault::Blackhole);
            self.set(other, member, Fault::Blackhole);
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn fault(&self, from: Option<usize>, to: Option<usize>) -> Fault {
        match (from, to) {
            (Some(from), Some(to)) => self
                .faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(from, to))
                .copied()
                .unwrap_or(Fault::Pass),
            _ => Fault::Pass,
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts a proxy for member `index` that forwards to `target` (host:port); returns the
/// proxy's address. It runs until `network` is dropped.
pub fn start_proxy(network: &Arc<Network>, index: usize, target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
    let address = listener.local_addr().expect("proxy address").to_string();
    listener.set_nonblocking(true).expect("nonblocking");
    let network = Arc::downgrade(network);
    std::thread::spawn(move || loop {
        let Some(net) = network.upgrade() else {
            return;
        };
        if net.stop.load(Ordering::Relaxed) {
            return;
        }
        match listener.accept() {
            Ok((inbound, _)) => {
                let (network, target) = (network.clone(), target.clone());
                std::thread::spawn(move || connection(network, inbound, index, &target));
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                drop(net);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    });
    address
}

fn connection(network: std::sync::Weak<Network>, mut inbound: TcpStream, to: usize, target: &str) {
    let _ = inbound.set_nonblocking(false);
    let _ = inbound.set_nodelay(true);
    // The sender's ID is in the first frame's header.
    let mut header = [0u8; 24];
    if inbound.read_exact(&mut header).is_err() {
        return;
    }
    let from_id = u64::from_le_bytes(header[16..24].try_into().unwrap_or([0; 8]));
    let Ok(outbound) = TcpStream::connect(target) else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let closed = Arc::new(AtomicBool::new(false));
    let (Ok(inbound_copy), Ok(outbound_copy)) = (inbound.try_clone(), outbound.try_clone()) else {
        return;
    };
    // The header goes first, under the same rule as what follows it.
    let forward = {
        let (network, closed) = (network.clone(), closed.clone());
        std::thread::spawn(move || {
            pump(
                &network,
                inbound,
                outbound,
                Some(header),
                Link::FromSender {
                    sender: from_id,
                    to,
                },
                &closed,
            )
        })
    };
    pump(
        &network,
        outbound_copy,
        inbound_copy,
        None,
        Link::ToSender {
            sender: from_id,
            from: to,
        },
        &closed,
    );
    let _ = forward.join();
}

/// One direction of a proxied connection, named by the ID of the member that opened it. The
/// ID's index is looked up at every step: a connection opened before the test told the
/// network the members' IDs must still obey the faults set later.
#[derive(Clone, Copy)]
enum Link {
    /// The opener's bytes to member `to`.
    FromSender { sender: u64, to: usize },
    /// Member `from`'s bytes back to the opener.
    ToSender { sender: u64, from: usize },
}

impl Link {
    fn ends(self, network: &Network) -> (Option<usize>, Option<usize>) {
        match self {
            Link::FromSender { sender, to } => (network.index_of(sender), Some(to)),
            Link::ToSender { sender, from } => (Some(from), network.index_of(sender)),
        }
    }
}

/// Copies `source` to `sink` under the fault of the link until either side closes, the link
/// heals after a blackhole, or the network stops.
fn pump(
    network: &std::sync::Weak<Network>,
    mut source: TcpStream,
    mut sink: TcpStream,
    first: Option<[u8; 24]>,
    link: Link,
    closed: &AtomicBool,
) {
    let _ = source.set_read_timeout(Some(Duration::from_millis(50)));
    let mut pending: Vec<u8> = first.map(|h| h.to_vec()).unwrap_or_default();
    let mut blackholed = false;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let Some(net) = network.upgrade() else {
            break;
        };
        if net.stop.load(Ordering::Relaxed) || closed.load(Ordering::Relaxed) {
            break;
        }
        let (from, to) = link.ends(&net);
        let fault = net.fault(from, to);
        drop(net);
        match fault {
            Fault::Blackhole => {
                blackholed = true;
                pending.clear();
            }
            Fault::Pass | Fault::Delay(_) if blackholed => break,
            Fault::Pass => {}
            Fault::Delay(delay) => {
                if !pending.is_empty() {
                    std::thread::sleep(delay);
                }
            }
        }
        if !pending.is_empty() && fault != Fault::Blackhole {
            if sink.write_all(&pending).is_err() {
                break;
            }
            pending.clear();
        }
        match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => pending.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    closed.store(true, Ordering::Relaxed);
    let _ = source.shutdown(Shutdown::Both);
    let _ = sink.shutdown(Shutdown::Both);
}
