//! Go's duration notation (`time.ParseDuration`), as etcd's flags and etcdctl's take it:
//! `10m`, `1h30m`, `100ms`, `1.5s`. Pure; one parser for the server and lodectl.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go's notation.
    #[error("invalid duration {0:?} (a Go duration such as 5s, 1m30s or 500ms)")]
    Invalid(String),
    /// A number without a unit (Go's "missing unit in duration").
    #[error("missing unit in duration {0:?} (a Go duration such as 5s, 1m30s or 500ms)")]
    MissingUnit(String),
    /// A negative duration (no flag means anything by one).
    #[error("{0:?} is not a positive duration")]
    Negative(String),
}

/// Parses a Go duration: an optional `+`, then one or more decimal numbers each with a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); `0` alone is allowed. Negative durations are
/// refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Invalid(text.to_string());
    let mut rest = text.trim();
    rest = rest.strip_prefix('+').unwrap_or(rest);
    if rest.starts_with('-') {
        return Err(DurationError::Negative(text.to_string()));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = after;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Parses a duration as etcd's flags take them (Go's notation), with the
/// server's error message.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_go_duration(text)
        .map_err(|_| format!("'{text}' is not a duration (e.g. 10m, 100ms, 1h30m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(matches!(
            parse_go_duration("5"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_go_duration("-5s"),
            Err(DurationError::Negative(_))
        ));
        for bad in ["5x", "", ".s", "1e400h", "ten", "m", "1..2s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
