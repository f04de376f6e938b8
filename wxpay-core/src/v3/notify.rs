//! v3 notifies (spec 13): verify the headers and raw body, then decrypt the
//! resource.

use super::{
    aead::{ApiV3Key, DecryptError, EncryptedResource},
    validate::{NotifyValidator, ValidationError, WechatpayHeaders},
    verify::Verifier,
};

/// The `message` of the FAIL reply to a notify that failed verification.
pub const SIGNATURE_FAILED: &str = "签名验证失败";

/// The body of a refusing reply: `{"code":"FAIL","message":"<message>"}`.
///
/// ```
/// assert_eq!(wxpay_core::v3::reply_fail("签名验证失败"), r#"{"code":"FAIL","message":"签名验证失败"}"#);
/// ```
pub fn reply_fail(message: &str) -> String {
    serde_json::json!({ "code": "FAIL", "message": message }).to_string()
}

/// Why a notify was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The signature check failed (nothing was decrypted).
    #[error("notify verification failed")]
    Validation(#[from] ValidationError),
    /// The verified body is not a notify envelope.
    #[error("malformed notify envelope")]
    Envelope(#[source] serde_json::Error),
    /// `resource_type` is not `encrypt-resource`.
    #[error("unexpected resource_type {found:?}")]
    ResourceType {
        /// The value received.
        found: String,
    },
    /// The resource did not decrypt (most likely a wrong APIv3 key).
    #[error("notify resource did not decrypt")]
    Decrypt(#[from] DecryptError),
    /// The verified, decrypted resource is not the JSON shape of its event
    /// type.
    #[error("notify resource is not the expected JSON")]
    Resource(#[source] serde_json::Error),
}

impl NotifyError {
    /// The HTTP status and body to answer with (spec 13.5, 13.6): 401 for a
    /// failed verification, 500 for a failed decryption (retries give time
    /// to fix the key), 400 for a malformed envelope.
    pub fn reply(&self) -> (u16, String) {
        match self {
            NotifyError::Validation(_) => (401, reply_fail(SIGNATURE_FAILED)),
            NotifyError::Decrypt(_) => (500, reply_fail("resource decryption failed")),
            NotifyError::Resource(_) => (500, reply_fail("resource not understood")),
            NotifyError::Envelope(_) | NotifyError::ResourceType { .. } => {
                (400, reply_fail("malformed notification"))
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    id: String,
    #[serde(default)]
    create_time: String,
    event_type: String,
    resource_type: String,
    #[serde(default)]
    summary: String,
    resource: EncryptedResource,
}

/// A verified, decrypted notify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// The notification id (not a deduplication key, spec 13.2).
    pub id: String,
    /// RFC 3339 creation time.
    pub create_time: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`, …
    pub event_type: String,
    /// e.g. `支付成功`.
    pub summary: String,
    /// `resource.original_type`: `transaction` or `refund`.
    pub original_type: Option<String>,
    /// The decrypted resource (UTF-8 JSON), exactly as decrypted.
    pub resource: Vec<u8>,
}

/// Turns a notify request (headers and raw body) into a [`Notification`]:
/// verify first (spec 3.3), then parse the envelope, then decrypt.
#[derive(Debug, Clone)]
pub struct NotifyHandler<V> {
    validator: NotifyValidator<V>,
    key: ApiV3Key,
}

impl<V: Verifier> NotifyHandler<V> {
    /// A handler verifying with `validator` and decrypting with `key`.
    pub fn new(validator: NotifyValidator<V>, key: ApiV3Key) -> NotifyHandler<V> {
        NotifyHandler { validator, key }
    }

    /// Verifies and decrypts one notify; `now` is Unix seconds.
    ///
    /// # Errors
    /// [`NotifyError::Validation`] (nothing else is looked at),
    /// [`NotifyError::Envelope`], [`NotifyError::ResourceType`],
    /// [`NotifyError::Decrypt`]. [`NotifyError::reply`] gives the answer.
    pub fn parse(
        &self,
        headers: &WechatpayHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<Notification, NotifyError> {
        self.validator.validate(headers, body, now)?;
        let envelope: Envelope = serde_json::from_slice(body).map_err(NotifyError::Envelope)?;
        if envelope.resource_type != "encrypt-resource" {
            return Err(NotifyError::ResourceType {
                found: envelope.resource_type,
            });
        }
        let resource = self.key.decrypt_resource(&envelope.resource)?;
        Ok(Notification {
            id: envelope.id,
            create_time: envelope.create_time,
            event_type: envelope.event_type,
            summary: envelope.summary,
            original_type: envelope.resource.original_type,
            resource,
        })
    }
}
