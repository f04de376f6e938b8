//! The shop backend on actix-web: `/login`, `/me`, and wxpay's routes under
//! `/pay` through `wxpay_actix::scope`.
//!
//! ```sh
//! cargo run --example actix_shop -- --sim --listen 127.0.0.1:8080
//! ```

mod app;
#[path = "../shop/mod.rs"]
mod shop;

use clap::Parser;

#[actix_web::main]
async fn main() -> Result<(), wxpay_core::BoxError> {
    let args = shop::Args::parse();
    let listener = shop::init(&args)?;
    let shop = shop::Shop::start(&args, listener.local_addr()?).await?;
    println!("actix shop listening on http://{}", listener.local_addr()?);
    app::serve(std::sync::Arc::new(shop), listener).await?;
    Ok(())
}
