//! make-mirror: copies the keys under a prefix to another cluster at one revision, then
//! applies every later change.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use lode::api::native::{Request, Response};
use lode::ctl::flags;
use lode::mvcc::request::WriteRequest;

use crate::common::{connect, connect_with, deadline, fail, on_executor, Dialer, DEST_DIALER};
use crate::{Cli, Command};

/// `lodectl make-mirror`.
pub(crate) fn run(cli: &Cli) -> ExitCode {
    let Command::MakeMirror {
        destination,
        prefix,
        dest_prefix,
        no_dest_prefix,
        dest_cacert,
        dest_cert,
        dest_key,
        dest_insecure_transport,
        dest_user,
        dest_password,
    } = &cli.command
    else {
        unreachable!("dispatched by main");
    };
    let security = flags::Security {
        cacert: dest_cacert.clone(),
        cert: dest_cert.clone(),
        key: dest_key.clone(),
        insecure_transport: *dest_insecure_transport,
        insecure_skip_tls_verify: false,
        user: dest_user.clone(),
        password: dest_password.clone(),
        discovery_srv: None,
    };
    if let Err(error) = security.check("dest-") {
        return fail(&error.to_string());
    }
    let _ = DEST_DIALER.set(Dialer::new(security));
    let Some(destination) = destination.clone() else {
        return fail("make-mirror takes one destination argument");
    };
    let dest_prefix =
        match (dest_prefix, no_dest_prefix) {
            (Some(_), true) => return fail(
                "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
            ),
            (Some(dest), false) => dest.clone(),
            (None, true) => String::new(),
            (None, false) => prefix.clone(),
        };
    let mirror = Mirror {
        source: cli.endpoints.clone(),
        destination,
        prefix: prefix.clone(),
        dest_prefix,
        command_timeout: cli.command_timeout,
    };
    match on_executor(move || async move { make_mirror(mirror).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// What `make-mirror` mirrors where.
struct Mirror {
    source: Vec<String>,
    destination: String,
    prefix: String,
    dest_prefix: String,
    command_timeout: Duration,
}

impl Mirror {
    /// A source key's name in the destination: the prefix replaced by the destination's.
    fn destination_key(&self, key: &[u8]) -> bytes::Bytes {
        let rest = key.strip_prefix(self.prefix.as_bytes()).unwrap_or(key);
        let mut out = self.dest_prefix.as_bytes().to_vec();
        out.extend_from_slice(rest);
        bytes::Bytes::from(out)
    }

    /// The source range: the prefix's keys, or every key when it is empty.
    fn range(&self) -> (bytes::Bytes, bytes::Bytes) {
        if self.prefix.is_empty() {
            (
                bytes::Bytes::from_static(&[0]),
                bytes::Bytes::from_static(&[0]),
            )
        } else {
            let key = bytes::Bytes::from(self.prefix.clone().into_bytes());
            let end = lode::mvcc::kv::prefix_range_end(&key);
            (key, end)
        }
    }
}

/// `make-mirror`: etcdctl's syncer. The keys at one revision are put to the destination in
/// pages of 1,000; then a watch from the next revision applies each revision's changes as
/// one txn. Every 30 seconds the number of keys synced so far is printed.
async fn make_mirror(mirror: Mirror) -> Result<(), String> {
    use std::io::Write as _;
    let dest_dialer = DEST_DIALER.get_or_init(|| Dialer::new(flags::Security::default()));
    let (destination, _) =
        connect_with(std::slice::from_ref(&mirror.destination), dest_dialer).await?;
    let (source, _) = connect(&mirror.source).await?;
    let total = Rc::new(Cell::new(0u64));
    let printed = total.clone();
    let _printer = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_secs(30)).await;
            println!("{}", printed.get());
            let _ = std::io::stdout().flush();
        }
    })
    .detach();
    let write = |request: WriteRequest| {
        let destination = &destination;
        async move {
            deadline(mirror.command_timeout, async {
                destination
                    .request(&Request::Write(request))
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
        }
    };

    // The revision to copy at: the header of a read of the prefix (etcdctl reads "foo" when
    // mirroring everything).
    let probe = if mirror.prefix.is_empty() {
        "foo".to_string()
    } else {
        mirror.prefix.clone()
    };
    let probe = Request::Range(lode::mvcc::request::RangeRequest {
        key: bytes::Bytes::from(probe.into_bytes()),
        ..Default::default()
    });
    let revision = match source.request(&probe).await.map_err(|e| e.to_string())? {
        Response::Range(answer) => answer.header.revision,
        other => return Err(format!("unexpected response {other:?}")),
    };
    let (mut key, range_end) = mirror.range();
    loop {
        let page = Request::Range(lode::mvcc::request::RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            limit: 1_000,
            revision,
            ..Default::default()
        });
        let page = match source.request(&page).await.map_err(|e| e.to_string())? {
            Response::Range(answer) => answer,
            other => return Err(format!("unexpected response {other:?}")),
        };
        for kv in &page.kvs {
            write(WriteRequest::Put(lode::mvcc::request::PutRequest {
                key: mirror.destination_key(&kv.key),
                value: kv.value.clone(),
                ..Default::default()
            }))
            .await?;
            total.set(total.get() + 1);
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                let mut next = last.key.to_vec();
                next.push(0);
                key = bytes::Bytes::from(next);
            }
            _ => break,
        }
    }

    let (key, range_end) = mirror.range();
    let mut stream = source.watch();
    stream
        .send(lode::api::native::WatchRequest::Create(
            lode::watch::stream::CreateWatch {
                key,
                range_end,
                start_revision: revision + 1,
                ..Default::default()
            },
        ))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let (_, response) = stream.next().await.map_err(|e| e.to_string())?;
        if response.compact_revision != 0 {
            return Err("etcdserver: mvcc: required revision has been compacted".into());
        }
        if response.canceled {
            return Err(format!(
                "watch is canceled by the server: {}",
                response.cancel_reason
            ));
        }
        // One txn per revision, as etcdctl's mirror applies them.
        let mut ops = Vec::new();
        let mut last_revision = 0;
        for event in &response.events {
            if last_revision != 0 && event.kv.mod_revision > last_revision {
                let txn = lode::mvcc::request::TxnRequest {
                    success: std::mem::take(&mut ops),
                    ..Default::default()
                };
                write(WriteRequest::Txn(txn)).await?;
            }
            last_revision = event.kv.mod_revision;
            let key = mirror.destination_key(&event.kv.key);
            ops.push(match event.kind {
                lode::watch::EventKind::Put => {
                    lode::mvcc::request::RequestOp::Put(lode::mvcc::request::PutRequest {
                        key,
                        value: event.kv.value.clone(),
                        ..Default::default()
                    })
                }
                lode::watch::EventKind::Delete => lode::mvcc::request::RequestOp::DeleteRange(
                    lode::mvcc::request::DeleteRangeRequest {
                        key,
                        ..Default::default()
                    },
                ),
            });
            total.set(total.get() + 1);
        }
        if !ops.is_empty() {
            let txn = lode::mvcc::request::TxnRequest {
                success: ops,
                ..Default::default()
            };
            write(WriteRequest::Txn(txn)).await?;
        }
    }
}
