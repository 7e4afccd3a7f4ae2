//! The dashboard's reports over the peer port: a member's dashboard asks each other member for
//! its status and per-second samples on a connection of its own, kept open between asks, and
//! answers the same question from the others. The peer port's own checks (cluster, sender, the
//! sender's certificate with peer TLS) stand for the caller: no client user is needed, so the
//! dashboard sees the whole cluster with auth on.

use bytes::{Bytes, BytesMut};
use futures::io::AsyncReadExt;

use super::{write_flushed, PeerTransport, ReportSource};
use crate::peer::wire::{decode_report, encode_report, encode_report_query};
use crate::tls::Stream;

/// Largest report accepted (five minutes of samples of a large cluster stay far below).
const MAX_REPORT_BYTES: usize = 16 << 20;

impl PeerTransport {
    /// Where the answers to other members' report queries come from.
    pub fn set_report_source(&self, source: ReportSource) {
        *self.report.borrow_mut() = Some(source);
    }

    /// Answers `from`'s report query: a member of the configuration only (a stranger's query is
    /// an error that closes its connection).
    pub(super) fn answer_report(&self, from: u64, first_sample: u64) -> Result<BytesMut, String> {
        if !self.peers.borrow().contains_key(&from) {
            return Err(format!(
                "a report asked for by {from:x}, which is not a member of the configuration"
            ));
        }
        let report = self
            .report
            .borrow()
            .as_ref()
            .map(|source| source(first_sample));
        let Some(report) = report else {
            return Err("a report asked for before this member's dashboard started".into());
        };
        let mut wire = BytesMut::with_capacity(report.len() + 32);
        encode_report(self.cluster_id, self.own_id, &report, &mut wire);
        Ok(wire)
    }

    /// Asks member `peer` for its report with its samples from `first_sample` on, over
    /// `connection` (dialled when `None`). On an error the caller drops the connection: an
    /// answer may be half read. The caller bounds the time it waits.
    pub async fn ask_report(
        &self,
        connection: &mut Option<Stream>,
        peer: u64,
        first_sample: u64,
    ) -> Result<Bytes, String> {
        if connection.is_none() {
            let address = self
                .peers
                .borrow()
                .get(&peer)
                .map(|outbound| outbound.address.borrow().clone());
            let Some(address) = address else {
                return Err("not a member of this member's configuration".into());
            };
            *connection = Some(self.dial(&address).await?);
        }
        let Some(stream) = connection.as_mut() else {
            return Err("no connection".into());
        };
        let mut query = BytesMut::new();
        encode_report_query(self.cluster_id, self.own_id, first_sample, &mut query);
        write_flushed(stream, &query)
            .await
            .map_err(|error| format!("asking for its report: {error}"))?;
        let mut buffer = BytesMut::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match decode_report(&mut buffer, self.cluster_id, peer, MAX_REPORT_BYTES) {
                Ok(Some(report)) => return Ok(report),
                Ok(None) => {}
                Err(error) => return Err(error.to_string()),
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return Err("it closed the connection without answering".into()),
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                Err(error) => return Err(format!("reading its report: {error}")),
            }
        }
    }
}
