//! The shop backend on hyper + tower: `/login`, `/me`, and wxpay's routes
//! under `/pay` through `wxpay_tower::WxpayService`.
//!
//! ```sh
//! cargo run --example tower_shop -- --sim --listen 127.0.0.1:8080
//! ```

mod app;
#[path = "../shop/mod.rs"]
mod shop;

use clap::Parser;

#[tokio::main]
async fn main() -> Result<(), wxpay_core::BoxError> {
    let args = shop::Args::parse();
    let listener = shop::init(&args)?;
    let shop = shop::Shop::start(&args, listener.local_addr()?).await?;
    println!("tower shop listening on http://{}", listener.local_addr()?);
    app::serve(std::sync::Arc::new(shop), listener).await?;
    Ok(())
}
