//! What an event does to an order, as pure functions of `(order, event)`.
//!
//! Every money decision of the flow lives here: a verified payment report
//! (notify or orderquery), a refund request, WeChat's answer to it, a
//! refund report (refund notify or refundquery), and which effects are due.
//! None of them does I/O or reads a clock: the caller passes the order as
//! it read it and `now`, and writes the answer as one versioned
//! [`Transition`](super::Transition) (so a stale read cannot win). The
//! protocol is not known here: v2 and v3 gateways both turn their messages
//! into these reports.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Attention, AttentionKind, Claim, Fulfilment, Order, OrderPatch, OrderState, Refund,
    RefundSource, RefundState,
};
use crate::{Fen, RefundStatus};

/// The currency every order is priced in.
pub const CURRENCY: &str = "CNY";

/// A report's `fee_type` as [`PaymentReport::fee_type`] wants it: `None`
/// for none or CNY (no copy on the notify path), the value otherwise.
pub fn foreign_currency(fee_type: Option<&str>) -> Option<String> {
    fee_type.filter(|f| *f != CURRENCY).map(str::to_owned)
}

/// The most refunds WeChat takes for one order.
pub const MAX_REFUNDS: usize = 50;

/// What happens to a payment that needs a person (a late payment: paid
/// after the order was closed or had failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AttentionPolicy {
    /// Record it, flag it, and hold the fulfilment until a person releases
    /// it ([`Payments::release_hold`](super::Payments::release_hold)) or
    /// refunds the order. The default.
    #[default]
    Hold,
    /// Record it, flag it, and fulfil as for any payment.
    Fulfil,
    /// Record it, flag it, hold the fulfilment and refund the whole amount
    /// at once.
    Refund,
}

/// Where a report came from (for the attention details and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A verified notify.
    Notify,
    /// A verified query answer.
    Query,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Notify => "notify",
            Source::Query => "query",
        }
    }
}

/// A verified report that an order was paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReport {
    /// WeChat's order number.
    pub transaction_id: Option<String>,
    /// The amount paid (always in a notify; in an orderquery answer when present).
    pub total_fee: Option<Fen>,
    /// The currency (`fee_type`; absent means CNY).
    pub fee_type: Option<String>,
    /// Payment time as WeChat sent it.
    pub time_end: Option<String>,
    /// Payer's bank.
    pub bank_type: Option<String>,
    /// Cash paid.
    pub cash_fee: Option<Fen>,
    /// Where it came from.
    pub source: Source,
}

/// Why a verified payment report is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Another amount than the order's.
    Amount {
        /// The order's amount.
        expected: Fen,
        /// The reported amount.
        received: Fen,
    },
    /// Another currency than the order's.
    Currency {
        /// The reported currency.
        received: String,
    },
}

/// What a verified payment report does.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentDecision {
    /// Record the payment: move to `to` with `patch`. `claim` is the
    /// fulfilment claim the writer holds once it is applied (none when the
    /// fulfilment is held).
    Record {
        /// The new state (`PAID`).
        to: OrderState,
        /// Payment fields, attention, fulfilment.
        patch: OrderPatch,
        /// Paid after the order was closed or failed.
        late: bool,
        /// The claim the writer holds.
        claim: Option<Claim>,
    },
    /// This payment is recorded already: nothing to write.
    Duplicate,
    /// Paid already under another transaction: record the flag (state unchanged).
    Flag {
        /// The attention case.
        patch: OrderPatch,
    },
    /// Refused: the flag to record (none when recorded already) and why.
    Refuse {
        /// The attention case to record, if new.
        patch: Option<OrderPatch>,
        /// Why.
        mismatch: Mismatch,
    },
}

fn flag(order: &Order, a: Attention) -> Option<OrderPatch> {
    (!order.attention.iter().any(|x| x.same_case(&a))).then(|| OrderPatch {
        attention: vec![a],
        ..OrderPatch::default()
    })
}

/// What a verified payment report does to `order` (read at its current
/// version): amount and currency checked first (a mismatch is refused and
/// flagged), a duplicate is nothing, a second transaction is flagged, an
/// open order becomes `PAID` with the fulfilment claimed by the writer, an
/// ended one becomes `PAID` flagged, its fulfilment as `policy` says.
pub fn payment(
    order: &Order,
    report: &PaymentReport,
    policy: AttentionPolicy,
    now: DateTime<Utc>,
    lease: Duration,
) -> PaymentDecision {
    let tid = report.transaction_id.as_deref().unwrap_or("?");
    if let Some(received) = report.total_fee
        && received != order.total_fee
    {
        let a = Attention::new(
            AttentionKind::AmountMismatch,
            format!(
                "{} reports transaction {tid} of {received} fen; the order is {} fen",
                report.source.as_str(),
                order.total_fee
            ),
            now,
        );
        return PaymentDecision::Refuse {
            patch: flag(order, a),
            mismatch: Mismatch::Amount {
                expected: order.total_fee,
                received,
            },
        };
    }
    if let Some(ft) = report.fee_type.as_deref()
        && ft != CURRENCY
    {
        let a = Attention::new(
            AttentionKind::CurrencyMismatch,
            format!(
                "{} reports transaction {tid} in {ft}; the order is in {CURRENCY}",
                report.source.as_str()
            ),
            now,
        );
        return PaymentDecision::Refuse {
            patch: flag(order, a),
            mismatch: Mismatch::Currency {
                received: ft.to_owned(),
            },
        };
    }
    if order.state.is_paid() {
        return match (&order.transaction_id, &report.transaction_id) {
            (Some(have), Some(got)) if have != got => {
                let a = Attention::new(
                    AttentionKind::DoublePayment,
                    format!(
                        "second transaction {got} (recorded: {have}): check for a double payment"
                    ),
                    now,
                );
                match flag(order, a) {
                    Some(patch) => PaymentDecision::Flag { patch },
                    None => PaymentDecision::Duplicate,
                }
            }
            _ => PaymentDecision::Duplicate,
        };
    }
    let late = matches!(order.state, OrderState::Closed | OrderState::Failed);
    let mut patch = OrderPatch {
        transaction_id: Some(report.transaction_id.clone()),
        time_end: Some(report.time_end.clone()),
        bank_type: Some(report.bank_type.clone()),
        cash_fee: Some(report.cash_fee),
        ..OrderPatch::default()
    };
    let hold = late && policy != AttentionPolicy::Fulfil;
    if late {
        patch.attention.push(Attention::new(
            AttentionKind::LatePayment,
            format!(
                "transaction {tid} paid after the order was {} (reported by {})",
                order.state,
                report.source.as_str()
            ),
            now,
        ));
    }
    let claim = (!hold && order.fulfilment.claimable(now)).then(|| Claim {
        until: super::payments::after(now, lease),
    });
    patch.fulfilment = match claim {
        Some(c) => Some(Fulfilment::Claimed { until: c.until }),
        None if hold => Some(Fulfilment::Held),
        None => None,
    };
    PaymentDecision::Record {
        to: OrderState::Paid,
        patch,
        late,
        claim,
    }
}

/// [`payment`], for a report that the order was paid and refunded since
/// (orderquery's `REFUND`): the refunds WeChat reports are recorded in the
/// same write, and the fulfilment is claimed only when none of them
/// counts (all closed), so the goods are never granted for money that went
/// back.
pub fn payment_with_refunds(
    order: &Order,
    report: &PaymentReport,
    refunds: &[RefundReport],
    policy: AttentionPolicy,
    now: DateTime<Utc>,
    lease: Duration,
) -> PaymentDecision {
    let decision = payment(order, report, policy, now, lease);
    let PaymentDecision::Record {
        to,
        mut patch,
        late,
        claim,
    } = decision
    else {
        return decision;
    };
    let mut paid = order.clone();
    paid.apply(to, &patch, now);
    match refund_reports(&paid, refunds, now) {
        RefundReportDecision::Apply { to, patch: ledger } => {
            patch.refunds = ledger.refunds;
            patch.refunded_fee = ledger.refunded_fee;
            patch.attention.extend(ledger.attention);
            let entitled = to == OrderState::Paid;
            if !entitled && claim.is_some() {
                patch.fulfilment = None;
            }
            PaymentDecision::Record {
                to,
                patch,
                late,
                claim: claim.filter(|_| entitled),
            }
        }
        _ => PaymentDecision::Record {
            to,
            patch,
            late,
            claim,
        },
    }
}

/// The state a paid order is in, from its ledger: `REFUNDING` while a
/// refund is open, else `REFUNDED` once the successful refunds cover the
/// amount, `PARTIALLY_REFUNDED` when some do, `PAID` when none.
pub fn ledger_state(total_fee: Fen, refunds: &[Refund]) -> OrderState {
    if refunds.iter().any(|r| r.state.is_open()) {
        return OrderState::Refunding;
    }
    let settled: u64 = refunds
        .iter()
        .filter(|r| r.state == RefundState::Success)
        .fold(0, |acc, r| acc.saturating_add(r.refund_fee.0));
    match settled {
        0 => OrderState::Paid,
        s if s >= total_fee.0 => OrderState::Refunded,
        _ => OrderState::PartiallyRefunded,
    }
}

/// Why a refund request is refused before anything is sent or recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefundRefusal {
    /// The order is not paid.
    #[error("the order is {0}: nothing to refund")]
    NotPaid(OrderState),
    /// A zero amount.
    #[error("refund_fee must be at least 1 fen")]
    Zero,
    /// More than is left.
    #[error("refund_fee {requested} fen is more than the {left} fen left to refund")]
    TooMuch {
        /// Asked.
        requested: Fen,
        /// What is left (the amount minus every refund not closed or refused).
        left: Fen,
    },
    /// The number names a refund of another amount.
    #[error("refund {out_refund_no} exists with {existing} fen")]
    NumberReused {
        /// The number.
        out_refund_no: String,
        /// Its amount.
        existing: Fen,
    },
    /// WeChat's limit of refunds per order.
    #[error("an order takes at most {MAX_REFUNDS} refunds")]
    TooMany,
}

/// What a refund request does.
#[derive(Debug, Clone, PartialEq)]
// A decision is made and consumed at once, never stored: no box needed.
#[allow(clippy::large_enum_variant)]
pub enum RefundRequest {
    /// Record the refund (`REQUESTED`, its amount reserved) in this
    /// transition, then send it.
    Record {
        /// The new state (`REFUNDING`).
        to: OrderState,
        /// The refund.
        patch: OrderPatch,
    },
    /// This refund is recorded and its outcome not known (requested,
    /// unknown): send it again as it is (same number, same amount: WeChat
    /// refunds one number once).
    Resend,
    /// This refund was accepted or settled already: nothing to send.
    Known,
}

/// What asking for refund `out_refund_no` of `refund_fee` does to `order`.
///
/// # Errors
/// A [`RefundRefusal`]: nothing to record or send.
pub fn request_refund(
    order: &Order,
    out_refund_no: &str,
    refund_fee: Fen,
    now: DateTime<Utc>,
) -> Result<RefundRequest, RefundRefusal> {
    if !order.state.is_paid() {
        return Err(RefundRefusal::NotPaid(order.state));
    }
    if let Some(r) = order.refund(out_refund_no) {
        if r.refund_fee != refund_fee {
            return Err(RefundRefusal::NumberReused {
                out_refund_no: out_refund_no.to_owned(),
                existing: r.refund_fee,
            });
        }
        return match r.state {
            RefundState::Requested | RefundState::Unknown => Ok(RefundRequest::Resend),
            RefundState::Refused => {
                // Sent again under its number, as the spec prescribes; the
                // amount must still be free.
                reserve(order, refund_fee)?;
                let mut again = r.clone();
                again.state = RefundState::Requested;
                again.updated_at = now;
                Ok(record(order, again))
            }
            _ => Ok(RefundRequest::Known),
        };
    }
    if order.refunds.len() >= MAX_REFUNDS {
        return Err(RefundRefusal::TooMany);
    }
    reserve(order, refund_fee)?;
    let refund = Refund::new(
        out_refund_no,
        refund_fee,
        RefundState::Requested,
        RefundSource::App,
        now,
    );
    Ok(record(order, refund))
}

fn reserve(order: &Order, refund_fee: Fen) -> Result<(), RefundRefusal> {
    if refund_fee.0 == 0 {
        return Err(RefundRefusal::Zero);
    }
    let left = order.refundable();
    if refund_fee > left {
        return Err(RefundRefusal::TooMuch {
            requested: refund_fee,
            left,
        });
    }
    Ok(())
}

fn record(order: &Order, refund: Refund) -> RefundRequest {
    let patch = ledger_patch(order, vec![refund], Vec::new());
    RefundRequest::Record {
        to: ledger_state(order.total_fee, &merged(order, &patch.refunds)),
        patch,
    }
}

/// The ledger after upserting `changed`.
fn merged(order: &Order, changed: &[Refund]) -> Vec<Refund> {
    let mut all = order.refunds.clone();
    for r in changed {
        match all.iter_mut().find(|x| x.out_refund_no == r.out_refund_no) {
            Some(x) => *x = r.clone(),
            None => all.push(r.clone()),
        }
    }
    all
}

/// A patch recording `changed` refunds and `attention`, with the derived
/// `refunded_fee`.
fn ledger_patch(order: &Order, changed: Vec<Refund>, attention: Vec<Attention>) -> OrderPatch {
    let all = merged(order, &changed);
    let refunded = all
        .iter()
        .filter(|r| r.state == RefundState::Success)
        .fold(0u64, |acc, r| acc.saturating_add(r.refund_fee.0));
    OrderPatch {
        refunded_fee: Some(Fen(refunded)),
        refunds: changed,
        attention,
        ..OrderPatch::default()
    }
}

/// Sending refund `out_refund_no` again (its outcome unknown, or never
/// sent): a write that only touches the refund, so that the store's
/// compare-and-set proves the read it was decided on is current before
/// anything goes to WeChat. `None` when it is no longer to be sent.
pub fn resend(
    order: &Order,
    out_refund_no: &str,
    now: DateTime<Utc>,
) -> Option<(OrderState, OrderPatch)> {
    let r = order.refund(out_refund_no)?;
    if !matches!(r.state, RefundState::Requested | RefundState::Unknown) {
        return None;
    }
    let mut touched = r.clone();
    touched.updated_at = now;
    Some((
        order.state,
        OrderPatch {
            refunds: vec![touched],
            ..OrderPatch::default()
        },
    ))
}

/// WeChat's answer to a refund request, as the gateway classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundAnswer {
    /// A verified success answer: accepted (the outcome follows).
    Accepted {
        /// WeChat's refund number.
        refund_id: Option<String>,
    },
    /// A verified, definite refusal: nothing was refunded.
    Refused,
    /// Anything else: a timeout, a transport failure, an answer that
    /// failed verification, an unknown or retryable code.
    Unknown,
}

/// What WeChat's answer to refund `out_refund_no` does: `None` when
/// nothing changes (the refund moved on already, e.g. a notify overtook
/// the answer).
pub fn refund_answer(
    order: &Order,
    out_refund_no: &str,
    answer: &RefundAnswer,
    now: DateTime<Utc>,
) -> Option<(OrderState, OrderPatch)> {
    let r = order.refund(out_refund_no)?;
    let (state, refund_id) = match answer {
        RefundAnswer::Accepted { refund_id } => (RefundState::Processing, refund_id.clone()),
        RefundAnswer::Refused => (RefundState::Refused, None),
        RefundAnswer::Unknown => (RefundState::Unknown, None),
    };
    if r.state == state || !r.state.can_become(state) {
        return None;
    }
    // An acceptance after a refusal of the same number (two sends crossed):
    // WeChat took it after all.
    let attention = (r.state == RefundState::Refused)
        .then(|| {
            Attention::new(
                AttentionKind::RefundFound,
                format!(
                    "refund {} of {} fen was refused when asked, and WeChat accepted it",
                    r.out_refund_no, r.refund_fee
                ),
                now,
            )
        })
        .into_iter()
        .collect();
    let mut next = r.clone();
    next.state = state;
    next.refund_id = refund_id.or(next.refund_id);
    next.updated_at = now;
    let patch = ledger_patch(order, vec![next], attention);
    Some((
        ledger_state(order.total_fee, &merged(order, &patch.refunds)),
        patch,
    ))
}

/// A verified report of one refund's status (refund notify, refundquery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReport {
    /// The merchant refund number.
    pub out_refund_no: String,
    /// WeChat's refund number.
    pub refund_id: Option<String>,
    /// The amount.
    pub refund_fee: Option<Fen>,
    /// WeChat's status.
    pub status: RefundStatus,
    /// Where it came from.
    pub source: Source,
}

/// What refund reports do to an order.
#[derive(Debug, Clone, PartialEq)]
// A decision is made and consumed at once, never stored: no box needed.
#[allow(clippy::large_enum_variant)]
pub enum RefundReportDecision {
    /// Write this: the new state and the ledger changes.
    Apply {
        /// The new state, from the ledger.
        to: OrderState,
        /// Refunds changed or found, attention cases.
        patch: OrderPatch,
    },
    /// Nothing to change (known already, not final, or a closed refund this
    /// app never had).
    Nothing,
    /// The order is not recorded as paid: its payment must be learnt
    /// (orderquery) before its refunds can be.
    NeedsPayment,
}

fn refund_state(status: &RefundStatus) -> Option<RefundState> {
    Some(match status {
        RefundStatus::Success => RefundState::Success,
        RefundStatus::RefundClose => RefundState::Closed,
        RefundStatus::Processing => RefundState::Processing,
        RefundStatus::Change => RefundState::Abnormal,
        _ => return None,
    })
}

/// What verified refund reports do to `order`: a known refund moves on
/// (never backwards: a late duplicate changes nothing), a successful one
/// with another amount records WeChat's amount and is flagged, a refund
/// this app did not start is recorded (`FOUND`) and flagged, an abnormal
/// one is flagged; the order's state follows its ledger.
pub fn refund_reports(
    order: &Order,
    reports: &[RefundReport],
    now: DateTime<Utc>,
) -> RefundReportDecision {
    let mut changed: Vec<Refund> = Vec::new();
    let mut attention = Vec::new();
    for rep in reports {
        let Some(state) = refund_state(&rep.status) else {
            continue;
        };
        let src = rep.source.as_str();
        let known = changed
            .iter()
            .find(|r| r.out_refund_no == rep.out_refund_no)
            .or_else(|| order.refund(&rep.out_refund_no))
            .cloned();
        let next = match known {
            Some(r) if r.state == state || !r.state.can_become(state) => continue,
            Some(mut r) => {
                if r.state == RefundState::Refused && state != RefundState::Closed {
                    attention.push(Attention::new(
                        AttentionKind::RefundFound,
                        format!(
                            "refund {} of {} fen was refused when asked, and WeChat reports it {} ({src})",
                            r.out_refund_no,
                            r.refund_fee,
                            rep.status.as_str()
                        ),
                        now,
                    ));
                }
                if state == RefundState::Success
                    && let Some(fee) = rep.refund_fee
                    && fee != r.refund_fee
                {
                    attention.push(Attention::new(
                        AttentionKind::RefundAmountMismatch,
                        format!(
                            "refund {} asked {} fen; WeChat refunded {fee} fen ({src})",
                            r.out_refund_no, r.refund_fee
                        ),
                        now,
                    ));
                    r.refund_fee = fee;
                }
                r.state = state;
                r.refund_id = rep.refund_id.clone().or(r.refund_id);
                r.updated_at = now;
                r
            }
            None => {
                let Some(fee) = rep.refund_fee.filter(|_| state != RefundState::Closed) else {
                    continue;
                };
                attention.push(Attention::new(
                    AttentionKind::RefundFound,
                    format!(
                        "refund {} of {fee} fen ({}) was not made by this app ({src})",
                        rep.out_refund_no,
                        rep.status.as_str()
                    ),
                    now,
                ));
                let mut r = Refund::new(&rep.out_refund_no, fee, state, RefundSource::Found, now);
                r.refund_id = rep.refund_id.clone();
                r
            }
        };
        if next.state == RefundState::Abnormal {
            attention.push(Attention::new(
                AttentionKind::RefundAbnormal,
                format!(
                    "refund {} is abnormal (CHANGE): settle it in the merchant platform",
                    next.out_refund_no
                ),
                now,
            ));
        }
        match changed
            .iter_mut()
            .find(|r| r.out_refund_no == next.out_refund_no)
        {
            Some(r) => *r = next,
            None => changed.push(next),
        }
    }
    if changed.is_empty() {
        return RefundReportDecision::Nothing;
    }
    if !order.state.is_paid() {
        return RefundReportDecision::NeedsPayment;
    }
    let patch = ledger_patch(order, changed, attention);
    RefundReportDecision::Apply {
        to: ledger_state(order.total_fee, &merged(order, &patch.refunds)),
        patch,
    }
}

/// Whether `on_paid` is due: the order is `PAID` (no refund in flight or
/// settled) and its fulfilment can be claimed.
pub fn paid_effect_due(order: &Order, now: DateTime<Utc>) -> bool {
    order.entitled() && order.fulfilment.claimable(now)
}

/// The successful refunds whose `on_refunded` is due: their effect can be
/// claimed, and no `on_paid` run holds its claim (a grant in progress is
/// revoked after it, never before).
pub fn refund_effects_due(order: &Order, now: DateTime<Utc>) -> Vec<&Refund> {
    if order.fulfilment.is_running(now) {
        return Vec::new();
    }
    order
        .refunds
        .iter()
        .filter(|r| r.state == RefundState::Success && r.effect.claimable(now))
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::{OutTradeNo, SignType, TradeType};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    const LEASE: Duration = Duration::from_secs(60);

    fn order(state: OrderState, total: u64) -> Order {
        let mut o = Order::new(
            OutTradeNo::new("D1").unwrap(),
            Fen(total),
            "x",
            TradeType::Jsapi,
            SignType::Md5,
            t0(),
        );
        o.state = state;
        if state.is_paid() {
            o.transaction_id = Some("T1".into());
        }
        o
    }

    fn report(tid: &str, fee: u64) -> PaymentReport {
        PaymentReport {
            transaction_id: Some(tid.into()),
            total_fee: Some(Fen(fee)),
            fee_type: None,
            time_end: None,
            bank_type: None,
            cash_fee: Some(Fen(fee)),
            source: Source::Notify,
        }
    }

    fn refund_report(no: &str, fee: u64, status: RefundStatus) -> RefundReport {
        RefundReport {
            out_refund_no: no.into(),
            refund_id: None,
            refund_fee: Some(Fen(fee)),
            status,
            source: Source::Notify,
        }
    }

    /// Applies a decision as a store would.
    fn apply(o: &Order, to: OrderState, patch: &OrderPatch) -> Order {
        assert!(o.state.can_become(to), "{} → {to}", o.state);
        let mut next = o.clone();
        next.apply(to, patch, t0());
        next
    }

    #[test]
    fn a_payment_is_recorded_once_and_the_writer_holds_the_claim() {
        let o = order(OrderState::Prepaid, 100);
        let PaymentDecision::Record {
            to,
            patch,
            late,
            claim,
        } = payment(&o, &report("T1", 100), AttentionPolicy::Hold, t0(), LEASE)
        else {
            panic!("not recorded")
        };
        assert_eq!((to, late), (OrderState::Paid, false));
        let claim = claim.expect("the writer holds the claim");
        assert_eq!(
            patch.fulfilment,
            Some(Fulfilment::Claimed { until: claim.until })
        );
        let paid = apply(&o, to, &patch);
        assert_eq!(
            payment(
                &paid,
                &report("T1", 100),
                AttentionPolicy::Hold,
                t0(),
                LEASE
            ),
            PaymentDecision::Duplicate
        );
        // Another transaction: flagged once.
        let PaymentDecision::Flag { patch } = payment(
            &paid,
            &report("T2", 100),
            AttentionPolicy::Hold,
            t0(),
            LEASE,
        ) else {
            panic!("a second transaction is flagged")
        };
        let flagged = apply(&paid, paid.state, &patch);
        assert_eq!(flagged.attention[0].kind, AttentionKind::DoublePayment);
        assert_eq!(
            payment(
                &flagged,
                &report("T2", 100),
                AttentionPolicy::Hold,
                t0(),
                LEASE
            ),
            PaymentDecision::Duplicate
        );
    }

    #[test]
    fn mismatches_are_refused_before_anything_else() {
        for state in OrderState::ALL {
            let o = order(state, 100);
            let d = payment(&o, &report("T9", 99), AttentionPolicy::Fulfil, t0(), LEASE);
            assert!(
                matches!(
                    d,
                    PaymentDecision::Refuse {
                        mismatch: Mismatch::Amount { .. },
                        patch: Some(_)
                    }
                ),
                "{state}: {d:?}"
            );
            let mut usd = report("T9", 100);
            usd.fee_type = Some("USD".into());
            let d = payment(&o, &usd, AttentionPolicy::Fulfil, t0(), LEASE);
            assert!(
                matches!(
                    d,
                    PaymentDecision::Refuse {
                        mismatch: Mismatch::Currency { .. },
                        ..
                    }
                ),
                "{state}: {d:?}"
            );
        }
    }

    #[test]
    fn late_payments_follow_the_policy() {
        for (policy, held) in [
            (AttentionPolicy::Hold, true),
            (AttentionPolicy::Refund, true),
            (AttentionPolicy::Fulfil, false),
        ] {
            for state in [OrderState::Closed, OrderState::Failed] {
                let o = order(state, 100);
                let PaymentDecision::Record {
                    patch, late, claim, ..
                } = payment(&o, &report("T1", 100), policy, t0(), LEASE)
                else {
                    panic!("recorded")
                };
                assert!(late);
                assert_eq!(patch.attention[0].kind, AttentionKind::LatePayment);
                assert_eq!(claim.is_none(), held, "{policy:?}");
                assert_eq!(
                    patch.fulfilment == Some(Fulfilment::Held),
                    held,
                    "{policy:?}"
                );
            }
        }
    }

    #[test]
    fn refunds_reserve_and_never_exceed_the_amount() {
        let o = order(OrderState::Paid, 100);
        let Ok(RefundRequest::Record { to, patch }) = request_refund(&o, "R1", Fen(60), t0())
        else {
            panic!()
        };
        let o = apply(&o, to, &patch);
        assert_eq!((o.state, o.refundable()), (OrderState::Refunding, Fen(40)));
        assert_eq!(
            request_refund(&o, "R2", Fen(41), t0()),
            Err(RefundRefusal::TooMuch {
                requested: Fen(41),
                left: Fen(40)
            })
        );
        assert_eq!(
            request_refund(&o, "R1", Fen(60), t0()),
            Ok(RefundRequest::Resend)
        );
        assert!(matches!(
            request_refund(&o, "R1", Fen(61), t0()),
            Err(RefundRefusal::NumberReused { .. })
        ));
        assert_eq!(
            request_refund(&o, "R3", Fen(0), t0()),
            Err(RefundRefusal::Zero)
        );
        assert_eq!(
            request_refund(&order(OrderState::Prepaid, 100), "R1", Fen(1), t0()),
            Err(RefundRefusal::NotPaid(OrderState::Prepaid))
        );
    }

    #[test]
    fn only_a_definite_refusal_frees_the_amount() {
        let o = order(OrderState::Paid, 100);
        let Ok(RefundRequest::Record { to, patch }) = request_refund(&o, "R1", Fen(100), t0())
        else {
            panic!()
        };
        let requested = apply(&o, to, &patch);
        let (to, patch) = refund_answer(&requested, "R1", &RefundAnswer::Unknown, t0()).unwrap();
        let unknown = apply(&requested, to, &patch);
        assert_eq!(
            (unknown.state, unknown.refundable()),
            (OrderState::Refunding, Fen(0))
        );
        // refundquery says it succeeded
        let RefundReportDecision::Apply { to, patch } = refund_reports(
            &unknown,
            &[refund_report("R1", 100, RefundStatus::Success)],
            t0(),
        ) else {
            panic!()
        };
        let done = apply(&unknown, to, &patch);
        assert_eq!(
            (done.state, done.refunded_fee),
            (OrderState::Refunded, Fen(100))
        );
        // A late "refused" for a refund that succeeded changes nothing.
        assert_eq!(
            refund_answer(&done, "R1", &RefundAnswer::Refused, t0()),
            None
        );
        // A refused request frees its amount.
        let (to, patch) = refund_answer(&requested, "R1", &RefundAnswer::Refused, t0()).unwrap();
        let refused = apply(&requested, to, &patch);
        assert_eq!(
            (refused.state, refused.refundable()),
            (OrderState::Paid, Fen(100))
        );
    }

    #[test]
    fn refund_reports_record_found_refunds_and_never_go_back() {
        let o = order(OrderState::Paid, 100);
        let RefundReportDecision::Apply { to, patch } = refund_reports(
            &o,
            &[refund_report("DESK", 30, RefundStatus::Processing)],
            t0(),
        ) else {
            panic!()
        };
        let o = apply(&o, to, &patch);
        assert_eq!(o.refund("DESK").unwrap().source, RefundSource::Found);
        assert_eq!(o.attention[0].kind, AttentionKind::RefundFound);
        let RefundReportDecision::Apply { to, patch } = refund_reports(
            &o,
            &[refund_report("DESK", 30, RefundStatus::Success)],
            t0(),
        ) else {
            panic!()
        };
        let o = apply(&o, to, &patch);
        assert_eq!(
            (o.state, o.refunded_fee),
            (OrderState::PartiallyRefunded, Fen(30))
        );
        // A late PROCESSING copy, a duplicate SUCCESS: nothing.
        for s in [
            RefundStatus::Processing,
            RefundStatus::Success,
            RefundStatus::RefundClose,
        ] {
            assert_eq!(
                refund_reports(&o, &[refund_report("DESK", 30, s)], t0()),
                RefundReportDecision::Nothing
            );
        }
        // A closed refund this app never had is nothing.
        assert_eq!(
            refund_reports(
                &o,
                &[refund_report("GONE", 5, RefundStatus::RefundClose)],
                t0()
            ),
            RefundReportDecision::Nothing
        );
        // Refunds of an order not recorded as paid: learn the payment first.
        assert_eq!(
            refund_reports(
                &order(OrderState::Prepaid, 100),
                &[refund_report("X", 1, RefundStatus::Success)],
                t0()
            ),
            RefundReportDecision::NeedsPayment
        );
    }

    #[test]
    fn on_paid_waits_for_the_money_and_on_refunded_for_on_paid() {
        let mut o = order(OrderState::Paid, 100);
        assert!(paid_effect_due(&o, t0()));
        o.fulfilment = Fulfilment::Held;
        assert!(!paid_effect_due(&o, t0()));
        for state in [
            OrderState::Refunding,
            OrderState::Refunded,
            OrderState::PartiallyRefunded,
        ] {
            let mut o = order(state, 100);
            o.fulfilment = Fulfilment::Pending;
            assert!(!paid_effect_due(&o, t0()), "{state}");
        }
        let mut o = order(OrderState::Refunded, 100);
        o.refunds.push(Refund::new(
            "R1",
            Fen(100),
            RefundState::Success,
            RefundSource::App,
            t0(),
        ));
        o.fulfilment = Fulfilment::Claimed {
            until: t0() + chrono::Duration::seconds(5),
        };
        assert!(
            refund_effects_due(&o, t0()).is_empty(),
            "a grant in progress is revoked after it"
        );
        o.fulfilment = Fulfilment::Claimed {
            until: t0() - chrono::Duration::seconds(5),
        };
        assert_eq!(refund_effects_due(&o, t0()).len(), 1);
    }

    /// Random histories of refund requests, answers and reports on one
    /// order: every decision is a legal move, the ledger never reserves
    /// more than was paid, `refunded_fee` always equals the successful
    /// refunds, and the state is always the ledger's.
    #[test]
    fn property_the_ledger_keeps_its_sums() {
        let statuses = [
            RefundStatus::Processing,
            RefundStatus::Success,
            RefundStatus::RefundClose,
            RefundStatus::Change,
        ];
        let answers = [
            RefundAnswer::Accepted {
                refund_id: Some("W".into()),
            },
            RefundAnswer::Refused,
            RefundAnswer::Unknown,
        ];
        for seed in 0..2_000u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let total = rng.gen_range(1..=1_000u64);
            let mut o = order(OrderState::Paid, total);
            for _ in 0..rng.gen_range(1..30) {
                let no = format!("R{}", rng.gen_range(0..6));
                let fee = rng.gen_range(0..=total);
                let step = rng.gen_range(0..3);
                let decided = match step {
                    0 => match request_refund(&o, &no, Fen(fee), t0()) {
                        Ok(RefundRequest::Record { to, patch }) => Some((to, patch)),
                        _ => None,
                    },
                    1 => refund_answer(&o, &no, &answers[rng.gen_range(0..3)], t0()),
                    _ => {
                        let known = o.refund(&no).map(|r| r.refund_fee.0);
                        let fee = if rng.gen_bool(0.8) {
                            known.unwrap_or(fee)
                        } else {
                            fee
                        };
                        let rep = refund_report(&no, fee, statuses[rng.gen_range(0..4)].clone());
                        match refund_reports(&o, &[rep], t0()) {
                            RefundReportDecision::Apply { to, patch } => Some((to, patch)),
                            _ => None,
                        }
                    }
                };
                if let Some((to, patch)) = decided {
                    let before = o.clone();
                    o = apply(&o, to, &patch);
                    for r in &before.refunds {
                        let now = o.refund(&r.out_refund_no).unwrap();
                        assert!(
                            r.state.can_become(now.state),
                            "seed {seed}: {} → {}",
                            r.state,
                            now.state
                        );
                    }
                }
                let success: u64 = o
                    .refunds
                    .iter()
                    .filter(|r| r.state == RefundState::Success)
                    .map(|r| r.refund_fee.0)
                    .sum();
                assert_eq!(o.refunded_fee.0, success, "seed {seed}");
                assert_eq!(
                    o.state,
                    ledger_state(o.total_fee, &o.refunds),
                    "seed {seed}"
                );
                // What this app asked for never exceeds the amount (reports
                // from WeChat are recorded as they are, and flagged).
                let asked: u64 = o
                    .refunds
                    .iter()
                    .filter(|r| r.source == RefundSource::App && r.state.reserves())
                    .map(|r| r.refund_fee.0)
                    .sum();
                let reported = o.attention.iter().any(|a| {
                    matches!(
                        a.kind,
                        AttentionKind::RefundFound | AttentionKind::RefundAmountMismatch
                    )
                });
                assert!(
                    reported || asked <= total,
                    "seed {seed}: reserved {asked} of {total}"
                );
            }
        }
    }
}
