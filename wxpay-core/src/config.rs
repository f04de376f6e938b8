//! Merchant configuration.

use std::time::Duration;

use crate::{ApiKey, AppSecret, SignType};

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
#[derive(Clone, Debug)]
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
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// A configuration that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable holds an unusable value (the value is not repeated: it may be secret).
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
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
            c.api_base = v;
        }
        if let Some(v) = opt("WXPAY_OPEN_API_BASE") {
            c.open_api_base = v;
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
