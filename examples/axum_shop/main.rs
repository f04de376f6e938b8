//! The shop backend on axum: `/login`, `/me`, and wxpay's routes under `/pay`.
//!
//! ```sh
//! cargo run --example axum_shop -- --sim --listen 127.0.0.1:8080
//! ```

mod app;
#[path = "../shop/mod.rs"]
mod shop;

#[tokio::main]
async fn main() -> Result<(), wxpay_core::BoxError> {
    shop::run("axum", app::serve).await
}
