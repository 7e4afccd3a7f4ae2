//! auto-TLS: the self-signed certificate and key made (once) under the data directory.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

pub(super) fn self_signed(
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
pub(super) fn civil_date(time: SystemTime) -> (i32, u8, u8) {
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

pub(super) fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
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
