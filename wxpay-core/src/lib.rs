//! # wxpay-core
//!
//! WeChat Pay v2 for Rust servers: the protocol (signing, the flat XML
//! codec, typed messages, the HTTP client) and the framework-agnostic
//! payment flow.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod errcode;
pub mod flow;
mod params;
mod secret;
pub mod sign;
pub mod types;
pub mod xml;

pub use errcode::{ErrCode, RetryAdvice};
pub use params::Params;
pub use secret::{ApiKey, AppSecret, SessionKey};
pub use sign::{SignType, SignatureError};
pub use types::{Fen, FieldError, OutTradeNo, RefundStatus, TradeState, TradeType};
pub use xml::XmlError;
