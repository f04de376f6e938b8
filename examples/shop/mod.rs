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
    BoxError, BoxTransport, ClientIdentity, Fen, Settings, SignType,
    flow::{
        AdminToken, Api, Catalog, Order, OrderState, Payments, PaymentsBuilder, PaymentsError,
        ReconcilerHandle, V3Gateway,
    },
    v3,
};
use wxpay_sim::{SimConfig, SimHandle, Simulator, VerifyMode};
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
    /// Turns on the admin routes (`/pay/admin/orders/{no}`, `…/refund`)
    /// for `Authorization: Bearer <this token>`; absent when unset.
    #[arg(long, env = "WXPAY_SHOP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seconds between reconciler passes (lost notifies, refunds in flight,
    /// refunds made in the merchant platform, unfinished effects).
    #[arg(long, env = "WXPAY_RECONCILE_EVERY", default_value_t = 30)]
    pub reconcile_every: u64,
    /// With `--sim`: the API the shop's merchant speaks, `v3` (JSON signed
    /// SHA256-RSA) or `v2` (XML signed MD5 / HMAC-SHA256). Without `--sim`
    /// the `WXPAY_*` configuration decides (`WXPAY_API_VERSION`).
    #[arg(long, default_value = "v3")]
    pub api: Api,
    /// With `--sim` and `--api v3`: how the simulator signs, `cert`
    /// (platform certificates, downloaded by the shop), `pubkey` (the
    /// WeChat Pay public key) or `migration` (answers follow the request,
    /// notifies signed either way).
    #[arg(long, default_value = "cert")]
    pub sim_verify_mode: VerifyMode,
    /// Seconds a connection may take to send a request's head, and (kept
    /// alive) to start the next one: slow or idle clients are cut off.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a request's body may take (wxpay's body deadline).
    #[arg(long, default_value_t = 10.0)]
    pub body_timeout: f64,
    /// Without `--sim`: `WXPAY_*` settings from this file (`NAME=value`
    /// lines, `#` comments), over the environment's; e.g. the `wxpay.env`
    /// that `wxpay-sim --keys-dir DIR` writes.
    #[arg(long)]
    pub env_file: Option<std::path::PathBuf>,
    /// Serves Prometheus metrics (`wxpay_*`, see `wxpay_core::metrics`) at
    /// `http://ADDR/metrics`, on a listener of their own rather than the
    /// shop's; none when unset.
    #[arg(long, env = "WXPAY_SHOP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Histogram buckets (seconds) for the `wxpay_*_seconds` histograms: a
/// WeChat exchange takes tens to hundreds of milliseconds, a timeout 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `--metrics-listen`: installs the Prometheus recorder with its own HTTP
/// listener (any path answers; `/metrics` by convention) and describes
/// wxpay's metrics.
///
/// A listener of its own rather than a route on the shop: one piece of
/// code for the three frameworks, the metrics stay off the public address
/// (bind it to loopback or a private network for the scraper), and a
/// scrape never waits behind the shop's own requests or deadlines.
///
/// # Errors
/// The address cannot be bound, or a recorder is already installed.
fn install_metrics(addr: SocketAddr) -> Result<(), BoxError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(SECONDS_BUCKETS)?
        .install()?;
    wxpay_core::metrics::describe();
    Ok(())
}

/// The settings from `--env-file` (when given) over the environment, as
/// the shops and `wxpay reconcile` read them.
///
/// # Errors
/// The file cannot be read, or a setting is missing or invalid.
pub fn shop_settings(args: &Args) -> Result<Settings, BoxError> {
    Ok(Settings::from_env_file(args.env_file.as_deref())?)
}

/// The server's bounds on slow clients, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// How long a connection may take to send a request's head, and, kept
    /// alive, to start the next one.
    pub header_timeout: Duration,
    /// How long wxpay waits for a request's body.
    pub body_timeout: Duration,
}

/// An example's `main`: logging from `RUST_LOG`, the command line, the
/// shop, then `serve` (the framework's part) on the listening socket until
/// SIGINT or SIGTERM, when it stops taking connections and finishes the
/// requests in flight; then the reconciler finishes its pass.
pub async fn run<F, Fut>(framework: &str, serve: F) -> Result<(), BoxError>
where
    F: FnOnce(Arc<Shop>, std::net::TcpListener, Shutdown) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let args = <Args as clap::Parser>::parse();
    if let Some(addr) = args.metrics_listen {
        install_metrics(addr)?;
        println!("Prometheus metrics on http://{addr}/metrics");
    }
    let listener = std::net::TcpListener::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let shop = Arc::new(Shop::start(&args, addr, |b| b).await?);
    println!("{framework} shop listening on http://{addr}");
    serve(shop.clone(), listener, Box::pin(signalled())).await?;
    shop.stop().await;
    println!("{framework} shop stopped");
    Ok(())
}

/// Resolves when the server should stop taking requests.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// SIGINT (Ctrl-C) or SIGTERM.
async fn signalled() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be watched");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// What a running shop holds.
pub struct Shop {
    /// The payment service: wxpay's routes under `/pay`, and its sign-in at
    /// `/login`.
    pub payments: Payments,
    /// The embedded simulator (with `--sim`).
    pub sim: Option<SimHandle>,
    /// Timeouts for the HTTP server.
    pub server: ServerSettings,
    catalog: Catalog,
    reconciler: std::sync::Mutex<Option<ReconcilerHandle>>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Some(r) = self.reconciler.get_mut().ok().and_then(Option::take) {
            r.abort();
        }
    }
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
        let store = Arc::new(SqlxStore::connect(&args.database_url).await?);
        let (builder, sim) = if args.sim {
            let sim = SimConfig::test()
                .with_verify_mode(args.sim_verify_mode)
                .with_time_scale(args.sim_time_scale)
                .with_refund_notify_url(format!("http://{addr}/pay/refund-notify"));
            let sim = Simulator::start(sim).await?;
            println!("simulator (WeChat Pay stand-in) at {}", sim.base_url());
            let config = sim
                .merchant_config()
                .with_notify_url(format!("http://{addr}/pay/notify"))
                .with_refund_notify_url(format!("http://{addr}/pay/refund-notify"))
                .with_sign_type(args.sim_sign_type);
            let client = sim.client(config)?;
            let mut builder = Payments::builder(client.config().clone()).client(client);
            if args.api == Api::V3 {
                builder = builder.v3(V3Gateway::new(sim_v3(&sim, addr)?));
            }
            (builder, Some(sim))
        } else {
            // WXPAY_API_VERSION, the APIv2 and / or APIv3 settings; v2
            // refunds need the merchant's client certificate (WXPAY_CLIENT_*).
            (
                shop_settings(args)?.payments_builder(ClientIdentity::from_env()?.as_ref())?,
                None,
            )
        };
        let mut builder = builder
            .store(store.clone())
            .sessions(store)
            .checkout(catalog());
        if let Some(token) = &args.admin_token {
            builder = builder.admin(AdminToken::new(token));
        }
        let payments = tweak(builder).build()?;
        let seconds = |what: &str, s: f64| {
            Duration::try_from_secs_f64(s).map_err(|e| format!("--{what} {s}: {e}"))
        };
        let server = ServerSettings {
            header_timeout: seconds("header-timeout", args.header_timeout)?,
            body_timeout: seconds("body-timeout", args.body_timeout)?,
        };
        let every = Duration::from_secs(args.reconcile_every.max(1));
        // A small shop: every pass also asks about the paid orders' refunds
        // (a refund made in the merchant platform whose notify was lost).
        let reconciler = (payments.reconciler(every).quiet_after(every))
            .refund_watch(Some(Duration::ZERO))
            .spawn();
        Ok(Shop {
            payments,
            sim,
            server,
            catalog: catalog(),
            reconciler: std::sync::Mutex::new(Some(reconciler)),
        })
    }

    /// Stops the reconciler after its pass in progress.
    pub async fn stop(&self) {
        let handle = self.reconciler.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = handle {
            r.stop().await;
        }
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

/// The v3 client of the simulator's merchant, verifying the way the
/// simulator signs: platform certificates downloaded from it (`cert`), the
/// WeChat Pay public key (`pubkey`), or both (`migration`).
fn sim_v3(sim: &SimHandle, addr: SocketAddr) -> Result<v3::Client<BoxTransport>, BoxError> {
    let m = sim.v3_merchant();
    let credential = m
        .credential()
        .ok_or("the simulator generated no merchant key")?;
    let mut config = v3::ClientConfig::new(&m.appid, credential, m.api_v3_key())
        .with_api_base(&m.api_base)
        .with_notify_url(format!("http://{addr}/pay/notify"))
        .with_refund_notify_url(format!("http://{addr}/pay/refund-notify"));
    if m.verify_mode != VerifyMode::Cert {
        config = config.with_public_key(m.public_key_verifier());
    }
    if m.verify_mode != VerifyMode::PubKey {
        config = config.with_certificate_download(true);
    }
    Ok(v3::Client::new(config)?.boxed())
}

fn internal(e: &PaymentsError) -> Reply {
    tracing::error!(error = %e, "request failed");
    (500, json!({ "error": "internal", "message": "try again" }))
}
