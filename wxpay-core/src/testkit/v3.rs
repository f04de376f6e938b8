//! API v3 fixtures for tests (feature `testkit`): a merchant configured
//! with published test keys, and WeChat's side of a notify — the resource
//! encrypted with the APIv3 key, the body signed with the WeChat Pay public
//! key's private part or the platform certificate's key — so that an app's
//! own tests can deliver v3 notifies to its routes without a simulator.
//!
//! The keys are the test keys of the protocol reference's vectors
//! (RSA-2048, published): **never use them for real money**.
//!
//! ```
//! use wxpay_core::testkit::v3::{self as kit, Wechat};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let wechat = Wechat::new();
//! let notify = wechat.payment("V3KITORDER1", 990, chrono::Utc::now().timestamp());
//! // Verified and decrypted by a client configured with the same keys:
//! let client = wxpay_core::v3::Client::new(kit::client_config(kit::APPID)).unwrap();
//! assert!(client.verify_notify(&notify.headers(), &notify.body).await.is_ok());
//! # }
//! ```

use serde_json::{Value, json};

use crate::v3::{
    self, ApiV3Key, ClientConfig, Credential, MerchantKey, PlatformCertificate, PublicKey,
    PublicKeyVerifier, WechatpayHeaders,
};

/// The kit's mini-program AppID.
pub const APPID: &str = "wx1a2b3c4d5e6f7a8b";

fn keys() -> Value {
    serde_json::from_str(include_str!("v3_keys.json")).expect("the kit's key file is JSON")
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_str()
        .expect("the kit's key file has this key")
        .to_owned()
}

/// The merchant number of the kit's keys.
pub fn mchid() -> String {
    text(&keys(), &["merchant", "mchid"])
}

/// The APIv3 key of the kit's merchant.
pub fn api_v3_key() -> ApiV3Key {
    ApiV3Key::new(&text(&keys(), &["apiv3_key"])).expect("32 bytes")
}

/// A v3 client configuration for the kit's merchant and `appid`, verifying
/// with both the WeChat Pay public key and the platform certificate (the
/// migration window: notifies signed either way verify), notify URL
/// `https://shop.example.com/pay/notify`, no certificate download.
pub fn client_config(appid: &str) -> ClientConfig {
    let k = keys();
    let merchant = MerchantKey::from_pem(&text(&k, &["merchant", "private_key_pem"]))
        .expect("the kit's merchant key");
    let credential = Credential::new(mchid(), text(&k, &["merchant", "serial_no"]), merchant);
    let public = PublicKey::from_pem(&text(&k, &["wechatpay_public_key", "public_key_pem"]))
        .expect("the kit's public key");
    let cert = PlatformCertificate::from_pem(&text(&k, &["platform", "certificate_pem"]))
        .expect("the kit's platform certificate");
    ClientConfig::new(appid, credential, api_v3_key())
        .with_notify_url("https://shop.example.com/pay/notify")
        .with_public_key(PublicKeyVerifier::new(
            text(&k, &["wechatpay_public_key", "key_id"]),
            public,
        ))
        .with_platform_certificate(cert)
}

/// A v3 notify as it comes off the wire.
#[derive(Debug, Clone)]
pub struct NotifyRequest {
    /// The `Wechatpay-*` headers (and nothing else).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl NotifyRequest {
    /// A header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers as the verifier reads them.
    pub fn headers(&self) -> WechatpayHeaders<'_> {
        WechatpayHeaders::from_fn(|n| self.header(n))
    }

    /// Replaces (or adds) a header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

/// WeChat's side of the kit's merchant: builds, encrypts and signs v3
/// notifies.
pub struct Wechat {
    mchid: String,
    appid: String,
    apiv3: ApiV3Key,
    pub_key_id: String,
    pub_key: MerchantKey,
    cert_serial: String,
    cert_key: MerchantKey,
}

impl std::fmt::Debug for Wechat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wechat")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl Default for Wechat {
    fn default() -> Self {
        Wechat::new()
    }
}

impl Wechat {
    /// WeChat for the kit's merchant and [`APPID`].
    pub fn new() -> Wechat {
        Wechat::for_appid(APPID)
    }

    /// WeChat for the kit's merchant and `appid`.
    pub fn for_appid(appid: &str) -> Wechat {
        let k = keys();
        Wechat {
            mchid: mchid(),
            appid: appid.to_owned(),
            apiv3: api_v3_key(),
            pub_key_id: text(&k, &["wechatpay_public_key", "key_id"]),
            pub_key: MerchantKey::from_pem(&text(&k, &["wechatpay_public_key", "private_key_pem"]))
                .expect("the kit's public-key private part"),
            cert_serial: text(&k, &["platform", "serial_no"]),
            cert_key: MerchantKey::from_pem(&text(&k, &["platform", "private_key_pem"]))
                .expect("the kit's platform key"),
        }
    }

    /// The merchant's APIv3 key (what the resource is encrypted with).
    pub fn api_v3_key(&self) -> &ApiV3Key {
        &self.apiv3
    }

    /// A paid transaction resource (spec 13.3) for order `no` of `total`
    /// fen, paid at `2026-01-01T12:30:00+08:00`, `transaction_id`
    /// `42000{no}`.
    pub fn transaction(&self, no: &str, total: u64) -> Value {
        json!({
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": no,
            "transaction_id": format!("42000{no}"), "trade_type": "JSAPI", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": "2026-01-01T12:30:00+08:00", "payer": {"openid": "o-alice"},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}
        })
    }

    /// A refund resource (spec 13.4), `refund_id` `5030{out_refund_no}`.
    pub fn refund(
        &self,
        no: &str,
        out_refund_no: &str,
        refund: u64,
        total: u64,
        status: &str,
    ) -> Value {
        json!({
            "mchid": self.mchid, "out_trade_no": no, "transaction_id": format!("42000{no}"),
            "out_refund_no": out_refund_no, "refund_id": format!("5030{out_refund_no}"),
            "refund_status": status, "success_time": "2026-01-02T10:00:00+08:00",
            "user_received_account": "支付用户零钱",
            "amount": {"total": total, "refund": refund, "payer_total": total, "payer_refund": refund}
        })
    }

    /// The notify of `resource`: encrypted with `key` under associated
    /// data `aad`, signed at Unix time `ts` with the platform certificate
    /// (`by_cert`) or the WeChat Pay public key.
    pub fn notify(
        &self,
        event_type: &str,
        resource: &Value,
        key: &ApiV3Key,
        aad: &str,
        ts: i64,
        by_cert: bool,
    ) -> NotifyRequest {
        let nonce = "c3Rt9PqL2mN8";
        let ciphertext = key
            .encrypt(
                aad.as_bytes(),
                nonce.as_bytes(),
                resource.to_string().as_bytes(),
            )
            .expect("a 12-byte nonce");
        let original_type = if event_type.starts_with("REFUND") {
            "refund"
        } else {
            "transaction"
        };
        let body = json!({
            "id": "EV-2026010112300001", "create_time": "2026-01-01T12:30:01+08:00",
            "resource_type": "encrypt-resource", "event_type": event_type, "summary": "支付成功",
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": ciphertext, "associated_data": aad, "nonce": nonce}
        })
        .to_string()
        .into_bytes();
        self.signed(body, ts, by_cert)
    }

    /// `body` signed at `ts` as WeChat signs notifies.
    pub fn signed(&self, body: Vec<u8>, ts: i64, by_cert: bool) -> NotifyRequest {
        let ts = ts.to_string();
        let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
        let message = v3::response_message(&ts, nonce, &body);
        let (serial, key) = if by_cert {
            (&self.cert_serial, &self.cert_key)
        } else {
            (&self.pub_key_id, &self.pub_key)
        };
        let signature = key.sign(&message).expect("RSA signing");
        NotifyRequest {
            headers: vec![
                ("Wechatpay-Timestamp".into(), ts),
                ("Wechatpay-Nonce".into(), nonce.into()),
                ("Wechatpay-Serial".into(), serial.clone()),
                ("Wechatpay-Signature".into(), signature),
                (
                    "Wechatpay-Signature-Type".into(),
                    "WECHATPAY2-SHA256-RSA2048".into(),
                ),
            ],
            body,
        }
    }

    /// `TRANSACTION.SUCCESS` for order `no` of `total` fen, signed at `ts`
    /// with the public key.
    pub fn payment(&self, no: &str, total: u64, ts: i64) -> NotifyRequest {
        self.notify(
            "TRANSACTION.SUCCESS",
            &self.transaction(no, total),
            &self.apiv3,
            "transaction",
            ts,
            false,
        )
    }
}
