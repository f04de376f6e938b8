//! API v3 behind the [`Gateway`] seam: JSON signed SHA256-RSA2048 over a
//! [`v3::Client`](crate::v3::Client), every answer and notify verified
//! before it is translated.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};

use super::{
    NotifyRejection, Order, RefundState,
    decide::{PaymentReport, RefundReport, Source, foreign_currency},
    gateway::{
        Api, Closed, Gateway, Inbound, InboundError, Prepaid, RefundAccepted, RequestPayment,
        TradeAnswer,
    },
};
use crate::{
    BoxTransport, ErrCode, Error, FieldError, OutTradeNo, RefundStatus, TradeState, TradeType,
    bill::download::{BillDownload, Compression, TradeBillType},
    messages::{RefundRequest, UnifiedOrderRequest},
    types::beijing,
    v3::{
        self, NotifyEvent, PrepayRequest, RefundTarget, SceneInfo, Transaction, WechatpayHeaders,
    },
};

/// The longest `description` v3 takes, in characters (spec 7.1).
const MAX_DESCRIPTION: usize = 127;

/// The longest `attach` v3 takes, in characters (spec 7.1).
const MAX_ATTACH: usize = 128;

/// API v3 over a [`v3::Client`](crate::v3::Client): JSAPI / NATIVE prepay,
/// query by `out_trade_no`, close (confirmed by a query: a 204 alone is no
/// proof, spec 10), refund and refund query, and notifies.
///
/// What differs from v2, and how the flow sees it:
/// - **Refunds made elsewhere** (in the merchant platform) are learnt only
///   from their refund notify: v3 has no "every refund of an order" query
///   (spec 11.5), so [`refunds`](Gateway::refunds) asks about the refunds
///   of the order's ledger that are not settled yet, each by its number.
/// - **Payment time** (`success_time`, RFC 3339) is recorded as v2 does,
///   `yyyyMMddHHmmss` in Beijing time, in [`Order::time_end`].
/// - **Client IP**: `scene_info.payer_client_ip` is sent only when the
///   request knew the payer's address (v3 does not require it).
#[derive(Clone)]
pub struct V3Gateway {
    client: v3::Client<BoxTransport>,
}

impl V3Gateway {
    /// A gateway over `client`.
    pub fn new(client: v3::Client<BoxTransport>) -> V3Gateway {
        V3Gateway { client }
    }

    /// The client.
    pub fn client(&self) -> &v3::Client<BoxTransport> {
        &self.client
    }
}

impl std::fmt::Debug for V3Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V3Gateway")
            .field("appid", &self.client.config().appid)
            .field("mchid", &self.client.config().mchid())
            .finish_non_exhaustive()
    }
}

/// `success_time` (RFC 3339) as v2's `time_end`: `yyyyMMddHHmmss`, Beijing.
/// Kept as sent when it does not parse.
fn time_end(success_time: &str) -> String {
    match DateTime::parse_from_rfc3339(success_time) {
        Ok(t) => t
            .with_timezone(&beijing())
            .format("%Y%m%d%H%M%S")
            .to_string(),
        Err(_) => success_time.to_owned(),
    }
}

/// The payment facts of a verified transaction.
fn report_of(t: &Transaction, source: Source) -> PaymentReport {
    let amount = t.amount.as_ref();
    PaymentReport {
        transaction_id: t.transaction_id.clone(),
        total_fee: amount.and_then(|a| a.total),
        fee_type: foreign_currency(amount.and_then(|a| a.currency.as_deref())),
        time_end: t.success_time.as_deref().map(time_end),
        bank_type: t.bank_type.clone(),
        cash_fee: amount.and_then(|a| a.payer_total),
        source,
    }
}

/// A v3 refund `status` as the flow's [`RefundStatus`] (v2's words).
fn refund_status(status: &str) -> RefundStatus {
    match status {
        "SUCCESS" => RefundStatus::Success,
        "CLOSED" => RefundStatus::RefundClose,
        "PROCESSING" => RefundStatus::Processing,
        "ABNORMAL" => RefundStatus::Change,
        other => RefundStatus::parse(other),
    }
}

/// Whether `c` is encoded in 1–3 UTF-8 bytes: v3 takes no other (spec 1.2).
fn bmp(s: &str) -> bool {
    s.chars().all(|c| c.len_utf8() <= 3)
}

fn text_rule(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if !bmp(value) {
        return Err(FieldError::new(
            field,
            "contains characters v3 refuses (emoji and others of 4 UTF-8 bytes)",
        ));
    }
    Ok(())
}

fn is_not_found(e: &Error, code: ErrCode) -> bool {
    matches!(e, Error::Api(a) if a.verified && a.err_code == code)
}

#[async_trait]
impl Gateway for V3Gateway {
    fn api(&self) -> Api {
        Api::V3
    }

    fn merchant(&self) -> (&str, &str) {
        let c = self.client.config();
        (&c.appid, c.mchid())
    }

    fn check(&self, req: &UnifiedOrderRequest) -> Result<(), FieldError> {
        let no = req.out_trade_no.as_str();
        if !(6..=32).contains(&no.len())
            || !no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
        {
            return Err(FieldError::new(
                "out_trade_no",
                "v3 takes 6 to 32 of [0-9A-Za-z_-|*]",
            ));
        }
        text_rule("description", &req.body, MAX_DESCRIPTION)?;
        if let Some(a) = &req.attach {
            text_rule("attach", a, MAX_ATTACH)?;
        }
        match req.trade_type {
            TradeType::Jsapi if req.openid.as_deref().is_none_or(str::is_empty) => {
                Err(FieldError::new("openid", "required for JSAPI"))
            }
            TradeType::Jsapi | TradeType::Native => Ok(()),
            _ => Err(FieldError::new(
                "trade_type",
                "this library creates JSAPI and NATIVE orders only",
            )),
        }
    }

    async fn prepay(&self, req: &UnifiedOrderRequest) -> Result<Prepaid, Error> {
        let no = req.out_trade_no.as_str();
        let mut p = match (&req.trade_type, &req.openid) {
            (TradeType::Jsapi, Some(openid)) => {
                PrepayRequest::jsapi(&req.body, no, req.total_fee, openid)
            }
            _ => PrepayRequest::native(&req.body, no, req.total_fee),
        };
        if let Some(a) = &req.attach {
            p = p.with_attach(a);
        }
        // The v2 request carries 127.0.0.1 when the payer's address was not
        // known; v3 does not need one, so none is sent then.
        if req.spbill_create_ip != "127.0.0.1" && !req.spbill_create_ip.is_empty() {
            p = p.with_scene_info(SceneInfo {
                payer_client_ip: req.spbill_create_ip.clone(),
                device_id: None,
            });
        }
        if req.trade_type == TradeType::Jsapi {
            let a = self.client.jsapi_prepay(&p).await?;
            Ok(Prepaid {
                prepay_id: Some(a.prepay_id.clone()),
                code_url: None,
            })
        } else {
            let a = self.client.native_prepay(&p).await?;
            Ok(Prepaid {
                prepay_id: None,
                code_url: Some(a.code_url.clone()),
            })
        }
    }

    fn request_payment(&self, _order: &Order, prepay_id: &str) -> Result<RequestPayment, Error> {
        Ok(RequestPayment::V3(self.client.pay_params(prepay_id)?))
    }

    async fn query(&self, out_trade_no: &OutTradeNo) -> Result<Option<TradeAnswer>, Error> {
        let t = match self
            .client
            .query_by_out_trade_no(out_trade_no.as_str())
            .await
        {
            Ok(t) => t,
            Err(e) if is_not_found(&e, ErrCode::OrderNotExist) => return Ok(None),
            Err(e) => return Err(e),
        };
        if t.out_trade_no != out_trade_no.as_str() {
            return Err(FieldError::new("out_trade_no", "the answer names another order").into());
        }
        Ok(Some(TradeAnswer {
            trade_state: t.state(),
            report: report_of(&t, Source::Query),
        }))
    }

    async fn close(&self, out_trade_no: &OutTradeNo) -> Result<Closed, Error> {
        let closed = self.client.close(out_trade_no.as_str()).await;
        if let Err(e) = &closed
            && is_not_found(e, ErrCode::OrderNotExist)
        {
            return Ok(Closed::Unknown);
        }
        // A 204 is no proof, and a refusal may mean "paid" (what closing a
        // paid order answers is not documented): the query decides.
        let state = match self.query(out_trade_no).await {
            Ok(Some(a)) => a.trade_state,
            Ok(None) => return closed.map(|()| Closed::Unknown),
            Err(qe) => return Err(closed.err().unwrap_or(qe)),
        };
        match state {
            s if s.is_paid() => Ok(Closed::Paid),
            TradeState::Closed | TradeState::Revoked => Ok(Closed::Closed),
            other => Err(closed.err().unwrap_or_else(|| {
                FieldError::new(
                    "trade_state",
                    format!("still {} after the close", other.as_str()),
                )
                .into()
            })),
        }
    }

    fn can_refund(&self) -> bool {
        true
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundAccepted, Error> {
        let r = v3::RefundRequest::new(
            RefundTarget::OutTradeNo(req.out_trade_no.as_str().to_owned()),
            &req.out_refund_no,
            req.refund_fee,
            req.total_fee,
        );
        let a = self.client.refund(&r).await?;
        if a.out_refund_no != req.out_refund_no {
            return Err(FieldError::new("out_refund_no", "the answer names another refund").into());
        }
        Ok(RefundAccepted {
            refund_id: Some(a.refund_id.clone()),
        })
    }

    async fn trade_bill(&self, date: NaiveDate) -> Result<BillDownload, Error> {
        self.client
            .trade_bill(date, TradeBillType::All, Compression::Gzip)
            .await
    }

    async fn refunds(&self, order: &Order) -> Result<Vec<RefundReport>, Error> {
        let mut reports = Vec::new();
        let open = order.refunds.iter().filter(|r| {
            matches!(
                r.state,
                RefundState::Requested
                    | RefundState::Processing
                    | RefundState::Unknown
                    | RefundState::Abnormal
            )
        });
        for r in open {
            if let Some(report) = self.refund_by_number(order, &r.out_refund_no).await? {
                reports.push(report);
            }
        }
        Ok(reports)
    }

    async fn refund_by_number(
        &self,
        order: &Order,
        out_refund_no: &str,
    ) -> Result<Option<RefundReport>, Error> {
        let a = match self.client.refund_query(out_refund_no).await {
            Ok(a) => a,
            Err(e) if is_not_found(&e, ErrCode::RefundNotExist) => return Ok(None),
            Err(e) => return Err(e),
        };
        if a.out_refund_no != out_refund_no
            || a.out_trade_no
                .as_deref()
                .is_some_and(|no| no != order.out_trade_no.as_str())
        {
            return Err(FieldError::new("out_refund_no", "the answer names another refund").into());
        }
        let Some(status) = a.status.as_deref() else {
            return Ok(None);
        };
        Ok(Some(RefundReport {
            out_refund_no: a.out_refund_no.clone(),
            refund_id: Some(a.refund_id.clone()),
            refund_fee: a.amount.as_ref().and_then(|m| m.refund),
            status: refund_status(status),
            source: Source::Query,
        }))
    }

    async fn read_notify(
        &self,
        headers: WechatpayHeaders<'_>,
        body: &[u8],
    ) -> Result<Inbound, InboundError> {
        let verified = self
            .client
            .verify_notify(&headers, body)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "v3 notify refused");
                let rejection = match e {
                    v3::NotifyError::Validation(_) | v3::NotifyError::Decrypt(_) => {
                        NotifyRejection::BadSignature
                    }
                    _ => NotifyRejection::Malformed,
                };
                let (status, reply) = e.reply();
                let message = serde_json::from_str::<serde_json::Value>(&reply)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "refused".into());
                InboundError {
                    rejection,
                    status,
                    message,
                }
            })?;
        Ok(match verified.event {
            NotifyEvent::Transaction(t) => Inbound::Payment {
                out_trade_no: t.out_trade_no.clone(),
                appid: t.appid.clone(),
                mchid: t.mchid.clone(),
                trade_state: t.state(),
                report: report_of(&t, Source::Notify),
            },
            NotifyEvent::Refund(r) => Inbound::Refund {
                out_trade_no: r.out_trade_no.clone(),
                mchid: r.mchid.clone(),
                report: RefundReport {
                    out_refund_no: r.out_refund_no.clone(),
                    refund_id: Some(r.refund_id.clone()),
                    refund_fee: r.amount.as_ref().and_then(|m| m.refund),
                    status: refund_status(&r.refund_status),
                    source: Source::Notify,
                },
            },
            _ => Inbound::Other {
                event_type: verified.notification.event_type.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_time_is_recorded_in_beijing_time_like_v2() {
        assert_eq!(time_end("2026-01-01T12:30:00+08:00"), "20260101123000");
        assert_eq!(time_end("2026-01-01T04:30:00Z"), "20260101123000");
        assert_eq!(time_end("2026-01-01T04:30:00.123Z"), "20260101123000");
        assert_eq!(time_end("not a time"), "not a time");
    }

    #[test]
    fn v3_refund_statuses_map_onto_the_ledger_words() {
        assert_eq!(refund_status("SUCCESS"), RefundStatus::Success);
        assert_eq!(refund_status("CLOSED"), RefundStatus::RefundClose);
        assert_eq!(refund_status("PROCESSING"), RefundStatus::Processing);
        assert_eq!(refund_status("ABNORMAL"), RefundStatus::Change);
        assert!(matches!(refund_status("NEW_ONE"), RefundStatus::Other(_)));
    }

    #[test]
    fn four_byte_characters_are_refused_like_v3_does() {
        assert!(text_rule("description", "腾讯-游戏", 127).is_ok());
        assert_eq!(
            text_rule("description", "🎉 sale", 127).unwrap_err().field,
            "description"
        );
        assert!(text_rule("attach", &"a".repeat(129), 128).is_err());
        assert!(text_rule("attach", &"商".repeat(128), 128).is_ok());
    }
}
