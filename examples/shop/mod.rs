//! The small mini-program backend shared by `axum_shop`, `actix_shop` and
//! `tower_shop`: command line, storage, catalog, login and VIP grants. Only
//! the HTTP glue differs between the three examples.
//!
//! Everything it keeps (orders, sessions, grants) lives in `DATABASE_URL`
//! (a SQLite file in the working directory when unset; `postgres://` and
//! `mysql://` work too, so several instances can share one database).

#![allow(dead_code)] // each example uses a different subset

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{AnyPool, Row};
use wxpay_core::{
    BoxError, Config, Fen, SignType,
    flow::{
        Checkout, CheckoutRequest, Order, OrderDraft, PaymentEvents, Payments, PaymentsBuilder,
        Rejection,
    },
    types::nonce_str,
};
use wxpay_sim::{SimConfig, SimHandle, Simulator};
use wxpay_sqlx::SqlxStore;

/// `vip-month`: 9.98 yuan, 30 VIP days per unit.
pub const VIP_MONTH_FEN: u64 = 998;
/// Days granted per unit.
pub const VIP_DAYS: i64 = 30;

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
    let shop = Shop::start(&args, listener.local_addr()?, |b| b).await?;
    println!(
        "{framework} shop listening on http://{}",
        listener.local_addr()?
    );
    Ok(serve(Arc::new(shop), listener).await?)
}

/// What a running shop holds.
pub struct Shop {
    /// The payment service mounted under `/pay`.
    pub payments: Payments,
    pub(crate) db: Db,
    /// The embedded simulator (with `--sim`).
    pub sim: Option<SimHandle>,
}

/// An HTTP answer in framework-free form: status and JSON.
pub type Reply = (u16, Value);

fn error(status: u16, code: &str, message: &str) -> Reply {
    (status, json!({ "error": code, "message": message }))
}

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
        // wxpay's orders first: it also puts a SQLite file in WAL mode.
        let store = Arc::new(SqlxStore::connect(&args.database_url).await?);
        let db = Db::open(&args.database_url).await?;
        let builder = Payments::builder(config)
            .store(store)
            .checkout(ShopCheckout(db.clone()))
            .events(Grants(db.clone()));
        let payments = tweak(builder).build()?;
        payments.reconciler(Duration::from_secs(30)).spawn();
        Ok(Shop { payments, db, sim })
    }

    /// `POST /login {"code"}`: `wx.login`'s code → jscode2session → a bearer token.
    pub async fn login(&self, body: &[u8]) -> Reply {
        let json = serde_json::from_slice::<Value>(body).unwrap_or_default();
        let Some(code) = json["code"].as_str() else {
            return error(400, "bad_request", "expected {\"code\"}");
        };
        let session = match self.payments.login(code).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "login failed");
                return error(401, "unauthorized", "login failed");
            }
        };
        let token = nonce_str();
        match self.db.put_session(&token, &session.openid).await {
            Ok(()) => (200, json!({ "token": token })),
            Err(e) => internal(&e),
        }
    }

    /// `GET /me` with `Authorization: Bearer …`.
    pub async fn me(&self, authorization: Option<&str>) -> Reply {
        let Some(openid) = self.db.openid(authorization).await else {
            return error(401, "unauthorized", "sign in first");
        };
        match self.db.vip_days(&openid).await {
            Ok(days) => (200, json!({ "openid": openid, "vip_days": days })),
            Err(e) => internal(&e),
        }
    }
}

fn internal(e: &sqlx::Error) -> Reply {
    tracing::error!(error = %e, "database error");
    error(500, "internal", "try again")
}

/// Prices orders from the catalog; the client's amount is never read.
struct ShopCheckout(Db);

#[async_trait]
impl Checkout for ShopCheckout {
    async fn identify(&self, req: &CheckoutRequest) -> Result<Option<String>, Rejection> {
        Ok(self.0.openid(req.header("authorization")).await)
    }

    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        #[derive(Deserialize)]
        struct Buy {
            sku: String,
            quantity: Option<u32>,
        }
        let openid = self.identify(req).await?;
        let openid = openid.ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        let buy: Buy = req.json()?;
        let quantity = buy.quantity.unwrap_or(1);
        if buy.sku != "vip-month" {
            return Err(Rejection::bad_request(format!("unknown sku {:?}", buy.sku)));
        }
        if !(1..=12).contains(&quantity) {
            return Err(Rejection::bad_request("quantity must be 1 to 12"));
        }
        let total = Fen(VIP_MONTH_FEN * u64::from(quantity));
        Ok(
            OrderDraft::jsapi(openid.clone(), "wxpay shop-VIP membership", total)
                .with_owner(openid)
                .with_attach(format!("vip-month:{quantity}")),
        )
    }
}

/// Grants VIP days once per paid order: the grant row is keyed by
/// `out_trade_no`, so a repeated `on_paid` changes nothing.
pub(crate) struct Grants(pub(crate) Db);

#[async_trait]
impl PaymentEvents for Grants {
    async fn on_paid(&self, order: &Order) -> Result<(), BoxError> {
        let owner = order.owner.as_deref().ok_or("order without owner")?;
        let quantity: i64 = (order.attach.as_deref())
            .and_then(|a| a.strip_prefix("vip-month:")?.parse().ok())
            .ok_or("order without a vip-month quantity")?;
        let sql = self
            .0
            .sql("INSERT INTO shop_grants (out_trade_no, openid, days) VALUES ($1, $2, $3)");
        let insert = (sqlx::query(&sql).bind(order.out_trade_no.as_str()))
            .bind(owner)
            .bind(quantity * VIP_DAYS);
        match insert.execute(&self.0.pool).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(()), // granted before
            done => Ok(done.map(drop)?),
        }
    }
}

/// The shop's own tables, beside wxpay's orders in the same database.
#[derive(Clone)]
pub(crate) struct Db {
    pool: AnyPool,
    mysql: bool,
}

impl Db {
    async fn open(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let mut options = sqlx::any::AnyPoolOptions::new().max_connections(5);
        if url.starts_with("sqlite") {
            // The store put the file in WAL mode; commit as it does (a sync
            // per checkpoint, not per commit, still in commit order).
            options = options.after_connect(|c, _| {
                let pragma = sqlx::query("PRAGMA synchronous = NORMAL");
                Box::pin(async move { pragma.execute(c).await.map(drop) })
            });
        }
        let pool = options.connect(url).await?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS shop_sessions (token VARCHAR(64) PRIMARY KEY, openid VARCHAR(128) NOT NULL)",
            "CREATE TABLE IF NOT EXISTS shop_grants (out_trade_no VARCHAR(32) PRIMARY KEY, openid VARCHAR(128) NOT NULL, days BIGINT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&pool).await?;
        }
        let mysql = url.starts_with("mysql");
        Ok(Db { pool, mysql })
    }

    /// `$n` placeholders (PostgreSQL, SQLite), rewritten to `?` for MySQL.
    fn sql(&self, q: &str) -> String {
        if !self.mysql {
            return q.to_owned();
        }
        let mut parts = q.split('$');
        let mut sql = parts.next().unwrap_or_default().to_owned();
        for rest in parts {
            sql.push('?');
            sql += rest.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        sql
    }

    async fn put_session(&self, token: &str, openid: &str) -> Result<(), sqlx::Error> {
        let sql = self.sql("INSERT INTO shop_sessions (token, openid) VALUES ($1, $2)");
        let insert = sqlx::query(&sql).bind(token).bind(openid);
        insert.execute(&self.pool).await.map(drop)
    }

    async fn openid(&self, authorization: Option<&str>) -> Option<String> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let sql = self.sql("SELECT openid FROM shop_sessions WHERE token = $1");
        let row = sqlx::query(&sql)
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .ok()??;
        row.try_get("openid").ok()
    }

    async fn vip_days(&self, openid: &str) -> Result<i64, sqlx::Error> {
        let sql = self.sql("SELECT days FROM shop_grants WHERE openid = $1");
        let rows = sqlx::query(&sql).bind(openid).fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<i64, _>("days")).sum()
    }
}
