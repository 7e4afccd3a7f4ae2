//! etcdctl's global flag values as lodectl reads them: Go durations (`5s`, `1m30s`, `500ms`)
//! and Go's boolean spellings, the TLS and authentication flags lode cannot honour yet, and
//! `ETCDCTL_API`.

use std::time::Duration;

/// Why a flag value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// Not a Go duration.
    #[error("invalid duration {0:?} (a Go duration such as 5s, 1m30s or 500ms)")]
    Duration(String),
    /// A Go duration without a unit (Go's "missing unit in duration").
    #[error("missing unit in duration {0:?} (a Go duration such as 5s, 1m30s or 500ms)")]
    MissingUnit(String),
    /// A duration that must be positive is not.
    #[error("{0:?} is not a positive duration")]
    NotPositive(String),
    /// Not one of Go's boolean spellings.
    #[error("invalid boolean {0:?} (true or false)")]
    Bool(String),
    /// A security setting lodectl cannot honour, or an incomplete one.
    #[error("{0}")]
    Unsupported(String),
    /// `ETCDCTL_API` asks for another API.
    #[error("{0}")]
    Api(String),
}

/// Parses a Go duration (`crate::duration`), with lodectl's errors.
pub fn parse_go_duration(text: &str) -> Result<Duration, FlagError> {
    crate::duration::parse_go_duration(text).map_err(|error| match error {
        crate::duration::DurationError::Invalid(text) => FlagError::Duration(text),
        crate::duration::DurationError::MissingUnit(text) => FlagError::MissingUnit(text),
        crate::duration::DurationError::Negative(text) => FlagError::NotPositive(text),
    })
}

/// `--command-timeout`: a Go duration, or (as lodectl always took it) a bare number of
/// seconds; it must be positive.
pub fn parse_command_timeout(text: &str) -> Result<Duration, FlagError> {
    let duration = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e12 => {
            Duration::from_secs_f64(seconds)
        }
        Ok(_) => return Err(FlagError::NotPositive(text.to_string())),
        Err(_) => parse_go_duration(text)?,
    };
    if duration.is_zero() {
        return Err(FlagError::NotPositive(text.to_string()));
    }
    Ok(duration)
}

/// A positive Go duration (`--dial-timeout`).
pub fn parse_positive_duration(text: &str) -> Result<Duration, FlagError> {
    let duration = parse_go_duration(text)?;
    if duration.is_zero() {
        return Err(FlagError::NotPositive(text.to_string()));
    }
    Ok(duration)
}

/// Go's boolean spellings (`strconv.ParseBool`), as pflag takes `--flag=value`.
pub fn parse_go_bool(text: &str) -> Result<bool, FlagError> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError::Bool(text.to_string())),
    }
}

/// A duration as Go's `time.Duration.String` writes it: `0s`, `850ns`, `1.5µs`, `12.345ms`,
/// `2.5s`, `1m30s`, `1h2m3.5s`.
pub fn go_duration_string(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    // Fractions as Go prints them: every digit, trailing zeros dropped.
    fn fraction(value: u128, digits: u32) -> String {
        let scale = 10u128.pow(digits);
        let (whole, part) = (value / scale, value % scale);
        if part == 0 {
            return whole.to_string();
        }
        let part = format!("{part:0width$}", width = digits as usize);
        format!("{whole}.{}", part.trim_end_matches('0'))
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 6));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = nanos % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fraction(seconds, 9)));
    out
}

/// The TLS and authentication settings of etcdctl's global flags (or of make-mirror's
/// `--dest-*` flags), as given.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `--cacert`.
    pub cacert: Option<String>,
    /// `--cert`.
    pub cert: Option<String>,
    /// `--key`.
    pub key: Option<String>,
    /// `--insecure-transport` (etcdctl's default: true).
    pub insecure_transport: bool,
    /// `--insecure-skip-tls-verify` (default false).
    pub insecure_skip_tls_verify: bool,
    /// `--user`.
    pub user: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// `--discovery-srv`.
    pub discovery_srv: Option<String>,
}

impl Security {
    /// Refuses every setting lodectl cannot honour: DNS discovery; a certificate without its
    /// key; a password without a user. `prefix` is the flags' prefix (`""` or `"dest-"`).
    pub fn check(&self, prefix: &str) -> Result<(), FlagError> {
        if self.discovery_srv.is_some() {
            return Err(FlagError::Unsupported(format!(
                "--{prefix}discovery-srv was given, and lodectl does not look endpoints up in \
                 DNS; give --endpoints"
            )));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(FlagError::Unsupported(format!(
                "--{prefix}password was given without --{prefix}user"
            )));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(FlagError::Unsupported(format!(
                "--{prefix}cert and --{prefix}key must be given together"
            )));
        }
        Ok(())
    }

    /// The user and password to authenticate as, as etcdctl reads them: `--user name:password`,
    /// or `--user name` with `--password` (the whole `--user` is then the name); `None` for
    /// the password when it is to be asked for.
    pub fn login(&self) -> Option<(String, Option<String>)> {
        let user = self.user.as_ref()?;
        if let Some(password) = &self.password {
            return Some((user.clone(), Some(password.clone())));
        }
        match user.split_once(':') {
            Some((name, password)) => Some((name.to_string(), Some(password.to_string()))),
            None => Some((user.clone(), None)),
        }
    }

    /// Whether endpoints given without a scheme are dialled over TLS: as etcdctl, when any TLS
    /// setting is given or `--insecure-transport=false` (an `https://` endpoint always is,
    /// an `http://` one never).
    pub fn tls_by_default(&self) -> bool {
        self.cacert.is_some()
            || self.cert.is_some()
            || self.insecure_skip_tls_verify
            || !self.insecure_transport
    }
}

/// What `ETCDCTL_API` allows: unset, empty or `3`; `2` is refused (lode serves etcd's v3 API
/// only), anything else is etcdctl's "unsupported API version".
pub fn check_api_version(value: Option<&str>) -> Result<(), FlagError> {
    match value {
        None | Some("") | Some("3") => Ok(()),
        Some("2") => Err(FlagError::Api(
            "ETCDCTL_API=2 is not supported: lode serves etcd's v3 API only (unset ETCDCTL_API or set it to 3)"
                .into(),
        )),
        Some(other) => Err(FlagError::Api(format!("unsupported API version: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_with_lodectls_errors() {
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(matches!(
            parse_go_duration("5"),
            Err(FlagError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_go_duration("-1s"),
            Err(FlagError::NotPositive(_))
        ));
        assert!(matches!(
            parse_go_duration("5x"),
            Err(FlagError::Duration(_))
        ));
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration_string(Duration::ZERO), "0s");
        assert_eq!(go_duration_string(Duration::from_nanos(850)), "850ns");
        assert_eq!(go_duration_string(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(
            go_duration_string(Duration::from_nanos(12_345_678)),
            "12.345678ms"
        );
        assert_eq!(go_duration_string(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration_string(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration_string(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn tls_settings_choose_tls_and_auth_is_refused() {
        let plain = Security {
            insecure_transport: true,
            ..Security::default()
        };
        assert!(plain.check("").is_ok());
        assert!(!plain.tls_by_default());
        let half = Security {
            cert: Some("c.pem".into()),
            ..plain.clone()
        };
        assert!(half.check("").unwrap_err().to_string().contains("--key"));
        let pair = Security {
            key: Some("k.pem".into()),
            ..half.clone()
        };
        assert!(pair.check("").is_ok() && pair.tls_by_default());
        let secure = Security {
            insecure_transport: false,
            ..plain.clone()
        };
        assert!(secure.check("dest-").is_ok() && secure.tls_by_default());
        let user = Security {
            user: Some("root".into()),
            ..plain.clone()
        };
        assert!(user.check("dest-").is_ok());
        assert_eq!(user.login(), Some(("root".into(), None)), "asked for");
        let with_password = Security {
            user: Some("root:se:cret".into()),
            ..plain.clone()
        };
        assert_eq!(
            with_password.login(),
            Some(("root".into(), Some("se:cret".into())))
        );
        let separate = Security {
            user: Some("a:b".into()),
            password: Some("pw".into()),
            ..plain.clone()
        };
        assert_eq!(separate.login(), Some(("a:b".into(), Some("pw".into()))));
        let orphan = Security {
            password: Some("pw".into()),
            ..plain.clone()
        };
        assert!(orphan
            .check("dest-")
            .unwrap_err()
            .to_string()
            .contains("--dest-password was given without --dest-user"));
        assert_eq!(plain.login(), None);
        assert!(check_api_version(Some("3")).is_ok());
        assert!(check_api_version(None).is_ok());
        assert!(check_api_version(Some("2")).is_err());
        assert!(check_api_version(Some("4")).is_err());
    }
}
