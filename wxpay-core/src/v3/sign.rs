//! Request signing (spec 2): the five-line message and the
//! `Authorization` header.

use super::key::{MerchantKey, SigningError};

/// The `Authorization` scheme token.
pub const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The message a request signature covers (spec 2.1):
/// `METHOD\nCANONICAL_URL\nTIMESTAMP\nNONCE\nBODY\n`, every line ending in
/// `\n`, the last one too. `canonical_url` is the path and query exactly as
/// sent (spec 2.2); `body` the bytes exactly as sent (empty for GET).
///
/// ```
/// let m = wxpay_core::v3::request_message("GET", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", b"");
/// assert_eq!(m, b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n");
/// ```
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(
        method.len() + canonical_url.len() + timestamp.len() + nonce.len() + body.len() + 5,
    );
    for line in [
        method.as_bytes(),
        canonical_url.as_bytes(),
        timestamp.as_bytes(),
        nonce.as_bytes(),
        body,
    ] {
        m.extend_from_slice(line);
        m.push(b'\n');
    }
    m
}

/// Who signs requests: the merchant id, its API certificate serial and its
/// private key. Builds the `Authorization` header (spec 2.5). In partner
/// mode `mchid` is the service provider's `sp_mchid`.
#[derive(Debug)]
pub struct Credential {
    mchid: String,
    serial_no: String,
    key: MerchantKey,
}

impl Credential {
    /// A credential for `mchid`, whose API certificate has serial
    /// `serial_no` (40 hex digits) and private key `key`.
    pub fn new(
        mchid: impl Into<String>,
        serial_no: impl Into<String>,
        key: MerchantKey,
    ) -> Credential {
        Credential {
            mchid: mchid.into(),
            serial_no: serial_no.into(),
            key,
        }
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The merchant API certificate serial.
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// The private key (also signs `paySign`).
    pub fn key(&self) -> &MerchantKey {
        &self.key
    }

    /// The value of the `Authorization` header for one request:
    /// `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"`
    /// — the pair order of the spec's example and vectors (and wechatpay-go).
    /// `timestamp` is Unix seconds as a decimal string.
    ///
    /// # Errors
    /// [`SigningError`] only if the crypto library fails internally.
    pub fn authorization(
        &self,
        method: &str,
        canonical_url: &str,
        timestamp: &str,
        nonce: &str,
        body: &[u8],
    ) -> Result<String, SigningError> {
        let message = request_message(method, canonical_url, timestamp, nonce, body);
        let signature = self.key.sign(&message)?;
        Ok(format!(
            "{AUTH_SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{}\",signature=\"{signature}\"",
            self.mchid, self.serial_no
        ))
    }
}
