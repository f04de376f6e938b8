//! Typed API v3 requests and answers (spec 7, 9, 10, 11, 13.3, 13.4).
//!
//! Requests are serialised once, in the field order of WeChat's pages
//! (which the vectors use), and those exact bytes are signed and sent.
//! Answers tolerate unknown fields (kept in `extra`); every field is
//! optional except the ids; [`Verified`] keeps the raw body.

use std::ops::Deref;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::Fen;

type Extra = serde_json::Map<String, serde_json::Value>;

/// Formats a time the way every v3 request field wants it:
/// `yyyy-MM-DDTHH:mm:ss+08:00` (seconds, explicit offset, no fraction).
///
/// ```
/// let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:30:00.5+08:00").unwrap();
/// assert_eq!(wxpay_core::v3::format_time(&t), "2026-01-01T12:30:00+08:00");
/// ```
pub fn format_time(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A verified answer: the typed value, the raw body as received, and the
/// `Request-ID`. Dereferences to the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<T> {
    /// The parsed answer.
    pub value: T,
    /// The body exactly as received (and verified).
    pub raw: Vec<u8>,
    /// The `Request-ID` header.
    pub request_id: Option<String>,
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// `amount` of a prepay: `total` in fen, `currency` (`CNY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrepayAmount {
    /// Order amount in fen, > 0.
    pub total: Fen,
    /// `CNY`.
    pub currency: String,
}

/// `payer` of a JSAPI prepay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrepayPayer {
    /// The payer's openid under the configured appid.
    pub openid: String,
}

/// One `detail.goods_detail[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodsDetail {
    /// Merchant goods id (`[0-9A-Za-z_-]`).
    pub merchant_goods_id: String,
    /// WeChat goods id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechatpay_goods_id: Option<String>,
    /// Goods name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_name: Option<String>,
    /// Quantity.
    pub quantity: u32,
    /// Unit price in fen, after merchant discount.
    pub unit_price: Fen,
}

/// `detail` of a prepay (anti split-payment data for discounts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrepayDetail {
    /// Original price of the whole receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_price: Option<Fen>,
    /// Merchant receipt id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    /// Goods lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub goods_detail: Vec<GoodsDetail>,
}

/// `scene_info` of a prepay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SceneInfo {
    /// The user's IPv4 or IPv6 address.
    pub payer_client_ip: String,
    /// Store or cashier device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// `settle_info` of a prepay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettleInfo {
    /// Whether profit sharing is allowed after payment.
    pub profit_sharing: bool,
}

/// A JSAPI (mini-program) or NATIVE prepay (spec 7.1, 7.4). `appid`,
/// `mchid` and `notify_url` come from the client's configuration.
///
/// ```
/// use wxpay_core::{Fen, v3::PrepayRequest};
/// let req = PrepayRequest::jsapi("shop-VIP", "WXP20260101120000A1", Fen(2990), "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
///     .with_attach("cart=7");
/// assert_eq!(req.amount.currency, "CNY");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrepayRequest {
    /// Goods description (≤ 127 characters).
    pub description: String,
    /// Merchant order number (6–32 of `[0-9A-Za-z_-]` recommended).
    pub out_trade_no: String,
    /// Payment deadline (sent as `yyyy-MM-DDTHH:mm:ss+08:00`).
    pub time_expire: Option<DateTime<FixedOffset>>,
    /// Merchant data echoed once paid (≤ 128).
    pub attach: Option<String>,
    /// Coupon tag.
    pub goods_tag: Option<String>,
    /// Whether to offer an e-invoice entry.
    pub support_fapiao: Option<bool>,
    /// Amount.
    pub amount: PrepayAmount,
    /// Payer (JSAPI only; `None` for NATIVE).
    pub payer: Option<PrepayPayer>,
    /// Receipt details.
    pub detail: Option<PrepayDetail>,
    /// Scene.
    pub scene_info: Option<SceneInfo>,
    /// Settlement.
    pub settle_info: Option<SettleInfo>,
}

impl PrepayRequest {
    /// A JSAPI prepay for `openid`, in CNY.
    pub fn jsapi(
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        total: Fen,
        openid: impl Into<String>,
    ) -> PrepayRequest {
        let mut req = PrepayRequest::native(description, out_trade_no, total);
        req.payer = Some(PrepayPayer {
            openid: openid.into(),
        });
        req
    }

    /// A NATIVE (QR code) prepay, in CNY.
    pub fn native(
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        total: Fen,
    ) -> PrepayRequest {
        PrepayRequest {
            description: description.into(),
            out_trade_no: out_trade_no.into(),
            time_expire: None,
            attach: None,
            goods_tag: None,
            support_fapiao: None,
            amount: PrepayAmount {
                total,
                currency: "CNY".into(),
            },
            payer: None,
            detail: None,
            scene_info: None,
            settle_info: None,
        }
    }

    /// Sets `time_expire`.
    pub fn with_time_expire(mut self, t: DateTime<FixedOffset>) -> PrepayRequest {
        self.time_expire = Some(t);
        self
    }

    /// Sets `attach`.
    pub fn with_attach(mut self, attach: impl Into<String>) -> PrepayRequest {
        self.attach = Some(attach.into());
        self
    }

    /// Sets `scene_info`.
    pub fn with_scene_info(mut self, scene: SceneInfo) -> PrepayRequest {
        self.scene_info = Some(scene);
        self
    }

    /// The exact JSON body, in WeChat's field order.
    pub(crate) fn to_body(&self, appid: &str, mchid: &str, notify_url: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            appid: &'a str,
            mchid: &'a str,
            description: &'a str,
            out_trade_no: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            time_expire: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            attach: Option<&'a str>,
            notify_url: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            goods_tag: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            support_fapiao: Option<bool>,
            amount: &'a PrepayAmount,
            #[serde(skip_serializing_if = "Option::is_none")]
            payer: Option<&'a PrepayPayer>,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a PrepayDetail>,
            #[serde(skip_serializing_if = "Option::is_none")]
            scene_info: Option<&'a SceneInfo>,
            #[serde(skip_serializing_if = "Option::is_none")]
            settle_info: Option<&'a SettleInfo>,
        }
        let wire = Wire {
            appid,
            mchid,
            description: &self.description,
            out_trade_no: &self.out_trade_no,
            time_expire: self.time_expire.as_ref().map(format_time),
            attach: self.attach.as_deref(),
            notify_url,
            goods_tag: self.goods_tag.as_deref(),
            support_fapiao: self.support_fapiao,
            amount: &self.amount,
            payer: self.payer.as_ref(),
            detail: self.detail.as_ref(),
            scene_info: self.scene_info.as_ref(),
            settle_info: self.settle_info.as_ref(),
        };
        serde_json::to_string(&wire).expect("plain structs serialise")
    }
}

/// The answer of a JSAPI prepay.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JsapiPrepayResponse {
    /// Valid 2 hours; renew with the same parameters.
    pub prepay_id: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer of a NATIVE prepay.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NativePrepayResponse {
    /// `weixin://wxpay/bizpayurl?pr=…`: render as a QR code, opaque.
    pub code_url: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `payer` of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TransactionPayer {
    /// The payer's openid.
    pub openid: Option<String>,
    /// Unknown fields (partner mode: `sp_openid`, `sub_openid`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `amount` of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TransactionAmount {
    /// Order amount, fen (compare this one with the order, not `payer_total`).
    pub total: Option<Fen>,
    /// Paid by the user (total − coupons).
    pub payer_total: Option<Fen>,
    /// `CNY`.
    pub currency: Option<String>,
    /// `CNY`.
    pub payer_currency: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `scene_info` of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TransactionScene {
    /// Device id.
    pub device_id: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `promotion_detail[]` entry (coupons), fields as WeChat names them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PromotionDetail {
    /// Coupon id (payments).
    pub coupon_id: Option<String>,
    /// Promotion id (refunds).
    pub promotion_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// `GLOBAL` / `SINGLE`.
    pub scope: Option<String>,
    /// `CASH` / `NOCASH` (refunds: also `COUPON` / `DISCOUNT`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Amount, fen.
    pub amount: Option<Fen>,
    /// Refunded amount, fen (refunds).
    pub refund_amount: Option<Fen>,
    /// Unknown fields (`stock_id`, contributions, `goods_detail`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A transaction (spec 9.2): the query answer and the decrypted payment
/// notify resource (spec 13.3). Only `out_trade_no` and `trade_state` are
/// required; `mchid` is absent in partner resources (`sp_mchid`/`sub_mchid`
/// land in `extra`; [`PartnerTransaction`](super::PartnerTransaction) types
/// them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Transaction {
    /// AppID.
    pub appid: Option<String>,
    /// Merchant id.
    pub mchid: Option<String>,
    /// Merchant order number.
    pub out_trade_no: String,
    /// WeChat order number (absent until paid).
    pub transaction_id: Option<String>,
    /// `JSAPI`, `NATIVE`, `APP`, `MICROPAY`, `MWEB`, `FACEPAY`.
    pub trade_type: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, `REVOKED`, `USERPAYING`,
    /// `PAYERROR` (an unknown value is intermediate: query again later).
    pub trade_state: String,
    /// Human text.
    pub trade_state_desc: Option<String>,
    /// Bank short code, `OTHERS` for balance.
    pub bank_type: Option<String>,
    /// Merchant data (only once paid; may be empty).
    pub attach: Option<String>,
    /// RFC 3339 payment time.
    pub success_time: Option<String>,
    /// Payer.
    pub payer: Option<TransactionPayer>,
    /// Amounts.
    pub amount: Option<TransactionAmount>,
    /// Scene.
    pub scene_info: Option<TransactionScene>,
    /// Coupons.
    #[serde(default)]
    pub promotion_detail: Vec<PromotionDetail>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Transaction {
    /// `trade_state` as the flow's [`TradeState`](crate::TradeState)
    /// (same wire values as v2; unknown values kept as `Other`).
    pub fn state(&self) -> crate::TradeState {
        crate::TradeState::parse(&self.trade_state)
    }
}

/// `amount.from[]` of a refund: which account funds how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFrom {
    /// `AVAILABLE` or `UNAVAILABLE`.
    pub account: String,
    /// Fen.
    pub amount: Fen,
}

/// `amount` of a refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundRequestAmount {
    /// Amount to refund, fen.
    pub refund: Fen,
    /// Funding accounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RefundFrom>,
    /// The original order's total (must equal it).
    pub total: Fen,
    /// `CNY`.
    pub currency: String,
}

/// Which payment a refund is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundTarget {
    /// By WeChat order number (preferred when known).
    TransactionId(String),
    /// By merchant order number.
    OutTradeNo(String),
}

/// A refund (spec 11.2). `notify_url` comes from the configuration (the
/// refund notify URL, else the payment one) and is always sent. On an
/// unknown outcome repeat it with the **same** `out_refund_no` and amounts.
///
/// ```
/// use wxpay_core::{Fen, v3::{RefundRequest, RefundTarget}};
/// let req = RefundRequest::new(RefundTarget::OutTradeNo("WXP20260101120000A1".into()), "RF20260102090000B1", Fen(1000), Fen(2990))
///     .with_reason("商品已售完");
/// assert_eq!(req.amount.currency, "CNY");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundRequest {
    /// The payment refunded.
    pub target: RefundTarget,
    /// Merchant refund number, unique, reused on retries.
    pub out_refund_no: String,
    /// Shown to the user (≤ 80).
    pub reason: Option<String>,
    /// `AVAILABLE` (legacy fund-flow merchants only).
    pub funds_account: Option<String>,
    /// Amounts.
    pub amount: RefundRequestAmount,
}

impl RefundRequest {
    /// Refund `refund` fen of an order of `total` fen, in CNY.
    pub fn new(
        target: RefundTarget,
        out_refund_no: impl Into<String>,
        refund: Fen,
        total: Fen,
    ) -> RefundRequest {
        RefundRequest {
            target,
            out_refund_no: out_refund_no.into(),
            reason: None,
            funds_account: None,
            amount: RefundRequestAmount {
                refund,
                from: Vec::new(),
                total,
                currency: "CNY".into(),
            },
        }
    }

    /// Sets `reason`.
    pub fn with_reason(mut self, reason: impl Into<String>) -> RefundRequest {
        self.reason = Some(reason.into());
        self
    }

    /// The exact JSON body, in WeChat's field order.
    pub(crate) fn to_body(&self, notify_url: Option<&str>) -> String {
        self.to_body_for(None, notify_url)
    }

    /// The body with `sub_mchid` first (partner mode, spec 15.2) when given;
    /// without it, the direct body byte for byte.
    pub(crate) fn to_body_for(&self, sub_mchid: Option<&str>, notify_url: Option<&str>) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            sub_mchid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            transaction_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            out_trade_no: Option<&'a str>,
            out_refund_no: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            notify_url: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            funds_account: Option<&'a str>,
            amount: &'a RefundRequestAmount,
        }
        let (transaction_id, out_trade_no) = match &self.target {
            RefundTarget::TransactionId(id) => (Some(id.as_str()), None),
            RefundTarget::OutTradeNo(no) => (None, Some(no.as_str())),
        };
        let wire = Wire {
            sub_mchid,
            transaction_id,
            out_trade_no,
            out_refund_no: &self.out_refund_no,
            reason: self.reason.as_deref(),
            notify_url,
            funds_account: self.funds_account.as_deref(),
            amount: &self.amount,
        };
        serde_json::to_string(&wire).expect("plain structs serialise")
    }
}

/// `amount` of a refund answer or refund notify.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RefundAmount {
    /// Original order total.
    pub total: Option<Fen>,
    /// Refunded amount.
    pub refund: Option<Fen>,
    /// Paid by the user.
    pub payer_total: Option<Fen>,
    /// Refunded to the user.
    pub payer_refund: Option<Fen>,
    /// Settlement refund.
    pub settlement_refund: Option<Fen>,
    /// Settlement total.
    pub settlement_total: Option<Fen>,
    /// Coupon part refunded.
    pub discount_refund: Option<Fen>,
    /// `CNY`.
    pub currency: Option<String>,
    /// Fee refunded.
    pub refund_fee: Option<Fen>,
    /// Funding accounts.
    #[serde(default)]
    pub from: Vec<RefundFrom>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A refund object (spec 11.3): the answer of a refund and of a refund
/// query. `status` is `PROCESSING`, `SUCCESS`, `CLOSED` or `ABNORMAL`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Refund {
    /// WeChat refund number.
    pub refund_id: String,
    /// Merchant refund number.
    pub out_refund_no: String,
    /// WeChat order number.
    pub transaction_id: Option<String>,
    /// Merchant order number.
    pub out_trade_no: Option<String>,
    /// `ORIGINAL`, `BALANCE`, `OTHER_BALANCE`, `OTHER_BANKCARD`.
    pub channel: Option<String>,
    /// Where the money goes.
    pub user_received_account: Option<String>,
    /// RFC 3339, only when `SUCCESS` (a zero time means absent).
    pub success_time: Option<String>,
    /// RFC 3339.
    pub create_time: Option<String>,
    /// Status (spec 11.4).
    pub status: Option<String>,
    /// Funding account.
    pub funds_account: Option<String>,
    /// Amounts.
    pub amount: Option<RefundAmount>,
    /// Coupons.
    #[serde(default)]
    pub promotion_detail: Vec<PromotionDetail>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The decrypted resource of a `REFUND.*` notify (spec 13.4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RefundResource {
    /// Merchant id (partner: `sp_mchid`/`sub_mchid` in `extra`).
    pub mchid: Option<String>,
    /// Merchant order number.
    pub out_trade_no: Option<String>,
    /// WeChat order number.
    pub transaction_id: Option<String>,
    /// Merchant refund number.
    pub out_refund_no: String,
    /// WeChat refund number.
    pub refund_id: String,
    /// `SUCCESS`, `CLOSED`, `ABNORMAL`.
    pub refund_status: String,
    /// Only for `SUCCESS`.
    pub success_time: Option<String>,
    /// Where the money went.
    pub user_received_account: Option<String>,
    /// Amounts (absent in some partner payloads).
    pub amount: Option<RefundAmount>,
    /// Unknown fields (`channel`, `funds_account`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a verified, decrypted notify is about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NotifyEvent {
    /// `TRANSACTION.*` (`TRANSACTION.SUCCESS`): the paid transaction.
    Transaction(Box<Transaction>),
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    Refund(Box<RefundResource>),
    /// An authentic event type this version does not model (acknowledge
    /// it and log it); the decrypted resource is in the notification.
    Other,
}

/// A verified notify: the envelope and decrypted bytes, and the typed event.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedNotify {
    /// Envelope and decrypted resource.
    pub notification: super::Notification,
    /// The typed resource.
    pub event: NotifyEvent,
}

impl VerifiedNotify {
    pub(crate) fn from_notification(
        notification: super::Notification,
    ) -> Result<VerifiedNotify, serde_json::Error> {
        let kind = notification
            .event_type
            .split('.')
            .next()
            .unwrap_or_default();
        let event = match kind {
            "TRANSACTION" => {
                NotifyEvent::Transaction(serde_json::from_slice(&notification.resource)?)
            }
            "REFUND" => NotifyEvent::Refund(serde_json::from_slice(&notification.resource)?),
            _ => NotifyEvent::Other,
        };
        Ok(VerifiedNotify {
            notification,
            event,
        })
    }
}
