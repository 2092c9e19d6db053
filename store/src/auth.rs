//! API tokens: who may ingest, read or administer, and which tenant they
//! act for. Off (everyone is the default tenant with every scope) unless the
//! configuration lists tokens.
//!
//! Tokens are kept as SHA-256 digests and a presented token is compared with
//! every configured digest in constant time, so neither a timing nor a log
//! line gives a secret away. Failures are counted, never logged.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The tenant of data sent and read without authentication.
pub const DEFAULT_TENANT: &str = "default";

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send OTLP data.
    Ingest,
    /// Query: SQL, search, traces, PromQL, live tail, the dashboard's data.
    Read,
    /// Lumen's own metrics (`/metrics`) and everything `read` allows.
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// One token of the configuration file's `[[auth.tokens]]` list.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for the token, shown in errors and metrics, never the secret.
    pub name: String,
    /// The token itself (at least 16 characters) ...
    pub token: Option<String>,
    /// ... or its SHA-256 digest as 64 hex digits, so the file holds no secret.
    pub sha256: Option<String>,
    pub scopes: Vec<Scope>,
    /// The tenant whose data the token sends and reads.
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

// By hand, so a printed configuration never shows a secret.
impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("sha256", &self.sha256)
            .field("scopes", &self.scopes)
            .field("tenant", &self.tenant)
            .finish()
    }
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

#[derive(Debug)]
struct Entry {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
    tenant: String,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (`anonymous` without authentication).
    pub name: String,
    pub tenant: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send a token as `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("token {token:?} lacks the {scope:?} scope")]
    Forbidden { token: String, scope: &'static str },
}

impl AuthError {
    /// 401 for no or a wrong token, 403 for a token without the scope.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Forbidden { .. })
    }
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Auth {
    entries: Vec<Entry>,
    failures: [AtomicU64; 3],
}

impl Auth {
    /// No authentication: every request is the default tenant's.
    pub fn disabled() -> Auth {
        Auth::default()
    }

    /// Checks the configured tokens: a token or a digest each, well formed,
    /// at least one scope, names and secrets unique.
    pub fn new(tokens: &[TokenConfig]) -> Result<Auth, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for t in tokens {
            let digest = match (&t.token, &t.sha256) {
                (Some(tok), None) => {
                    if tok.chars().count() < 16 {
                        return Err(format!(
                            "auth token {:?}: use at least 16 characters",
                            t.name
                        ));
                    }
                    digest(tok)
                }
                (None, Some(hex)) => parse_hex32(hex).ok_or_else(|| {
                    format!("auth token {:?}: `sha256` must be 64 hex digits", t.name)
                })?,
                _ => {
                    return Err(format!(
                        "auth token {:?}: give exactly one of `token` and `sha256`",
                        t.name
                    ));
                }
            };
            if t.scopes.is_empty() {
                return Err(format!("auth token {:?}: no scopes", t.name));
            }
            if !crate::tenants::valid_name(&t.tenant) {
                return Err(format!(
                    "auth token {:?}: a tenant is 1-64 of [A-Za-z0-9_-]",
                    t.name
                ));
            }
            if entries.iter().any(|e| e.name == t.name) {
                return Err(format!("auth token name {:?} appears twice", t.name));
            }
            if entries.iter().any(|e| e.digest == digest) {
                return Err(format!("auth token {:?} repeats another token", t.name));
            }
            entries.push(Entry {
                name: t.name.clone(),
                digest,
                scopes: t.scopes.clone(),
                tenant: t.tenant.clone(),
            });
        }
        Ok(Auth {
            entries,
            failures: Default::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The tenants tokens name.
    pub fn tenants(&self) -> Vec<String> {
        let mut t: Vec<String> = self.entries.iter().map(|e| e.tenant.clone()).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Who presents `token` (none given: `None`), if it has `scope`.
    pub fn check(&self, token: Option<&str>, scope: Scope) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal {
                name: "anonymous".into(),
                tenant: DEFAULT_TENANT.into(),
            });
        }
        let result = self.verify(token, scope);
        if let Err(e) = &result {
            let k = match e {
                AuthError::Missing => 0,
                AuthError::Invalid => 1,
                AuthError::Forbidden { .. } => 2,
            };
            self.failures[k].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn verify(&self, token: Option<&str>, scope: Scope) -> Result<Principal, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let d = digest(token);
        // Every entry is compared, matching or not: the time does not tell which.
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if ct_eq(&e.digest, &d) {
                found = Some(e);
            }
        }
        let e = found.ok_or(AuthError::Invalid)?;
        let allowed =
            e.scopes.contains(&scope) || (scope == Scope::Read && e.scopes.contains(&Scope::Admin));
        if !allowed {
            return Err(AuthError::Forbidden {
                token: e.name.clone(),
                scope: scope.name(),
            });
        }
        Ok(Principal {
            name: e.name.clone(),
            tenant: e.tenant.clone(),
        })
    }

    /// Refusals so far: (missing, invalid, forbidden).
    pub fn failures(&self) -> (u64, u64, u64) {
        (
            self.failures[0].load(Ordering::Relaxed),
            self.failures[1].load(Ordering::Relaxed),
            self.failures[2].load(Ordering::Relaxed),
        )
    }
}

/// The token of an `Authorization` header: `Bearer <token>`, or the
/// password of `Basic` credentials (what many tools can send).
pub fn token_from_authorization(value: &str) -> Option<String> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        return s.split_once(':').map(|(_, p)| p.to_owned());
    }
    None
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal, in time that does not depend on where they differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(name: &str, token: &str, scopes: &[Scope]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: Some(token.into()),
            sha256: None,
            scopes: scopes.to_vec(),
            tenant: DEFAULT_TENANT.into(),
        }
    }

    #[test]
    fn tokens_are_checked_for_scope_and_counted() {
        let auth = Auth::new(&[
            tok("ingester", "ingest-secret-0123456789", &[Scope::Ingest]),
            tok("reader", "read-secret-0123456789", &[Scope::Read]),
            tok("root", "admin-secret-0123456789", &[Scope::Admin]),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.enabled());
        assert_eq!(auth.check(None, Scope::Read), Err(AuthError::Missing));
        assert_eq!(
            auth.check(Some("nope"), Scope::Read),
            Err(AuthError::Invalid)
        );
        assert!(
            auth.check(Some("ingest-secret-0123456789"), Scope::Read)
                .is_err_and(|e| e.is_forbidden())
        );
        assert_eq!(
            auth.check(Some("read-secret-0123456789"), Scope::Read)
                .map(|p| p.name),
            Ok("reader".to_owned())
        );
        // Admin implies read, not ingest.
        assert!(
            auth.check(Some("admin-secret-0123456789"), Scope::Read)
                .is_ok()
        );
        assert!(
            auth.check(Some("admin-secret-0123456789"), Scope::Ingest)
                .is_err()
        );
        assert_eq!(auth.failures(), (1, 1, 2));
        // The digest form matches the token.
        let hex: String = digest("read-secret-0123456789")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let by_digest = Auth::new(&[TokenConfig {
            name: "r".into(),
            token: None,
            sha256: Some(hex),
            scopes: vec![Scope::Read],
            tenant: "acme".into(),
        }])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            by_digest
                .check(Some("read-secret-0123456789"), Scope::Read)
                .map(|p| p.tenant),
            Ok("acme".to_owned())
        );
    }

    #[test]
    fn bad_token_configurations_are_refused() {
        assert!(Auth::new(&[tok("short", "abc", &[Scope::Read])]).is_err());
        assert!(Auth::new(&[tok("none", "0123456789abcdefgh", &[])]).is_err());
        assert!(
            Auth::new(&[
                tok("a", "0123456789abcdefgh", &[Scope::Read]),
                tok("a", "0123456789abcdefghij", &[Scope::Read])
            ])
            .is_err()
        );
        let mut t = tok("t", "0123456789abcdefgh", &[Scope::Read]);
        t.tenant = "../etc".into();
        assert!(Auth::new(&[t]).is_err());
        assert!(!Auth::disabled().enabled());
        assert_eq!(
            Auth::disabled()
                .check(None, Scope::Ingest)
                .map(|p| p.tenant),
            Ok(DEFAULT_TENANT.to_owned())
        );
    }

    #[test]
    fn authorization_headers_are_read() {
        assert_eq!(token_from_authorization("Bearer abc"), Some("abc".into()));
        assert_eq!(token_from_authorization("bearer  abc "), Some("abc".into()));
        // user:secret
        assert_eq!(
            token_from_authorization("Basic dXNlcjpzZWNyZXQ="),
            Some("secret".into())
        );
        assert_eq!(token_from_authorization("Digest x"), None);
        assert_eq!(token_from_authorization("Bearer"), None);
    }
}
