//! Payment and refund notifies, through the store.

use tracing::{Instrument, field::Empty};

use super::{
    Order, OrderState, Payments,
    decide::{Mismatch, PaymentReport, Source},
    fulfil::Recorded,
};
use crate::{
    Fen, NotifyError, OutTradeNo, RefundStatus, SignType,
    notify::{self, PaymentResult},
};

/// What to send back to WeChat, and what happened (for logs and tests).
///
/// API v2: HTTP 200 with [`body`](NotifyReply::body) as `application/xml`
/// whatever the outcome; a `FAIL` body asks WeChat to deliver again.
/// API v3 (spec 13.5): `204` with no body when handled; `4xx`/`5xx` with
/// `{"code":"FAIL","message":…}` when WeChat must deliver again (`401` a
/// failed verification, `400` a malformed or foreign notify or a mismatch,
/// `404` an unknown order, `500` a store failure or a resource that did
/// not decrypt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyReply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` of [`body`](NotifyReply::body).
    pub content_type: &'static str,
    /// The reply (XML for v2, JSON or empty for v3).
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

    pub(crate) fn success(outcome: NotifyOutcome) -> NotifyReply {
        NotifyReply {
            status: 200,
            content_type: super::http::CONTENT_TYPE_XML,
            body: notify::reply_success().to_owned(),
            outcome,
        }
    }

    /// A handled v3 notify: `204`, no body.
    pub(crate) fn v3_success(outcome: NotifyOutcome) -> NotifyReply {
        NotifyReply {
            status: 204,
            content_type: super::http::CONTENT_TYPE_JSON,
            body: String::new(),
            outcome,
        }
    }

    /// A refused v3 notify: the status its outcome calls for (spec 13.5),
    /// `{"code":"FAIL","message"}`.
    pub(crate) fn v3_refused(message: &str, outcome: NotifyOutcome) -> NotifyReply {
        let status = match &outcome {
            NotifyOutcome::Rejected(NotifyRejection::BadSignature) => 401,
            NotifyOutcome::Rejected(NotifyRejection::UnknownOrder) => 404,
            NotifyOutcome::Rejected(_) => 400,
            _ => 500,
        };
        NotifyReply::v3_fail(status, message, outcome)
    }

    pub(crate) fn v3_fail(status: u16, message: &str, outcome: NotifyOutcome) -> NotifyReply {
        NotifyReply {
            status,
            content_type: super::http::CONTENT_TYPE_JSON,
            body: crate::v3::reply_fail(message),
            outcome,
        }
    }

    /// `FAIL` for a notify naming no stored order.
    pub(crate) fn unknown_order() -> NotifyReply {
        NotifyReply::fail(
            "订单不存在",
            NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
        )
    }

    /// `FAIL` after a store failure (logged): WeChat delivers again.
    pub(crate) fn unavailable(e: &dyn std::fmt::Display) -> NotifyReply {
        tracing::error!(error = %e, "order store failed; WeChat will deliver again");
        NotifyReply::fail("系统繁忙", NotifyOutcome::Unavailable)
    }

    pub(crate) fn fail(msg: &str, outcome: NotifyOutcome) -> NotifyReply {
        NotifyReply {
            status: 200,
            content_type: super::http::CONTENT_TYPE_XML,
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
    /// (Also when the payment is recorded flagged as a second transaction
    /// of a paid order: see [`Order::attention`](super::Order::attention).)
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
    /// An authentic v3 notify of an event type this library does not
    /// handle; nothing recorded. Reply `204`.
    Ignored {
        /// Its `event_type`.
        event_type: String,
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
    /// The paid amount differs from the order's (recorded as an attention
    /// case on the order; nothing else changes).
    AmountMismatch {
        /// The order's amount.
        expected: Fen,
        /// The notify's `total_fee`.
        received: Fen,
    },
    /// The currency (`fee_type`) is not the order's, CNY (recorded as an
    /// attention case on the order; nothing else changes).
    CurrencyMismatch {
        /// The notify's `fee_type`.
        received: String,
    },
}

fn rejection_of(e: &NotifyError) -> NotifyRejection {
    match e {
        NotifyError::ReturnFail { .. } => NotifyRejection::ReturnFail,
        NotifyError::Signature(_)
        | NotifyError::UnknownSignType(_)
        | NotifyError::SignTypeMismatch { .. }
        | NotifyError::Decrypt(_) => NotifyRejection::BadSignature,
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

pub(crate) fn reject(e: &NotifyError) -> NotifyReply {
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
        let reply = traced!(span, self.handle_notify_inner(body));
        crate::metrics::notify("v2", "payment", &reply.outcome);
        reply
    }

    async fn handle_notify_inner(&self, body: &[u8]) -> NotifyReply {
        if self.inner.gateways.get(super::Api::V2).is_none() {
            tracing::error!("a v2 notify arrived, but API v2 is turned off: refused unread");
            return NotifyReply::fail("API v2 not configured", NotifyOutcome::Unavailable);
        }
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
                return NotifyReply::unknown_order();
            }
            Err(e) => return NotifyReply::unavailable(&e),
        };
        tracing::Span::current().record("state", order.state.as_str());
        let sign_type = match self.notify_sign_type(&unverified, &order) {
            Ok(t) => t,
            Err(e) => return reject(&e),
        };
        let verified = match unverified.verify(self.config(), sign_type) {
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
        let report = PaymentReport {
            fee_type: super::decide::foreign_currency(verified.params.non_empty("fee_type")),
            transaction_id: verified.transaction_id,
            total_fee: Some(verified.total_fee),
            time_end: verified.time_end,
            bank_type: verified.bank_type,
            cash_fee: verified.cash_fee,
            source: Source::Notify,
        };
        match self.record_notified_payment(order, &report).await {
            (outcome, None) => NotifyReply::success(outcome),
            (outcome, Some(message)) => NotifyReply::fail(message, outcome),
        }
    }

    /// Records a verified payment notify (v2 or v3) through the same
    /// compare-and-set path as every payment, runs the fulfilment, and says
    /// what it did: the outcome, and the reply's message when WeChat must
    /// be told `FAIL` (`None`: handled).
    pub(crate) async fn record_notified_payment(
        &self,
        order: std::sync::Arc<Order>,
        report: &PaymentReport,
    ) -> (NotifyOutcome, Option<&'static str>) {
        let recorded = match self.record_payment(order, report, &[]).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                return (NotifyOutcome::Unavailable, Some("系统繁忙"));
            }
        };
        self.after_paid(&recorded).await;
        match recorded {
            Recorded::Paid { order, late, .. } => {
                tracing::info!(late, "payment recorded");
                let outcome = NotifyOutcome::Paid {
                    out_trade_no: order.out_trade_no.clone(),
                    late,
                };
                (outcome, None)
            }
            Recorded::Already(order) | Recorded::Flagged(order) => {
                let outcome = NotifyOutcome::Duplicate {
                    out_trade_no: order.out_trade_no.clone(),
                };
                (outcome, None)
            }
            Recorded::Refused { mismatch, .. } => {
                tracing::error!(
                    ?mismatch,
                    "verified notify that does not match the order: flagged, order otherwise unchanged"
                );
                match mismatch {
                    Mismatch::Amount { expected, received } => (
                        NotifyOutcome::Rejected(NotifyRejection::AmountMismatch {
                            expected,
                            received,
                        }),
                        Some("金额不符"),
                    ),
                    Mismatch::Currency { received } => (
                        NotifyOutcome::Rejected(NotifyRejection::CurrencyMismatch { received }),
                        Some("币种不符"),
                    ),
                }
            }
            Recorded::NotFound => (
                NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
                Some("订单不存在"),
            ),
        }
    }

    /// The algorithm a payment notify for `order` must be signed with: the
    /// order's (the one unifiedorder was signed with). A notify that
    /// declares another is refused, except `HMAC-SHA256` for an MD5 order
    /// when [`PaymentsBuilder::hmac_notifies_for_md5_orders`](super::PaymentsBuilder::hmac_notifies_for_md5_orders)
    /// allows it. An HMAC-SHA256 order never takes MD5.
    fn notify_sign_type(
        &self,
        unverified: &notify::UnverifiedNotify,
        order: &Order,
    ) -> Result<SignType, NotifyError> {
        match unverified.declared_sign_type()? {
            None => Ok(order.sign_type),
            Some(d) if d == order.sign_type => Ok(d),
            Some(SignType::HmacSha256)
                if order.sign_type == SignType::Md5
                    && self.inner.settings.hmac_notifies_for_md5_orders =>
            {
                Ok(SignType::HmacSha256)
            }
            Some(declared) => Err(NotifyError::SignTypeMismatch {
                declared,
                expected: order.sign_type,
            }),
        }
    }
}
