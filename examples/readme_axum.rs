//! The README's "Mounting it in an axum app" snippet, compiled: the lines
//! between the `README` markers are the snippet, word for word (a test,
//! `tests/readme.rs`, checks that the two stay the same).
//!
//! ```sh
//! WXPAY_APPID=… WXPAY_MCH_ID=… WXPAY_API_KEY=… cargo run --example readme_axum
//! ```

use wxpay::{
    BoxError, Fen, async_trait,
    flow::{Checkout, CheckoutRequest, Order, OrderDraft, PaymentEvents, Rejection},
};

/// Your prices.
struct MyShop;

#[async_trait]
impl Checkout for MyShop {
    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        // The signed-in user (sessions); your own session check otherwise.
        let openid = req
            .user()
            .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        Ok(OrderDraft::jsapi(openid, "my app-VIP month", Fen(990)).with_owner(openid))
    }
}

/// Your effect on payment.
struct MyGrants;

#[async_trait]
impl PaymentEvents for MyGrants {
    async fn on_paid(&self, order: &Order) -> Result<(), BoxError> {
        println!("paid: {}", order.out_trade_no);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let app = app().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The snippet, kept as the README shows it (not reformatted).
#[rustfmt::skip]
#[allow(unused_imports)]
async fn app() -> Result<axum::Router, BoxError> {
    // README: begin
    use std::sync::Arc;
    use wxpay::{Config, flow::{MemoryStore, Payments}};

    let store = Arc::new(wxpay::sqlx::SqlxStore::connect("sqlite://shop.db?mode=rwc").await?);
    let payments = Payments::builder(Config::from_env()?)   // WXPAY_APPID, WXPAY_MCH_ID, WXPAY_API_KEY, …
        .store(store.clone())  // orders
        .sessions(store)       // optional: sign-in sessions (below)
        .checkout(MyShop)      // your prices: impl wxpay::flow::Checkout, or a wxpay::flow::Catalog
        .events(MyGrants)      // optional, your effect on payment: impl wxpay::flow::PaymentEvents
        .build()?;
    payments.reconciler(std::time::Duration::from_secs(60)).spawn();

    let app = axum::Router::new()
        .route("/login", wxpay::axum::sign_in(payments.clone()))  // with sessions: {"code"} → {"token",…}
        .merge(wxpay::axum::router_at("/pay", payments))   // or .nest("/pay", wxpay::axum::router(payments))
        .route("/", axum::routing::get(|| async { "my app" }));
    // README: end
    Ok(app)
}
