//! One WeChat Pay payment through every step, against the simulator started
//! in-process: no configuration, no network, no merchant account.
//!
//! ```sh
//! cargo run --example quickstart             # API v3 (JSON, SHA256-RSA, AES-GCM notifies)
//! cargo run --example quickstart -- --api v2 # API v2 (XML, MD5)
//! ```

use std::{sync::Arc, time::Duration};

use wxpay_core::async_trait; // re-exported: no dependency of its own
use wxpay_core::{
    BoxError, Fen,
    flow::{
        Api, Checkout, CheckoutRequest, MemoryStore, Order, OrderDraft, OrderState, PaymentEvents,
        Payments, Rejection, V3Gateway,
    },
    v3,
};
use wxpay_sim::{SimConfig, Simulator};

/// The app's pricing: one product, priced here, never by the client.
struct Coffee;

#[async_trait]
impl Checkout for Coffee {
    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        // A real app reads the payer from its own session; here a header.
        let openid = req
            .header("x-openid")
            .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        Ok(OrderDraft::jsapi(openid, "wxpay demo-coffee", Fen(1)).with_owner(openid))
    }
}

/// The app's business effect, run once per paid order.
struct Serve;

#[async_trait]
impl PaymentEvents for Serve {
    async fn on_paid(&self, order: &Order) -> Result<(), BoxError> {
        println!("   on_paid: serving coffee for {}", order.out_trade_no);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let api = match args.iter().position(|a| a == "--api") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--api v2 or --api v3")?
            .parse::<Api>()?,
        None => Api::V3,
    };
    // WeChat Pay, simulated: notify retries run 100x faster than real time.
    let sim = Simulator::start(SimConfig::test().with_time_scale(0.01)).await?;
    println!("1. simulator listening on {}", sim.base_url());

    // Our server: the wxpay routes (notify included) on an OS-assigned port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let notify_url = format!("http://{addr}/pay/notify");
    // The app-level settings (appid, AppSecret for sign-in) and the APIv2 key.
    let config = sim.merchant_config().with_notify_url(&notify_url);
    let mut builder = Payments::builder(config.clone())
        .store(Arc::new(MemoryStore::new()))
        .checkout(Coffee)
        .events(Serve);
    if api == Api::V3 {
        // The v3 merchant: private key + certificate serial (signs requests
        // and paySign), APIv3 key (decrypts notifies); WeChat's platform
        // certificates are downloaded from the simulator and verify every
        // answer and notify.
        let m = sim.v3_merchant();
        let credential = m.credential().ok_or("the simulator has a merchant key")?;
        let v3_config = v3::ClientConfig::new(&m.appid, credential, m.api_v3_key())
            .with_api_base(&m.api_base)
            .with_notify_url(&notify_url)
            .with_certificate_download(true);
        println!("   merchant (API v3): {v3_config:?}");
        builder = builder.v3(V3Gateway::new(v3::Client::new(v3_config)?.boxed()));
    } else {
        println!("   merchant (API v2): {config:?}");
    }
    let payments = builder.build()?;
    let app = axum::Router::new().nest("/pay", wxpay_axum::router(payments.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("   our server listening on http://{addr}, notify at /pay/notify");

    // The mini-program: wx.login gives a code; the server trades it for the openid.
    let code = sim.login("o-quickstart-user").await;
    let session = payments.login(&code).await?;
    println!("2. wx.login code {code} -> openid {}", session.openid);

    // Checkout: priced by the app, the prepay request signed and sent
    // (v3: POST /v3/pay/transactions/jsapi; v2: unifiedorder), paySign made.
    let checkout = payments
        .checkout(CheckoutRequest::new("{}").with_header("x-openid", &session.openid))
        .await?;
    let pay_params = checkout
        .pay_params
        .as_ref()
        .ok_or("JSAPI orders have pay params")?;
    println!(
        "3. order {} for {} fen -> {}",
        checkout.out_trade_no,
        checkout.total_fee,
        pay_params.package()
    );
    println!(
        "4. wx.requestPayment params: {}",
        serde_json::to_string_pretty(pay_params)?
    );

    // The user pays in WeChat; WeChat POSTs the signed notify to our server
    // (v3: JSON whose resource is AES-256-GCM encrypted, answered 204).
    sim.pay(checkout.out_trade_no.as_str()).await?;
    println!("5. the user paid in WeChat");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let order = loop {
        let order = payments.order(&checkout.out_trade_no).await?;
        if order.state == OrderState::Paid || tokio::time::Instant::now() > deadline {
            break order;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for attempt in sim.notifies().await {
        println!(
            "6. WeChat's notify #{} to {}:\n   {}",
            attempt.attempt, attempt.url, attempt.body
        );
        println!(
            "   our reply (HTTP {}): {}",
            attempt.status.unwrap_or(0),
            attempt.reply.as_deref().unwrap_or("-")
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!(
        "7. final state: {} (transaction_id {})",
        order.state,
        order.transaction_id.as_deref().unwrap_or("-")
    );
    if order.state != OrderState::Paid {
        return Err("the order did not reach PAID".into());
    }
    Ok(())
}
