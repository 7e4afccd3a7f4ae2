//! put, get, del, txn and compaction: what they ask the server; and how the answer to one
//! request (`Action::Send`: these, and the lease and auth calls) is printed.

use std::io::Read as _;

use lode::api::native::{LeaseAnswer, Request, Response};
use lode::ctl::{output, requests, txn_syntax};
use lode::lease::LeaseOutcome;
use lode::mvcc::request::{CompactionRequest, LeaseResponse, WriteRequest, WriteResponse};

use crate::action::Action;
use crate::auth::{simple_auth, AuthPrinter};
use crate::{Command, Format};

/// What put, get, del, txn and compaction ask the server.
pub(crate) fn build(command: Command) -> Result<Action, String> {
    Ok(match command {
        Command::Put {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        } => {
            let value = match (value, ignore_value) {
                (Some(value), false) => value,
                (None, true) => String::new(),
                (Some(_), true) => {
                    return Err("put command needs 1 argument when --ignore-value is set".into())
                }
                (None, false) => {
                    return Err(
                        "put command needs 1 argument and input from stdin or 2 arguments".into(),
                    )
                }
            };
            let lease = i64::from_str_radix(&lease, 16)
                .map_err(|_| format!("bad lease ID ({lease}), expecting ID in Hex"))?;
            let request =
                requests::put_request(&key, &value, lease, prev_kv, ignore_value, ignore_lease);
            Action::Send(Request::Write(WriteRequest::Put(request)), Printer::Write)
        }
        Command::Get {
            key,
            range_end,
            prefix,
            from_key,
            limit,
            rev,
            keys_only,
            count_only,
            sort_by,
            order,
            consistency,
            print_value_only,
            min_mod_revision,
            max_mod_revision,
            min_create_revision,
            max_create_revision,
        } => {
            let options = requests::GetOptions {
                prefix,
                from_key,
                limit,
                rev,
                keys_only,
                count_only,
                sort_by,
                order,
                consistency: Some(consistency),
                min_mod_revision,
                max_mod_revision,
                min_create_revision,
                max_create_revision,
            };
            let request = requests::range_request(&key, range_end.as_deref(), &options)?;
            Action::Send(
                Request::Range(request.clone()),
                Printer::Range {
                    keys_only,
                    count_only,
                    values_only: print_value_only,
                    request: Box::new(request),
                },
            )
        }
        Command::Del {
            key,
            range_end,
            prefix,
            from_key,
            prev_kv,
        } => {
            let request =
                requests::delete_request(&key, range_end.as_deref(), prefix, from_key, prev_kv)?;
            Action::Send(
                Request::Write(WriteRequest::DeleteRange(request)),
                Printer::Write,
            )
        }
        Command::Txn { interactive } => {
            if interactive {
                eprintln!("compares:\n(blank line)\nsuccess requests (get, put, del):\n(blank line)\nfailure requests (get, put, del):\n(blank line)");
            }
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| format!("reading stdin: {e}"))?;
            let txn = txn_syntax::parse_txn(&input)?;
            Action::Send(Request::Write(WriteRequest::Txn(txn)), Printer::Write)
        }
        Command::Compaction { revision, physical } => Action::Send(
            Request::Write(WriteRequest::Compact(CompactionRequest {
                revision,
                physical,
            })),
            Printer::Compaction(revision),
        ),
        _ => unreachable!("not a key-value command"),
    })
}

pub(crate) enum Printer {
    Range {
        keys_only: bool,
        count_only: bool,
        values_only: bool,
        request: Box<lode::mvcc::request::RangeRequest>,
    },
    Write,
    Compaction(i64),
    LeaseGranted,
    LeaseRevoked(i64),
    TimeToLive {
        keys: bool,
    },
    Leases,
    /// An auth call's answer, printed as etcdctl prints it.
    Auth(AuthPrinter),
}

pub(crate) fn print(
    printer: &Printer,
    response: &Response,
    format: Format,
    hex: bool,
) -> Result<String, String> {
    if format == Format::Table {
        return Err("table format is only supported by endpoint status".into());
    }
    if format == Format::Fields {
        return print_fields(printer, response);
    }
    Ok(match (printer, response, format) {
        (Printer::Range { .. }, Response::Range(r), Format::Json) => {
            output::json_range(r).to_string() + "\n"
        }
        (
            Printer::Range {
                values_only: true,
                request,
                ..
            },
            Response::Range(r),
            _,
        ) => {
            let mut out = String::new();
            if request.count_only {
                out = format!("{}\n", r.count);
            } else {
                for kv in &r.kvs {
                    out.push_str(&output::simple_bytes(&kv.value, hex));
                    out.push('\n');
                }
            }
            out
        }
        (
            Printer::Range {
                keys_only,
                count_only,
                request,
                ..
            },
            Response::Range(r),
            _,
        ) => {
            let mut request = (**request).clone();
            request.keys_only = *keys_only;
            request.count_only = *count_only;
            output::simple_range(r, &request, hex)
        }
        (Printer::LeaseRevoked(id), Response::Write(WriteResponse::Lease(_)), Format::Simple) => {
            output::simple_lease_revoked(*id)
        }
        (Printer::Auth(printer), Response::Auth(answer), Format::Simple) => {
            simple_auth(printer, answer)
        }
        (
            Printer::LeaseGranted,
            Response::Write(WriteResponse::Lease(LeaseResponse {
                outcome: LeaseOutcome::Granted { id, ttl },
                ..
            })),
            Format::Simple,
        ) => output::simple_lease_granted(*id, *ttl),
        (_, Response::Write(w), Format::Json) => output::json_write(w).to_string() + "\n",
        (
            Printer::TimeToLive { keys: with_keys },
            Response::Lease(LeaseAnswer::TimeToLive {
                header,
                id,
                ttl,
                granted_ttl,
                keys,
            }),
            format,
        ) => match format {
            Format::Json => {
                output::json_time_to_live(header, *id, *ttl, *granted_ttl, keys).to_string() + "\n"
            }
            _ => output::simple_time_to_live(*id, *ttl, *granted_ttl, with_keys.then_some(keys)),
        },
        (Printer::Leases, Response::Lease(LeaseAnswer::Leases { header, ids }), format) => {
            match format {
                Format::Json => output::json_leases(header, ids).to_string() + "\n",
                _ => output::simple_leases(ids),
            }
        }
        (Printer::Compaction(revision), Response::Write(WriteResponse::Compact(_)), _) => {
            format!("compacted revision {revision}\n")
        }
        (_, Response::Write(WriteResponse::Put(r)), _) => output::simple_put(r, hex),
        (_, Response::Write(WriteResponse::DeleteRange(r)), _) => output::simple_delete(r, hex),
        (_, Response::Write(WriteResponse::Txn(r)), _) => output::simple_txn(r, hex),
        (_, other, _) => return Err(format!("unexpected response {other:?}")),
    })
}

/// An answer with `-w fields` (etcdctl's printer_fields): header fields first, then the
/// answer's own, `"Name" : value` a line.
fn print_fields(printer: &Printer, response: &Response) -> Result<String, String> {
    match (printer, response) {
        (
            Printer::Range {
                values_only: true, ..
            },
            _,
        ) => Err("print-value-only is only for `--write-out=simple`".into()),
        (Printer::Range { .. }, Response::Range(r)) => Ok(output::fields_range(r)),
        (Printer::Compaction(revision), Response::Write(WriteResponse::Compact(_))) => {
            Ok(format!("compacted revision {revision}\n"))
        }
        (_, Response::Write(w)) => output::fields_write(w)
            .ok_or_else(|| "fields not supported as output format for this answer".into()),
        (
            _,
            Response::Lease(LeaseAnswer::TimeToLive {
                header,
                id,
                ttl,
                granted_ttl,
                keys,
            }),
        ) => Ok(output::fields_time_to_live(
            header,
            *id,
            *ttl,
            *granted_ttl,
            keys,
        )),
        (_, Response::Lease(LeaseAnswer::Leases { header, ids })) => {
            Ok(output::fields_leases(header, ids))
        }
        (_, other) => Err(format!("unexpected response {other:?}")),
    }
}
