//! Validators (spec 3.3): the whole check of a signed answer or notify —
//! headers present, signature type, probe, freshness, key by serial, RSA
//! over the raw body.

use super::verify::{Verifier, VerifyError};

/// The only signature type accepted in `Wechatpay-Signature-Type`.
pub const SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";

/// The prefix of WeChat's deliberate wrong signatures (spec 3.5).
pub const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The freshness window, in seconds: a message is stale when
/// `|now − Wechatpay-Timestamp| ≥ 300`.
pub const DEFAULT_WINDOW_SECS: u32 = 300;

/// The message an answer or notify signature covers (spec 3.2):
/// `TIMESTAMP\nNONCE\nBODY\n` over the raw body bytes (an empty body gives
/// `ts\nnonce\n\n`).
///
/// ```
/// assert_eq!(wxpay_core::v3::response_message("1767240901", "n", b""), b"1767240901\nn\n\n");
/// ```
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    for line in [timestamp.as_bytes(), nonce.as_bytes(), body] {
        m.extend_from_slice(line);
        m.push(b'\n');
    }
    m
}

/// The Wechatpay signature headers of an answer or notify, as received.
/// An empty value counts as missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WechatpayHeaders<'a> {
    /// `Wechatpay-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `Wechatpay-Nonce`.
    pub nonce: Option<&'a str>,
    /// `Wechatpay-Signature`.
    pub signature: Option<&'a str>,
    /// `Wechatpay-Serial`.
    pub serial: Option<&'a str>,
    /// `Wechatpay-Signature-Type`: optional (absent or empty is accepted,
    /// spec 3.3 step 2); if present it must be `WECHATPAY2-SHA256-RSA2048`.
    pub signature_type: Option<&'a str>,
}

impl<'a> WechatpayHeaders<'a> {
    /// Reads the headers through `get(name)`, called with the canonical
    /// names (`Wechatpay-Timestamp`, …); a framework's header map does the
    /// case-insensitive lookup.
    pub fn from_fn(get: impl Fn(&str) -> Option<&'a str>) -> WechatpayHeaders<'a> {
        WechatpayHeaders {
            timestamp: get("Wechatpay-Timestamp"),
            nonce: get("Wechatpay-Nonce"),
            signature: get("Wechatpay-Signature"),
            serial: get("Wechatpay-Serial"),
            signature_type: get("Wechatpay-Signature-Type"),
        }
    }

    /// Picks the headers out of `(name, value)` pairs, names compared
    /// case-insensitively; other headers are ignored.
    ///
    /// ```
    /// let h = wxpay_core::v3::WechatpayHeaders::from_pairs([("wechatpay-nonce", "n"), ("Content-Type", "application/json")]);
    /// assert_eq!(h.nonce, Some("n"));
    /// assert_eq!(h.serial, None);
    /// ```
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> WechatpayHeaders<'a> {
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        WechatpayHeaders::from_fn(|name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        })
    }
}

/// Why an answer or notify was refused. Every variant means: do not trust
/// the body (for an answer the outcome is unknown, re-query; for a notify
/// reply 4xx/5xx so WeChat retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A signature header is missing or empty on a 2xx answer or a notify:
    /// forged or tampered.
    #[error("header {name} missing: unsigned message refused")]
    MissingHeader {
        /// The first missing header.
        name: &'static str,
    },
    /// A 401 answer without signature: WeChat did not accept our
    /// `Authorization` (`SIGN_ERROR`: key, serial, mchid or clock). A
    /// configuration error, never a success.
    #[error("401 without signature: WeChat refused our Authorization (SIGN_ERROR)")]
    Unauthenticated,
    /// Another non-2xx answer without signature (a proxy's 502, …): a
    /// transport error, outcome unknown.
    #[error("unsigned {status} answer: transport error, outcome unknown")]
    Unsigned {
        /// The HTTP status.
        status: u16,
    },
    /// `Wechatpay-Signature-Type` names another suite than
    /// `WECHATPAY2-SHA256-RSA2048`.
    #[error("unsupported Wechatpay-Signature-Type {value:?}")]
    UnsupportedSignatureType {
        /// The value received.
        value: String,
    },
    /// A `WECHATPAY/SIGNTEST/` probe: exactly a failed signature, told
    /// apart only for logs and metrics.
    #[error("signature probe (WECHATPAY/SIGNTEST/): refused as a bad signature")]
    Probe,
    /// `Wechatpay-Timestamp` is not a decimal number of seconds.
    #[error("malformed Wechatpay-Timestamp {value:?}")]
    MalformedTimestamp {
        /// The value received.
        value: String,
    },
    /// `|now − timestamp| ≥ window` (in the past or the future).
    #[error("Wechatpay-Timestamp {timestamp} is outside the window around {now}")]
    Stale {
        /// The message's timestamp.
        timestamp: i64,
        /// The clock's time.
        now: i64,
    },
    /// No key is held for `Wechatpay-Serial`.
    #[error("no key for Wechatpay-Serial {serial:?}")]
    UnknownSerial {
        /// The serial received.
        serial: String,
    },
    /// The signature is not the named key's signature of the raw message.
    #[error("signature does not verify")]
    InvalidSignature,
}

impl ValidationError {
    /// Whether this is a failed signature in the spec's sense (bad
    /// signature or probe).
    pub fn is_bad_signature(&self) -> bool {
        matches!(
            self,
            ValidationError::InvalidSignature | ValidationError::Probe
        )
    }
}

impl From<VerifyError> for ValidationError {
    fn from(e: VerifyError) -> ValidationError {
        match e {
            VerifyError::UnknownSerial { serial } => ValidationError::UnknownSerial { serial },
            VerifyError::InvalidSignature => ValidationError::InvalidSignature,
        }
    }
}

struct Present<'a> {
    timestamp: &'a str,
    nonce: &'a str,
    signature: &'a str,
    serial: &'a str,
}

fn present<'a>(h: &WechatpayHeaders<'a>) -> Result<Present<'a>, &'static str> {
    let need = |v: Option<&'a str>, name| v.filter(|s| !s.is_empty()).ok_or(name);
    Ok(Present {
        timestamp: need(h.timestamp, "Wechatpay-Timestamp")?,
        nonce: need(h.nonce, "Wechatpay-Nonce")?,
        signature: need(h.signature, "Wechatpay-Signature")?,
        serial: need(h.serial, "Wechatpay-Serial")?,
    })
}

/// Steps 2–6 of spec 3.3 on headers known to be present.
fn check_signed(
    verifier: &dyn Verifier,
    window: u32,
    signature_type: Option<&str>,
    h: &Present<'_>,
    body: &[u8],
    now: i64,
) -> Result<(), ValidationError> {
    // An empty header counts as absent, like the other four.
    if let Some(t) = signature_type.filter(|t| !t.is_empty() && *t != SIGNATURE_TYPE) {
        return Err(ValidationError::UnsupportedSignatureType {
            value: t.to_owned(),
        });
    }
    if h.signature.starts_with(SIGNTEST_PREFIX) {
        return Err(ValidationError::Probe);
    }
    let malformed = || ValidationError::MalformedTimestamp {
        value: h.timestamp.to_owned(),
    };
    if !h.timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let timestamp: i64 = h.timestamp.parse().map_err(|_| malformed())?;
    if (i128::from(now) - i128::from(timestamp)).abs() >= i128::from(window) {
        return Err(ValidationError::Stale { timestamp, now });
    }
    let message = response_message(h.timestamp, h.nonce, body);
    verifier.verify(h.serial, &message, h.signature)?;
    Ok(())
}

/// Validates WeChat's answers to our requests (spec 3.3, answers).
///
/// `now` is Unix seconds from the caller's clock (inject a fixed value in
/// tests). Freshness: the answer is **rejected when `|now − timestamp| ≥
/// 300`** seconds, in the past or the future — 299 s passes, exactly 300 s
/// is refused (wechatpay-go's and wechatpay-java's rule, the spec's choice
/// and its vectors `timestamp-299s-old` / `neg-timestamp-300s-boundary`).
#[derive(Debug, Clone)]
pub struct ResponseValidator<V> {
    verifier: V,
    window: u32,
}

impl<V: Verifier> ResponseValidator<V> {
    /// A validator using `verifier` and the 300 s window.
    pub fn new(verifier: V) -> ResponseValidator<V> {
        ResponseValidator {
            verifier,
            window: DEFAULT_WINDOW_SECS,
        }
    }

    /// Another window in seconds (same `≥` rule).
    pub fn with_window(mut self, secs: u32) -> ResponseValidator<V> {
        self.window = secs;
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &V {
        &self.verifier
    }

    /// Checks an answer: HTTP `status`, its headers, its **raw** body.
    ///
    /// # Errors
    /// Missing headers give [`ValidationError::MissingHeader`] on 2xx,
    /// [`ValidationError::Unauthenticated`] on 401 and
    /// [`ValidationError::Unsigned`] otherwise; then, in this order,
    /// unsupported signature type, probe, malformed or stale timestamp,
    /// unknown serial, invalid signature.
    pub fn validate(
        &self,
        status: u16,
        headers: &WechatpayHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<(), ValidationError> {
        let h = present(headers).map_err(|name| match status {
            200..=299 => ValidationError::MissingHeader { name },
            401 => ValidationError::Unauthenticated,
            _ => ValidationError::Unsigned { status },
        })?;
        check_signed(
            &self.verifier,
            self.window,
            headers.signature_type,
            &h,
            body,
            now,
        )
    }
}

/// Validates notifies (spec 3.3, 13.6): the same rules as
/// [`ResponseValidator`] (including the `≥ 300` s window against `now`), and
/// every signature header is required.
#[derive(Debug, Clone)]
pub struct NotifyValidator<V>(ResponseValidator<V>);

impl<V: Verifier> NotifyValidator<V> {
    /// A validator using `verifier` and the 300 s window.
    pub fn new(verifier: V) -> NotifyValidator<V> {
        NotifyValidator(ResponseValidator::new(verifier))
    }

    /// Another window in seconds (same `≥` rule).
    pub fn with_window(self, secs: u32) -> NotifyValidator<V> {
        NotifyValidator(self.0.with_window(secs))
    }

    /// The verifier.
    pub fn verifier(&self) -> &V {
        self.0.verifier()
    }

    /// Checks a notify: its headers and its **raw** body.
    ///
    /// # Errors
    /// [`ValidationError::MissingHeader`], then unsupported signature type,
    /// probe, malformed or stale timestamp, unknown serial, invalid signature.
    pub fn validate(
        &self,
        headers: &WechatpayHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<(), ValidationError> {
        let h = present(headers).map_err(|name| ValidationError::MissingHeader { name })?;
        check_signed(
            &self.0.verifier,
            self.0.window,
            headers.signature_type,
            &h,
            body,
            now,
        )
    }
}
