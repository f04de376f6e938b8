//! Payment and refund notifies, through the store.

use tracing::{Instrument, field::Empty};

use super::{
    OrderPatch, OrderState, Payments, PendingRefund, Transition, TransitionOutcome,
    payments::{PaidInfo, Recorded, now},
};
use crate::{
    Fen, NotifyError, OutTradeNo, RefundStatus, SignType,
    notify::{self, PaymentResult},
};

/// What to send back to WeChat, and what happened (for logs and tests).
///
/// Adapters answer HTTP 200 with [`body`](NotifyReply::body) as
/// `application/xml` whatever the outcome: a `FAIL` body asks WeChat to
/// deliver again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyReply {
    /// The XML reply.
    pub body: String,
    /// What the notify did.
    pub outcome: NotifyOutcome,
}

impl NotifyReply {
    /// Whether the reply is `SUCCESS` (WeChat stops delivering).
    pub fn is_success(&self) -> bool {
        !matches!(
            self.outcome,
            NotifyOutcome::Rejected(_) | NotifyOutcome::Unavailable
        )
    }

    fn success(outcome: NotifyOutcome) -> NotifyReply {
        NotifyReply {
            body: notify::reply_success().to_owned(),
            outcome,
        }
    }

    fn fail(msg: &str, outcome: NotifyOutcome) -> NotifyReply {
        NotifyReply {
            body: notify::reply_fail(msg),
            outcome,
        }
    }
}

/// What a notify did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyOutcome {
    /// The order was recorded `PAID` by this notify (`late`: it was CLOSED
    /// or FAILED, and is now flagged for attention). Reply `SUCCESS`.
    Paid {
        /// The order.
        out_trade_no: OutTradeNo,
        /// Paid after it was closed or failed.
        late: bool,
    },
    /// Already recorded (a duplicate delivery). Reply `SUCCESS`.
    Duplicate {
        /// The order.
        out_trade_no: OutTradeNo,
    },
    /// WeChat reports the payment failed (`result_code=FAIL`); nothing
    /// recorded. Reply `SUCCESS`.
    PaymentFailed {
        /// The order.
        out_trade_no: OutTradeNo,
    },
    /// A refund was settled (`REFUNDED`, `PARTIALLY_REFUNDED`, or back
    /// after `REFUNDCLOSE`/`CHANGE`). Reply `SUCCESS`.
    Refund {
        /// The order.
        out_trade_no: OutTradeNo,
        /// The refund.
        out_refund_no: String,
        /// WeChat's refund status.
        status: RefundStatus,
        /// The order's state afterwards.
        state: OrderState,
    },
    /// A refund notify with nothing to do (already applied, not final, or
    /// not the pending refund). Reply `SUCCESS`.
    RefundIgnored {
        /// The order.
        out_trade_no: OutTradeNo,
        /// The refund.
        out_refund_no: String,
    },
    /// Refused; nothing changed. Reply `FAIL`.
    Rejected(NotifyRejection),
    /// The store failed; nothing (more) changed. Reply `FAIL` so WeChat
    /// delivers again.
    Unavailable,
}

/// Why a notify was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyRejection {
    /// Not an acceptable message (XML, missing or malformed fields).
    Malformed,
    /// `return_code=FAIL`.
    ReturnFail,
    /// The signature is missing or wrong, or the refund data did not decrypt.
    BadSignature,
    /// Another appid or mch_id.
    WrongMerchant,
    /// No order with that number.
    UnknownOrder,
    /// The paid amount differs from the order's.
    AmountMismatch {
        /// The order's amount.
        expected: Fen,
        /// The notify's `total_fee`.
        received: Fen,
    },
}

fn rejection_of(e: &NotifyError) -> NotifyRejection {
    match e {
        NotifyError::ReturnFail { .. } => NotifyRejection::ReturnFail,
        NotifyError::Signature(_) | NotifyError::UnknownSignType(_) | NotifyError::Decrypt(_) => {
            NotifyRejection::BadSignature
        }
        NotifyError::WrongAppId { .. } | NotifyError::WrongMchId { .. } => {
            NotifyRejection::WrongMerchant
        }
        _ => NotifyRejection::Malformed,
    }
}

/// Runs a notify handler in `span` and records its outcome there.
///
/// A macro rather than an `async fn`: an `async fn` taking the handler's
/// future as an argument holds it twice (the argument and the awaited
/// copy), which doubled the notify future that every web framework copies
/// into a box per request.
macro_rules! traced {
    ($span:expr, $handler:expr) => {{
        let span = $span;
        let reply = $handler.instrument(span.clone()).await;
        span.record("outcome", tracing::field::debug(&reply.outcome));
        reply
    }};
}

fn reject(e: &NotifyError) -> NotifyReply {
    tracing::warn!(error = %e, "notify refused");
    NotifyReply::fail(e.reply_message(), NotifyOutcome::Rejected(rejection_of(e)))
}

impl Payments {
    /// Handles a payment-result notify (the raw body WeChat POSTed) and
    /// returns the reply to send.
    ///
    /// Procedure: parse (bounded, no DTDs) → load the order named by the
    /// (untrusted) `out_trade_no` → verify the signature (the notify's
    /// `sign_type`, else the order's) → check appid, mch_id and that
    /// `total_fee` equals the order's → compare-and-set to `PAID` → run the
    /// fulfilment → `SUCCESS`.
    ///
    /// - Duplicates of a recorded payment answer `SUCCESS` and change nothing
    ///   (an unfinished fulfilment is retried under its claim).
    /// - A payment for a CLOSED or FAILED order is recorded and flagged
    ///   ([`Order::attention`](super::Order::attention)): money is never dropped.
    /// - Every refusal (malformed, bad signature, foreign merchant, unknown
    ///   order, amount mismatch) changes nothing and answers `FAIL`; so does
    ///   a store failure (WeChat delivers again).
    /// - `result_code=FAIL` records nothing and answers `SUCCESS`.
    pub async fn handle_notify(&self, body: &[u8]) -> NotifyReply {
        let span = tracing::info_span!(
            "wxpay.notify",
            out_trade_no = Empty,
            state = Empty,
            outcome = Empty
        );
        traced!(span, self.handle_notify_inner(body))
    }

    async fn handle_notify_inner(&self, body: &[u8]) -> NotifyReply {
        let unverified = match notify::parse_notify(body) {
            Ok(u) => u,
            Err(e) => return reject(&e),
        };
        let Some(claimed) = unverified
            .out_trade_no()
            .and_then(|s| OutTradeNo::new(s).ok())
        else {
            // Still verify, so that a forged body is reported as such.
            let e = unverified
                .verify(self.config(), self.config().sign_type)
                .err();
            return match e {
                Some(e) => reject(&e),
                None => NotifyReply::fail(
                    "参数格式校验错误",
                    NotifyOutcome::Rejected(NotifyRejection::Malformed),
                ),
            };
        };
        tracing::Span::current().record("out_trade_no", claimed.as_str());
        let order = match self.inner.store.get_shared(&claimed).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                // Verify before answering, so that the reply is no oracle for
                // which order numbers exist.
                let fallback = unverified
                    .params()
                    .get("sign")
                    .and_then(SignType::from_signature_len)
                    .unwrap_or(self.config().sign_type);
                if let Err(e) = unverified.verify(self.config(), fallback) {
                    return reject(&e);
                }
                tracing::warn!("verified notify for an unknown order");
                return NotifyReply::fail(
                    "订单不存在",
                    NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                return NotifyReply::fail("系统繁忙", NotifyOutcome::Unavailable);
            }
        };
        tracing::Span::current().record("state", order.state.as_str());
        let verified = match unverified.verify(self.config(), order.sign_type) {
            Ok(n) => n,
            Err(e) => return reject(&e),
        };
        if verified.out_trade_no != order.out_trade_no {
            return NotifyReply::fail(
                "参数格式校验错误",
                NotifyOutcome::Rejected(NotifyRejection::Malformed),
            );
        }
        if let PaymentResult::Fail { err_code, .. } = &verified.result {
            tracing::info!(
                ?err_code,
                "WeChat reports the payment failed; nothing recorded"
            );
            return NotifyReply::success(NotifyOutcome::PaymentFailed {
                out_trade_no: order.out_trade_no.clone(),
            });
        }
        if verified.total_fee != order.total_fee {
            tracing::error!(
                expected = order.total_fee.0,
                received = verified.total_fee.0,
                "verified notify with a different amount: order unchanged"
            );
            return NotifyReply::fail(
                "金额不符",
                NotifyOutcome::Rejected(NotifyRejection::AmountMismatch {
                    expected: order.total_fee,
                    received: verified.total_fee,
                }),
            );
        }
        let recorded = if order.state.is_paid() && order.transaction_id == verified.transaction_id {
            // A redelivery of the payment already recorded (WeChat's retries,
            // or a concurrent copy that won): no write, one read per
            // duplicate. A different transaction_id takes the slow path,
            // which reports it.
            Recorded::Already(order)
        } else {
            let info = PaidInfo {
                transaction_id: verified.transaction_id,
                time_end: verified.time_end,
                bank_type: verified.bank_type,
                cash_fee: verified.cash_fee,
                source: "notify",
            };
            // Let go of the shared copy first: a store that hands out its own
            // (MemoryStore) then updates the order in place instead of
            // copying it.
            drop(order);
            match self.record_payment(verified.out_trade_no, info).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                    return NotifyReply::fail("系统繁忙", NotifyOutcome::Unavailable);
                }
            }
        };
        self.after_paid(&recorded).await;
        match recorded {
            Recorded::Paid { order, late } => {
                tracing::info!(late, "payment recorded");
                NotifyReply::success(NotifyOutcome::Paid {
                    out_trade_no: order.out_trade_no.clone(),
                    late,
                })
            }
            Recorded::Already(order) => NotifyReply::success(NotifyOutcome::Duplicate {
                out_trade_no: order.out_trade_no.clone(),
            }),
            Recorded::NotFound => NotifyReply::fail(
                "订单不存在",
                NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
            ),
        }
    }

    /// Handles a refund-result notify (raw body): checks the merchant,
    /// decrypts `req_info` (its only authentication) and settles the pending
    /// refund: `SUCCESS` → `REFUNDED` or `PARTIALLY_REFUNDED` (adding to
    /// `refunded_fee`, then [`PaymentEvents::on_refunded`](super::PaymentEvents::on_refunded));
    /// `REFUNDCLOSE` → back to `PAID`/`PARTIALLY_REFUNDED`; `CHANGE` → back,
    /// flagged for attention. Anything else, or a refund that is not the
    /// pending one, answers `SUCCESS` and changes nothing.
    pub async fn handle_refund_notify(&self, body: &[u8]) -> NotifyReply {
        let span = tracing::info_span!(
            "wxpay.refund_notify",
            out_trade_no = Empty,
            out_refund_no = Empty,
            outcome = Empty
        );
        traced!(span, self.handle_refund_notify_inner(body))
    }

    async fn handle_refund_notify_inner(&self, body: &[u8]) -> NotifyReply {
        let n = match notify::decrypt_refund_notify(body, self.config()) {
            Ok(n) => n,
            Err(e) => return reject(&e),
        };
        let span = tracing::Span::current();
        span.record("out_trade_no", n.out_trade_no.as_str());
        span.record("out_refund_no", n.out_refund_no.as_str());
        let store = &self.inner.store;
        let order = match store.get(&n.out_trade_no).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                return NotifyReply::fail(
                    "订单不存在",
                    NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                return NotifyReply::fail("系统繁忙", NotifyOutcome::Unavailable);
            }
        };
        let ignored = || {
            NotifyReply::success(NotifyOutcome::RefundIgnored {
                out_trade_no: n.out_trade_no.clone(),
                out_refund_no: n.out_refund_no.clone(),
            })
        };
        let Some(pending) = order
            .pending_refund
            .clone()
            .filter(|p| order.state == OrderState::Refunding && p.out_refund_no == n.out_refund_no)
        else {
            if !matches!(n.refund_status, RefundStatus::Processing) {
                tracing::info!(state = %order.state, "refund notify for no pending refund (already applied or made elsewhere)");
            }
            return ignored();
        };
        let (to, patch) = match &n.refund_status {
            RefundStatus::Success => {
                if n.refund_fee != pending.refund_fee {
                    tracing::error!(
                        requested = pending.refund_fee.0,
                        refunded = n.refund_fee.0,
                        "refund amount differs from the request; recording WeChat's"
                    );
                }
                let refunded = Fen(order.refunded_fee.0 + n.refund_fee.0);
                let to = if refunded.0 >= order.total_fee.0 {
                    OrderState::Refunded
                } else {
                    OrderState::PartiallyRefunded
                };
                let attention = (n.refund_fee != pending.refund_fee).then(|| {
                    format!(
                        "refund {} requested {} fen, WeChat refunded {} fen",
                        pending.out_refund_no, pending.refund_fee.0, n.refund_fee.0
                    )
                });
                (
                    to,
                    OrderPatch {
                        refunded_fee: Some(refunded),
                        pending_refund: Some(None),
                        attention: attention.map(Some),
                        ..OrderPatch::default()
                    },
                )
            }
            RefundStatus::RefundClose | RefundStatus::Change => {
                let back = if order.refunded_fee.0 == 0 {
                    OrderState::Paid
                } else {
                    OrderState::PartiallyRefunded
                };
                let attention = matches!(n.refund_status, RefundStatus::Change).then(|| {
                    format!(
                        "refund {} is abnormal (CHANGE): settle it in the merchant platform",
                        pending.out_refund_no
                    )
                });
                (
                    back,
                    OrderPatch {
                        pending_refund: Some(None),
                        attention: attention.map(Some),
                        ..OrderPatch::default()
                    },
                )
            }
            _ => return ignored(),
        };
        let t = Transition::new(
            order.out_trade_no.clone(),
            &[OrderState::Refunding],
            to,
            patch,
            now(),
        )
        .expect("REFUNDING → REFUNDED/PARTIALLY_REFUNDED/PAID is legal");
        let after = match store.transition(&t).await {
            Ok(TransitionOutcome::Applied(o)) => o,
            Ok(TransitionOutcome::NotApplied(_)) => return ignored(),
            Ok(TransitionOutcome::NotFound) => {
                return NotifyReply::fail(
                    "订单不存在",
                    NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                return NotifyReply::fail("系统繁忙", NotifyOutcome::Unavailable);
            }
        };
        if after.attention.is_some() && after.attention != order.attention {
            self.inner.events.on_attention(&after).await;
        }
        if n.refund_status == RefundStatus::Success {
            let done = PendingRefund {
                out_refund_no: pending.out_refund_no.clone(),
                refund_fee: n.refund_fee,
            };
            if let Err(e) = self.inner.events.on_refunded(&after, &done).await {
                tracing::error!(error = %e, "on_refunded failed (not retried)");
            }
        }
        NotifyReply::success(NotifyOutcome::Refund {
            out_trade_no: after.out_trade_no.clone(),
            out_refund_no: n.out_refund_no.clone(),
            status: n.refund_status.clone(),
            state: after.state,
        })
    }
}
