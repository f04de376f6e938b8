//! The order record and its state machine.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// place the rules live.
    pub fn can_become(self, next: OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, next),
            (Created, Prepaid | Paid | Closed | Failed)
                // a fresh prepay_id after the 2-hour expiry
                | (Prepaid, Prepaid | Paid | Closed | Failed)
                // money is never dropped: a verified late payment is recorded (and flagged)
                | (Closed | Failed, Paid)
                | (Paid | PartiallyRefunded, Refunding)
                // a refund that closed or failed returns to where it was
                | (Refunding, Refunded | PartiallyRefunded | Paid)
        )
    }

    /// Whether the payment has been received (the money is ours or was refunded).
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

/// The refund currently in flight (one at a time per order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRefund {
    /// The merchant refund number.
    pub out_refund_no: String,
    /// The amount of this refund.
    pub refund_fee: Fen,
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
    /// The algorithm unifiedorder was signed with; notifies without
    /// `sign_type` are verified with it.
    pub sign_type: SignType,
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
    /// Sum of completed refunds.
    pub refunded_fee: Fen,
    /// The refund in flight.
    pub pending_refund: Option<PendingRefund>,
    /// Set when a human should look (e.g. payment on a closed order).
    pub attention: Option<String>,
    /// The business effect's progress.
    pub fulfilment: Fulfilment,
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
            prepay_id: None,
            code_url: None,
            prepay_expires_at: None,
            transaction_id: None,
            time_end: None,
            bank_type: None,
            cash_fee: None,
            refunded_fee: Fen(0),
            pending_refund: None,
            attention: None,
            fulfilment: Fulfilment::Pending,
            created_at: now,
            updated_at: now,
            synced_at: None,
        }
    }

    /// Applies a patch (every `Some` field overwrites) and the new state.
    /// Store implementations may use this after their compare-and-set check.
    pub fn apply(&mut self, to: OrderState, patch: &OrderPatch, at: DateTime<Utc>) {
        self.state = to;
        self.updated_at = at;
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
            pending_refund,
            attention,
            synced_at
        );
        if let Some(v) = patch.refunded_fee {
            self.refunded_fee = v;
        }
    }
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
    /// Completed refunds total.
    pub refunded_fee: Option<Fen>,
    /// The refund in flight.
    pub pending_refund: Option<Option<PendingRefund>>,
    /// Attention flag.
    pub attention: Option<Option<String>>,
    /// Last sync with WeChat.
    pub synced_at: Option<Option<DateTime<Utc>>>,
}

/// A compare-and-set request: if the order is in one of `from`, move it to
/// `to` and apply `patch`, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Which order.
    pub out_trade_no: OutTradeNo,
    /// The states it must be in for the change to apply.
    pub from: Vec<OrderState>,
    /// The new state (may equal the current one, e.g. a fresh prepay).
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
    /// Builds a transition, checking every `from → to` against the table.
    ///
    /// # Errors
    /// [`IllegalTransition`] naming the first forbidden pair.
    ///
    /// ```
    /// use wxpay_core::flow::{OrderState::*, OrderPatch, Transition};
    /// use wxpay_core::OutTradeNo;
    /// let no = OutTradeNo::new("A1").unwrap();
    /// let now = chrono::Utc::now();
    /// assert!(Transition::new(no.clone(), &[Created, Prepaid], Paid, OrderPatch::default(), now).is_ok());
    /// assert!(Transition::new(no, &[Refunded], Paid, OrderPatch::default(), now).is_err());
    /// ```
    pub fn new(
        out_trade_no: OutTradeNo,
        from: &[OrderState],
        to: OrderState,
        patch: OrderPatch,
        at: DateTime<Utc>,
    ) -> Result<Transition, IllegalTransition> {
        if let Some(bad) = from.iter().find(|f| !f.can_become(to)) {
            return Err(IllegalTransition { from: *bad, to });
        }
        Ok(Transition {
            out_trade_no,
            from: from.to_vec(),
            to,
            patch,
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderState::*;
    use super::*;

    #[test]
    fn the_transition_table_exactly() {
        let legal = [
            (Created, Prepaid),
            (Created, Paid),
            (Created, Closed),
            (Created, Failed),
            (Prepaid, Prepaid),
            (Prepaid, Paid),
            (Prepaid, Closed),
            (Prepaid, Failed),
            (Closed, Paid),
            (Failed, Paid),
            (Paid, Refunding),
            (PartiallyRefunded, Refunding),
            (Refunding, Refunded),
            (Refunding, PartiallyRefunded),
            (Refunding, Paid),
        ];
        for from in OrderState::ALL {
            for to in OrderState::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
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
            assert!(!Refunded.can_become(to));
            assert!(!to.can_become(Created));
        }
        assert!(!Paid.can_become(Closed));
        assert!(!Paid.can_become(Prepaid));
    }
}
