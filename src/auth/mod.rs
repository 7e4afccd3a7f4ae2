//! etcd's authentication and role-based access control, as pure state: users, roles, key-range
//! permissions, the enabled flag and the auth revision (`store`); the permissions of one user
//! merged into read and write interval sets and the checks of every request against them
//! (`perms`, `authorize`); etcd's errors with their codes and exact strings (`error`).
//!
//! Invariants:
//! - The store changes only through [`AuthStore::apply`], one `AuthChange` at a time in log
//!   order, so every member holds the same store at the same log index; each change that
//!   changes something advances the auth revision by one (etcd's `commitRevision`), and
//!   enabling auth, which changes no permission, does not.
//! - Passwords reach the store already hashed (bcrypt, computed away from the consensus core);
//!   the store never hashes.
//! - While auth is on, the `root` user exists and holds the `root` role: the changes that would
//!   break that are refused ("etcdserver: invalid auth management").
//! - A permission check is a pure function of the store at one auth revision; a request
//!   authorized at an older revision than the store's is refused as etcd refuses it
//!   ("etcdserver: revision of auth store is old").

pub mod authorize;
pub mod error;
pub mod gate;
pub mod perms;
pub mod request;
pub mod store;
pub mod token;

pub use error::AuthError;
pub use gate::{AuthGate, AuthShared, Caller, Credentials};
pub use perms::{KeyInterval, PermType, Permission, UserPermissions};
pub use store::{AuthChange, AuthStore, User};

/// etcd's superuser and its role.
pub const ROOT: &str = "root";
