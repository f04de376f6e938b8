//! API v3 key material: the merchant's verification key, the platform
//! certificates and the WeChat Pay public key — loaded from PEM or
//! generated (RSA-2048 with aws-lc-rs, X.509 with rcgen) — and the signing
//! of answers and notifies.

use std::{
    fmt, io,
    path::Path,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use aws_lc_rs::{
    encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der},
    rand::SystemRandom,
    rsa::{KeyPair, KeySize},
    signature::{KeyPair as _, RSA_PKCS1_SHA256},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};
use wxpay_core::v3::{
    AEAD_AES_256_GCM, ApiV3Key, CertificateVerifier, CombinedVerifier, Credential, MerchantKey,
    PlatformCertificate, PublicKey, PublicKeyVerifier, SIGNATURE_TYPE, response_message,
};

use crate::{
    model::{Secret, SimConfig, VerifyMode},
    state::{random_alnum, random_digits},
};

/// Why the v3 key material could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A PEM given in the configuration does not parse.
    #[error("{what}: not a usable PEM ({reason})")]
    Pem {
        /// Which key or certificate.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A serial or key id is missing or malformed.
    #[error("{0}")]
    Serial(String),
    /// The APIv3 key is not 32 bytes.
    #[error("APIv3 key")]
    ApiV3Key(#[from] wxpay_core::v3::ApiV3KeyError),
    /// RSA key generation or signing failed inside aws-lc-rs.
    #[error("RSA key generation failed")]
    Generate,
    /// rcgen could not build a certificate.
    #[error("certificate generation")]
    Certificate(#[source] rcgen::Error),
    /// Writing the keys directory failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn pem_error(what: &'static str, reason: impl fmt::Display) -> KeyError {
    KeyError::Pem {
        what,
        reason: reason.to_string(),
    }
}

/// Decodes the first PEM block: (label, DER).
fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].split_whitespace().collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// An RSA key pair the simulator holds the private part of.
pub(crate) struct RsaKey {
    pair: KeyPair,
    private_pem: String,
    public_pem: String,
}

impl RsaKey {
    pub(crate) fn generate() -> Result<RsaKey, KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let der: Pkcs8V1Der<'_> = pair.as_der().map_err(|_| KeyError::Generate)?;
        let private_pem = pem_encode("PRIVATE KEY", der.as_ref());
        RsaKey::new(pair, private_pem)
    }

    pub(crate) fn from_pem(what: &'static str, pem: &str) -> Result<RsaKey, KeyError> {
        let (label, der) = pem_decode(pem).ok_or_else(|| pem_error(what, "malformed"))?;
        let pair = match label.as_str() {
            "PRIVATE KEY" => KeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => KeyPair::from_der(&der),
            other => return Err(pem_error(what, format!("label {other:?}"))),
        }
        .map_err(|e| pem_error(what, e))?;
        RsaKey::new(pair, pem.to_owned())
    }

    fn new(pair: KeyPair, private_pem: String) -> Result<RsaKey, KeyError> {
        let spki: PublicKeyX509Der<'_> =
            pair.public_key().as_der().map_err(|_| KeyError::Generate)?;
        let public_pem = pem_encode("PUBLIC KEY", spki.as_ref());
        Ok(RsaKey {
            pair,
            private_pem,
            public_pem,
        })
    }

    fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .map_err(|_| KeyError::Generate)?;
        Ok(sig)
    }

    /// Base64 SHA256withRSA.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        // Signing with a loaded key does not fail short of memory exhaustion.
        STANDARD.encode(self.sign_raw(message).unwrap_or_default())
    }

    pub(crate) fn public_key(&self) -> PublicKey {
        PublicKey::from_pem(&self.public_pem).expect("aws-lc-rs SPKI parses")
    }
}

impl rcgen::PublicKeyData for RsaKey {
    fn der_bytes(&self) -> &[u8] {
        // PKCS#1 RSAPublicKey, the BIT STRING content of an RSA SPKI.
        self.pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for RsaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_raw(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// 40 upper-case hex digits, first byte 0x10–0x7F (no sign byte, no
/// leading zero), like WeChat's serials.
fn random_serial() -> String {
    let mut rng = rand::thread_rng();
    let mut s = format!("{:02X}", rng.gen_range(0x10..0x80u8));
    for _ in 0..19 {
        s.push_str(&format!("{:02X}", rng.r#gen::<u8>()));
    }
    s
}

fn serial_bytes(serial: &str) -> Result<Vec<u8>, KeyError> {
    let bad = || {
        KeyError::Serial(format!(
            "certificate serial {serial:?} must be an even number (2–40) of hex digits, not starting with 00"
        ))
    };
    if serial.is_empty()
        || serial.len() > 40
        || !serial.len().is_multiple_of(2)
        || serial.starts_with("00")
        || !serial.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(bad());
    }
    (0..serial.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&serial[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

fn to_time(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A self-signed certificate for `key` with this serial and common name.
pub(crate) fn issue_certificate(
    key: &RsaKey,
    serial: &str,
    org: &str,
    common_name: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<String, KeyError> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, SerialNumber};
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "CN");
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::OrganizationalUnitName, "wxpay-sim");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(serial)?));
    params.not_before = to_time(not_before);
    params.not_after = to_time(not_after);
    let cert = params.self_signed(key).map_err(KeyError::Certificate)?;
    Ok(cert.pem())
}

/// How long a generated certificate is valid: 5 years, like WeChat's.
const CERT_LIFETIME: chrono::Duration = chrono::Duration::days(5 * 365);

/// A platform certificate the simulator can sign with.
pub(crate) struct PlatformCert {
    key: RsaKey,
    serial: String,
    cert_pem: String,
    effective: DateTime<Utc>,
    /// The listed `expire_time`; shortened when a newer one takes over.
    expire: DateTime<Utc>,
}

impl PlatformCert {
    pub(crate) fn generate(serial: Option<String>) -> Result<PlatformCert, KeyError> {
        PlatformCert::build(RsaKey::generate()?, serial, None)
    }

    fn build(
        key: RsaKey,
        serial: Option<String>,
        cert_pem: Option<String>,
    ) -> Result<PlatformCert, KeyError> {
        if let Some(pem) = cert_pem {
            let cert = PlatformCertificate::from_pem(&pem)
                .map_err(|e| pem_error("platform certificate", e))?;
            if let Some(s) = &serial
                && !s.eq_ignore_ascii_case(cert.serial_no())
            {
                return Err(KeyError::Serial(format!(
                    "--platform-serial {s} differs from the certificate's serial {}",
                    cert.serial_no()
                )));
            }
            return Ok(PlatformCert {
                key,
                serial: cert.serial_no().to_owned(),
                cert_pem: pem,
                effective: cert.not_before(),
                expire: cert.not_after(),
            });
        }
        let serial = serial.map_or_else(random_serial, |s| s.to_ascii_uppercase());
        let effective = Utc::now() - chrono::Duration::days(1);
        let expire = effective + CERT_LIFETIME;
        let cert_pem = issue_certificate(
            &key,
            &serial,
            "Tenpay.com",
            "Tenpay.com sign (wxpay-sim)",
            effective,
            expire,
        )?;
        Ok(PlatformCert {
            key,
            serial,
            cert_pem,
            effective,
            expire,
        })
    }
}

/// The WeChat Pay public key (public-key mode) with its private part.
pub(crate) struct WechatPublicKey {
    key: RsaKey,
    id: String,
}

/// The merchant as the simulator knows it: enough to verify its requests,
/// and the private part when the simulator made (or was given) it.
pub(crate) struct Merchant {
    verify: PublicKey,
    serial: String,
    private_pem: Option<String>,
    cert_pem: Option<String>,
}

/// Which key signs a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signer {
    Certificate,
    PublicKey,
}

/// The runtime v3 key state.
pub(crate) struct V3Keys {
    pub(crate) merchant: Merchant,
    pub(crate) apiv3: ApiV3Key,
    apiv3_text: Secret,
    mode: VerifyMode,
    /// Oldest first; the last one signs.
    platform: Mutex<Vec<PlatformCert>>,
    public_key: WechatPublicKey,
    rng: Mutex<StdRng>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The signature headers of an answer or notify.
pub(crate) struct Signature {
    pub(crate) timestamp: String,
    pub(crate) nonce: String,
    pub(crate) serial: String,
    pub(crate) signature: String,
}

impl Signature {
    pub(crate) fn headers(&self) -> [(&'static str, String); 5] {
        [
            ("Wechatpay-Timestamp", self.timestamp.clone()),
            ("Wechatpay-Nonce", self.nonce.clone()),
            ("Wechatpay-Serial", self.serial.clone()),
            ("Wechatpay-Signature", self.signature.clone()),
            ("Wechatpay-Signature-Type", SIGNATURE_TYPE.to_owned()),
        ]
    }
}

/// What a signature should look like (fault injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tamper {
    None,
    /// A valid signature of another message.
    Corrupt,
    /// A `WECHATPAY/SIGNTEST/` probe.
    Probe,
}

impl V3Keys {
    pub(crate) fn load(config: &SimConfig) -> Result<V3Keys, KeyError> {
        let c = &config.v3;
        let apiv3 = ApiV3Key::new(c.apiv3_key.expose())?;
        let merchant = load_merchant(config)?;
        let platform_key = match &c.platform_key_pem {
            Some(pem) => RsaKey::from_pem("platform key", pem.expose())?,
            None => {
                if c.platform_cert_pem.is_some() {
                    return Err(KeyError::Serial(
                        "a platform certificate needs its private key (--platform-key)".into(),
                    ));
                }
                RsaKey::generate()?
            }
        };
        let platform = PlatformCert::build(
            platform_key,
            c.platform_serial.clone(),
            c.platform_cert_pem.clone(),
        )?;
        let public_key = match &c.public_key_private_pem {
            Some(pem) => WechatPublicKey {
                key: RsaKey::from_pem("WeChat Pay public key (private part)", pem.expose())?,
                id: c
                    .public_key_id
                    .clone()
                    .ok_or_else(|| KeyError::Serial("--public-key needs --public-key-id".into()))?,
            },
            None => WechatPublicKey {
                key: RsaKey::generate()?,
                id: c
                    .public_key_id
                    .clone()
                    .unwrap_or_else(|| format!("PUB_KEY_ID_01{}", random_digits(32))),
            },
        };
        if !public_key.id.starts_with(wxpay_core::v3::PUB_KEY_ID_PREFIX) {
            return Err(KeyError::Serial(format!(
                "public key id {:?} must start with PUB_KEY_ID_",
                public_key.id
            )));
        }
        let rng = match c.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Ok(V3Keys {
            merchant,
            apiv3,
            apiv3_text: c.apiv3_key.clone(),
            mode: c.verify_mode,
            platform: Mutex::new(vec![platform]),
            public_key,
            rng: Mutex::new(rng),
        })
    }

    pub(crate) fn mode(&self) -> VerifyMode {
        self.mode
    }

    /// Checks a request signature with the merchant's key.
    pub(crate) fn merchant_verifies(&self, serial: &str, message: &[u8], signature: &str) -> bool {
        serial.eq_ignore_ascii_case(&self.merchant.serial)
            && self.merchant.verify.verifies(message, signature)
    }

    pub(crate) fn merchant_serial(&self) -> &str {
        &self.merchant.serial
    }

    /// Who signs an answer to a request that carried `request_serial`
    /// (its `Wechatpay-Serial` header).
    pub(crate) fn answer_signer(&self, request_serial: Option<&str>) -> Signer {
        match self.mode {
            VerifyMode::Cert => Signer::Certificate,
            VerifyMode::PubKey => Signer::PublicKey,
            VerifyMode::Migration => {
                if request_serial.is_some_and(|s| s.starts_with(wxpay_core::v3::PUB_KEY_ID_PREFIX))
                {
                    Signer::PublicKey
                } else {
                    Signer::Certificate
                }
            }
        }
    }

    /// Who signs a notify: in migration mode, one or the other at random
    /// (seedable with `V3Config::seed`).
    pub(crate) fn notify_signer(&self) -> Signer {
        match self.mode {
            VerifyMode::Cert => Signer::Certificate,
            VerifyMode::PubKey => Signer::PublicKey,
            VerifyMode::Migration => {
                if lock(&self.rng).gen_bool(0.5) {
                    Signer::PublicKey
                } else {
                    Signer::Certificate
                }
            }
        }
    }

    /// Signs `TS\nNONCE\nBODY\n` over `body` as sent.
    pub(crate) fn sign(&self, signer: Signer, body: &[u8], tamper: Tamper) -> Signature {
        let timestamp = Utc::now().timestamp().to_string();
        let nonce = random_alnum(32);
        let mut message = response_message(&timestamp, &nonce, body);
        if tamper == Tamper::Corrupt {
            message.extend_from_slice(b"corrupted in transit");
        }
        let (serial, signature) = match signer {
            Signer::Certificate => {
                let certs = lock(&self.platform);
                let current = certs.last().expect("at least one platform certificate");
                (current.serial.clone(), current.key.sign(&message))
            }
            Signer::PublicKey => (
                self.public_key.id.clone(),
                self.public_key.key.sign(&message),
            ),
        };
        let signature = match tamper {
            Tamper::Probe => format!("{}{}", wxpay_core::v3::SIGNTEST_PREFIX, &signature[..32]),
            _ => signature,
        };
        Signature {
            timestamp,
            nonce,
            serial,
            signature,
        }
    }

    /// The body of `GET /v3/certificates`: every listed certificate,
    /// encrypted with the APIv3 key.
    pub(crate) fn certificates_body(&self) -> Vec<u8> {
        let now = Utc::now();
        let mut certs = lock(&self.platform);
        // Certificates past their (shortened) expire_time are no longer listed.
        let keep_from = certs.len() - 1;
        let mut i = 0;
        certs.retain(|c| {
            let keep = i >= keep_from || c.expire > now;
            i += 1;
            keep
        });
        let data: Vec<serde_json::Value> = certs
            .iter()
            .map(|c| {
                let nonce = random_alnum(12);
                let ciphertext = self
                    .apiv3
                    .encrypt(b"certificate", nonce.as_bytes(), c.cert_pem.as_bytes())
                    .expect("12-byte nonce");
                serde_json::json!({
                    "serial_no": c.serial,
                    "effective_time": crate::api_v3::rfc3339(c.effective),
                    "expire_time": crate::api_v3::rfc3339(c.expire),
                    "encrypt_certificate": {
                        "algorithm": AEAD_AES_256_GCM,
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": ciphertext,
                    },
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "data": data })).unwrap_or_default()
    }

    /// Puts a new certificate in charge; the previous ones stay listed
    /// until `now + grace` (their `expire_time` shortened to it).
    pub(crate) fn rotate(&self, new: PlatformCert, grace: Duration) -> (String, String) {
        let mut certs = lock(&self.platform);
        let until = Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default();
        let previous = certs.last().map(|c| c.serial.clone()).unwrap_or_default();
        for c in certs.iter_mut() {
            if c.expire > until {
                c.expire = until;
            }
        }
        let serial = new.serial.clone();
        certs.push(new);
        (previous, serial)
    }

    pub(crate) fn material(&self, config: &SimConfig, base_url: String) -> crate::V3Merchant {
        let certs = lock(&self.platform);
        let current = certs.last().expect("at least one platform certificate");
        crate::V3Merchant {
            appid: config.appid.clone(),
            mchid: config.mch_id.clone(),
            api_base: base_url,
            mch_private_key_pem: self.merchant.private_pem.clone().map(Secret::new),
            mch_serial: self.merchant.serial.clone(),
            mch_cert_pem: self.merchant.cert_pem.clone(),
            apiv3_key: self.apiv3_text.clone(),
            verify_mode: self.mode,
            public_key_id: self.public_key.id.clone(),
            public_key_pem: self.public_key.key.public_pem.clone(),
            platform_certificates_pem: certs.iter().map(|c| c.cert_pem.clone()).collect(),
            platform_serial: current.serial.clone(),
        }
    }

    /// Writes the keys directory (see `V3Config::keys_dir`).
    pub(crate) fn write_dir(
        &self,
        dir: &Path,
        config: &SimConfig,
        base_url: &str,
    ) -> Result<(), KeyError> {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        // Absolute paths in wxpay.env, whatever the server's working directory.
        let dir = &std::fs::canonicalize(dir).map_err(|source| KeyError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        let write = |name: &str, text: &str, private: bool| -> Result<String, KeyError> {
            let path = dir.join(name);
            write_file(&path, text, private).map_err(|source| KeyError::Write {
                path: path.display().to_string(),
                source,
            })?;
            Ok(path.display().to_string())
        };
        let mut env = vec![
            "# wxpay-sim: a v3 merchant for this simulator".to_owned(),
            "WXPAY_API_VERSION=v3".to_owned(),
            format!("WXPAY_APPID={}", config.appid),
            format!("WXPAY_MCH_ID={}", config.mch_id),
            format!("WXPAY_APIV3_KEY={}", self.apiv3_text.expose()),
            format!("WXPAY_MCH_SERIAL={}", self.merchant.serial),
        ];
        if let Some(pem) = &self.merchant.private_pem {
            let key = write("apiclient_key.pem", pem, true)?;
            env.push(format!("WXPAY_MCH_PRIVATE_KEY_FILE={key}"));
            env.push(format!("WXPAY_CLIENT_KEY_FILE={key}"));
        }
        if let Some(pem) = &self.merchant.cert_pem {
            let cert = write("apiclient_cert.pem", pem, false)?;
            env.push(format!("WXPAY_CLIENT_CERT_FILE={cert}"));
        }
        let pub_key = write("pub_key.pem", &self.public_key.key.public_pem, false)?;
        if self.mode != VerifyMode::Cert {
            env.push(format!("WXPAY_PUBLIC_KEY_FILE={pub_key}"));
            env.push(format!("WXPAY_PUBLIC_KEY_ID={}", self.public_key.id));
        }
        if self.mode == VerifyMode::Migration {
            // Notifies come signed by either key: the client needs the
            // platform certificates as well as the public key.
            env.push("WXPAY_PLATFORM_CERT_DOWNLOAD=true".to_owned());
        }
        env.push("# where this simulator sends notifies: your server's notify route".to_owned());
        env.push("# WXPAY_NOTIFY_URL=http://127.0.0.1:8080/pay/notify".to_owned());
        env.push(format!("WXPAY_API_BASE={base_url}"));
        env.push(format!("WXPAY_OPEN_API_BASE={base_url}"));
        env.push("# API v2 (same merchant)".to_owned());
        env.push(format!("WXPAY_API_KEY={}", config.api_key.expose()));
        env.push(format!("WXPAY_APP_SECRET={}", config.app_secret.expose()));
        {
            let certs = lock(&self.platform);
            let current = certs.last().expect("at least one platform certificate");
            write("platform_key.pem", &current.key.private_pem, true)?;
            write("platform_cert.pem", &current.cert_pem, false)?;
        }
        write(
            "pub_key_private.pem",
            &self.public_key.key.private_pem,
            true,
        )?;
        env.push(String::new());
        write("wxpay.env", &env.join("\n"), true)?;
        Ok(())
    }
}

pub(crate) fn combined(id: &str, public_pem: &str, certs: &[String]) -> CombinedVerifier {
    CombinedVerifier::new(
        PublicKeyVerifier::new(id, PublicKey::from_pem(public_pem).expect("SPKI PEM")),
        certificate_verifier(certs),
    )
}

pub(crate) fn certificate_verifier(certs: &[String]) -> CertificateVerifier {
    CertificateVerifier::with_certificates(
        certs
            .iter()
            .filter_map(|pem| PlatformCertificate::from_pem(pem).ok()),
    )
}

pub(crate) fn credential(mchid: &str, serial: &str, private_pem: &str) -> Option<Credential> {
    let key = MerchantKey::from_pem(private_pem).ok()?;
    Some(Credential::new(mchid, serial, key))
}

fn write_file(path: &Path, text: &str, private: bool) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)?.write_all(text.as_bytes())
}

fn load_merchant(config: &SimConfig) -> Result<Merchant, KeyError> {
    let c = &config.v3;
    let private = c
        .mch_private_key_pem
        .as_ref()
        .map(|pem| RsaKey::from_pem("merchant private key", pem.expose()))
        .transpose()?;
    if let Some(pem) = &c.mch_public_key_pem {
        let (label, _) = pem_decode(pem).ok_or_else(|| pem_error("merchant key", "malformed"))?;
        let (verify, serial, cert_pem) = if label == "CERTIFICATE" {
            let cert = PlatformCertificate::from_pem(pem)
                .map_err(|e| pem_error("merchant certificate", e))?;
            if let Some(s) = &c.mch_serial
                && !s.eq_ignore_ascii_case(cert.serial_no())
            {
                return Err(KeyError::Serial(format!(
                    "--mch-serial {s} differs from the merchant certificate's serial {}",
                    cert.serial_no()
                )));
            }
            (
                cert.public_key().clone(),
                cert.serial_no().to_owned(),
                Some(pem.clone()),
            )
        } else {
            let key = PublicKey::from_pem(pem).map_err(|e| pem_error("merchant public key", e))?;
            let serial = c.mch_serial.clone().ok_or_else(|| {
                KeyError::Serial("a merchant public key needs --mch-serial".into())
            })?;
            (key, serial.to_ascii_uppercase(), None)
        };
        return Ok(Merchant {
            verify,
            serial,
            private_pem: private.as_ref().map(|k| k.private_pem.clone()),
            cert_pem,
        });
    }
    let generated = private.is_none();
    let key = match private {
        Some(k) => k,
        None => RsaKey::generate()?,
    };
    let serial = match &c.mch_serial {
        Some(s) => s.to_ascii_uppercase(),
        None if generated => random_serial(),
        None => {
            return Err(KeyError::Serial(
                "a merchant private key needs --mch-serial".into(),
            ));
        }
    };
    let cert_pem = if serial_bytes(&serial).is_ok() {
        let now = Utc::now() - chrono::Duration::days(1);
        Some(issue_certificate(
            &key,
            &serial,
            "wxpay-sim merchant",
            &config.mch_id,
            now,
            now + CERT_LIFETIME,
        )?)
    } else {
        None
    };
    Ok(Merchant {
        verify: key.public_key(),
        serial,
        private_pem: Some(key.private_pem.clone()),
        cert_pem,
    })
}
