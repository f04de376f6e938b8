//! RSA keys: the merchant's private key (signing) and WeChat Pay's public
//! keys (verification). RSASSA-PKCS1-v1_5 with SHA-256, Base64 signatures.

use std::fmt;

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeyPair as RsaKeyPair,
    signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256},
};
use base64::{Engine, engine::general_purpose::STANDARD};

use super::pem::{self, PemError};

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM text is malformed or carries the wrong label.
    #[error("key PEM")]
    Pem(#[from] PemError),
    /// The DER is not an RSA key of an accepted size (2048 to 8192 bits).
    #[error("RSA key rejected")]
    Rejected(#[source] aws_lc_rs::error::KeyRejected),
}

/// RSA signing failed inside the crypto library (it does not for a loaded key
/// short of memory exhaustion; kept as an error rather than a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RSA signing failed")]
pub struct SigningError;

/// The merchant API private key (`apiclient_key.pem`): signs requests
/// (spec 2.3) and `paySign` (spec 8). `Debug` prints `***`.
pub struct MerchantKey {
    pair: RsaKeyPair,
}

impl MerchantKey {
    /// Loads a PEM private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what
    /// the merchant platform issues) or PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`KeyError::Pem`] for malformed text or another label,
    /// [`KeyError::Rejected`] if the DER is not an acceptable RSA key.
    pub fn from_pem(pem: &str) -> Result<MerchantKey, KeyError> {
        match pem::decode(pem)? {
            (label, der) if label == "PRIVATE KEY" => MerchantKey::from_pkcs8_der(&der),
            (label, der) if label == "RSA PRIVATE KEY" => MerchantKey::from_pkcs1_der(&der),
            (found, _) => Err(PemError::UnexpectedLabel { found }.into()),
        }
    }

    /// Loads a PKCS#8 DER private key.
    ///
    /// # Errors
    /// [`KeyError::Rejected`] if it is not an acceptable RSA key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<MerchantKey, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(KeyError::Rejected)?;
        Ok(MerchantKey { pair })
    }

    /// Loads a PKCS#1 (`RSAPrivateKey`) DER private key.
    ///
    /// # Errors
    /// [`KeyError::Rejected`] if it is not an acceptable RSA key.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<MerchantKey, KeyError> {
        let pair = RsaKeyPair::from_der(der).map_err(KeyError::Rejected)?;
        Ok(MerchantKey { pair })
    }

    /// `Base64(RSASSA-PKCS1-v1_5-Sign(SHA-256, key, message))`, standard
    /// alphabet with padding (spec 2.3). Deterministic.
    ///
    /// # Errors
    /// [`SigningError`] only if the crypto library fails internally.
    pub fn sign(&self, message: &[u8]) -> Result<String, SigningError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SigningError)?;
        Ok(STANDARD.encode(signature))
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantKey(***)")
    }
}

/// An RSA public key of WeChat Pay: the public key of public-key mode
/// (`pub_key.pem`, spec 4.3) or a platform certificate's key.
#[derive(Clone)]
pub struct PublicKey {
    key: ParsedPublicKey,
}

impl PublicKey {
    /// Loads a PEM public key: SPKI (`-----BEGIN PUBLIC KEY-----`, the form of
    /// `pub_key.pem`) or PKCS#1 (`-----BEGIN RSA PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`KeyError::Pem`] for malformed text or another label,
    /// [`KeyError::Rejected`] if the DER is not an acceptable RSA key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        match pem::decode(pem)? {
            (label, der) if label == "PUBLIC KEY" || label == "RSA PUBLIC KEY" => {
                PublicKey::from_der(&der)
            }
            (found, _) => Err(PemError::UnexpectedLabel { found }.into()),
        }
    }

    /// Loads a DER public key, SPKI or PKCS#1 `RSAPublicKey`.
    ///
    /// # Errors
    /// [`KeyError::Rejected`] if it is not an acceptable RSA key.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let key =
            ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).map_err(KeyError::Rejected)?;
        Ok(PublicKey { key })
    }

    /// Whether `signature` (strict standard Base64) is this key's
    /// RSASSA-PKCS1-v1_5/SHA-256 signature of `message`. Invalid Base64 is
    /// an invalid signature.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        match STANDARD.decode(signature) {
            Ok(raw) => self.key.verify_sig(message, &raw).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(RSA)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_pem_labels_and_garbage() {
        let cert = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            MerchantKey::from_pem(cert),
            Err(KeyError::Pem(PemError::UnexpectedLabel { found })) if found == "CERTIFICATE"
        ));
        assert!(matches!(
            PublicKey::from_pem(cert),
            Err(KeyError::Pem(PemError::UnexpectedLabel { .. }))
        ));
        let junk = "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            MerchantKey::from_pem(junk),
            Err(KeyError::Rejected(_))
        ));
    }
}
