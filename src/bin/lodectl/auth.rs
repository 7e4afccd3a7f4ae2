//! user, role and auth: etcdctl's commands for users, roles and switching authentication on
//! and off (each one AuthRequest), and the lines etcdctl prints for their answers.

use clap::Subcommand;
use lode::api::native::Request;

use crate::action::Action;
use crate::go_bool;
use crate::kv::Printer;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Adds a user: NAME or NAME:PASSWORD (the password is read from standard input when not
    /// given).
    Add {
        #[arg(value_name = "USER")]
        name: String,
        /// A user without a password (it authenticates by its TLS certificate's CN).
        #[arg(long)]
        no_password: bool,
        /// The password, instead of NAME:PASSWORD or standard input.
        #[arg(long)]
        new_user_password: Option<String>,
        /// Read the password as a line of standard input without prompting.
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
    },
    /// Shows a user's roles.
    Get {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Lists the users.
    List,
    /// Deletes a user.
    Delete {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Changes a user's password (read from standard input).
    Passwd {
        #[arg(value_name = "USER")]
        name: String,
        /// Read the password as a line of standard input without prompting.
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
    },
    /// Grants a role to a user.
    GrantRole {
        #[arg(value_name = "USER")]
        name: String,
        role: String,
    },
    /// Revokes a role from a user.
    RevokeRole {
        #[arg(value_name = "USER")]
        name: String,
        role: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum RoleCommand {
    /// Adds a role.
    Add { role: String },
    /// Shows a role's permissions.
    Get { role: String },
    /// Lists the roles.
    List,
    /// Deletes a role.
    Delete { role: String },
    /// Grants a permission (read, write or readwrite) on a key or range to a role.
    GrantPermission {
        role: String,
        perm_type: String,
        key: String,
        range_end: Option<String>,
        /// The permission covers every key with this prefix.
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        prefix: bool,
        /// The permission covers every key from this one on.
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        from_key: bool,
    },
    /// Revokes a permission from a role.
    RevokePermission {
        role: String,
        key: String,
        range_end: Option<String>,
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        prefix: bool,
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        from_key: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuthCommand {
    /// Turns authentication on.
    Enable,
    /// Turns authentication off.
    Disable,
    /// Whether authentication is on, and the auth revision.
    Status,
}

/// What etcdctl prints for each auth call.
#[derive(Clone, Debug)]
pub(crate) enum AuthPrinter {
    UserAdded(String),
    UserGot(String),
    Users,
    UserDeleted(String),
    PasswordUpdated,
    RoleGranted {
        user: String,
        role: String,
    },
    RoleRevoked {
        user: String,
        role: String,
    },
    RoleAdded(String),
    RoleGot(String),
    Roles,
    RoleDeleted(String),
    RoleUpdated(String),
    PermissionRevoked {
        role: String,
        key: String,
        end: String,
    },
    Enabled,
    Disabled,
    Status,
}

/// The key range an auth permission command names, as etcdctl reads KEY [RANGE_END]
/// --prefix/--from-key.
fn permission_range(
    key: &str,
    range_end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> Result<(bytes::Bytes, bytes::Bytes), String> {
    if prefix && from_key {
        return Err("--from-key and --prefix flags are mutually exclusive".into());
    }
    let end = match (range_end, prefix, from_key) {
        (Some(_), true, _) | (Some(_), _, true) => {
            return Err("too many arguments".into());
        }
        (Some(end), false, false) => end.as_bytes().to_vec(),
        (None, true, false) => lode::mvcc::kv::prefix_range_end(key.as_bytes()).to_vec(),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (None, true, true) => unreachable!("refused above"),
    };
    Ok((
        bytes::Bytes::copy_from_slice(key.as_bytes()),
        bytes::Bytes::from(end),
    ))
}

/// A password: a line read from standard input, or when `interactive` asked for on the
/// terminal without echo (twice for a new one, as etcdctl asks).
fn password_input(user: &str, interactive: bool, confirm: bool) -> Result<String, String> {
    if !interactive {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let ask = |prompt: String| {
        rpassword::prompt_password(prompt).map_err(|e| format!("reading the password: {e}"))
    };
    let first = ask(format!("Password of {user}: "))?;
    if confirm && ask(format!("Type password of {user} again for confirmation: "))? != first {
        return Err("given passwords are different".into());
    }
    Ok(first)
}

/// What `user` asks the server.
pub(crate) fn build_user(command: UserCommand) -> Result<Action, String> {
    use lode::auth::request::{AuthKind, AuthRequest};
    let call = |kind: AuthKind, name: &str| AuthRequest {
        name: name.to_string(),
        ..AuthRequest::new(kind)
    };
    let (request, printer) = match command {
        UserCommand::Add {
            name: user,
            no_password,
            new_user_password,
            interactive,
        } => {
            let (name, password) = match (user.split_once(':'), new_user_password) {
                _ if no_password => (user.clone(), String::new()),
                (Some((name, password)), _) => (name.to_string(), password.to_string()),
                (None, Some(password)) => (user.clone(), password),
                (None, None) => (user.clone(), password_input(&user, interactive, true)?),
            };
            let request = AuthRequest {
                password,
                no_password,
                ..call(AuthKind::UserAdd, &name)
            };
            (request, AuthPrinter::UserAdded(name))
        }
        UserCommand::Get { name: user } => {
            (call(AuthKind::UserGet, &user), AuthPrinter::UserGot(user))
        }
        UserCommand::List => (AuthRequest::new(AuthKind::UserList), AuthPrinter::Users),
        UserCommand::Delete { name: user } => (
            call(AuthKind::UserDelete, &user),
            AuthPrinter::UserDeleted(user),
        ),
        UserCommand::Passwd {
            name: user,
            interactive,
        } => {
            let password = password_input(&user, interactive, true)?;
            let request = AuthRequest {
                password,
                ..call(AuthKind::UserChangePassword, &user)
            };
            (request, AuthPrinter::PasswordUpdated)
        }
        UserCommand::GrantRole { name: user, role } => {
            let request = AuthRequest {
                role: role.clone(),
                ..call(AuthKind::UserGrantRole, &user)
            };
            (request, AuthPrinter::RoleGranted { user, role })
        }
        UserCommand::RevokeRole { name: user, role } => {
            let request = AuthRequest {
                role: role.clone(),
                ..call(AuthKind::UserRevokeRole, &user)
            };
            (request, AuthPrinter::RoleRevoked { user, role })
        }
    };
    Ok(Action::Send(Request::Auth(request), Printer::Auth(printer)))
}

/// What `role` asks the server.
pub(crate) fn build_role(command: RoleCommand) -> Result<Action, String> {
    use lode::auth::request::{AuthKind, AuthRequest};
    let call = |kind: AuthKind, name: &str| AuthRequest {
        name: name.to_string(),
        ..AuthRequest::new(kind)
    };
    let (request, printer) = match command {
        RoleCommand::Add { role } => (call(AuthKind::RoleAdd, &role), AuthPrinter::RoleAdded(role)),
        RoleCommand::Get { role } => (call(AuthKind::RoleGet, &role), AuthPrinter::RoleGot(role)),
        RoleCommand::List => (AuthRequest::new(AuthKind::RoleList), AuthPrinter::Roles),
        RoleCommand::Delete { role } => (
            call(AuthKind::RoleDelete, &role),
            AuthPrinter::RoleDeleted(role),
        ),
        RoleCommand::GrantPermission {
            role,
            perm_type,
            key,
            range_end,
            prefix,
            from_key,
        } => {
            let perm_type = match perm_type.to_ascii_lowercase().as_str() {
                "read" => lode::auth::PermType::Read,
                "write" => lode::auth::PermType::Write,
                "readwrite" => lode::auth::PermType::ReadWrite,
                other => return Err(format!("invalid permission type {other}")),
            };
            let (key, range_end) = permission_range(&key, range_end.as_deref(), prefix, from_key)?;
            let request = AuthRequest {
                permission: Some(lode::auth::Permission {
                    perm_type,
                    key,
                    range_end,
                }),
                ..call(AuthKind::RoleGrantPermission, &role)
            };
            (request, AuthPrinter::RoleUpdated(role))
        }
        RoleCommand::RevokePermission {
            role,
            key,
            range_end,
            prefix,
            from_key,
        } => {
            let (key, range_end) = permission_range(&key, range_end.as_deref(), prefix, from_key)?;
            let printer = AuthPrinter::PermissionRevoked {
                role: role.clone(),
                key: String::from_utf8_lossy(&key).into_owned(),
                end: String::from_utf8_lossy(&range_end).into_owned(),
            };
            let request = AuthRequest {
                key,
                range_end,
                ..call(AuthKind::RoleRevokePermission, &role)
            };
            (request, printer)
        }
    };
    Ok(Action::Send(Request::Auth(request), Printer::Auth(printer)))
}

/// What `auth` asks the server.
pub(crate) fn build_auth(command: AuthCommand) -> Action {
    use lode::auth::request::{AuthKind, AuthRequest};
    let (kind, printer) = match command {
        AuthCommand::Enable => (AuthKind::Enable, AuthPrinter::Enabled),
        AuthCommand::Disable => (AuthKind::Disable, AuthPrinter::Disabled),
        AuthCommand::Status => (AuthKind::Status, AuthPrinter::Status),
    };
    Action::Send(
        Request::Auth(AuthRequest::new(kind)),
        Printer::Auth(printer),
    )
}

/// An auth call's answer as etcdctl's simple output prints it.
pub(crate) fn simple_auth(
    printer: &AuthPrinter,
    answer: &lode::auth::request::AuthResponse,
) -> String {
    let range = |key: &[u8], end: &[u8]| -> String {
        let (key_text, end_text) = (
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(end).into_owned(),
        );
        let mut line = if end == b"\0" {
            format!("\t[{key_text}, <open ended>")
        } else {
            format!("\t[{key_text}, {end_text})")
        };
        if !key.is_empty() && lode::mvcc::kv::prefix_range_end(key).as_ref() == end {
            line.push_str(&format!(" (prefix {key_text})"));
        }
        line + "\n"
    };
    match printer {
        AuthPrinter::UserAdded(name) => format!("User {name} created\n"),
        AuthPrinter::UserGot(name) => {
            let mut out = format!("User: {name}\nRoles:");
            for role in &answer.names {
                out.push_str(&format!(" {role}"));
            }
            out + "\n"
        }
        AuthPrinter::Users | AuthPrinter::Roles => answer
            .names
            .iter()
            .map(|name| format!("{name}\n"))
            .collect(),
        AuthPrinter::UserDeleted(name) => format!("User {name} deleted\n"),
        AuthPrinter::PasswordUpdated => "Password updated\n".into(),
        AuthPrinter::RoleGranted { user, role } => {
            format!("Role {role} is granted to user {user}\n")
        }
        AuthPrinter::RoleRevoked { user, role } => {
            format!("Role {role} is revoked from user {user}\n")
        }
        AuthPrinter::RoleAdded(name) => format!("Role {name} created\n"),
        AuthPrinter::RoleGot(name) => {
            let mut out = format!("Role {name}\n");
            for (title, wanted) in [
                ("KV Read:", lode::auth::PermType::Read),
                ("KV Write:", lode::auth::PermType::Write),
            ] {
                out.push_str(title);
                out.push('\n');
                for permission in &answer.permissions {
                    let covers = permission.perm_type == wanted
                        || permission.perm_type == lode::auth::PermType::ReadWrite;
                    if !covers {
                        continue;
                    }
                    if permission.range_end.is_empty() {
                        out.push_str(&format!("\t{}\n", String::from_utf8_lossy(&permission.key)));
                    } else {
                        out.push_str(&range(&permission.key, &permission.range_end));
                    }
                }
            }
            out
        }
        AuthPrinter::RoleDeleted(name) => format!("Role {name} deleted\n"),
        AuthPrinter::RoleUpdated(name) => format!("Role {name} updated\n"),
        AuthPrinter::PermissionRevoked { role, key, end } => {
            if end.is_empty() {
                format!("Permission of key {key} is revoked from role {role}\n")
            } else if end == "\0" {
                format!("Permission of range [{key}, <open ended> is revoked from role {role}\n")
            } else {
                format!("Permission of range [{key}, {end}) is revoked from role {role}\n")
            }
        }
        AuthPrinter::Enabled => "Authentication Enabled\n".into(),
        AuthPrinter::Disabled => "Authentication Disabled\n".into(),
        AuthPrinter::Status => format!(
            "Authentication Status: {}\nAuthRevision: {}\n",
            answer.enabled, answer.auth_revision
        ),
    }
}
