//! AES-256-GCM resource decryption with the APIv3 key (spec 5).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine, engine::general_purpose::STANDARD};

/// The only `algorithm` value accepted.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

const TAG_LEN: usize = 16;

/// An APIv3 key that is not exactly 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the APIv3 key must be exactly 32 bytes, got {len}")]
pub struct ApiV3KeyError {
    /// The length given.
    pub len: usize,
}

/// Why a resource could not be decrypted. No plaintext is ever returned on
/// failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// `algorithm` is not `AEAD_AES_256_GCM`.
    #[error("unsupported algorithm {algorithm:?}")]
    UnsupportedAlgorithm {
        /// The value received.
        algorithm: String,
    },
    /// `ciphertext` is not Base64.
    #[error("ciphertext is not Base64")]
    Base64(#[source] base64::DecodeError),
    /// `nonce` is not 12 bytes.
    #[error("nonce must be 12 bytes, got {len}")]
    NonceLength {
        /// The length received.
        len: usize,
    },
    /// The ciphertext is shorter than the 16-byte tag.
    #[error("ciphertext shorter than the GCM tag")]
    TooShort,
    /// The GCM tag does not verify: tampered data, wrong associated data
    /// or — most often — the wrong APIv3 key (it is not the v2 key).
    #[error("GCM authentication failed (tampered, wrong associated data or wrong APIv3 key)")]
    Authentication,
}

/// An encrypted `resource` (notifies) or `encrypt_certificate`
/// (certificate downloads), as WeChat sends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct EncryptedResource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// Base64 of the encrypted data followed by the 16-byte tag.
    pub ciphertext: String,
    /// The associated data (`transaction`, `refund`, `certificate`, or empty).
    #[serde(default)]
    pub associated_data: String,
    /// The 12-character nonce.
    pub nonce: String,
    /// `transaction` or `refund` on notifies; absent on certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
}

/// The APIv3 key: 32 bytes used as-is as the AES-256 key (not hex-decoded,
/// not hashed). It decrypts only; it cannot sign. `Debug` prints `***`.
///
/// ```
/// use wxpay_core::v3::ApiV3Key;
/// let key = ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEF").unwrap();
/// assert_eq!(format!("{key:?}"), "ApiV3Key(***)");
/// assert_eq!(ApiV3Key::new("sixteen-byte-key").unwrap_err().len, 16);
/// ```
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

/// Compared in constant time.
impl PartialEq for ApiV3Key {
    fn eq(&self, other: &ApiV3Key) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]))
    }
}

impl Eq for ApiV3Key {}

impl ApiV3Key {
    /// The key from the merchant platform (32 ASCII characters).
    ///
    /// # Errors
    /// [`ApiV3KeyError`] if it is not exactly 32 bytes.
    pub fn new(key: &str) -> Result<ApiV3Key, ApiV3KeyError> {
        ApiV3Key::from_bytes(key.as_bytes())
    }

    /// The key as raw bytes.
    ///
    /// # Errors
    /// [`ApiV3KeyError`] if it is not exactly 32 bytes.
    pub fn from_bytes(key: &[u8]) -> Result<ApiV3Key, ApiV3KeyError> {
        key.try_into()
            .map(ApiV3Key)
            .map_err(|_| ApiV3KeyError { len: key.len() })
    }

    fn cipher(&self) -> LessSafeKey {
        // A 32-byte key is always a valid AES-256 key.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }

    /// Decrypts `ciphertext` (Base64 of data ‖ tag) with the ASCII `nonce`
    /// and `associated_data` (may be empty).
    ///
    /// # Errors
    /// [`DecryptError::Base64`], [`DecryptError::NonceLength`],
    /// [`DecryptError::TooShort`], or [`DecryptError::Authentication`] when
    /// the tag fails.
    pub fn decrypt(
        &self,
        associated_data: &[u8],
        nonce: &[u8],
        ciphertext: &str,
    ) -> Result<Vec<u8>, DecryptError> {
        let nonce = nonce_of(nonce)?;
        let mut data = STANDARD.decode(ciphertext).map_err(DecryptError::Base64)?;
        if data.len() < TAG_LEN {
            return Err(DecryptError::TooShort);
        }
        let plain_len = self
            .cipher()
            .open_in_place(nonce, Aad::from(associated_data), &mut data)
            .map_err(|_| DecryptError::Authentication)?
            .len();
        data.truncate(plain_len);
        Ok(data)
    }

    /// Decrypts a resource after checking its `algorithm`.
    ///
    /// # Errors
    /// [`DecryptError::UnsupportedAlgorithm`], then as [`ApiV3Key::decrypt`].
    pub fn decrypt_resource(&self, resource: &EncryptedResource) -> Result<Vec<u8>, DecryptError> {
        if resource.algorithm != AEAD_AES_256_GCM {
            return Err(DecryptError::UnsupportedAlgorithm {
                algorithm: resource.algorithm.clone(),
            });
        }
        self.decrypt(
            resource.associated_data.as_bytes(),
            resource.nonce.as_bytes(),
            &resource.ciphertext,
        )
    }

    /// Encrypts `plaintext` the way WeChat does (what a simulator or a test
    /// fixture needs): Base64 of data ‖ tag.
    ///
    /// # Errors
    /// [`DecryptError::NonceLength`] if `nonce` is not 12 bytes.
    pub fn encrypt(
        &self,
        associated_data: &[u8],
        nonce: &[u8],
        plaintext: &[u8],
    ) -> Result<String, DecryptError> {
        let nonce = nonce_of(nonce)?;
        let mut data = plaintext.to_vec();
        self.cipher()
            .seal_in_place_append_tag(nonce, Aad::from(associated_data), &mut data)
            .map_err(|_| DecryptError::Authentication)?;
        Ok(STANDARD.encode(data))
    }
}

fn nonce_of(nonce: &[u8]) -> Result<Nonce, DecryptError> {
    let raw: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| DecryptError::NonceLength { len: nonce.len() })?;
    Ok(Nonce::assume_unique_for_key(raw))
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape_errors() {
        let key = ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEF").unwrap();
        let sealed = key.encrypt(b"aad", b"123456789012", b"hello").unwrap();
        assert_eq!(
            key.decrypt(b"aad", b"123456789012", &sealed).unwrap(),
            b"hello"
        );
        assert_eq!(
            key.decrypt(b"aad", b"short", &sealed),
            Err(DecryptError::NonceLength { len: 5 })
        );
        assert_eq!(
            key.decrypt(b"aad", b"123456789012", "AAAA"),
            Err(DecryptError::TooShort)
        );
        assert!(matches!(
            key.decrypt(b"aad", b"123456789012", "***"),
            Err(DecryptError::Base64(_))
        ));
        assert_eq!(
            ApiV3Key::from_bytes(&[0; 33]),
            Err(ApiV3KeyError { len: 33 })
        );
    }
}
