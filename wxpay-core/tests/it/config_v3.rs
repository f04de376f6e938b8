//! Start-up configuration (issue 18, issue 15 point 10): `v3::ClientConfig`
//! and `config::Settings` from a lookup map and from JSON, with the
//! vectors' keys written to temporary files. Every error names its setting
//! and never carries a secret.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;
use wxpay_core::{
    Config, ConfigError,
    config::{SecretSource, Settings, SettingsFile},
    flow::Api,
    v3::{ClientConfig, MerchantKey},
};

const APPID: &str = "wx1a2b3c4d5e6f7a8b";
const MCH_ID: &str = "1900000109";
const API_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
const APP_SECRET: &str = "app-secret-never-printed-0001";

fn keys() -> Value {
    crate::support::spec_vectors("vectors-v3.json")["keys"].clone()
}

fn key(path: &[&str]) -> String {
    let mut v = keys();
    for p in path {
        v = v[*p].clone();
    }
    v.as_str().unwrap_or_else(|| panic!("{path:?}")).to_owned()
}

fn apiv3_key() -> String {
    key(&["apiv3_key"])
}
fn merchant_pem() -> String {
    key(&["merchant", "private_key_pem"])
}
fn merchant_serial() -> String {
    key(&["merchant", "serial_no"])
}
fn public_key_pem() -> String {
    key(&["wechatpay_public_key", "public_key_pem"])
}
fn public_key_id() -> String {
    key(&["wechatpay_public_key", "key_id"])
}
fn platform_pem() -> String {
    key(&["platform", "certificate_pem"])
}
fn platform_serial() -> String {
    key(&["platform", "serial_no"])
}

/// A line from the middle of a PEM body: secret material that must never
/// show up in an error or a `Debug`.
fn pem_body_line(pem: &str) -> String {
    let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    lines[lines.len() / 2].to_owned()
}

/// A directory of its own under the system temp dir, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new() -> Temp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wxpay-config-v3-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Env = HashMap<&'static str, String>;

/// The variables of a v3-only merchant in public-key mode.
fn public_key_env(t: &Temp) -> Env {
    [
        ("WXPAY_APPID", APPID.to_owned()),
        ("WXPAY_MCH_ID", MCH_ID.to_owned()),
        ("WXPAY_APP_SECRET", APP_SECRET.to_owned()),
        ("WXPAY_APIV3_KEY", apiv3_key()),
        (
            "WXPAY_MCH_PRIVATE_KEY_FILE",
            t.file("apiclient_key.pem", &merchant_pem()),
        ),
        ("WXPAY_MCH_SERIAL", merchant_serial().to_ascii_lowercase()),
        (
            "WXPAY_PUBLIC_KEY_FILE",
            t.file("pub_key.pem", &public_key_pem()),
        ),
        ("WXPAY_PUBLIC_KEY_ID", public_key_id()),
        (
            "WXPAY_NOTIFY_URL",
            "https://pay.example.com/wxpay/notify".to_owned(),
        ),
        ("WXPAY_API_BASE", "http://127.0.0.1:9/".to_owned()),
    ]
    .into_iter()
    .collect()
}

fn v3(env: &Env) -> Result<ClientConfig, ConfigError> {
    ClientConfig::from_lookup(|k| env.get(k).cloned())
}

fn settings(env: &Env) -> Result<Settings, ConfigError> {
    Settings::from_lookup(|k| env.get(k).cloned())
}

/// The secret values used in these tests.
fn secrets() -> Vec<String> {
    vec![
        apiv3_key(),
        API_KEY.to_owned(),
        APP_SECRET.to_owned(),
        pem_body_line(&merchant_pem()),
    ]
}

fn assert_no_secret(shown: &str) {
    for secret in secrets() {
        assert!(!shown.contains(&secret), "a secret leaked: {shown}");
    }
}

/// `e` names `name` (in `name()` and `Display`) and shows no secret.
fn assert_names(e: &ConfigError, name: &str) {
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    assert_eq!(e.name(), name, "{shown}");
    assert!(shown.contains(name), "{shown}");
    assert_no_secret(&shown);
    assert_no_secret(&debug);
}

#[test]
fn full_v3_config_in_public_key_mode() {
    let t = Temp::new();
    let env = public_key_env(&t);
    let c = v3(&env).unwrap();
    assert_eq!(c.appid, APPID);
    assert_eq!(c.mchid(), MCH_ID);
    assert_eq!(c.credential().serial_no(), merchant_serial()); // upper-cased
    assert_eq!(c.public_key().unwrap().id(), public_key_id());
    assert!(c.platform_certificates().is_empty());
    assert!(
        !c.download_certificates,
        "public-key-only mode downloads nothing"
    );
    assert_eq!(
        c.notify_url.as_deref(),
        Some("https://pay.example.com/wxpay/notify")
    );
    assert_eq!(c.refund_notify_url, None);
    assert_eq!(c.api_base, "http://127.0.0.1:9");
    c.validate().unwrap();
    // The key loaded is the vectors' key: same (deterministic) signature.
    let direct = MerchantKey::from_pem(&merchant_pem()).unwrap();
    assert_eq!(
        c.credential().key().sign(b"message").unwrap(),
        direct.sign(b"message").unwrap()
    );
    assert_no_secret(&format!("{c:?} {c:#?}"));

    // As Settings: v3 by default, v2 not configured.
    let s = settings(&env).unwrap();
    assert_eq!(s.api(), Api::V3);
    assert!(s.has_v3() && !s.has_v2() && s.v2().is_none());
    assert_eq!(s.v3().unwrap().mchid(), MCH_ID);
    // The app-level settings sign-in needs are there.
    assert_eq!(s.config().appid, APPID);
    assert_eq!(s.config().mch_id, MCH_ID);
    assert_eq!(s.config().app_secret.as_ref().unwrap().expose(), APP_SECRET);
    assert_no_secret(&format!("{s:?} {s:#?}"));
}

#[test]
fn v3_only_gets_a_fresh_unknown_v2_key() {
    let t = Temp::new();
    let env = public_key_env(&t);
    let (a, b) = (settings(&env).unwrap(), settings(&env).unwrap());
    let (ka, kb) = (a.config().api_key.expose(), b.config().api_key.expose());
    assert_eq!(ka.len(), 32);
    assert_ne!(ka, kb, "a fresh random key per load");
    assert!(!format!("{a:?}").contains(ka));
    let (api, config, v3) = a.into_parts();
    assert_eq!((api, config.appid.as_str()), (Api::V3, APPID));
    assert!(v3.is_some());
}

#[test]
fn certificate_mode_with_a_pinned_file() {
    let t = Temp::new();
    let mut env = public_key_env(&t);
    env.remove("WXPAY_PUBLIC_KEY_FILE");
    env.remove("WXPAY_PUBLIC_KEY_ID");
    env.insert(
        "WXPAY_PLATFORM_CERT_FILE",
        t.file("wechatpay.pem", &platform_pem()),
    );
    let c = v3(&env).unwrap();
    assert!(c.public_key().is_none());
    let serials: Vec<_> = c
        .platform_certificates()
        .iter()
        .map(|c| c.serial_no().to_owned())
        .collect();
    assert_eq!(serials, [platform_serial()]);
    assert!(c.download_certificates, "certificates are kept fresh");

    env.insert("WXPAY_PLATFORM_CERT_DOWNLOAD", "false".into());
    let c = v3(&env).unwrap();
    assert!(!c.download_certificates);
    assert_eq!(c.platform_certificates().len(), 1);

    // Certificate download alone (no public key, nothing pinned).
    env.remove("WXPAY_PLATFORM_CERT_FILE");
    env.remove("WXPAY_PLATFORM_CERT_DOWNLOAD");
    let c = v3(&env).unwrap();
    assert!(c.download_certificates && c.platform_certificates().is_empty());
}

#[test]
fn a_pem_file_may_hold_several_certificates() {
    let t = Temp::new();
    let mut env = public_key_env(&t);
    let both = format!(
        "{}\n{}",
        platform_pem(),
        key(&["merchant", "certificate_pem"])
    );
    env.insert("WXPAY_PLATFORM_CERT_FILE", t.file("both.pem", &both));
    let c = v3(&env).unwrap();
    let serials: Vec<_> = c
        .platform_certificates()
        .iter()
        .map(|c| c.serial_no().to_owned())
        .collect();
    assert_eq!(serials.len(), 2, "{serials:?}");
    assert_eq!(serials[0], platform_serial());
    // Migration setup: public key and certificates, download on.
    assert!(c.public_key().is_some() && c.download_certificates);

    env.insert(
        "WXPAY_PLATFORM_CERT_DOWNLOAD",
        "FALSE".into(), // case-insensitive
    );
    assert!(!v3(&env).unwrap().download_certificates);
}

#[test]
fn download_setting() {
    let t = Temp::new();
    let mut env = public_key_env(&t);
    env.insert("WXPAY_PLATFORM_CERT_DOWNLOAD", "true".into());
    assert!(v3(&env).unwrap().download_certificates);
    env.insert("WXPAY_PLATFORM_CERT_DOWNLOAD", "maybe".into());
    let e = v3(&env).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
    assert_names(&e, "WXPAY_PLATFORM_CERT_DOWNLOAD");

    // No public key, nothing pinned, download off: nothing could verify.
    env.remove("WXPAY_PUBLIC_KEY_FILE");
    env.remove("WXPAY_PUBLIC_KEY_ID");
    env.insert("WXPAY_PLATFORM_CERT_DOWNLOAD", "false".into());
    let e = v3(&env).unwrap_err();
    assert!(matches!(e, ConfigError::Unverifiable { .. }), "{e}");
    assert_names(&e, "WXPAY_PLATFORM_CERT_DOWNLOAD");
    let shown = e.to_string();
    assert!(
        shown.contains("WXPAY_PUBLIC_KEY_FILE") && shown.contains("WXPAY_PLATFORM_CERT_FILE"),
        "{shown}"
    );
    // Settings refuses it too.
    assert_eq!(settings(&env).unwrap_err(), e);
}

#[test]
fn migration_gives_both_configs() {
    let t = Temp::new();
    let mut env = public_key_env(&t);
    env.insert("WXPAY_API_KEY", API_KEY.into());
    env.insert("WXPAY_SIGN_TYPE", "HMAC-SHA256".into());
    env.insert(
        "WXPAY_PLATFORM_CERT_FILE",
        t.file("wechatpay.pem", &platform_pem()),
    );
    let s = settings(&env).unwrap();
    assert_eq!(s.api(), Api::V3, "v3 by default once its key is set");
    assert!(s.has_v2() && s.has_v3());
    let v2 = s.v2().unwrap();
    assert_eq!(v2.api_key.expose(), API_KEY);
    assert_eq!(v2.sign_type, wxpay_core::SignType::HmacSha256);
    assert_eq!(v2.api_base, "http://127.0.0.1:9");
    let v3 = s.v3().unwrap();
    assert!(v3.public_key().is_some() && v3.platform_certificates().len() == 1);
    assert_no_secret(&format!("{s:?}"));

    // The same v2 configuration as Config::from_lookup gives.
    let alone = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    assert_eq!(format!("{alone:?}"), format!("{v2:?}"));

    // Still creating new orders with v2 while v3 is being set up.
    env.insert("WXPAY_API_VERSION", "v2".into());
    let s = settings(&env).unwrap();
    assert_eq!(s.api(), Api::V2);
    assert!(s.has_v2() && s.has_v3());
}

#[test]
fn api_choice_rules() {
    let t = Temp::new();
    let v3_env = public_key_env(&t);
    let v2_env: Env = [
        ("WXPAY_APPID", APPID.to_owned()),
        ("WXPAY_MCH_ID", MCH_ID.to_owned()),
        ("WXPAY_API_KEY", API_KEY.to_owned()),
    ]
    .into_iter()
    .collect();

    let s = settings(&v2_env).unwrap();
    assert_eq!(s.api(), Api::V2);
    assert!(s.has_v2() && !s.has_v3() && s.v3().is_none());
    assert_eq!(s.config().api_key.expose(), API_KEY);

    let mut env = v2_env.clone();
    env.insert("WXPAY_API_VERSION", "v3".into());
    let e = settings(&env).unwrap_err();
    assert_eq!(
        e,
        ConfigError::Required {
            name: "WXPAY_APIV3_KEY",
            by: "WXPAY_API_VERSION=v3"
        }
    );
    assert_names(&e, "WXPAY_APIV3_KEY");

    let mut env = v3_env.clone();
    env.insert("WXPAY_API_VERSION", "v2".into());
    let e = settings(&env).unwrap_err();
    assert_eq!(
        e,
        ConfigError::Required {
            name: "WXPAY_API_KEY",
            by: "WXPAY_API_VERSION=v2"
        }
    );
    assert_names(&e, "WXPAY_API_KEY");

    env.insert("WXPAY_API_VERSION", "V3".into());
    assert_eq!(settings(&env).unwrap().api(), Api::V3);
    env.insert("WXPAY_API_VERSION", "v4".into());
    let e = settings(&env).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
    assert_names(&e, "WXPAY_API_VERSION");
    env.insert("WXPAY_API_VERSION", String::new()); // empty is unset
    assert_eq!(settings(&env).unwrap().api(), Api::V3);

    // Neither key.
    let mut env = v2_env;
    env.remove("WXPAY_API_KEY");
    let e = settings(&env).unwrap_err();
    assert_eq!(
        e,
        ConfigError::Missing("WXPAY_API_KEY (or WXPAY_APIV3_KEY)")
    );
    assert_eq!(
        e.to_string(),
        "WXPAY_API_KEY (or WXPAY_APIV3_KEY) is not set"
    );
    env.insert("WXPAY_API_KEY", API_KEY.into());
    env.remove("WXPAY_APPID");
    assert_eq!(
        settings(&env).unwrap_err(),
        ConfigError::Missing("WXPAY_APPID")
    );
}

/// Applies `change` to the public-key environment and checks that loading
/// fails naming `name`, without a secret, in both loaders.
fn fails(t: &Temp, change: impl FnOnce(&mut Env), name: &str) -> ConfigError {
    let mut env = public_key_env(t);
    env.insert("WXPAY_API_KEY", API_KEY.into());
    change(&mut env);
    let e = v3(&env).unwrap_err();
    assert_names(&e, name);
    assert_eq!(settings(&env).unwrap_err(), e);
    e
}

#[test]
fn each_error_names_its_variable_and_no_secret() {
    let t = Temp::new();
    let pem = merchant_pem();

    // APIv3 key of the wrong length, either way.
    for bad in [
        "short-secret-key".to_owned(),
        format!("{}X", apiv3_key()),
        format!("{} ", apiv3_key()),
    ] {
        let e = fails(
            &t,
            |env| {
                env.insert("WXPAY_APIV3_KEY", bad.clone());
            },
            "WXPAY_APIV3_KEY",
        );
        assert!(matches!(e, ConfigError::Invalid { .. }));
        assert!(e.to_string().contains("32"), "{e}");
        assert!(!e.to_string().contains(&bad) && !format!("{e:?}").contains(&bad));
    }

    // The private key.
    let missing = t.path("no-such-key.pem");
    let e = fails(
        &t,
        |env| {
            env.insert("WXPAY_MCH_PRIVATE_KEY_FILE", missing.clone());
        },
        "WXPAY_MCH_PRIVATE_KEY_FILE",
    );
    assert!(matches!(e, ConfigError::Unreadable { .. }));
    assert!(e.to_string().contains("no-such-key.pem"), "{e}");

    let cert = t.file("cert.pem", &platform_pem());
    let e = fails(
        &t,
        |env| {
            env.insert("WXPAY_MCH_PRIVATE_KEY_FILE", cert.clone());
        },
        "WXPAY_MCH_PRIVATE_KEY_FILE",
    );
    assert!(matches!(e, ConfigError::Key { .. }));

    // A non-RSA (EC P-256) PKCS#8 key.
    let ec = t.file("ec.pem", &ec_private_key_pem());
    let e = fails(
        &t,
        |env| {
            env.insert("WXPAY_MCH_PRIVATE_KEY_FILE", ec.clone());
        },
        "WXPAY_MCH_PRIVATE_KEY_FILE",
    );
    assert!(matches!(e, ConfigError::Key { .. }));

    // PEM text by value, damaged: the text never shows.
    let damaged = pem.replacen('M', "!", 3);
    let e = fails(
        &t,
        |env| {
            env.remove("WXPAY_MCH_PRIVATE_KEY_FILE");
            env.insert("WXPAY_MCH_PRIVATE_KEY", damaged.clone());
        },
        "WXPAY_MCH_PRIVATE_KEY",
    );
    assert!(matches!(e, ConfigError::Key { .. }));
    assert!(!format!("{e:?}").contains(&pem_body_line(&damaged)));

    fails(
        &t,
        |env| {
            env.insert("WXPAY_MCH_PRIVATE_KEY", pem.clone());
        },
        "WXPAY_MCH_PRIVATE_KEY",
    );
    let e = fails(
        &t,
        |env| {
            env.remove("WXPAY_MCH_PRIVATE_KEY_FILE");
        },
        "WXPAY_MCH_PRIVATE_KEY_FILE (or WXPAY_MCH_PRIVATE_KEY)",
    );
    assert!(matches!(e, ConfigError::Missing(_)));

    // The serial.
    for bad in [
        "XYZ",
        &merchant_serial()[1..],
        &format!("{}G", &merchant_serial()[1..]),
    ] {
        fails(
            &t,
            |env| {
                env.insert("WXPAY_MCH_SERIAL", bad.to_owned());
            },
            "WXPAY_MCH_SERIAL",
        );
    }
    fails(
        &t,
        |env| {
            env.remove("WXPAY_MCH_SERIAL");
        },
        "WXPAY_MCH_SERIAL",
    );

    // The public key: one without the other names the missing one.
    let e = fails(
        &t,
        |env| {
            env.remove("WXPAY_PUBLIC_KEY_ID");
        },
        "WXPAY_PUBLIC_KEY_ID",
    );
    assert_eq!(
        e,
        ConfigError::Required {
            name: "WXPAY_PUBLIC_KEY_ID",
            by: "WXPAY_PUBLIC_KEY_FILE"
        }
    );
    let e = fails(
        &t,
        |env| {
            env.remove("WXPAY_PUBLIC_KEY_FILE");
        },
        "WXPAY_PUBLIC_KEY_FILE",
    );
    assert!(matches!(e, ConfigError::Required { .. }));
    fails(
        &t,
        |env| {
            env.insert(
                "WXPAY_PUBLIC_KEY_ID",
                "0114232134912410000000000000000001".into(),
            );
        },
        "WXPAY_PUBLIC_KEY_ID",
    );
    // The merchant's private key given as the public key: refused, unprinted.
    let private = t.file("private-as-public.pem", &pem);
    let e = fails(
        &t,
        |env| {
            env.insert("WXPAY_PUBLIC_KEY_FILE", private.clone());
        },
        "WXPAY_PUBLIC_KEY_FILE",
    );
    assert!(matches!(e, ConfigError::Key { .. }));

    // Pinned certificates.
    let public = t.file("public.pem", &public_key_pem());
    let e = fails(
        &t,
        |env| {
            env.insert("WXPAY_PLATFORM_CERT_FILE", public.clone());
        },
        "WXPAY_PLATFORM_CERT_FILE",
    );
    assert!(
        matches!(e, ConfigError::Certificate { index: 1, .. }),
        "{e}"
    );
    let second_bad = t.file("second-bad.pem", &format!("{}{}", platform_pem(), pem));
    let e = fails(
        &t,
        |env| {
            env.insert("WXPAY_PLATFORM_CERT_FILE", second_bad.clone());
        },
        "WXPAY_PLATFORM_CERT_FILE",
    );
    assert!(
        matches!(e, ConfigError::Certificate { index: 2, .. }),
        "{e}"
    );
    let empty = t.file("empty.pem", "no certificate here\n");
    fails(
        &t,
        |env| {
            env.insert("WXPAY_PLATFORM_CERT_FILE", empty.clone());
        },
        "WXPAY_PLATFORM_CERT_FILE",
    );
    let nowhere = t.path("nowhere.pem");
    fails(
        &t,
        |env| {
            env.insert("WXPAY_PLATFORM_CERT_FILE", nowhere.clone());
        },
        "WXPAY_PLATFORM_CERT_FILE",
    );

    // Ids.
    for name in ["WXPAY_APPID", "WXPAY_MCH_ID", "WXPAY_APIV3_KEY"] {
        let e = v3(&{
            let mut env = public_key_env(&t);
            env.remove(name);
            env
        })
        .unwrap_err();
        assert_eq!(e, ConfigError::Missing(name));
    }
}

/// The vectors' merchant key re-encoded as PKCS#1 (`RSA PRIVATE KEY`): the
/// `privateKey` OCTET STRING of its PKCS#8 `PrivateKeyInfo`.
fn pkcs1_pem(pkcs8_pem: &str) -> String {
    let body: String = pkcs8_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    fn header(d: &[u8], i: &mut usize, tag: u8) -> usize {
        assert_eq!(d[*i], tag, "DER tag at {i}");
        *i += 1;
        let first = d[*i];
        *i += 1;
        if first < 0x80 {
            return first as usize;
        }
        let mut len = 0;
        for _ in 0..(first & 0x7f) {
            len = len << 8 | d[*i] as usize;
            *i += 1;
        }
        len
    }
    let mut i = 0;
    header(&der, &mut i, 0x30); // PrivateKeyInfo
    i += header(&der, &mut i, 0x02); // version
    i += header(&der, &mut i, 0x30); // algorithm
    let len = header(&der, &mut i, 0x04); // privateKey
    to_pem("RSA PRIVATE KEY", &der[i..i + len])
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn ec_private_key_pem() -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let doc = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    to_pem("PRIVATE KEY", doc.as_ref())
}

#[test]
fn pkcs1_and_pkcs8_private_keys() {
    let t = Temp::new();
    let pkcs8 = merchant_pem();
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
    let pkcs1 = pkcs1_pem(&pkcs8);
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let mut env = public_key_env(&t);
    let by_pkcs8 = v3(&env).unwrap();
    env.insert(
        "WXPAY_MCH_PRIVATE_KEY_FILE",
        t.file("apiclient_key_pkcs1.pem", &pkcs1),
    );
    let by_pkcs1 = v3(&env).unwrap();
    // By value too.
    env.remove("WXPAY_MCH_PRIVATE_KEY_FILE");
    env.insert("WXPAY_MCH_PRIVATE_KEY", pkcs1.clone());
    let by_value = v3(&env).unwrap();
    let sig = |c: &ClientConfig| c.credential().key().sign(b"same key").unwrap();
    assert_eq!(sig(&by_pkcs8), sig(&by_pkcs1));
    assert_eq!(sig(&by_pkcs8), sig(&by_value));
}

#[test]
fn deserializes_from_json_by_value_and_by_file() {
    let t = Temp::new();
    let json = serde_json::json!({
        "api": "v3",
        "appid": APPID,
        "mch_id": MCH_ID,
        "app_secret": {"value": APP_SECRET},
        "api_key": {"file": t.file("wxpay_api_key", &format!("{API_KEY}\n"))},
        "apiv3_key": {"value": apiv3_key()},
        "mch_private_key": {"file": t.file("apiclient_key.pem", &merchant_pem())},
        "mch_serial": merchant_serial(),
        "public_key": {"file": t.file("pub_key.pem", &public_key_pem())},
        "public_key_id": public_key_id(),
        "platform_certificates": {"value": platform_pem()},
        "notify_url": "https://pay.example.com/wxpay/notify",
        "refund_notify_url": "https://pay.example.com/wxpay/refund-notify",
        "sign_type": "HMAC-SHA256",
    });
    let s: Settings = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(s.api(), Api::V3);
    assert!(s.has_v2() && s.has_v3());
    let v2 = s.v2().unwrap();
    assert_eq!(
        v2.api_key.expose(),
        API_KEY,
        "a key file's newline is trimmed"
    );
    assert_eq!(v2.app_secret.as_ref().unwrap().expose(), APP_SECRET);
    assert_eq!(v2.sign_type, wxpay_core::SignType::HmacSha256);
    let v3 = s.v3().unwrap();
    assert_eq!(v3.mchid(), MCH_ID);
    assert_eq!(v3.public_key().unwrap().id(), public_key_id());
    assert_eq!(v3.platform_certificates()[0].serial_no(), platform_serial());
    assert!(v3.download_certificates);
    assert_eq!(
        v3.refund_notify_url.as_deref(),
        Some("https://pay.example.com/wxpay/refund-notify")
    );
    assert_no_secret(&format!("{s:?}"));

    // Everything by value (PEM text inline), v3 only.
    let inline = serde_json::json!({
        "appid": APPID,
        "mch_id": MCH_ID,
        "apiv3_key": {"value": apiv3_key()},
        "mch_private_key": {"value": merchant_pem()},
        "mch_serial": merchant_serial(),
        "public_key": {"value": public_key_pem()},
        "public_key_id": public_key_id(),
    });
    let s: Settings = serde_json::from_value(inline.clone()).unwrap();
    assert!(!s.has_v2() && s.api() == Api::V3);
    assert!(!s.v3().unwrap().download_certificates);

    // The parts alone, from the same shape.
    let c: ClientConfig = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(c.appid, APPID);
    let c: Config = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(c.api_key.expose(), API_KEY);
    let e = serde_json::from_value::<Config>(inline).unwrap_err();
    assert!(e.to_string().contains("api_key is not set"), "{e}");

    // The raw shape, redacted, and converted by hand.
    let raw: SettingsFile = serde_json::from_value(json.clone()).unwrap();
    let shown = format!("{raw:?}");
    assert_no_secret(&shown);
    assert!(
        shown.contains("wxpay_api_key"),
        "file paths are shown: {shown}"
    );
    assert!(Settings::try_from(raw).is_ok());
}

#[test]
fn file_errors_name_the_field_and_no_secret() {
    let t = Temp::new();
    let base = serde_json::json!({
        "appid": APPID,
        "mch_id": MCH_ID,
        "apiv3_key": {"value": apiv3_key()},
        "mch_private_key": {"file": t.file("apiclient_key.pem", &merchant_pem())},
        "mch_serial": merchant_serial(),
        "public_key": {"file": t.file("pub_key.pem", &public_key_pem())},
        "public_key_id": public_key_id(),
    });
    let with = |field: &str, value: Value| {
        let mut v = base.clone();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        v
    };
    let cases = [
        (
            with(
                "apiv3_key",
                serde_json::json!({"value": "short-secret-key"}),
            ),
            "apiv3_key",
        ),
        (
            with(
                "apiv3_key",
                serde_json::json!({"file": t.file("v3key", &format!("{}X\n", apiv3_key()))}),
            ),
            "apiv3_key",
        ),
        (
            with(
                "mch_private_key",
                serde_json::json!({"file": t.path("missing.pem")}),
            ),
            "mch_private_key",
        ),
        (
            with(
                "mch_private_key",
                serde_json::json!({"value": merchant_pem().replacen('M', "!", 3)}),
            ),
            "mch_private_key",
        ),
        (with("mch_serial", "123".into()), "mch_serial"),
        (with("public_key_id", Value::Null), "public_key_id"),
        (
            with("platform_certificate_download", false.into()),
            "platform_certificate_download",
        ),
        (with("api", "v2".into()), "api_key"),
        (with("api_key", serde_json::json!({"value": ""})), "api_key"),
        (
            with(
                "api_key",
                serde_json::json!({"file": t.file("empty_api_key", "\n")}),
            ),
            "api_key",
        ),
    ];
    for (json, name) in cases {
        let raw: SettingsFile = serde_json::from_value(json.clone()).unwrap();
        let e = match name {
            // Turning the download off needs the public key gone too.
            "platform_certificate_download" => {
                let mut raw = raw;
                raw.public_key = None;
                raw.public_key_id = None;
                Settings::try_from(raw).unwrap_err()
            }
            _ => Settings::try_from(raw).unwrap_err(),
        };
        assert_names(&e, name);
        assert!(!e.to_string().contains("short-secret-key"));
        if name != "platform_certificate_download" {
            // Deserializing directly reports the same, as a serde error.
            let de = serde_json::from_value::<Settings>(json).unwrap_err();
            assert!(de.to_string().contains(name), "{de}");
            assert_no_secret(&de.to_string());
            assert!(!de.to_string().contains("short-secret-key"));
        }
    }

    // A misspelt field, or a secret given in neither form, is refused.
    let e = serde_json::from_value::<Settings>(with("apiv3key", "x".into())).unwrap_err();
    assert!(e.to_string().contains("apiv3key"), "{e}");
    let e = serde_json::from_value::<SettingsFile>(with(
        "apiv3_key",
        serde_json::json!({"path": "/x"}),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("path"), "{e}");
    let e = serde_json::from_value::<SettingsFile>(with("api", "v4".into())).unwrap_err();
    assert!(e.to_string().contains("api"), "{e}");
}

#[test]
fn secret_sources_redact_values() {
    let v = SecretSource::value(API_KEY);
    let f = SecretSource::file(Path::new("/run/secrets/wxpay_api_key"));
    assert_eq!(format!("{v:?}"), "Value(***)");
    assert_eq!(format!("{v:#?}"), "Value(***)");
    assert!(format!("{f:?}").contains("/run/secrets/wxpay_api_key"));
    let mut raw = SettingsFile::default();
    raw.api_key = Some(v);
    raw.apiv3_key = Some(SecretSource::value(apiv3_key()));
    raw.mch_private_key = Some(SecretSource::value(merchant_pem()));
    assert_no_secret(&format!("{raw:?} {raw:#?}"));
}
