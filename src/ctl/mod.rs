//! `lodectl`'s logic, kept in the library so it can be tested: etcdctl's request flags, its txn
//! syntax, and its output formats.

pub mod output;
pub mod requests;
pub mod txn_syntax;
