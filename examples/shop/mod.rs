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
use sqlx::{AnyPool, Row, any::AnyPoolOptions};
use wxpay_core::{
    BoxError, Config, Fen, OutTradeNo, SignType,
    flow::{
        Checkout, CheckoutRequest, Order, OrderDraft, OrderStore, PaymentEvents, Payments,
        PaymentsBuilder, Rejection,
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
    /// With `--sim`: the merchant's sign type (`MD5` or `HMAC-SHA256`);
    /// otherwise `WXPAY_SIGN_TYPE` applies.
    #[arg(long, default_value = "MD5")]
    pub sim_sign_type: SignType,
    /// With `--sim`: how much faster than real time the simulator runs
    /// (notify retries, expiry rules).
    #[arg(long, default_value_t = 0.01)]
    pub sim_time_scale: f64,
}

/// Logging from `RUST_LOG`, and the listening socket.
pub fn init(args: &Args) -> std::io::Result<std::net::TcpListener> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    std::net::TcpListener::bind(args.listen)
}

/// What a running shop holds.
pub struct Shop {
    /// The payment service mounted under `/pay`.
    pub payments: Payments,
    db: Db,
    /// The embedded simulator (with `--sim`).
    pub sim: Option<SimHandle>,
}

/// An HTTP answer in framework-free form: status and JSON.
pub type Reply = (u16, Value);

impl Shop {
    /// Opens storage, configures WeChat Pay (from `WXPAY_*` or the embedded
    /// simulator) and builds the payment service; `addr` is where this
    /// server listens (the simulator delivers notifies there).
    pub async fn start(args: &Args, addr: SocketAddr) -> Result<Shop, BoxError> {
        Shop::start_with(args, addr, |b| b).await
    }

    /// [`Shop::start`] with a last say over the payment service's settings
    /// (the end-to-end tests shorten its intervals).
    pub async fn start_with(
        args: &Args,
        addr: SocketAddr,
        tweak: impl FnOnce(PaymentsBuilder) -> PaymentsBuilder,
    ) -> Result<Shop, BoxError> {
        let (config, sim) = if args.sim {
            let sim_config = SimConfig::test().with_time_scale(args.sim_time_scale);
            let sim = Simulator::start(sim_config).await?;
            let config = sim
                .merchant_config()
                .with_notify_url(format!("http://{addr}/pay/notify"))
                .with_refund_notify_url(format!("http://{addr}/pay/refund-notify"))
                .with_sign_type(args.sim_sign_type);
            println!("simulator (WeChat Pay stand-in) at {}", sim.base_url());
            (config, Some(sim))
        } else {
            (Config::from_env()?, None)
        };
        let store: Arc<dyn OrderStore> = Arc::new(SqlxStore::connect(&args.database_url).await?);
        let db = Db::open(&args.database_url).await?;
        let payments = tweak(
            Payments::builder(config)
                .store(store)
                .checkout(ShopCheckout { db: db.clone() })
                .events(Grants { db: db.clone() }),
        )
        .build()?;
        payments.reconciler(Duration::from_secs(30)).spawn();
        Ok(Shop { payments, db, sim })
    }

    /// `POST /login {"code"}`: `wx.login`'s code → jscode2session → a bearer token.
    pub async fn login(&self, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        struct Login {
            code: String,
        }
        let Ok(Login { code }) = serde_json::from_slice(body) else {
            return (
                400,
                json!({"error": "bad_request", "message": "expected {\"code\"}"}),
            );
        };
        let session = match self.payments.login(&code).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "login failed");
                return (
                    401,
                    json!({"error": "unauthorized", "message": "login failed"}),
                );
            }
        };
        let token = nonce_str();
        match self.db.put_session(&token, &session.openid).await {
            Ok(()) => (200, json!({ "token": token })),
            Err(e) => {
                tracing::error!(error = %e, "storing the session failed");
                (500, json!({"error": "internal", "message": "try again"}))
            }
        }
    }

    /// `GET /me` with `Authorization: Bearer …`.
    pub async fn me(&self, authorization: Option<&str>) -> Reply {
        let Some(openid) = self.db.openid(authorization).await else {
            return (
                401,
                json!({"error": "unauthorized", "message": "sign in first"}),
            );
        };
        match self.db.vip_days(&openid).await {
            Ok(days) => (200, json!({ "openid": openid, "vip_days": days })),
            Err(e) => {
                tracing::error!(error = %e, "reading grants failed");
                (500, json!({"error": "internal", "message": "try again"}))
            }
        }
    }
}

/// Prices orders from the catalog; the client's amount is never read.
struct ShopCheckout {
    db: Db,
}

#[async_trait]
impl Checkout for ShopCheckout {
    async fn identify(&self, req: &CheckoutRequest) -> Result<Option<String>, Rejection> {
        Ok(self.db.openid(req.header("authorization")).await)
    }

    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        #[derive(Deserialize)]
        struct Buy {
            sku: String,
            #[serde(default = "one")]
            quantity: u32,
        }
        fn one() -> u32 {
            1
        }
        let openid = self
            .db
            .openid(req.header("authorization"))
            .await
            .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        let buy: Buy = req.json()?;
        if buy.sku != "vip-month" {
            return Err(Rejection::bad_request(format!("unknown sku {:?}", buy.sku)));
        }
        if !(1..=12).contains(&buy.quantity) {
            return Err(Rejection::bad_request("quantity must be 1 to 12"));
        }
        let total = Fen(VIP_MONTH_FEN * u64::from(buy.quantity));
        Ok(
            OrderDraft::jsapi(openid.clone(), "wxpay shop-VIP membership", total)
                .with_owner(openid)
                .with_attach(format!("vip-month:{}", buy.quantity)),
        )
    }
}

/// Grants VIP days once per paid order: the grant row is keyed by
/// `out_trade_no`, so a repeated `on_paid` changes nothing.
struct Grants {
    db: Db,
}

#[async_trait]
impl PaymentEvents for Grants {
    async fn on_paid(&self, order: &Order) -> Result<(), BoxError> {
        let owner = order.owner.as_deref().ok_or("order without owner")?;
        let quantity: i64 = order
            .attach
            .as_deref()
            .and_then(|a| a.strip_prefix("vip-month:"))
            .and_then(|q| q.parse().ok())
            .ok_or("order without a vip-month quantity")?;
        self.db
            .grant(&order.out_trade_no, owner, quantity * VIP_DAYS)
            .await?;
        Ok(())
    }
}

/// The shop's own tables, beside wxpay's orders in the same database.
#[derive(Clone)]
struct Db {
    pool: AnyPool,
    postgres: bool,
}

impl Db {
    async fn open(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite");
        let pool = AnyPoolOptions::new()
            .max_connections(5)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // per connection: wait for the one writer instead of
                        // failing, and let readers run beside it
                        for pragma in [
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let db = Db {
            pool,
            postgres: url.starts_with("postgres"),
        };
        for ddl in [
            "CREATE TABLE IF NOT EXISTS shop_sessions (token VARCHAR(64) PRIMARY KEY, openid VARCHAR(128) NOT NULL)",
            "CREATE TABLE IF NOT EXISTS shop_grants (out_trade_no VARCHAR(32) PRIMARY KEY, openid VARCHAR(128) NOT NULL, days BIGINT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&db.pool).await?;
        }
        Ok(db)
    }

    /// `?` placeholders, rewritten to `$n` for PostgreSQL.
    fn sql(&self, q: &str) -> String {
        if !self.postgres {
            return q.to_owned();
        }
        let mut n = 0;
        q.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    async fn put_session(&self, token: &str, openid: &str) -> Result<(), sqlx::Error> {
        sqlx::query(&self.sql("INSERT INTO shop_sessions (token, openid) VALUES (?, ?)"))
            .bind(token)
            .bind(openid)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    async fn openid(&self, authorization: Option<&str>) -> Option<String> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let row = sqlx::query(&self.sql("SELECT openid FROM shop_sessions WHERE token = ?"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .ok()??;
        row.try_get("openid").ok()
    }

    async fn grant(&self, no: &OutTradeNo, openid: &str, days: i64) -> Result<(), sqlx::Error> {
        let exists = sqlx::query(&self.sql("SELECT days FROM shop_grants WHERE out_trade_no = ?"))
            .bind(no.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            sqlx::query(
                &self.sql("INSERT INTO shop_grants (out_trade_no, openid, days) VALUES (?, ?, ?)"),
            )
            .bind(no.as_str())
            .bind(openid)
            .bind(days)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn vip_days(&self, openid: &str) -> Result<i64, sqlx::Error> {
        let rows = sqlx::query(&self.sql("SELECT days FROM shop_grants WHERE openid = ?"))
            .bind(openid)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get::<i64, _>("days")).sum()
    }
}
