//! [`Payments`]: the payment service adapters expose.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tracing::{Instrument, field::Empty};

use super::{
    AdminAuth, AttentionPolicy, Checkout, CheckoutOutcome, CheckoutRequest, MemoryStore,
    NoCheckout, NoEvents, Order, OrderDraft, OrderPatch, OrderState, OrderStore, PaymentEvents,
    Rejection, SessionRecord, SessionStore, SignIn, StoreError, TokenHash, Transition,
    TransitionOutcome,
    decide::{Mismatch, PaymentReport, Source},
    fulfil::Recorded,
    sessions,
};
use crate::{
    BoxTransport, Client, Config, ErrCode, Error, Fen, FieldError, OutTradeNo, SessionKey,
    SessionToken, TradeState, TradeType, Transport,
    messages::{OrderQueryResponse, UnifiedOrderRequest},
};

/// How long a `prepay_id` / `code_url` works.
pub(crate) const PREPAY_TTL: Duration = Duration::from_secs(2 * 3600);

/// WeChat takes closeorder from 5 minutes after an order was created.
pub(crate) const CLOSE_AFTER: Duration = Duration::from_secs(5 * 60);

/// How often a read-decide-write is tried again when the order keeps
/// changing under it before the caller is told to try later.
pub(crate) const MAX_RACES: usize = 8;

pub(crate) fn illegal(e: super::IllegalTransition) -> StoreError {
    // The decisions only make legal moves; this is a bug, reported loudly.
    tracing::error!(error = %e, "a decision made an illegal transition");
    StoreError::Corrupt(format!("refused to write an illegal transition: {e}"))
}

pub(crate) fn raced(no: &OutTradeNo) -> StoreError {
    StoreError::Corrupt(format!(
        "order {no} kept changing while it was being updated"
    ))
}

pub(crate) fn mismatch_error(out_trade_no: OutTradeNo, m: Mismatch) -> PaymentsError {
    match m {
        Mismatch::Amount { expected, received } => PaymentsError::AmountMismatch {
            out_trade_no,
            expected,
            reported: received,
        },
        Mismatch::Currency { received } => PaymentsError::CurrencyMismatch {
            out_trade_no,
            reported: received,
        },
    }
}

/// Now, in whole microseconds (what SQL stores keep), so orders read back
/// from any store equal the ones written.
pub(crate) fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

pub(crate) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Why a [`Payments`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentsError {
    /// The app's [`Checkout`] refused the request.
    #[error("checkout rejected: {0}")]
    Rejected(#[from] Rejection),
    /// No such order.
    #[error("order {0} not found")]
    NotFound(OutTradeNo),
    /// The order's state does not allow the operation.
    #[error("order {out_trade_no} is {state}: cannot {operation}")]
    InvalidState {
        /// The order.
        out_trade_no: OutTradeNo,
        /// Its state.
        state: OrderState,
        /// What was attempted.
        operation: &'static str,
    },
    /// An argument or draft breaks a rule (amounts, field lengths, a draft
    /// that differs from the existing order with the same number…).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// WeChat answered with an amount that differs from the stored order:
    /// nothing was changed; look into it.
    #[error("order {out_trade_no}: WeChat reports {reported} fen, the order is {expected} fen")]
    AmountMismatch {
        /// The order.
        out_trade_no: OutTradeNo,
        /// The stored amount.
        expected: Fen,
        /// WeChat's amount.
        reported: Fen,
    },
    /// WeChat answered in another currency than the order's: nothing was
    /// changed but the attention flag; look into it.
    #[error("order {out_trade_no}: WeChat reports the currency {reported}, the order is in CNY")]
    CurrencyMismatch {
        /// The order.
        out_trade_no: OutTradeNo,
        /// WeChat's currency.
        reported: String,
    },
    /// WeChat does not take the operation yet (closeorder in the first 5
    /// minutes of an order): nothing was sent; try again after `retry_after`.
    #[error("order {out_trade_no}: cannot {operation} yet; retry after {}s", retry_after.as_secs())]
    TooEarly {
        /// The order.
        out_trade_no: OutTradeNo,
        /// What was attempted.
        operation: &'static str,
        /// How long until it is allowed.
        retry_after: Duration,
    },
    /// The call to WeChat failed.
    #[error("WeChat call failed")]
    Wechat(#[from] Error),
    /// The order store failed.
    #[error("order store failed")]
    Store(#[from] StoreError),
    /// The operation needs a part the service was built without (the
    /// message names the builder method that adds it).
    #[error("not configured: {0}")]
    Unconfigured(&'static str),
}

impl PaymentsError {
    /// The HTTP status an adapter should answer with: 400/401/403 for
    /// rejections and invalid input, 404, 409 for a wrong state or an
    /// operation WeChat does not take yet, 502 for WeChat failures, 500 for
    /// the store, the configuration and amount or currency mismatches.
    pub fn http_status(&self) -> u16 {
        match self {
            PaymentsError::Rejected(r) => r.kind.status(),
            PaymentsError::NotFound(_) => 404,
            PaymentsError::InvalidState { .. } | PaymentsError::TooEarly { .. } => 409,
            PaymentsError::Invalid(_) => 400,
            PaymentsError::Wechat(_) => 502,
            PaymentsError::AmountMismatch { .. }
            | PaymentsError::CurrencyMismatch { .. }
            | PaymentsError::Store(_)
            | PaymentsError::Unconfigured(_) => 500,
        }
    }

    /// For [`PaymentsError::TooEarly`]: how long until the operation is allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PaymentsError::TooEarly { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A signed-in mini-program user, from `wx.login`'s code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The user under this AppID (the payer for JSAPI orders).
    pub openid: String,
    /// The user across the Open Platform account, if bound.
    pub unionid: Option<String>,
    /// The session key: keep it on the server (its `Debug` prints `***`).
    pub session_key: SessionKey,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) unifiedorder_attempts: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) lease: Duration,
    pub(crate) sync_interval: Duration,
    pub(crate) order_ttl: Duration,
    pub(crate) session_ttl: Duration,
    pub(crate) attention: AttentionPolicy,
    pub(crate) hmac_notifies_for_md5_orders: bool,
    pub(crate) close_after: Duration,
}

pub(crate) struct Inner {
    pub(crate) client: Client<BoxTransport>,
    pub(crate) store: Arc<dyn OrderStore>,
    pub(crate) checkout: Arc<dyn Checkout>,
    pub(crate) events: Arc<dyn PaymentEvents>,
    pub(crate) sessions: Option<Arc<dyn SessionStore>>,
    pub(crate) admin: Option<Arc<dyn AdminAuth>>,
    pub(crate) settings: Settings,
    /// Last orderquery per order in this process (for orders whose state
    /// cannot carry `synced_at`).
    recent_syncs: Mutex<HashMap<OutTradeNo, Instant>>,
}

/// The payment service: checkout, notifies, status, close, refund, login,
/// and the reconciler. Cheap to clone (one `Arc`); share one per merchant.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use wxpay_core::{BoxError, Config, Fen, flow::*};
///
/// struct Shop;
/// #[async_trait]
/// impl Checkout for Shop {
///     async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
///         let openid = req.header("x-openid").ok_or_else(|| Rejection::unauthorized("sign in"))?;
///         Ok(OrderDraft::jsapi(openid, "Shop-VIP", Fen(990)))
///     }
/// }
/// struct Grants;
/// #[async_trait]
/// impl PaymentEvents for Grants {
///     async fn on_paid(&self, order: &Order) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// let payments = Payments::builder(Config::from_env()?)
///     .store(Arc::new(MemoryStore::new()))
///     .checkout(Shop)
///     .events(Grants)
///     .build()?;
/// let _reconciler = payments.reconciler(std::time::Duration::from_secs(60)).spawn();
/// let outcome = payments
///     .checkout(CheckoutRequest::new("{}").with_header("x-openid", "o-123"))
///     .await?;
/// println!("{:?}", outcome.pay_params);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Payments {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Payments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payments")
            .field("appid", &self.inner.client.config().appid)
            .field("mch_id", &self.inner.client.config().mch_id)
            .finish_non_exhaustive()
    }
}

/// Builds [`Payments`]; see [`Payments::builder`].
#[must_use]
pub struct PaymentsBuilder {
    config: Config,
    client: Option<Client<BoxTransport>>,
    store: Option<Arc<dyn OrderStore>>,
    checkout: Arc<dyn Checkout>,
    events: Arc<dyn PaymentEvents>,
    sessions: Option<Arc<dyn SessionStore>>,
    admin: Option<Arc<dyn AdminAuth>>,
    settings: Settings,
}

impl fmt::Debug for PaymentsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentsBuilder")
            .field("config", &self.config)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PaymentsBuilder {
    /// Uses this client (e.g. one with the merchant certificate for refunds,
    /// [`Client::with_identity`]); its configuration replaces the builder's.
    pub fn client<T: Transport>(mut self, client: Client<T>) -> Self {
        self.config = client.config().clone();
        self.client = Some(client.boxed());
        self
    }

    /// The order store. Default: a fresh [`MemoryStore`].
    pub fn store(mut self, store: Arc<dyn OrderStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The app's checkout logic. Default: [`NoCheckout`] (refuses everything).
    pub fn checkout(mut self, checkout: impl Checkout) -> Self {
        self.checkout = Arc::new(checkout);
        self
    }

    /// The app's business effects. Default: [`NoEvents`].
    pub fn events(mut self, events: impl PaymentEvents) -> Self {
        self.events = Arc::new(events);
        self
    }

    /// Keeps sign-in sessions here: turns on [`Payments::sign_in`] and
    /// [`Payments::signed_in`], and fills in [`CheckoutRequest::user`] from
    /// each checkout and order request's `Authorization: Bearer …` header
    /// (so the default [`Checkout::identify`] knows the caller). Default:
    /// none (no sessions, and no lookups).
    pub fn sessions(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Turns on the admin routes of the HTTP surface (an order with its
    /// refund ledger and attention cases; refunds), for the callers `auth`
    /// allows (e.g. [`AdminToken`](super::AdminToken)). Default: none (the
    /// routes answer `404`).
    pub fn admin(mut self, auth: impl AdminAuth) -> Self {
        self.admin = Some(Arc::new(auth));
        self
    }

    /// How long a sign-in token works. Default 7 days.
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.settings.session_ttl = ttl;
        self
    }

    /// How many times unifiedorder is sent (same number, same fields) while
    /// the answer is a transport failure or a retryable code. Default 3.
    pub fn unifiedorder_attempts(mut self, attempts: u32) -> Self {
        self.settings.unifiedorder_attempts = attempts.max(1);
        self
    }

    /// The pause before the first unifiedorder retry, doubled each time.
    /// Default 200 ms.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.settings.retry_backoff = backoff;
        self
    }

    /// The fulfilment lease: how long one `on_paid` run may hold its claim.
    /// A run is cancelled after 80 % of it. Default 5 minutes.
    pub fn fulfilment_lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// The least time between two orderqueries for one order, unless forced.
    /// Default 5 s.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.settings.sync_interval = interval;
        self
    }

    /// How long an unpaid order stays open before the reconciler closes it
    /// (counted from the last `prepay_id`, or from creation). Default 2 hours
    /// (the `prepay_id` lifetime).
    pub fn order_ttl(mut self, ttl: Duration) -> Self {
        self.settings.order_ttl = ttl;
        self
    }

    /// What happens to a late payment (paid after its order was closed or
    /// had failed): it is always recorded and flagged, and then held for a
    /// person (the default), fulfilled, or refunded at once. See
    /// [`AttentionPolicy`].
    pub fn attention_policy(mut self, policy: AttentionPolicy) -> Self {
        self.settings.attention = policy;
        self
    }

    /// Whether a payment notify for an order created with MD5 may be
    /// signed with HMAC-SHA256 when it says so (`sign_type=HMAC-SHA256`;
    /// same API key, a stronger algorithm). Default `false`: the order's
    /// sign type decides, and a notify that declares another is refused.
    /// An order created with HMAC-SHA256 never accepts an MD5 notify.
    pub fn hmac_notifies_for_md5_orders(mut self, allow: bool) -> Self {
        self.settings.hmac_notifies_for_md5_orders = allow;
        self
    }

    /// How long after its creation an order may be closed: WeChat refuses
    /// closeorder in an order's first 5 minutes, the default. Earlier,
    /// [`Payments::close`] answers [`PaymentsError::TooEarly`] without
    /// asking. Change it only for a simulator whose clock runs faster.
    pub fn close_after(mut self, after: Duration) -> Self {
        self.settings.close_after = after;
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    /// [`Error`] when the HTTP client cannot be created.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use wxpay_core::{ApiKey, Config, flow::{MemoryStore, Payments}};
    /// let config = Config::new("wxd930ea5d5a258f4f", "10000100", ApiKey::new("192006250b4c09247ec02edce69f6a2d"))
    ///     .with_notify_url("https://shop.example.com/pay/notify");
    /// let payments = Payments::builder(config)
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(payments.config().mch_id, "10000100");
    /// ```
    pub fn build(self) -> Result<Payments, Error> {
        let client = match self.client {
            Some(c) => c,
            None => Client::new(self.config)?.boxed(),
        };
        Ok(Payments {
            inner: Arc::new(Inner {
                client,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                checkout: self.checkout,
                events: self.events,
                sessions: self.sessions,
                admin: self.admin,
                settings: self.settings,
                recent_syncs: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Payments {
    /// Starts a builder over `config` (with a [`MemoryStore`] unless
    /// [`store`](PaymentsBuilder::store) is called).
    pub fn builder(config: Config) -> PaymentsBuilder {
        PaymentsBuilder {
            config,
            client: None,
            store: None,
            checkout: Arc::new(NoCheckout),
            events: Arc::new(NoEvents),
            sessions: None,
            admin: None,
            settings: Settings {
                unifiedorder_attempts: 3,
                retry_backoff: Duration::from_millis(200),
                lease: Duration::from_secs(300),
                sync_interval: Duration::from_secs(5),
                order_ttl: PREPAY_TTL,
                session_ttl: Duration::from_secs(7 * 24 * 3600),
                attention: AttentionPolicy::Hold,
                hmac_notifies_for_md5_orders: false,
                close_after: CLOSE_AFTER,
            },
        }
    }

    /// The merchant configuration.
    pub fn config(&self) -> &Config {
        self.inner.client.config()
    }

    /// The protocol client.
    pub fn client(&self) -> &Client<BoxTransport> {
        &self.inner.client
    }

    /// The order store.
    pub fn store(&self) -> &Arc<dyn OrderStore> {
        &self.inner.store
    }

    /// Loads an order as stored (no call to WeChat).
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`], or a store error.
    pub async fn order(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        self.inner
            .store
            .get(out_trade_no)
            .await?
            .ok_or_else(|| PaymentsError::NotFound(out_trade_no.clone()))
    }

    /// Checkout: asks the app's [`Checkout`] what the order is, then
    /// [`create_order`](Payments::create_order).
    ///
    /// # Errors
    /// [`PaymentsError::Rejected`] from the app; otherwise as
    /// [`create_order`](Payments::create_order).
    pub async fn checkout(
        &self,
        mut req: CheckoutRequest,
    ) -> Result<CheckoutOutcome, PaymentsError> {
        self.fill_user(&mut req).await?;
        let draft = self.inner.checkout.order(&req).await.inspect_err(|r| {
            tracing::info!(kind = ?r.kind, reason = %r.message, "checkout rejected by the app");
        })?;
        self.create_order(draft, req.client_ip.as_deref()).await
    }

    /// Creates (or re-enters) an order from an authoritative draft: stores it
    /// `CREATED`, calls unifiedorder (retrying transport failures and
    /// retryable codes with the same number and fields), stores it `PREPAID`
    /// and returns what the client needs to pay.
    ///
    /// A draft with the number of an existing open order and the same fields
    /// re-enters it: the stored `prepay_id` while it is valid, else a fresh
    /// one for the same order (never a second payment).
    ///
    /// # Errors
    /// [`PaymentsError::Invalid`] for a draft that breaks a field rule (or
    /// differs from the existing order with its number; nothing stored);
    /// [`PaymentsError::InvalidState`] when that order is no longer open;
    /// [`PaymentsError::Wechat`] when unifiedorder failed: for good (the
    /// order is then `FAILED`) or with an unknown outcome (it stays `CREATED`
    /// and the reconciler settles it); store errors.
    pub async fn create_order(
        &self,
        draft: OrderDraft,
        client_ip: Option<&str>,
    ) -> Result<CheckoutOutcome, PaymentsError> {
        let out_trade_no = draft
            .out_trade_no
            .clone()
            .unwrap_or_else(OutTradeNo::generate);
        let span = tracing::info_span!(
            "wxpay.checkout",
            out_trade_no = %out_trade_no,
            total_fee = draft.total_fee.0,
            outcome = Empty
        );
        self.create_order_inner(draft, out_trade_no, client_ip)
            .instrument(span.clone())
            .await
            .inspect(|_| {
                span.record("outcome", "prepaid");
            })
            .inspect_err(|e| {
                span.record("outcome", tracing::field::display(e));
            })
    }

    async fn create_order_inner(
        &self,
        draft: OrderDraft,
        out_trade_no: OutTradeNo,
        client_ip: Option<&str>,
    ) -> Result<CheckoutOutcome, PaymentsError> {
        let config = self.config();
        let request = UnifiedOrderRequest {
            out_trade_no: out_trade_no.clone(),
            body: draft.body.clone(),
            total_fee: draft.total_fee,
            trade_type: draft.trade_type.clone(),
            openid: draft.openid.clone(),
            product_id: draft.product_id.clone(),
            attach: draft.attach.clone(),
            spbill_create_ip: client_ip.unwrap_or("127.0.0.1").to_owned(),
            notify_url: None,
            time_expire: None,
            detail: None,
        };
        // Check every field rule before anything is stored.
        request.to_params(config.notify_url.as_deref())?;

        let now = now();
        let mut order = Order::new(
            out_trade_no.clone(),
            draft.total_fee,
            draft.body.clone(),
            draft.trade_type.clone(),
            config.sign_type,
            now,
        );
        order.openid = draft.openid.clone();
        order.product_id = draft.product_id.clone();
        order.attach = draft.attach.clone();
        order.owner = draft.owner.clone();

        let store = &self.inner.store;
        match store.insert(&order).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                let existing = self.order(&out_trade_no).await?;
                let same = existing.total_fee == order.total_fee
                    && existing.body == order.body
                    && existing.trade_type == order.trade_type
                    && existing.openid == order.openid
                    && existing.product_id == order.product_id
                    && existing.attach == order.attach
                    && existing.owner == order.owner;
                if !same {
                    return Err(FieldError {
                        field: "out_trade_no",
                        problem: "an order with this number exists with other fields".into(),
                    }
                    .into());
                }
                if !existing.state.is_open() {
                    return Err(PaymentsError::InvalidState {
                        out_trade_no,
                        state: existing.state,
                        operation: "check out again",
                    });
                }
                if existing.state == OrderState::Prepaid
                    && existing
                        .prepay_expires_at
                        .is_some_and(|t| t > after(now, Duration::from_secs(60)))
                {
                    tracing::info!("re-entry: the stored prepay_id is still valid");
                    return Ok(self.outcome(&existing));
                }
                order = existing;
            }
            Err(e) => return Err(e.into()),
        }

        let answer = match self.unified_order_with_retries(&request).await {
            Ok(a) => a,
            Err(e) => return Err(self.unifiedorder_failed(&order, e).await),
        };
        let patch = OrderPatch {
            prepay_id: Some(answer.prepay_id.clone()),
            code_url: Some(answer.code_url.clone()),
            prepay_expires_at: Some(Some(after(super::payments::now(), PREPAY_TTL))),
            ..OrderPatch::default()
        };
        let order = match self
            .update(&out_trade_no, Some(order), |o| {
                o.state
                    .is_open()
                    .then(|| (OrderState::Prepaid, patch.clone()))
            })
            .await?
        {
            Some((o, true)) => o,
            Some((mut o, false)) => {
                // A notify (or sync) overtook unifiedorder's answer.
                tracing::info!(state = %o.state, "order moved on before unifiedorder answered");
                o.prepay_id = o.prepay_id.or(answer.prepay_id);
                o.code_url = o.code_url.or(answer.code_url);
                o
            }
            None => return Err(PaymentsError::NotFound(out_trade_no)),
        };
        Ok(self.outcome(&order))
    }

    fn outcome(&self, order: &Order) -> CheckoutOutcome {
        CheckoutOutcome {
            out_trade_no: order.out_trade_no.clone(),
            total_fee: order.total_fee,
            trade_type: order.trade_type.clone(),
            // wx.requestPayment parameters exist only for JSAPI: a NATIVE
            // order also has a prepay_id, but is paid by scanning code_url.
            pay_params: order
                .prepay_id
                .as_deref()
                .filter(|_| order.trade_type == TradeType::Jsapi)
                .map(|p| self.inner.client.pay_params_signed(p, order.sign_type)),
            code_url: order.code_url.clone(),
        }
    }

    async fn unified_order_with_retries(
        &self,
        request: &UnifiedOrderRequest,
    ) -> Result<crate::messages::UnifiedOrderResponse, Error> {
        let s = &self.inner.settings;
        let mut pause = s.retry_backoff;
        let mut attempt = 1;
        loop {
            match self.inner.client.unified_order(request).await {
                Err(e) if e.is_retryable() && attempt < s.unifiedorder_attempts => {
                    tracing::warn!(attempt, error = %e, "unifiedorder failed, re-entering with the same fields");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Decides what a failed unifiedorder means for the order.
    async fn unifiedorder_failed(&self, order: &Order, e: Error) -> PaymentsError {
        let unknown =
            e.outcome_unknown() || e.is_retryable() || matches!(e, Error::InvalidSignature(_));
        match e.err_code() {
            Some(ErrCode::OrderPaid | ErrCode::OrderClosed | ErrCode::OutTradeNoUsed) => {
                // WeChat knows this number in another state: learn it.
                tracing::warn!(error = %e, "unifiedorder refused the number; querying the order");
                if let Err(se) = self.sync_inner(&order.out_trade_no, true).await {
                    tracing::warn!(error = %se, "orderquery after a refused unifiedorder failed");
                }
            }
            _ if unknown => {
                tracing::warn!(error = %e, "unifiedorder outcome unknown; order left for the reconciler");
            }
            _ => {
                tracing::warn!(error = %e, "unifiedorder refused; order FAILED");
                let failed = self
                    .update(&order.out_trade_no, None, |o| {
                        (o.state == OrderState::Created)
                            .then(|| (OrderState::Failed, OrderPatch::default()))
                    })
                    .await;
                if let Err(se) = failed {
                    tracing::error!(error = %se, "could not record the failed unifiedorder");
                }
            }
        }
        PaymentsError::Wechat(e)
    }

    /// The order, brought up to date first when it awaits payment and was
    /// not checked recently: an orderquery (at most once per sync interval)
    /// recovers a lost notify. WeChat errors are logged and the stored order
    /// is returned. This is what a client polls after `requestPayment:ok`.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`], or a store error.
    pub async fn status(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        let order = self.order(out_trade_no).await?;
        if order.state != OrderState::Prepaid || self.recently_synced(&order) {
            return Ok(order);
        }
        match self.sync_inner(out_trade_no, false).await {
            Ok(o) => Ok(o),
            Err(PaymentsError::Wechat(e)) => {
                tracing::warn!(%out_trade_no, error = %e, "status: orderquery failed, answering the stored order");
                Ok(order)
            }
            Err(e) => Err(e),
        }
    }

    fn recently_synced(&self, order: &Order) -> bool {
        let interval = self.inner.settings.sync_interval;
        if order
            .synced_at
            .is_some_and(|t| after(t, interval) > Utc::now())
        {
            return true;
        }
        let recent = self
            .inner
            .recent_syncs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .get(&order.out_trade_no)
            .is_some_and(|t| t.elapsed() < interval)
    }

    fn note_synced(&self, out_trade_no: &OutTradeNo) {
        let interval = self.inner.settings.sync_interval;
        let mut recent = self
            .inner
            .recent_syncs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() > 10_000 {
            recent.retain(|_, t| t.elapsed() < interval);
        }
        recent.insert(out_trade_no.clone(), Instant::now());
    }

    /// Asks WeChat about an order (orderquery) and applies the answer:
    /// `SUCCESS`/`REFUND` → `PAID` (then fulfilment), `CLOSED`/`REVOKED` →
    /// `CLOSED`, `PAYERROR` → `FAILED`; still unpaid → unchanged (with
    /// `synced_at`). Without `force`, an order synced within the sync
    /// interval is returned as stored. Orders already paid are returned
    /// without a call.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::Wechat`];
    /// [`PaymentsError::AmountMismatch`] (nothing changed); store errors.
    pub async fn sync(
        &self,
        out_trade_no: &OutTradeNo,
        force: bool,
    ) -> Result<Order, PaymentsError> {
        self.sync_inner(out_trade_no, force).await
    }

    pub(crate) async fn sync_inner(
        &self,
        out_trade_no: &OutTradeNo,
        force: bool,
    ) -> Result<Order, PaymentsError> {
        let span = tracing::info_span!(
            "wxpay.sync",
            out_trade_no = %out_trade_no,
            state = Empty,
            outcome = Empty
        );
        let result = self
            .sync_body(out_trade_no, force)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(o) => {
                span.record("state", o.state.as_str());
            }
            Err(e) => {
                span.record("outcome", tracing::field::display(e));
            }
        }
        result
    }

    async fn sync_body(
        &self,
        out_trade_no: &OutTradeNo,
        force: bool,
    ) -> Result<Order, PaymentsError> {
        let order = self.order(out_trade_no).await?;
        if !matches!(
            order.state,
            OrderState::Created | OrderState::Prepaid | OrderState::Closed | OrderState::Failed
        ) {
            return Ok(order);
        }
        if !force && self.recently_synced(&order) {
            tracing::Span::current().record("outcome", "rate-limited");
            return Ok(order);
        }
        self.note_synced(out_trade_no);
        let answer = match self.inner.client.order_query(out_trade_no).await {
            Ok(a) => a,
            Err(Error::Business {
                err_code: ErrCode::OrderNotExist,
                ..
            }) => {
                tracing::Span::current().record("outcome", "unknown to WeChat");
                return Ok(order);
            }
            Err(e) => return Err(e.into()),
        };
        self.apply_query(order, answer).await
    }

    async fn apply_query(
        &self,
        order: Order,
        q: OrderQueryResponse,
    ) -> Result<Order, PaymentsError> {
        let at = now();
        let no = order.out_trade_no.clone();
        tracing::Span::current().record("outcome", q.trade_state.as_str());
        let open_to = |to: OrderState| {
            move |o: &Order| {
                let patch = OrderPatch {
                    synced_at: Some(Some(at)),
                    ..OrderPatch::default()
                };
                o.state.is_open().then_some((to, patch))
            }
        };
        let updated = match q.trade_state {
            ref s if s.is_paid() => {
                let report = PaymentReport {
                    transaction_id: q.transaction_id.clone(),
                    total_fee: q.total_fee,
                    fee_type: q.params.non_empty("fee_type").map(str::to_owned),
                    time_end: q.time_end.clone(),
                    bank_type: q.bank_type.clone(),
                    cash_fee: q.cash_fee,
                    source: Source::Query,
                };
                // REFUND: paid, and refunded since (in part or in full). The
                // refunds are learnt first and recorded with the payment in
                // one write, so that the goods are never granted for money
                // that went back.
                let refunds = if q.trade_state == TradeState::Refund {
                    self.refund_reports_of(&no).await?
                } else {
                    Vec::new()
                };
                let recorded = self
                    .record_payment(Arc::new(order), &report, &refunds)
                    .await?;
                self.after_paid(&recorded).await;
                return match recorded {
                    Recorded::Refused { mismatch, .. } => Err(mismatch_error(no, mismatch)),
                    Recorded::NotFound => Err(PaymentsError::NotFound(no)),
                    _ => self.order(&no).await,
                };
            }
            TradeState::Closed | TradeState::Revoked => {
                self.update(&no, Some(order), open_to(OrderState::Closed))
                    .await?
            }
            TradeState::PayError => {
                self.update(&no, Some(order), open_to(OrderState::Failed))
                    .await?
            }
            _ => {
                self.update(&no, Some(order), |o| {
                    (o.state == OrderState::Prepaid).then(|| {
                        let patch = OrderPatch {
                            synced_at: Some(Some(at)),
                            ..OrderPatch::default()
                        };
                        (OrderState::Prepaid, patch)
                    })
                })
                .await?
            }
        };
        updated.map(|(o, _)| o).ok_or(PaymentsError::NotFound(no))
    }

    /// A versioned read-decide-write: `decide` says what the order (as
    /// read) becomes, or `None` for nothing; the write applies only to the
    /// version read, and on a race `decide` runs again on the order as it
    /// is now. Starts from `start` when the caller has just read the order.
    /// Answers the order and whether this call changed it, or `None` when
    /// there is no such order.
    pub(crate) async fn update(
        &self,
        no: &OutTradeNo,
        start: Option<Order>,
        mut decide: impl FnMut(&Order) -> Option<(OrderState, OrderPatch)>,
    ) -> Result<Option<(Order, bool)>, StoreError> {
        let store = &self.inner.store;
        let mut order = match start {
            Some(o) => o,
            None => match store.get(no).await? {
                Some(o) => o,
                None => return Ok(None),
            },
        };
        for _ in 0..MAX_RACES {
            let Some((to, patch)) = decide(&order) else {
                return Ok(Some((order, false)));
            };
            let t = Transition::new(&order, to, patch, now()).map_err(illegal)?;
            match store.transition(&t).await? {
                TransitionOutcome::Applied(o) => return Ok(Some((o, true))),
                TransitionOutcome::NotApplied(o) => order = o,
                TransitionOutcome::NotFound => return Ok(None),
            }
        }
        Err(raced(no))
    }

    /// Closes an unpaid order: closeorder, then `CLOSED`. If WeChat says it
    /// was paid meanwhile, the payment is recorded (sync) and the answer is
    /// [`PaymentsError::InvalidState`] with state `PAID`. An order WeChat
    /// never saw is closed locally. Closing a closed order is a no-op.
    ///
    /// WeChat refuses closeorder in the first 5 minutes of an order: within
    /// them the answer is [`PaymentsError::TooEarly`] (HTTP 409 with
    /// `retry_after`) and nothing is sent. That also keeps an order whose
    /// unifiedorder is still in flight (the client's timeout is far shorter)
    /// from being closed locally while WeChat may still take its payment.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::TooEarly`];
    /// [`PaymentsError::InvalidState`] for a paid or failed order;
    /// [`PaymentsError::Wechat`]; store errors.
    pub async fn close(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        let span =
            tracing::info_span!("wxpay.close", out_trade_no = %out_trade_no, outcome = Empty);
        async {
            let order = self.order(out_trade_no).await?;
            match order.state {
                OrderState::Closed => return Ok(order),
                OrderState::Created | OrderState::Prepaid => {}
                state => {
                    return Err(PaymentsError::InvalidState {
                        out_trade_no: out_trade_no.clone(),
                        state,
                        operation: "close",
                    });
                }
            }
            let allowed = after(order.created_at, self.inner.settings.close_after);
            let at = now();
            if at < allowed {
                let retry_after = (allowed - at).to_std().unwrap_or_default();
                tracing::Span::current().record("outcome", "too early");
                return Err(PaymentsError::TooEarly {
                    out_trade_no: out_trade_no.clone(),
                    operation: "close",
                    retry_after,
                });
            }
            match self.inner.client.close_order(out_trade_no).await {
                Ok(())
                | Err(Error::Business {
                    err_code: ErrCode::OrderNotExist,
                    ..
                }) => {}
                Err(Error::Business {
                    err_code: ErrCode::OrderPaid,
                    ..
                }) => {
                    tracing::Span::current().record("outcome", "paid meanwhile");
                    let o = self.sync_inner(out_trade_no, true).await?;
                    return Err(PaymentsError::InvalidState {
                        out_trade_no: out_trade_no.clone(),
                        state: o.state,
                        operation: "close",
                    });
                }
                Err(e) => return Err(e.into()),
            }
            let (o, _) = self
                .update(out_trade_no, None, |o| {
                    o.state
                        .is_open()
                        .then(|| (OrderState::Closed, OrderPatch::default()))
                })
                .await?
                .ok_or_else(|| PaymentsError::NotFound(out_trade_no.clone()))?;
            tracing::Span::current().record("outcome", o.state.as_str());
            Ok(o)
        }
        .instrument(span)
        .await
    }

    /// Signs a mini-program user in: trades `wx.login`'s code for the
    /// openid (jscode2session). Keep the session key on the server.
    ///
    /// # Errors
    /// [`PaymentsError::Wechat`] ([`Error::Login`] for an invalid or used
    /// code, [`Error::Config`] without an AppSecret).
    pub async fn login(&self, js_code: &str) -> Result<Session, PaymentsError> {
        let s = self
            .inner
            .client
            .code2session(js_code)
            .instrument(tracing::info_span!("wxpay.login"))
            .await?;
        Ok(Session {
            openid: s.openid,
            unionid: s.unionid,
            session_key: s.session_key,
        })
    }

    /// Signs a mini-program user in and keeps the session: [`login`](Payments::login),
    /// then a fresh random bearer token whose hash is stored with the openid
    /// for [`session_ttl`](PaymentsBuilder::session_ttl). Give the client
    /// `token` and nothing else.
    ///
    /// ```no_run
    /// # async fn demo(payments: wxpay_core::flow::Payments, code: &str) -> Result<(), wxpay_core::flow::PaymentsError> {
    /// let signed = payments.sign_in(code).await?;
    /// let reply = serde_json::json!({ "token": signed.token.expose() });
    /// // later, from the client's `Authorization: Bearer …` header:
    /// let header = format!("Bearer {}", signed.token.expose());
    /// let user = payments.signed_in(Some(&header)).await?;
    /// assert_eq!(user.map(|s| s.openid), Some(signed.session.openid));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`login`](Payments::login); [`PaymentsError::Unconfigured`]
    /// without [`PaymentsBuilder::sessions`]; store errors.
    pub async fn sign_in(&self, js_code: &str) -> Result<SignIn, PaymentsError> {
        let sessions = self.sessions()?;
        let session = self.login(js_code).await?;
        let token = SessionToken::generate();
        let created_at = now();
        let expires_at = after(created_at, self.inner.settings.session_ttl);
        let record = SessionRecord::new(
            TokenHash::of(&token),
            session.openid.clone(),
            session.unionid.clone(),
            created_at,
            expires_at,
        );
        sessions.put_session(&record).await?;
        Ok(SignIn {
            token,
            session,
            expires_at,
        })
    }

    /// The live session an `Authorization` header value (`Bearer <token>`)
    /// names: `None` for no header, another scheme, an unknown token or an
    /// expired one.
    ///
    /// # Errors
    /// [`PaymentsError::Unconfigured`] without [`PaymentsBuilder::sessions`];
    /// store errors.
    pub async fn signed_in(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<SessionRecord>, PaymentsError> {
        let sessions = self.sessions()?;
        let Some(token) = authorization.and_then(sessions::bearer) else {
            return Ok(None);
        };
        let found = sessions.get_session(&TokenHash::of(&token)).await?;
        Ok(found.filter(|s| s.is_live(now())))
    }

    /// Signs the holder of an `Authorization` header value out: its token
    /// stops working at once. Returns whether it named a live session.
    ///
    /// # Errors
    /// As [`signed_in`](Payments::signed_in).
    pub async fn sign_out(&self, authorization: Option<&str>) -> Result<bool, PaymentsError> {
        let Some(session) = self.signed_in(authorization).await? else {
            return Ok(false);
        };
        self.sessions()?.remove_session(&session.token_hash).await?;
        Ok(true)
    }

    /// Whether sign-in sessions are kept ([`PaymentsBuilder::sessions`]).
    pub fn keeps_sessions(&self) -> bool {
        self.inner.sessions.is_some()
    }

    fn sessions(&self) -> Result<&Arc<dyn SessionStore>, PaymentsError> {
        (self.inner.sessions.as_ref()).ok_or(PaymentsError::Unconfigured(
            "sessions (PaymentsBuilder::sessions)",
        ))
    }

    /// With sessions kept, sets the request's user from its bearer token.
    async fn fill_user(&self, req: &mut CheckoutRequest) -> Result<(), PaymentsError> {
        if self.inner.sessions.is_some() && req.user.is_none() {
            let session = self.signed_in(req.header("authorization")).await?;
            req.user = session.map(|s| s.openid);
        }
        Ok(())
    }

    /// The caller of an order route, as the app's [`Checkout::identify`]
    /// decides (after the session lookup).
    pub(crate) async fn identify(
        &self,
        mut req: CheckoutRequest,
    ) -> Result<Option<String>, PaymentsError> {
        self.fill_user(&mut req).await?;
        Ok(self.inner.checkout.identify(&req).await?)
    }

    /// The orders of one owner ([`OrderDraft::with_owner`]), newest first,
    /// at most `limit`: a user's "my orders" page, or entitlements derived
    /// from what was paid.
    ///
    /// # Errors
    /// [`PaymentsError::Unconfigured`] for a store without
    /// [`OrderStore::listing`]; store errors.
    pub async fn orders_of(&self, owner: &str, limit: usize) -> Result<Vec<Order>, PaymentsError> {
        let store = self.store();
        let listing = (store.listing()).ok_or(PaymentsError::Unconfigured(
            "an order store that can list orders",
        ))?;
        Ok(listing.owned_by(owner, limit).await?)
    }
}
