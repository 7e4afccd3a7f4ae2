//! A listener's TLS (`ServerTls`): the rustls server configuration from one side's settings.

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use super::*;

/// A listener's TLS: the configuration handed to each handshake, rebuilt when a file changed.
pub struct ServerTls(Reloading<ServerConfig>);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("side", &self.0.side)
            .finish()
    }
}

impl ServerTls {
    /// Builds the configuration once (errors here stop the start).
    pub fn new(side: TlsSide, common: TlsCommon) -> Result<Arc<ServerTls>, TlsError> {
        let kept = "the previous certificate keeps serving";
        Ok(Arc::new(ServerTls(Reloading::new(
            side,
            common,
            server_config,
            kept,
        )?)))
    }

    /// The configuration for the next handshake: rebuilt first if a file changed since; a
    /// rebuild that fails is logged once and the previous configuration kept.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.0.current()
    }

    /// Completes a handshake on `stream` (from `remote`) within `HANDSHAKE_TIMEOUT` and checks
    /// the client's certificate against the allowed CN or hostname and, on the peer side, the
    /// address it connects from.
    pub async fn accept<S>(
        &self,
        stream: S,
        remote: Option<std::net::IpAddr>,
    ) -> Result<(futures_rustls::server::TlsStream<S>, Option<Identity>), String>
    where
        S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
    {
        let acceptor = futures_rustls::TlsAcceptor::from(self.config());
        let stream = within_handshake_timeout(acceptor.accept(stream)).await?;
        let side = &self.0.side;
        let identity = match stream.get_ref().1.peer_certificates() {
            Some([end_entity, ..]) => {
                check_allowed(side, end_entity)?;
                if let (true, Some(remote)) = (side.verify_client_san, remote) {
                    check_client_address(end_entity, remote).await?;
                }
                Some(Identity {
                    common_name: common_name(end_entity),
                })
            }
            _ => None,
        };
        Ok((stream, identity))
    }
}

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn server_config(side: &TlsSide, common: &TlsCommon) -> Result<ServerConfig, TlsError> {
    let provider = common.provider()?;
    let (Some(cert), Some(key)) = (&side.cert_file, &side.key_file) else {
        return Err(TlsError::Settings(format!(
            "{} TLS needs a certificate and key",
            side.name
        )));
    };
    let certified = key_pair(cert, key, &provider)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&common.versions())?;
    let builder = if side.requires_client_certificates() && !side.auto_tls {
        let Some(ca) = &side.trusted_ca_file else {
            return Err(TlsError::Settings(format!(
                "{}client-cert-auth needs {}trusted-ca-file",
                flag_prefix(side),
                flag_prefix(side)
            )));
        };
        let mut verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider);
        if let Some(crl) = &side.crl_file {
            verifier = verifier.with_crls(revocations(crl)?);
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError::Settings(format!("client verification: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(Fixed(certified)));
    // gRPC clients insist on ALPN h2; HTTP/1 clients (curl, the gateway) may ask http/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

pub(super) fn flag_prefix(side: &TlsSide) -> &'static str {
    if side.name == "peer" {
        "--peer-"
    } else {
        "--"
    }
}

/// Serves one certificate whatever name the client asks for (etcd serves its one certificate
/// whatever the SNI).
#[derive(Debug)]
pub(super) struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}
