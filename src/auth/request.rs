//! etcd's Auth calls as lode's requests carry them (one shape for all 17, as the native wire
//! does), and the answer shared by all of them.

use bytes::Bytes;

use super::perms::Permission;
use super::store::AuthChange;
use crate::mvcc::request::ResponseHeader;

/// Which of etcd's Auth calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthKind {
    Enable,
    Disable,
    Status,
    Authenticate,
    UserAdd,
    UserGet,
    UserList,
    UserDelete,
    UserChangePassword,
    UserGrantRole,
    UserRevokeRole,
    RoleAdd,
    RoleGet,
    RoleList,
    RoleDelete,
    RoleGrantPermission,
    RoleRevokePermission,
}

impl AuthKind {
    /// Every call, in wire order (the wire number is the position).
    pub const ALL: [AuthKind; 17] = [
        AuthKind::Enable,
        AuthKind::Disable,
        AuthKind::Status,
        AuthKind::Authenticate,
        AuthKind::UserAdd,
        AuthKind::UserGet,
        AuthKind::UserList,
        AuthKind::UserDelete,
        AuthKind::UserChangePassword,
        AuthKind::UserGrantRole,
        AuthKind::UserRevokeRole,
        AuthKind::RoleAdd,
        AuthKind::RoleGet,
        AuthKind::RoleList,
        AuthKind::RoleDelete,
        AuthKind::RoleGrantPermission,
        AuthKind::RoleRevokePermission,
    ];

    pub fn to_u8(self) -> u8 {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0) as u8
    }

    pub fn from_u8(value: u8) -> Option<AuthKind> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// Calls that change the store (through the log).
    pub fn changes_store(self) -> bool {
        !matches!(
            self,
            AuthKind::Status
                | AuthKind::Authenticate
                | AuthKind::UserGet
                | AuthKind::UserList
                | AuthKind::RoleGet
                | AuthKind::RoleList
        )
    }
}

/// One Auth call. Which fields mean something depends on `kind` (as etcd's request messages):
/// `name` is the user (the role for the role calls), `role` the role granted to or revoked
/// from a user. A client's password comes in `password`; a request proposed to the log carries
/// its bcrypt hash in `password_hash` instead, and an Authenticate the token prefix its
/// proposer chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRequest {
    pub kind: AuthKind,
    pub name: String,
    pub role: String,
    pub password: String,
    pub password_hash: Bytes,
    pub no_password: bool,
    pub permission: Option<Permission>,
    pub key: Bytes,
    pub range_end: Bytes,
    pub token_prefix: String,
    /// The auth revision the serving core authorized the call at (0: no user, or auth off);
    /// not on the wire: the log carries it in the proposal's stamp.
    pub caller_revision: u64,
}

impl AuthRequest {
    /// A call of `kind` with every field empty.
    pub fn new(kind: AuthKind) -> AuthRequest {
        AuthRequest {
            kind,
            name: String::new(),
            role: String::new(),
            password: String::new(),
            password_hash: Bytes::new(),
            no_password: false,
            permission: None,
            key: Bytes::new(),
            range_end: Bytes::new(),
            token_prefix: String::new(),
            caller_revision: 0,
        }
    }

    /// The change it makes to the store (its password already hashed); `None` for the calls
    /// that do not change the store. A grant without a permission is etcd's
    /// "permission not given".
    pub fn change(&self) -> Result<Option<AuthChange>, super::AuthError> {
        let hash = (!self.password_hash.is_empty()).then(|| self.password_hash.clone());
        Ok(Some(match self.kind {
            AuthKind::Enable => AuthChange::Enable,
            AuthKind::Disable => AuthChange::Disable,
            AuthKind::UserAdd => AuthChange::UserAdd {
                name: self.name.clone(),
                password_hash: hash,
                no_password: self.no_password,
            },
            AuthKind::UserDelete => AuthChange::UserDelete {
                name: self.name.clone(),
            },
            AuthKind::UserChangePassword => AuthChange::UserChangePassword {
                name: self.name.clone(),
                password_hash: hash,
            },
            AuthKind::UserGrantRole => AuthChange::UserGrantRole {
                user: self.name.clone(),
                role: self.role.clone(),
            },
            AuthKind::UserRevokeRole => AuthChange::UserRevokeRole {
                name: self.name.clone(),
                role: self.role.clone(),
            },
            AuthKind::RoleAdd => AuthChange::RoleAdd {
                name: self.name.clone(),
            },
            AuthKind::RoleDelete => AuthChange::RoleDelete {
                name: self.name.clone(),
            },
            AuthKind::RoleGrantPermission => AuthChange::RoleGrantPermission {
                name: self.name.clone(),
                permission: self
                    .permission
                    .clone()
                    .ok_or(super::AuthError::PermissionNotGiven)?,
            },
            AuthKind::RoleRevokePermission => AuthChange::RoleRevokePermission {
                role: self.name.clone(),
                key: self.key.clone(),
                range_end: self.range_end.clone(),
            },
            AuthKind::Status
            | AuthKind::Authenticate
            | AuthKind::UserGet
            | AuthKind::UserList
            | AuthKind::RoleGet
            | AuthKind::RoleList => return Ok(None),
        }))
    }
}

/// The answer to any Auth call: AuthStatus fills `enabled` and `auth_revision`, Authenticate
/// `token`, UserGet `names` (the user's roles), UserList and RoleList `names`, RoleGet
/// `permissions`; the others only the header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthResponse {
    pub header: ResponseHeader,
    pub enabled: bool,
    pub auth_revision: u64,
    pub token: String,
    pub names: Vec<String>,
    pub permissions: Vec<Permission>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PermType;

    #[test]
    fn kinds_round_trip_their_wire_numbers_and_say_what_they_change() {
        for (number, kind) in AuthKind::ALL.iter().enumerate() {
            assert_eq!(kind.to_u8() as usize, number);
            assert_eq!(AuthKind::from_u8(number as u8), Some(*kind));
        }
        assert_eq!(AuthKind::from_u8(17), None);
        let changing = AuthKind::ALL.iter().filter(|k| k.changes_store()).count();
        assert_eq!(changing, 11);
        for kind in AuthKind::ALL {
            let mut request = AuthRequest::new(kind);
            request.permission = Some(Permission {
                perm_type: PermType::Read,
                key: Bytes::from_static(b"k"),
                range_end: Bytes::new(),
            });
            assert_eq!(
                request.change().expect("change").is_some(),
                kind.changes_store(),
                "{kind:?}"
            );
        }
        assert_eq!(
            AuthRequest::new(AuthKind::RoleGrantPermission).change(),
            Err(crate::auth::AuthError::PermissionNotGiven)
        );
    }
}
