//! # wxpay-core
//!
//! WeChat Pay v2 for Rust servers: the protocol (signing, the flat XML
//! codec, typed messages, the HTTP client) and the framework-agnostic
//! payment flow.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod client;
pub mod config;
pub mod crypto;
pub mod errcode;
pub mod error;
pub mod flow;
pub mod messages;
pub mod notify;
mod params;
pub mod paysign;
mod secret;
pub mod sign;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod types;
pub mod xml;

pub use client::{
    Client, ClientIdentity, HttpRequest, HttpResponse, ReqwestTransport, RetryPolicy, Transport,
};
pub use config::{Config, ConfigError};
pub use errcode::{ErrCode, RetryAdvice};
pub use error::{BoxError, Error};
pub use notify::{NotifyError, PaymentNotification, RefundNotification};
pub use params::Params;
pub use paysign::PayParams;
pub use secret::{ApiKey, AppSecret, SessionKey};
pub use sign::{SignType, SignatureError};
pub use types::{Fen, FieldError, OutTradeNo, RefundStatus, TradeState, TradeType};
pub use xml::XmlError;
