//! The shop backend on actix-web: `/login`, `/me`, and wxpay's routes under
//! `/pay` through `wxpay_actix::scope`.
//!
//! ```sh
//! cargo run --example actix_shop -- --sim --listen 127.0.0.1:8080
//! ```

mod app;
#[path = "../shop/mod.rs"]
mod shop;

#[actix_web::main]
async fn main() -> Result<(), wxpay_core::BoxError> {
    shop::run("actix-web", app::serve).await
}
