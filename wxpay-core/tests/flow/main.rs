//! The payment flow end to end: the store contract, and `Payments` against
//! an in-process WeChat stub (axum on 127.0.0.1:0).

mod daily;
mod fake_wechat;
mod gateway;
mod metrics;
mod model;
mod money;
mod notify_v3;
mod payments;
mod sessions;
mod store;
mod stub;
