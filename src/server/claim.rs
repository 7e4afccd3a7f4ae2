//! Listening addresses owned by exactly one process.
//!
//! Every core binds each client address with SO_REUSEPORT so the kernel spreads connections
//! over the cores. The same option would let a second process (another lode started with the
//! same defaults) bind the address too and silently receive a share of the connections. Before
//! any core binds, the process therefore *claims* each address:
//!
//! 1. it binds an abstract Unix socket named after the address (`lode/listen/<ip>:<port>`).
//!    Abstract names are unique within the network namespace and vanish the instant their
//!    holder dies (they are never handed to io_uring), so two lodes can never both hold one;
//! 2. it binds the TCP address itself without SO_REUSEPORT, which fails while anything
//!    (etcd, another program, a lode still dying) listens there, then lets it go.
//!
//! The claim sockets are held until the process exits. Invariant: while a `ListenClaims`
//! lives, no other lode process on this host listens on any of its addresses, and none did
//! when it was taken.
//!
//! A killed lode's listening sockets outlive it for a moment (io_uring releases the files
//! its in-flight accepts hold from a kernel worker after the process is gone), so a
//! supervisor that restarts at once would see "Address already in use". Claims wait for a
//! held address up to a bounded time, saying once that they wait, and then fail clearly.

use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

/// How long a start waits for an address held by another process before giving up.
pub const DEFAULT_CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Pause between two attempts on a held address.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Why an address could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "cannot listen on {address} ({what}): another lode process on this host listens there \
         (still after waiting {waited:?}); give each member its own addresses"
    )]
    HeldByLode {
        address: SocketAddr,
        what: String,
        waited: Duration,
    },
    #[error(
        "cannot listen on {address} ({what}): address already in use by another process \
         (still after waiting {waited:?})"
    )]
    InUse {
        address: SocketAddr,
        what: String,
        waited: Duration,
    },
    #[error("cannot listen on {address} ({what}): {source}")]
    Io {
        address: SocketAddr,
        what: String,
        source: std::io::Error,
    },
}

/// One address to claim and what it is for (named in errors and logs).
#[derive(Clone, Debug)]
pub struct Wanted {
    pub address: SocketAddr,
    pub what: String,
}

/// The claims of one process; dropping them releases the addresses to other lodes.
#[derive(Debug)]
pub struct ListenClaims {
    _held: Vec<UnixListener>,
}

/// The abstract socket name that stands for `address`.
fn claim_name(address: &SocketAddr) -> String {
    format!("lode/listen/{address}")
}

/// Whether another lode holds a claim that overlaps `address` without being the same: a
/// wildcard address (0.0.0.0, ::) and any other address on the same port. Read from the
/// abstract socket names in /proc/net/unix (`@lode/listen/...`); unreadable: no overlap seen.
fn overlapping_claim(address: &SocketAddr) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let port = format!(":{}", address.port());
    let mine = address.to_string();
    table.lines().skip(1).any(|line| {
        let Some(claimed) = line
            .split_whitespace()
            .nth(7)
            .and_then(|path| path.strip_prefix("@lode/listen/"))
        else {
            return false;
        };
        let Some(ip) = claimed.strip_suffix(&port) else {
            return false;
        };
        claimed != mine && (address.ip().is_unspecified() || ip == "0.0.0.0" || ip == "[::]")
    })
}

/// Claims every address in `wanted`, waiting up to `wait` in all for addresses held by others;
/// `on_wait` is called once for each address the claim has to wait for.
pub fn claim(
    wanted: &[Wanted],
    wait: Duration,
    mut on_wait: impl FnMut(&Wanted),
) -> Result<ListenClaims, ClaimError> {
    let started = Instant::now();
    let deadline = started + wait;
    let mut held = Vec::with_capacity(wanted.len());
    for want in wanted {
        let mut told = false;
        let mut pause = |held_by_lode: bool| -> Result<(), ClaimError> {
            if Instant::now() >= deadline {
                let waited = started.elapsed();
                let (address, what) = (want.address, want.what.clone());
                return Err(if held_by_lode {
                    ClaimError::HeldByLode {
                        address,
                        what,
                        waited,
                    }
                } else {
                    ClaimError::InUse {
                        address,
                        what,
                        waited,
                    }
                });
            }
            if !told {
                told = true;
                on_wait(want);
            }
            std::thread::sleep(RETRY_PAUSE);
            Ok(())
        };
        let io_error = |source| ClaimError::Io {
            address: want.address,
            what: want.what.clone(),
            source,
        };
        let name = std::os::unix::net::SocketAddr::from_abstract_name(claim_name(&want.address))
            .map_err(io_error)?;
        let claimed = loop {
            match UnixListener::bind_addr(&name) {
                // Checked after taking the name: two lodes racing for overlapping addresses
                // each see the other and neither goes on, so none ever shares.
                Ok(listener) if overlapping_claim(&want.address) => {
                    drop(listener);
                    pause(true)?;
                }
                Ok(listener) => break listener,
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => pause(true)?,
                Err(error) => return Err(io_error(error)),
            }
        };
        loop {
            match std::net::TcpListener::bind(want.address) {
                Ok(_probe) => break,
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => pause(false)?,
                Err(error) => return Err(io_error(error)),
            }
        }
        held.push(claimed);
    }
    Ok(ListenClaims { _held: held })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(address: SocketAddr) -> Vec<Wanted> {
        vec![Wanted {
            address,
            what: "test".into(),
        }]
    }

    fn free_address() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
    }

    #[test]
    fn a_second_claim_on_the_same_address_fails_while_the_first_is_held() {
        let address = free_address();
        let first = claim(&wanted(address), Duration::ZERO, |_| {}).expect("first claim");
        let mut waited_for = 0;
        let second = claim(&wanted(address), Duration::from_millis(60), |_| {
            waited_for += 1
        });
        assert!(
            matches!(second, Err(ClaimError::HeldByLode { .. })),
            "{second:?}"
        );
        assert_eq!(waited_for, 1, "told once that it waits");
        drop(first);
        claim(&wanted(address), Duration::ZERO, |_| {}).expect("free again once released");
    }

    #[test]
    fn a_wildcard_and_a_specific_address_on_one_port_are_never_both_claimed() {
        let specific = free_address();
        let wildcard: SocketAddr = format!("0.0.0.0:{}", specific.port())
            .parse()
            .expect("addr");
        let held = claim(&wanted(specific), Duration::ZERO, |_| {}).expect("specific");
        let result = claim(&wanted(wildcard), Duration::from_millis(40), |_| {});
        assert!(
            matches!(result, Err(ClaimError::HeldByLode { .. })),
            "{result:?}"
        );
        drop(held);
        let held = claim(&wanted(wildcard), Duration::ZERO, |_| {}).expect("wildcard");
        let result = claim(&wanted(specific), Duration::from_millis(40), |_| {});
        assert!(
            matches!(result, Err(ClaimError::HeldByLode { .. })),
            "{result:?}"
        );
        drop(held);
    }

    #[test]
    fn an_address_another_program_listens_on_is_refused_after_the_wait() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = other.local_addr().expect("address");
        let result = claim(&wanted(address), Duration::from_millis(40), |_| {});
        assert!(
            matches!(result, Err(ClaimError::InUse { .. })),
            "{result:?}"
        );
        let message = result.expect_err("refused").to_string();
        assert!(message.contains("already in use"), "{message}");
    }

    #[test]
    fn a_claim_waits_for_an_address_that_is_released_meanwhile() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = other.local_addr().expect("address");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(other);
        });
        claim(&wanted(address), Duration::from_secs(30), |_| {}).expect("claimed once free");
        release.join().expect("released");
    }
}
