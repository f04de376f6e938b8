//! The order record and its state machine.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::gateway::Api;
use crate::{Fen, OutTradeNo, SignType, TradeType};

/// Where an order is in its life. Serialised in UPPERCASE.
///
/// ```text
/// CREATED ──► PREPAID ──► PAID ──► REFUNDING ──► REFUNDED
///    │  ╲        │ ▲        ▲          │    ╲
///    │   ╲       ▼ │        │          │     ► PARTIALLY_REFUNDED ──► REFUNDING
///    │    ► CLOSED / FAILED ┘ (a late payment is recorded, flagged)
///    └──────────────────────► PAID (notify raced ahead of unifiedorder's answer)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    /// Stored, unifiedorder not (yet) answered.
    Created,
    /// `prepay_id` / `code_url` obtained (valid 2 hours).
    Prepaid,
    /// Payment verified (notify or orderquery).
    Paid,
    /// Closed before payment (by us or by expiry).
    Closed,
    /// WeChat reported the payment failed, or unifiedorder was refused for good.
    Failed,
    /// A refund was accepted by WeChat and its result is pending.
    Refunding,
    /// Fully refunded.
    Refunded,
    /// Part of the amount refunded; more refunds are possible.
    PartiallyRefunded,
}

impl OrderState {
    /// Every state.
    pub const ALL: [OrderState; 8] = [
        OrderState::Created,
        OrderState::Prepaid,
        OrderState::Paid,
        OrderState::Closed,
        OrderState::Failed,
        OrderState::Refunding,
        OrderState::Refunded,
        OrderState::PartiallyRefunded,
    ];

    /// The UPPERCASE name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "CREATED",
            OrderState::Prepaid => "PREPAID",
            OrderState::Paid => "PAID",
            OrderState::Closed => "CLOSED",
            OrderState::Failed => "FAILED",
            OrderState::Refunding => "REFUNDING",
            OrderState::Refunded => "REFUNDED",
            OrderState::PartiallyRefunded => "PARTIALLY_REFUNDED",
        }
    }

    /// Reads an UPPERCASE name.
    pub fn parse(s: &str) -> Option<OrderState> {
        OrderState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The transition table: whether `self → next` is legal. This is the one
    /// place the rules live. Every state may "become" itself: a change of
    /// fields only (a fresh `prepay_id`, an attention flag, a refund's
    /// progress, a sync time).
    pub fn can_become(self, next: OrderState) -> bool {
        use OrderState::*;
        self == next
            || matches!(
                (self, next),
                (Created, Prepaid | Paid | Closed | Failed)
                    | (Prepaid, Paid | Closed | Failed)
                    // money is never dropped: a verified late payment is recorded (and flagged)
                    | (Closed | Failed, Paid)
                    // a payment learnt together with the refunds WeChat already made of it
                    | (Created | Prepaid | Closed | Failed, Refunding | Refunded | PartiallyRefunded)
                    // the refund ledger decides: refunds in flight, settled in part or in full
                    | (Paid, Refunding | Refunded | PartiallyRefunded)
                    | (Refunding, Paid | Refunded | PartiallyRefunded)
                    | (PartiallyRefunded, Refunding | Refunded)
                    // a refund WeChat reports in flight beyond what settled (flagged)
                    | (Refunded, Refunding)
            )
    }

    /// Whether the payment has been received (the money is ours or was
    /// refunded, in part or in full). Not the same as "the goods are due":
    /// see [`Order::entitled`].
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderState::Paid
                | OrderState::Refunding
                | OrderState::Refunded
                | OrderState::PartiallyRefunded
        )
    }

    /// Whether the order awaits payment.
    pub fn is_open(self) -> bool {
        matches!(self, OrderState::Created | OrderState::Prepaid)
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one refund is. Serialised in UPPERCASE.
///
/// ```text
/// REQUESTED ──► PROCESSING ──► SUCCESS
///   │   ▲  ╲         │    ╲──► CLOSED
///   │   │   ► UNKNOWN ┘    ╲─► ABNORMAL ──► SUCCESS | CLOSED
///   ▼   │   (settled by refundquery)
/// REFUSED (WeChat refused the request for good; the same number may be
///          sent again, and a verified report that WeChat took it after all
///          moves it on, flagged)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum RefundState {
    /// Recorded (its amount reserved) and being sent to WeChat.
    Requested,
    /// WeChat accepted it; the money is on its way.
    Processing,
    /// The answer was ambiguous (timeout, transport failure, an answer that
    /// failed verification, an unknown code): it may or may not have been
    /// accepted. Its amount stays reserved; refundquery settles it.
    Unknown,
    /// Refunded (WeChat's `SUCCESS`).
    Success,
    /// Closed by WeChat (`REFUNDCLOSE`): nothing was refunded; the amount is free again.
    Closed,
    /// Abnormal (`CHANGE`): the money could not reach the payer; a person
    /// settles it in the merchant platform. Its amount stays reserved.
    Abnormal,
    /// WeChat refused the request with a definite, verified answer: nothing
    /// was refunded; the amount is free again, and the same refund number
    /// may be sent again.
    Refused,
}

impl RefundState {
    /// Every state.
    pub const ALL: [RefundState; 7] = [
        RefundState::Requested,
        RefundState::Processing,
        RefundState::Unknown,
        RefundState::Success,
        RefundState::Closed,
        RefundState::Abnormal,
        RefundState::Refused,
    ];

    /// The UPPERCASE name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "REQUESTED",
            RefundState::Processing => "PROCESSING",
            RefundState::Unknown => "UNKNOWN",
            RefundState::Success => "SUCCESS",
            RefundState::Closed => "CLOSED",
            RefundState::Abnormal => "ABNORMAL",
            RefundState::Refused => "REFUSED",
        }
    }

    /// Reads an UPPERCASE name.
    pub fn parse(s: &str) -> Option<RefundState> {
        RefundState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether its amount counts against what is left to refund: every
    /// state but `CLOSED` and `REFUSED`.
    pub fn reserves(self) -> bool {
        !matches!(self, RefundState::Closed | RefundState::Refused)
    }

    /// Whether it awaits WeChat's outcome (what refundquery settles):
    /// `REQUESTED`, `PROCESSING`, `UNKNOWN`, and `ABNORMAL` (which a person
    /// may still turn into a refund in the merchant platform).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RefundState::Requested
                | RefundState::Processing
                | RefundState::Unknown
                | RefundState::Abnormal
        )
    }

    /// The refund state table: whether `self → next` is legal.
    pub fn can_become(self, next: RefundState) -> bool {
        use RefundState::*;
        self == next
            || matches!(
                (self, next),
                (
                    Requested,
                    Processing | Unknown | Success | Closed | Abnormal | Refused
                ) | (Unknown, Processing | Success | Closed | Abnormal | Refused)
                    | (Processing, Success | Closed | Abnormal)
                    | (Abnormal, Success | Closed)
                    // sent again; or WeChat reports it taken after all
                    // (a verified report outranks an answer: flagged)
                    | (Refused, Requested | Processing | Success | Closed | Abnormal)
            )
    }
}

impl fmt::Display for RefundState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who started a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum RefundSource {
    /// This app ([`Payments::refund`](super::Payments::refund)).
    App,
    /// Found in a refund notify or a refundquery answer: made elsewhere
    /// (the merchant platform, another system). Flagged for attention.
    Found,
}

impl RefundSource {
    /// The UPPERCASE name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundSource::App => "APP",
            RefundSource::Found => "FOUND",
        }
    }

    /// Reads an UPPERCASE name.
    pub fn parse(s: &str) -> Option<RefundSource> {
        [RefundSource::App, RefundSource::Found]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One refund of an order, as the ledger keeps it (keyed by `out_refund_no`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The merchant refund number.
    pub out_refund_no: String,
    /// The amount.
    pub refund_fee: Fen,
    /// Where it is.
    pub state: RefundState,
    /// WeChat's refund number, once known.
    pub refund_id: Option<String>,
    /// Who started it.
    pub source: RefundSource,
    /// The app's [`on_refunded`](super::PaymentEvents::on_refunded) for it
    /// (relevant once it is `SUCCESS`).
    pub effect: Fulfilment,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Refund {
    /// A refund in `state`, recorded at `now`.
    pub fn new(
        out_refund_no: impl Into<String>,
        refund_fee: Fen,
        state: RefundState,
        source: RefundSource,
        now: DateTime<Utc>,
    ) -> Refund {
        Refund {
            out_refund_no: out_refund_no.into(),
            refund_fee,
            state,
            refund_id: None,
            source,
            effect: Fulfilment::Pending,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Why an order is flagged for a person. Serialised in UPPERCASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AttentionKind {
    /// Paid after the order was closed or had failed.
    LatePayment,
    /// A second `transaction_id` for a paid order: paid twice.
    DoublePayment,
    /// A verified payment report with another amount than the order's.
    AmountMismatch,
    /// A verified payment report in another currency than the order's.
    CurrencyMismatch,
    /// A refund this app did not start (made in the merchant platform, or
    /// elsewhere).
    RefundFound,
    /// A refund that WeChat settled with another amount than requested.
    RefundAmountMismatch,
    /// A refund WeChat reports abnormal (`CHANGE`).
    RefundAbnormal,
    /// The daily reconciliation found the order differing from WeChat's
    /// bill in a way no query settled (see
    /// [`Payments::reconcile_day`](super::Payments::reconcile_day)).
    BillMismatch,
    /// Anything else (also attention notes written by earlier versions).
    Other,
}

impl AttentionKind {
    /// The UPPERCASE name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionKind::LatePayment => "LATE_PAYMENT",
            AttentionKind::DoublePayment => "DOUBLE_PAYMENT",
            AttentionKind::AmountMismatch => "AMOUNT_MISMATCH",
            AttentionKind::CurrencyMismatch => "CURRENCY_MISMATCH",
            AttentionKind::RefundFound => "REFUND_FOUND",
            AttentionKind::RefundAmountMismatch => "REFUND_AMOUNT_MISMATCH",
            AttentionKind::RefundAbnormal => "REFUND_ABNORMAL",
            AttentionKind::BillMismatch => "BILL_MISMATCH",
            AttentionKind::Other => "OTHER",
        }
    }
}

/// One reason to look at an order: recorded in the store with it, and
/// reported to [`PaymentEvents::on_attention`](super::PaymentEvents::on_attention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    /// What kind of case.
    pub kind: AttentionKind,
    /// What was seen (amounts, numbers; never secrets).
    pub detail: String,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// When a person said they had dealt with it
    /// ([`Payments::acknowledge`](super::Payments::acknowledge)); `None`
    /// while it is open. The case stays recorded either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
}

impl Attention {
    /// A flag recorded at `at`.
    pub fn new(kind: AttentionKind, detail: impl Into<String>, at: DateTime<Utc>) -> Attention {
        Attention {
            kind,
            detail: detail.into(),
            at,
            acknowledged_at: None,
        }
    }

    /// Whether it records the same case as `other` (kind and detail; the
    /// times may differ): a case is recorded once however often it is seen.
    pub fn same_case(&self, other: &Attention) -> bool {
        self.kind == other.kind && self.detail == other.detail
    }

    /// Merges `new` into `cases` as every store must: a new case is
    /// appended; a case recorded already is kept as it is, except that an
    /// acknowledgment (`acknowledged_at` set in `new`) is recorded on an
    /// open case. An acknowledged case is never reopened.
    pub fn merge_into(cases: &mut Vec<Attention>, new: &Attention) {
        match cases.iter_mut().find(|x| x.same_case(new)) {
            Some(x) => {
                if x.acknowledged_at.is_none() && new.acknowledged_at.is_some() {
                    x.acknowledged_at = new.acknowledged_at;
                }
            }
            None => cases.push(new.clone()),
        }
    }
}

/// Whether the app's business effect of a paid order has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Fulfilment {
    /// Not run yet (or the order is not paid).
    Pending,
    /// Claimed by a worker until this instant (a lease: if the worker dies,
    /// another may claim it after it passes).
    Claimed {
        /// Lease end.
        until: DateTime<Utc>,
    },
    /// Done.
    Done {
        /// When it finished.
        at: DateTime<Utc>,
    },
    /// Held for a person: it does not run until the app says so (an
    /// attention case under [`AttentionPolicy::Hold`](super::AttentionPolicy::Hold),
    /// e.g. a payment after the order was closed).
    Held,
}

impl Fulfilment {
    /// Whether a worker may claim it at `now`: pending, or claimed with a
    /// lease that ended before `now`.
    pub fn claimable(self, now: DateTime<Utc>) -> bool {
        match self {
            Fulfilment::Pending => true,
            Fulfilment::Claimed { until } => until < now,
            Fulfilment::Done { .. } | Fulfilment::Held => false,
        }
    }

    /// Whether a worker holds it at `now` (claimed, lease not over).
    pub fn is_running(self, now: DateTime<Utc>) -> bool {
        matches!(self, Fulfilment::Claimed { until } if until >= now)
    }
}

/// A claim on an effect: the lease its holder got. Completing the effect
/// needs the same claim, so a worker whose lease ran out (and whose effect
/// another worker claimed since) cannot mark it done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The lease end.
    pub until: DateTime<Utc>,
}

/// One order, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The merchant order number (primary key).
    pub out_trade_no: OutTradeNo,
    /// Current state.
    pub state: OrderState,
    /// The authoritative amount, priced by the app.
    pub total_fee: Fen,
    /// The goods description sent as `body`.
    pub body: String,
    /// `JSAPI` or `NATIVE`.
    pub trade_type: TradeType,
    /// The payer (JSAPI).
    pub openid: Option<String>,
    /// The product (NATIVE).
    pub product_id: Option<String>,
    /// Merchant data echoed by WeChat.
    pub attach: Option<String>,
    /// The app's own user id, for access checks on order routes.
    pub owner: Option<String>,
    /// The algorithm unifiedorder was signed with; v2 notifies without
    /// `sign_type` are verified with it (unused by a v3 order).
    pub sign_type: SignType,
    /// The API the order was created with: it is queried, closed and
    /// refunded through that API only.
    pub api: Api,
    /// From unifiedorder (JSAPI).
    pub prepay_id: Option<String>,
    /// From unifiedorder (NATIVE).
    pub code_url: Option<String>,
    /// When `prepay_id` / `code_url` stop working (2 hours after issue).
    pub prepay_expires_at: Option<DateTime<Utc>>,
    /// WeChat's order number, once paid.
    pub transaction_id: Option<String>,
    /// Payment time as WeChat sent it (`yyyyMMddHHmmss`, Beijing).
    pub time_end: Option<String>,
    /// Payer's bank.
    pub bank_type: Option<String>,
    /// Cash actually paid (total minus coupons).
    pub cash_fee: Option<Fen>,
    /// Sum of the successful refunds (kept equal to the ledger's).
    pub refunded_fee: Fen,
    /// The refund ledger: every refund of this order, oldest first.
    pub refunds: Vec<Refund>,
    /// Why a person should look (a late or double payment, an amount
    /// mismatch, a refund made elsewhere…), oldest first; each case once.
    pub attention: Vec<Attention>,
    /// The business effect's progress ([`PaymentEvents::on_paid`](super::PaymentEvents::on_paid)).
    pub fulfilment: Fulfilment,
    /// Bumped by the store on every change; a [`Transition`] applies only
    /// to the version it was made from.
    pub version: u64,
    /// When the order was stored.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last time WeChat was asked about this order (for rate-limiting sync).
    pub synced_at: Option<DateTime<Utc>>,
}

impl Order {
    /// A new `CREATED` order.
    pub fn new(
        out_trade_no: OutTradeNo,
        total_fee: Fen,
        body: impl Into<String>,
        trade_type: TradeType,
        sign_type: SignType,
        now: DateTime<Utc>,
    ) -> Order {
        Order {
            out_trade_no,
            state: OrderState::Created,
            total_fee,
            body: body.into(),
            trade_type,
            openid: None,
            product_id: None,
            attach: None,
            owner: None,
            sign_type,
            api: Api::V2,
            prepay_id: None,
            code_url: None,
            prepay_expires_at: None,
            transaction_id: None,
            time_end: None,
            bank_type: None,
            cash_fee: None,
            refunded_fee: Fen(0),
            refunds: Vec::new(),
            attention: Vec::new(),
            fulfilment: Fulfilment::Pending,
            version: 0,
            created_at: now,
            updated_at: now,
            synced_at: None,
        }
    }

    /// Applies a patch (every `Some` field overwrites, refunds are upserted
    /// by number, attention cases appended unless recorded already) and the
    /// new state, and bumps the version. Store implementations may use this
    /// after their compare-and-set check.
    pub fn apply(&mut self, to: OrderState, patch: &OrderPatch, at: DateTime<Utc>) {
        self.state = to;
        self.updated_at = at;
        self.version += 1;
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = &patch.$f { self.$f = v.clone(); } )*};
        }
        set!(
            prepay_id,
            code_url,
            prepay_expires_at,
            transaction_id,
            time_end,
            bank_type,
            cash_fee,
            synced_at
        );
        if let Some(v) = patch.refunded_fee {
            self.refunded_fee = v;
        }
        if let Some(f) = patch.fulfilment {
            self.fulfilment = f;
        }
        for r in &patch.refunds {
            match self
                .refunds
                .iter_mut()
                .find(|x| x.out_refund_no == r.out_refund_no)
            {
                Some(x) => *x = r.clone(),
                None => self.refunds.push(r.clone()),
            }
        }
        for a in &patch.attention {
            Attention::merge_into(&mut self.attention, a);
        }
    }

    /// The refund with this number.
    pub fn refund(&self, out_refund_no: &str) -> Option<&Refund> {
        self.refunds
            .iter()
            .find(|r| r.out_refund_no == out_refund_no)
    }

    /// The sum of the successful refunds.
    pub fn refunded(&self) -> Fen {
        sum(self
            .refunds
            .iter()
            .filter(|r| r.state == RefundState::Success))
    }

    /// The sum of every refund that counts against the amount paid (all but
    /// closed and refused ones).
    pub fn reserved(&self) -> Fen {
        sum(self.refunds.iter().filter(|r| r.state.reserves()))
    }

    /// What may still be refunded: the amount minus [`reserved`](Order::reserved).
    pub fn refundable(&self) -> Fen {
        Fen(self.total_fee.0.saturating_sub(self.reserved().0))
    }

    /// Whether the goods are due: paid, and no refund in flight or
    /// settled (state `PAID`). This is what `on_paid` runs for.
    pub fn entitled(&self) -> bool {
        self.state == OrderState::Paid
    }
}

/// A sum of refund amounts; saturates (amounts are checked against the
/// order's before they are recorded, so it never does in practice).
fn sum<'a>(refunds: impl Iterator<Item = &'a Refund>) -> Fen {
    Fen(refunds.fold(0u64, |acc, r| acc.saturating_add(r.refund_fee.0)))
}

/// Field changes carried by a transition. `None` leaves a field as it is;
/// `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::option_option)]
pub struct OrderPatch {
    /// New `prepay_id`.
    pub prepay_id: Option<Option<String>>,
    /// New `code_url`.
    pub code_url: Option<Option<String>>,
    /// New prepay expiry.
    pub prepay_expires_at: Option<Option<DateTime<Utc>>>,
    /// WeChat's order number.
    pub transaction_id: Option<Option<String>>,
    /// Payment time.
    pub time_end: Option<Option<String>>,
    /// Payer's bank.
    pub bank_type: Option<Option<String>>,
    /// Cash paid.
    pub cash_fee: Option<Option<Fen>>,
    /// Successful refunds total.
    pub refunded_fee: Option<Fen>,
    /// Refunds to record: each replaces the ledger's refund with its
    /// number, or is added.
    pub refunds: Vec<Refund>,
    /// Attention cases to add (a case recorded already is not added again).
    pub attention: Vec<Attention>,
    /// New fulfilment (e.g. the payment's winner claims it in the same write).
    pub fulfilment: Option<Fulfilment>,
    /// Last sync with WeChat.
    pub synced_at: Option<Option<DateTime<Utc>>>,
}

/// A compare-and-set request: if the order is still in state `from` at
/// `version` (unchanged since it was read), move it to `to` and apply
/// `patch`, atomically, bumping the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Which order.
    pub out_trade_no: OutTradeNo,
    /// The state it was read in.
    pub from: OrderState,
    /// The version it was read at.
    pub version: u64,
    /// The new state (may equal the current one: a change of fields only).
    pub to: OrderState,
    /// Field changes.
    pub patch: OrderPatch,
    /// The change's time (`updated_at`).
    pub at: DateTime<Utc>,
}

/// A transition that the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal order transition {from} → {to}")]
pub struct IllegalTransition {
    /// The state moved from.
    pub from: OrderState,
    /// The state moved to.
    pub to: OrderState,
}

impl Transition {
    /// A transition of `order` as read (its state and version) to `to`,
    /// checked against the table.
    ///
    /// # Errors
    /// [`IllegalTransition`] when `order.state → to` is forbidden.
    ///
    /// ```
    /// use wxpay_core::flow::{Order, OrderState::*, OrderPatch, Transition};
    /// use wxpay_core::{Fen, OutTradeNo, SignType, TradeType};
    /// let now = chrono::Utc::now();
    /// let mut order = Order::new(OutTradeNo::new("A1").unwrap(), Fen(1), "x", TradeType::Jsapi, SignType::Md5, now);
    /// let t = Transition::new(&order, Paid, OrderPatch::default(), now).unwrap();
    /// assert_eq!((t.from, t.version), (Created, 0));
    /// order.state = Refunded;
    /// assert!(Transition::new(&order, Paid, OrderPatch::default(), now).is_err());
    /// ```
    pub fn new(
        order: &Order,
        to: OrderState,
        patch: OrderPatch,
        at: DateTime<Utc>,
    ) -> Result<Transition, IllegalTransition> {
        if !order.state.can_become(to) {
            return Err(IllegalTransition {
                from: order.state,
                to,
            });
        }
        Ok(Transition {
            out_trade_no: order.out_trade_no.clone(),
            from: order.state,
            version: order.version,
            to,
            patch,
            at,
        })
    }

    /// Whether `order` is as this transition was made from (same state
    /// and version): the store's compare-and-set condition.
    pub fn matches(&self, order: &Order) -> bool {
        order.state == self.from && order.version == self.version
    }
}

#[cfg(test)]
mod tests {
    use super::OrderState::*;
    use super::*;

    #[test]
    fn the_transition_table_exactly() {
        let refunded = [Refunding, Refunded, PartiallyRefunded];
        let mut legal = vec![
            (Created, Prepaid),
            (Created, Paid),
            (Created, Closed),
            (Created, Failed),
            (Prepaid, Paid),
            (Prepaid, Closed),
            (Prepaid, Failed),
            (Closed, Paid),
            (Failed, Paid),
            (Refunding, Paid),
            (PartiallyRefunded, Refunding),
            (PartiallyRefunded, Refunded),
            (Refunded, Refunding),
        ];
        for from in [Created, Prepaid, Closed, Failed, Paid, Refunding] {
            for to in refunded {
                if from != to {
                    legal.push((from, to));
                }
            }
        }
        for from in OrderState::ALL {
            for to in OrderState::ALL {
                assert_eq!(
                    from.can_become(to),
                    from == to || legal.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
    }

    #[test]
    fn refund_states_money_rules() {
        use RefundState as R;
        for s in R::ALL {
            assert_eq!(R::parse(s.as_str()), Some(s));
            // Only a definite outcome frees the amount.
            assert_eq!(s.reserves(), !matches!(s, R::Closed | R::Refused), "{s}");
            // Success and Closed are final.
            for t in R::ALL {
                if matches!(s, R::Success | R::Closed) {
                    assert_eq!(s.can_become(t), s == t, "{s} → {t}");
                }
            }
            // Nothing goes back to REQUESTED but a refused request sent again.
            assert_eq!(
                s.can_become(R::Requested),
                matches!(s, R::Requested | R::Refused)
            );
        }
        assert!(!R::Processing.can_become(R::Refused));
        assert!(R::Unknown.can_become(R::Success));
    }

    fn order_with(refunds: &[(u64, RefundState)]) -> Order {
        let now = Utc::now();
        let mut o = Order::new(
            OutTradeNo::new("R1").unwrap(),
            Fen(100),
            "x",
            TradeType::Jsapi,
            SignType::Md5,
            now,
        );
        for (i, (fee, state)) in refunds.iter().enumerate() {
            o.refunds.push(Refund::new(
                format!("r{i}"),
                Fen(*fee),
                *state,
                RefundSource::App,
                now,
            ));
        }
        o
    }

    #[test]
    fn ledger_sums() {
        use RefundState as R;
        let o = order_with(&[
            (10, R::Success),
            (20, R::Processing),
            (30, R::Closed),
            (5, R::Refused),
            (7, R::Unknown),
            (3, R::Abnormal),
        ]);
        assert_eq!(o.refunded(), Fen(10));
        assert_eq!(o.reserved(), Fen(10 + 20 + 7 + 3));
        assert_eq!(o.refundable(), Fen(60));
    }

    #[test]
    fn apply_upserts_refunds_dedupes_attention_and_bumps_the_version() {
        let mut o = order_with(&[(10, RefundState::Processing)]);
        let now = o.created_at;
        let mut r = o.refunds[0].clone();
        r.state = RefundState::Success;
        let flag = Attention::new(AttentionKind::RefundFound, "r9", now);
        let patch = OrderPatch {
            refunds: vec![
                r.clone(),
                Refund::new("r9", Fen(1), RefundState::Success, RefundSource::Found, now),
            ],
            attention: vec![flag.clone()],
            ..OrderPatch::default()
        };
        o.apply(OrderState::PartiallyRefunded, &patch, now);
        o.apply(OrderState::PartiallyRefunded, &patch, now);
        assert_eq!(o.version, 2);
        assert_eq!(o.refunds.len(), 2);
        assert_eq!(o.refunds[0], r);
        assert_eq!(o.attention, vec![flag]);
    }

    #[test]
    fn names_round_trip_and_serialise_uppercase() {
        for s in OrderState::ALL {
            assert_eq!(OrderState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(OrderState::parse("paid"), None);
    }

    #[test]
    fn refunded_is_terminal_and_paid_never_goes_back() {
        for to in OrderState::ALL {
            // Only a refund found in flight reopens a refunded order.
            assert_eq!(Refunded.can_become(to), matches!(to, Refunded | Refunding));
            assert_eq!(to.can_become(Created), to == Created);
        }
        assert!(!Paid.can_become(Closed));
        assert!(!Paid.can_become(Prepaid));
    }
}
