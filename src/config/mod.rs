//! How a `lode` member is configured: etcd's command line, etcd's `ETCD_*` environment
//! variables beside lode's `LODE_*` ones, and etcd's YAML `--config-file`, resolved with
//! etcd's precedence into one normalized argument list that the typed parser (clap, in
//! `server_flags`) reads.
//!
//! Pure: the caller hands in argv, the environment and a file reader, and gets back the
//! arguments plus the notices to log once logging is set up (a notice cannot be logged here:
//! the logger's own settings are among the flags being resolved).
//!
//! Rules (etcd 3.5's, `server/etcdmain/config.go`, `pkg/flags`):
//! - flags are written Go's way or clap's: `-name v`, `--name v`, `--name=v`; a boolean flag
//!   takes its value only after `=` (`--pre-vote=false`), alone it means true; the last of a
//!   repeated flag wins; a word that is not a flag is an error;
//! - every flag has two variables: `ETCD_` and `LODE_` followed by the flag in upper case with
//!   `-` as `_`. A flag given on the command line shadows its variables (warned); `LODE_` wins
//!   over `ETCD_` when both are set (warned); an `ETCD_` variable naming no flag is warned
//!   about; a used one is logged;
//! - `--config-file` (or its variables): the YAML file is the whole configuration; every other
//!   flag and variable is ignored (logged), as etcd does;
//! - every etcd flag is either served (a typed flag of lode's), accepted and logged as having
//!   no effect in lode, or accepted only at the one value that describes what lode does
//!   (`etcd_flags::Treatment`); anything else, an unknown flag or key included, is an error
//!   that names the flag.

pub mod etcd_flags;
pub mod server_flags;
pub mod yaml;

use std::path::{Path, PathBuf};

use etcd_flags::Treatment;

/// A flag lode's typed parser knows: its long name and whether it is a boolean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownFlag {
    pub name: String,
    pub boolean: bool,
}

/// Something to log once logging is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Info(String),
    Warn(String),
}

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Variable(String),
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::CommandLine => write!(f, "the command line"),
            Origin::Variable(name) => write!(f, "environment variable {name}"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
        }
    }
}

/// One flag with its value as given (`None`: a boolean written alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flag: String,
    pub value: Option<String>,
    pub origin: Origin,
}

/// The configuration as lode's typed parser takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Normalized arguments (`--flag=value`), program name first.
    pub args: Vec<String>,
    /// What to log once logging is set up, in order.
    pub notices: Vec<Notice>,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// `--help`/`--version` was asked for: hand argv to the parser as it is.
    pub passthrough: bool,
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown flag --{flag} (from {origin}); `lode --help` lists lode's flags")]
    UnknownFlag { flag: String, origin: Origin },
    #[error("'{0}' is not a valid flag")]
    NotAFlag(String),
    #[error("flag --{0} needs a value")]
    MissingValue(String),
    #[error("--{flag}={value} (from {origin}): '{value}' is not a boolean (true or false)")]
    NotABoolean {
        flag: String,
        value: String,
        origin: Origin,
    },
    #[error("--{flag}={value} (from {origin}) is not supported: {why}")]
    Unsupported {
        flag: String,
        value: String,
        origin: Origin,
        why: &'static str,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// The environment variable names of `flag`: (LODE_..., ETCD_...).
pub fn variable_names(flag: &str) -> (String, String) {
    let upper = flag.to_ascii_uppercase().replace('-', "_");
    (format!("LODE_{upper}"), format!("ETCD_{upper}"))
}

/// Variables that configure something other than the server's flags: lode's test-only fault
/// knobs, and those etcd itself reads outside its flags.
fn variable_is_not_a_flag(name: &str) -> bool {
    name.starts_with("LODE_FAULT_") || name == "ETCD_UNSUPPORTED_ARCH"
}

const CONFIG_FILE_FLAG: &str = "config-file";

/// Flags no variable sets (`ETCD_VERSION` is often set in images for other reasons; etcd
/// ignores it with a warning too).
const SPECIAL_FLAGS: &[&str] = &["version", "help"];

/// Go's spellings of a boolean.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Whether `flag` is a boolean: one of lode's, or an etcd flag lode treats otherwise.
fn is_boolean(flag: &str, known: &[KnownFlag]) -> Option<bool> {
    if let Some(known) = known.iter().find(|k| k.name == flag) {
        return Some(known.boolean);
    }
    etcd_flags::lookup(flag).map(|etcd| etcd.boolean)
}

/// Splits argv (without the program name) into settings.
fn parse_command_line(argv: &[String], known: &[KnownFlag]) -> Result<Vec<Setting>, ConfigError> {
    let mut settings = Vec::new();
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        let Some(body) = word
            .strip_prefix("--")
            .or_else(|| word.strip_prefix('-'))
            .filter(|body| !body.is_empty() && !body.starts_with('-'))
        else {
            return Err(ConfigError::NotAFlag(word.clone()));
        };
        let (flag, inline) = match body.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (body.to_string(), None),
        };
        let boolean = is_boolean(&flag, known).ok_or_else(|| ConfigError::UnknownFlag {
            flag: flag.clone(),
            origin: Origin::CommandLine,
        })?;
        let value = match (inline, boolean) {
            (Some(value), _) => Some(value),
            (None, true) => None,
            (None, false) => Some(
                words
                    .next()
                    .cloned()
                    .ok_or_else(|| ConfigError::MissingValue(flag.clone()))?,
            ),
        };
        settings.push(Setting {
            flag,
            value,
            origin: Origin::CommandLine,
        });
    }
    Ok(settings)
}

/// Every flag name a variable may name: lode's flags and etcd's others.
fn all_flag_names(known: &[KnownFlag]) -> Vec<String> {
    let mut names: Vec<String> = known.iter().map(|k| k.name.clone()).collect();
    for etcd in etcd_flags::ETCD_FLAGS {
        if !names.iter().any(|n| n == etcd.name) {
            names.push(etcd.name.to_string());
        }
    }
    names
}

/// The settings the environment adds to `given` (the command line's), with the notices
/// etcd gives about variables.
fn from_environment(
    env: &[(String, String)],
    given: &[Setting],
    known: &[KnownFlag],
    notices: &mut Vec<Notice>,
) -> Vec<Setting> {
    let names = all_flag_names(known);
    let mut settings = Vec::new();
    for flag in &names {
        if flag == CONFIG_FILE_FLAG {
            continue;
        }
        if SPECIAL_FLAGS.contains(&flag.as_str()) {
            let (lode_name, etcd_name) = variable_names(flag);
            for (name, value) in env
                .iter()
                .filter(|(n, _)| *n == lode_name || *n == etcd_name)
            {
                notices.push(Notice::Warn(format!(
                    "cannot set special environment variable {name}={value}: ignored"
                )));
            }
            continue;
        }
        let (lode_name, etcd_name) = variable_names(flag);
        // An empty variable sets nothing (etcd's rule; templates often leave them empty).
        let lode_value = env
            .iter()
            .find(|(name, value)| *name == lode_name && !value.is_empty());
        let etcd_value = env
            .iter()
            .find(|(name, value)| *name == etcd_name && !value.is_empty());
        let on_command_line = given.iter().any(|s| &s.flag == flag);
        for (name, _) in lode_value.iter().chain(etcd_value.iter()) {
            if on_command_line {
                notices.push(Notice::Warn(format!(
                    "conflicting environment variable {name} is shadowed by corresponding \
                     command-line flag (either unset environment variable or disable flag)"
                )));
            }
        }
        if on_command_line {
            continue;
        }
        let chosen = match (lode_value, etcd_value) {
            (Some(lode), Some(etcd)) => {
                notices.push(Notice::Warn(format!(
                    "both {} and {} are set: using {}",
                    lode.0, etcd.0, lode.0
                )));
                lode
            }
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => continue,
        };
        notices.push(Notice::Info(format!(
            "recognized and used environment variable {}={}",
            chosen.0, chosen.1
        )));
        settings.push(Setting {
            flag: flag.clone(),
            value: Some(chosen.1.clone()),
            origin: Origin::Variable(chosen.0.clone()),
        });
    }
    for (name, value) in env {
        let flag = name
            .strip_prefix("ETCD_")
            .or_else(|| name.strip_prefix("LODE_"))
            .map(|rest| rest.to_ascii_lowercase().replace('_', "-"));
        let Some(flag) = flag else { continue };
        if variable_is_not_a_flag(name) {
            continue;
        }
        if names.contains(&flag) && !value.is_empty() {
            continue;
        }
        notices.push(Notice::Warn(format!(
            "unrecognized environment variable {name}={value}"
        )));
    }
    settings
}

/// The config file named on the command line or by a variable, if any.
fn config_file_named(given: &[Setting], env: &[(String, String)]) -> Option<(PathBuf, Origin)> {
    if let Some(setting) = given.iter().rev().find(|s| s.flag == CONFIG_FILE_FLAG) {
        return setting
            .value
            .as_ref()
            .map(|path| (PathBuf::from(path), setting.origin.clone()));
    }
    let (lode_name, etcd_name) = variable_names(CONFIG_FILE_FLAG);
    [lode_name, etcd_name].into_iter().find_map(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, path)| (PathBuf::from(path), Origin::Variable(name)))
    })
}

/// Resolves the configuration: `argv` as the process got it (program name first), the
/// environment, and a reader for the config file.
pub fn resolve(
    argv: &[String],
    env: &[(String, String)],
    known: &[KnownFlag],
    read_file: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Resolved, ConfigError> {
    let program = argv.first().cloned().unwrap_or_else(|| "lode".to_string());
    let rest = argv.get(1..).unwrap_or_default();
    let asks = |words: &[&str]| rest.iter().any(|word| words.contains(&word.as_str()));
    let asked = if asks(&["-h", "--help", "-help"]) {
        Some("--help")
    } else if asks(&["-V", "--version", "-version"]) {
        Some("--version")
    } else {
        None
    };
    if let Some(asked) = asked {
        return Ok(Resolved {
            args: vec![program, asked.to_string()],
            passthrough: true,
            ..Resolved::default()
        });
    }
    let given = parse_command_line(rest, known)?;
    let mut notices = Vec::new();
    let (settings, config_file) = match config_file_named(&given, env) {
        Some((path, _origin)) => {
            let text = read_file(&path).map_err(|error| ConfigError::File {
                path: path.clone(),
                message: error.to_string(),
            })?;
            let settings =
                yaml::settings(&text, &path, known).map_err(|message| ConfigError::File {
                    path: path.clone(),
                    message,
                })?;
            notices.push(Notice::Info(format!(
                "loaded server configuration, other configuration command line flags and \
                 environment variables will be ignored if provided (path {})",
                path.display()
            )));
            let ignored: Vec<String> = given
                .iter()
                .filter(|s| s.flag != CONFIG_FILE_FLAG)
                .map(|s| format!("--{}", s.flag))
                .collect();
            if !ignored.is_empty() {
                notices.push(Notice::Warn(format!(
                    "ignored because a config file is given: {}",
                    ignored.join(" ")
                )));
            }
            (settings, Some(path))
        }
        None => {
            let from_env = from_environment(env, &given, known, &mut notices);
            let mut settings = from_env;
            settings.extend(given);
            (settings, None)
        }
    };
    let mut args = vec![program];
    // The last setting of a flag wins (Go's flag package); variables come before the command
    // line, so the command line's is last.
    let mut kept: Vec<Setting> = Vec::new();
    for setting in settings {
        kept.retain(|s| s.flag != setting.flag);
        kept.push(setting);
    }
    for setting in kept {
        if setting.flag == CONFIG_FILE_FLAG {
            continue;
        }
        if let Some(known) = known.iter().find(|k| k.name == setting.flag) {
            args.push(normalized_arg(&setting, known.boolean)?);
            continue;
        }
        let Some(etcd) = etcd_flags::lookup(&setting.flag) else {
            return Err(ConfigError::UnknownFlag {
                flag: setting.flag,
                origin: setting.origin,
            });
        };
        let value = normalized_value(&setting, etcd.boolean)?;
        match &etcd.treatment {
            Treatment::Serves => {
                // Served flags are lode's own: a table entry without a parser flag is a bug
                // the tests catch; refuse rather than drop it.
                return Err(ConfigError::UnknownFlag {
                    flag: setting.flag,
                    origin: setting.origin,
                });
            }
            Treatment::NoEffect(why) => notices.push(Notice::Warn(format!(
                "--{}={value} (from {}) has no effect in lode: {why}",
                setting.flag, setting.origin
            ))),
            Treatment::Fixed { accepts, why } => {
                if !accepts.contains(&value.as_str()) {
                    return Err(ConfigError::Unsupported {
                        flag: setting.flag,
                        value,
                        origin: setting.origin,
                        why,
                    });
                }
            }
        }
    }
    Ok(Resolved {
        args,
        notices,
        config_file,
        passthrough: false,
    })
}

/// A setting's value in canonical form: booleans as `true`/`false`.
fn normalized_value(setting: &Setting, boolean: bool) -> Result<String, ConfigError> {
    match (&setting.value, boolean) {
        (None, true) => Ok("true".to_string()),
        (None, false) => Err(ConfigError::MissingValue(setting.flag.clone())),
        (Some(value), true) => parse_go_bool(value.trim())
            .map(|b| b.to_string())
            .ok_or_else(|| ConfigError::NotABoolean {
                flag: setting.flag.clone(),
                value: value.clone(),
                origin: setting.origin.clone(),
            }),
        (Some(value), false) => Ok(value.clone()),
    }
}

/// `--flag=value` for the typed parser.
fn normalized_arg(setting: &Setting, boolean: bool) -> Result<String, ConfigError> {
    Ok(format!(
        "--{}={}",
        setting.flag,
        normalized_value(setting, boolean)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<KnownFlag> {
        [
            ("name", false),
            ("data-dir", false),
            ("initial-cluster-token", false),
            ("listen-client-urls", false),
            ("log-level", false),
            ("config-file", false),
            ("client-cert-auth", true),
            ("auto-tls", true),
        ]
        .iter()
        .map(|(name, boolean)| KnownFlag {
            name: name.to_string(),
            boolean: *boolean,
        })
        .collect()
    }

    fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("lode")
            .chain(words.iter().copied())
            .map(String::from)
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn no_file(_: &Path) -> std::io::Result<String> {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    #[test]
    fn go_and_clap_spellings_become_one_form_and_the_last_wins() {
        let resolved = resolve(
            &argv(&["-name", "a", "--data-dir=/d", "--name", "b"]),
            &[],
            &known(),
            no_file,
        )
        .unwrap();
        assert_eq!(resolved.args, ["lode", "--data-dir=/d", "--name=b"]);
    }

    #[test]
    fn variables_fill_in_flags_the_command_line_leaves_out() {
        let resolved = resolve(
            &argv(&["--name", "flag"]),
            &env(&[
                ("ETCD_NAME", "shadowed"),
                ("ETCD_INITIAL_CLUSTER_TOKEN", "t1"),
                ("ETCD_DATA_DIR", "/etcd"),
                ("LODE_DATA_DIR", "/lode"),
                ("ETCD_NO_SUCH_THING", "x"),
                ("ETCDCTL_API", "3"),
                ("LODE_FAULT_SYNC_DELAY_FILE", "/f"),
                ("PATH", "/bin"),
            ]),
            &known(),
            no_file,
        )
        .unwrap();
        assert_eq!(
            resolved.args,
            [
                "lode",
                "--data-dir=/lode",
                "--initial-cluster-token=t1",
                "--name=flag"
            ]
        );
        let warned: Vec<&Notice> = resolved
            .notices
            .iter()
            .filter(|n| matches!(n, Notice::Warn(_)))
            .collect();
        let text = format!("{warned:?}");
        assert!(text.contains("ETCD_NAME is shadowed"), "{text}");
        assert!(
            text.contains("both LODE_DATA_DIR and ETCD_DATA_DIR"),
            "{text}"
        );
        assert!(text.contains("unrecognized environment variable ETCD_NO_SUCH_THING"));
        assert!(!text.contains("ETCDCTL_API") && !text.contains("LODE_FAULT"));
        assert_eq!(warned.len(), 3, "{text}");
    }

    #[test]
    fn a_config_file_replaces_every_flag_and_variable() {
        let file =
            "name: from-file\ndata-dir: /var/lib/etcd\nlisten-client-urls: http://127.0.0.1:2379\n";
        let resolved = resolve(
            &argv(&["--config-file", "/etc/etcd.yml", "--name", "ignored"]),
            &env(&[("ETCD_DATA_DIR", "/ignored")]),
            &known(),
            |path| {
                assert_eq!(path, Path::new("/etc/etcd.yml"));
                Ok(file.to_string())
            },
        )
        .unwrap();
        assert_eq!(
            resolved.args,
            [
                "lode",
                "--name=from-file",
                "--data-dir=/var/lib/etcd",
                "--listen-client-urls=http://127.0.0.1:2379"
            ]
        );
        assert_eq!(
            resolved.config_file.as_deref(),
            Some(Path::new("/etc/etcd.yml"))
        );
        let text = format!("{:?}", resolved.notices);
        assert!(text.contains("loaded server configuration"), "{text}");
        assert!(text.contains("--name"), "{text}");
        // Named by a variable too.
        let resolved = resolve(
            &argv(&[]),
            &env(&[("ETCD_CONFIG_FILE", "/etc/e.yml")]),
            &known(),
            |_| Ok("name: n\n".to_string()),
        )
        .unwrap();
        assert_eq!(resolved.args, ["lode", "--name=n"]);
    }

    #[test]
    fn bad_input_is_refused_with_the_flag_named() {
        let refuse = |words: &[&str]| resolve(&argv(words), &[], &known(), no_file).unwrap_err();
        assert_eq!(
            refuse(&["--bogus", "1"]),
            ConfigError::UnknownFlag {
                flag: "bogus".into(),
                origin: Origin::CommandLine
            }
        );
        assert_eq!(refuse(&["stray"]), ConfigError::NotAFlag("stray".into()));
        assert_eq!(
            refuse(&["--name"]),
            ConfigError::MissingValue("name".into())
        );
        assert!(matches!(
            refuse(&["--client-cert-auth=maybe"]),
            ConfigError::NotABoolean { .. }
        ));
        assert!(matches!(
            refuse(&["--cors", "https://example.com"]),
            ConfigError::Unsupported { .. }
        ));
        assert!(matches!(
            resolve(
                &argv(&[]),
                &env(&[("ETCD_HOST_WHITELIST", "example.com")]),
                &known(),
                no_file
            )
            .unwrap_err(),
            ConfigError::Unsupported { .. }
        ));
        assert!(matches!(
            resolve(&argv(&["--config-file", "/x"]), &[], &known(), no_file).unwrap_err(),
            ConfigError::File { .. }
        ));
    }

    #[test]
    fn etcd_flags_lode_does_not_need_are_accepted_and_said_once() {
        let resolved = resolve(
            &argv(&[
                "--backend-bbolt-freelist-type",
                "map",
                "--client-cert-auth=false",
                "--auto-tls",
                "false",
            ]),
            &[],
            &known(),
            no_file,
        );
        // `--auto-tls false`: a boolean takes its value only after `=`, as in Go.
        assert_eq!(resolved.unwrap_err(), ConfigError::NotAFlag("false".into()));
        let resolved = resolve(
            &argv(&[
                "--backend-bbolt-freelist-type",
                "map",
                "--client-cert-auth=false",
            ]),
            &[],
            &known(),
            no_file,
        )
        .unwrap();
        assert_eq!(resolved.args, ["lode", "--client-cert-auth=false"]);
        assert_eq!(resolved.notices.len(), 1, "{:?}", resolved.notices);
        assert!(format!("{:?}", resolved.notices).contains("no effect"));
    }

    #[test]
    fn help_and_version_pass_through_in_any_spelling() {
        let resolved = resolve(&argv(&["--bogus", "--help"]), &[], &known(), no_file).unwrap();
        assert!(resolved.passthrough);
        assert_eq!(resolved.args, ["lode", "--help"]);
        let resolved = resolve(&argv(&["-name", "x", "-version"]), &[], &known(), no_file).unwrap();
        assert_eq!(resolved.args, ["lode", "--version"]);
    }

    #[test]
    fn empty_and_special_variables_set_nothing() {
        let resolved = resolve(
            &argv(&[]),
            &env(&[
                ("ETCD_NAME", ""),
                ("ETCD_VERSION", "v3.5.9"),
                ("LODE_DATA_DIR", "/d"),
            ]),
            &known(),
            no_file,
        )
        .unwrap();
        assert_eq!(resolved.args, ["lode", "--data-dir=/d"]);
        let text = format!("{:?}", resolved.notices);
        assert!(
            text.contains("unrecognized environment variable ETCD_NAME="),
            "{text}"
        );
        assert!(
            text.contains("cannot set special environment variable ETCD_VERSION"),
            "{text}"
        );
    }
}
