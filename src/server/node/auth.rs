//! etcd's Auth calls on the consensus core (`serve_auth`): reads after a ReadIndex, changes
//! through the log, passwords hashed and checked off the core.

use std::rc::Rc;

use crate::consensus::{Consensus, ServerError};
use crate::mvcc::request::ResponseHeader;
use crate::wal::io::DmaDir;

/// etcd's Auth calls, on the consensus core, once the serving core found the caller may make
/// them (`Node::auth`). Reads (status, users, roles) are answered from the applied store after
/// a ReadIndex.
/// Changes go through the log, stamped with the auth revision they were authorized at;
/// passwords are hashed first, on a thread of their own (bcrypt is slow by design and never
/// runs on the core that drives Raft). Authenticate checks the password the same way, then
/// puts an Authenticate entry in the log (stamped with the revision the password was checked
/// at, so a password change that raced it refuses it, and it is tried again).
pub(super) async fn serve_auth(
    consensus: &Consensus<DmaDir>,
    mut request: crate::auth::request::AuthRequest,
) -> Result<crate::auth::request::AuthResponse, ServerError> {
    use crate::auth::request::{AuthKind, AuthResponse};
    let header = |consensus: &Consensus<DmaDir>| ResponseHeader::at(consensus.revision().get());
    if !request.kind.changes_store() && request.kind != AuthKind::Authenticate {
        // Linearizable, as etcd's (which puts these reads through its log): a follower answers
        // once it has applied everything committed when the read arrived.
        consensus.read_index().await?;
    }
    let mut answer = AuthResponse {
        header: header(consensus),
        ..AuthResponse::default()
    };
    // The applied store as published to the cores (the sequencer publishes each change as it
    // applies it): shared, not copied.
    let store = consensus.config().auth.store();
    match request.kind {
        AuthKind::Status => {
            answer.enabled = store.enabled();
            answer.auth_revision = store.revision();
            Ok(answer)
        }
        AuthKind::UserList => {
            answer.names = store.users().map(|u| u.name.clone()).collect();
            Ok(answer)
        }
        AuthKind::UserGet => {
            answer.names = store.user_get(&request.name)?;
            Ok(answer)
        }
        AuthKind::RoleList => {
            answer.names = store.roles().map(|(name, _)| name.clone()).collect();
            Ok(answer)
        }
        AuthKind::RoleGet => {
            answer.permissions = store.role_get(&request.name)?;
            Ok(answer)
        }
        AuthKind::Authenticate => authenticate(consensus, request).await,
        AuthKind::Enable
        | AuthKind::Disable
        | AuthKind::UserAdd
        | AuthKind::UserDelete
        | AuthKind::UserChangePassword
        | AuthKind::UserGrantRole
        | AuthKind::UserRevokeRole
        | AuthKind::RoleAdd
        | AuthKind::RoleDelete
        | AuthKind::RoleGrantPermission
        | AuthKind::RoleRevokePermission => {
            // etcd's checks that need no log are answered before any hashing.
            if let Some(change) = request.change()? {
                crate::auth::AuthStore::clone(&store).apply(&change)?;
            }
            let hashes = matches!(
                request.kind,
                AuthKind::UserAdd | AuthKind::UserChangePassword
            ) && !request.no_password;
            if hashes {
                let password = std::mem::take(&mut request.password);
                let cost = consensus.config().bcrypt_cost;
                request.password_hash =
                    off_core(move || crate::auth::token::hash_password(&password, cost))
                        .await?
                        .map_err(ServerError::Internal)?;
            }
            request.password.clear();
            let mut answer = consensus
                .auth_change(&request, request.caller_revision)
                .await?;
            answer.header = header(consensus);
            Ok(answer)
        }
    }
}

/// Password checks running at once on one member; more wait their turn. Guessing passwords
/// costs a bcrypt each (etcd's only defence too); this bound keeps a flood of guesses from
/// taking more than two threads' worth of the machine.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// etcd's Authenticate: after a ReadIndex (so the store is current), the password is checked
/// against its hash off the core; the Authenticate entry then assigns the token on every
/// member (simple) or, applied, lets this member sign one (JWT). Tried again, at most three
/// times, when an auth change raced it.
async fn authenticate(
    consensus: &Consensus<DmaDir>,
    request: crate::auth::request::AuthRequest,
) -> Result<crate::auth::request::AuthResponse, ServerError> {
    use crate::auth::request::{AuthKind, AuthRequest};
    use crate::auth::AuthError;
    thread_local! {
        static CHECKS: Rc<glommio::sync::Semaphore> =
            Rc::new(glommio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS as u64));
    }
    let checks = CHECKS.with(Rc::clone);
    let shared = consensus.config().auth.clone();
    let mut attempts = 0;
    loop {
        attempts += 1;
        consensus.read_index().await?;
        let store = shared.store();
        let hash = store.password_hash(&request.name)?;
        let checked_at = store.revision();
        let matches = {
            let _turn = checks
                .acquire_permit(1)
                .await
                .map_err(|_| ServerError::Stopped)?;
            let password = request.password.clone();
            off_core(move || crate::auth::token::password_matches(&password, &hash)).await?
        };
        if !matches {
            return Err(AuthError::AuthFailed.into());
        }
        let entry = AuthRequest {
            name: request.name.clone(),
            token_prefix: if shared.issues_jwt() {
                String::new()
            } else {
                crate::auth::token::SimpleTokens::random_prefix()?
            },
            ..AuthRequest::new(AuthKind::Authenticate)
        };
        match consensus.auth_change(&entry, checked_at).await {
            Ok(mut answer) => {
                if shared.issues_jwt() {
                    answer.token = shared
                        .issue_jwt(&request.name, answer.auth_revision)
                        .map_err(ServerError::Internal)?;
                }
                answer.header = ResponseHeader::at(consensus.revision().get());
                return Ok(answer);
            }
            Err(ServerError::Auth(AuthError::AuthOldRevision)) if attempts < 3 => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Runs `work` (bcrypt: slow by design) on a thread of its own, awaited without blocking the
/// core.
async fn off_core<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    let (sender, receiver) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("lode-bcrypt".into())
        .spawn(move || {
            let _ = sender.send(work());
        })
        .map_err(|e| ServerError::Internal(format!("starting a hashing thread: {e}")))?;
    receiver
        .await
        .map_err(|_| ServerError::Internal("the hashing thread ended".into()))
}
