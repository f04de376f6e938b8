//! # wxpay
//!
//! WeChat Pay v2 for Rust web apps: take payments from a WeChat mini-program
//! correctly and safely with a few lines of glue.
//!
//! This facade re-exports [`wxpay_core`] (protocol and payment flow) and,
//! behind features, the pieces around it:
//!
//! | feature | crate | what |
//! |---|---|---|
//! | `axum` | [`wxpay_axum`](https://docs.rs/wxpay-axum) | a `Router` to merge at a prefix (`router_at`) or to nest (`router`) |
//! | `actix` | [`wxpay_actix`](https://docs.rs/wxpay-actix) | an actix-web scope |
//! | `tower` | [`wxpay_tower`](https://docs.rs/wxpay-tower) | a tower `Service`, usable from hyper |
//! | `sqlx` (= `sqlx-sqlite`) | [`wxpay_sqlx`](https://docs.rs/wxpay-sqlx) | the order and session store, on SQLite |
//! | `sqlx-postgres`, `sqlx-mysql` | [`wxpay_sqlx`](https://docs.rs/wxpay-sqlx) | the same store on PostgreSQL, on MySQL/MariaDB (alone or together; each compiles only its driver) |
//! | `sim` | [`wxpay_sim`](https://docs.rs/wxpay-sim) | a local WeChat Pay simulator |
//! | `testkit` | | store conformance kits and notify fixtures |
//!
//! ```
//! use wxpay::{ApiKey, Config, SignType};
//! let config = Config::new("wx5f6d3e2c1b0a9f8e", "1900000109", ApiKey::new("…"))
//!     .with_sign_type(SignType::HmacSha256)
//!     .with_notify_url("https://shop.example.com/pay/notify");
//! assert_eq!(config.sign_type.as_str(), "HMAC-SHA256");
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub use wxpay_core::*;

#[cfg(feature = "actix")]
pub use wxpay_actix as actix;
#[cfg(feature = "axum")]
pub use wxpay_axum as axum;
#[cfg(feature = "sim")]
pub use wxpay_sim as sim;
#[cfg(any(
    feature = "sqlx-sqlite",
    feature = "sqlx-postgres",
    feature = "sqlx-mysql"
))]
pub use wxpay_sqlx as sqlx;
#[cfg(feature = "tower")]
pub use wxpay_tower as tower;
