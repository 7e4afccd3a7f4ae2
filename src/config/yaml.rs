//! etcd's YAML config file (`--config-file`) read into settings.
//!
//! The keys are etcd's `embed.Config` YAML keys, which are its flag names; lists (such as
//! `log-outputs`) become comma-separated values, as the flags take them. Three differences from
//! a flag, all etcd's: a null value leaves the default; a duration written as a bare integer
//! is nanoseconds (etcd decodes the file through JSON into Go's `time.Duration`); TLS settings
//! sit in `client-transport-security` and `peer-transport-security` blocks. Unknown keys,
//! nested values where a scalar belongs and duplicate keys are errors naming the key.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use super::{etcd_flags, is_boolean, KnownFlag, Origin, Setting};

/// etcd's nested blocks: each sub-key and the flag it is. An empty flag name: a key that has
/// no effect in lode (the client side's `skip-client-san-verification`: lode checks no client
/// certificate's names against its address on the client URLs, so there is nothing to skip).
const BLOCKS: &[(&str, &[(&str, &str)])] = &[
    (
        "client-transport-security",
        &[
            ("cert-file", "cert-file"),
            ("key-file", "key-file"),
            ("client-cert-file", "client-cert-file"),
            ("client-key-file", "client-key-file"),
            ("client-cert-auth", "client-cert-auth"),
            ("trusted-ca-file", "trusted-ca-file"),
            ("auto-tls", "auto-tls"),
            ("allowed-cn", "client-cert-allowed-cn"),
            ("allowed-hostname", "client-cert-allowed-hostname"),
            ("crl-file", "client-crl-file"),
            ("skip-client-san-verification", ""),
        ],
    ),
    (
        "peer-transport-security",
        &[
            ("cert-file", "peer-cert-file"),
            ("key-file", "peer-key-file"),
            ("client-cert-file", "peer-client-cert-file"),
            ("client-key-file", "peer-client-key-file"),
            ("client-cert-auth", "peer-client-cert-auth"),
            ("trusted-ca-file", "peer-trusted-ca-file"),
            ("auto-tls", "peer-auto-tls"),
            ("allowed-cn", "peer-cert-allowed-cn"),
            ("allowed-hostname", "peer-cert-allowed-hostname"),
            ("crl-file", "peer-crl-file"),
            (
                "skip-client-san-verification",
                "experimental-peer-skip-client-san-verification",
            ),
        ],
    ),
    (
        "socket-options",
        &[
            ("reuse-port", "socket-reuse-port"),
            ("reuse-address", "socket-reuse-address"),
        ],
    ),
];

/// The settings written in `text`, the contents of the file at `path`.
pub fn settings(text: &str, path: &Path, known: &[KnownFlag]) -> Result<Vec<Setting>, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    let document = match documents.as_slice() {
        [] => return Ok(Vec::new()),
        [one] => one,
        _ => return Err("holds more than one YAML document".to_string()),
    };
    let map = match document {
        Yaml::Hash(map) => map,
        Yaml::Null => return Ok(Vec::new()),
        _ => return Err("is not a mapping of etcd's configuration keys".to_string()),
    };
    let origin = Origin::File(path.to_path_buf());
    let mut settings: Vec<Setting> = Vec::new();
    for (key, value) in map {
        let Yaml::String(key) = key else {
            return Err(format!("key {key:?} is not a string"));
        };
        if let Some((_, keys)) = BLOCKS.iter().find(|(block, _)| block == key) {
            block(key, keys, value, &origin, &mut settings)?;
            continue;
        }
        let key = etcd_flags::YAML_KEY_ALIASES
            .iter()
            .find(|(alias, _)| alias == key)
            .map_or(key.as_str(), |(_, flag)| flag)
            .to_string();
        let key = &key;
        let Some(boolean) = is_boolean(key, known) else {
            return Err(format!("unknown key '{key}'"));
        };
        if let Some(value) = scalar(key, value, etcd_flags::is_duration(key))? {
            // etcd reads an empty string as its zero value, which means the default (an empty
            // `initial-cluster-state` is `new`); lode's own flags take it so too.
            if value.is_empty() && known.iter().any(|k| &k.name == key) {
                continue;
            }
            if boolean && super::parse_go_bool(&value).is_none() {
                return Err(format!("key '{key}': '{value}' is not a boolean"));
            }
            settings.push(Setting {
                flag: key.clone(),
                value: Some(value),
                origin: origin.clone(),
            });
        }
    }
    Ok(settings)
}

/// A nested block: each key is one of etcd's flags (the TLS ones are refused unless they
/// leave TLS off, by their treatment).
fn block(
    name: &str,
    keys: &[(&str, &str)],
    value: &Yaml,
    origin: &Origin,
    settings: &mut Vec<Setting>,
) -> Result<(), String> {
    let map = match value {
        Yaml::Hash(map) => map,
        Yaml::Null => return Ok(()),
        _ => return Err(format!("key '{name}' is not a mapping")),
    };
    for (key, value) in map {
        let Yaml::String(key) = key else {
            return Err(format!("{name}: key {key:?} is not a string"));
        };
        let Some((_, flag)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(format!("{name}: unknown key '{key}'"));
        };
        let Some(value) = scalar(key, value, false)? else {
            continue;
        };
        // Empty is the default, as for a top-level key.
        if flag.is_empty() || value.is_empty() {
            continue;
        }
        settings.push(Setting {
            flag: flag.to_string(),
            value: Some(value),
            origin: origin.clone(),
        });
    }
    Ok(())
}

/// A value as a flag would take it; `None` for null (the default stays).
fn scalar(key: &str, value: &Yaml, duration: bool) -> Result<Option<String>, String> {
    Ok(Some(match value {
        Yaml::Null => return Ok(None),
        Yaml::String(text) => text.clone(),
        Yaml::Integer(n) if duration => format!("{n}ns"),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Real(text) => text.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match scalar(key, item, duration)? {
                    Some(part) if !matches!(item, Yaml::Array(_)) => parts.push(part),
                    Some(_) => return Err(format!("key '{key}': a list inside a list")),
                    None => {}
                }
            }
            parts.join(",")
        }
        Yaml::Hash(_) => return Err(format!("key '{key}' holds a mapping, not a value")),
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format!("key '{key}' has a value that cannot be read"))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<KnownFlag> {
        [
            ("name", false),
            ("log-outputs", false),
            ("heartbeat-interval", false),
            ("watch-progress-notify-interval", false),
        ]
        .iter()
        .map(|(name, boolean)| KnownFlag {
            name: name.to_string(),
            boolean: *boolean,
        })
        .collect()
    }

    fn read(text: &str) -> Result<Vec<(String, String)>, String> {
        Ok(settings(text, Path::new("/etc/etcd.yml"), &known())?
            .into_iter()
            .map(|s| (s.flag, s.value.unwrap_or_default()))
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn scalars_lists_nulls_and_durations_read_as_etcd_reads_them() {
        let text = "# etcd's sample style\nname: 'infra0'\nheartbeat-interval: 100\n\
                    log-outputs: [stderr, /var/log/etcd.log]\ninitial-cluster:\n\
                    watch-progress-notify-interval: 5000000000\n\
                    client-transport-security:\n  cert-file:\n  client-cert-auth: false\n\
                    peer-transport-security:\n  allowed-cn: ''\n";
        assert_eq!(
            read(text).unwrap(),
            pairs(&[
                ("name", "infra0"),
                ("heartbeat-interval", "100"),
                ("log-outputs", "stderr,/var/log/etcd.log"),
                ("watch-progress-notify-interval", "5000000000ns"),
                ("client-cert-auth", "false"),
            ])
        );
        assert_eq!(
            read("name: ''\n").unwrap(),
            pairs(&[]),
            "empty means the default"
        );
        assert_eq!(read("").unwrap(), pairs(&[]));
        assert_eq!(read("# only a comment\n").unwrap(), pairs(&[]));
    }

    #[test]
    fn malformed_files_are_refused_with_the_key_named() {
        for (text, expected) in [
            ("nmae: x\n", "unknown key 'nmae'"),
            ("name: {a: 1}\n", "holds a mapping"),
            ("- a\n- b\n", "not a mapping"),
            ("name: [[a]]\n", "a list inside a list"),
            ("name: x\nname: y\n", "duplicate"),
            ("name: 'unterminated\n", "while"),
            (
                "client-transport-security:\n  nonsense: 1\n",
                "unknown key 'nonsense'",
            ),
            ("strict-reconfig-check: sometimes\n", "not a boolean"),
            ("a: 1\n---\nb: 2\n", "more than one"),
        ] {
            let error = read(text).expect_err(text);
            assert!(
                error.to_lowercase().contains(&expected.to_lowercase()),
                "{text:?}: {error}"
            );
        }
    }
}
