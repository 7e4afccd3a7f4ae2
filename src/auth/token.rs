//! Auth tokens as etcd issues them (`--auth-token`): `simple` (etcd's default: opaque tokens
//! every member learns from the log, valid for `--auth-token-ttl` after their last use) and
//! `jwt` (signed claims any member verifies with the public key), and the password hash.
//!
//! Time comes in as an argument, so expiry is tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::AuthError;

/// Who a token speaks for, and at which auth revision it was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub user: String,
    pub revision: u64,
}

/// `--auth-token`, parsed (`simple`, or `jwt,pub-key=P,priv-key=K,sign-method=M,ttl=D`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSettings {
    Simple,
    Jwt {
        public_key: std::path::PathBuf,
        private_key: Option<std::path::PathBuf>,
        method: String,
        ttl: Duration,
    },
}

/// etcd's default JWT lifetime.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// The signing methods etcd's `sign-method` takes that lode verifies (asymmetric only: a
/// member that did not issue a token verifies it with the public key).
pub const JWT_METHODS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Parses `--auth-token` with etcd's option syntax and errors.
pub fn parse_token_settings(text: &str) -> Result<TokenSettings, String> {
    let mut parts = text.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut options: HashMap<&str, &str> = HashMap::new();
    for part in parts {
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("invalid auth token option {part:?} (name=value)"));
        };
        if options.insert(name, value).is_some() {
            return Err(format!("auth token option {name} given twice"));
        }
    }
    match kind {
        "simple" if options.is_empty() => Ok(TokenSettings::Simple),
        "simple" => Err("simple tokens take no options".into()),
        "jwt" => {
            let public_key = options
                .remove("pub-key")
                .ok_or("jwt tokens need pub-key=<path of the public key (PEM)>")?;
            let method = options.remove("sign-method").unwrap_or("RS256").to_string();
            if !JWT_METHODS.contains(&method.as_str()) {
                return Err(format!(
                    "unsupported sign-method {method:?} (one of {})",
                    JWT_METHODS.join(", ")
                ));
            }
            let ttl = match options.remove("ttl") {
                Some(ttl) => {
                    crate::duration::parse_go_duration(ttl).map_err(|e| format!("jwt ttl: {e}"))?
                }
                None => DEFAULT_JWT_TTL,
            };
            let private_key = options.remove("priv-key").map(std::path::PathBuf::from);
            if let Some(unknown) = options.keys().next() {
                return Err(format!("unknown jwt option {unknown:?}"));
            }
            Ok(TokenSettings::Jwt {
                public_key: public_key.into(),
                private_key,
                method,
                ttl,
            })
        }
        other => Err(format!("unknown auth token type {other:?} (simple or jwt)")),
    }
}

/// etcd's simple tokens: `<16 random letters>.<log index of the Authenticate>`. The random part
/// is chosen by the member that proposes the Authenticate and travels in the log entry, so every
/// member registers the same token when it applies it. A token is valid until `ttl` passes
/// without a use, its user's password changes or the user goes, or auth is turned off.
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    tokens: HashMap<String, (TokenInfo, Instant)>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: HashMap::new(),
        }
    }

    /// A token prefix: 16 random ASCII letters (etcd's length).
    pub fn random_prefix() -> Result<String, AuthError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| AuthError::AuthFailed)?;
        Ok(bytes
            .iter()
            .map(|b| {
                let letter = b % 52;
                if letter < 26 {
                    char::from(b'a' + letter)
                } else {
                    char::from(b'A' + letter - 26)
                }
            })
            .collect())
    }

    /// Registers the token of an applied Authenticate.
    pub fn assign(&mut self, prefix: &str, index: u64, info: TokenInfo, now: Instant) -> String {
        let token = format!("{prefix}.{index}");
        self.tokens.insert(token.clone(), (info, now + self.ttl));
        token
    }

    /// Who `token` speaks for, if it is valid now; a use renews it for another `ttl`.
    pub fn info(&mut self, token: &str, now: Instant) -> Option<TokenInfo> {
        let (info, expiry) = self.tokens.get_mut(token)?;
        if now >= *expiry {
            self.tokens.remove(token);
            return None;
        }
        *expiry = now + self.ttl;
        Some(info.clone())
    }

    /// Every token of `user` stops working (its password changed, or it was deleted).
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, (info, _)| info.user != user);
    }

    /// Drops expired tokens (memory; `info` refuses them anyway).
    pub fn expire(&mut self, now: Instant) {
        self.tokens.retain(|_, (_, expiry)| now < *expiry);
    }

    /// Auth turned off: every token goes.
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// etcd's JWT claims.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// JWT tokens: issued by a member holding the private key, verified by any member with the
/// public key.
pub struct JwtTokens {
    algorithm: jsonwebtoken::Algorithm,
    encoding: Option<jsonwebtoken::EncodingKey>,
    decoding: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl JwtTokens {
    /// From PEM keys (the private one optional: such a member verifies but cannot issue).
    pub fn new(
        method: &str,
        public_pem: &[u8],
        private_pem: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<JwtTokens, String> {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| format!("unsupported sign-method {method:?}"))?;
        let (decoding, encoding) = match algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                DecodingKey::from_rsa_pem(public_pem).map_err(|e| format!("pub-key: {e}"))?,
                private_pem
                    .map(EncodingKey::from_rsa_pem)
                    .transpose()
                    .map_err(|e| format!("priv-key: {e}"))?,
            ),
            Algorithm::ES256 | Algorithm::ES384 => (
                DecodingKey::from_ec_pem(public_pem).map_err(|e| format!("pub-key: {e}"))?,
                private_pem
                    .map(EncodingKey::from_ec_pem)
                    .transpose()
                    .map_err(|e| format!("priv-key: {e}"))?,
            ),
            Algorithm::EdDSA => (
                DecodingKey::from_ed_pem(public_pem).map_err(|e| format!("pub-key: {e}"))?,
                private_pem
                    .map(EncodingKey::from_ed_pem)
                    .transpose()
                    .map_err(|e| format!("priv-key: {e}"))?,
            ),
            other => return Err(format!("unsupported sign-method {other:?}")),
        };
        Ok(JwtTokens {
            algorithm,
            encoding,
            decoding,
            ttl,
        })
    }

    /// A signed token for `info`, valid for the TTL from `now`.
    pub fn assign(&self, info: &TokenInfo, now: SystemTime) -> Result<String, String> {
        let encoding = self
            .encoding
            .as_ref()
            .ok_or("this member has no priv-key: it verifies tokens but cannot issue them")?;
        let exp = (now + self.ttl)
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = Claims {
            username: info.user.clone(),
            revision: info.revision,
            exp,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(self.algorithm),
            &claims,
            encoding,
        )
        .map_err(|e| e.to_string())
    }

    /// Who `token` speaks for if its signature verifies and it has not expired at `now`.
    pub fn info(&self, token: &str, now: SystemTime) -> Option<TokenInfo> {
        self.info_until(token, now).map(|(info, _)| info)
    }

    /// `info`, with the token's expiry.
    pub fn info_until(&self, token: &str, now: SystemTime) -> Option<(TokenInfo, SystemTime)> {
        let mut validation = jsonwebtoken::Validation::new(self.algorithm);
        // Expiry is checked here against `now`, not by the library against the clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        if now >= claims.exp {
            return None;
        }
        let expires = UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp))?;
        Some((
            TokenInfo {
                user: claims.username,
                revision: claims.revision,
            },
            expires,
        ))
    }
}

/// etcd's default `--bcrypt-cost`.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// bcrypt's hash of `password` at `cost` (etcd's `--bcrypt-cost`, default 10): slow by
/// design, so callers run it away from the consensus core.
pub fn hash_password(password: &str, cost: u32) -> Result<Bytes, String> {
    bcrypt::hash(password, cost)
        .map(Bytes::from)
        .map_err(|e| format!("hashing a password: {e}"))
}

/// Whether `password` matches `hash` (as slow as hashing).
pub fn password_matches(password: &str, hash: &[u8]) -> bool {
    std::str::from_utf8(hash)
        .ok()
        .and_then(|hash| bcrypt::verify(password, hash).ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(revision: u64) -> TokenInfo {
        TokenInfo {
            user: "alice".into(),
            revision,
        }
    }

    #[test]
    fn simple_tokens_expire_unless_used_and_go_with_their_user() {
        let start = Instant::now();
        let mut tokens = SimpleTokens::new(Duration::from_secs(300));
        let prefix = SimpleTokens::random_prefix().expect("random");
        assert_eq!(prefix.len(), 16);
        assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()));
        let token = tokens.assign(&prefix, 42, alice(3), start);
        assert_eq!(token, format!("{prefix}.42"));
        // Used at 200 s: renewed until 500 s.
        assert_eq!(
            tokens.info(&token, start + Duration::from_secs(200)),
            Some(alice(3))
        );
        assert_eq!(
            tokens.info(&token, start + Duration::from_secs(450)),
            Some(alice(3))
        );
        // Unused for a whole TTL: gone.
        assert_eq!(tokens.info(&token, start + Duration::from_secs(751)), None);
        assert_eq!(tokens.info("unknown.1", start), None);
        let again = tokens.assign(&prefix, 43, alice(3), start);
        let bob = tokens.assign(
            &prefix,
            44,
            TokenInfo {
                user: "bob".into(),
                revision: 3,
            },
            start,
        );
        tokens.invalidate_user("alice");
        assert_eq!(tokens.info(&again, start), None);
        assert!(tokens.info(&bob, start).is_some());
        tokens.expire(start + Duration::from_secs(301));
        assert!(tokens.is_empty());
    }

    #[test]
    fn jwt_tokens_verify_on_any_member_and_expire() {
        // An ES256 pair made here; a verifying-only member gets the public key alone.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let private = key.serialize_pem();
        let public = key.public_key_pem();
        let issuer = JwtTokens::new(
            "ES256",
            public.as_bytes(),
            Some(private.as_bytes()),
            Duration::from_secs(60),
        )
        .expect("issuer");
        let verifier = JwtTokens::new("ES256", public.as_bytes(), None, Duration::from_secs(60))
            .expect("verifier");
        let now = SystemTime::now();
        let token = issuer.assign(&alice(7), now).expect("sign");
        assert_eq!(verifier.info(&token, now), Some(alice(7)));
        assert_eq!(verifier.info(&token, now + Duration::from_secs(61)), None);
        assert!(verifier.assign(&alice(7), now).is_err(), "no private key");
        // A token signed by another key, or altered, is refused.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let forger = JwtTokens::new(
            "ES256",
            other.public_key_pem().as_bytes(),
            Some(other.serialize_pem().as_bytes()),
            Duration::from_secs(60),
        )
        .expect("forger");
        let forged = forger.assign(&alice(7), now).expect("sign");
        assert_eq!(verifier.info(&forged, now), None);
        let mut altered = token.clone();
        altered.pop();
        assert_eq!(verifier.info(&altered, now), None);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("secret", 4).expect("hash");
        assert!(hash.starts_with(b"$2"));
        assert!(password_matches("secret", &hash));
        assert!(!password_matches("Secret", &hash));
        assert!(!password_matches("secret", b"not a hash"));
    }

    #[test]
    fn token_settings_parse_as_etcds_flag() {
        assert_eq!(parse_token_settings("simple"), Ok(TokenSettings::Simple));
        assert_eq!(
            parse_token_settings("jwt,pub-key=/k.pub,priv-key=/k,sign-method=ES256,ttl=10m"),
            Ok(TokenSettings::Jwt {
                public_key: "/k.pub".into(),
                private_key: Some("/k".into()),
                method: "ES256".into(),
                ttl: Duration::from_secs(600),
            })
        );
        for (bad, why) in [
            ("jwt,sign-method=RS256", "pub-key"),
            ("jwt,pub-key=/k,sign-method=HS256", "HS256"),
            ("jwt,pub-key=/k,pub-key=/j", "twice"),
            ("jwt,pub-key", "name=value"),
            ("jwt,pub-key=/k,colour=red", "colour"),
            ("simple,ttl=5m", "no options"),
            ("oauth", "oauth"),
        ] {
            let error = parse_token_settings(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
