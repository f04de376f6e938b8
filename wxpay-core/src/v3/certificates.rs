//! Platform certificates (spec 4.1): parsing, and decrypting the answer of
//! `GET /v3/certificates`.

use chrono::{DateTime, Utc};
use x509_parser::{error::X509Error, nom};

use super::{
    aead::{ApiV3Key, DecryptError, EncryptedResource},
    key::{KeyError, PublicKey},
    pem::{self, PemError},
};

/// Why a certificate (or a certificate download) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The PEM text is malformed or not a `CERTIFICATE`.
    #[error("certificate PEM")]
    Pem(#[from] PemError),
    /// The DER is not an X.509 certificate.
    #[error("not an X.509 certificate")]
    X509(#[source] X509Error),
    /// The certificate's key is not an acceptable RSA key.
    #[error("certificate public key")]
    Key(#[from] KeyError),
    /// A validity date is out of range.
    #[error("certificate validity out of range")]
    Validity,
    /// The `/v3/certificates` body is not the expected JSON.
    #[error("certificate list JSON")]
    Json(#[source] serde_json::Error),
    /// An `encrypt_certificate` did not decrypt.
    #[error("certificate {serial_no} did not decrypt")]
    Decrypt {
        /// The entry's `serial_no`.
        serial_no: String,
        /// Why.
        #[source]
        source: DecryptError,
    },
    /// The decrypted certificate's serial differs from the entry's `serial_no`.
    #[error("certificate serial {found} does not match the listed {listed}")]
    SerialMismatch {
        /// The listed `serial_no`.
        listed: String,
        /// The serial in the certificate.
        found: String,
    },
}

/// A WeChat Pay platform certificate: its serial (upper-case hex), validity
/// and RSA public key.
#[derive(Debug, Clone)]
pub struct PlatformCertificate {
    serial_no: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    key: PublicKey,
    pem: String,
}

impl PlatformCertificate {
    /// Parses a PEM `CERTIFICATE`.
    ///
    /// # Errors
    /// [`CertificateError::Pem`], [`CertificateError::X509`],
    /// [`CertificateError::Key`] (not RSA 2048–8192) or
    /// [`CertificateError::Validity`].
    pub fn from_pem(text: &str) -> Result<PlatformCertificate, CertificateError> {
        let (label, der) = pem::decode(text)?;
        if label != "CERTIFICATE" {
            return Err(PemError::UnexpectedLabel { found: label }.into());
        }
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => CertificateError::X509(e),
            nom::Err::Incomplete(_) => CertificateError::X509(X509Error::InvalidCertificate),
        })?;
        // The DER INTEGER may carry a leading 0x00 sign byte; the serial
        // WeChat sends is the hex of the number itself.
        let raw = cert.raw_serial();
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let serial_no = raw[start..].iter().map(|b| format!("{b:02X}")).collect();
        let date = |t: i64| DateTime::from_timestamp(t, 0).ok_or(CertificateError::Validity);
        let validity = cert.validity();
        Ok(PlatformCertificate {
            serial_no,
            not_before: date(validity.not_before.timestamp())?,
            not_after: date(validity.not_after.timestamp())?,
            key: PublicKey::from_der(cert.public_key().raw)?,
            pem: text.to_owned(),
        })
    }

    /// The serial, upper-case hex (40 digits for WeChat's certificates).
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// Start of validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Whether `now` is within the validity period.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The RSA public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The PEM text it was parsed from.
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

#[derive(serde::Deserialize)]
struct CertificateList {
    data: Vec<CertificateEntry>,
}

#[derive(serde::Deserialize)]
struct CertificateEntry {
    serial_no: String,
    encrypt_certificate: EncryptedResource,
}

/// Decrypts every entry of a `/v3/certificates` answer body with the APIv3
/// key and checks that each certificate's serial equals its `serial_no`
/// (case-insensitively). Verifying the answer's own signature is a separate
/// step: build a [`CertificateVerifier`](super::CertificateVerifier) from the
/// result (or use the ones already held) and run a
/// [`ResponseValidator`](super::ResponseValidator) on the same raw body.
///
/// # Errors
/// [`CertificateError::Json`], [`CertificateError::Decrypt`],
/// [`CertificateError::SerialMismatch`], or a parse error of the decrypted PEM.
pub fn decrypt_certificates(
    body: &[u8],
    key: &ApiV3Key,
) -> Result<Vec<PlatformCertificate>, CertificateError> {
    let list: CertificateList = serde_json::from_slice(body).map_err(CertificateError::Json)?;
    list.data
        .into_iter()
        .map(|entry| {
            let plain = key
                .decrypt_resource(&entry.encrypt_certificate)
                .map_err(|source| CertificateError::Decrypt {
                    serial_no: entry.serial_no.clone(),
                    source,
                })?;
            let text = String::from_utf8_lossy(&plain);
            let cert = PlatformCertificate::from_pem(&text)?;
            if !cert.serial_no().eq_ignore_ascii_case(&entry.serial_no) {
                return Err(CertificateError::SerialMismatch {
                    listed: entry.serial_no,
                    found: cert.serial_no,
                });
            }
            Ok(cert)
        })
        .collect()
}
