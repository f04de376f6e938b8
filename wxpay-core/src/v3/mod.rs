//! WeChat Pay API v3 protocol primitives: RSA request signing, answer and
//! notify verification, AES-256-GCM resource decryption and the v3
//! `paySign` — pure functions over raw bytes, each part with one job (the
//! split of the official wechatpay-go SDK).
//!
//! | part | job | spec |
//! |---|---|---|
//! | [`MerchantKey`] | the merchant API private key; signs messages | 1.3, 2.3 |
//! | [`Credential`] | builds the `Authorization` header of a request | 2 |
//! | [`Verifier`]: [`PublicKeyVerifier`], [`CertificateVerifier`], [`CombinedVerifier`] | checks a signature with the key a `Wechatpay-Serial` names | 3.4, 4.3 |
//! | [`ResponseValidator`], [`NotifyValidator`] | the whole procedure of 3.3 (headers, probe, 300 s window, key, signature) | 3 |
//! | [`ApiV3Key`] | decrypts `resource` objects and downloaded certificates | 5 |
//! | [`NotifyHandler`] | verified notify → decrypted resource | 13.2, 13.6 |
//! | [`PayParamsV3`] | `wx.requestPayment` parameters with `signType: "RSA"` | 8 |
//! | [`PlatformCertificate`], [`decrypt_certificates`] | the `/v3/certificates` answer | 4.1 |
//! | [`CertificateStore`] | the platform certificates held, behind a lock, shared by answers and notifies | 4.1, 4.2 |
//! | [`ClientConfig`], [`Client`] | the HTTP client: signed calls, every answer verified, certificates kept fresh, typed endpoints, [`Client::verify_notify`], [`Client::pay_params`] | 4.2, 6–11, 14.4 |
//! | [`Client::trade_bill`], [`Client::fund_flow_bill`], [`BillApplication`] | bills: the verified application, then the file streamed and checked against its SHA-1 | 12 |
//! | [`PrepayRequest`], [`RefundRequest`], [`Transaction`], [`Refund`], [`RefundResource`], [`Verified`] | typed bodies (requests serialised once, in WeChat's order) | 7, 9, 11, 13.3, 13.4 |
//! | [`SubMerchant`], [`PartnerPrepayRequest`], [`PartnerTransaction`], [`PartnerRefundResource`], [`Client::partner_jsapi_prepay`], [`Client::partner_pay_params`], [`Client::verify_partner_notify`], [`PartnerError`] | service-provider (partner) mode: partner paths and bodies, `paySign` AppID, partner resources, answers checked to name the sub-merchant asked for | 15 |
//! | [`ApiError`], [`UnverifiedAnswer`], [`map_code`] | error answers and refused answers, codes mapped per [`Endpoint`] onto [`ErrCode`](crate::ErrCode) | 14 |
//!
//! Freshness: an answer or notify is refused when `|now − Wechatpay-Timestamp|
//! ≥ 300` seconds, in the past or the future (299 s passes, exactly 300 s is
//! refused — the spec's rule and vectors); `now` is always passed in.
//!
//! Signing a request and verifying WeChat's answer (the spec's own key
//! material lives in the test vectors; any RSA-2048 key works):
//!
//! ```no_run
//! use wxpay_core::v3::{Credential, MerchantKey, PublicKey, PublicKeyVerifier, ResponseValidator, WechatpayHeaders};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = MerchantKey::from_pem(&std::fs::read_to_string("apiclient_key.pem")?)?;
//! let credential = Credential::new("1900000109", "3D2C1B0A99887766554433221100FFEEDDCCBBAA", key);
//! let body = br#"{"appid":"wx1a2b3c4d5e6f7a8b"}"#;
//! let authorization = credential.authorization("POST", "/v3/pay/transactions/jsapi", "1767240000", "C1D6F0B7A2E94C3B8E5F1A2B3C4D5E6F", body)?;
//! assert!(authorization.starts_with("WECHATPAY2-SHA256-RSA2048 mchid=\"1900000109\","));
//!
//! let wechat = PublicKey::from_pem(&std::fs::read_to_string("pub_key.pem")?)?;
//! let validator = ResponseValidator::new(PublicKeyVerifier::new("PUB_KEY_ID_0114232134912410000000000000000001", wechat));
//! # let (status, answer_headers, answer_body): (u16, Vec<(&str, &str)>, &[u8]) = (200, vec![], b"");
//! let headers = WechatpayHeaders::from_pairs(answer_headers);
//! validator.validate(status, &headers, answer_body, chrono::Utc::now().timestamp())?;
//! # Ok(()) }
//! ```

mod aead;
mod bill;
mod certificates;
mod certstore;
mod client;
mod config;
mod error;
mod key;
mod messages;
mod notify;
mod partner;
mod paysign;
mod pem;
mod sign;
mod validate;
mod verify;

pub use aead::{AEAD_AES_256_GCM, ApiV3Key, ApiV3KeyError, DecryptError, EncryptedResource};
pub use bill::BillApplication;
pub use certificates::{CertificateError, PlatformCertificate, decrypt_certificates};
pub use certstore::CertificateStore;
pub use client::{Client, Clock, NonceSource};
pub use config::{
    ClientConfig, DEFAULT_API_BASE, DEFAULT_REFRESH_GAP, DEFAULT_REFRESH_INTERVAL,
    MAX_REFRESH_INTERVAL,
};
pub use error::{ApiError, ConfigError, Endpoint, UnverifiedAnswer, map_code};
pub use key::{KeyError, MerchantKey, PublicKey, SigningError};
pub use messages::{
    GoodsDetail, JsapiPrepayResponse, NativePrepayResponse, NotifyEvent, PrepayAmount,
    PrepayDetail, PrepayPayer, PrepayRequest, PromotionDetail, Refund, RefundAmount, RefundFrom,
    RefundRequest, RefundRequestAmount, RefundResource, RefundTarget, SceneInfo, SettleInfo,
    Transaction, TransactionAmount, TransactionPayer, TransactionScene, Verified, VerifiedNotify,
    format_time,
};
pub use notify::{Notification, NotifyError, NotifyHandler, SIGNATURE_FAILED, reply_fail};
pub use partner::{
    PartnerError, PartnerNotifyEvent, PartnerPayer, PartnerPrepayRequest, PartnerRefundResource,
    PartnerTransaction, PartnerTransactionPayer, SubMerchant, VerifiedPartnerNotify,
};
pub use paysign::{PayParamsV3, PaySignType, pay_sign_message};
pub use pem::PemError;
pub use sign::{AUTH_SCHEME, Credential, request_message};
pub use validate::{
    DEFAULT_WINDOW_SECS, NotifyValidator, ResponseValidator, SIGNATURE_TYPE, SIGNTEST_PREFIX,
    ValidationError, WechatpayHeaders, response_message,
};
pub use verify::{
    CertificateVerifier, CombinedVerifier, PUB_KEY_ID_PREFIX, PublicKeyVerifier, Verifier,
    VerifyError,
};
