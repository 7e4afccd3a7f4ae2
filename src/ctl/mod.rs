//! `lodectl`'s logic, kept in the library so it can be tested: etcdctl's request flags, its txn
//! syntax, its output formats, its global flags' values, and `check perf`'s profiles and
//! verdicts.

pub mod flags;
pub mod output;
pub mod perf;
pub mod requests;
pub mod txn_syntax;
