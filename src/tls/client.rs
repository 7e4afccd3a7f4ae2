//! A member's TLS when it dials (`ClientTls`), lodectl's (`command_line_client_config`), and
//! the verifier that accepts any server certificate (`Unverified`, for auto-TLS).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::*;

/// A member's TLS when it dials (the peer transport; forwarding to the leader's client URL).
pub struct ClientTls(Reloading<ClientConfig>);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("side", &self.0.side)
            .finish()
    }
}

impl ClientTls {
    pub fn new(side: TlsSide, common: TlsCommon) -> Result<Arc<ClientTls>, TlsError> {
        let kept = "the previous certificate keeps being presented";
        Ok(Arc::new(ClientTls(Reloading::new(
            side,
            common,
            client_config,
            kept,
        )?)))
    }

    /// A dialler with a configuration that is never reloaded (lodectl's): it watches no file.
    pub fn fixed(config: ClientConfig) -> Arc<ClientTls> {
        Arc::new(ClientTls(Reloading {
            side: TlsSide::default(),
            common: TlsCommon::default(),
            files: Vec::new(),
            build: client_config,
            kept: "",
            state: Mutex::new(Loaded {
                config: Arc::new(config),
                stamps: Stamps(Vec::new()),
                failed: None,
            }),
        }))
    }

    /// Completes a handshake with the server at `host` over `stream` within
    /// `HANDSHAKE_TIMEOUT`, checking its certificate against the allowed CN or hostname.
    pub async fn connect<S>(
        &self,
        host: &str,
        stream: S,
    ) -> Result<futures_rustls::client::TlsStream<S>, String>
    where
        S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host} is not a name TLS can verify: {e}"))?;
        let connector = futures_rustls::TlsConnector::from(self.0.current());
        let stream = within_handshake_timeout(connector.connect(name, stream)).await?;
        if let Some([end_entity, ..]) = stream.get_ref().1.peer_certificates() {
            check_allowed(&self.0.side, end_entity)?;
        }
        Ok(stream)
    }

    /// The configuration for blocking clients (the join query at start).
    pub fn blocking_config(&self) -> Arc<ClientConfig> {
        self.0.current()
    }
}

/// etcdctl's client TLS: servers verified by `cacert` (else the system's roots) unless
/// `skip_verify`; `cert` and `key` presented when both given.
pub fn command_line_client_config(
    cacert: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    skip_verify: bool,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(ring_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider.clone())))
    } else if let Some(ca) = cacert {
        builder.with_root_certificates(roots(ca)?)
    } else {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for certificate in found.certs {
            let _ = store.add(certificate);
        }
        if store.is_empty() {
            return Err(TlsError::Settings(
                "no CA certificates found on this system: give --cacert".into(),
            ));
        }
        builder.with_root_certificates(store)
    };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let certified = key_pair(cert, key, &provider)?;
            Ok(builder.with_client_cert_resolver(Arc::new(FixedClient(certified))))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError::Settings(
            "--cert and --key must be given together".into(),
        )),
    }
}

pub(super) fn client_config(side: &TlsSide, common: &TlsCommon) -> Result<ClientConfig, TlsError> {
    let provider = common.provider()?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&common.versions())?;
    let builder = match (&side.trusted_ca_file, side.auto_tls) {
        // Self-signed certificates cannot be verified (etcd skips verification for them).
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider.clone()))),
        (Some(ca), false) => builder.with_root_certificates(roots(ca)?),
        (None, false) => {
            return Err(TlsError::Settings(format!(
                "dialling another member over TLS needs {}trusted-ca-file (or {}auto-tls)",
                flag_prefix(side),
                flag_prefix(side)
            )))
        }
    };
    let (cert, key) = match (&side.client_cert_file, &side.client_key_file) {
        (Some(cert), Some(key)) => (Some(cert), Some(key)),
        _ => (side.cert_file.as_ref(), side.key_file.as_ref()),
    };
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let certified = key_pair(cert, key, &provider)?;
            builder.with_client_cert_resolver(Arc::new(FixedClient(certified)))
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = Vec::new();
    Ok(config)
}

/// Presents one certificate whatever the server asks.
#[derive(Debug)]
pub(super) struct FixedClient(pub(super) Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClient {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any server certificate but still checks the handshake's signatures (auto-TLS,
/// and `--insecure-skip-tls-verify` in lodectl).
#[derive(Debug)]
pub struct Unverified(pub Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
