//! The small mini-program backend shared by `axum_shop`, `actix_shop` and
//! `tower_shop`: command line, catalog and VIP days. Sign-in (`/login`),
//! pricing and the payment routes are wxpay's; only the HTTP glue differs
//! between the three examples.
//!
//! Everything it keeps (orders and sign-in sessions; VIP days are counted
//! from the paid orders) lives in `DATABASE_URL`: a SQLite file in the
//! working directory when unset; `postgres://` and `mysql://` work too, so
//! several instances can share one database.

#![allow(dead_code)] // each example uses a different subset

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use wxpay_core::{
    BoxError, Config, Fen, SignType,
    flow::{Catalog, Order, OrderState, Payments, PaymentsBuilder, PaymentsError},
};
use wxpay_sim::{SimConfig, SimHandle, Simulator};
use wxpay_sqlx::SqlxStore;

/// `vip-month`: 9.98 yuan, 30 VIP days per unit.
pub const VIP_MONTH_FEN: u64 = 998;
/// Days granted per unit.
pub const VIP_DAYS: i64 = 30;

/// What the shop sells: `vip-month`, 9.98 yuan, 1 to 12 at a time. wxpay's
/// [`Catalog`] prices each order from it for the signed-in user; the
/// client's amount is never read.
pub fn catalog() -> Catalog {
    Catalog::new()
        .item("vip-month", "wxpay shop-VIP membership", Fen(VIP_MONTH_FEN))
        .max_quantity(12)
}

/// Command line shared by the shops.
#[derive(clap::Parser, Debug, Clone)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Start an embedded WeChat Pay simulator instead of using the real API.
    #[arg(long)]
    pub sim: bool,
    /// Storage; a SQLite file in the working directory when unset.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://wxpay-shop.db?mode=rwc"
    )]
    pub database_url: String,
    /// With `--sim`: the merchant's sign type (`MD5` or `HMAC-SHA256`).
    #[arg(long, default_value = "MD5")]
    pub sim_sign_type: SignType,
    /// With `--sim`: how much faster than real time the simulator runs.
    #[arg(long, default_value_t = 0.01)]
    pub sim_time_scale: f64,
}

/// An example's `main`: logging from `RUST_LOG`, the command line, the
/// shop, then `serve` (the framework's part) on the listening socket.
pub async fn run<F, Fut>(framework: &str, serve: F) -> Result<(), BoxError>
where
    F: FnOnce(Arc<Shop>, std::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let args = <Args as clap::Parser>::parse();
    let listener = std::net::TcpListener::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let shop = Shop::start(&args, addr, |b| b).await?;
    println!("{framework} shop listening on http://{addr}");
    Ok(serve(Arc::new(shop), listener).await?)
}

/// What a running shop holds.
pub struct Shop {
    /// The payment service: wxpay's routes under `/pay`, and its sign-in at
    /// `/login`.
    pub payments: Payments,
    /// The embedded simulator (with `--sim`).
    pub sim: Option<SimHandle>,
    catalog: Catalog,
}

/// An HTTP answer in framework-free form: status and JSON.
pub type Reply = (u16, Value);

impl Shop {
    /// Opens storage, configures WeChat Pay (`WXPAY_*`, or the embedded
    /// simulator, which delivers notifies to `addr`) and builds payments;
    /// `tweak` has the last say over its settings (the end-to-end tests
    /// shorten its intervals).
    pub async fn start(
        args: &Args,
        addr: SocketAddr,
        tweak: impl FnOnce(PaymentsBuilder) -> PaymentsBuilder,
    ) -> Result<Shop, BoxError> {
        let (config, sim) = if args.sim {
            let sim =
                Simulator::start(SimConfig::test().with_time_scale(args.sim_time_scale)).await?;
            println!("simulator (WeChat Pay stand-in) at {}", sim.base_url());
            let config = sim
                .merchant_config()
                .with_notify_url(format!("http://{addr}/pay/notify"))
                .with_refund_notify_url(format!("http://{addr}/pay/refund-notify"))
                .with_sign_type(args.sim_sign_type);
            (config, Some(sim))
        } else {
            (Config::from_env()?, None)
        };
        let store = Arc::new(SqlxStore::connect(&args.database_url).await?);
        let builder = Payments::builder(config)
            .store(store.clone())
            .sessions(store)
            .checkout(catalog());
        let payments = tweak(builder).build()?;
        payments.reconciler(Duration::from_secs(30)).spawn();
        Ok(Shop {
            payments,
            sim,
            catalog: catalog(),
        })
    }

    /// `GET /me` with `Authorization: Bearer …`: VIP days are counted from
    /// the user's paid orders, so each grants its days exactly once whatever
    /// the notifies do (only `PAID` ones: a refund, even a partial one or
    /// one under way, takes them back).
    pub async fn me(&self, authorization: Option<&str>) -> Reply {
        let user = match self.payments.signed_in(authorization).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                return (
                    401,
                    json!({ "error": "unauthorized", "message": "sign in first" }),
                );
            }
            Err(e) => return internal(&e),
        };
        match self.payments.orders_of(&user.openid, usize::MAX).await {
            Ok(orders) => {
                let days: i64 = orders.iter().map(|o| self.vip_days(o)).sum();
                (200, json!({ "openid": user.openid, "vip_days": days }))
            }
            Err(e) => internal(&e),
        }
    }

    /// The days a paid order grants.
    fn vip_days(&self, order: &Order) -> i64 {
        match (order.state, self.catalog.line(order)) {
            (OrderState::Paid, Some((item, n))) if item.sku == "vip-month" => {
                i64::from(n) * VIP_DAYS
            }
            _ => 0,
        }
    }
}

fn internal(e: &PaymentsError) -> Reply {
    tracing::error!(error = %e, "request failed");
    (500, json!({ "error": "internal", "message": "try again" }))
}
