//! The simulator's shared state and the actions the control API performs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use rand::{Rng, distributions::Alphanumeric};
use tokio::{task::AbortHandle, time::Instant};
use wxpay_core::{Fen, Params, RefundStatus, SignType, TradeState, types::format_beijing};

use crate::{
    SimError, api, api_v3,
    keys::V3Keys,
    model::{
        Faults, NotifyAttempt, OutsideRefund, PayResult, Protocol, RefundResult, RefundSource,
        SimConfig, SimOrder, SimRefund,
    },
    notify::{self, NotifyJob},
    persist::Persister,
};

/// The 2-hour prepay_id lifetime.
pub(crate) const PREPAY_TTL: Duration = Duration::from_secs(2 * 3600);
/// closeorder is refused within 5 minutes of creation.
pub(crate) const CLOSE_MIN_AGE: Duration = Duration::from_secs(5 * 60);
/// Login codes live 5 minutes.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// The shortest a scaled login-code lifetime gets (real time).
pub(crate) const CODE_TTL_FLOOR: Duration = Duration::from_secs(10);

pub(crate) struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) v3: V3Keys,
    pub(crate) state: Mutex<State>,
    pub(crate) http: reqwest::Client,
    tasks: Mutex<Vec<AbortHandle>>,
    /// [`SimConfig::state_file`].
    pub(crate) persist: Option<Persister>,
    /// `http://ADDR` once the listener is bound (the fallback base of v3
    /// `download_url`s when a request has no `Host`).
    pub(crate) base_url: std::sync::OnceLock<String>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) orders: HashMap<String, Order>,
    /// prepay_id → out_trade_no (also for expired prepay ids).
    pub(crate) prepay_index: HashMap<String, String>,
    /// transaction_id → out_trade_no.
    pub(crate) transaction_index: HashMap<String, String>,
    /// out_refund_no → out_trade_no.
    pub(crate) refund_index: HashMap<String, String>,
    /// refund_id → out_refund_no.
    pub(crate) refund_id_index: HashMap<String, String>,
    pub(crate) codes: HashMap<String, LoginCode>,
    pub(crate) faults: Faults,
    pub(crate) notifies: Vec<NotifyAttempt>,
    /// Behind every fault rate ([`Faults::seed`] reseeds it).
    pub(crate) fault_rng: Option<rand::rngs::StdRng>,
    /// v3 bill download tokens (not kept in the state file).
    pub(crate) bill_tokens: HashMap<String, crate::bill::BillToken>,
}

pub(crate) struct LoginCode {
    pub(crate) openid: String,
    pub(crate) unionid: Option<String>,
    pub(crate) minted: Instant,
    pub(crate) used: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum OrderState {
    NotPay,
    Success,
    Closed,
    PayError,
    Refund,
}

impl OrderState {
    pub(crate) fn trade_state(self) -> TradeState {
        match self {
            OrderState::NotPay => TradeState::NotPay,
            OrderState::Success => TradeState::Success,
            OrderState::Closed => TradeState::Closed,
            OrderState::PayError => TradeState::PayError,
            OrderState::Refund => TradeState::Refund,
        }
    }

    pub(crate) fn is_paid(self) -> bool {
        matches!(self, OrderState::Success | OrderState::Refund)
    }
}

pub(crate) struct Order {
    pub(crate) out_trade_no: String,
    /// The unifiedorder request without `nonce_str`, `sign` and empty
    /// values: re-entry must repeat it exactly.
    pub(crate) request: Params,
    pub(crate) sign_type: SignType,
    pub(crate) created: Instant,
    pub(crate) prepay_id: String,
    pub(crate) prepay_issued: Instant,
    pub(crate) code_url: Option<String>,
    pub(crate) state: OrderState,
    pub(crate) transaction_id: Option<String>,
    pub(crate) time_end: Option<String>,
    pub(crate) payer_openid: Option<String>,
    pub(crate) refunds: Vec<Refund>,
    /// The API that created it.
    pub(crate) protocol: Protocol,
    /// v3 orders: the prepay body, which re-entry must repeat.
    pub(crate) v3_request: Option<serde_json::Value>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) paid_at: Option<DateTime<Utc>>,
}

impl Order {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.request.non_empty(name)
    }

    pub(crate) fn total_fee(&self) -> u64 {
        self.field("total_fee")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn trade_type(&self) -> &str {
        self.field("trade_type").unwrap_or("JSAPI")
    }

    pub(crate) fn openid(&self) -> Option<&str> {
        self.payer_openid.as_deref().or(self.field("openid"))
    }

    /// Whether the order is past its `time_expire` (v2 `yyyyMMddHHmmss`, v3
    /// RFC 3339, raised to creation + 1 minute like WeChat does).
    pub(crate) fn expired(&self) -> bool {
        let now = Utc::now();
        if let Some(t) = self
            .field("time_expire")
            .and_then(|exp| wxpay_core::types::parse_beijing("time_expire", exp).ok())
        {
            return now > t;
        }
        let v3 = self
            .v3_request
            .as_ref()
            .and_then(|v| v.get("time_expire"))
            .and_then(|v| v.as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        match v3 {
            Some(t) => {
                now > t
                    .with_timezone(&Utc)
                    .max(self.created_at + chrono::Duration::minutes(1))
            }
            None => false,
        }
    }

    /// What its refunds have used up: all but the closed ones.
    pub(crate) fn refunded(&self) -> u64 {
        self.refunds
            .iter()
            .filter(|r| r.status != RefundStatus::RefundClose)
            .map(|r| r.refund_fee)
            .sum()
    }

    fn snapshot(&self) -> SimOrder {
        SimOrder {
            out_trade_no: self.out_trade_no.clone(),
            prepay_id: self.prepay_id.clone(),
            trade_type: self.trade_type().to_owned(),
            trade_state: self.state.trade_state(),
            total_fee: Fen(self.total_fee()),
            openid: self.openid().map(str::to_owned),
            product_id: self.field("product_id").map(str::to_owned),
            attach: self.field("attach").map(str::to_owned),
            body: self.field("body").unwrap_or_default().to_owned(),
            notify_url: self.field("notify_url").unwrap_or_default().to_owned(),
            sign_type: self.sign_type,
            protocol: self.protocol,
            transaction_id: self.transaction_id.clone(),
            time_end: self.time_end.clone(),
            refunds: self.refunds.iter().map(Refund::snapshot).collect(),
        }
    }
}

pub(crate) struct Refund {
    pub(crate) out_refund_no: String,
    pub(crate) refund_id: String,
    pub(crate) total_fee: u64,
    pub(crate) refund_fee: u64,
    pub(crate) status: RefundStatus,
    pub(crate) notify_url: Option<String>,
    pub(crate) success_time: Option<String>,
    pub(crate) refund_account: String,
    /// The final status it reaches after the refund delay.
    pub(crate) outcome: RefundResult,
    pub(crate) source: RefundSource,
    /// Its notify format.
    pub(crate) protocol: Protocol,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) success_at: Option<DateTime<Utc>>,
}

impl Refund {
    fn snapshot(&self) -> SimRefund {
        SimRefund {
            out_refund_no: self.out_refund_no.clone(),
            refund_id: self.refund_id.clone(),
            refund_fee: Fen(self.refund_fee),
            refund_status: self.status.clone(),
            notify_url: self.notify_url.clone(),
            success_time: self.success_time.clone(),
            refund_request_source: self.source,
            protocol: self.protocol,
        }
    }
}

/// Which order a control request means.
#[derive(Debug, Clone)]
pub(crate) enum OrderRef {
    OutTradeNo(String),
    PrepayId(String),
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Result<Self, SimError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let v3 = V3Keys::load(&config).map_err(SimError::Keys)?;
        let mut state = State::default();
        let persist = config.state_file.clone().map(Persister::new);
        if let Some(p) = &persist {
            p.load(&mut state).map_err(|source| SimError::StateFile {
                path: p.path.clone(),
                source,
            })?;
            tracing::info!(path = %p.path.display(), orders = state.orders.len(), "state file loaded");
        }
        Ok(Self {
            config,
            v3,
            state: Mutex::new(state),
            http,
            tasks: Mutex::new(Vec::new()),
            persist,
            base_url: std::sync::OnceLock::new(),
        })
    }

    /// Writes the state file now if the state changed.
    pub(crate) fn save(&self) -> Result<(), SimError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        let st = self.lock();
        p.save(&st).map_err(|source| SimError::StateFile {
            path: p.path.clone(),
            source,
        })
    }

    /// [`Sim::save`], a failure logged rather than returned.
    pub(crate) fn save_logged(&self) {
        if let Some(p) = &self.persist {
            p.save_logged(&self.lock());
        }
    }

    /// Starts what a loaded state needs: the periodic save, and the refund
    /// delay of refunds still `PROCESSING`.
    pub(crate) fn resume(self: &Arc<Self>) {
        if self.persist.is_none() {
            return;
        }
        let processing: Vec<(String, String)> = {
            let st = self.lock();
            st.orders
                .values()
                .flat_map(|o| {
                    o.refunds
                        .iter()
                        .filter(|r| r.status == RefundStatus::Processing)
                        .map(|r| (o.out_trade_no.clone(), r.out_refund_no.clone()))
                })
                .collect()
        };
        for (out_trade_no, out_refund_no) in processing {
            self.schedule_refund(out_trade_no, out_refund_no);
        }
        let sim = Arc::clone(self);
        self.spawn(async move {
            loop {
                tokio::time::sleep(crate::persist::SAVE_EVERY).await;
                sim.save_logged();
            }
        });
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn scaled(&self, real: Duration) -> Duration {
        self.config.scaled(real)
    }

    /// Spawns a background task that dies with the simulator.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(fut).abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    pub(crate) fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            t.abort();
        }
    }

    pub(crate) fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        let mut state = self.lock();
        if let Some(seed) = faults.seed {
            state.fault_rng = Some(rand::SeedableRng::seed_from_u64(seed));
        }
        state.faults = faults;
    }

    /// True with probability `rate` (at most 1.0; anything not above 0.0,
    /// NaN included, never), from the fault generator: a rate of 0 or 1
    /// draws nothing, so it never shifts the sequence of the others.
    pub(crate) fn roll(&self, rate: f64) -> bool {
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        let mut state = self.lock();
        let rng = state
            .fault_rng
            .get_or_insert_with(rand::SeedableRng::from_entropy);
        rng.gen_bool(rate)
    }

    /// Whether this call should fail with a simulated system error.
    pub(crate) fn roll_system_error(&self) -> bool {
        let rate = self.lock().faults.system_error_rate;
        self.roll(rate)
    }

    /// Whether this answer should be signed with a wrong key.
    pub(crate) fn roll_bad_signature(&self) -> bool {
        let rate = self.lock().faults.bad_answer_signature_rate;
        self.roll(rate)
    }

    pub(crate) fn login(&self, openid: &str, unionid: Option<String>) -> String {
        let code = format!("0{}", random_alnum(31));
        self.lock().codes.insert(
            code.clone(),
            LoginCode {
                openid: openid.to_owned(),
                unionid,
                minted: Instant::now(),
                used: false,
            },
        );
        code
    }

    pub(crate) fn order(&self, out_trade_no: &str) -> Option<SimOrder> {
        self.lock().orders.get(out_trade_no).map(Order::snapshot)
    }

    pub(crate) fn notifies(&self) -> Vec<NotifyAttempt> {
        self.lock().notifies.clone()
    }

    /// The user pays (or fails to pay) the order.
    pub(crate) fn pay(
        self: &Arc<Self>,
        which: OrderRef,
        result: PayResult,
        payer: Option<String>,
    ) -> Result<SimOrder, SimError> {
        let (snapshot, job) = {
            let mut st = self.lock();
            let out_trade_no = match &which {
                OrderRef::OutTradeNo(n) => n.clone(),
                OrderRef::PrepayId(p) => st
                    .prepay_index
                    .get(p)
                    .cloned()
                    .ok_or_else(|| SimError::NoSuchOrder(p.clone()))?,
            };
            let prepay_ttl = self.scaled(PREPAY_TTL);
            let order = st
                .orders
                .get_mut(&out_trade_no)
                .ok_or_else(|| SimError::NoSuchOrder(out_trade_no.clone()))?;
            if let OrderRef::PrepayId(p) = &which
                && *p != order.prepay_id
            {
                return Err(SimError::PrepayExpired(p.clone()));
            }
            if order.state != OrderState::NotPay {
                return Err(SimError::NotPayable {
                    out_trade_no,
                    trade_state: order.state.trade_state(),
                });
            }
            if order.prepay_issued.elapsed() > prepay_ttl {
                return Err(SimError::PrepayExpired(order.prepay_id.clone()));
            }
            if order.expired() {
                return Err(SimError::OrderExpired(out_trade_no));
            }
            if order.payer_openid.is_none() && order.field("openid").is_none() {
                order.payer_openid =
                    Some(payer.unwrap_or_else(|| format!("o{}", random_alnum(27))));
            }
            let job = match result {
                PayResult::PayError => {
                    order.state = OrderState::PayError;
                    None
                }
                PayResult::Success => {
                    order.state = OrderState::Success;
                    let tid = transaction_id();
                    order.transaction_id = Some(tid.clone());
                    let now = Utc::now();
                    order.time_end = Some(format_beijing(now));
                    order.paid_at = Some(now);
                    let job = match order.protocol {
                        Protocol::V2 => notify::payment_job(&self.config, order),
                        Protocol::V3 => api_v3::payment_notify_job(self, order),
                    };
                    st.transaction_index.insert(tid, out_trade_no.clone());
                    Some(job)
                }
            };
            let order = &st.orders[&out_trade_no];
            tracing::info!(
                out_trade_no = %order.out_trade_no,
                trade_state = %order.state.trade_state(),
                "user paid"
            );
            (order.snapshot(), job)
        };
        if let Some(job) = job {
            let sim = Arc::clone(self);
            self.spawn(notify::deliver(sim, job));
        }
        Ok(snapshot)
    }

    /// Issues a new platform certificate (new key, new serial), which signs
    /// from now on; the previous ones stay listed for the rotation grace.
    pub(crate) async fn rotate_certificate(&self) -> Result<crate::CertificateRotation, SimError> {
        let new = tokio::task::spawn_blocking(|| crate::keys::PlatformCert::generate(None))
            .await
            .map_err(|_| SimError::Keys(crate::keys::KeyError::Generate))?
            .map_err(SimError::Keys)?;
        let grace = self.scaled(self.config.v3.rotation_grace);
        let (previous_serial_no, serial_no) = self.v3.rotate(new, grace);
        tracing::info!(%previous_serial_no, %serial_no, "platform certificate rotated");
        Ok(crate::CertificateRotation {
            previous_serial_no,
            serial_no,
        })
    }

    /// A refund on the merchant platform; a new one is scheduled like an
    /// API refund. Answers its state after scheduling, so a refund with no
    /// delay is final in the answer.
    pub(crate) fn refund_outside(
        self: &Arc<Self>,
        req: OutsideRefund,
    ) -> Result<SimRefund, SimError> {
        let (out_refund_no, created) = {
            let mut st = self.lock();
            if !st.orders.contains_key(&req.out_trade_no) {
                return Err(SimError::NoSuchOrder(req.out_trade_no));
            }
            let (i, created) = api::refund_outside(&mut st, &req)?;
            let refund = &st.orders[&req.out_trade_no].refunds[i];
            tracing::info!(
                out_trade_no = %req.out_trade_no,
                out_refund_no = %refund.out_refund_no,
                refund_fee = refund.refund_fee,
                created,
                "refund on the merchant platform"
            );
            (refund.out_refund_no.clone(), created)
        };
        if created {
            self.schedule_refund(req.out_trade_no.clone(), out_refund_no.clone());
        }
        let st = self.lock();
        let refunds = &st.orders[&req.out_trade_no].refunds;
        let refund = refunds.iter().find(|r| r.out_refund_no == out_refund_no);
        Ok(refund.expect("refunds are never removed").snapshot())
    }

    /// Makes the refund final after the (scaled) refund delay and sends its
    /// notify; with no delay it is final before this returns.
    pub(crate) fn schedule_refund(self: &Arc<Self>, out_trade_no: String, out_refund_no: String) {
        let delay = self.scaled(self.config.refund_delay);
        if delay.is_zero() {
            if let Some(job) = self.settle_refund(&out_trade_no, &out_refund_no) {
                self.spawn(notify::deliver(Arc::clone(self), job));
            }
            return;
        }
        let sim = Arc::clone(self);
        self.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(job) = sim.settle_refund(&out_trade_no, &out_refund_no) {
                notify::deliver(sim, job).await;
            }
        });
    }

    /// The refund reaches its final status; returns its notify when there
    /// is a URL to send it to.
    fn settle_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<NotifyJob> {
        let mut st = self.lock();
        let order = st.orders.get_mut(out_trade_no)?;
        let total = order.total_fee();
        let transaction_id = order.transaction_id.clone().unwrap_or_default();
        let refund = order
            .refunds
            .iter_mut()
            .find(|r| r.out_refund_no == out_refund_no)?;
        refund.status = refund.outcome.status();
        if refund.outcome == RefundResult::Success {
            let now = Utc::now();
            refund.success_time = Some(format_refund_time(now));
            refund.success_at = Some(now);
        }
        tracing::info!(%out_trade_no, %out_refund_no, refund_status = %refund.status, "refund final");
        let url = refund
            .notify_url
            .clone()
            .or_else(|| self.config.refund_notify_url.clone())?;
        if refund.protocol == Protocol::V3 {
            let (order, refund) = {
                let order = &st.orders[out_trade_no];
                let refund = order
                    .refunds
                    .iter()
                    .find(|r| r.out_refund_no == out_refund_no)?;
                (order, refund)
            };
            return Some(api_v3::refund_notify_job(self, order, refund, url));
        }
        Some(notify::refund_job(
            &self.config,
            out_trade_no,
            &transaction_id,
            total,
            refund,
            url,
        ))
    }
}

pub(crate) fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub(crate) fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16usize)]))
        .collect()
}

/// `wx` + Beijing time + 20 hex digits, 36 characters like the real ones.
pub(crate) fn prepay_id() -> String {
    format!("wx{}{}", format_beijing(Utc::now()), random_hex(20))
}

/// 28 digits starting `4200`, like real WeChat order numbers.
pub(crate) fn transaction_id() -> String {
    format!("4200{}", random_digits(24))
}

/// 29 digits starting `503`, like real refund ids.
pub(crate) fn refund_id() -> String {
    format!("503{}", random_digits(26))
}

/// `yyyy-MM-dd HH:mm:ss`, Beijing time (refund times).
pub(crate) fn format_refund_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&wxpay_core::types::beijing())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
