//! The auth store: etcd's users, roles, enabled flag and auth revision, changed only by
//! applying [`AuthChange`]s in log order, with etcd 3.5's rules and errors.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::error::AuthError;
use super::perms::{PermType, Permission, UserPermissions};
use super::ROOT;

/// A user (etcd's `authpb.User`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The bcrypt hash of its password; `None` for a user without one (it cannot
    /// authenticate by password; a client certificate names it).
    pub password_hash: Option<Bytes>,
    /// Role names, sorted, no duplicates.
    pub roles: Vec<String>,
    /// etcd's `no_password` option.
    pub no_password: bool,
}

/// One change to the store, as the log carries it (passwords already hashed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthChange {
    Enable,
    Disable,
    UserAdd {
        name: String,
        password_hash: Option<Bytes>,
        no_password: bool,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password_hash: Option<Bytes>,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    RoleGrantPermission {
        name: String,
        permission: Permission,
    },
    RoleRevokePermission {
        role: String,
        key: Bytes,
        range_end: Bytes,
    },
}

/// What a user may do: etcd's `authStore` state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthStore {
    enabled: bool,
    /// etcd's auth revision: advanced by every change that changes something.
    revision: u64,
    users: BTreeMap<String, User>,
    /// Role name to its permissions (sorted by key, as etcd keeps them).
    roles: BTreeMap<String, Vec<Permission>>,
}

impl AuthStore {
    /// A fresh store: auth off, revision 1 (etcd commits a first revision when it creates the
    /// store).
    pub fn new() -> AuthStore {
        AuthStore {
            revision: 1,
            ..AuthStore::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Every role and its permissions, by name.
    pub fn roles(&self) -> impl Iterator<Item = (&String, &Vec<Permission>)> {
        self.roles.iter()
    }

    /// etcd's RoleGet: a role's permissions (for `root`, the one that covers everything).
    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, AuthError> {
        let permissions = self.roles.get(name).ok_or(AuthError::RoleNotFound)?;
        if name == ROOT {
            return Ok(vec![Permission {
                perm_type: PermType::ReadWrite,
                key: Bytes::new(),
                range_end: Bytes::from_static(b"\0"),
            }]);
        }
        Ok(permissions.clone())
    }

    /// etcd's UserGet: a user's roles.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, AuthError> {
        self.users
            .get(name)
            .map(|user| user.roles.clone())
            .ok_or(AuthError::UserNotFound)
    }

    /// Whether `name` holds the root role.
    pub fn is_root(&self, name: &str) -> bool {
        self.users
            .get(name)
            .is_some_and(|user| user.roles.iter().any(|role| role == ROOT))
    }

    /// A user's permissions merged over its roles (`None` for an unknown user).
    pub fn permissions(&self, name: &str) -> Option<UserPermissions> {
        let user = self.users.get(name)?;
        let root = user.roles.iter().any(|role| role == ROOT);
        let granted = user
            .roles
            .iter()
            .filter_map(|role| self.roles.get(role))
            .flatten();
        Some(UserPermissions::merge(root, granted))
    }

    /// etcd's check before a password is compared: the user's hash, or why it cannot log in.
    pub fn password_hash(&self, name: &str) -> Result<Bytes, AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.no_password {
            return Err(AuthError::NoPasswordUser);
        }
        user.password_hash.clone().ok_or(AuthError::AuthFailed)
    }

    /// Applies one change with etcd's rules. A refused change changes nothing; one that is
    /// accepted but changes nothing (enabling twice, granting a role held) leaves the revision.
    pub fn apply(&mut self, change: &AuthChange) -> Result<(), AuthError> {
        match change {
            AuthChange::Enable => {
                if self.enabled {
                    return Ok(());
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.iter().any(|role| role == ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                return Ok(());
            }
            AuthChange::Disable => {
                if !self.enabled {
                    return Ok(());
                }
                self.enabled = false;
            }
            AuthChange::UserAdd {
                name,
                password_hash,
                no_password,
            } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                self.users.insert(
                    name.clone(),
                    User {
                        name: name.clone(),
                        password_hash: if *no_password {
                            None
                        } else {
                            password_hash.clone()
                        },
                        roles: Vec::new(),
                        no_password: *no_password,
                    },
                );
            }
            AuthChange::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
            }
            AuthChange::UserChangePassword {
                name,
                password_hash,
            } => {
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                if !user.no_password {
                    user.password_hash = password_hash.clone();
                }
            }
            AuthChange::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(AuthError::UserNotFound);
                }
                // etcd lets the root role be granted before it exists as a role.
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
                let Some(holder) = self.users.get_mut(user) else {
                    return Err(AuthError::UserNotFound);
                };
                match holder.roles.binary_search(role) {
                    Ok(_) => return Ok(()),
                    Err(position) => holder.roles.insert(position, role.clone()),
                }
            }
            AuthChange::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                let position = user
                    .roles
                    .iter()
                    .position(|held| held == role)
                    .ok_or(AuthError::RoleNotGranted)?;
                user.roles.remove(position);
            }
            AuthChange::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Vec::new());
            }
            AuthChange::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|role| role != name);
                }
            }
            AuthChange::RoleGrantPermission { name, permission } => {
                if !permission.is_valid_range() {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let permissions = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                match permissions.iter_mut().find(|held| {
                    held.key == permission.key && held.range_end == permission.range_end
                }) {
                    Some(held) => held.perm_type = permission.perm_type,
                    None => {
                        let position =
                            permissions.partition_point(|held| held.key <= permission.key);
                        permissions.insert(position, permission.clone());
                    }
                }
            }
            AuthChange::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let permissions = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let before = permissions.len();
                permissions.retain(|held| !(held.key == *key && held.range_end == *range_end));
                if permissions.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
        }
        self.revision += 1;
        Ok(())
    }
}

/// A user as etcd's `authpb.User` bytes.
fn user_message(user: &User) -> Vec<u8> {
    use prost::Message;
    lode_protocol::etcd::authpb::User {
        name: Bytes::from(user.name.clone()),
        password: user.password_hash.clone().unwrap_or_default(),
        roles: user.roles.clone(),
        options: Some(lode_protocol::etcd::authpb::UserAddOptions {
            no_password: user.no_password,
        }),
    }
    .encode_to_vec()
}

/// A role as etcd's `authpb.Role` bytes.
fn role_message(name: &str, permissions: &[Permission]) -> Vec<u8> {
    use lode_protocol::etcd::authpb;
    use prost::Message;
    authpb::Role {
        name: Bytes::from(name.to_string()),
        key_permission: permissions
            .iter()
            .map(|p| authpb::Permission {
                perm_type: p.perm_type.to_i32(),
                key: p.key.clone(),
                range_end: p.range_end.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Why stored auth state cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthDecodeError {
    #[error("auth state: unknown format {0}")]
    Format(u8),
    #[error("auth state: truncated")]
    Truncated,
    #[error("auth state: {0}")]
    Malformed(String),
}

/// etcd's backend buckets for auth, and the keys of its `auth` bucket.
pub const ETCD_AUTH_BUCKET: &[u8] = b"auth";
pub const ETCD_USERS_BUCKET: &[u8] = b"authUsers";
pub const ETCD_ROLES_BUCKET: &[u8] = b"authRoles";
const ETCD_ENABLED_KEY: &[u8] = b"authEnabled";
const ETCD_REVISION_KEY: &[u8] = b"authRevision";

/// One of etcd's buckets: its name and its key-value pairs.
pub type EtcdBucket = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// The format [`AuthStore::encode`] writes.
const AUTH_FORMAT: u8 = 1;

impl AuthStore {
    /// The whole store as bytes (for snapshots): format byte | enabled byte | revision (u64) |
    /// user count (u32) | users, each u32 length + etcd's `authpb.User` | role count (u32) |
    /// roles, each u32 length + etcd's `authpb.Role`. Little-endian; users and roles by name.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use bytes::BufMut;
        out.put_u8(AUTH_FORMAT);
        out.put_u8(u8::from(self.enabled));
        out.put_u64_le(self.revision);
        out.put_u32_le(self.users.len() as u32);
        for user in self.users.values() {
            let message = user_message(user);
            out.put_u32_le(message.len() as u32);
            out.put_slice(&message);
        }
        out.put_u32_le(self.roles.len() as u32);
        for (name, permissions) in &self.roles {
            let message = role_message(name, permissions);
            out.put_u32_le(message.len() as u32);
            out.put_slice(&message);
        }
    }

    /// The store as etcd's backend keeps it: the `auth` bucket (`authEnabled`: one byte,
    /// `authRevision`: big-endian u64), `authUsers` (name to `authpb.User`) and `authRoles`
    /// (name to `authpb.Role`), each sorted by key.
    pub fn etcd_buckets(&self) -> [EtcdBucket; 3] {
        let users = self
            .users
            .values()
            .map(|user| (user.name.as_bytes().to_vec(), user_message(user)))
            .collect();
        let roles = self
            .roles
            .iter()
            .map(|(name, permissions)| (name.as_bytes().to_vec(), role_message(name, permissions)))
            .collect();
        let auth = vec![
            (ETCD_ENABLED_KEY.to_vec(), vec![u8::from(self.enabled)]),
            (
                ETCD_REVISION_KEY.to_vec(),
                self.revision.to_be_bytes().to_vec(),
            ),
        ];
        [
            (ETCD_AUTH_BUCKET.to_vec(), auth),
            (ETCD_ROLES_BUCKET.to_vec(), roles),
            (ETCD_USERS_BUCKET.to_vec(), users),
        ]
    }

    /// Reads etcd's auth buckets (absent ones read as empty, as in a database etcd never
    /// enabled auth in), checked as [`AuthStore::decode`] checks.
    pub fn from_etcd_buckets(
        auth: &[(&[u8], &[u8])],
        users: &[(&[u8], &[u8])],
        roles: &[(&[u8], &[u8])],
    ) -> Result<AuthStore, AuthDecodeError> {
        use bytes::BufMut;
        let mut enabled = false;
        let mut revision = 1u64;
        for (key, value) in auth {
            if *key == ETCD_ENABLED_KEY {
                enabled = match value {
                    [0] => false,
                    [1] => true,
                    _ => return Err(AuthDecodeError::Malformed("authEnabled".into())),
                };
            } else if *key == ETCD_REVISION_KEY {
                let bytes: [u8; 8] = (*value)
                    .try_into()
                    .map_err(|_| AuthDecodeError::Malformed("authRevision".into()))?;
                revision = u64::from_be_bytes(bytes);
            }
        }
        // Re-framed as the snapshot section and read by the one checked decoder.
        let mut framed = Vec::new();
        framed.put_u8(AUTH_FORMAT);
        framed.put_u8(u8::from(enabled));
        framed.put_u64_le(revision);
        for entries in [users, roles] {
            framed.put_u32_le(entries.len() as u32);
            for (_, value) in entries {
                framed.put_u32_le(value.len() as u32);
                framed.put_slice(value);
            }
        }
        let store = AuthStore::decode(&framed)?;
        let names_match = users
            .iter()
            .map(|(key, _)| *key)
            .eq(store.users.keys().map(String::as_bytes))
            && roles
                .iter()
                .map(|(key, _)| *key)
                .eq(store.roles.keys().map(String::as_bytes));
        if !names_match {
            return Err(AuthDecodeError::Malformed(
                "a user or role is stored under another name".into(),
            ));
        }
        Ok(store)
    }

    /// Reads what [`AuthStore::encode`] wrote, checking it as input: names UTF-8 and unique,
    /// roles sorted, permission types known and ranges grantable.
    pub fn decode(mut bytes: &[u8]) -> Result<AuthStore, AuthDecodeError> {
        use lode_protocol::etcd::authpb;
        use prost::Message;
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], AuthDecodeError> {
            if bytes.len() < n {
                return Err(AuthDecodeError::Truncated);
            }
            let (head, tail) = bytes.split_at(n);
            *bytes = tail;
            Ok(head)
        }
        fn u32_of(bytes: &mut &[u8]) -> Result<u32, AuthDecodeError> {
            let raw = take(bytes, 4)?;
            Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
        }
        let malformed = |why: String| AuthDecodeError::Malformed(why);
        let format = take(&mut bytes, 1)?[0];
        if format != AUTH_FORMAT {
            return Err(AuthDecodeError::Format(format));
        }
        let enabled = match take(&mut bytes, 1)?[0] {
            0 => false,
            1 => true,
            other => return Err(malformed(format!("enabled flag {other}"))),
        };
        let mut revision = [0u8; 8];
        revision.copy_from_slice(take(&mut bytes, 8)?);
        let mut store = AuthStore {
            enabled,
            revision: u64::from_le_bytes(revision),
            ..AuthStore::default()
        };
        let users = u32_of(&mut bytes)?;
        for _ in 0..users {
            let length = u32_of(&mut bytes)? as usize;
            let message = authpb::User::decode(take(&mut bytes, length)?)
                .map_err(|e| malformed(format!("user: {e}")))?;
            let name = String::from_utf8(message.name.to_vec())
                .map_err(|_| malformed("a user name is not UTF-8".into()))?;
            let mut roles = message.roles.clone();
            roles.sort();
            roles.dedup();
            if roles != message.roles {
                return Err(malformed(format!(
                    "user {name}: roles not sorted and unique"
                )));
            }
            let no_password = message.options.is_some_and(|o| o.no_password);
            let user = User {
                name: name.clone(),
                password_hash: (!message.password.is_empty()).then_some(message.password),
                roles,
                no_password,
            };
            if name.is_empty() || store.users.insert(name.clone(), user).is_some() {
                return Err(malformed(format!("user name {name:?} empty or repeated")));
            }
        }
        let roles = u32_of(&mut bytes)?;
        for _ in 0..roles {
            let length = u32_of(&mut bytes)? as usize;
            let message = authpb::Role::decode(take(&mut bytes, length)?)
                .map_err(|e| malformed(format!("role: {e}")))?;
            let name = String::from_utf8(message.name.to_vec())
                .map_err(|_| malformed("a role name is not UTF-8".into()))?;
            let mut permissions = Vec::with_capacity(message.key_permission.len());
            for permission in message.key_permission {
                let perm_type = PermType::from_i32(permission.perm_type).ok_or_else(|| {
                    malformed(format!(
                        "role {name}: permission type {}",
                        permission.perm_type
                    ))
                })?;
                let permission = Permission {
                    perm_type,
                    key: permission.key,
                    range_end: permission.range_end,
                };
                if !permission.is_valid_range() {
                    return Err(malformed(format!("role {name}: a permission's range")));
                }
                permissions.push(permission);
            }
            if name.is_empty() || store.roles.insert(name.clone(), permissions).is_some() {
                return Err(malformed(format!("role name {name:?} empty or repeated")));
            }
        }
        if !bytes.is_empty() {
            return Err(malformed(format!("{} bytes after the roles", bytes.len())));
        }
        if store.enabled && !store.is_root(ROOT) {
            return Err(malformed(
                "auth is on without a root user holding the root role".into(),
            ));
        }
        Ok(store)
    }
}

/// A store with auth on, root, a role with permissions and a user holding it (for the tests of
/// the formats that carry a store).
#[cfg(test)]
pub(crate) fn sample_store() -> AuthStore {
    let mut store = AuthStore::new();
    let user = |name: &str| AuthChange::UserAdd {
        name: name.into(),
        password_hash: Some(Bytes::from(format!("$2a$10${name}"))),
        no_password: false,
    };
    let grant = |user: &str, role: &str| AuthChange::UserGrantRole {
        user: user.into(),
        role: role.into(),
    };
    for change in [
        user("root"),
        grant("root", "root"),
        AuthChange::RoleAdd {
            name: "reader".into(),
        },
        AuthChange::RoleGrantPermission {
            name: "reader".into(),
            permission: Permission {
                perm_type: PermType::Read,
                key: Bytes::from_static(b"config/"),
                range_end: Bytes::from_static(b"config0"),
            },
        },
        user("alice"),
        grant("alice", "reader"),
        AuthChange::Enable,
    ] {
        if let Err(error) = store.apply(&change) {
            panic!("{change:?}: {error}");
        }
    }
    store
}

#[cfg(test)]
mod tests;
