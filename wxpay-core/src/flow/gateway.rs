//! The protocol seam: what the flow asks of WeChat Pay, in terms that do
//! not depend on the API version that answers.
//!
//! [`Payments`](super::Payments) decides (the state machine, the ledger, the
//! exactly-once effects); a [`Gateway`] only talks: it builds, signs and
//! sends the request, verifies the answer, and translates it into the
//! neutral values below. [`V2Gateway`] speaks API v2 (XML, MD5 /
//! HMAC-SHA256) over a [`Client`]. Every order records the API it was
//! created with ([`Order::api`](super::Order::api)) and is queried, closed
//! and refunded through that API's gateway only.
//!
//! Failures stay [`crate::Error`]s with the v2 vocabulary of
//! [`ErrCode`]: a gateway maps its protocol's codes onto it (v3's
//! `ORDER_NOT_EXIST` is [`ErrCode::OrderNotExist`]), so that
//! [`Error::is_definite_refusal`], [`Error::is_retryable`] and
//! [`Error::err_code`] mean the same whichever API answered.

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{
    NotifyRejection, Order,
    decide::{PaymentReport, RefundReport, Source},
};
use crate::{
    BoxTransport, Client, ErrCode, Error, FieldError, OutTradeNo, TradeState,
    bill::download::{BillDownload, BillError, Compression, TradeBillType},
    messages::{RefundRequest, UnifiedOrderRequest},
    paysign::PayParams,
};

/// The WeChat Pay API an order was created with, and is finished with.
/// Serialised as `V2` / `V3`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Api {
    /// API v2: XML signed MD5 or HMAC-SHA256 with the APIv2 key.
    #[default]
    V2,
    /// API v3: JSON signed SHA256-RSA2048 with the merchant private key.
    V3,
}

impl Api {
    /// `V2` or `V3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::V2 => "V2",
            Api::V3 => "V3",
        }
    }

    /// Reads [`as_str`](Api::as_str)'s form (also lower case).
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "V2" | "v2" => Some(Api::V2),
            "V3" | "v3" => Some(Api::V3),
            _ => None,
        }
    }
}

impl std::str::FromStr for Api {
    type Err = String;

    /// `v2` / `v3` (any case).
    fn from_str(s: &str) -> Result<Api, String> {
        match s.to_ascii_lowercase().as_str() {
            "v2" => Ok(Api::V2),
            "v3" => Ok(Api::V3),
            _ => Err(format!("{s:?} is not an API version (v2 or v3)")),
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a successful prepay (v2 unifiedorder, v3 `/v3/pay/transactions/…`)
/// gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepaid {
    /// The prepay session (JSAPI; v2 also gives one for NATIVE).
    pub prepay_id: Option<String>,
    /// NATIVE: the URL to show as a QR code.
    pub code_url: Option<String>,
}

/// A verified answer about an order's payment (v2 orderquery, v3 query by
/// `out_trade_no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeAnswer {
    /// WeChat's state of the order.
    pub trade_state: TradeState,
    /// The payment facts, for a paid state (`source` is
    /// [`Source::Query`]).
    pub report: PaymentReport,
}

/// What closing an order at WeChat came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Closed: it can no longer be paid.
    Closed,
    /// WeChat does not know the order (nothing to close).
    Unknown,
    /// It was paid meanwhile: the payment must be learnt (query).
    Paid,
}

/// An accepted refund request: the result comes later (refund notify or
/// refund query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundAccepted {
    /// WeChat's refund number.
    pub refund_id: Option<String>,
}

/// The parameters for `wx.requestPayment`, as the order routes send them:
/// `{timeStamp, nonceStr, package, signType, paySign}` (v2 adds `appId`).
/// `signType` is `MD5` or `HMAC-SHA256` for a v2 order and `RSA` for a v3
/// one: it must match the API that issued the `prepay_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum RequestPayment {
    /// API v2: signed with the APIv2 key.
    V2(PayParams),
    /// API v3: signed with the merchant private key.
    V3(crate::v3::PayParamsV3),
}

impl RequestPayment {
    /// The v2 parameters, for a v2 order.
    pub fn as_v2(&self) -> Option<&PayParams> {
        match self {
            RequestPayment::V2(p) => Some(p),
            RequestPayment::V3(_) => None,
        }
    }

    /// The v3 parameters, for a v3 order.
    pub fn as_v3(&self) -> Option<&crate::v3::PayParamsV3> {
        match self {
            RequestPayment::V3(p) => Some(p),
            RequestPayment::V2(_) => None,
        }
    }

    /// `prepay_id=…`.
    pub fn package(&self) -> &str {
        match self {
            RequestPayment::V2(p) => &p.package,
            RequestPayment::V3(p) => &p.package,
        }
    }

    /// `MD5`, `HMAC-SHA256` or `RSA`.
    pub fn sign_type(&self) -> &'static str {
        match self {
            RequestPayment::V2(p) => p.sign_type.as_str(),
            RequestPayment::V3(_) => "RSA",
        }
    }

    /// The signature.
    pub fn pay_sign(&self) -> &str {
        match self {
            RequestPayment::V2(p) => &p.pay_sign,
            RequestPayment::V3(p) => &p.pay_sign,
        }
    }

    /// Unix seconds, as a string.
    pub fn time_stamp(&self) -> &str {
        match self {
            RequestPayment::V2(p) => &p.time_stamp,
            RequestPayment::V3(p) => &p.time_stamp,
        }
    }

    /// The nonce.
    pub fn nonce_str(&self) -> &str {
        match self {
            RequestPayment::V2(p) => &p.nonce_str,
            RequestPayment::V3(p) => &p.nonce_str,
        }
    }
}

/// One WeChat Pay API as the flow uses it. Implemented by [`V2Gateway`]
/// (and the v3 gateway); implement it only to put something between the
/// flow and WeChat (a proxy, a recorder): the flow's guarantees rest on a
/// gateway that verifies every answer before translating it.
///
/// Requests are protocol-neutral: [`UnifiedOrderRequest`] and
/// [`RefundRequest`] describe what is asked (their field rules are v2's,
/// which v3's include); a gateway maps them onto its own messages.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// Which API this is.
    fn api(&self) -> Api;

    /// The merchant's `appid` and `mch_id` (what notifies and answers must
    /// name).
    fn merchant(&self) -> (&str, &str);

    /// Checks the request against this API's field rules, before anything
    /// is stored.
    ///
    /// # Errors
    /// The first field that breaks a rule.
    fn check(&self, req: &UnifiedOrderRequest) -> Result<(), FieldError>;

    /// Creates the order at WeChat (or re-enters it with the same fields).
    ///
    /// # Errors
    /// As [`Error`]: only [`Error::is_definite_refusal`] means it was not
    /// created.
    async fn prepay(&self, req: &UnifiedOrderRequest) -> Result<Prepaid, Error>;

    /// Signs `wx.requestPayment`'s parameters for an order of this API.
    fn request_payment(&self, order: &Order, prepay_id: &str) -> Result<RequestPayment, Error>;

    /// Asks WeChat about an order: `None` when WeChat does not know it.
    ///
    /// # Errors
    /// As [`Error`].
    async fn query(&self, out_trade_no: &OutTradeNo) -> Result<Option<TradeAnswer>, Error>;

    /// Closes an unpaid order at WeChat.
    ///
    /// # Errors
    /// As [`Error`].
    async fn close(&self, out_trade_no: &OutTradeNo) -> Result<Closed, Error>;

    /// Whether refunds can be sent at all (v2 needs the merchant client
    /// certificate; v3 needs none).
    fn can_refund(&self) -> bool;

    /// Asks for a refund (the result comes later).
    ///
    /// # Errors
    /// As [`Error`]: only [`Error::is_definite_refusal`] proves it had no
    /// effect.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundAccepted, Error>;

    /// WeChat's refunds of `order`, as verified reports (`source`
    /// [`Source::Query`]). v2 lists every refund of the order (refundquery by
    /// `out_trade_no`), refunds made elsewhere included; v3 has no such
    /// listing and answers the refunds of the order's ledger, each asked by
    /// its number. A refund WeChat does not know is absent.
    ///
    /// # Errors
    /// As [`Error`].
    async fn refunds(&self, order: &Order) -> Result<Vec<RefundReport>, Error>;

    /// WeChat's refund of `order` numbered `out_refund_no`, as a verified
    /// report, whether the ledger has it or not (a bill names refunds made
    /// elsewhere); `None` when WeChat does not know it. Provided: from
    /// [`refunds`](Gateway::refunds) (right for v2, which lists them all);
    /// v3 asks for the number.
    ///
    /// # Errors
    /// As [`Error`].
    async fn refund_by_number(
        &self,
        order: &Order,
        out_refund_no: &str,
    ) -> Result<Option<RefundReport>, Error> {
        Ok(self
            .refunds(order)
            .await?
            .into_iter()
            .find(|r| r.out_refund_no == out_refund_no))
    }

    /// Verifies and reads a notify of this API that carries its signature
    /// in headers (API v3: the `Wechatpay-*` headers over the raw body, then
    /// the AES-256-GCM resource). Only facts from the verified, decrypted
    /// resource come back. v2 notifies are read by the flow itself (their
    /// signature is in the body); the default refuses.
    ///
    /// # Errors
    /// [`InboundError`]: what to answer, and why.
    async fn read_notify(
        &self,
        headers: crate::v3::WechatpayHeaders<'_>,
        body: &[u8],
    ) -> Result<Inbound, InboundError> {
        let _ = (headers, body);
        Err(InboundError {
            rejection: NotifyRejection::Malformed,
            status: 400,
            message: "not a notify of this API".into(),
        })
    }

    /// The trade bill (`ALL`, gzip on the wire) of `date`, Beijing time,
    /// streamed: pull it with [`BillDownload::next_chunk`] (decompressed
    /// bytes; v3 checks WeChat's SHA-1 at the end). On any error, discard
    /// what was read. The default (a gateway that cannot) refuses with
    /// [`BillError::Unsupported`].
    ///
    /// # Errors
    /// [`Error::is_bill_not_ready`] (ask later), [`Error::is_no_bill`]
    /// (none that day), or any other [`Error`] of the API's bill call.
    async fn trade_bill(&self, date: NaiveDate) -> Result<BillDownload, Error> {
        let _ = date;
        Err(BillError::Unsupported.into())
    }
}

/// A verified notify, read by [`Gateway::read_notify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// A payment (`TRANSACTION.*`).
    Payment {
        /// The merchant order number.
        out_trade_no: String,
        /// The AppID it names.
        appid: Option<String>,
        /// The merchant it names.
        mchid: Option<String>,
        /// Its state (`SUCCESS` for a payment notify).
        trade_state: TradeState,
        /// The payment facts (`source` [`Source::Notify`]).
        report: PaymentReport,
    },
    /// A refund's result (`REFUND.SUCCESS` / `CLOSED` / `ABNORMAL`).
    Refund {
        /// The order refunded.
        out_trade_no: Option<String>,
        /// The merchant it names.
        mchid: Option<String>,
        /// The refund (`source` [`Source::Notify`]).
        report: RefundReport,
    },
    /// An authentic event this version does not handle: acknowledged.
    Other {
        /// Its `event_type`.
        event_type: String,
    },
}

/// Why a notify was refused by [`Gateway::read_notify`], and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundError {
    /// Why (as the flow reports it).
    pub rejection: NotifyRejection,
    /// The HTTP status to answer (4xx or 5xx: WeChat delivers again).
    pub status: u16,
    /// The reply's `message` (safe to send: no secret, no detail).
    pub message: String,
}

/// API v2 over a [`Client`]: unifiedorder, orderquery, closeorder, refund,
/// refundquery.
#[derive(Clone)]
pub struct V2Gateway {
    client: Client<BoxTransport>,
}

impl V2Gateway {
    /// A gateway over `client`.
    pub fn new(client: Client<BoxTransport>) -> V2Gateway {
        V2Gateway { client }
    }

    /// The client.
    pub fn client(&self) -> &Client<BoxTransport> {
        &self.client
    }
}

impl std::fmt::Debug for V2Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Gateway")
            .field("appid", &self.client.config().appid)
            .field("mch_id", &self.client.config().mch_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Gateway for V2Gateway {
    fn api(&self) -> Api {
        Api::V2
    }

    fn merchant(&self) -> (&str, &str) {
        let c = self.client.config();
        (&c.appid, &c.mch_id)
    }

    fn check(&self, req: &UnifiedOrderRequest) -> Result<(), FieldError> {
        req.to_params(self.client.config().notify_url.as_deref())
            .map(drop)
    }

    async fn prepay(&self, req: &UnifiedOrderRequest) -> Result<Prepaid, Error> {
        let a = self.client.unified_order(req).await?;
        Ok(Prepaid {
            prepay_id: a.prepay_id,
            code_url: a.code_url,
        })
    }

    fn request_payment(&self, order: &Order, prepay_id: &str) -> Result<RequestPayment, Error> {
        Ok(RequestPayment::V2(
            self.client.pay_params_signed(prepay_id, order.sign_type),
        ))
    }

    async fn query(&self, out_trade_no: &OutTradeNo) -> Result<Option<TradeAnswer>, Error> {
        let q = match self.client.order_query(out_trade_no).await {
            Ok(q) => q,
            Err(Error::Business {
                err_code: ErrCode::OrderNotExist,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let report = PaymentReport {
            transaction_id: q.transaction_id.clone(),
            total_fee: q.total_fee,
            fee_type: super::decide::foreign_currency(q.params.non_empty("fee_type")),
            time_end: q.time_end.clone(),
            bank_type: q.bank_type.clone(),
            cash_fee: q.cash_fee,
            source: Source::Query,
        };
        Ok(Some(TradeAnswer {
            trade_state: q.trade_state,
            report,
        }))
    }

    async fn close(&self, out_trade_no: &OutTradeNo) -> Result<Closed, Error> {
        match self.client.close_order(out_trade_no).await {
            Ok(()) => Ok(Closed::Closed),
            Err(Error::Business {
                err_code: ErrCode::OrderNotExist,
                ..
            }) => Ok(Closed::Unknown),
            Err(Error::Business {
                err_code: ErrCode::OrderPaid,
                ..
            }) => Ok(Closed::Paid),
            Err(e) => Err(e),
        }
    }

    fn can_refund(&self) -> bool {
        self.client.can_refund()
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundAccepted, Error> {
        let a = self.client.refund(req).await?;
        Ok(RefundAccepted {
            refund_id: a.refund_id,
        })
    }

    async fn trade_bill(&self, date: NaiveDate) -> Result<BillDownload, Error> {
        self.client
            .download_bill(date, TradeBillType::All, Compression::Gzip)
            .await
    }

    async fn refunds(&self, order: &Order) -> Result<Vec<RefundReport>, Error> {
        match self.client.refund_query_by_order(&order.out_trade_no).await {
            Ok(q) => Ok(q
                .refunds
                .into_iter()
                .map(|r| RefundReport {
                    out_refund_no: r.out_refund_no,
                    refund_id: r.refund_id,
                    refund_fee: r.refund_fee,
                    status: r.status,
                    source: Source::Query,
                })
                .collect()),
            Err(Error::Business {
                err_code: ErrCode::RefundNotExist,
                ..
            }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The gateways of one merchant: the API new orders are created with, and
/// the ones existing orders are finished with.
#[derive(Clone)]
pub(crate) struct Gateways {
    pub(crate) default: Api,
    pub(crate) v2: Option<std::sync::Arc<dyn Gateway>>,
    pub(crate) v3: Option<std::sync::Arc<dyn Gateway>>,
}

impl Gateways {
    /// The gateway of `api`, if configured.
    pub(crate) fn get(&self, api: Api) -> Option<&std::sync::Arc<dyn Gateway>> {
        match api {
            Api::V2 => self.v2.as_ref(),
            Api::V3 => self.v3.as_ref(),
        }
    }
}
