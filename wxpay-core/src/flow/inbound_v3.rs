//! API v3 notifies (payment and refund) through the same checks and the
//! same compare-and-set path as v2's.

use tracing::{Instrument, field::Empty};

use super::{
    NotifyOutcome, NotifyRejection, NotifyReply, Payments,
    gateway::{Api, Inbound},
};
use crate::{OutTradeNo, RefundStatus, TradeState, v3::WechatpayHeaders};

impl Payments {
    /// Handles an API v3 notify — payment (`TRANSACTION.SUCCESS`) or refund
    /// (`REFUND.*`), told apart by its `event_type` — from its `Wechatpay-*`
    /// headers and the **raw** body bytes exactly as received (a framework
    /// that re-serialised the JSON breaks the signature), and returns the
    /// reply to send (`204`, or `4xx`/`5xx` with a `FAIL` body).
    ///
    /// Procedure (spec 13.6): verify the signature over the raw body (the
    /// key named by `Wechatpay-Serial`, 300 s window, probes refused) →
    /// decrypt the resource with the APIv3 key → check the `appid` and
    /// `mchid` it names → load the order by the decrypted `out_trade_no` →
    /// the same checks and compare-and-set as a v2 notify (amount and
    /// currency against the stored order, `PAID` once, duplicates
    /// acknowledged, late payments recorded and flagged) → `204`.
    ///
    /// A verified notify for an order created through v2 is applied too: it
    /// is WeChat's own word, whichever format it came in. Without a v3
    /// gateway nothing can be verified: `500` (WeChat delivers again) and an
    /// error is logged.
    pub async fn handle_notify_v3(
        &self,
        headers: WechatpayHeaders<'_>,
        body: &[u8],
    ) -> NotifyReply {
        let span = tracing::info_span!(
            "wxpay.notify_v3",
            out_trade_no = Empty,
            event = Empty,
            outcome = Empty
        );
        let mut kind = "unknown";
        let reply = self
            .handle_notify_v3_inner(headers, body, &mut kind)
            .instrument(span.clone())
            .await;
        span.record("outcome", tracing::field::debug(&reply.outcome));
        crate::metrics::notify("v3", kind, &reply.outcome);
        reply
    }

    async fn handle_notify_v3_inner(
        &self,
        headers: WechatpayHeaders<'_>,
        body: &[u8],
        kind: &mut &'static str,
    ) -> NotifyReply {
        let Some(gateway) = self.inner.gateways.get(Api::V3) else {
            tracing::error!(
                "a v3 notify arrived, but API v3 is not configured: it cannot be verified"
            );
            return NotifyReply::v3_fail(500, "API v3 not configured", NotifyOutcome::Unavailable);
        };
        let inbound = match gateway.read_notify(headers, body).await {
            Ok(i) => i,
            Err(e) => {
                return NotifyReply::v3_fail(
                    e.status,
                    &e.message,
                    NotifyOutcome::Rejected(e.rejection),
                );
            }
        };
        let (appid, mchid) = gateway.merchant();
        let span = tracing::Span::current();
        match inbound {
            Inbound::Payment {
                out_trade_no,
                appid: their_appid,
                mchid: their_mchid,
                trade_state,
                report,
            } => {
                span.record("event", "payment");
                *kind = "payment";
                span.record("out_trade_no", out_trade_no.as_str());
                if their_appid.as_deref() != Some(appid) || their_mchid.as_deref() != Some(mchid) {
                    tracing::warn!(appid = ?their_appid, mchid = ?their_mchid, "v3 payment notify for another merchant refused");
                    return NotifyReply::v3_refused(
                        "商户号或AppID不符",
                        NotifyOutcome::Rejected(NotifyRejection::WrongMerchant),
                    );
                }
                let Ok(no) = OutTradeNo::new(&out_trade_no) else {
                    return NotifyReply::v3_refused(
                        "参数格式校验错误",
                        NotifyOutcome::Rejected(NotifyRejection::Malformed),
                    );
                };
                if trade_state != TradeState::Success {
                    tracing::info!(
                        trade_state = trade_state.as_str(),
                        "v3 transaction notify that is not a payment; nothing recorded"
                    );
                    return NotifyReply::v3_success(NotifyOutcome::PaymentFailed {
                        out_trade_no: no,
                    });
                }
                let order = match self.inner.store.get_shared(&no).await {
                    Ok(Some(o)) => o,
                    Ok(None) => {
                        tracing::warn!("verified v3 notify for an unknown order");
                        return NotifyReply::v3_refused(
                            "订单不存在",
                            NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                        return NotifyReply::v3_refused("系统繁忙", NotifyOutcome::Unavailable);
                    }
                };
                match self.record_notified_payment(order, &report).await {
                    (outcome, None) => NotifyReply::v3_success(outcome),
                    (outcome, Some(message)) => NotifyReply::v3_refused(message, outcome),
                }
            }
            Inbound::Refund {
                out_trade_no,
                mchid: their_mchid,
                report,
            } => {
                span.record("event", "refund");
                *kind = "refund";
                if their_mchid.as_deref().is_some_and(|m| m != mchid) {
                    tracing::warn!(mchid = ?their_mchid, "v3 refund notify for another merchant refused");
                    return NotifyReply::v3_refused(
                        "商户号不符",
                        NotifyOutcome::Rejected(NotifyRejection::WrongMerchant),
                    );
                }
                let Some(no) = out_trade_no
                    .as_deref()
                    .and_then(|n| OutTradeNo::new(n).ok())
                else {
                    return NotifyReply::v3_refused(
                        "参数格式校验错误",
                        NotifyOutcome::Rejected(NotifyRejection::Malformed),
                    );
                };
                span.record("out_trade_no", no.as_str());
                let order = match self.inner.store.get(&no).await {
                    Ok(Some(o)) => o,
                    Ok(None) => {
                        return NotifyReply::v3_refused(
                            "订单不存在",
                            NotifyOutcome::Rejected(NotifyRejection::UnknownOrder),
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "order store failed; WeChat will deliver again");
                        return NotifyReply::v3_refused("系统繁忙", NotifyOutcome::Unavailable);
                    }
                };
                let out_refund_no = report.out_refund_no.clone();
                let status = report.status.clone();
                match self
                    .apply_refund_reports(&no, order, std::slice::from_ref(&report))
                    .await
                {
                    Ok((after, true)) => NotifyReply::v3_success(NotifyOutcome::Refund {
                        out_trade_no: no,
                        out_refund_no,
                        status,
                        state: after.state,
                    }),
                    Ok((_, false)) => {
                        if !matches!(status, RefundStatus::Processing) {
                            tracing::info!("refund notify with nothing new (applied already)");
                        }
                        NotifyReply::v3_success(NotifyOutcome::RefundIgnored {
                            out_trade_no: no,
                            out_refund_no,
                        })
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "refund notify not recorded; WeChat will deliver again");
                        NotifyReply::v3_refused("系统繁忙", NotifyOutcome::Unavailable)
                    }
                }
            }
            Inbound::Other { event_type } => {
                *kind = "other";
                tracing::info!(%event_type, "authentic v3 notify of an event this library does not handle: acknowledged");
                NotifyReply::v3_success(NotifyOutcome::Ignored { event_type })
            }
        }
    }
}
