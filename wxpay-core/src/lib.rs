//! # wxpay-core
//!
//! WeChat Pay v2 for Rust servers: the protocol (signing, the flat XML
//! codec, typed messages, the HTTP client) and the framework-agnostic
//! payment flow ([`flow::Payments`]) that the web adapters mount.
//!
//! A payment notify, handled the way a mounted `/pay/notify` route does it:
//! verified (signature first, then merchant and amount against the stored
//! order), recorded as `PAID` once, answered with WeChat's exact XML.
//!
//! ```
//! use std::sync::Arc;
//! use wxpay_core::{
//!     ApiKey, Config, Fen, OutTradeNo, Params, SignType, TradeType,
//!     flow::{MemoryStore, Order, OrderState, OrderStore, Payments},
//!     notify, sign, xml,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("wx5f6d3e2c1b0a9f8e", "1900000109", ApiKey::new("an-api-key-from-the-merchant-pf"));
//! let store = Arc::new(MemoryStore::new());
//! let payments = Payments::builder(config.clone()).store(store.clone()).build()?;
//!
//! // An order the app priced and checked out earlier (normally `payments.checkout`).
//! let no = OutTradeNo::new("20261123A0001")?;
//! let mut order = Order::new(no.clone(), Fen(998), "shop-VIP", TradeType::Jsapi, SignType::Md5, chrono::Utc::now());
//! order.state = OrderState::Prepaid;
//! store.insert(&order).await?;
//!
//! // What WeChat POSTs once the user has paid.
//! let mut fields: Params = [
//!     ("return_code", "SUCCESS"), ("result_code", "SUCCESS"),
//!     ("appid", "wx5f6d3e2c1b0a9f8e"), ("mch_id", "1900000109"), ("nonce_str", "n0nce"),
//!     ("out_trade_no", "20261123A0001"), ("transaction_id", "4200000000000000000000000001"),
//!     ("total_fee", "998"), ("cash_fee", "998"), ("bank_type", "OTHERS"),
//!     ("time_end", "20261123120000"), ("trade_type", "JSAPI"), ("openid", "o-alice"),
//! ].into_iter().collect();
//! fields.insert("sign", sign::sign(&fields, &config.api_key, SignType::Md5));
//! let body = xml::to_xml(&fields);
//!
//! let reply = payments.handle_notify(body.as_bytes()).await;
//! assert_eq!(reply.body, notify::REPLY_SUCCESS);
//! assert_eq!(store.get(&no).await?.unwrap().state, OrderState::Paid);
//!
//! // WeChat delivers again: answered SUCCESS, nothing happens twice.
//! assert!(payments.handle_notify(body.as_bytes()).await.is_success());
//!
//! // A forged one (amount changed after signing) is refused and changes nothing.
//! let forged = body.replace("<total_fee>998</total_fee>", "<total_fee>1</total_fee>");
//! assert!(!payments.handle_notify(forged.as_bytes()).await.is_success());
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - Protocol: [`sign`] (MD5 / HMAC-SHA256, constant-time verification),
//!   [`xml`] (flat codec, no DTDs), [`messages`] (typed requests and
//!   answers), [`notify`] (payment and refund notifies as pure functions),
//!   [`crypto`] (refund `req_info`), [`paysign`] (`wx.requestPayment`),
//!   [`client`] (signed calls, every answer verified), [`error`].
//! - Configuration: [`config`] — the v2 [`Config`], and [`Settings`], both
//!   APIs' configuration loaded at start-up from the environment or a
//!   deserialized file (secrets by value or by file), with the API new
//!   orders use.
//! - Flow: [`flow`] — the order state machine, the [`flow::OrderStore`]
//!   contract, [`flow::MemoryStore`], [`flow::Payments`], events, the
//!   reconciler, sign-in sessions ([`flow::SessionStore`],
//!   [`flow::MemorySessions`]), and the framework-free router the adapters use.
//! - API v3: [`v3`] — RSA request signing and the `Authorization` header,
//!   answer/notify validators with the 300 s window, verifiers by platform
//!   certificate or public key, AES-256-GCM resource decryption, the RSA
//!   `paySign`; and [`v3::Client`]: typed endpoints (prepay, query, close,
//!   refund, refund query), every answer verified, platform certificates
//!   kept fresh in a shared [`v3::CertificateStore`], notifies verified and
//!   decrypted, errors as [`Error::Api`] / [`Error::Unverified`].
//! - `testkit` feature: the store conformance kits and notify fixtures.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bill;
pub mod client;
pub mod config;
pub mod crypto;
pub mod errcode;
pub mod error;
pub mod flow;
pub mod messages;
pub mod metrics;
pub mod notify;
mod params;
pub mod paysign;
mod secret;
mod settings;
pub mod sign;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod types;
pub mod v3;
pub mod xml;

/// The attribute `Checkout`, `PaymentEvents`, `OrderStore`, `SessionStore`
/// and `AdminAuth` implementations need (re-exported, so an app needs no
/// dependency of its own on `async-trait`).
pub use async_trait::async_trait;
pub use client::{
    BodyStream, BoxTransport, ChunkFuture, ChunkSource, Client, ClientIdentity, HttpMethod,
    HttpRequest, HttpResponse, ReqwestTransport, RetryPolicy, StreamingResponse, Transport,
};
pub use config::{Config, ConfigError, SecretSource, Settings, SettingsFile};
pub use errcode::{ErrCode, RetryAdvice};
pub use error::{BoxError, Error};
pub use notify::{NotifyError, PaymentNotification, RefundNotification};
pub use params::Params;
pub use paysign::PayParams;
pub use secret::{ApiKey, AppSecret, SessionKey, SessionToken};
pub use sign::{SignType, SignatureError};
pub use types::{Fen, FieldError, OutTradeNo, RefundStatus, TradeState, TradeType};
pub use xml::XmlError;
