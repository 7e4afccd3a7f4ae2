//! Who a request speaks for and what it may do, answered on the core that serves it.
//!
//! ```text
//!   core 0 applies an auth change ──► AuthShared::applied ──► store (Arc) + generation += 1
//!                                                  │
//!   any core: AuthGate::caller(credentials) ───────┘ one atomic load; on a new generation
//!        │                                            the core takes the new store (a lock,
//!        │                                            once per change) and drops its caches
//!        ├─ token ──► the core's token cache (simple: the shared table at most once a
//!        │            second per token, which also renews it; JWT: verified once per core)
//!        ├─ or the client certificate's CN
//!        └─► Caller { user, revision, permissions (merged once per user per core) }
//! ```
//!
//! Invariants:
//! - A request's permissions are those of the store at one auth revision, and the request
//!   carries that revision: writes into the log (the proposal stamp), where every member
//!   refuses it alike if the store moved on by the time it is applied; reads check it again
//!   after reading. So a revoked permission takes effect at once and is never half-applied.
//! - The hot path of an authorized request takes no lock and computes no hash of a password or
//!   a signature: one atomic load, two lookups in core-local maps.
//! - Tokens live per member (simple: learnt from the log's Authenticate entries, renewed by
//!   use on this member, as etcd's) and go when their user's password changes, the user is
//!   deleted or auth is turned off.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::authorize::check_revision;
use super::error::AuthError;
use super::perms::UserPermissions;
use super::store::{AuthChange, AuthStore};
use super::token::{JwtTokens, SimpleTokens, TokenInfo};

/// What a request presents: a token (gRPC metadata `token`, the gateway's `Authorization`
/// header, a native frame's `token`) and the CN of its verified client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub token: Option<String>,
    pub common_name: Option<String>,
}

impl Credentials {
    /// The token a header value carries: bare, or after "Bearer " (etcd takes both).
    pub fn token_in_header(value: &str) -> &str {
        value.strip_prefix("Bearer ").unwrap_or(value)
    }

    pub fn token(token: impl Into<String>) -> Credentials {
        Credentials {
            token: Some(token.into()),
            common_name: None,
        }
    }
}

/// How this member issues and checks tokens (`--auth-token`).
pub enum TokenProvider {
    Simple { ttl: Duration },
    Jwt(JwtTokens),
}

/// The auth state every core of a member reads: the applied store, published by the consensus
/// core after each change, and the member's tokens.
pub struct AuthShared {
    /// Advanced after every publication (Release): a core that sees a new value takes `store`.
    generation: AtomicU64,
    store: Mutex<Arc<AuthStore>>,
    simple: Mutex<SimpleTokens>,
    jwt: Option<JwtTokens>,
    /// How long a core trusts a simple token it checked without asking the shared table again
    /// (which also renews it): short against the TTL, so expiry and renewal stay near etcd's.
    recheck: Duration,
}

impl std::fmt::Debug for AuthShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthShared")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("jwt", &self.jwt)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AuthShared {
    pub fn new(provider: TokenProvider) -> AuthShared {
        let (ttl, jwt) = match provider {
            TokenProvider::Simple { ttl } => (ttl, None),
            TokenProvider::Jwt(jwt) => (super::token::DEFAULT_JWT_TTL, Some(jwt)),
        };
        AuthShared {
            generation: AtomicU64::new(0),
            store: Mutex::new(Arc::new(AuthStore::new())),
            simple: Mutex::new(SimpleTokens::new(ttl)),
            jwt,
            recheck: (ttl / 2).min(Duration::from_secs(1)),
        }
    }

    /// Simple tokens with etcd's default TTL (tests, tools).
    pub fn simple_default() -> AuthShared {
        AuthShared::new(TokenProvider::Simple {
            ttl: Duration::from_secs(300),
        })
    }

    /// Whether tokens are JWTs (issued by the proposer after its Authenticate is applied).
    pub fn issues_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The store as the cores see it now.
    pub fn store(&self) -> Arc<AuthStore> {
        lock(&self.store).clone()
    }

    /// Publishes the store after `change` was applied to it (or after a snapshot replaced it:
    /// `None`), dropping the tokens the change ends. A snapshot may skip changes that ended
    /// tokens (a password change, a deletion), so it ends them all: clients authenticate again.
    pub fn applied(&self, change: Option<&AuthChange>, store: &AuthStore) {
        {
            let mut tokens = lock(&self.simple);
            match change {
                Some(AuthChange::UserDelete { name })
                | Some(AuthChange::UserChangePassword { name, .. }) => tokens.invalidate_user(name),
                Some(_) => {}
                None => tokens.clear(),
            }
            if !store.enabled() {
                tokens.clear();
            }
        }
        *lock(&self.store) = Arc::new(store.clone());
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Registers the simple token of an Authenticate applied at log `index` (every member does,
    /// so any member accepts it).
    pub fn assign_simple(&self, prefix: &str, index: u64, user: &str, revision: u64) -> String {
        let now = Instant::now();
        let mut tokens = lock(&self.simple);
        tokens.expire(now);
        let info = TokenInfo {
            user: user.to_string(),
            revision,
        };
        tokens.assign(prefix, index, info, now)
    }

    /// A signed token for `user` at auth `revision` (JWT only).
    pub fn issue_jwt(&self, user: &str, revision: u64) -> Result<String, String> {
        let jwt = self
            .jwt
            .as_ref()
            .ok_or("this member issues simple tokens")?;
        let info = TokenInfo {
            user: user.to_string(),
            revision,
        };
        jwt.assign(&info, SystemTime::now())
    }

    /// Simple tokens this member holds.
    pub fn simple_tokens(&self) -> usize {
        lock(&self.simple).len()
    }
}

/// Most tokens a core remembers; past it the cache starts again (a flood of distinct tokens
/// costs lookups in the shared table, never unbounded memory).
const MAX_CACHED_TOKENS: usize = 16 * 1024;

/// A token a core has checked.
struct CachedToken {
    user: Rc<str>,
    /// The revision a JWT names; `None` for a simple token (it speaks at the current one).
    jwt_revision: Option<u64>,
    /// Simple: when the shared table last confirmed (and renewed) it. JWT: its expiry.
    checked: Instant,
    expires: Option<SystemTime>,
}

/// One core's view of the auth state.
struct View {
    generation: u64,
    store: Arc<AuthStore>,
    users: HashMap<Rc<str>, Rc<UserPermissions>>,
    tokens: HashMap<String, CachedToken>,
}

impl View {
    /// `user`'s merged permissions in this view, merged once per user (an unknown user may do
    /// nothing: etcd's permission denied).
    fn permissions_of(&mut self, user: &str) -> Rc<UserPermissions> {
        if let Some(permissions) = self.users.get(user) {
            return permissions.clone();
        }
        let permissions = Rc::new(self.store.permissions(user).unwrap_or_default());
        self.users.insert(Rc::from(user), permissions.clone());
        permissions
    }
}

/// A core's door to the auth state: who a request speaks for, with what permissions.
pub struct AuthGate {
    shared: Arc<AuthShared>,
    view: RefCell<View>,
}

/// Who a request speaks for and what it may do, as of one auth revision.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `None` while auth is off: everything is allowed.
    checked: Option<CheckedCaller>,
}

#[derive(Clone, Debug)]
struct CheckedCaller {
    /// `None`: no credentials (etcd's empty user name).
    user: Option<Rc<str>>,
    /// The auth revision the request speaks at.
    revision: u64,
    /// The store's revision when the caller was made.
    store_revision: u64,
    permissions: Rc<UserPermissions>,
}

impl Caller {
    /// A caller while auth is off (or the server itself): everything is allowed.
    pub fn unchecked() -> Caller {
        Caller { checked: None }
    }

    /// Whether auth applies to this caller (it was on when the caller was made).
    pub fn is_checked(&self) -> bool {
        self.checked.is_some()
    }

    /// The user it speaks for (`None` while auth is off, or without credentials).
    pub fn user(&self) -> Option<&str> {
        self.checked.as_ref().and_then(|c| c.user.as_deref())
    }

    /// Runs etcd's check of one request: without credentials "user name is empty", at an older
    /// revision than the store's "revision of auth store is old", then `check` against the
    /// user's permissions.
    pub fn permit(
        &self,
        check: impl FnOnce(&UserPermissions) -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        let Some(caller) = &self.checked else {
            return Ok(());
        };
        if caller.user.is_none() {
            return Err(AuthError::UserEmpty);
        }
        check_revision(caller.revision, caller.store_revision)?;
        check(&caller.permissions)
    }

    /// Requests only root may make.
    pub fn permit_admin(&self) -> Result<(), AuthError> {
        self.permit(super::authorize::check_admin)
    }

    /// The auth revision a write it makes is stamped with in the log: that of the store its
    /// permissions were read from (0: no user, or auth off). Not a JWT's own revision, which
    /// may be ahead of a member that lags: the entry is then refused at apply as old, never
    /// let through on permissions the store had before.
    pub fn stamp(&self) -> u64 {
        match &self.checked {
            Some(caller) if caller.user.is_some() => caller.store_revision,
            _ => 0,
        }
    }
}

impl AuthGate {
    pub fn new(shared: Arc<AuthShared>) -> AuthGate {
        let store = shared.store();
        let generation = shared.generation.load(Ordering::Acquire);
        AuthGate {
            shared,
            view: RefCell::new(View {
                generation,
                store,
                users: HashMap::new(),
                tokens: HashMap::new(),
            }),
        }
    }

    pub fn shared(&self) -> &Arc<AuthShared> {
        &self.shared
    }

    /// Takes the newest published store if it changed (one atomic load when it did not).
    fn refresh(&self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut view = self.view.borrow_mut();
        if view.generation == generation {
            return;
        }
        view.store = self.shared.store();
        view.generation = generation;
        view.users.clear();
        view.tokens.clear();
    }

    /// Advanced with every publication of the store: a watch stream that saw it change checks
    /// its watches again.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Whether `user` may read every key of `key`/`range_end` now (true while auth is off; an
    /// unknown user may read nothing): how watches already made follow their user.
    pub fn user_may_read(&self, user: &str, key: &bytes::Bytes, range_end: &bytes::Bytes) -> bool {
        self.refresh();
        let mut view = self.view.borrow_mut();
        if !view.store.enabled() {
            return true;
        }
        view.permissions_of(user).may_read(key, range_end)
    }

    /// Whether auth is on, as this core sees it now.
    pub fn enabled(&self) -> bool {
        self.refresh();
        self.view.borrow().store.enabled()
    }

    /// The store as this core sees it now.
    pub fn store(&self) -> Arc<AuthStore> {
        self.refresh();
        self.view.borrow().store.clone()
    }

    /// Who `credentials` speak for. While auth is off, everyone may do anything and
    /// credentials are not looked at. A token that is unknown, expired or no longer valid is
    /// etcd's "invalid auth token" (its clients re-authenticate on exactly that); without a
    /// token, a verified client certificate's CN names the user.
    pub fn caller(&self, credentials: &Credentials) -> Result<Caller, AuthError> {
        self.refresh();
        let mut view = self.view.borrow_mut();
        if !view.store.enabled() {
            return Ok(Caller::unchecked());
        }
        let store_revision = view.store.revision();
        let (user, revision) = if let Some(token) = &credentials.token {
            self.token_user(&mut view, token)?
        } else if let Some(name) = credentials.common_name.as_deref().filter(|n| !n.is_empty()) {
            (Rc::from(name), store_revision)
        } else {
            return Ok(Caller {
                checked: Some(CheckedCaller {
                    user: None,
                    revision: 0,
                    store_revision,
                    permissions: Rc::default(),
                }),
            });
        };
        let permissions = view.permissions_of(&user);
        Ok(Caller {
            checked: Some(CheckedCaller {
                user: Some(user),
                revision,
                store_revision,
                permissions,
            }),
        })
    }

    /// The user a token speaks for and the revision it speaks at.
    fn token_user(&self, view: &mut View, token: &str) -> Result<(Rc<str>, u64), AuthError> {
        let now = Instant::now();
        let store_revision = view.store.revision();
        if let Some(cached) = view.tokens.get(token) {
            let fresh = match cached.expires {
                Some(expires) => SystemTime::now() < expires,
                None => now.duration_since(cached.checked) < self.shared.recheck,
            };
            if fresh {
                return Ok((
                    cached.user.clone(),
                    cached.jwt_revision.unwrap_or(store_revision),
                ));
            }
        }
        view.tokens.remove(token);
        let (info, jwt_revision, expires) = match &self.shared.jwt {
            Some(jwt) => {
                let (info, expires) = jwt
                    .info_until(token, SystemTime::now())
                    .ok_or(AuthError::InvalidAuthToken)?;
                let revision = info.revision;
                (info, Some(revision), Some(expires))
            }
            None => {
                let info = lock(&self.shared.simple)
                    .info(token, now)
                    .ok_or(AuthError::InvalidAuthToken)?;
                (info, None, None)
            }
        };
        if view.tokens.len() >= MAX_CACHED_TOKENS {
            view.tokens.clear();
        }
        let user: Rc<str> = Rc::from(info.user.as_str());
        view.tokens.insert(
            token.to_string(),
            CachedToken {
                user: user.clone(),
                jwt_revision,
                checked: now,
                expires,
            },
        );
        Ok((user, jwt_revision.unwrap_or(store_revision)))
    }

    /// After a read made as `caller`: refused if the auth store changed meanwhile (etcd checks
    /// the revision again after reading, so a revocation is never missed by a read that
    /// raced it).
    pub fn still_current(&self, caller: &Caller) -> Result<(), AuthError> {
        let Some(checked) = &caller.checked else {
            return Ok(());
        };
        self.refresh();
        let view = self.view.borrow();
        if !view.store.enabled() {
            return Ok(());
        }
        check_revision(checked.store_revision, view.store.revision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::sample_store;
    use bytes::Bytes;

    fn enabled_sample() -> AuthStore {
        let mut store = sample_store();
        store.apply(&AuthChange::Enable).expect("enable");
        store
    }

    #[test]
    fn callers_follow_the_published_store_and_their_tokens() {
        let shared = Arc::new(AuthShared::simple_default());
        let gate = AuthGate::new(shared.clone());
        // Auth off: anyone may do anything, credentials or not.
        let anyone = gate.caller(&Credentials::token("nonsense")).expect("off");
        assert!(!anyone.is_checked());
        assert_eq!(anyone.permit_admin(), Ok(()));

        let store = enabled_sample();
        shared.applied(Some(&AuthChange::Enable), &store);
        let nobody = gate
            .caller(&Credentials::default())
            .expect("no credentials");
        assert_eq!(nobody.permit(|_| Ok(())), Err(AuthError::UserEmpty));
        assert_eq!(nobody.stamp(), 0);
        assert_eq!(
            gate.caller(&Credentials::token("unknown.1")).unwrap_err(),
            AuthError::InvalidAuthToken
        );
        let token = shared.assign_simple("abcdefghijklmnop", 9, "root", store.revision());
        let root = gate.caller(&Credentials::token(&token)).expect("root");
        assert_eq!(root.user(), Some("root"));
        assert_eq!(root.permit_admin(), Ok(()));
        assert_eq!(root.stamp(), store.revision());
        // A CN names a user when no token is given.
        let by_certificate = gate
            .caller(&Credentials {
                token: None,
                common_name: Some("root".into()),
            })
            .expect("cn");
        assert_eq!(by_certificate.permit_admin(), Ok(()));
        // An unknown user may do nothing.
        let stranger = gate
            .caller(&Credentials {
                token: None,
                common_name: Some("stranger".into()),
            })
            .expect("cn");
        assert_eq!(
            stranger.permit(|p| super::super::authorize::check_range(
                p,
                &crate::mvcc::request::RangeRequest {
                    key: Bytes::from_static(b"k"),
                    ..Default::default()
                }
            )),
            Err(AuthError::PermissionDenied)
        );

        // A change published: the caller made before it is old, and its token stays valid
        // unless the change was its user's.
        let mut changed = store.clone();
        let change = AuthChange::RoleAdd { name: "new".into() };
        changed.apply(&change).expect("role add");
        shared.applied(Some(&change), &changed);
        assert_eq!(gate.still_current(&root), Err(AuthError::AuthOldRevision));
        let again = gate
            .caller(&Credentials::token(&token))
            .expect("still valid");
        assert_eq!(again.stamp(), changed.revision());
        assert_eq!(gate.still_current(&again), Ok(()));

        let change = AuthChange::UserChangePassword {
            name: "root".into(),
            password_hash: Some(Bytes::from_static(b"other")),
        };
        changed.apply(&change).expect("password");
        shared.applied(Some(&change), &changed);
        assert_eq!(
            gate.caller(&Credentials::token(&token)).unwrap_err(),
            AuthError::InvalidAuthToken
        );

        // A snapshot installed: it may skip changes that ended tokens, so every token goes.
        let token = shared.assign_simple("abcdefghijklmnop", 11, "root", changed.revision());
        shared.applied(None, &changed);
        assert_eq!(
            gate.caller(&Credentials::token(&token)).unwrap_err(),
            AuthError::InvalidAuthToken
        );
        // Turned off: every token goes.
        let token = shared.assign_simple("abcdefghijklmnop", 12, "root", changed.revision());
        changed.apply(&AuthChange::Disable).expect("disable");
        shared.applied(Some(&AuthChange::Disable), &changed);
        assert_eq!(shared.simple_tokens(), 0);
        assert!(!gate
            .caller(&Credentials::token(&token))
            .expect("off")
            .is_checked());
    }

    #[test]
    fn a_jwt_speaks_at_the_revision_it_names_on_any_member() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let (private, public) = (key.serialize_pem(), key.public_key_pem());
        let jwt = |private: Option<&str>| {
            JwtTokens::new(
                "ES256",
                public.as_bytes(),
                private.map(str::as_bytes),
                Duration::from_secs(60),
            )
            .expect("jwt")
        };
        let issuer = Arc::new(AuthShared::new(TokenProvider::Jwt(jwt(Some(&private)))));
        let verifier = Arc::new(AuthShared::new(TokenProvider::Jwt(jwt(None))));
        let store = enabled_sample();
        issuer.applied(None, &store);
        verifier.applied(None, &store);
        let token = issuer.issue_jwt("root", store.revision()).expect("sign");
        assert!(verifier.issue_jwt("root", 1).is_err(), "no private key");
        let gate = AuthGate::new(verifier.clone());
        let root = gate.caller(&Credentials::token(&token)).expect("verified");
        assert_eq!(root.permit_admin(), Ok(()));
        // A token from a member ahead of this one: its writes are stamped with the revision
        // this member's permissions come from, so they are refused at apply as old, never let
        // through on older permissions.
        let ahead = issuer
            .issue_jwt("root", store.revision() + 5)
            .expect("sign");
        let early = gate.caller(&Credentials::token(&ahead)).expect("verified");
        assert_eq!(early.stamp(), store.revision());
        // After a change, the token names an old revision: refused until re-authenticated.
        let mut changed = store.clone();
        let change = AuthChange::RoleAdd { name: "x".into() };
        changed.apply(&change).expect("role");
        verifier.applied(Some(&change), &changed);
        let stale = gate
            .caller(&Credentials::token(&token))
            .expect("still signed");
        assert_eq!(stale.permit_admin(), Err(AuthError::AuthOldRevision));
        let mut forged = token.clone();
        forged.push('x');
        assert_eq!(
            gate.caller(&Credentials::token(&forged)).unwrap_err(),
            AuthError::InvalidAuthToken
        );
    }
}
