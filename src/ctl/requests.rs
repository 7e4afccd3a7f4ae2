//! Building requests from etcdctl-style arguments (`get`, `put`, `del`), shared by the command
//! line and the txn syntax.

use bytes::Bytes;

use crate::mvcc::kv::prefix_range_end;
use crate::mvcc::request::{DeleteRangeRequest, PutRequest, RangeRequest, SortOrder, SortTarget};

/// Options of `get`, as etcdctl's.
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    /// Keys with the key as prefix.
    pub prefix: bool,
    /// Keys >= the key.
    pub from_key: bool,
    /// Most keys returned (0: all).
    pub limit: i64,
    /// Revision to read at (0: latest).
    pub rev: i64,
    /// Omit values.
    pub keys_only: bool,
    /// Only the count.
    pub count_only: bool,
    /// KEY, VERSION, CREATE, MODIFY or VALUE.
    pub sort_by: Option<String>,
    /// ASCEND or DESCEND.
    pub order: Option<String>,
    /// "l" (linearizable, default) or "s" (serializable).
    pub consistency: Option<String>,
    /// Only keys last modified at or after this revision (0: no bound).
    pub min_mod_revision: i64,
    /// Only keys last modified at or before this revision (0: no bound).
    pub max_mod_revision: i64,
    /// Only keys created at or after this revision (0: no bound).
    pub min_create_revision: i64,
    /// Only keys created at or before this revision (0: no bound).
    pub max_create_revision: i64,
}

/// Builds a range request from `get KEY [END]` arguments.
pub fn range_request(
    key: &str,
    end: Option<&str>,
    options: &GetOptions,
) -> Result<RangeRequest, String> {
    let (key, range_end) = key_and_end(key, end, options.prefix, options.from_key)?;
    let sort_target = match options
        .sort_by
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("KEY") => SortTarget::Key,
        Some("VERSION") => SortTarget::Version,
        Some("CREATE") => SortTarget::Create,
        Some("MODIFY") => SortTarget::Mod,
        Some("VALUE") => SortTarget::Value,
        Some(other) => return Err(format!("bad sort target {other:?}")),
    };
    let mut sort_order = match options
        .order
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None => SortOrder::None,
        Some("ASCEND") => SortOrder::Ascend,
        Some("DESCEND") => SortOrder::Descend,
        Some(other) => return Err(format!("bad sort order {other:?}")),
    };
    if options.sort_by.is_some() && sort_order == SortOrder::None {
        sort_order = SortOrder::Ascend;
    }
    let serializable = match options.consistency.as_deref() {
        None | Some("l") => false,
        Some("s") => true,
        Some(other) => return Err(format!("unknown consistency flag {other:?}")),
    };
    // etcdctl's checks: a bound at or below 0 means none; a minimum above its maximum is refused.
    let bound = |value: i64| value.max(0);
    let (min_mod, max_mod) = (
        bound(options.min_mod_revision),
        bound(options.max_mod_revision),
    );
    let (min_create, max_create) = (
        bound(options.min_create_revision),
        bound(options.max_create_revision),
    );
    if max_create > 0 && min_create > max_create {
        return Err(format!(
            "min create revision ({min_create}) > max create revision ({max_create})"
        ));
    }
    if max_mod > 0 && min_mod > max_mod {
        return Err(format!(
            "min mod revision ({min_mod}) > max mod revision ({max_mod})"
        ));
    }
    Ok(RangeRequest {
        key,
        range_end,
        limit: options.limit,
        revision: options.rev,
        sort_order,
        sort_target,
        serializable,
        keys_only: options.keys_only,
        count_only: options.count_only,
        min_mod_revision: min_mod,
        max_mod_revision: max_mod,
        min_create_revision: min_create,
        max_create_revision: max_create,
    })
}

/// The key and range end etcdctl sends: an empty key with `--prefix` or `--from-key` means
/// every key (from `"\0"`).
fn key_and_end(
    key: &str,
    end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> Result<(Bytes, Bytes), String> {
    if key.is_empty() && (prefix || from_key) && end.is_none() && !(prefix && from_key) {
        return Ok((Bytes::from_static(&[0]), Bytes::from_static(&[0])));
    }
    let key = Bytes::copy_from_slice(key.as_bytes());
    let end = range_end(&key, end, prefix, from_key)?;
    Ok((key, end))
}

fn range_end(
    key: &Bytes,
    end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> Result<Bytes, String> {
    match (end, prefix, from_key) {
        (Some(_), true, _) | (Some(_), _, true) => Err(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"
                .into(),
        ),
        (_, true, true) => Err("`--prefix` and `--from-key` cannot be set at the same time".into()),
        (Some(end), false, false) => Ok(Bytes::copy_from_slice(end.as_bytes())),
        (None, true, false) => Ok(if key.is_empty() {
            Bytes::from_static(&[0])
        } else {
            prefix_range_end(key)
        }),
        (None, false, true) => Ok(Bytes::from_static(&[0])),
        (None, false, false) => Ok(Bytes::new()),
    }
}

/// Builds a put request.
pub fn put_request(
    key: &str,
    value: &str,
    lease: i64,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
) -> PutRequest {
    PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        lease,
        prev_kv,
        ignore_value,
        ignore_lease,
    }
}

/// Builds a delete request from `del KEY [END]` arguments.
pub fn delete_request(
    key: &str,
    end: Option<&str>,
    prefix: bool,
    from_key: bool,
    prev_kv: bool,
) -> Result<DeleteRangeRequest, String> {
    let (key, range_end) = key_and_end(key, end, prefix, from_key)?;
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}
