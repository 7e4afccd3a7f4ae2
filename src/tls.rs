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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

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

/// The TLS versions lode can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Parses etcd's `--tls-min-version`/`--tls-max-version` values. Empty is the default.
pub fn parse_tls_version(text: &str) -> Result<Option<TlsVersion>, String> {
    match text {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
        "TLS1.0" | "TLS1.1" => Err(format!(
            "{text} is not served: lode (rustls) speaks TLS1.2 and TLS1.3 only"
        )),
        other => Err(format!(
            "unexpected TLS version value {other:?} (use TLS1.2 or TLS1.3)"
        )),
    }
}

/// Settings that apply to every listener and the peer transport.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsCommon {
    /// `--cipher-suites`: Go's names of TLS 1.2 suites; empty for the defaults.
    pub cipher_suites: Vec<String>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// `--self-signed-cert-validity`, in years (etcd's default 1).
    pub self_signed_validity_years: u32,
}

impl TlsCommon {
    /// Checks the combination, as etcd does at start.
    pub fn check(&self) -> Result<(), TlsError> {
        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        if min > max {
            return Err(TlsError::Settings(
                "--tls-min-version is above --tls-max-version".into(),
            ));
        }
        if !self.cipher_suites.is_empty() && min == TlsVersion::Tls13 {
            return Err(TlsError::Settings(
                "cipher suites cannot be configured when only TLS1.3 is enabled".into(),
            ));
        }
        self.provider().map(|_| ())
    }

    fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        let mut versions = Vec::new();
        if min <= TlsVersion::Tls12 && TlsVersion::Tls12 <= max {
            versions.push(&rustls::version::TLS12);
        }
        if TlsVersion::Tls13 <= max {
            versions.push(&rustls::version::TLS13);
        }
        versions
    }

    /// ring's provider with the TLS 1.2 suites limited to `--cipher-suites`.
    fn provider(&self) -> Result<Arc<CryptoProvider>, TlsError> {
        let mut provider = ring_provider();
        if !self.cipher_suites.is_empty() {
            let mut chosen = Vec::new();
            for name in &self.cipher_suites {
                let suite = provider
                    .cipher_suites
                    .iter()
                    .find(|suite| go_suite_name(suite) == Some(name.as_str()))
                    .ok_or_else(|| {
                        TlsError::Settings(format!(
                            "unexpected TLS cipher suite {name:?} (lode serves: {})",
                            supported_suite_names().join(", ")
                        ))
                    })?;
                chosen.push(*suite);
            }
            // TLS 1.3's suites stay: Go does not let them be configured either.
            chosen.extend(
                provider
                    .cipher_suites
                    .iter()
                    .filter(|suite| suite.version() == &rustls::version::TLS13),
            );
            provider.cipher_suites = chosen;
        }
        Ok(Arc::new(provider))
    }
}

/// rustls's provider on ring. ring builds in seconds where aws-lc-rs (rustls's default) adds
/// a large C build to every clean build; ring lacks only the post-quantum key exchange
/// (X25519MLKEM768), which etcd's own Go 1.2x builds do not offer on its listeners either.
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Go's (and etcd's) name of a TLS 1.2 suite; None for TLS 1.3's.
fn go_suite_name(suite: &rustls::SupportedCipherSuite) -> Option<&'static str> {
    use rustls::CipherSuite as S;
    Some(match suite.suite() {
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        }
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        _ => return None,
    })
}

/// The `--cipher-suites` names lode serves.
pub fn supported_suite_names() -> Vec<&'static str> {
    ring_provider()
        .cipher_suites
        .iter()
        .filter_map(go_suite_name)
        .collect()
}

/// Parses `--cipher-suites` (comma-separated Go names).
pub fn parse_cipher_suites(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// One side's settings (client or peer), as etcd's `TLSInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSide {
    /// `client` or `peer`: names the flags in messages and the auto-TLS directory.
    pub name: &'static str,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The certificate this member presents when it dials (else `cert_file`).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    pub auto_tls: bool,
    pub allowed_cn: Option<String>,
    pub allowed_hostname: Option<String>,
    /// Check that a client certificate naming IP addresses or DNS names names the address
    /// the client connects from (etcd does, unless told to skip, on its peer port).
    pub verify_client_san: bool,
}

impl TlsSide {
    /// True when nothing asks for TLS on this side.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none() && !self.auto_tls
    }

    /// Checks what can be checked without reading files, as etcd does at start.
    pub fn check(&self) -> Result<(), TlsError> {
        let flag = |name: &str| {
            if self.name == "peer" {
                format!("--peer-{name}")
            } else {
                format!("--{name}")
            }
        };
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(TlsError::Settings(format!(
                "{} and {} must both be given",
                flag("cert-file"),
                flag("key-file")
            )));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(TlsError::Settings(format!(
                "{} and {} must both be given or both absent",
                flag("client-cert-file"),
                flag("client-key-file")
            )));
        }
        if self.allowed_cn.is_some() && self.allowed_hostname.is_some() {
            return Err(TlsError::Settings(format!(
                "{} and {} are mutually exclusive",
                flag("cert-allowed-cn"),
                flag("cert-allowed-hostname")
            )));
        }
        Ok(())
    }

    /// etcd's rule: a CA or client-cert-auth requires verified client certificates.
    pub fn requires_client_certificates(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }

    /// With auto-TLS and no files given: makes (or reuses) the self-signed pair under
    /// `<data_dir>/fixtures/<side>` for `hosts`, and points the settings at it.
    pub fn with_auto_certificate(
        mut self,
        data_dir: &Path,
        hosts: &[String],
        validity_years: u32,
    ) -> Result<TlsSide, TlsError> {
        if !self.auto_tls || self.cert_file.is_some() {
            if self.auto_tls {
                tracing::warn!(
                    side = self.name,
                    "auto-tls is ignored: certificate files were given"
                );
            }
            return Ok(self);
        }
        let directory = data_dir.join("fixtures").join(self.name);
        let cert = directory.join("cert.pem");
        let key = directory.join("key.pem");
        if !(cert.exists() && key.exists()) {
            self_signed(&directory, &cert, &key, hosts, validity_years)?;
            tracing::info!(cert = %cert.display(), "made a self-signed certificate (auto-tls)");
        }
        self.cert_file = Some(cert);
        self.key_file = Some(key);
        Ok(self)
    }

    /// The files whose change means reloading.
    fn watched_files(&self) -> Vec<PathBuf> {
        [
            &self.cert_file,
            &self.key_file,
            &self.client_cert_file,
            &self.client_key_file,
            &self.trusted_ca_file,
            &self.crl_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

fn self_signed(
    directory: &Path,
    cert_path: &Path,
    key_path: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(), TlsError> {
    let failed = |reason: String| TlsError::File {
        path: directory.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(directory).map_err(|source| TlsError::Read {
        path: directory.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = hosts.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| failed(format!("certificate parameters: {e}")))?;
    // As etcd's self-signed certificates: an organization, no CN.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "lode");
    // Valid from yesterday (clocks of the members differ) for the years asked.
    let (year, month, day) = civil_date(SystemTime::now() - Duration::from_secs(86_400));
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after =
        rcgen::date_time_ymd(year + validity_years.max(1) as i32, month, day.min(28));
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(|e| failed(format!("making a key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| failed(format!("signing: {e}")))?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())?;
    Ok(())
}

/// The UTC calendar date of `time` (days-to-civil, proleptic Gregorian).
fn civil_date(time: SystemTime) -> (i32, u8, u8) {
    let days = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (year_of_era + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The identity a verified certificate gives: its subject's CN (empty when it has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub common_name: String,
}

/// Reads a PEM file whole.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("not PEM certificates: {e}"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::File {
            path: path.to_path_buf(),
            reason: "holds no certificate".into(),
        });
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        reason: format!("no PEM private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in certificates(path)? {
        store.add(certificate).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(store))
}

fn revocations(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let lists = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("not PEM revocation lists: {e}"),
        })?;
    if lists.is_empty() {
        return Err(TlsError::File {
            path: path.to_path_buf(),
            reason: "holds no revocation list".into(),
        });
    }
    Ok(lists)
}

/// A certificate and its key, checked to belong together.
fn key_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let chain = certificates(cert)?;
    let key = private_key(key)?;
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, provider)?;
    Ok(Arc::new(certified))
}

/// The subject CN of a DER certificate ("" when it has none or cannot be read).
pub fn common_name(certificate: &[u8]) -> String {
    x509_parser::parse_x509_certificate(certificate)
        .ok()
        .and_then(|(_, parsed)| {
            parsed
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_string))
        })
        .unwrap_or_default()
}

/// etcd's allowed-CN / allowed-hostname check of the other side's (already verified)
/// end-entity certificate.
fn check_allowed(side: &TlsSide, certificate: &CertificateDer<'_>) -> Result<(), String> {
    if let Some(allowed) = &side.allowed_cn {
        let cn = common_name(certificate);
        if &cn != allowed {
            return Err(format!(
                "certificate CN {cn:?} is not the allowed CN {allowed:?}"
            ));
        }
    }
    if let Some(hostname) = &side.allowed_hostname {
        let name = ServerName::try_from(hostname.as_str())
            .map_err(|e| format!("allowed hostname {hostname:?}: {e}"))?;
        let end_entity = webpki::EndEntityCert::try_from(certificate)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        end_entity
            .verify_is_valid_for_subject_name(&name)
            .map_err(|_| {
                format!("certificate is not valid for the allowed hostname {hostname:?}")
            })?;
    }
    Ok(())
}

/// The IP addresses and DNS names a certificate is issued for.
fn subject_alt_names(certificate: &[u8]) -> (Vec<std::net::IpAddr>, Vec<String>) {
    use x509_parser::extensions::GeneralName;
    let mut ips = Vec::new();
    let mut names = Vec::new();
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate) else {
        return (ips, names);
    };
    if let Ok(Some(extension)) = parsed.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.push(std::net::IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    16 => ips.push(std::net::IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    (ips, names)
}

/// etcd's check of a member's certificate against the address it connects from: a
/// certificate that names IP addresses passes if one is that address; one that names DNS
/// names passes if one of them resolves to it; one that names neither passes.
async fn check_client_address(
    certificate: &CertificateDer<'_>,
    remote: std::net::IpAddr,
) -> Result<(), String> {
    let remote = match remote {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    let (ips, names) = subject_alt_names(certificate);
    if ips.contains(&remote) || (ips.is_empty() && names.is_empty()) {
        return Ok(());
    }
    let refused = || {
        Err(format!(
            "the certificate names neither {remote} nor a host that resolves to it"
        ))
    };
    let names: Vec<String> = names.into_iter().filter(|n| !n.contains('*')).collect();
    if names.is_empty() {
        return refused();
    }
    // Name resolution blocks: it runs on a thread of its own, not on the core.
    let (sender, receiver) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("lode-san-lookup".into())
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let found = names.iter().any(|name| {
                (name.as_str(), 0)
                    .to_socket_addrs()
                    .map(|mut addresses| addresses.any(|a| a.ip() == remote))
                    .unwrap_or(false)
            });
            let _ = sender.send(found);
        });
    if spawned.is_err() {
        return refused();
    }
    match receiver.await {
        Ok(true) => Ok(()),
        _ => refused(),
    }
}

/// Whether a certificate is valid for `host` (a DNS name or an IP address): `None` when it
/// names no host at all (a client-only certificate), so it can be bound to no member.
pub fn names_host(certificate: &[u8], host: &str) -> Option<bool> {
    let (ips, names) = subject_alt_names(certificate);
    if ips.is_empty() && names.is_empty() {
        return None;
    }
    let der = CertificateDer::from(certificate);
    let valid = ServerName::try_from(host)
        .ok()
        .zip(webpki::EndEntityCert::try_from(&der).ok())
        .is_some_and(|(name, end_entity)| {
            end_entity.verify_is_valid_for_subject_name(&name).is_ok()
        });
    Some(valid)
}

/// When each watched file last changed, to know when to reload.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamps(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamps {
    fn of(files: &[PathBuf]) -> Stamps {
        use std::os::unix::fs::MetadataExt;
        Stamps(
            files
                .iter()
                .map(|path| {
                    std::fs::metadata(path).ok().map(|m| {
                        (
                            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            m.len(),
                            m.ino(),
                        )
                    })
                })
                .collect(),
        )
    }
}

/// A TLS configuration built from one side's settings and files, rebuilt when one of the
/// files changed (looked at each time the configuration is asked for, that is at each
/// handshake, as etcd re-reads at each); a rebuild that fails is logged once and the last good
/// configuration kept.
struct Reloading<C> {
    side: TlsSide,
    common: TlsCommon,
    files: Vec<PathBuf>,
    build: fn(&TlsSide, &TlsCommon) -> Result<C, TlsError>,
    /// What the log says stays in use when new files do not load.
    kept: &'static str,
    state: Mutex<Loaded<C>>,
}

struct Loaded<C> {
    config: Arc<C>,
    /// The files as they were when `config` was built.
    stamps: Stamps,
    /// The files as they were when a rebuild last failed (not retried until they change).
    failed: Option<Stamps>,
}

impl<C> Reloading<C> {
    /// Checks the settings and builds the configuration once (errors here stop the start).
    fn new(
        side: TlsSide,
        common: TlsCommon,
        build: fn(&TlsSide, &TlsCommon) -> Result<C, TlsError>,
        kept: &'static str,
    ) -> Result<Reloading<C>, TlsError> {
        side.check()?;
        common.check()?;
        let files = side.watched_files();
        let stamps = Stamps::of(&files);
        let config = Arc::new(build(&side, &common)?);
        Ok(Reloading {
            side,
            common,
            files,
            build,
            kept,
            state: Mutex::new(Loaded {
                config,
                stamps,
                failed: None,
            }),
        })
    }

    /// The configuration for the next handshake, rebuilt first if a file changed since.
    fn current(&self) -> Arc<C> {
        let stamps = Stamps::of(&self.files);
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if stamps != state.stamps && state.failed.as_ref() != Some(&stamps) {
            match (self.build)(&self.side, &self.common) {
                Ok(config) => {
                    tracing::info!(side = self.side.name, "reloaded TLS certificates");
                    state.config = Arc::new(config);
                    state.stamps = stamps;
                    state.failed = None;
                }
                Err(error) => {
                    tracing::warn!(side = self.side.name, %error, "new TLS files do not load; {}", self.kept);
                    state.failed = Some(stamps);
                }
            }
        }
        state.config.clone()
    }
}

/// `handshake` within [`HANDSHAKE_TIMEOUT`].
async fn within_handshake_timeout<T>(
    handshake: impl std::future::Future<Output = std::io::Result<T>> + Unpin,
) -> Result<T, String> {
    match futures::future::select(
        handshake,
        Box::pin(glommio::timer::sleep(HANDSHAKE_TIMEOUT)),
    )
    .await
    {
        futures::future::Either::Left((result, _)) => {
            result.map_err(|e| format!("TLS handshake failed: {e}"))
        }
        futures::future::Either::Right(_) => Err("TLS handshake timed out".into()),
    }
}

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

fn server_config(side: &TlsSide, common: &TlsCommon) -> Result<ServerConfig, TlsError> {
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

fn flag_prefix(side: &TlsSide) -> &'static str {
    if side.name == "peer" {
        "--peer-"
    } else {
        "--"
    }
}

/// Serves one certificate whatever name the client asks for (etcd serves its one certificate
/// whatever the SNI).
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

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

fn client_config(side: &TlsSide, common: &TlsCommon) -> Result<ClientConfig, TlsError> {
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
struct FixedClient(Arc<rustls::sign::CertifiedKey>);

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

/// A connection as the protocols read and write it: plain TCP, or TLS over TCP as either side.
pub enum Stream {
    Plain(glommio::net::TcpStream),
    Server(Box<futures_rustls::server::TlsStream<glommio::net::TcpStream>>),
    Client(Box<futures_rustls::client::TlsStream<glommio::net::TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &glommio::net::TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Server(tls) => tls.get_ref().0,
            Stream::Client(tls) => tls.get_ref().0,
        }
    }
}

macro_rules! each_stream {
    ($self:ident, $inner:ident => $body:expr) => {
        match $self.get_mut() {
            Stream::Plain($inner) => {
                let $inner = std::pin::Pin::new($inner);
                $body
            }
            Stream::Server($inner) => {
                let $inner = std::pin::Pin::new(&mut **$inner);
                $body
            }
            Stream::Client($inner) => {
                let $inner = std::pin::Pin::new(&mut **$inner);
                $body
            }
        }
    };
}

impl futures::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_stream!(self, inner => inner.poll_read(cx, buf))
    }
}

impl futures::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_stream!(self, inner => inner.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, inner => inner.poll_flush(cx))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, inner => inner.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
