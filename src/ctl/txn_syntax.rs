//! etcdctl's `txn` input syntax:
//!
//! ```text
//! mod("key1") > "0"            <- compares, one per line
//!                              <- blank line
//! put key1 "overwrote-key1"    <- success ops (put, get, del with their flags)
//!                              <- blank line
//! put key1 "created-key1"      <- failure ops
//! ```
//!
//! Compare targets: `ver`/`version`, `c`/`create`, `m`/`mod`, `val`/`value`, `lease`; relations
//! `=`, `!=`, `<`, `>`. Keys and values are double-quoted with backslash escapes.

use bytes::Bytes;

use super::requests::{delete_request, put_request, range_request, GetOptions};
use crate::mvcc::request::{
    Compare, CompareOperand, CompareResult, CompareTarget, RequestOp, TxnRequest,
};

/// Splits a line into arguments: whitespace separates, double or single quotes group, and a
/// backslash escapes inside double quotes.
pub fn argify(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut arg = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' if first == '"' => match chars.next() {
                        Some('n') => arg.push('\n'),
                        Some('t') => arg.push('\t'),
                        Some(other) => arg.push(other),
                        None => break,
                    },
                    c if c == first => {
                        closed = true;
                        break;
                    }
                    c => arg.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated quote in {line:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
    Ok(args)
}

/// Parses one compare line.
pub fn parse_compare(line: &str) -> Result<Compare, String> {
    let malformed = || format!("malformed comparison: {line}");
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key_part, rest) = rest.split_once(')').ok_or_else(malformed)?;
    let key = argify(key_part).map_err(|_| malformed())?;
    let rest = argify(rest).map_err(|_| malformed())?;
    let ([key], [relation, value]) = (key.as_slice(), rest.as_slice()) else {
        return Err(malformed());
    };
    let result = match relation.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(malformed()),
    };
    let number = || {
        value
            .parse::<i64>()
            .map_err(|_| format!("invalid txn compare request: {line}"))
    };
    let (target, operand) = match target.trim() {
        "ver" | "version" => (CompareTarget::Version, CompareOperand::Version(number()?)),
        "c" | "create" => (CompareTarget::Create, CompareOperand::Create(number()?)),
        "m" | "mod" => (CompareTarget::Mod, CompareOperand::Mod(number()?)),
        "val" | "value" => (
            CompareTarget::Value,
            CompareOperand::Value(Bytes::copy_from_slice(value.as_bytes())),
        ),
        "lease" => (CompareTarget::Lease, CompareOperand::Lease(number()?)),
        other => {
            return Err(format!(
                "malformed comparison: {line} (unknown target {other})"
            ))
        }
    };
    Ok(Compare {
        result,
        target,
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::new(),
        operand,
    })
}

/// Parses one op line (`put`, `get` or `del` with etcdctl's flags).
pub fn parse_op(line: &str) -> Result<RequestOp, String> {
    let invalid = || format!("invalid txn request: {line}");
    let args = argify(line).map_err(|_| invalid())?;
    let (command, rest) = args.split_first().ok_or_else(invalid)?;
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    for arg in rest {
        if let Some(flag) = arg.strip_prefix("--") {
            flags.push(flag.to_string());
        } else {
            positional.push(arg.as_str());
        }
    }
    let flag_value = |name: &str| -> Option<String> {
        flags.iter().find_map(|f| {
            f.strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_string)
        })
    };
    let has = |name: &str| {
        flags
            .iter()
            .any(|f| f == name || f == &format!("{name}=true"))
    };
    let known = |allowed: &[&str]| {
        flags.iter().all(|f| {
            let name = f.split('=').next().unwrap_or_default();
            allowed.contains(&name)
        })
    };
    match command.as_str() {
        "put" => {
            if !known(&["prev-kv", "lease", "ignore-value", "ignore-lease"]) {
                return Err(invalid());
            }
            let (ignore_value, ignore_lease) = (has("ignore-value"), has("ignore-lease"));
            let (key, value) = match (positional.as_slice(), ignore_value) {
                ([key, value], false) => (*key, *value),
                ([key], true) => (*key, ""),
                _ => return Err(invalid()),
            };
            let lease = match flag_value("lease") {
                Some(hex) => i64::from_str_radix(&hex, 16).map_err(|_| invalid())?,
                None => 0,
            };
            Ok(RequestOp::Put(put_request(
                key,
                value,
                lease,
                has("prev-kv"),
                ignore_value,
                ignore_lease,
            )))
        }
        "get" => {
            if !known(&[
                "prefix",
                "from-key",
                "limit",
                "rev",
                "keys-only",
                "count-only",
                "sort-by",
                "order",
                "consistency",
            ]) {
                return Err(invalid());
            }
            let parse = |name: &str| -> Result<i64, String> {
                flag_value(name).map_or(Ok(0), |v| v.parse().map_err(|_| invalid()))
            };
            let options = GetOptions {
                prefix: has("prefix"),
                from_key: has("from-key"),
                limit: parse("limit")?,
                rev: parse("rev")?,
                keys_only: has("keys-only"),
                count_only: has("count-only"),
                sort_by: flag_value("sort-by"),
                order: flag_value("order"),
                consistency: flag_value("consistency"),
                ..GetOptions::default()
            };
            let (key, end) = match positional.as_slice() {
                [key] => (*key, None),
                [key, end] => (*key, Some(*end)),
                _ => return Err(invalid()),
            };
            Ok(RequestOp::Range(range_request(key, end, &options)?))
        }
        "del" => {
            if !known(&["prefix", "from-key", "prev-kv"]) {
                return Err(invalid());
            }
            let (key, end) = match positional.as_slice() {
                [key] => (*key, None),
                [key, end] => (*key, Some(*end)),
                _ => return Err(invalid()),
            };
            Ok(RequestOp::DeleteRange(delete_request(
                key,
                end,
                has("prefix"),
                has("from-key"),
                has("prev-kv"),
            )?))
        }
        _ => Err(invalid()),
    }
}

/// Parses a whole txn: compares, blank line, success ops, blank line, failure ops.
pub fn parse_txn(input: &str) -> Result<TxnRequest, String> {
    let mut sections: [Vec<&str>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut section = 0;
    for line in input.lines() {
        let line = line.trim();
        if line.is_empty() {
            section += 1;
            if section == 3 {
                break;
            }
            continue;
        }
        sections[section].push(line);
    }
    Ok(TxnRequest {
        compare: sections[0]
            .iter()
            .map(|l| parse_compare(l))
            .collect::<Result<_, _>>()?,
        success: sections[1]
            .iter()
            .map(|l| parse_op(l))
            .collect::<Result<_, _>>()?,
        failure: sections[2]
            .iter()
            .map(|l| parse_op(l))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_example_parses() {
        let txn = parse_txn(
            "mod(\"key1\") > \"0\"\n\nput key1 \"overwrote-key1\"\n\nput key1 \"created-key1\"\nput key2 \"some extra key\"\n\n",
        )
        .unwrap();
        assert_eq!(txn.compare.len(), 1);
        assert_eq!(txn.compare[0].target, CompareTarget::Mod);
        assert_eq!(txn.compare[0].result, CompareResult::Greater);
        assert_eq!(txn.compare[0].operand, CompareOperand::Mod(0));
        assert_eq!(txn.success.len(), 1);
        assert_eq!(txn.failure.len(), 2);
        let RequestOp::Put(put) = &txn.failure[1] else {
            panic!()
        };
        assert_eq!(put.value, Bytes::from_static(b"some extra key"));
    }

    #[test]
    fn compares_and_ops_with_flags() {
        let c = parse_compare("val(\"k\") != \"v w\"").unwrap();
        assert_eq!(c.operand, CompareOperand::Value(Bytes::from_static(b"v w")));
        assert!(parse_compare("nope(\"k\") = \"1\"").is_err());
        assert!(parse_compare("version(\"k\") = \"x\"").is_err());
        let RequestOp::Range(r) = parse_op("get a --prefix --limit=2").unwrap() else {
            panic!()
        };
        assert_eq!((r.range_end, r.limit), (Bytes::from_static(b"b"), 2));
        let RequestOp::DeleteRange(d) = parse_op("del a z --prev-kv").unwrap() else {
            panic!()
        };
        assert!(d.prev_kv && d.range_end == Bytes::from_static(b"z"));
        assert!(parse_op("put onlykey").is_err());
        assert!(parse_op("frobnicate x").is_err());
        assert!(parse_op("get a --bogus").is_err());
        assert_eq!(
            argify(r#"put "a b" 'c d' e\"f"#).unwrap(),
            vec!["put", "a b", "c d", "e\\\"f"]
        );
        assert!(argify("put \"open").is_err());
    }
}
