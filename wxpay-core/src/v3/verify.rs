//! Verifiers (spec 3.4): check a signature with the key a
//! `Wechatpay-Serial` names — one per key source, and a combined one for
//! the certificate → public-key migration.

use std::{collections::HashMap, sync::Arc};

use super::{certificates::PlatformCertificate, key::PublicKey};

/// The prefix of a WeChat Pay public key id (`PUB_KEY_ID_…`). A serial with
/// this prefix is never a certificate serial, so it never makes a
/// certificate store look (or refresh) for it (spec 3.3 step 5).
pub const PUB_KEY_ID_PREFIX: &str = "PUB_KEY_ID_";

/// Why a verifier refused a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No key is held for this serial (or public key id).
    #[error("no key for Wechatpay-Serial {serial:?}")]
    UnknownSerial {
        /// The serial received.
        serial: String,
    },
    /// The key exists but the signature is not its signature of the message.
    #[error("signature does not verify")]
    InvalidSignature,
}

/// Checks `signature` (Base64) over `message` with the key `serial` names,
/// and only that key (never all keys in turn, spec 3.3 step 5).
pub trait Verifier: Send + Sync {
    /// `Ok` if the key named `serial` signed `message`.
    ///
    /// # Errors
    /// [`VerifyError::UnknownSerial`] if no key has that serial,
    /// [`VerifyError::InvalidSignature`] if the signature does not verify.
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError>;
}

impl<V: Verifier + ?Sized> Verifier for Arc<V> {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        (**self).verify(serial, message, signature)
    }
}

impl<V: Verifier + ?Sized> Verifier for &V {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        (**self).verify(serial, message, signature)
    }
}

fn check(key: &PublicKey, message: &[u8], signature: &str) -> Result<(), VerifyError> {
    if key.verifies(message, signature) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

/// Public-key mode (spec 4.3): one WeChat Pay public key and its id
/// `PUB_KEY_ID_…`, matched exactly (prefix kept, length not checked).
#[derive(Debug, Clone)]
pub struct PublicKeyVerifier {
    id: String,
    key: PublicKey,
}

impl PublicKeyVerifier {
    /// The key `key` with id `id` (e.g. `PUB_KEY_ID_0114232134912410000000000000000001`).
    pub fn new(id: impl Into<String>, key: PublicKey) -> PublicKeyVerifier {
        PublicKeyVerifier { id: id.into(), key }
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Verifier for PublicKeyVerifier {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        if serial != self.id {
            return Err(VerifyError::UnknownSerial {
                serial: serial.to_owned(),
            });
        }
        check(&self.key, message, signature)
    }
}

/// Platform-certificate mode (spec 3.4, 4.1): the certificates held, by
/// serial (hex, compared case-insensitively). Keeps every certificate it is
/// given; dropping expired ones is the refresher's job.
#[derive(Debug, Clone, Default)]
pub struct CertificateVerifier {
    by_serial: HashMap<String, PlatformCertificate>,
}

impl CertificateVerifier {
    /// An empty store.
    pub fn new() -> CertificateVerifier {
        CertificateVerifier::default()
    }

    /// A store holding `certificates`.
    pub fn with_certificates(
        certificates: impl IntoIterator<Item = PlatformCertificate>,
    ) -> CertificateVerifier {
        let mut store = CertificateVerifier::new();
        for c in certificates {
            store.insert(c);
        }
        store
    }

    /// Adds (or replaces) a certificate under its serial.
    pub fn insert(&mut self, certificate: PlatformCertificate) {
        self.by_serial
            .insert(certificate.serial_no().to_ascii_uppercase(), certificate);
    }

    /// The certificate with this serial (any case).
    pub fn get(&self, serial: &str) -> Option<&PlatformCertificate> {
        self.by_serial.get(&serial.to_ascii_uppercase())
    }

    /// How many certificates are held.
    pub fn len(&self) -> usize {
        self.by_serial.len()
    }

    /// Whether no certificate is held.
    pub fn is_empty(&self) -> bool {
        self.by_serial.is_empty()
    }
}

impl Verifier for CertificateVerifier {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        let cert = self.get(serial).ok_or_else(|| VerifyError::UnknownSerial {
            serial: serial.to_owned(),
        })?;
        check(cert.public_key(), message, signature)
    }
}

/// Both key sources at once, for the migration window (spec 3.4, 4.4): a
/// serial equal to the public key's id uses the public key, another
/// `PUB_KEY_ID_…` is unknown, any other serial goes to the certificate store
/// (wechatpay-go's combined verifier).
#[derive(Debug, Clone)]
pub struct CombinedVerifier<C = CertificateVerifier> {
    public_key: PublicKeyVerifier,
    certificates: C,
}

impl<C: Verifier> CombinedVerifier<C> {
    /// Combines the public key and a certificate store.
    pub fn new(public_key: PublicKeyVerifier, certificates: C) -> CombinedVerifier<C> {
        CombinedVerifier {
            public_key,
            certificates,
        }
    }
}

impl<C: Verifier> Verifier for CombinedVerifier<C> {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        if serial == self.public_key.id() || serial.starts_with(PUB_KEY_ID_PREFIX) {
            self.public_key.verify(serial, message, signature)
        } else {
            self.certificates.verify(serial, message, signature)
        }
    }
}
