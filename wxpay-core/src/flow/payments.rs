//! [`Payments`]: the payment service adapters expose.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use super::{
    AdminAuth, Api, AttentionPolicy, Checkout, Gateway, MemoryStore, NoCheckout, NoEvents, Order,
    OrderPatch, OrderState, OrderStore, PaymentEvents, Rejection, SessionStore, StoreError,
    Transition, TransitionOutcome, V2Gateway, decide::Mismatch,
};
use crate::{
    BoxTransport, Client, Config, Error, Fen, FieldError, OutTradeNo, SessionKey, Transport,
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
            // Our own configuration (no AppSecret, …) is no upstream failure.
            PaymentsError::Wechat(Error::Config(_)) => 500,
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
    /// The v2 client: jscode2session, and v2 orders through `gateways.v2`.
    pub(crate) client: Client<BoxTransport>,
    pub(crate) gateways: super::gateway::Gateways,
    pub(crate) store: Arc<dyn OrderStore>,
    pub(crate) checkout: Arc<dyn Checkout>,
    pub(crate) events: Arc<dyn PaymentEvents>,
    pub(crate) sessions: Option<Arc<dyn SessionStore>>,
    pub(crate) admin: Option<Arc<dyn AdminAuth>>,
    pub(crate) sign_in_limit: Option<super::limit::Limiter>,
    pub(crate) trusted_proxies: Option<super::TrustedProxies>,
    /// Whether "no client IP" was logged already (once per service).
    pub(crate) warned_no_client_ip: std::sync::atomic::AtomicBool,
    pub(crate) settings: Settings,
    /// Last orderquery per order in this process (for orders whose state
    /// cannot carry `synced_at`).
    pub(crate) recent_syncs: Mutex<HashMap<OutTradeNo, Instant>>,
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
    sign_in_limit: Option<super::RateLimit>,
    trusted_proxies: Option<super::TrustedProxies>,
    v3: Option<Arc<dyn Gateway>>,
    default_api: Option<Api>,
    v2: bool,
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

    /// Believes `X-Forwarded-For` / `X-Real-IP` on requests whose peer is
    /// one of these proxies (off by default: the peer address is the
    /// client's). Behind a reverse proxy, without it every payer's
    /// `spbill_create_ip` would be the proxy's address; with it, the
    /// rightmost address in `X-Forwarded-For` that is not a proxy is the
    /// payer's (what the sign-in rate limit counts, too). Never list
    /// addresses that clients can reach directly: their headers would be
    /// believed.
    pub fn trusted_proxies(mut self, proxies: super::TrustedProxies) -> Self {
        self.trusted_proxies = Some(proxies);
        self
    }

    /// The API v3 gateway. With it, new orders are created through v3
    /// (unless [`default_api`](PaymentsBuilder::default_api) says v2), and
    /// v3 orders are finished through it; v2 orders are still finished
    /// through the v2 client, so a merchant migrating from v2 keeps both.
    pub fn v3(mut self, gateway: impl Gateway) -> Self {
        self.v3 = Some(Arc::new(gateway));
        self
    }

    /// Turns API v2 off: a merchant with no APIv2 key
    /// ([`Settings::has_v2`](crate::Settings::has_v2) `false`). v2 orders
    /// are then [`Unconfigured`](PaymentsError::Unconfigured) and v2
    /// notifies are refused (`FAIL`) without being looked at; the
    /// [`Config`] still serves sign-in (`jscode2session`).
    pub fn without_v2(mut self) -> Self {
        self.v2 = false;
        self
    }

    /// The API new orders are created with. Default: v3 when a v3 gateway
    /// is configured, else v2. [`Api::V3`] without a v3 gateway fails
    /// [`build`](PaymentsBuilder::build) (as `WXPAY_API_VERSION` invalid).
    pub fn default_api(mut self, api: Api) -> Self {
        self.default_api = Some(api);
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
    /// [`Payments::signed_in`], and fills in [`CheckoutRequest::user`](super::CheckoutRequest::user) from
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

    /// Limits the sign-in route (`POST {prefix}/sign-in`) per client IP
    /// address, so that junk codes cannot spend the app's `jscode2session`
    /// quota: past the limit it answers `429` with `retry_after` and does
    /// not call WeChat. Counted in this process's memory (each instance
    /// behind a load balancer allows its own share); clients whose address
    /// the adapter does not know share one bucket. Default: no limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wxpay_core::flow::RateLimit;
    /// # let builder = wxpay_core::flow::Payments::builder(wxpay_core::Config::new("wx1", "1", wxpay_core::ApiKey::new("k")));
    /// // 5 at once, then one every 10 seconds, per IP address
    /// let builder = builder.sign_in_rate_limit(RateLimit { burst: 5, every: Duration::from_secs(10) });
    /// ```
    pub fn sign_in_rate_limit(mut self, limit: super::RateLimit) -> Self {
        self.sign_in_limit = Some(limit);
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
        let default = self
            .default_api
            .unwrap_or(if self.v3.is_some() { Api::V3 } else { Api::V2 });
        if default == Api::V2 && !self.v2 {
            return Err(crate::config::ConfigError::Invalid {
                name: "WXPAY_API_VERSION",
                problem: "v2 asked for, but API v2 is turned off (no APIv2 key)".into(),
            }
            .into());
        }
        if default == Api::V3 && self.v3.is_none() {
            return Err(crate::config::ConfigError::Invalid {
                name: "WXPAY_API_VERSION",
                problem: "v3 asked for, but no v3 gateway configured (PaymentsBuilder::v3)".into(),
            }
            .into());
        }
        let gateways = super::gateway::Gateways {
            default,
            v2: self
                .v2
                .then(|| Arc::new(V2Gateway::new(client.clone())) as Arc<dyn Gateway>),
            v3: self.v3,
        };
        Ok(Payments {
            inner: Arc::new(Inner {
                client,
                gateways,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                checkout: self.checkout,
                events: self.events,
                sessions: self.sessions,
                admin: self.admin,
                sign_in_limit: self.sign_in_limit.map(super::limit::Limiter::new),
                trusted_proxies: self.trusted_proxies,
                warned_no_client_ip: std::sync::atomic::AtomicBool::new(false),
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
            sign_in_limit: None,
            trusted_proxies: None,
            v3: None,
            default_api: None,
            v2: true,
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

    /// The v2 client (jscode2session, and the v2 gateway's calls).
    pub fn client(&self) -> &Client<BoxTransport> {
        &self.inner.client
    }

    /// The API new orders are created with.
    pub fn default_api(&self) -> Api {
        self.inner.gateways.default
    }

    /// The gateway of `api`.
    ///
    /// # Errors
    /// [`PaymentsError::Unconfigured`] when that API is not configured (a v3
    /// order in a service without a v3 gateway).
    pub fn gateway(&self, api: Api) -> Result<&Arc<dyn Gateway>, PaymentsError> {
        self.inner.gateways.get(api).ok_or(match api {
            Api::V2 => PaymentsError::Unconfigured("the API v2 client"),
            Api::V3 => PaymentsError::Unconfigured(
                "the API v3 gateway (PaymentsBuilder::v3) for a v3 order",
            ),
        })
    }

    /// The gateway new orders are created through.
    pub(crate) fn default_gateway(&self) -> &Arc<dyn Gateway> {
        let g = &self.inner.gateways;
        // `build` refuses a default API without its gateway.
        g.get(g.default)
            .or(g.v2.as_ref())
            .expect("the default API's gateway is configured")
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

    /// A versioned read-decide-write: `decide` says what the order (as
    /// read) becomes, or `None` for nothing; the write applies only to the
    /// version read, and on a race `decide` runs again on the order as it
    /// is now. Starts from `start` when the caller has just read the order
    /// (and then reads it again before answering "nothing to do", in case
    /// that copy was old).
    /// Answers the order and whether this call changed it, or `None` when
    /// there is no such order.
    pub(crate) async fn update(
        &self,
        no: &OutTradeNo,
        start: Option<Order>,
        mut decide: impl FnMut(&Order) -> Option<(OrderState, OrderPatch)>,
    ) -> Result<Option<(Order, bool)>, StoreError> {
        let store = &self.inner.store;
        // A caller's copy may be old: "nothing to do" decided on it is
        // checked against the stored order once.
        let mut fresh = start.is_none();
        let mut order = match start {
            Some(o) => o,
            None => match store.get(no).await? {
                Some(o) => o,
                None => return Ok(None),
            },
        };
        for _ in 0..MAX_RACES {
            let Some((to, patch)) = decide(&order) else {
                if fresh {
                    return Ok(Some((order, false)));
                }
                fresh = true;
                match store.get(no).await? {
                    Some(now) if now.version != order.version => {
                        order = now;
                        continue;
                    }
                    Some(now) => return Ok(Some((now, false))),
                    None => return Ok(None),
                }
            };
            let t = Transition::new(&order, to, patch, now()).map_err(illegal)?;
            match store.transition(&t).await? {
                TransitionOutcome::Applied(o) => return Ok(Some((o, true))),
                TransitionOutcome::NotApplied(o) => {
                    order = o;
                    fresh = true;
                }
                TransitionOutcome::NotFound => return Ok(None),
            }
        }
        Err(raced(no))
    }
}
