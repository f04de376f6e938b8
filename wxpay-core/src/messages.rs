//! Typed requests and responses for each v2 endpoint.
//!
//! Requests turn into [`Params`] (without the common `appid`, `mch_id`,
//! `nonce_str`, `sign_type`, `sign`, which the client adds) after their
//! field rules are checked. Responses are read from verified [`Params`] and
//! keep them in `params` for anything not modelled.

use crate::{
    Fen, OutTradeNo, Params, RefundStatus, SessionKey, TradeState, TradeType, types::FieldError,
};

/// Checks a string field: at most `max` bytes of UTF-8 and no 4-byte
/// characters (v2 accepts only 1–3-byte UTF-8).
///
/// # Errors
/// A [`FieldError`] naming `field`.
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("{} bytes of UTF-8, at most {max} allowed", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.len_utf8() == 4) {
        return Err(FieldError::new(
            field,
            format!(
                "character U+{:04X} needs 4 bytes of UTF-8, which v2 refuses",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn required(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    check_text(field, value, max)
}

fn optional(field: &'static str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    value.map_or(Ok(()), |v| check_text(field, v, max))
}

/// The sub-merchant of a service-provider (partner, 服务商) request:
/// `sub_mch_id` and, when the sub-merchant's own AppID is used,
/// `sub_appid`. The client's `appid` / `mch_id` are then the provider's.
/// They are plain request fields, signed like every other; a request
/// without a sub-merchant is byte for byte the direct merchant's.
///
/// ```
/// use wxpay_core::messages::SubMerchant;
/// let sub = SubMerchant::new("1900000200").with_sub_appid("wx0a1b2c3d4e5f6a7b");
/// assert_eq!(sub.sub_appid.as_deref(), Some("wx0a1b2c3d4e5f6a7b"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubMerchant {
    /// `sub_mch_id` (≤ 32).
    pub sub_mch_id: String,
    /// `sub_appid` (≤ 32): the sub-merchant's AppID; required with
    /// `sub_openid`.
    pub sub_appid: Option<String>,
}

impl SubMerchant {
    /// A sub-merchant without `sub_appid`.
    pub fn new(sub_mch_id: impl Into<String>) -> SubMerchant {
        SubMerchant {
            sub_mch_id: sub_mch_id.into(),
            sub_appid: None,
        }
    }

    /// Sets `sub_appid`.
    pub fn with_sub_appid(mut self, sub_appid: impl Into<String>) -> SubMerchant {
        self.sub_appid = Some(sub_appid.into());
        self
    }

    /// Checks the fields and adds `sub_mch_id` (and `sub_appid`) to `p`.
    ///
    /// # Errors
    /// A [`FieldError`] for an empty or too long `sub_mch_id` / `sub_appid`.
    pub fn insert_into(&self, p: &mut Params) -> Result<(), FieldError> {
        required("sub_mch_id", &self.sub_mch_id, 32)?;
        if let Some(a) = &self.sub_appid {
            required("sub_appid", a, 32)?;
        }
        p.insert("sub_mch_id", self.sub_mch_id.as_str());
        p.insert_opt("sub_appid", self.sub_appid.as_deref());
        Ok(())
    }
}

/// `POST /pay/unifiedorder`.
///
/// Partner mode: set [`sub_merchant`](UnifiedOrderRequest::sub_merchant),
/// and identify the payer by `openid` (under the provider's `appid`) or by
/// `sub_openid` (under `sub_appid`, which is then required) — never both.
///
/// ```
/// use wxpay_core::{Fen, OutTradeNo, messages::{SubMerchant, UnifiedOrderRequest}};
/// let req = UnifiedOrderRequest::jsapi(OutTradeNo::new("SPX1").unwrap(), "门店-咖啡", Fen(1800), "")
///     .with_sub_merchant(SubMerchant::new("1900000200").with_sub_appid("wx0a1b2c3d4e5f6a7b"))
///     .with_sub_openid("oQw7P5LmN2kR8sT4vX6yZ1aB3cD0");
/// let p = req.to_params(Some("https://shop.example.com/pay/notify")).unwrap();
/// assert_eq!(p.get("sub_openid"), Some("oQw7P5LmN2kR8sT4vX6yZ1aB3cD0"));
/// assert!(!p.contains("openid"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnifiedOrderRequest {
    /// Merchant order number.
    pub out_trade_no: OutTradeNo,
    /// Goods description (≤ 127 bytes).
    pub body: String,
    /// Amount in fen (> 0).
    pub total_fee: Fen,
    /// `JSAPI` (needs `openid`) or `NATIVE` (needs `product_id`).
    pub trade_type: TradeType,
    /// Payer (JSAPI).
    pub openid: Option<String>,
    /// Product (NATIVE).
    pub product_id: Option<String>,
    /// Merchant data echoed back (≤ 127 bytes).
    pub attach: Option<String>,
    /// IP of the caller (≤ 64).
    pub spbill_create_ip: String,
    /// Notify URL; the config's when `None`.
    pub notify_url: Option<String>,
    /// Order expiry `yyyyMMddHHmmss` (Beijing).
    pub time_expire: Option<String>,
    /// Goods detail JSON (≤ 6000).
    pub detail: Option<String>,
    /// Partner mode: the sub-merchant (`sub_mch_id`, `sub_appid`).
    pub sub_merchant: Option<SubMerchant>,
    /// Partner mode: the payer under `sub_appid` (JSAPI), instead of
    /// `openid`.
    pub sub_openid: Option<String>,
}

impl UnifiedOrderRequest {
    /// A JSAPI (mini-program) order.
    pub fn jsapi(
        out_trade_no: OutTradeNo,
        body: impl Into<String>,
        total_fee: Fen,
        openid: impl Into<String>,
    ) -> Self {
        Self {
            out_trade_no,
            body: body.into(),
            total_fee,
            trade_type: TradeType::Jsapi,
            openid: Some(openid.into()),
            product_id: None,
            attach: None,
            spbill_create_ip: "127.0.0.1".into(),
            notify_url: None,
            time_expire: None,
            detail: None,
            sub_merchant: None,
            sub_openid: None,
        }
    }

    /// A NATIVE (QR code) order.
    pub fn native(
        out_trade_no: OutTradeNo,
        body: impl Into<String>,
        total_fee: Fen,
        product_id: impl Into<String>,
    ) -> Self {
        Self {
            trade_type: TradeType::Native,
            openid: None,
            product_id: Some(product_id.into()),
            ..Self::jsapi(out_trade_no, body, total_fee, "")
        }
    }

    /// Sets `attach`.
    pub fn with_attach(mut self, attach: impl Into<String>) -> Self {
        self.attach = Some(attach.into());
        self
    }

    /// Sets `spbill_create_ip`.
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> Self {
        self.spbill_create_ip = ip.into();
        self
    }

    /// Sets `notify_url`.
    pub fn with_notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }

    /// Partner mode: sets the sub-merchant.
    pub fn with_sub_merchant(mut self, sub: SubMerchant) -> Self {
        self.sub_merchant = Some(sub);
        self
    }

    /// Partner mode: identifies the payer by `sub_openid` (under
    /// `sub_appid`) and drops `openid`.
    pub fn with_sub_openid(mut self, sub_openid: impl Into<String>) -> Self {
        self.sub_openid = Some(sub_openid.into());
        self.openid = None;
        self
    }

    /// Checks the field rules and builds the business fields.
    ///
    /// # Errors
    /// A [`FieldError`] for the first field that breaks a rule; in partner
    /// mode also: `sub_openid` without a sub-merchant (`sub_mch_id`) or
    /// without `sub_appid`, or together with `openid`.
    pub fn to_params(&self, default_notify_url: Option<&str>) -> Result<Params, FieldError> {
        required("body", &self.body, 127)?;
        if self.total_fee.0 == 0 {
            return Err(FieldError::new("total_fee", "must be at least 1 fen"));
        }
        optional("attach", self.attach.as_deref(), 127)?;
        optional("detail", self.detail.as_deref(), 6000)?;
        required("spbill_create_ip", &self.spbill_create_ip, 64)?;
        let notify_url = self
            .notify_url
            .as_deref()
            .or(default_notify_url)
            .ok_or_else(|| FieldError::new("notify_url", "required (set it in the config)"))?;
        required("notify_url", notify_url, 256)?;
        if notify_url.contains('?') {
            return Err(FieldError::new(
                "notify_url",
                "must not carry a query string",
            ));
        }
        let openid = self.openid.as_deref().filter(|s| !s.is_empty());
        if let Some(sub_openid) = &self.sub_openid {
            required("sub_openid", sub_openid, 128)?;
            let sub = self.sub_merchant.as_ref().ok_or_else(|| {
                FieldError::new(
                    "sub_mch_id",
                    "sub_openid is partner mode: set the sub-merchant",
                )
            })?;
            if sub.sub_appid.is_none() {
                return Err(FieldError::new(
                    "sub_appid",
                    "required with sub_openid (the AppID the openid belongs to)",
                ));
            }
            if openid.is_some() {
                return Err(FieldError::new(
                    "sub_openid",
                    "send either openid or sub_openid, not both",
                ));
            }
        }
        match self.trade_type {
            TradeType::Jsapi if self.sub_openid.is_some() => {}
            TradeType::Jsapi => required("openid", self.openid.as_deref().unwrap_or(""), 128)?,
            TradeType::Native => {
                required("product_id", self.product_id.as_deref().unwrap_or(""), 32)?
            }
            _ => {}
        }
        if let Some(t) = &self.time_expire {
            crate::types::parse_beijing("time_expire", t)?;
        }
        let mut p = Params::new();
        p.insert("out_trade_no", self.out_trade_no.as_str());
        p.insert("body", self.body.as_str());
        p.insert("total_fee", self.total_fee.to_string());
        p.insert("trade_type", self.trade_type.as_str());
        p.insert("spbill_create_ip", self.spbill_create_ip.as_str());
        p.insert("notify_url", notify_url);
        p.insert_opt("openid", openid);
        p.insert_opt("product_id", self.product_id.as_deref());
        p.insert_opt("attach", self.attach.as_deref());
        p.insert_opt("time_expire", self.time_expire.as_deref());
        p.insert_opt("detail", self.detail.as_deref());
        if let Some(sub) = &self.sub_merchant {
            sub.insert_into(&mut p)?;
        }
        p.insert_opt("sub_openid", self.sub_openid.as_deref());
        Ok(p)
    }
}

/// A successful unifiedorder answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnifiedOrderResponse {
    /// The prepay session (valid 2 hours).
    pub prepay_id: Option<String>,
    /// NATIVE: the URL to show as a QR code.
    pub code_url: Option<String>,
    /// The echoed trade type.
    pub trade_type: TradeType,
    /// Partner mode: the sub-merchant echoed.
    pub sub_mch_id: Option<String>,
    /// Partner mode: the sub-merchant's AppID echoed.
    pub sub_appid: Option<String>,
    /// Every field received.
    pub params: Params,
}

impl UnifiedOrderResponse {
    /// Reads a verified success answer.
    ///
    /// # Errors
    /// A [`FieldError`] when neither `prepay_id` nor `code_url` is present.
    pub fn from_params(params: Params) -> Result<Self, FieldError> {
        let prepay_id = params.non_empty("prepay_id").map(str::to_owned);
        let code_url = params.non_empty("code_url").map(str::to_owned);
        if prepay_id.is_none() && code_url.is_none() {
            return Err(FieldError::new(
                "prepay_id",
                "missing from a success answer",
            ));
        }
        Ok(Self {
            prepay_id,
            code_url,
            trade_type: TradeType::parse(params.get("trade_type").unwrap_or("")),
            sub_mch_id: text_opt(&params, "sub_mch_id"),
            sub_appid: text_opt(&params, "sub_appid"),
            params,
        })
    }
}

fn fen_opt(params: &Params, field: &'static str) -> Result<Option<Fen>, FieldError> {
    params
        .non_empty(field)
        .map(|v| Fen::parse_field(field, v))
        .transpose()
}

fn text_opt(params: &Params, field: &str) -> Option<String> {
    params.non_empty(field).map(str::to_owned)
}

/// A coupon used in a payment (`coupon_*_$n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    /// The index `$n`.
    pub index: u32,
    /// `coupon_id_$n`.
    pub id: Option<String>,
    /// `coupon_type_$n` (`CASH` / `NO_CASH`).
    pub kind: Option<String>,
    /// `coupon_fee_$n`.
    pub fee: Option<Fen>,
}

/// Collects `coupon_id_$n`, `coupon_type_$n`, `coupon_fee_$n` by index,
/// whatever `coupon_count` says and whether or not indices are contiguous.
///
/// # Errors
/// A [`FieldError`] for a malformed `coupon_fee_$n`.
pub fn coupons(params: &Params) -> Result<Vec<Coupon>, FieldError> {
    let mut out: std::collections::BTreeMap<u32, Coupon> = Default::default();
    for (k, v) in params.with_prefix("coupon_") {
        let (kind, idx) = if let Some(i) = k.strip_prefix("coupon_id_") {
            (0, i)
        } else if let Some(i) = k.strip_prefix("coupon_type_") {
            (1, i)
        } else if let Some(i) = k.strip_prefix("coupon_fee_") {
            (2, i)
        } else {
            continue;
        };
        let Ok(index) = idx.parse::<u32>() else {
            continue;
        };
        if !idx.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let c = out.entry(index).or_insert(Coupon {
            index,
            id: None,
            kind: None,
            fee: None,
        });
        match kind {
            0 => c.id = Some(v.to_owned()),
            1 => c.kind = Some(v.to_owned()),
            _ => c.fee = Some(Fen::parse_field("coupon_fee_$n", v)?),
        }
    }
    Ok(out.into_values().collect())
}

/// A successful orderquery answer. Every business field is optional: for
/// `NOTPAY` WeChat sends only a few.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderQueryResponse {
    /// The state.
    pub trade_state: TradeState,
    /// Merchant order number.
    pub out_trade_no: Option<String>,
    /// WeChat order number (once paid).
    pub transaction_id: Option<String>,
    /// Order amount.
    pub total_fee: Option<Fen>,
    /// Cash paid.
    pub cash_fee: Option<Fen>,
    /// Payment time, `yyyyMMddHHmmss` Beijing.
    pub time_end: Option<String>,
    /// Payer's bank.
    pub bank_type: Option<String>,
    /// Payer.
    pub openid: Option<String>,
    /// Human-readable state description.
    pub trade_state_desc: Option<String>,
    /// Coupons used.
    pub coupons: Vec<Coupon>,
    /// Partner mode: the sub-merchant.
    pub sub_mch_id: Option<String>,
    /// Partner mode: the sub-merchant's AppID.
    pub sub_appid: Option<String>,
    /// Partner mode: the payer under `sub_appid`.
    pub sub_openid: Option<String>,
    /// Every field received.
    pub params: Params,
}

impl OrderQueryResponse {
    /// Reads a verified success answer.
    ///
    /// # Errors
    /// A [`FieldError`] for a missing `trade_state` or a malformed amount.
    pub fn from_params(params: Params) -> Result<Self, FieldError> {
        let trade_state = params
            .non_empty("trade_state")
            .map(TradeState::parse)
            .ok_or_else(|| FieldError::new("trade_state", "missing"))?;
        Ok(Self {
            trade_state,
            out_trade_no: text_opt(&params, "out_trade_no"),
            transaction_id: text_opt(&params, "transaction_id"),
            total_fee: fen_opt(&params, "total_fee")?,
            cash_fee: fen_opt(&params, "cash_fee")?,
            time_end: text_opt(&params, "time_end"),
            bank_type: text_opt(&params, "bank_type"),
            openid: text_opt(&params, "openid"),
            trade_state_desc: text_opt(&params, "trade_state_desc"),
            coupons: coupons(&params)?,
            sub_mch_id: text_opt(&params, "sub_mch_id"),
            sub_appid: text_opt(&params, "sub_appid"),
            sub_openid: text_opt(&params, "sub_openid"),
            params,
        })
    }
}

/// `POST /secapi/pay/refund`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundRequest {
    /// The paid order.
    pub out_trade_no: OutTradeNo,
    /// Merchant refund number (≤ 64, `[0-9A-Za-z_-|*@]`); reuse it when retrying.
    pub out_refund_no: String,
    /// The order's total amount (must equal what was paid).
    pub total_fee: Fen,
    /// The amount to refund now.
    pub refund_fee: Fen,
    /// Reason shown to the user (≤ 80).
    pub refund_desc: Option<String>,
    /// Refund notify URL; the config's when `None`.
    pub notify_url: Option<String>,
    /// Partner mode: the sub-merchant (`sub_mch_id`, `sub_appid`).
    pub sub_merchant: Option<SubMerchant>,
}

impl RefundRequest {
    /// A refund of `refund_fee` out of an order of `total_fee`.
    pub fn new(
        out_trade_no: OutTradeNo,
        out_refund_no: impl Into<String>,
        total_fee: Fen,
        refund_fee: Fen,
    ) -> Self {
        Self {
            out_trade_no,
            out_refund_no: out_refund_no.into(),
            total_fee,
            refund_fee,
            refund_desc: None,
            notify_url: None,
            sub_merchant: None,
        }
    }

    /// Partner mode: sets the sub-merchant.
    pub fn with_sub_merchant(mut self, sub: SubMerchant) -> Self {
        self.sub_merchant = Some(sub);
        self
    }

    /// Checks the field rules and builds the business fields.
    ///
    /// # Errors
    /// A [`FieldError`] for the first field that breaks a rule.
    pub fn to_params(&self, default_notify_url: Option<&str>) -> Result<Params, FieldError> {
        if self.out_refund_no.is_empty()
            || self.out_refund_no.len() > 64
            || !self
                .out_refund_no
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-|*@".contains(c))
        {
            return Err(FieldError::new(
                "out_refund_no",
                "must be 1 to 64 characters of [0-9A-Za-z_-|*@]",
            ));
        }
        if self.refund_fee.0 == 0 || self.refund_fee > self.total_fee {
            return Err(FieldError::new(
                "refund_fee",
                "must be at least 1 fen and at most total_fee",
            ));
        }
        optional("refund_desc", self.refund_desc.as_deref(), 80)?;
        let notify_url = self.notify_url.as_deref().or(default_notify_url);
        optional("notify_url", notify_url, 256)?;
        let mut p = Params::new();
        p.insert("out_trade_no", self.out_trade_no.as_str());
        p.insert("out_refund_no", self.out_refund_no.as_str());
        p.insert("total_fee", self.total_fee.to_string());
        p.insert("refund_fee", self.refund_fee.to_string());
        p.insert_opt("refund_desc", self.refund_desc.as_deref());
        p.insert_opt("notify_url", notify_url);
        if let Some(sub) = &self.sub_merchant {
            sub.insert_into(&mut p)?;
        }
        Ok(p)
    }
}

/// An accepted refund (the result comes by notify or refundquery).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundResponse {
    /// WeChat's refund number.
    pub refund_id: Option<String>,
    /// The merchant refund number.
    pub out_refund_no: Option<String>,
    /// Refund amount.
    pub refund_fee: Option<Fen>,
    /// Partner mode: the sub-merchant.
    pub sub_mch_id: Option<String>,
    /// Partner mode: the sub-merchant's AppID.
    pub sub_appid: Option<String>,
    /// Every field received.
    pub params: Params,
}

impl RefundResponse {
    /// Reads a verified success answer.
    ///
    /// # Errors
    /// A [`FieldError`] for a malformed amount.
    pub fn from_params(params: Params) -> Result<Self, FieldError> {
        Ok(Self {
            refund_id: text_opt(&params, "refund_id"),
            out_refund_no: text_opt(&params, "out_refund_no"),
            refund_fee: fen_opt(&params, "refund_fee")?,
            sub_mch_id: text_opt(&params, "sub_mch_id"),
            sub_appid: text_opt(&params, "sub_appid"),
            params,
        })
    }
}

/// One refund in a refundquery answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// `out_refund_no_$n`.
    pub out_refund_no: String,
    /// `refund_id_$n`.
    pub refund_id: Option<String>,
    /// `refund_fee_$n`.
    pub refund_fee: Option<Fen>,
    /// `refund_status_$n`.
    pub status: RefundStatus,
    /// `refund_success_time_$n`.
    pub success_time: Option<String>,
}

/// A successful refundquery answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundQueryResponse {
    /// The order.
    pub out_trade_no: Option<String>,
    /// Refunds in this answer, by index.
    pub refunds: Vec<RefundRecord>,
    /// Partner mode: the sub-merchant.
    pub sub_mch_id: Option<String>,
    /// Partner mode: the sub-merchant's AppID.
    pub sub_appid: Option<String>,
    /// Every field received.
    pub params: Params,
}

impl RefundQueryResponse {
    /// Reads a verified success answer.
    ///
    /// # Errors
    /// A [`FieldError`] for a malformed amount.
    pub fn from_params(params: Params) -> Result<Self, FieldError> {
        let mut refunds = Vec::new();
        for n in 0.. {
            let Some(no) = params.non_empty(&format!("out_refund_no_{n}")) else {
                break;
            };
            let fee_field = format!("refund_fee_{n}");
            refunds.push(RefundRecord {
                out_refund_no: no.to_owned(),
                refund_id: text_opt(&params, &format!("refund_id_{n}")),
                refund_fee: params
                    .non_empty(&fee_field)
                    .map(|v| Fen::parse_field("refund_fee_$n", v))
                    .transpose()?,
                status: RefundStatus::parse(
                    params.get(&format!("refund_status_{n}")).unwrap_or(""),
                ),
                success_time: text_opt(&params, &format!("refund_success_time_{n}")),
            });
        }
        Ok(Self {
            out_trade_no: text_opt(&params, "out_trade_no"),
            refunds,
            sub_mch_id: text_opt(&params, "sub_mch_id"),
            sub_appid: text_opt(&params, "sub_appid"),
            params,
        })
    }
}

/// What `jscode2session` answers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Code2Session {
    /// The user under this AppID.
    pub openid: String,
    /// Keep it on the server; never send it to the client.
    pub session_key: SessionKey,
    /// Present when the mini-program is bound to an Open Platform account.
    pub unionid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> UnifiedOrderRequest {
        UnifiedOrderRequest::jsapi(OutTradeNo::new("A1").unwrap(), "shop-vip", Fen(998), "o1")
    }

    #[test]
    fn unifiedorder_field_rules() {
        let url = Some("https://x.example/notify");
        assert!(order().to_params(url).is_ok());
        assert_eq!(order().to_params(None).unwrap_err().field, "notify_url");
        let q = order()
            .to_params(Some("https://x.example/n?a=1"))
            .unwrap_err();
        assert_eq!(q.field, "notify_url");
        let mut o = order();
        o.body = "😀 emoji".into();
        assert_eq!(o.to_params(url).unwrap_err().field, "body");
        o.body = "腾".repeat(43); // 129 bytes
        assert_eq!(o.to_params(url).unwrap_err().field, "body");
        o.body = "腾".repeat(42); // 126 bytes
        assert!(o.to_params(url).is_ok());
        o.body = " ".into();
        assert_eq!(o.to_params(url).unwrap_err().field, "body");
        let mut o = order();
        o.total_fee = Fen(0);
        assert_eq!(o.to_params(url).unwrap_err().field, "total_fee");
        let mut o = order();
        o.openid = None;
        assert_eq!(o.to_params(url).unwrap_err().field, "openid");
        let n = UnifiedOrderRequest::native(OutTradeNo::new("A1").unwrap(), "b", Fen(1), "");
        assert_eq!(n.to_params(url).unwrap_err().field, "product_id");
        let n = UnifiedOrderRequest::native(OutTradeNo::new("A1").unwrap(), "b", Fen(1), "p1");
        let p = n.to_params(url).unwrap();
        assert_eq!(p.get("trade_type"), Some("NATIVE"));
        assert!(!p.contains("openid"));
    }

    #[test]
    fn coupons_by_index_not_by_count() {
        let p: Params = [
            ("coupon_count", "1"),
            ("coupon_fee", "30"),
            ("coupon_id_0", "10000"),
            ("coupon_fee_0", "10"),
            ("coupon_id_2", "20000"),
            ("coupon_fee_2", "20"),
            ("coupon_type_2", "NO_CASH"),
        ]
        .into_iter()
        .collect();
        let c = coupons(&p).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].fee, Some(Fen(10)));
        assert_eq!(c[0].kind, None);
        assert_eq!(c[1].index, 2);
        assert_eq!(c[1].kind.as_deref(), Some("NO_CASH"));
    }

    #[test]
    fn refund_rules() {
        let no = OutTradeNo::new("A1").unwrap();
        assert!(
            RefundRequest::new(no.clone(), "R1", Fen(10), Fen(10))
                .to_params(None)
                .is_ok()
        );
        assert!(
            RefundRequest::new(no.clone(), "R1", Fen(10), Fen(11))
                .to_params(None)
                .is_err()
        );
        assert!(
            RefundRequest::new(no.clone(), "R 1", Fen(10), Fen(1))
                .to_params(None)
                .is_err()
        );
        assert!(
            RefundRequest::new(no, "", Fen(10), Fen(1))
                .to_params(None)
                .is_err()
        );
    }

    #[test]
    fn orderquery_notpay_has_few_fields() {
        let p: Params = [("trade_state", "NOTPAY"), ("out_trade_no", "A1")]
            .into_iter()
            .collect();
        let r = OrderQueryResponse::from_params(p).unwrap();
        assert_eq!(r.trade_state, TradeState::NotPay);
        assert_eq!(r.total_fee, None);
        assert!(OrderQueryResponse::from_params(Params::new()).is_err());
    }
}
