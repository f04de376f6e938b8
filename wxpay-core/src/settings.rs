//! Start-up configuration of both APIs (re-exported from [`crate::config`]):
//! the environment or a deserialized [`SettingsFile`] → [`Settings`] (and
//! the v2 [`Config`] and the v3 [`ClientConfig`] alone). One resolver serves
//! both sources; only the names in errors differ (`WXPAY_…` variables or
//! file fields).

use std::{fmt, path::PathBuf, sync::Arc};

use rand::{Rng, distributions::Alphanumeric};
use serde::{Deserialize, Deserializer};

use crate::{
    ApiKey, AppSecret, Config, ConfigError, SignType,
    flow::Api,
    v3::{
        ApiV3Key, ClientConfig, Credential, MerchantKey, PUB_KEY_ID_PREFIX, PlatformCertificate,
        PublicKey, PublicKeyVerifier,
    },
};

/// A secret, key or certificate given by value or by the path of a file
/// holding it. Serde shape: `{"value": "…"}` or `{"file": "/run/secrets/…"}`
/// (TOML: `api_key = { file = "/run/secrets/wxpay_api_key" }`).
///
/// A relative path is relative to the working directory. A key read from a
/// file (APIv2 key, APIv3 key) is trimmed of surrounding whitespace (the
/// final newline most files end with); a value is taken as it is. `Debug`
/// prints a value as `***`, a path as it is.
///
/// ```
/// use wxpay_core::config::SecretSource;
/// let s: SecretSource = serde_json::from_str(r#"{"value": "192006250b4c09247ec02edce69f6a2d"}"#).unwrap();
/// assert_eq!(format!("{s:?}"), "Value(***)");
/// let f: SecretSource = serde_json::from_str(r#"{"file": "/run/secrets/wxpay_api_key"}"#).unwrap();
/// assert_eq!(format!("{f:?}"), r#"File("/run/secrets/wxpay_api_key")"#);
/// ```
#[derive(Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// The secret itself (or the PEM text).
    Value(String),
    /// The path of a file holding it.
    File(PathBuf),
}

impl SecretSource {
    /// The secret given by value.
    pub fn value(value: impl Into<String>) -> SecretSource {
        SecretSource::Value(value.into())
    }

    /// The secret in the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> SecretSource {
        SecretSource::File(path.into())
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(***)"),
            SecretSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// The deserializable shape of [`Settings`] (and of [`Config`] and
/// [`ClientConfig`]): the settings of the variable table in
/// [`crate::config`] under snake-case names, every one optional here and
/// checked by the same rules when converted (`TryFrom`, which serde runs
/// when deserializing [`Settings`] directly). Unknown fields are refused,
/// so a misspelt setting is an error rather than silently ignored.
///
/// | field | variable |
/// |---|---|
/// | `api` (`"v2"` / `"v3"`) | `WXPAY_API_VERSION` |
/// | `appid`, `mch_id` | `WXPAY_APPID`, `WXPAY_MCH_ID` |
/// | `app_secret` ([`SecretSource`]) | `WXPAY_APP_SECRET` |
/// | `api_base`, `open_api_base` | `WXPAY_API_BASE`, `WXPAY_OPEN_API_BASE` |
/// | `notify_url`, `refund_notify_url` | `WXPAY_NOTIFY_URL`, `WXPAY_REFUND_NOTIFY_URL` |
/// | `api_key` ([`SecretSource`]) | `WXPAY_API_KEY` |
/// | `sign_type` | `WXPAY_SIGN_TYPE` |
/// | `apiv3_key` ([`SecretSource`]) | `WXPAY_APIV3_KEY` |
/// | `mch_private_key` ([`SecretSource`]) | `WXPAY_MCH_PRIVATE_KEY_FILE` / `WXPAY_MCH_PRIVATE_KEY` |
/// | `mch_serial` | `WXPAY_MCH_SERIAL` |
/// | `public_key` ([`SecretSource`]), `public_key_id` | `WXPAY_PUBLIC_KEY_FILE`, `WXPAY_PUBLIC_KEY_ID` |
/// | `platform_certificates` ([`SecretSource`]) | `WXPAY_PLATFORM_CERT_FILE` |
/// | `platform_certificate_download` (bool) | `WXPAY_PLATFORM_CERT_DOWNLOAD` |
///
/// ```
/// use wxpay_core::config::{SecretSource, Settings, SettingsFile};
/// let mut file = SettingsFile::default();
/// file.appid = Some("wxd930ea5d5a258f4f".into());
/// file.mch_id = Some("10000100".into());
/// file.api_key = Some(SecretSource::value("192006250b4c09247ec02edce69f6a2d"));
/// let settings = Settings::try_from(file)?;
/// assert_eq!(settings.config().mch_id, "10000100");
/// # Ok::<(), wxpay_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SettingsFile {
    /// The API new orders use (`"v2"` or `"v3"`); default as
    /// `WXPAY_API_VERSION`.
    #[serde(default, deserialize_with = "api_opt")]
    pub api: Option<Api>,
    /// The mini-program AppID.
    pub appid: Option<String>,
    /// The merchant number.
    pub mch_id: Option<String>,
    /// The mini-program AppSecret.
    pub app_secret: Option<SecretSource>,
    /// Pay API base URL.
    pub api_base: Option<String>,
    /// Open API base URL.
    pub open_api_base: Option<String>,
    /// Payment notify URL.
    pub notify_url: Option<String>,
    /// Refund notify URL.
    pub refund_notify_url: Option<String>,
    /// The APIv2 key.
    pub api_key: Option<SecretSource>,
    /// The v2 sign type, `MD5` or `HMAC-SHA256`.
    pub sign_type: Option<String>,
    /// The APIv3 key (32 bytes).
    pub apiv3_key: Option<SecretSource>,
    /// The merchant API private key PEM (PKCS#8 or PKCS#1).
    pub mch_private_key: Option<SecretSource>,
    /// The merchant API certificate serial (40 hex digits).
    pub mch_serial: Option<String>,
    /// The WeChat Pay public key PEM (with `public_key_id`).
    pub public_key: Option<SecretSource>,
    /// The WeChat Pay public key id, `PUB_KEY_ID_…` (with `public_key`).
    pub public_key_id: Option<String>,
    /// Pinned platform certificate(s): PEM, one or several blocks.
    pub platform_certificates: Option<SecretSource>,
    /// Whether platform certificates are downloaded (default: yes, except
    /// in public-key-only mode).
    pub platform_certificate_download: Option<bool>,
}

fn api_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Api>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => Api::parse(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("api: expected \"v2\" or \"v3\"")),
    }
}

impl SettingsFile {
    /// The settings the environment variables of the table in
    /// [`crate::config`] give, through `get`.
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<SettingsFile, ConfigError> {
        let opt = |name: &str| get(name).filter(|v| !v.is_empty());
        let api = match opt("WXPAY_API_VERSION") {
            None => None,
            Some(v) => Some(Api::parse(v.trim()).ok_or(ConfigError::Invalid {
                name: "WXPAY_API_VERSION",
                problem: "expected v2 or v3".into(),
            })?),
        };
        let mch_private_key = match (
            opt("WXPAY_MCH_PRIVATE_KEY_FILE"),
            opt("WXPAY_MCH_PRIVATE_KEY"),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "WXPAY_MCH_PRIVATE_KEY",
                    problem: "set only one of WXPAY_MCH_PRIVATE_KEY_FILE and WXPAY_MCH_PRIVATE_KEY"
                        .into(),
                });
            }
            (Some(path), None) => Some(SecretSource::file(path)),
            (None, Some(pem)) => Some(SecretSource::Value(pem)),
            (None, None) => None,
        };
        let platform_certificate_download = match opt("WXPAY_PLATFORM_CERT_DOWNLOAD") {
            None => None,
            Some(v) => Some(match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "WXPAY_PLATFORM_CERT_DOWNLOAD",
                        problem: "expected true or false".into(),
                    });
                }
            }),
        };
        Ok(SettingsFile {
            api,
            appid: opt("WXPAY_APPID"),
            mch_id: opt("WXPAY_MCH_ID"),
            app_secret: opt("WXPAY_APP_SECRET").map(SecretSource::Value),
            api_base: opt("WXPAY_API_BASE"),
            open_api_base: opt("WXPAY_OPEN_API_BASE"),
            notify_url: opt("WXPAY_NOTIFY_URL"),
            refund_notify_url: opt("WXPAY_REFUND_NOTIFY_URL"),
            api_key: opt("WXPAY_API_KEY").map(SecretSource::Value),
            sign_type: opt("WXPAY_SIGN_TYPE"),
            apiv3_key: opt("WXPAY_APIV3_KEY").map(SecretSource::Value),
            mch_private_key,
            mch_serial: opt("WXPAY_MCH_SERIAL"),
            public_key: opt("WXPAY_PUBLIC_KEY_FILE").map(SecretSource::file),
            public_key_id: opt("WXPAY_PUBLIC_KEY_ID"),
            platform_certificates: opt("WXPAY_PLATFORM_CERT_FILE").map(SecretSource::file),
            platform_certificate_download,
        })
    }
}

/// The name errors give a setting given by value or by file.
#[derive(Clone, Copy)]
struct Pair {
    value: &'static str,
    file: &'static str,
}

impl Pair {
    const fn one(name: &'static str) -> Pair {
        Pair {
            value: name,
            file: name,
        }
    }

    fn of(self, source: &SecretSource) -> &'static str {
        match source {
            SecretSource::Value(_) => self.value,
            SecretSource::File(_) => self.file,
        }
    }
}

/// The names of the settings, per source.
struct Names {
    api_v2: &'static str,
    api_v3: &'static str,
    appid: &'static str,
    mch_id: &'static str,
    app_secret: Pair,
    api_key: Pair,
    sign_type: &'static str,
    apiv3_key: Pair,
    mch_private_key: Pair,
    mch_private_key_missing: &'static str,
    no_api_key: &'static str,
    mch_serial: &'static str,
    public_key: Pair,
    public_key_id: &'static str,
    platform_certificates: Pair,
    download: &'static str,
}

const ENV: Names = Names {
    api_v2: "WXPAY_API_VERSION=v2",
    api_v3: "WXPAY_API_VERSION=v3",
    appid: "WXPAY_APPID",
    mch_id: "WXPAY_MCH_ID",
    app_secret: Pair::one("WXPAY_APP_SECRET"),
    api_key: Pair::one("WXPAY_API_KEY"),
    sign_type: "WXPAY_SIGN_TYPE",
    apiv3_key: Pair::one("WXPAY_APIV3_KEY"),
    mch_private_key: Pair {
        value: "WXPAY_MCH_PRIVATE_KEY",
        file: "WXPAY_MCH_PRIVATE_KEY_FILE",
    },
    mch_private_key_missing: "WXPAY_MCH_PRIVATE_KEY_FILE (or WXPAY_MCH_PRIVATE_KEY)",
    no_api_key: "WXPAY_API_KEY (or WXPAY_APIV3_KEY)",
    mch_serial: "WXPAY_MCH_SERIAL",
    public_key: Pair::one("WXPAY_PUBLIC_KEY_FILE"),
    public_key_id: "WXPAY_PUBLIC_KEY_ID",
    platform_certificates: Pair::one("WXPAY_PLATFORM_CERT_FILE"),
    download: "WXPAY_PLATFORM_CERT_DOWNLOAD",
};

const FILE: Names = Names {
    api_v2: "api = v2",
    api_v3: "api = v3",
    appid: "appid",
    mch_id: "mch_id",
    app_secret: Pair::one("app_secret"),
    api_key: Pair::one("api_key"),
    sign_type: "sign_type",
    apiv3_key: Pair::one("apiv3_key"),
    mch_private_key: Pair::one("mch_private_key"),
    mch_private_key_missing: "mch_private_key",
    no_api_key: "api_key (or apiv3_key)",
    mch_serial: "mch_serial",
    public_key: Pair::one("public_key"),
    public_key_id: "public_key_id",
    platform_certificates: Pair::one("platform_certificates"),
    download: "platform_certificate_download",
};

/// A set, non-empty string.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, ConfigError> {
    set(v).ok_or(ConfigError::Missing(name))
}

/// The text of `source` and the name of the setting it came through.
fn load(source: &SecretSource, names: Pair) -> Result<(String, &'static str), ConfigError> {
    let name = names.of(source);
    match source {
        SecretSource::Value(v) => Ok((v.clone(), name)),
        SecretSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| ConfigError::Unreadable {
                name,
                path: path.clone(),
                source: Arc::new(e),
            })?;
            let text = String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
                name,
                problem: "the file is not UTF-8 text".into(),
            })?;
            Ok((text, name))
        }
    }
}

/// A key: a file's content is trimmed (its final newline), a value is not.
fn load_key(source: &SecretSource, names: Pair) -> Result<(String, &'static str), ConfigError> {
    let (text, name) = load(source, names)?;
    Ok(match source {
        SecretSource::File(_) => (text.trim().to_owned(), name),
        SecretSource::Value(_) => (text, name),
    })
}

/// A fresh random 32-character key nobody knows: what a v3-only [`Settings`]
/// puts in its v2 [`Config`], so that no v2 signature can ever verify.
fn unknown_api_key() -> ApiKey {
    let key: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    ApiKey::new(key)
}

/// The v2 configuration, with `api_key` as its key.
fn v2_config(raw: &SettingsFile, n: &Names, api_key: ApiKey) -> Result<Config, ConfigError> {
    let mut c = Config::new(
        required(&raw.appid, n.appid)?,
        required(&raw.mch_id, n.mch_id)?,
        api_key,
    );
    if let Some(source) = &raw.app_secret {
        c.app_secret = Some(AppSecret::new(load_key(source, n.app_secret)?.0));
    }
    if let Some(t) = set(&raw.sign_type) {
        c.sign_type = t.parse::<SignType>().map_err(|_| ConfigError::Invalid {
            name: n.sign_type,
            problem: "expected MD5 or HMAC-SHA256".into(),
        })?;
    }
    if let Some(v) = set(&raw.api_base) {
        c = c.with_api_base(v);
    }
    if let Some(v) = set(&raw.open_api_base) {
        c = c.with_open_api_base(v);
    }
    c.notify_url = set(&raw.notify_url).map(str::to_owned);
    c.refund_notify_url = set(&raw.refund_notify_url).map(str::to_owned);
    Ok(c)
}

/// The APIv2 key, if given. An empty key is refused: anyone could sign
/// with it.
fn api_key(raw: &SettingsFile, n: &Names) -> Result<Option<ApiKey>, ConfigError> {
    let Some(source) = &raw.api_key else {
        return Ok(None);
    };
    let (key, name) = load_key(source, n.api_key)?;
    if key.is_empty() {
        return Err(ConfigError::Invalid {
            name,
            problem: "the APIv2 key is empty".into(),
        });
    }
    Ok(Some(ApiKey::new(key)))
}

/// The PEM blocks of `text`, each from its BEGIN line to its END line (a
/// block without END runs to the end, for the parser to refuse).
fn pem_blocks(text: &str) -> Vec<&str> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let end = block.find(END).and_then(|e| {
            let after = e + END.len();
            block[after..]
                .find(DASHES)
                .map(|d| after + d + DASHES.len())
        });
        match end {
            Some(end) => {
                blocks.push(&block[..end]);
                rest = &block[end..];
            }
            None => {
                blocks.push(block);
                break;
            }
        }
    }
    blocks
}

/// The v3 configuration (`apiv3_key` required).
fn v3_config(raw: &SettingsFile, n: &Names) -> Result<ClientConfig, ConfigError> {
    let appid = required(&raw.appid, n.appid)?;
    let mch_id = required(&raw.mch_id, n.mch_id)?;

    let source = raw
        .apiv3_key
        .as_ref()
        .ok_or(ConfigError::Missing(n.apiv3_key.value))?;
    let (text, name) = load_key(source, n.apiv3_key)?;
    let apiv3_key = ApiV3Key::new(&text).map_err(|e| ConfigError::Invalid {
        name,
        problem: format!("the APIv3 key must be exactly 32 bytes, got {}", e.len),
    })?;

    let source = raw
        .mch_private_key
        .as_ref()
        .ok_or(ConfigError::Missing(n.mch_private_key_missing))?;
    let (pem, name) = load(source, n.mch_private_key)?;
    let merchant_key = MerchantKey::from_pem(&pem).map_err(|e| ConfigError::Key {
        name,
        source: Arc::new(e),
    })?;

    let serial = required(&raw.mch_serial, n.mch_serial)?;
    if serial.len() != 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::Invalid {
            name: n.mch_serial,
            problem: match serial.chars().count() {
                40 => "expected the 40 hex digits of the merchant API certificate serial, found a character that is not a hex digit".to_owned(),
                n => format!("expected the 40 hex digits of the merchant API certificate serial, got {n} characters"),
            },
        });
    }
    let credential = Credential::new(mch_id, serial.to_ascii_uppercase(), merchant_key);

    let public_key = match (&raw.public_key, set(&raw.public_key_id)) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Required {
                name: n.public_key_id,
                by: n.public_key.file,
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Required {
                name: n.public_key.file,
                by: n.public_key_id,
            });
        }
        (Some(source), Some(id)) => {
            if !id.starts_with(PUB_KEY_ID_PREFIX) || id.len() == PUB_KEY_ID_PREFIX.len() {
                return Err(ConfigError::Invalid {
                    name: n.public_key_id,
                    problem: format!("a WeChat Pay public key id starts with {PUB_KEY_ID_PREFIX}"),
                });
            }
            let (pem, name) = load(source, n.public_key)?;
            let key = PublicKey::from_pem(&pem).map_err(|e| ConfigError::Key {
                name,
                source: Arc::new(e),
            })?;
            Some(PublicKeyVerifier::new(id, key))
        }
    };

    let mut certificates = Vec::new();
    if let Some(source) = &raw.platform_certificates {
        let (text, name) = load(source, n.platform_certificates)?;
        let blocks = pem_blocks(&text);
        if blocks.is_empty() {
            return Err(ConfigError::Invalid {
                name,
                problem: "holds no PEM certificate".into(),
            });
        }
        for (i, block) in blocks.into_iter().enumerate() {
            certificates.push(PlatformCertificate::from_pem(block).map_err(|e| {
                ConfigError::Certificate {
                    name,
                    index: i + 1,
                    source: Arc::new(e),
                }
            })?);
        }
    }

    let download = raw
        .platform_certificate_download
        .unwrap_or(public_key.is_none() || !certificates.is_empty());
    if !download && public_key.is_none() && certificates.is_empty() {
        return Err(ConfigError::Unverifiable {
            download: n.download,
            public_key: n.public_key.file,
            certificates: n.platform_certificates.file,
        });
    }

    let mut c = ClientConfig::new(appid, credential, apiv3_key).with_certificate_download(download);
    if let Some(key) = public_key {
        c = c.with_public_key(key);
    }
    for certificate in certificates {
        c = c.with_platform_certificate(certificate);
    }
    if let Some(v) = set(&raw.api_base) {
        c = c.with_api_base(v);
    }
    if let Some(v) = set(&raw.notify_url) {
        c = c.with_notify_url(v);
    }
    if let Some(v) = set(&raw.refund_notify_url) {
        c = c.with_refund_notify_url(v);
    }
    Ok(c)
}

/// The merchant's configuration for both APIs and the API new orders use,
/// loaded once at start-up: [`Settings::from_env`], or deserialized (serde)
/// from the shape of [`SettingsFile`].
///
/// * **API v2** is configured when the APIv2 key is set (`WXPAY_API_KEY`);
///   **API v3** when the APIv3 key is (`WXPAY_APIV3_KEY`). A merchant
///   migrating from v2 to v3 sets both and gets both configurations: new
///   orders use [`api`](Settings::api), earlier ones are finished with the
///   API that created them.
/// * [`config`](Settings::config) is always there: the v2 [`Config`] holds
///   the app-level settings sign-in needs (appid, AppSecret, open-API base)
///   and is what `Payments::builder` takes. For a **v3-only** merchant (no
///   APIv2 key) its `api_key` is a fresh random 32-character key nobody
///   knows — so no v2 signature, of a notify or an answer, can ever verify —
///   and [`has_v2`](Settings::has_v2) is `false`; [`v2`](Settings::v2) gives
///   only a configured v2.
///
/// `Debug` redacts every secret and key.
///
/// Wiring: `Payments::builder(settings.config().clone())` with
/// `.default_api(settings.api())`, and, when [`v3`](Settings::v3) is
/// there, a v3 gateway over a [`v3::Client`](crate::v3::Client) built from
/// it (`PaymentsBuilder::v3`).
///
/// ```
/// use std::collections::HashMap;
/// use wxpay_core::{config::Settings, flow::Api};
/// let env: HashMap<&str, &str> = [
///     ("WXPAY_APPID", "wxd930ea5d5a258f4f"),
///     ("WXPAY_MCH_ID", "10000100"),
///     ("WXPAY_API_KEY", "192006250b4c09247ec02edce69f6a2d"),
/// ].into_iter().collect();
/// let settings = Settings::from_lookup(|k| env.get(k).map(|v| v.to_string()))?;
/// assert_eq!(settings.api(), Api::V2);
/// assert!(settings.has_v2() && settings.v3().is_none());
/// # Ok::<(), wxpay_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "SettingsFile")]
#[non_exhaustive]
pub struct Settings {
    api: Api,
    config: Config,
    has_v2: bool,
    v3: Option<ClientConfig>,
}

impl Settings {
    /// Loads the settings from the environment variables of the table in
    /// [`crate::config`]. The API new orders use is `WXPAY_API_VERSION`
    /// (`v2` | `v3`), by default `v3` when `WXPAY_APIV3_KEY` is set, else
    /// `v2`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable: `WXPAY_APPID` or `WXPAY_MCH_ID`
    /// missing; neither `WXPAY_API_KEY` nor `WXPAY_APIV3_KEY` set;
    /// `WXPAY_API_VERSION` not `v2`/`v3`, or naming an API whose key is not
    /// set ([`ConfigError::Required`]); any problem of the v2 part (as
    /// [`Config::from_env`]) or of the v3 part (as
    /// [`ClientConfig::from_env`]) when its key is set.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Settings::from_env`] over any lookup function (testable without
    /// touching the process environment).
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        Settings::resolve(&SettingsFile::from_lookup(get)?, &ENV)
    }

    /// [`from_env`](Settings::from_env), with the `NAME=value` lines of an
    /// env file (such as the simulator's `wxpay.env`) taking precedence
    /// over the environment. Blank lines and `#` comments are skipped;
    /// values are taken as written (no quotes, no expansion). `None`: the
    /// environment alone.
    ///
    /// # Errors
    /// [`ConfigError::Unreadable`] for a file that cannot be read (named
    /// `--env-file`), then as [`from_env`](Settings::from_env).
    pub fn from_env_file(path: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
        let file: std::collections::HashMap<String, String> = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Unreadable {
                    name: "--env-file",
                    path: path.to_owned(),
                    source: Arc::new(e),
                })?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
            None => Default::default(),
        };
        Settings::from_lookup(|name| file.get(name).cloned().or_else(|| std::env::var(name).ok()))
    }

    fn resolve(raw: &SettingsFile, n: &Names) -> Result<Settings, ConfigError> {
        let has_v2 = raw.api_key.is_some();
        let has_v3 = raw.apiv3_key.is_some();
        let api = match raw.api {
            Some(Api::V2) if !has_v2 => {
                return Err(ConfigError::Required {
                    name: n.api_key.value,
                    by: n.api_v2,
                });
            }
            Some(Api::V3) if !has_v3 => {
                return Err(ConfigError::Required {
                    name: n.apiv3_key.value,
                    by: n.api_v3,
                });
            }
            Some(api) => api,
            None if has_v3 => Api::V3,
            None if has_v2 => Api::V2,
            None => return Err(ConfigError::Missing(n.no_api_key)),
        };
        // Checked before the keys, in the order of the variable table.
        required(&raw.appid, n.appid)?;
        required(&raw.mch_id, n.mch_id)?;
        let key = api_key(raw, n)?.unwrap_or_else(unknown_api_key);
        let config = v2_config(raw, n, key)?;
        let v3 = if has_v3 {
            Some(v3_config(raw, n)?)
        } else {
            None
        };
        Ok(Settings {
            api,
            config,
            has_v2,
            v3,
        })
    }

    /// The API new orders are created with (`PaymentsBuilder::default_api`).
    pub fn api(&self) -> Api {
        self.api
    }

    /// The v2 [`Config`], always: the app-level settings (appid, mch_id,
    /// AppSecret, hosts, notify URLs) and, when [`has_v2`](Settings::has_v2)
    /// is `false`, a random `api_key` nobody knows.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The v2 [`Config`] if API v2 is configured (its APIv2 key set).
    pub fn v2(&self) -> Option<&Config> {
        self.has_v2.then_some(&self.config)
    }

    /// Whether API v2 is configured (the APIv2 key is set). When it is not,
    /// [`config`](Settings::config)'s `api_key` is random and unknown.
    pub fn has_v2(&self) -> bool {
        self.has_v2
    }

    /// The v3 configuration if API v3 is configured (the APIv3 key set).
    pub fn v3(&self) -> Option<&ClientConfig> {
        self.v3.as_ref()
    }

    /// Whether API v3 is configured (the APIv3 key is set).
    pub fn has_v3(&self) -> bool {
        self.v3.is_some()
    }

    /// The parts: the API new orders use, the v2 [`Config`] (see
    /// [`config`](Settings::config)) and the v3 configuration.
    pub fn into_parts(self) -> (Api, Config, Option<ClientConfig>) {
        (self.api, self.config, self.v3)
    }

    /// A [`PaymentsBuilder`](crate::flow::PaymentsBuilder) for these
    /// settings, talking to WeChat over HTTPS: the v2 client (with the
    /// merchant's client certificate `identity` for v2 refunds, when there
    /// is one and v2 is configured), the v3 gateway when v3 is configured,
    /// the default API, and v2 turned off without an APIv2 key. Add the
    /// store, checkout and events, then build.
    ///
    /// # Errors
    /// A client cannot be made (the TLS set-up, the certificate, a v3
    /// key).
    pub fn payments_builder(
        self,
        identity: Option<&crate::ClientIdentity>,
    ) -> Result<crate::flow::PaymentsBuilder, crate::Error> {
        let has_v2 = self.has_v2;
        let (api, config, v3) = self.into_parts();
        let client = match identity {
            Some(id) if has_v2 => crate::Client::with_identity(config, id)?,
            _ => crate::Client::new(config)?,
        };
        let mut builder = crate::flow::Payments::builder(client.config().clone())
            .client(client)
            .default_api(api);
        if let Some(v3) = v3 {
            let v3 = crate::v3::Client::new(v3)?.boxed();
            builder = builder.v3(crate::flow::V3Gateway::new(v3));
        }
        if !has_v2 {
            builder = builder.without_v2();
        }
        Ok(builder)
    }
}

/// The rules of [`Settings::from_env`]; errors name the fields.
impl TryFrom<SettingsFile> for Settings {
    type Error = ConfigError;

    fn try_from(raw: SettingsFile) -> Result<Settings, ConfigError> {
        Settings::resolve(&raw, &FILE)
    }
}

/// The v2 part (`appid`, `mch_id`, `api_key` required); errors name the
/// fields.
impl TryFrom<SettingsFile> for Config {
    type Error = ConfigError;

    fn try_from(raw: SettingsFile) -> Result<Config, ConfigError> {
        let key = api_key(&raw, &FILE)?.ok_or(ConfigError::Missing(FILE.api_key.value))?;
        v2_config(&raw, &FILE, key)
    }
}

/// The v3 part (`apiv3_key` required; the v2 fields ignored); errors name
/// the fields.
impl TryFrom<SettingsFile> for ClientConfig {
    type Error = ConfigError;

    fn try_from(raw: SettingsFile) -> Result<ClientConfig, ConfigError> {
        v3_config(&raw, &FILE)
    }
}

/// [`ClientConfig::from_lookup`]'s body.
pub(crate) fn v3_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConfigError> {
    v3_config(&SettingsFile::from_lookup(get)?, &ENV)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pem_blocks() {
        let a = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----";
        let b = "-----BEGIN X-----\nAw==\n-----END X-----";
        assert_eq!(pem_blocks(&format!("junk\n{a}\n\n{b}\n")), [a, b]);
        assert_eq!(pem_blocks("nothing"), Vec::<&str>::new());
        assert_eq!(
            pem_blocks("-----BEGIN A-----\nAAEC"),
            ["-----BEGIN A-----\nAAEC"]
        );
    }

    #[test]
    fn unknown_keys_are_fresh() {
        let (a, b) = (unknown_api_key(), unknown_api_key());
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, b);
    }
}
