//! The shop backend on hyper + tower: `/login`, `/me`, and wxpay's routes
//! under `/pay` through `wxpay_tower::WxpayService`.
//!
//! ```sh
//! cargo run --example tower_shop -- --sim --listen 127.0.0.1:8080
//! ```

mod app;
#[path = "../shop/mod.rs"]
mod shop;

#[tokio::main]
async fn main() -> Result<(), wxpay_core::BoxError> {
    shop::run("hyper + tower", app::serve).await
}
