//! etcd's TLS settings: one side's (`TlsSide`), those both sides share (`TlsCommon`), the
//! TLS versions and the cipher suites by their Go names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use super::*;

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

    pub(super) fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
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
    pub(super) fn provider(&self) -> Result<Arc<CryptoProvider>, TlsError> {
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
pub(super) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Go's (and etcd's) name of a TLS 1.2 suite; None for TLS 1.3's.
pub(super) fn go_suite_name(suite: &rustls::SupportedCipherSuite) -> Option<&'static str> {
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
    pub(super) fn watched_files(&self) -> Vec<PathBuf> {
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
