//! Starting a shop on a free port and talking to it.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use serde_json::{Value, json};
use wxpay_core::{
    BoxError, OutTradeNo, SignType,
    flow::{Api, Order, PaymentEvents},
};
use wxpay_sim::{SimHandle, VerifyMode};

use crate::shop::{Args, Shop};

/// Which example app serves the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Axum,
    Tower,
    Actix,
}

/// The shop's merchant: API v2 with a sign type, or API v3 with the way
/// the simulator signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merchant {
    V2(SignType),
    V3(VerifyMode),
    /// A v3 merchant configured as a user would against an external
    /// simulator: the simulator generates every key and writes them with
    /// its `wxpay.env` to a keys directory; the shop (without `--sim`)
    /// reads that file (`--env-file`).
    KeysDir(VerifyMode),
}

impl Merchant {
    pub fn api(self) -> Api {
        match self {
            Merchant::V2(_) => Api::V2,
            Merchant::V3(_) | Merchant::KeysDir(_) => Api::V3,
        }
    }

    fn sign_type(self) -> SignType {
        match self {
            Merchant::V2(t) => t,
            Merchant::V3(_) | Merchant::KeysDir(_) => SignType::Md5,
        }
    }

    pub fn verify_mode(self) -> VerifyMode {
        match self {
            Merchant::V2(_) => VerifyMode::Cert,
            Merchant::V3(m) | Merchant::KeysDir(m) => m,
        }
    }
}

impl From<SignType> for Merchant {
    fn from(t: SignType) -> Merchant {
        Merchant::V2(t)
    }
}

/// Counts wxpay's `on_paid` runs per order. The shop itself has no
/// `on_paid` (its VIP days are counted from paid orders), so the tests hook
/// one in to watch the exactly-once fulfilment through every adapter.
#[derive(Clone, Default)]
pub struct Fulfilments(Arc<Mutex<HashMap<String, usize>>>);

impl Fulfilments {
    /// How many times `on_paid` ran for the order.
    pub fn of(&self, out_trade_no: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .get(out_trade_no)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl PaymentEvents for Fulfilments {
    async fn on_paid(&self, order: &Order) -> Result<(), BoxError> {
        // Long enough for concurrent duplicate notifies to overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        *(self.0.lock().unwrap())
            .entry(order.out_trade_no.to_string())
            .or_default() += 1;
        Ok(())
    }
}

/// The shops' header and body timeouts in seconds (their defaults).
const DEFAULT_TIMEOUTS: (f64, f64) = (10.0, 10.0);

/// The shops' admin token in the tests (`WXPAY_SHOP_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// A shop server and its simulator, stopped on drop.
pub struct Running {
    pub base: String,
    pub shop: Arc<Shop>,
    pub fulfilments: Fulfilments,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    /// The simulator the shop was configured against from outside.
    external_sim: Option<SimHandle>,
    /// The shop's `--env-file` (with an external simulator).
    pub env_file: Option<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A fresh SQLite file for one test.
pub fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wxpay-e2e-{}-{}-{}",
        name,
        std::process::id(),
        wxpay_core::types::nonce_str()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("shop.db")
}

pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl Running {
    pub async fn start(
        framework: Framework,
        merchant: impl Into<Merchant>,
        db_path: PathBuf,
    ) -> Running {
        Self::start_with(framework, merchant, sqlite_url(&db_path), 3).await
    }

    pub async fn start_with(
        framework: Framework,
        merchant: impl Into<Merchant>,
        database_url: String,
        unifiedorder_attempts: u32,
    ) -> Running {
        let fulfilments = Fulfilments::default();
        Self::start_counting(
            framework,
            merchant,
            database_url,
            unifiedorder_attempts,
            fulfilments,
        )
        .await
    }

    /// As [`start_with`](Running::start_with), counting `on_paid` runs in
    /// `fulfilments` (which several instances may share). Its reconciler
    /// passes every 30 s (the shops' default): within a test, only what the
    /// test does changes an order.
    pub async fn start_counting(
        framework: Framework,
        merchant: impl Into<Merchant>,
        database_url: String,
        unifiedorder_attempts: u32,
        fulfilments: Fulfilments,
    ) -> Running {
        Self::start_full(
            framework,
            merchant.into(),
            database_url,
            unifiedorder_attempts,
            fulfilments,
            30,
            DEFAULT_TIMEOUTS,
        )
        .await
    }

    /// A shop whose reconciler passes once, at start, and then not for a
    /// day: nothing but the test asks WeChat about its orders (the daily
    /// reconciliation's scenarios need lost notifies to stay lost).
    pub async fn start_quiet(
        framework: Framework,
        merchant: impl Into<Merchant>,
        db_path: PathBuf,
    ) -> Running {
        Self::start_full(
            framework,
            merchant.into(),
            sqlite_url(&db_path),
            3,
            Fulfilments::default(),
            86_400,
            DEFAULT_TIMEOUTS,
        )
        .await
    }

    /// A shop whose reconciler passes every second (and asks about open
    /// orders and refunds quiet for a second): for the scenarios that wait
    /// for it.
    pub async fn start_reconciling(
        framework: Framework,
        merchant: impl Into<Merchant>,
        database_url: String,
    ) -> Running {
        Self::start_full(
            framework,
            merchant.into(),
            database_url,
            3,
            Fulfilments::default(),
            1,
            DEFAULT_TIMEOUTS,
        )
        .await
    }

    /// A shop whose server cuts off slow clients after `header_timeout`
    /// and waits `body_timeout` for a body (both in seconds).
    pub async fn start_timing_out(
        framework: Framework,
        header_timeout: f64,
        body_timeout: f64,
    ) -> Running {
        Self::start_full(
            framework,
            Merchant::V2(SignType::Md5),
            sqlite_url(&temp_db("timeouts")),
            3,
            Fulfilments::default(),
            30,
            (header_timeout, body_timeout),
        )
        .await
    }

    async fn start_full(
        framework: Framework,
        merchant: Merchant,
        database_url: String,
        unifiedorder_attempts: u32,
        fulfilments: Fulfilments,
        reconcile_every: u64,
        (header_timeout, body_timeout): (f64, f64),
    ) -> Running {
        // wxpay's warnings and errors, shown with a failing test's output.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (external_sim, env_file) = match merchant {
            Merchant::KeysDir(mode) => {
                let (sim, file) = external_simulator(mode, addr).await;
                (Some(sim), Some(file))
            }
            _ => (None, None),
        };
        let args = Args {
            listen: addr,
            sim: external_sim.is_none(),
            database_url,
            sim_sign_type: merchant.sign_type(),
            sim_time_scale: 0.01,
            admin_token: Some(ADMIN_TOKEN.into()),
            reconcile_every,
            api: merchant.api(),
            sim_verify_mode: merchant.verify_mode(),
            header_timeout,
            body_timeout,
            env_file: env_file.clone(),
            metrics_listen: None,
        };
        let shop = Shop::start(&args, addr, |b| {
            b.sync_interval(Duration::from_millis(50))
                // the simulator's 5 minutes, scaled
                .close_after(Duration::from_secs(3))
                .retry_backoff(Duration::from_millis(5))
                .unifiedorder_attempts(unifiedorder_attempts)
                .events(fulfilments.clone())
        })
        .await
        .expect("shop starts");
        let shop = Arc::new(shop);
        let server = match framework {
            Framework::Axum => {
                let shop = shop.clone();
                tokio::spawn(async move {
                    crate::axum_app::serve(shop, listener, Box::pin(std::future::pending()))
                        .await
                        .unwrap();
                })
            }
            Framework::Actix => {
                // actix-web runs its own system (and workers) on a thread.
                let shop = shop.clone();
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    actix_web::rt::System::new().block_on(async move {
                        let server = crate::actix_app::serve(
                            shop,
                            listener,
                            Box::pin(std::future::pending()),
                        );
                        tokio::select! {
                            r = server => r.unwrap(),
                            _ = rx => {}
                        }
                    })
                });
                tokio::spawn(async move {
                    // dropping `tx` (when this task is aborted) stops the server
                    let _keep = tx;
                    std::future::pending::<()>().await
                })
            }
            Framework::Tower => {
                let shop = shop.clone();
                tokio::spawn(async move {
                    crate::tower_app::serve(shop, listener, Box::pin(std::future::pending()))
                        .await
                        .unwrap();
                })
            }
        };
        Running {
            base: format!("http://{addr}"),
            shop,
            fulfilments,
            http: reqwest::Client::new(),
            server,
            external_sim,
            env_file,
        }
    }

    pub fn sim(&self) -> &SimHandle {
        (self.shop.sim.as_ref())
            .or(self.external_sim.as_ref())
            .expect("started with a simulator")
    }

    /// wx.login on the simulator, then `POST /login`.
    pub async fn login(&self, openid: &str) -> String {
        let code = self.sim().login(openid).await;
        let (status, body) = self
            .post_json("/login", None, json!({ "code": code }))
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST /pay/orders` for `quantity` VIP months; returns the answer.
    pub async fn order(&self, token: &str, quantity: u32) -> Value {
        let (status, body) = self
            .post_json(
                "/pay/orders",
                Some(token),
                json!({ "sku": "vip-month", "quantity": quantity, "total_fee": 1 }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// The stored order, straight from the store.
    pub async fn stored(&self, out_trade_no: &str) -> Order {
        self.shop
            .payments
            .order(&OutTradeNo::new(out_trade_no).unwrap())
            .await
            .unwrap()
    }

    /// Posts `body` to the shop's notify route: the status, whether the
    /// response says `Connection: close`, and the body.
    pub async fn post_notify(&self, body: Vec<u8>) -> (u16, bool, String) {
        let resp = self
            .http
            .post(format!("{}/pay/notify", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let closes = resp
            .headers()
            .get(reqwest::header::CONNECTION)
            .is_some_and(|v| v == "close");
        (status, closes, resp.text().await.unwrap())
    }

    /// `GET /pay/admin/orders/{no}` with the admin token.
    pub async fn admin_order(&self, out_trade_no: &str) -> Value {
        let (status, body) = self
            .get_json(
                &format!("/pay/admin/orders/{out_trade_no}"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls the admin view of an order until `done` holds of it (the
    /// reconciler runs every second in the tests).
    pub async fn wait_admin(
        &self,
        out_trade_no: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.admin_order(out_trade_no).await;
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {out_trade_no}: never {what}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A signed-in user's paid order of `quantity` VIP months: checkout, the
    /// user pays at the simulator, the notify arrives.
    pub async fn paid_order(&self, token: &str, quantity: u32) -> String {
        let order = self.order(token, quantity).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        self.sim().pay(&no).await.unwrap();
        self.wait_state(token, &no, "PAID").await;
        no
    }

    pub async fn vip_days(&self, token: &str) -> i64 {
        let (status, me) = self.get_json("/me", Some(token)).await;
        assert_eq!(status, 200, "{me}");
        me["vip_days"].as_i64().unwrap()
    }

    /// Polls `GET /pay/orders/{no}` (which syncs stale orders) until `state`.
    pub async fn wait_state(&self, token: &str, out_trade_no: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self
                .get_json(&format!("/pay/orders/{out_trade_no}"), Some(token))
                .await;
            assert_eq!(status, 200, "{body}");
            if body["state"] == state {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {out_trade_no} never became {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A simulator that generated its own v3 keys and wrote them, with its
/// `wxpay.env`, to a fresh keys directory; and that file completed with
/// the shop's notify URLs, as a user following the README would.
async fn external_simulator(mode: VerifyMode, shop: std::net::SocketAddr) -> (SimHandle, PathBuf) {
    let dir = temp_db("keys").with_file_name("sim-keys");
    let sim = wxpay_sim::Simulator::start(
        wxpay_sim::SimConfig::test()
            .with_generated_v3_keys()
            .with_verify_mode(mode)
            .with_keys_dir(&dir)
            .with_time_scale(0.01)
            .with_refund_notify_url(format!("http://{shop}/pay/refund-notify")),
    )
    .await
    .expect("simulator starts");
    let mut env =
        std::fs::read_to_string(dir.join("wxpay.env")).expect("the simulator wrote wxpay.env");
    env.push_str(&format!(
        "WXPAY_NOTIFY_URL=http://{shop}/pay/notify\nWXPAY_REFUND_NOTIFY_URL=http://{shop}/pay/refund-notify\n"
    ));
    let file = dir.join("shop.env");
    std::fs::write(&file, env).unwrap();
    (sim, file)
}
