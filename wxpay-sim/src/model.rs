//! Public value types: configuration, fault settings, order snapshots and
//! the notify delivery log.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wxpay_core::{ApiKey, AppSecret, Fen, RefundStatus, SignType, TradeState};

/// The merchant the simulator plays WeChat for, and its clock.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The mini-program AppID bound to `mch_id`.
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The API v2 key: checks request signatures, signs replies and notifies,
    /// and (through its MD5) encrypts refund notifies.
    pub api_key: ApiKey,
    /// The mini-program AppSecret `jscode2session` checks.
    pub app_secret: AppSecret,
    /// Multiplies every time rule: notify retry delays, the 5-minute
    /// closeorder rule, the 2-hour prepay expiry, the refund processing
    /// ([`SimConfig::refund_delay`]) and the 5-minute login-code lifetime
    /// (which never drops below 10 real seconds, so fast tests do not race
    /// it). `0.001` turns a 15 s retry into 15 ms.
    pub time_scale: f64,
    /// Where refund notifies go when the refund request has no `notify_url`
    /// (the URL "configured in the merchant platform").
    pub refund_notify_url: Option<String>,
    /// How long an accepted refund stays `PROCESSING` before it reaches its
    /// final status ([`Faults::refund_result`]) and its refund notify is
    /// sent. A WeChat-side duration, scaled by [`SimConfig::time_scale`]
    /// like every time rule; default one minute. [`Duration::ZERO`] makes
    /// refunds final as soon as they are accepted, before the refund
    /// answer is sent.
    pub refund_delay: Duration,
}

impl SimConfig {
    /// Fixed test credentials (AppID `wx5f6d3e2c1b0a9f8e`, mch_id
    /// `1900000109`) at real speed. Same as [`Default`].
    pub fn test() -> Self {
        Self {
            appid: "wx5f6d3e2c1b0a9f8e".into(),
            mch_id: "1900000109".into(),
            api_key: ApiKey::new("5imu1at0rApiKey0000000000000000k"),
            app_secret: AppSecret::new("5imu1at0rAppSecret00000000000000"),
            time_scale: 1.0,
            refund_notify_url: None,
            refund_delay: Duration::from_secs(60),
        }
    }

    /// Sets [`SimConfig::time_scale`].
    ///
    /// ```
    /// let c = wxpay_sim::SimConfig::test().with_time_scale(0.001);
    /// assert_eq!(c.time_scale, 0.001);
    /// ```
    pub fn with_time_scale(mut self, time_scale: f64) -> Self {
        self.time_scale = time_scale;
        self
    }

    /// Sets [`SimConfig::refund_notify_url`].
    pub fn with_refund_notify_url(mut self, url: impl Into<String>) -> Self {
        self.refund_notify_url = Some(url.into());
        self
    }

    /// Sets [`SimConfig::refund_delay`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = wxpay_sim::SimConfig::test()
    ///     .with_time_scale(0.001)
    ///     .with_refund_delay(Duration::from_secs(10));
    /// assert_eq!(c.scaled(c.refund_delay), Duration::from_millis(10));
    /// ```
    pub fn with_refund_delay(mut self, delay: Duration) -> Self {
        self.refund_delay = delay;
        self
    }

    /// A real-world duration scaled by [`SimConfig::time_scale`].
    pub fn scaled(&self, real: Duration) -> Duration {
        real.mul_f64(self.time_scale)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::test()
    }
}

/// Fault injection, set with [`crate::SimHandle::set_faults`] or
/// `POST /sim/faults`. Missing JSON fields take their default (no fault).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Record payment-notify attempts but never send them (as if the
    /// merchant were unreachable). The retry schedule keeps running, so
    /// turning this off lets a later attempt through. Refund notifies have
    /// their own switch, [`Faults::drop_refund_notifies`].
    pub drop_notifies: bool,
    /// [`Faults::drop_notifies`] for refund notifies.
    pub drop_refund_notifies: bool,
    /// Send each notify attempt this many extra times, concurrently.
    pub duplicate_notifies: u32,
    /// Probability (0.0–1.0) that a pay-API call answers
    /// `result_code=FAIL`, `err_code=SYSTEMERROR` without changing state
    /// (`jscode2session` answers `errcode -1`).
    pub system_error_rate: f64,
    /// Delay before answering every pay-API and `jscode2session` call.
    pub delay_ms: u64,
    /// Probability (0.0–1.0) that a signed pay-API answer (every `/pay/*`
    /// and `/secapi/pay/refund` answer with `return_code=SUCCESS`) is signed
    /// with a wrong key, as if it were corrupted in transit. The call itself
    /// still takes effect: an order is created, a refund accepted.
    pub bad_answer_signature_rate: f64,
    /// How the refunds accepted from now on end, once
    /// [`SimConfig::refund_delay`] has passed. Refunds already accepted keep
    /// the outcome they were accepted with.
    pub refund_result: RefundResult,
}

/// The final status of a refund (`Faults::refund_result`, JSON
/// `"SUCCESS"`, `"CHANGE"` or `"REFUNDCLOSE"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RefundResult {
    /// The money reaches the user: `SUCCESS`, with a `success_time`.
    #[default]
    #[serde(rename = "SUCCESS")]
    Success,
    /// Refund abnormal (say the payer's card was cancelled): `CHANGE`, for
    /// the merchant to settle by hand. The amount stays used up.
    #[serde(rename = "CHANGE")]
    Change,
    /// The refund is closed without money moving: `REFUNDCLOSE`. Its amount
    /// can be refunded again, under another `out_refund_no`.
    #[serde(rename = "REFUNDCLOSE")]
    RefundClose,
}

impl RefundResult {
    /// The `refund_status` it ends in.
    pub fn status(self) -> RefundStatus {
        match self {
            RefundResult::Success => RefundStatus::Success,
            RefundResult::Change => RefundStatus::Change,
            RefundResult::RefundClose => RefundStatus::RefundClose,
        }
    }
}

/// Which notify an attempt carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// The payment-result notify (signed XML).
    Payment,
    /// The refund-result notify (encrypted `req_info`).
    Refund,
}

/// One delivery attempt of a notify (an entry of `GET /sim/notifies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyAttempt {
    /// The order the notify is about.
    pub out_trade_no: String,
    /// The refund, for refund notifies.
    pub out_refund_no: Option<String>,
    /// Payment or refund.
    pub kind: NotifyKind,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// Whether this was an extra copy sent by `duplicate_notifies`.
    pub duplicate: bool,
    /// Where it was sent.
    pub url: String,
    /// The XML body that was (or would have been) sent.
    pub body: String,
    /// The HTTP status of the reply, if one came.
    pub status: Option<u16>,
    /// The reply body, if one came.
    pub reply: Option<String>,
    /// Why no usable reply came (connection error, timeout, dropped).
    pub error: Option<String>,
    /// Whether the reply was the SUCCESS XML, which ends the retries.
    pub delivered: bool,
}

/// A snapshot of a refund (part of [`SimOrder`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRefund {
    /// The merchant refund number.
    pub out_refund_no: String,
    /// WeChat's refund number.
    pub refund_id: String,
    /// The amount refunded.
    pub refund_fee: Fen,
    /// `PROCESSING`, then its final status: `SUCCESS`, `CHANGE` or
    /// `REFUNDCLOSE` (see [`Faults::refund_result`]).
    pub refund_status: RefundStatus,
    /// Where the refund notify goes, if anywhere.
    pub notify_url: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss` (Beijing) once the refund succeeded.
    pub success_time: Option<String>,
    /// Who asked for it: the merchant's API call or the merchant platform
    /// ([`crate::SimHandle::refund_outside`]).
    pub refund_request_source: RefundSource,
}

/// Where a refund was asked for (`refund_request_source` in the refund
/// notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundSource {
    /// `/secapi/pay/refund`.
    #[serde(rename = "API")]
    Api,
    /// The merchant platform, outside the app (`POST /sim/refund`).
    #[serde(rename = "VENDOR_PLATFORM")]
    VendorPlatform,
}

impl RefundSource {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundSource::Api => "API",
            RefundSource::VendorPlatform => "VENDOR_PLATFORM",
        }
    }
}

/// A refund made outside the app, on the merchant platform
/// ([`crate::SimHandle::refund_outside`], and the JSON body of
/// `POST /sim/refund`). WeChat's refund rules apply as for
/// `/secapi/pay/refund`; the order's `total_fee` is known.
///
/// ```
/// use wxpay_core::Fen;
/// use wxpay_sim::OutsideRefund;
///
/// let r = OutsideRefund::new("order-1", Fen(30)).with_out_refund_no("desk-1");
/// let json = r#"{"out_trade_no": "order-1", "refund_fee": 30, "out_refund_no": "desk-1"}"#;
/// assert_eq!(serde_json::from_str::<OutsideRefund>(json).unwrap(), r);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideRefund {
    /// The paid order to refund.
    pub out_trade_no: String,
    /// The amount to refund now: more than zero and at most what is left.
    pub refund_fee: Fen,
    /// The refund number; the same number again is the same refund. When
    /// absent, the new refund's `refund_id` is used.
    #[serde(default)]
    pub out_refund_no: Option<String>,
    /// Where its refund notify goes; when absent,
    /// [`SimConfig::refund_notify_url`].
    #[serde(default)]
    pub notify_url: Option<String>,
}

impl OutsideRefund {
    /// A refund of `refund_fee` from the order, numbered and notified by
    /// default.
    pub fn new(out_trade_no: impl Into<String>, refund_fee: Fen) -> Self {
        Self {
            out_trade_no: out_trade_no.into(),
            refund_fee,
            out_refund_no: None,
            notify_url: None,
        }
    }

    /// Sets [`OutsideRefund::out_refund_no`].
    pub fn with_out_refund_no(mut self, out_refund_no: impl Into<String>) -> Self {
        self.out_refund_no = Some(out_refund_no.into());
        self
    }

    /// Sets [`OutsideRefund::notify_url`].
    pub fn with_notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }
}

/// A snapshot of an order (`GET /sim/orders/{out_trade_no}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrder {
    /// The merchant order number.
    pub out_trade_no: String,
    /// The current prepay session.
    pub prepay_id: String,
    /// `JSAPI`, `NATIVE`, …
    pub trade_type: String,
    /// What orderquery would answer.
    pub trade_state: TradeState,
    /// The order amount.
    pub total_fee: Fen,
    /// The payer (JSAPI: from the order; NATIVE: set when paid).
    pub openid: Option<String>,
    /// NATIVE product id.
    pub product_id: Option<String>,
    /// Merchant data echoed in queries and notifies.
    pub attach: Option<String>,
    /// Payment notify URL.
    pub notify_url: String,
    /// The algorithm of the unifiedorder call, used for the notify.
    pub sign_type: SignType,
    /// WeChat's order number once paid.
    pub transaction_id: Option<String>,
    /// `yyyyMMddHHmmss` (Beijing) once paid.
    pub time_end: Option<String>,
    /// Refunds, oldest first.
    pub refunds: Vec<SimRefund>,
}

/// What the user does on the pay sheet (`POST /sim/pay`'s `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PayResult {
    /// The payment goes through; the payment notify is sent.
    #[default]
    #[serde(rename = "SUCCESS")]
    Success,
    /// The bank refuses; the order ends in `PAYERROR` and no notify is sent.
    #[serde(rename = "PAYERROR")]
    PayError,
}
