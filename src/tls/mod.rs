//! TLS for the client, metrics and native listeners and for the peer transport, with etcd's
//! settings and meanings (rustls with the ring provider; no OpenSSL).
//!
//! One [`TlsSide`] holds one side's settings (the client side: `--cert-file`, `--key-file`,
//! `--trusted-ca-file`, ...; the peer side: the `--peer-*` twins). From it, [`ServerTls`] makes
//! the configuration a listener hands to each handshake and [`ClientTls`] the one a member
//! dials with (the peer transport, and a follower forwarding to the leader's client URL).
//!
//! etcd's rules, kept here:
//! - A trusted CA file, or `client-cert-auth`, makes the listener require a client
//!   certificate signed by that CA (etcd's `RequireAndVerifyClientCert` in both cases);
//!   `crl-file` refuses the revoked ones.
//! - `allowed-cn` (the certificate's subject CN must equal it) and `allowed-hostname` (the
//!   certificate must be valid for that name) are mutually exclusive and apply to the other
//!   side's certificate in both directions, as etcd's shared base configuration does.
//! - The certificate and key are read again when their files change, at the next handshake
//!   (etcd re-reads them at every handshake); a pair that does not load is logged and the
//!   last good one keeps serving. The CA and CRL files are re-read the same way.
//! - `auto-tls` makes a self-signed certificate (ECDSA P-256, for the hosts of the listen
//!   URLs, valid `--self-signed-cert-validity` years) under `<data-dir>/fixtures/client` or
//!   `fixtures/peer`, reused while it exists, and the dialling side then does not verify the
//!   other side's certificate (etcd's `InsecureSkipVerify` for self-signed certificates).
//! - `--cipher-suites` limits TLS 1.2's suites (TLS 1.3's are not configurable, as in Go);
//!   `--tls-min-version`/`--tls-max-version` take `TLS1.2` or `TLS1.3` (rustls serves
//!   neither 1.0 nor 1.1, so those are refused rather than silently raised).
//!
//! With a client certificate verified, the certificate's CN is the client's identity
//! ([`Identity`]), as in etcd.
//!
//! The settings (`TlsSide`, `TlsCommon`, versions and cipher suites) are in `settings`;
//! `auto` makes the auto-TLS certificates; `certs` reads certificate files and what a
//! certificate says (its CN, its names, the checks on the other side's certificate);
//! `reload` rebuilds a configuration when its files change; `server` is `ServerTls`, `client`
//! `ClientTls` (with lodectl's configuration and the verifier that trusts anything), `stream`
//! the `Stream` every protocol reads and writes.

mod auto;
mod certs;
mod client;
mod reload;
mod server;
mod settings;
mod stream;

use std::path::PathBuf;

use auto::*;
pub use certs::*;
pub use client::*;
use reload::*;
pub use server::*;
pub use settings::*;
pub use stream::*;

/// What went wrong setting TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Settings(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ServerConfig};

    #[test]
    fn civil_dates_match_known_days() {
        let day = |days: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400);
        assert_eq!(civil_date(day(0)), (1970, 1, 1));
        assert_eq!(civil_date(day(11_016)), (2000, 2, 29));
        assert_eq!(civil_date(day(20_793)), (2026, 12, 6));
    }

    #[test]
    fn versions_follow_etcds_rules() {
        assert_eq!(parse_tls_version(""), Ok(None));
        assert_eq!(parse_tls_version("TLS1.3"), Ok(Some(TlsVersion::Tls13)));
        assert!(parse_tls_version("TLS1.1").unwrap_err().contains("TLS1.2"));
        assert!(parse_tls_version("tls1.2").is_err());
        let mut common = TlsCommon {
            min_version: Some(TlsVersion::Tls13),
            max_version: Some(TlsVersion::Tls12),
            ..TlsCommon::default()
        };
        assert!(common.check().is_err());
        common.max_version = None;
        assert_eq!(common.versions().len(), 1);
        common.cipher_suites = vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()];
        assert!(common
            .check()
            .unwrap_err()
            .to_string()
            .contains("only TLS1.3"));
    }

    #[test]
    fn cipher_suites_take_gos_names_and_keep_tls13s() {
        let common = TlsCommon {
            cipher_suites: parse_cipher_suites(
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            ),
            ..TlsCommon::default()
        };
        let provider = common.provider().expect("known suites");
        let tls12 = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .count();
        assert_eq!(tls12, 2);
        assert!(provider
            .cipher_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13));
        let unknown = TlsCommon {
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
            ..TlsCommon::default()
        };
        assert!(unknown
            .check()
            .unwrap_err()
            .to_string()
            .contains("TLS_RSA_WITH_RC4_128_SHA"));
    }

    #[test]
    fn a_certificate_names_the_hosts_it_was_issued_for() {
        let key = rcgen::KeyPair::generate().expect("key");
        let named = rcgen::CertificateParams::new(vec!["10.0.0.2".into(), "m2.example".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(names_host(named.der(), "10.0.0.2"), Some(true));
        assert_eq!(names_host(named.der(), "m2.example"), Some(true));
        assert_eq!(names_host(named.der(), "10.0.0.3"), Some(false));
        assert_eq!(names_host(named.der(), "m3.example"), Some(false));
        let unnamed = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(names_host(unnamed.der(), "10.0.0.2"), None);
    }

    /// A CA, certificates it signs (each with a serial), and a CRL revoking some of them,
    /// written as PEM files under `dir`.
    struct TestPki {
        dir: std::path::PathBuf,
        ca: rcgen::Certificate,
        ca_key: rcgen::KeyPair,
    }

    impl TestPki {
        fn new(dir: &Path) -> TestPki {
            let ca_key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "test CA");
            let ca = params.self_signed(&ca_key).expect("ca");
            std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
            TestPki {
                dir: dir.to_path_buf(),
                ca,
                ca_key,
            }
        }

        fn issue(&self, name: &str, cn: &str, serial: u64) -> (PathBuf, PathBuf) {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            params.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params
                .signed_by(&key, &self.ca, &self.ca_key)
                .expect("sign");
            let (cert_path, key_path) = (
                self.dir.join(format!("{name}.crt")),
                self.dir.join(format!("{name}.key")),
            );
            std::fs::write(&cert_path, cert.pem()).expect("write");
            std::fs::write(&key_path, key.serialize_pem()).expect("write");
            (cert_path, key_path)
        }

        fn revoke(&self, serials: &[u64]) -> PathBuf {
            let now = rcgen::date_time_ymd(2026, 1, 1);
            let crl = rcgen::CertificateRevocationListParams {
                this_update: now,
                next_update: rcgen::date_time_ymd(2099, 1, 1),
                crl_number: rcgen::SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: serials
                    .iter()
                    .map(|&serial| rcgen::RevokedCertParams {
                        serial_number: rcgen::SerialNumber::from(serial),
                        revocation_time: now,
                        reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            }
            .signed_by(&self.ca, &self.ca_key)
            .expect("crl");
            let path = self.dir.join("revoked.crl");
            std::fs::write(&path, crl.pem().expect("pem")).expect("write");
            path
        }
    }

    /// A whole handshake in memory between `server` and a client presenting `client` (and
    /// trusting the test CA); the server's error, if any, or the client's certificate as the
    /// server saw it.
    fn handshake(
        server: Arc<ServerConfig>,
        ca: &Path,
        client: (&Path, &Path),
    ) -> Result<Vec<u8>, String> {
        let provider = ring_provider();
        let certified = key_pair(client.0, client.1, &provider).expect("client pair");
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .expect("versions")
            .with_root_certificates(roots(ca).expect("roots"))
            .with_client_cert_resolver(Arc::new(FixedClient(certified)));
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut server = rustls::ServerConnection::new(server).expect("server");
        for _ in 0..20 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).expect("client out");
            server.read_tls(&mut wire.as_slice()).expect("server in");
            server.process_new_packets().map_err(|e| e.to_string())?;
            let mut wire = Vec::new();
            server.write_tls(&mut wire).expect("server out");
            client.read_tls(&mut wire.as_slice()).expect("client in");
            let _ = client.process_new_packets();
            if !server.is_handshaking() && !client.is_handshaking() {
                break;
            }
        }
        server
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|der| der.to_vec())
            .ok_or_else(|| "no client certificate".to_string())
    }

    #[test]
    fn revoked_client_certificates_are_refused_and_the_cn_is_the_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = TestPki::new(dir.path());
        let (server_cert, server_key) = pki.issue("server", "member", 1);
        let good = pki.issue("good", "kube-apiserver-etcd-client", 2);
        let revoked = pki.issue("revoked", "someone", 3);
        let side = TlsSide {
            name: "client",
            cert_file: Some(server_cert),
            key_file: Some(server_key),
            trusted_ca_file: Some(dir.path().join("ca.crt")),
            client_cert_auth: true,
            crl_file: Some(pki.revoke(&[3])),
            ..TlsSide::default()
        };
        let server = ServerTls::new(side.clone(), TlsCommon::default()).expect("server");
        let ca = dir.path().join("ca.crt");
        let seen = handshake(server.config(), &ca, (&good.0, &good.1)).expect("good client");
        assert_eq!(common_name(&seen), "kube-apiserver-etcd-client");
        assert!(check_allowed(&side, &CertificateDer::from(seen.clone())).is_ok());
        let refused = handshake(server.config(), &ca, (&revoked.0, &revoked.1)).unwrap_err();
        assert!(refused.contains("Revoked"), "{refused}");
        // An allowed CN refuses the others (checked after the handshake, as etcd's callback).
        let only = TlsSide {
            allowed_cn: Some("someone-else".into()),
            ..side
        };
        let refused = check_allowed(&only, &CertificateDer::from(seen)).unwrap_err();
        assert!(refused.contains("kube-apiserver-etcd-client"), "{refused}");
    }

    #[test]
    fn sides_refuse_half_pairs_and_both_allowed_checks() {
        let side = TlsSide {
            name: "peer",
            cert_file: Some("c".into()),
            ..TlsSide::default()
        };
        assert!(side
            .check()
            .unwrap_err()
            .to_string()
            .contains("--peer-key-file"));
        let side = TlsSide {
            name: "peer",
            allowed_cn: Some("a".into()),
            allowed_hostname: Some("b".into()),
            ..TlsSide::default()
        };
        assert!(side
            .check()
            .unwrap_err()
            .to_string()
            .contains("mutually exclusive"));
    }

    #[test]
    fn auto_tls_makes_a_pair_that_serves_and_names_its_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let side = TlsSide {
            name: "client",
            auto_tls: true,
            ..TlsSide::default()
        }
        .with_auto_certificate(dir.path(), &["127.0.0.1".into(), "localhost".into()], 1)
        .expect("made");
        let cert = side.cert_file.clone().expect("cert");
        assert!(cert.starts_with(dir.path().join("fixtures/client")));
        let server = ServerTls::new(side.clone(), TlsCommon::default()).expect("serves");
        let _ = server.config();
        // Reused, not remade, at the next start.
        let before = std::fs::read(&cert).expect("read");
        let again = TlsSide {
            name: "client",
            auto_tls: true,
            ..TlsSide::default()
        }
        .with_auto_certificate(dir.path(), &["127.0.0.1".into()], 1)
        .expect("reused");
        assert_eq!(
            std::fs::read(again.cert_file.expect("cert")).expect("read"),
            before
        );
        let der = certificates(&cert).expect("pem");
        assert_eq!(common_name(&der[0]), "");
    }

    #[test]
    fn a_bad_replacement_keeps_the_last_good_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let side = TlsSide {
            name: "client",
            auto_tls: true,
            ..TlsSide::default()
        }
        .with_auto_certificate(dir.path(), &["localhost".into()], 1)
        .expect("made");
        let server = ServerTls::new(side.clone(), TlsCommon::default()).expect("serves");
        let first = server.config();
        let cert = side.cert_file.expect("cert");
        std::fs::write(&cert, b"not a certificate").expect("write");
        let after = server.config();
        assert!(
            Arc::ptr_eq(&first, &after),
            "the old configuration keeps serving"
        );
        // A good pair written later is picked up.
        std::fs::remove_file(&cert).expect("rm");
        std::fs::remove_file(side.key_file.as_ref().expect("key")).expect("rm");
        let remade = TlsSide {
            name: "client",
            auto_tls: true,
            ..TlsSide::default()
        }
        .with_auto_certificate(dir.path(), &["localhost".into()], 1)
        .expect("remade");
        assert_eq!(remade.cert_file.as_ref(), Some(&cert));
        let reloaded = server.config();
        assert!(!Arc::ptr_eq(&first, &reloaded), "the new pair is served");
    }
}
