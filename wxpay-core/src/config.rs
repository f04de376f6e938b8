//! Merchant configuration: the v2 [`Config`], and [`Settings`] — both
//! APIs' configuration loaded at start-up from the environment
//! ([`Settings::from_env`]) or from a file's deserialized
//! [`SettingsFile`], with the choice of the API new orders use.
//!
//! ## Environment variables
//!
//! Empty values count as unset. Every problem is a [`ConfigError`] naming
//! the variable; no error ever quotes a secret's value.
//!
//! | variable | API | meaning |
//! |---|---|---|
//! | `WXPAY_API_VERSION` | both | `v2` or `v3`: the API new orders use; unset: `v3` if `WXPAY_APIV3_KEY` is set, else `v2` |
//! | `WXPAY_APPID` | both | the mini-program AppID (required) |
//! | `WXPAY_MCH_ID` | both | the merchant number (required) |
//! | `WXPAY_APP_SECRET` | both | the AppSecret, for sign-in (`jscode2session`) |
//! | `WXPAY_API_BASE` | both | pay API host (default [`DEFAULT_API_BASE`]) |
//! | `WXPAY_OPEN_API_BASE` | both | open API host (default [`DEFAULT_OPEN_API_BASE`]) |
//! | `WXPAY_NOTIFY_URL` | both | payment notify URL |
//! | `WXPAY_REFUND_NOTIFY_URL` | both | refund notify URL |
//! | `WXPAY_API_KEY` | v2 | the APIv2 key; v2 is configured only when it is set |
//! | `WXPAY_SIGN_TYPE` | v2 | `MD5` (default) or `HMAC-SHA256` |
//! | `WXPAY_APIV3_KEY` | v3 | the APIv3 key, exactly 32 bytes; v3 is configured only when it is set |
//! | `WXPAY_MCH_PRIVATE_KEY_FILE` | v3 | path of `apiclient_key.pem` (PKCS#8 or PKCS#1 RSA) |
//! | `WXPAY_MCH_PRIVATE_KEY` | v3 | the same PEM as text (set only one of the two) |
//! | `WXPAY_MCH_SERIAL` | v3 | the merchant API certificate serial, 40 hex digits (upper-cased) |
//! | `WXPAY_PUBLIC_KEY_FILE` | v3 | path of the WeChat Pay public key `pub_key.pem` (with `WXPAY_PUBLIC_KEY_ID`) |
//! | `WXPAY_PUBLIC_KEY_ID` | v3 | its id, `PUB_KEY_ID_…` (with `WXPAY_PUBLIC_KEY_FILE`) |
//! | `WXPAY_PLATFORM_CERT_FILE` | v3 | path of a PEM file of pinned platform certificate(s), one or several |
//! | `WXPAY_PLATFORM_CERT_DOWNLOAD` | v3 | `true` / `false`: download platform certificates; default on, except in public-key-only mode (public key, no certificate file) |
//!
//! The v2 part alone is also [`Config::from_env`]; the v3 part alone is
//! [`ClientConfig::from_env`](crate::v3::ClientConfig::from_env).
//!
//! ## Files
//!
//! [`Settings`], [`Config`] and [`ClientConfig`](crate::v3::ClientConfig)
//! deserialize (serde, any format) from the shape of [`SettingsFile`]: the
//! same settings under snake-case names, secrets and keys given
//! [by value or by file](SecretSource). Errors then name the field.
//!
//! ```
//! use wxpay_core::config::Settings;
//! let settings: Settings = serde_json::from_str(r#"{
//!     "appid": "wxd930ea5d5a258f4f",
//!     "mch_id": "10000100",
//!     "api_key": {"value": "192006250b4c09247ec02edce69f6a2d"},
//!     "notify_url": "https://shop.example.com/pay/notify"
//! }"#)?;
//! assert!(settings.has_v2() && !settings.has_v3());
//! assert!(!format!("{settings:?}").contains("192006250b4c"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    ApiKey, AppSecret, SignType,
    v3::{CertificateError, KeyError},
};

pub use crate::settings::{SecretSource, Settings, SettingsFile};

/// The production pay API host.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// The production open-API host (`jscode2session`).
pub const DEFAULT_OPEN_API_BASE: &str = "https://api.weixin.qq.com";

/// Everything the client needs to talk to WeChat Pay as one merchant.
///
/// ```
/// use wxpay_core::{ApiKey, Config, SignType};
/// let config = Config::new("wxd930ea5d5a258f4f", "10000100", ApiKey::new("192006250b4c09247ec02edce69f6a2d"))
///     .with_sign_type(SignType::HmacSha256)
///     .with_notify_url("https://shop.example.com/pay/notify");
/// assert!(!format!("{config:?}").contains("192006250b4c"));
/// ```
///
/// It deserializes from the shape of [`SettingsFile`] (the v2 fields;
/// `api_key` required).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(try_from = "SettingsFile")]
#[non_exhaustive]
pub struct Config {
    /// The mini-program AppID.
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The API v2 key.
    pub api_key: ApiKey,
    /// The mini-program AppSecret (needed only for `jscode2session`).
    pub app_secret: Option<AppSecret>,
    /// The algorithm requests (and so `paySign` and notifies) are signed with.
    pub sign_type: SignType,
    /// Pay API base URL, default [`DEFAULT_API_BASE`].
    pub api_base: String,
    /// Open API base URL, default [`DEFAULT_OPEN_API_BASE`].
    pub open_api_base: String,
    /// Payment notify URL sent with unifiedorder.
    pub notify_url: Option<String>,
    /// Refund notify URL sent with refunds (else the merchant platform's).
    pub refund_notify_url: Option<String>,
    /// Whole-request timeout of every call to WeChat. Bill downloads,
    /// which may be long, have no total limit instead: their answer's head
    /// and then each read of the body must come within this time (see
    /// [`ReqwestTransport`](crate::ReqwestTransport)).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// A configuration that cannot be loaded. Each variant names the setting
/// at fault: the environment variable (`WXPAY_…`) or, for a
/// [`SettingsFile`], the field. No variant holds or prints a secret's value.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A setting holds an unusable value (the value is not repeated: it may be secret).
    #[error("{name} is invalid: {problem}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A setting is not set although another one that needs it is
    /// (`WXPAY_PUBLIC_KEY_ID` without `WXPAY_PUBLIC_KEY_FILE`,
    /// `WXPAY_API_VERSION=v3` without `WXPAY_APIV3_KEY`, …).
    #[error("{name} is not set, but {by} needs it")]
    Required {
        /// The setting that is missing.
        name: &'static str,
        /// The setting that needs it.
        by: &'static str,
    },
    /// The file a setting names cannot be read.
    #[error("{name}: cannot read {}", path.display())]
    Unreadable {
        /// The setting.
        name: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A setting (or the file it names) does not hold a usable RSA key in
    /// PEM form (malformed, another PEM label, not RSA 2048–8192 bits).
    #[error("{name} does not hold a usable RSA key in PEM form")]
    Key {
        /// The setting.
        name: &'static str,
        /// Why.
        #[source]
        source: Arc<KeyError>,
    },
    /// A PEM block of a platform certificate file is not a usable
    /// certificate.
    #[error("{name}: PEM block {index} is not a usable platform certificate")]
    Certificate {
        /// The setting.
        name: &'static str,
        /// Which PEM block of the file, from 1.
        index: usize,
        /// Why.
        #[source]
        source: Arc<CertificateError>,
    },
    /// API v3 is configured with no way to verify WeChat's answers: no
    /// public key, no pinned certificate, and certificate download off.
    #[error(
        "API v3 answers could never be verified: {download} is off, and neither {public_key} nor {certificates} is set"
    )]
    Unverifiable {
        /// The certificate-download setting.
        download: &'static str,
        /// The public-key setting.
        public_key: &'static str,
        /// The pinned-certificate setting.
        certificates: &'static str,
    },
}

/// Equal when the variant and its fields are; sources are compared by
/// their kind (I/O) or message (keys, certificates).
impl PartialEq for ConfigError {
    fn eq(&self, other: &ConfigError) -> bool {
        use ConfigError::*;
        match (self, other) {
            (Missing(a), Missing(b)) => a == b,
            (
                Invalid { name, problem },
                Invalid {
                    name: n,
                    problem: p,
                },
            ) => name == n && problem == p,
            (Required { name, by }, Required { name: n, by: b }) => name == n && by == b,
            (
                Unreadable { name, path, source },
                Unreadable {
                    name: n,
                    path: p,
                    source: s,
                },
            ) => name == n && path == p && source.kind() == s.kind(),
            (Key { name, source }, Key { name: n, source: s }) => {
                name == n && source.to_string() == s.to_string()
            }
            (
                Certificate {
                    name,
                    index,
                    source,
                },
                Certificate {
                    name: n,
                    index: i,
                    source: s,
                },
            ) => name == n && index == i && source.to_string() == s.to_string(),
            (
                Unverifiable {
                    download,
                    public_key,
                    certificates,
                },
                Unverifiable {
                    download: d,
                    public_key: p,
                    certificates: c,
                },
            ) => download == d && public_key == p && certificates == c,
            _ => false,
        }
    }
}

impl Eq for ConfigError {}

impl ConfigError {
    /// The setting at fault (for [`ConfigError::Unverifiable`], the
    /// certificate-download one).
    pub fn name(&self) -> &'static str {
        match self {
            ConfigError::Missing(name)
            | ConfigError::Invalid { name, .. }
            | ConfigError::Required { name, .. }
            | ConfigError::Unreadable { name, .. }
            | ConfigError::Key { name, .. }
            | ConfigError::Certificate { name, .. } => name,
            ConfigError::Unverifiable { download, .. } => download,
        }
    }
}

impl Config {
    /// A configuration with defaults: MD5, production hosts, 10 s timeout.
    pub fn new(appid: impl Into<String>, mch_id: impl Into<String>, api_key: ApiKey) -> Config {
        Config {
            appid: appid.into(),
            mch_id: mch_id.into(),
            api_key,
            app_secret: None,
            sign_type: SignType::Md5,
            api_base: DEFAULT_API_BASE.to_owned(),
            open_api_base: DEFAULT_OPEN_API_BASE.to_owned(),
            notify_url: None,
            refund_notify_url: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Loads `WXPAY_APPID`, `WXPAY_MCH_ID`, `WXPAY_API_KEY` (required) and
    /// `WXPAY_APP_SECRET`, `WXPAY_SIGN_TYPE` (`MD5` | `HMAC-SHA256`),
    /// `WXPAY_API_BASE`, `WXPAY_OPEN_API_BASE`, `WXPAY_NOTIFY_URL`,
    /// `WXPAY_REFUND_NOTIFY_URL` (optional).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable that is missing or invalid.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Config::from_env`] over any lookup function (testable without
    /// touching the process environment).
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let req = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let mut c = Config::new(
            req("WXPAY_APPID")?,
            req("WXPAY_MCH_ID")?,
            ApiKey::new(req("WXPAY_API_KEY")?),
        );
        let opt = |name: &str| get(name).filter(|v| !v.is_empty());
        c.app_secret = opt("WXPAY_APP_SECRET").map(AppSecret::new);
        if let Some(t) = opt("WXPAY_SIGN_TYPE") {
            c.sign_type = t.parse().map_err(|_| ConfigError::Invalid {
                name: "WXPAY_SIGN_TYPE",
                problem: "expected MD5 or HMAC-SHA256".into(),
            })?;
        }
        if let Some(v) = opt("WXPAY_API_BASE") {
            c = c.with_api_base(v);
        }
        if let Some(v) = opt("WXPAY_OPEN_API_BASE") {
            c = c.with_open_api_base(v);
        }
        c.notify_url = opt("WXPAY_NOTIFY_URL");
        c.refund_notify_url = opt("WXPAY_REFUND_NOTIFY_URL");
        Ok(c)
    }

    /// Sets the AppSecret.
    pub fn with_app_secret(mut self, secret: AppSecret) -> Self {
        self.app_secret = Some(secret);
        self
    }

    /// Sets the sign type.
    pub fn with_sign_type(mut self, sign_type: SignType) -> Self {
        self.sign_type = sign_type;
        self
    }

    /// Sets the pay API base URL (e.g. a simulator's).
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the open-API base URL.
    pub fn with_open_api_base(mut self, base: impl Into<String>) -> Self {
        self.open_api_base = base.into().trim_end_matches('/').to_owned();
        self
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

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn loads_from_env_and_names_the_missing_variable() {
        let mut env: HashMap<&str, &str> = [
            ("WXPAY_APPID", "wx1"),
            ("WXPAY_MCH_ID", "m1"),
            ("WXPAY_API_KEY", "secret-key-value"),
            ("WXPAY_SIGN_TYPE", "HMAC-SHA256"),
            ("WXPAY_API_BASE", "http://127.0.0.1:1"),
        ]
        .into_iter()
        .collect();
        let c = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.sign_type, SignType::HmacSha256);
        assert_eq!(c.api_base, "http://127.0.0.1:1");
        assert_eq!(c.open_api_base, DEFAULT_OPEN_API_BASE);
        assert!(!format!("{c:?}").contains("secret-key-value"));

        env.insert("WXPAY_SIGN_TYPE", "SHA1");
        let e = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                name: "WXPAY_SIGN_TYPE",
                ..
            }
        ));
        env.remove("WXPAY_API_KEY");
        let e = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert_eq!(e, ConfigError::Missing("WXPAY_API_KEY"));
    }
}
