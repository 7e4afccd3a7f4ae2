//! lock and elect: etcd's concurrency recipes, each over a session (a lease kept alive in the
//! background) and held until interrupted.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lode::api::native::{
    CoordinationRequest, CoordinationResponse, LeaseAnswer, LeaseQuery, Request, Response,
};
use lode::client::Client;
use lode::lease::{LeaseOutcome, LeaseRequest};
use lode::mvcc::request::{LeaseResponse, WriteRequest, WriteResponse};

use crate::common::{connect, run_session};
use crate::{Cli, Command};

/// `lodectl lock`.
pub(crate) fn run_lock(cli: &Cli) -> ExitCode {
    let Command::Lock { name, command, ttl } = &cli.command else {
        unreachable!("dispatched by main");
    };
    let (endpoints, name, command, ttl) =
        (cli.endpoints.clone(), name.clone(), command.clone(), *ttl);
    run_session(move |signals| async move { lock(&endpoints, name, command, ttl, signals).await })
}

/// `lodectl elect`.
pub(crate) fn run_elect(cli: &Cli) -> ExitCode {
    let Command::Elect {
        name,
        proposal,
        listen,
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let (endpoints, name, proposal, listen) = (
        cli.endpoints.clone(),
        name.clone(),
        proposal.clone(),
        *listen,
    );
    match (&proposal, listen) {
        (None, false) => {
            eprintln!("Error: no proposal argument but -l not set");
            return ExitCode::from(1);
        }
        (Some(_), true) => {
            eprintln!("Error: proposal given but -l is set");
            return ExitCode::from(1);
        }
        _ => {}
    }
    run_session(move |signals| async move { elect(&endpoints, name, proposal, signals).await })
}

/// A lease kept alive in the background for a lock or election (etcd's concurrency session).
struct Session {
    client: Rc<Client>,
    lease: i64,
    lost: Rc<Cell<bool>>,
    keeper: glommio::task::JoinHandle<()>,
}

impl Session {
    async fn open(client: Rc<Client>, ttl: i64) -> Result<Session, String> {
        let grant = Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl }));
        let (lease, ttl) = match client.request(&grant).await.map_err(|e| e.to_string())? {
            Response::Write(WriteResponse::Lease(LeaseResponse {
                outcome: LeaseOutcome::Granted { id, ttl },
                ..
            })) => (id, ttl),
            other => return Err(format!("unexpected response {other:?}")),
        };
        let lost = Rc::new(Cell::new(false));
        let (keeper_client, keeper_lost) = (client.clone(), lost.clone());
        let keeper = glommio::spawn_local(async move {
            let period = std::time::Duration::from_secs_f64((ttl as f64 / 3.0).max(0.5));
            let full = std::time::Duration::from_secs(ttl.max(1) as u64);
            let mut renewed_at = std::time::Instant::now();
            loop {
                glommio::timer::sleep(period).await;
                let sent = std::time::Instant::now();
                let renewed = keeper_client
                    .request(&Request::Lease(LeaseQuery::KeepAlive(lease)))
                    .await;
                match renewed {
                    Ok(Response::Lease(LeaseAnswer::KeepAlive { ttl, .. })) if ttl > 0 => {
                        renewed_at = sent;
                    }
                    // Failed renewals (no leader, a timeout) are retried, but once a whole
                    // TTL passed since the last one the cluster may have expired the lease:
                    // the session is lost, as etcd's client decides.
                    Err(lode::client::ClientError::Server { .. })
                        if renewed_at.elapsed() < full => {}
                    _ => {
                        keeper_lost.set(true);
                        return;
                    }
                }
            }
        })
        .detach();
        Ok(Session {
            client,
            lease,
            lost,
            keeper,
        })
    }

    /// Sends a request that waits (Lock, Campaign) and its answer; when it fails, or a signal
    /// arrives first, the session ends: revoking its lease takes this contender's key out of
    /// the queue.
    async fn wait(
        self,
        request: &Request,
        signals: &AtomicBool,
    ) -> Result<(Session, Response), String> {
        match unless_signalled(&self.client, request, signals).await {
            Some(Ok(response)) => Ok((self, response)),
            Some(Err(error)) => {
                self.close().await;
                Err(error)
            }
            None => {
                self.close().await;
                Err("context canceled".into())
            }
        }
    }

    /// Holds what the session won until a signal arrives, then sends `release` (Unlock,
    /// Resign), ends the session and answers exit status 0; if the lease is lost first, fails
    /// with `lost`.
    async fn hold(self, release: Request, signals: &AtomicBool, lost: &str) -> Result<u8, String> {
        if !signal_or_lost(signals, &self.lost).await {
            return Err(lost.into());
        }
        let _ = self.client.request(&release).await;
        self.close().await;
        Ok(0)
    }

    /// Ends the session: its lease is revoked (deleting any key still held with it).
    async fn close(self) {
        self.keeper.cancel();
        let revoke = Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id: self.lease }));
        let _ = self.client.request(&revoke).await;
    }
}

/// Waits until a signal arrives (true) or `lost` is set (false).
async fn signal_or_lost(signals: &AtomicBool, lost: &Cell<bool>) -> bool {
    loop {
        if signals.load(Ordering::Relaxed) {
            return true;
        }
        if lost.get() {
            return false;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends `request`, unless a signal arrives first (`None`).
async fn unless_signalled(
    client: &Client,
    request: &Request,
    signals: &AtomicBool,
) -> Option<Result<Response, String>> {
    let answer = client.request(request);
    let signalled = async {
        while !signals.load(Ordering::Relaxed) {
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    match futures::future::select(Box::pin(answer), Box::pin(signalled)).await {
        futures::future::Either::Left((answer, _)) => Some(answer.map_err(|e| e.to_string())),
        futures::future::Either::Right(_) => None,
    }
}

/// `lodectl lock`.
async fn lock(
    endpoints: &[String],
    name: String,
    command: Vec<String>,
    ttl: i64,
    signals: Arc<AtomicBool>,
) -> Result<u8, String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let client = Rc::new(client);
    let session = Session::open(client.clone(), ttl).await?;
    let request = Request::Coordination(CoordinationRequest::Lock {
        name: bytes::Bytes::from(name.into_bytes()),
        lease: session.lease,
    });
    let (session, answer) = session.wait(&request, &signals).await?;
    let (header, key) = match answer {
        Response::Coordination(CoordinationResponse::Locked { header, key }) => (header, key),
        other => {
            session.close().await;
            return Err(format!("unexpected response {other:?}"));
        }
    };
    let unlock = Request::Coordination(CoordinationRequest::Unlock { key: key.clone() });
    if let Some((program, arguments)) = command.split_first() {
        let mut child = std::process::Command::new(program)
            .args(arguments)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", header.revision.to_string())
            .spawn()
            .map_err(|e| format!("running {program}: {e}"))?;
        // Polled, not waited on: the session's keep-alives run on this thread.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => glommio::timer::sleep(std::time::Duration::from_millis(20)).await,
                Err(error) => return Err(format!("waiting for {program}: {error}")),
            }
        };
        let _ = client.request(&unlock).await;
        session.close().await;
        return match status.code() {
            Some(0) => Ok(0),
            Some(code) => {
                eprintln!("Error: exit status {code}");
                Ok(code.clamp(1, 255) as u8)
            }
            None => Err("the command was killed by a signal".into()),
        };
    }
    print!("{}\n\n", String::from_utf8_lossy(&key));
    let _ = std::io::stdout().flush();
    session.hold(unlock, &signals, "session expired").await
}

/// `lodectl elect`: campaigns with `proposal`, or (none) observes.
async fn elect(
    endpoints: &[String],
    name: String,
    proposal: Option<String>,
    signals: Arc<AtomicBool>,
) -> Result<u8, String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let name = bytes::Bytes::from(name.into_bytes());
    let Some(proposal) = proposal else {
        let mut observed = client.observe(name).await.map_err(|e| e.to_string())?;
        loop {
            let next = observed.next();
            let signalled = async {
                while !signals.load(Ordering::Relaxed) {
                    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                }
            };
            match futures::future::select(Box::pin(next), Box::pin(signalled)).await {
                futures::future::Either::Left((Ok((_, kv)), _)) => {
                    print!(
                        "{}\n{}\n",
                        String::from_utf8_lossy(&kv.key),
                        String::from_utf8_lossy(&kv.value)
                    );
                    let _ = std::io::stdout().flush();
                }
                futures::future::Either::Left((Err(error), _)) => {
                    return Err(format!("elect: observer lost ({error})"))
                }
                futures::future::Either::Right(_) => return Ok(0),
            }
        }
    };
    let client = Rc::new(client);
    let session = Session::open(client.clone(), 60).await?;
    let request = Request::Coordination(CoordinationRequest::Campaign {
        name,
        lease: session.lease,
        value: bytes::Bytes::from(proposal.into_bytes()),
    });
    let (session, answer) = session.wait(&request, &signals).await?;
    let leader = match answer {
        Response::Coordination(CoordinationResponse::Campaigned { leader, .. }) => leader,
        other => {
            session.close().await;
            return Err(format!("unexpected response {other:?}"));
        }
    };
    let current = Request::Coordination(CoordinationRequest::Leader {
        name: leader.name.clone(),
    });
    if let Ok(Response::Coordination(CoordinationResponse::Leader { kv, .. })) =
        client.request(&current).await
    {
        print!(
            "{}\n{}\n",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        );
        let _ = std::io::stdout().flush();
    }
    let resign = Request::Coordination(CoordinationRequest::Resign { leader });
    session
        .hold(resign, &signals, "elect: session expired")
        .await
}
