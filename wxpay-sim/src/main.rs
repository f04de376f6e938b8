//! `wxpay-sim`: run the WeChat Pay v2 simulator as a server.
//!
//! ```text
//! wxpay-sim --listen 127.0.0.1:9000 --time-scale 0.001
//! wxpay-sim --refund-delay-ms 0 --refund-notify-url http://127.0.0.1:8080/pay/refund-notify
//! ```
//!
//! Credentials come from flags or `WXPAY_APPID`, `WXPAY_MCH_ID`,
//! `WXPAY_API_KEY`, `WXPAY_APP_SECRET`; missing ones take the test values
//! of `SimConfig::test()`. Secrets are never printed.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wxpay_core::{ApiKey, AppSecret};
use wxpay_sim::{SimConfig, Simulator};

/// A local WeChat Pay v2 simulator.
#[derive(Parser)]
#[command(name = "wxpay-sim", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Mini-program AppID.
    #[arg(long, env = "WXPAY_APPID")]
    appid: Option<String>,
    /// Merchant number.
    #[arg(long, env = "WXPAY_MCH_ID")]
    mch_id: Option<String>,
    /// API v2 key.
    #[arg(long, env = "WXPAY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Mini-program AppSecret.
    #[arg(long, env = "WXPAY_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Multiplies every time rule (notify retries, the 5-minute close rule,
    /// the 2-hour prepay expiry, refund processing).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Refund notify URL for refunds that name none (the URL configured in
    /// the merchant platform).
    #[arg(long)]
    refund_notify_url: Option<String>,
    /// How long a refund stays PROCESSING before it is final and notified,
    /// in milliseconds before --time-scale applies; 0 makes refunds final at
    /// once.
    #[arg(long, default_value_t = 60_000)]
    refund_delay_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = SimConfig::test();
    let defaults = args.api_key.is_none() || args.app_secret.is_none();
    if let Some(v) = args.appid {
        config.appid = v;
    }
    if let Some(v) = args.mch_id {
        config.mch_id = v;
    }
    if let Some(v) = args.api_key {
        config.api_key = ApiKey::new(v);
    }
    if let Some(v) = args.app_secret {
        config.app_secret = AppSecret::new(v);
    }
    config.time_scale = args.time_scale;
    config.refund_notify_url = args.refund_notify_url;
    config.refund_delay = Duration::from_millis(args.refund_delay_ms);
    let (appid, mch_id, scale) = (
        config.appid.clone(),
        config.mch_id.clone(),
        config.time_scale,
    );
    let sim = Simulator::start_on(config, args.listen).await?;
    println!(
        "wxpay-sim listening on {} (appid {appid}, mch_id {mch_id}, time scale {scale})",
        sim.base_url()
    );
    if defaults {
        println!("note: API key or AppSecret not given; using the built-in test values");
    }
    std::future::pending::<()>().await;
    Ok(())
}
