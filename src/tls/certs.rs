//! Certificate files (PEM certificates, keys, CAs, CRLs) and what a certificate says: its
//! CN (`Identity`), its names, and the allowed-CN/hostname and client-address checks.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;

use super::*;

/// The identity a verified certificate gives: its subject's CN (empty when it has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub common_name: String,
}

/// Reads a PEM file whole.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

pub(super) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        reason: format!("no PEM private key: {e}"),
    })
}

pub(super) fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in certificates(path)? {
        store.add(certificate).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(store))
}

pub(super) fn revocations(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
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
pub(super) fn key_pair(
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
pub(super) fn check_allowed(
    side: &TlsSide,
    certificate: &CertificateDer<'_>,
) -> Result<(), String> {
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
pub(super) fn subject_alt_names(certificate: &[u8]) -> (Vec<std::net::IpAddr>, Vec<String>) {
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
pub(super) async fn check_client_address(
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
