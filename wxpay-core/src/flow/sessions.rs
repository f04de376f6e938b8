//! Sign-in sessions: `wx.login`'s code becomes an opaque bearer token that
//! the mini-program sends back, and the token names the user.
//!
//! [`Payments::sign_in`](super::Payments::sign_in) trades the code for the
//! openid (jscode2session) and stores a [`SessionRecord`] under the SHA-256
//! of a fresh random token; [`Payments::signed_in`](super::Payments::signed_in)
//! reads an `Authorization: Bearer …` header back into the record. Stores
//! keep only the hash, so a leaked table signs nobody in, and never the
//! WeChat `session_key` (the app gets it once, from `sign_in`).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use tracing::Instrument;

use super::{
    CheckoutRequest, Payments, PaymentsError, Session, StoreError,
    payments::{after, now},
};
use crate::SessionToken;

impl SessionToken {
    /// A fresh token: 32 random bytes (from the thread's CSPRNG), base64url
    /// without padding (43 characters).
    pub fn generate() -> SessionToken {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        SessionToken::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// The SHA-256 of a [`SessionToken`]: the only form of a token that stores
/// keep and that may be logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of a token.
    pub fn of(token: &SessionToken) -> TokenHash {
        TokenHash(Sha256::digest(token.expose().as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex (64 characters), as the SQL stores keep it.
    pub fn to_hex(&self) -> String {
        crate::sign::lower_hex(&self.0)
    }

    /// Reads [`to_hex`](TokenHash::to_hex)'s form back (either case).
    ///
    /// ```
    /// use wxpay_core::{SessionToken, flow::TokenHash};
    /// let h = TokenHash::of(&SessionToken::new("t"));
    /// assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
    /// assert_eq!(TokenHash::from_hex("zz"), None);
    /// assert_eq!(TokenHash::from_hex(&"+f".repeat(32)), None);
    /// ```
    pub fn from_hex(hex: &str) -> Option<TokenHash> {
        // `from_str_radix` alone would also take a `+` sign.
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

/// A stored sign-in: who the token's holder is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The SHA-256 of the bearer token.
    pub token_hash: TokenHash,
    /// The user under the AppID.
    pub openid: String,
    /// The user across the Open Platform account, if bound.
    pub unionid: Option<String>,
    /// When the user signed in.
    pub created_at: DateTime<Utc>,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
}

impl SessionRecord {
    /// A record (for stores that read one back from their rows).
    pub fn new(
        token_hash: TokenHash,
        openid: impl Into<String>,
        unionid: Option<String>,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> SessionRecord {
        SessionRecord {
            token_hash,
            openid: openid.into(),
            unionid,
            created_at,
            expires_at,
        }
    }

    /// Whether the token still works at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// What [`Payments::sign_in`](super::Payments::sign_in) returns. Its
/// `Debug` prints neither the token nor the session key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignIn {
    /// The bearer token to hand to the client (once; only its hash is kept).
    pub token: SessionToken,
    /// The jscode2session answer, with the session key for the app's own use.
    pub session: Session,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
}

/// Where sign-in sessions live. Keyed by [`TokenHash`]; tokens are 256-bit
/// random values, so a hash never repeats. The method names say `session`
/// so that one type can be both this and an
/// [`OrderStore`](super::OrderStore) without ambiguous calls.
///
/// Implementers' duties:
/// - `put_session` stores the record so that a later `get_session` of its hash, from any
///   instance sharing the store, returns it field for field (timestamps to
///   the microsecond at least).
/// - `get_session` returns the record whether or not it has expired
///   ([`Payments`](super::Payments) checks the expiry), `None` when absent.
/// - `remove_session` of an absent hash is not an error.
/// - `purge_expired_sessions` deletes the records with `expires_at <= now` and only those.
///
/// Check an implementation with `wxpay_core::testkit::check_session_store`
/// (feature `testkit`).
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session.
    ///
    /// # Errors
    /// A backend error.
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// Loads a session, expired or not.
    ///
    /// # Errors
    /// A backend or corrupt-row error; a missing session is `Ok(None)`.
    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Deletes a session (sign-out).
    ///
    /// # Errors
    /// A backend error.
    async fn remove_session(&self, token_hash: &TokenHash) -> Result<(), StoreError>;

    /// Deletes every session that expired at or before `now`; returns how many.
    ///
    /// # Errors
    /// A backend error.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Sessions in a process-local map: for tests, demos and single-instance
/// tools. They are lost when the process exits and not shared between
/// instances; use a database store (`wxpay-sqlx`) in production.
#[derive(Debug, Default)]
pub struct MemorySessions {
    map: Mutex<HashMap<TokenHash, SessionRecord>>,
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> MemorySessions {
        MemorySessions::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<TokenHash, SessionRecord>> {
        // A panic while holding the lock cannot leave a half-written record.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.map().insert(session.token_hash, session.clone());
        Ok(())
    }

    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.map().get(token_hash).cloned())
    }

    async fn remove_session(&self, token_hash: &TokenHash) -> Result<(), StoreError> {
        self.map().remove(token_hash);
        Ok(())
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, s| s.is_live(now));
        Ok((before - map.len()) as u64)
    }
}

/// The token in an `Authorization` header value: `Bearer <token>` (the
/// scheme in any case, RFC 7235 §2.1), `None` for anything else.
pub(crate) fn bearer(authorization: &str) -> Option<SessionToken> {
    bearer_str(authorization).map(SessionToken::new)
}

/// The token of a `Bearer` authorization value (scheme case-insensitive).
pub(crate) fn bearer_str(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Payments {
    /// Signs a mini-program user in: trades `wx.login`'s code for the
    /// openid (jscode2session). Keep the session key on the server.
    ///
    /// # Errors
    /// [`PaymentsError::Wechat`] ([`Error::Login`](crate::Error::Login) for an invalid or used
    /// code, [`Error::Config`](crate::Error::Config) without an AppSecret).
    pub async fn login(&self, js_code: &str) -> Result<Session, PaymentsError> {
        let s = self
            .inner
            .client
            .code2session(js_code)
            .instrument(tracing::info_span!("wxpay.login"))
            .await?;
        Ok(Session {
            openid: s.openid,
            unionid: s.unionid,
            session_key: s.session_key,
        })
    }

    /// Signs a mini-program user in and keeps the session: [`login`](Payments::login),
    /// then a fresh random bearer token whose hash is stored with the openid
    /// for [`session_ttl`](super::PaymentsBuilder::session_ttl). Give the client
    /// `token` and nothing else.
    ///
    /// ```no_run
    /// # async fn demo(payments: wxpay_core::flow::Payments, code: &str) -> Result<(), wxpay_core::flow::PaymentsError> {
    /// let signed = payments.sign_in(code).await?;
    /// let reply = serde_json::json!({ "token": signed.token.expose() });
    /// // later, from the client's `Authorization: Bearer …` header:
    /// let header = format!("Bearer {}", signed.token.expose());
    /// let user = payments.signed_in(Some(&header)).await?;
    /// assert_eq!(user.map(|s| s.openid), Some(signed.session.openid));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`login`](Payments::login); [`PaymentsError::Unconfigured`]
    /// without [`PaymentsBuilder::sessions`](super::PaymentsBuilder::sessions); store errors.
    pub async fn sign_in(&self, js_code: &str) -> Result<SignIn, PaymentsError> {
        let sessions = self.sessions()?;
        let session = self.login(js_code).await?;
        let token = SessionToken::generate();
        let created_at = now();
        let expires_at = after(created_at, self.inner.settings.session_ttl);
        let record = SessionRecord::new(
            TokenHash::of(&token),
            session.openid.clone(),
            session.unionid.clone(),
            created_at,
            expires_at,
        );
        sessions.put_session(&record).await?;
        Ok(SignIn {
            token,
            session,
            expires_at,
        })
    }

    /// The live session an `Authorization` header value (`Bearer <token>`)
    /// names: `None` for no header, another scheme, an unknown token or an
    /// expired one.
    ///
    /// # Errors
    /// [`PaymentsError::Unconfigured`] without [`PaymentsBuilder::sessions`](super::PaymentsBuilder::sessions);
    /// store errors.
    pub async fn signed_in(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<SessionRecord>, PaymentsError> {
        let sessions = self.sessions()?;
        let Some(token) = authorization.and_then(bearer) else {
            return Ok(None);
        };
        let found = sessions.get_session(&TokenHash::of(&token)).await?;
        Ok(found.filter(|s| s.is_live(now())))
    }

    /// Signs the holder of an `Authorization` header value out: its token
    /// stops working at once. Returns whether it named a live session.
    ///
    /// # Errors
    /// As [`signed_in`](Payments::signed_in).
    pub async fn sign_out(&self, authorization: Option<&str>) -> Result<bool, PaymentsError> {
        let Some(session) = self.signed_in(authorization).await? else {
            return Ok(false);
        };
        self.sessions()?.remove_session(&session.token_hash).await?;
        Ok(true)
    }

    /// Whether sign-in sessions are kept ([`PaymentsBuilder::sessions`](super::PaymentsBuilder::sessions)).
    pub fn keeps_sessions(&self) -> bool {
        self.inner.sessions.is_some()
    }

    fn sessions(&self) -> Result<&Arc<dyn SessionStore>, PaymentsError> {
        (self.inner.sessions.as_ref()).ok_or(PaymentsError::Unconfigured(
            "sessions (PaymentsBuilder::sessions)",
        ))
    }

    /// With sessions kept, sets the request's user from its bearer token.
    pub(crate) async fn fill_user(&self, req: &mut CheckoutRequest) -> Result<(), PaymentsError> {
        if self.inner.sessions.is_some() && req.user.is_none() {
            let session = self.signed_in(req.header("authorization")).await?;
            req.user = session.map(|s| s.openid);
        }
        Ok(())
    }

    /// The caller of an order route, as the app's [`Checkout::identify`]
    /// decides (after the session lookup).
    pub(crate) async fn identify(
        &self,
        mut req: CheckoutRequest,
    ) -> Result<Option<String>, PaymentsError> {
        self.fill_user(&mut req).await?;
        Ok(self.inner.checkout.identify(&req).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_hash_to_sha256() {
        let (a, b) = (SessionToken::generate(), SessionToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        // SHA-256("abc"), FIPS 180-2 appendix B.1
        assert_eq!(
            TokenHash::of(&SessionToken::new("abc")).to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_reads_only_the_bearer_scheme() {
        let t = |h: &str| bearer(h).map(|t| t.expose().to_owned());
        assert_eq!(t("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(t("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(t("Basic abc"), None);
        assert_eq!(t("Bearer "), None);
        assert_eq!(t("abc"), None);
    }
}
