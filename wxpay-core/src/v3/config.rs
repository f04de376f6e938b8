//! The v3 client's configuration.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    aead::ApiV3Key, certificates::PlatformCertificate, error::ConfigError, sign::Credential,
    verify::PublicKeyVerifier,
};

/// The production API host.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// Default interval between certificate downloads (spec 4.2: 1 h).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest refresh interval accepted (spec 4.2: < 12 h).
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// Default minimum gap between two downloads forced by an unknown serial
/// (or retried after a failure).
pub const DEFAULT_REFRESH_GAP: Duration = Duration::from_secs(60);

/// Everything a [`Client`](super::Client) needs: ids, URLs, the signing
/// credential, the APIv3 key and WeChat's verification keys — a public key
/// (`PUB_KEY_ID_…`), platform certificates (pinned and/or downloaded), or
/// both during the migration (spec 3.4, 4.4). `Debug` redacts the keys.
///
/// ```
/// use wxpay_core::v3::{ApiV3Key, ClientConfig, Credential, MerchantKey, PublicKey, PublicKeyVerifier};
/// # fn demo(merchant_pem: &str, wechat_pem: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let credential = Credential::new("1900000109", "3D2C1B0A99887766554433221100FFEEDDCCBBAA", MerchantKey::from_pem(merchant_pem)?);
/// let config = ClientConfig::new("wx1a2b3c4d5e6f7a8b", credential, ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEF")?)
///     .with_notify_url("https://pay.example.com/wxpay/v3/notify")
///     .with_public_key(PublicKeyVerifier::new("PUB_KEY_ID_0114232134912410000000000000000001", PublicKey::from_pem(wechat_pem)?));
/// config.validate()?;
/// # Ok(()) }
/// ```
///
/// At start-up it is usually loaded: [`ClientConfig::from_env`], or
/// deserialized (serde) from the shape of
/// [`SettingsFile`](crate::config::SettingsFile) (keys by value or by file).
#[derive(Clone, serde::Deserialize)]
#[serde(try_from = "crate::config::SettingsFile")]
#[non_exhaustive]
pub struct ClientConfig {
    /// The mini-program AppID bound to the merchant.
    pub appid: String,
    /// Payment notify URL (HTTPS, no query string), sent with prepays.
    pub notify_url: Option<String>,
    /// Refund notify URL; falls back to `notify_url` when absent.
    pub refund_notify_url: Option<String>,
    /// API host (default [`DEFAULT_API_BASE`]; a simulator's URL in tests).
    pub api_base: String,
    /// Whole-request timeout of every call to WeChat. Bill downloads,
    /// which may be long, have no total limit instead: their answer's head
    /// and then each read of the body must come within this time (see
    /// [`ReqwestTransport`](crate::ReqwestTransport)).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Interval between scheduled certificate downloads (≤ 12 h).
    pub refresh_interval: Duration,
    /// Minimum gap between downloads forced by an unknown serial.
    pub refresh_gap: Duration,
    /// Whether platform certificates are downloaded from `/v3/certificates`.
    pub download_certificates: bool,
    pub(crate) credential: Arc<Credential>,
    pub(crate) api_v3_key: ApiV3Key,
    pub(crate) public_key: Option<PublicKeyVerifier>,
    pub(crate) certificates: Vec<PlatformCertificate>,
}

impl ClientConfig {
    /// A configuration for the merchant of `credential` (its mchid), with
    /// the APIv3 key; add a verification key before use.
    pub fn new(appid: impl Into<String>, credential: Credential, api_v3_key: ApiV3Key) -> Self {
        ClientConfig {
            appid: appid.into(),
            notify_url: None,
            refund_notify_url: None,
            api_base: DEFAULT_API_BASE.to_owned(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            refresh_gap: DEFAULT_REFRESH_GAP,
            download_certificates: false,
            credential: Arc::new(credential),
            api_v3_key,
            public_key: None,
            certificates: Vec::new(),
        }
    }

    /// Loads the v3 configuration from the environment (the variable table
    /// of [`crate::config`]): `WXPAY_APPID`, `WXPAY_MCH_ID`,
    /// `WXPAY_APIV3_KEY` (32 bytes), `WXPAY_MCH_PRIVATE_KEY_FILE` or
    /// `WXPAY_MCH_PRIVATE_KEY` (PEM, PKCS#8 or PKCS#1), `WXPAY_MCH_SERIAL`
    /// (40 hex digits, upper-cased) required; `WXPAY_PUBLIC_KEY_FILE` with
    /// `WXPAY_PUBLIC_KEY_ID` (`PUB_KEY_ID_…`), `WXPAY_PLATFORM_CERT_FILE`
    /// (one or several PEM certificates, pinned),
    /// `WXPAY_PLATFORM_CERT_DOWNLOAD` (`true`/`false`; default on unless a
    /// public key is given without a certificate file), `WXPAY_NOTIFY_URL`,
    /// `WXPAY_REFUND_NOTIFY_URL`, `WXPAY_API_BASE` optional. The v2
    /// variables are ignored.
    ///
    /// # Errors
    /// [`crate::ConfigError`] naming the variable, never quoting a secret:
    /// missing; APIv3 key not 32 bytes; key file unreadable
    /// ([`Unreadable`](crate::ConfigError::Unreadable)) or not an RSA PEM
    /// ([`Key`](crate::ConfigError::Key)); malformed serial or public key
    /// id; public key without id or id without key
    /// ([`Required`](crate::ConfigError::Required)); an unusable
    /// certificate ([`Certificate`](crate::ConfigError::Certificate)); no
    /// way to verify answers ([`Unverifiable`](crate::ConfigError::Unverifiable)).
    pub fn from_env() -> Result<ClientConfig, crate::ConfigError> {
        ClientConfig::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`ClientConfig::from_env`] over any lookup function (testable
    /// without touching the process environment).
    ///
    /// # Errors
    /// As [`ClientConfig::from_env`].
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, crate::ConfigError> {
        crate::settings::v3_from_lookup(get)
    }

    /// The pinned platform certificates.
    pub fn platform_certificates(&self) -> &[PlatformCertificate] {
        &self.certificates
    }

    /// The merchant id (the credential's).
    pub fn mchid(&self) -> &str {
        self.credential.mchid()
    }

    /// The signing credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The WeChat Pay public key, if configured.
    pub fn public_key(&self) -> Option<&PublicKeyVerifier> {
        self.public_key.as_ref()
    }

    /// Sets the payment notify URL.
    pub fn with_notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }

    /// Sets the refund notify URL.
    pub fn with_refund_notify_url(mut self, url: impl Into<String>) -> Self {
        self.refund_notify_url = Some(url.into());
        self
    }

    /// Sets the API host (no trailing slash).
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the request and connect timeouts.
    pub fn with_timeouts(mut self, timeout: Duration, connect_timeout: Duration) -> Self {
        self.timeout = timeout;
        self.connect_timeout = connect_timeout;
        self
    }

    /// Verifies with the WeChat Pay public key; requests then carry
    /// `Wechatpay-Serial: PUB_KEY_ID_…` so that answers are signed with it
    /// (spec 4.4).
    pub fn with_public_key(mut self, key: PublicKeyVerifier) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Pins a platform certificate (kept until it expires).
    pub fn with_platform_certificate(mut self, certificate: PlatformCertificate) -> Self {
        self.certificates.push(certificate);
        self
    }

    /// Downloads platform certificates from `/v3/certificates` (lazily,
    /// every [`refresh_interval`](ClientConfig::refresh_interval), and once
    /// on an unknown serial).
    pub fn with_certificate_download(mut self, on: bool) -> Self {
        self.download_certificates = on;
        self
    }

    /// Sets the refresh interval, capped at 12 h.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval.min(MAX_REFRESH_INTERVAL);
        self
    }

    /// Sets the minimum gap between forced downloads.
    pub fn with_refresh_gap(mut self, gap: Duration) -> Self {
        self.refresh_gap = gap;
        self
    }

    /// Checks that answers can be verified at all.
    ///
    /// # Errors
    /// [`ConfigError::NoVerificationKey`] without public key, pinned
    /// certificate or certificate download.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.public_key.is_none() && self.certificates.is_empty() && !self.download_certificates
        {
            return Err(ConfigError::NoVerificationKey);
        }
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("appid", &self.appid)
            .field("mchid", &self.mchid())
            .field("serial_no", &self.credential.serial_no())
            .field("merchant_key", &"***")
            .field("api_v3_key", &"***")
            .field("public_key_id", &self.public_key.as_ref().map(|k| k.id()))
            .field(
                "pinned_certificates",
                &self
                    .certificates
                    .iter()
                    .map(|c| c.serial_no())
                    .collect::<Vec<_>>(),
            )
            .field("download_certificates", &self.download_certificates)
            .field("notify_url", &self.notify_url)
            .field("refund_notify_url", &self.refund_notify_url)
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("refresh_interval", &self.refresh_interval)
            .field("refresh_gap", &self.refresh_gap)
            .finish()
    }
}
