//! Payment and refund notifies, as pure functions over the raw body.
//!
//! The order is always: parse (bounded, no DTDs), verify the signature over
//! every received field in constant time, check `appid` and `mch_id`, and
//! only then read typed fields. The adapters send back [`REPLY_SUCCESS`] or
//! [`reply_fail`].

use crate::{
    Config, Fen, OutTradeNo, Params, RefundStatus, SignType, SignatureError, TradeType, XmlError,
    crypto::{DecryptError, decrypt_req_info},
    messages::{Coupon, coupons},
    sign::UnknownSignType,
    types::FieldError,
    xml,
};

/// The reply that stops WeChat's retries.
pub const REPLY_SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// The SUCCESS reply body.
pub fn reply_success() -> &'static str {
    REPLY_SUCCESS
}

/// A FAIL reply (WeChat will deliver again) with `msg` as `return_msg`.
///
/// ```
/// assert_eq!(
///     wxpay_core::notify::reply_fail("签名失败"),
///     "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>"
/// );
/// ```
pub fn reply_fail(msg: &str) -> String {
    let p: Params = [("return_code", "FAIL"), ("return_msg", msg)]
        .into_iter()
        .collect();
    xml::to_xml(&p)
}

/// Why a notify was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The body is not an acceptable XML message.
    #[error("malformed notify")]
    Xml(#[from] XmlError),
    /// `return_code` is not `SUCCESS`: there is nothing to process.
    #[error("notify carries return_code=FAIL: {return_msg}")]
    ReturnFail {
        /// WeChat's message.
        return_msg: String,
    },
    /// The `sign_type` element names an unknown algorithm.
    #[error(transparent)]
    UnknownSignType(#[from] UnknownSignType),
    /// The signature is missing or wrong.
    #[error("notify signature refused")]
    Signature(#[from] SignatureError),
    /// The notify declares another algorithm than its order was created
    /// with (the order's sign type decides, not the message).
    #[error("notify declares sign_type {declared}; its order was created with {expected}")]
    SignTypeMismatch {
        /// What the notify says.
        declared: SignType,
        /// What the order was created with.
        expected: SignType,
    },
    /// The notify is for another AppID.
    #[error("notify is for appid {received:?}, not ours")]
    WrongAppId {
        /// The appid received.
        received: String,
    },
    /// The notify is for another merchant.
    #[error("notify is for mch_id {received:?}, not ours")]
    WrongMchId {
        /// The mch_id received.
        received: String,
    },
    /// A field is missing or malformed.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The refund notify's `req_info` did not decrypt.
    #[error("req_info did not decrypt")]
    Decrypt(#[from] DecryptError),
}

impl NotifyError {
    /// A short `return_msg` for the FAIL reply that reveals nothing internal.
    pub fn reply_message(&self) -> &'static str {
        match self {
            NotifyError::Signature(_)
            | NotifyError::UnknownSignType(_)
            | NotifyError::SignTypeMismatch { .. } => "签名失败",
            NotifyError::WrongAppId { .. } | NotifyError::WrongMchId { .. } => "商户信息不符",
            NotifyError::Decrypt(_) => "解密失败",
            _ => "参数格式校验错误",
        }
    }
}

/// A parsed payment notify whose fields are **not yet trusted**.
#[derive(Debug, Clone)]
pub struct UnverifiedNotify {
    params: Params,
}

/// Parses a payment notify body (size-capped, DTDs refused). Nothing in it
/// is trusted until [`UnverifiedNotify::verify`].
///
/// # Errors
/// [`NotifyError::Xml`].
pub fn parse_notify(body: &[u8]) -> Result<UnverifiedNotify, NotifyError> {
    Ok(UnverifiedNotify {
        params: xml::parse(body)?,
    })
}

/// Parses and verifies in one step, using `fallback` when the notify has no
/// `sign_type` (pass the order's sign type; see spec 2.4).
///
/// # Errors
/// Any [`NotifyError`].
pub fn verify_payment_notify(
    body: &[u8],
    config: &Config,
    fallback: SignType,
) -> Result<PaymentNotification, NotifyError> {
    parse_notify(body)?.verify(config, fallback)
}

/// How WeChat says the payment went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentResult {
    /// `result_code=SUCCESS`: paid.
    Success,
    /// `result_code=FAIL`.
    Fail {
        /// `err_code`.
        err_code: Option<String>,
        /// `err_code_des`.
        err_code_des: Option<String>,
    },
}

/// A verified payment notify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaymentNotification {
    /// Our AppID (checked).
    pub appid: String,
    /// Our merchant number (checked).
    pub mch_id: String,
    /// The order.
    pub out_trade_no: OutTradeNo,
    /// The outcome.
    pub result: PaymentResult,
    /// WeChat's order number (always present on success).
    pub transaction_id: Option<String>,
    /// The order amount: compare it with the stored order.
    pub total_fee: Fen,
    /// Cash paid (total minus coupons).
    pub cash_fee: Option<Fen>,
    /// Total minus non-recharge coupons.
    pub settlement_total_fee: Option<Fen>,
    /// Total coupon amount.
    pub coupon_fee: Option<Fen>,
    /// Coupons, by index.
    pub coupons: Vec<Coupon>,
    /// Payer's bank.
    pub bank_type: Option<String>,
    /// Payment time, `yyyyMMddHHmmss` Beijing (always present on success).
    pub time_end: Option<String>,
    /// Payer.
    pub openid: Option<String>,
    /// Trade type.
    pub trade_type: Option<TradeType>,
    /// Merchant data echoed.
    pub attach: Option<String>,
    /// The algorithm the signature was checked with.
    pub sign_type: SignType,
    /// Partner mode: the sub-merchant (check it is one of yours).
    pub sub_mch_id: Option<String>,
    /// Partner mode: the sub-merchant's AppID.
    pub sub_appid: Option<String>,
    /// Partner mode: the payer under `sub_appid`.
    pub sub_openid: Option<String>,
    /// Every field received.
    pub params: Params,
}

impl PaymentNotification {
    /// Whether the notify reports a successful payment.
    pub fn is_paid(&self) -> bool {
        self.result == PaymentResult::Success
    }
}

fn check_merchant(params: &Params, config: &Config) -> Result<(), NotifyError> {
    let appid = params.get("appid").unwrap_or("");
    if appid != config.appid {
        return Err(NotifyError::WrongAppId {
            received: appid.to_owned(),
        });
    }
    let mch_id = params.get("mch_id").unwrap_or("");
    if mch_id != config.mch_id {
        return Err(NotifyError::WrongMchId {
            received: mch_id.to_owned(),
        });
    }
    Ok(())
}

fn return_success(params: &Params) -> Result<(), NotifyError> {
    match params.get("return_code") {
        Some("SUCCESS") => Ok(()),
        _ => Err(NotifyError::ReturnFail {
            return_msg: params.get("return_msg").unwrap_or("").to_owned(),
        }),
    }
}

fn need<'a>(params: &'a Params, field: &'static str) -> Result<&'a str, FieldError> {
    present(field, params.non_empty(field))
}

/// `value` of `field`, looked up already; missing is an error.
fn present<'a>(field: &'static str, value: Option<&'a str>) -> Result<&'a str, FieldError> {
    value.ok_or_else(|| FieldError::new(field, "missing"))
}

fn fen(params: &Params, field: &'static str) -> Result<Option<Fen>, FieldError> {
    params
        .non_empty(field)
        .map(|v| Fen::parse_field(field, v))
        .transpose()
}

impl UnverifiedNotify {
    /// The claimed order number (untrusted), to look up the order's sign type.
    pub fn out_trade_no(&self) -> Option<&str> {
        self.params.non_empty("out_trade_no")
    }

    /// The `sign_type` element, if present.
    ///
    /// # Errors
    /// [`NotifyError::UnknownSignType`] for an unknown value.
    pub fn declared_sign_type(&self) -> Result<Option<SignType>, NotifyError> {
        Ok(self
            .params
            .non_empty("sign_type")
            .map(str::parse)
            .transpose()?)
    }

    /// The raw fields (untrusted).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Verifies the signature (with the notify's own `sign_type`, else
    /// `fallback`), then the merchant, then reads the typed fields.
    ///
    /// # Errors
    /// [`NotifyError::ReturnFail`] for `return_code=FAIL`;
    /// [`NotifyError::Signature`] before anything else is believed;
    /// [`NotifyError::WrongAppId`] / [`NotifyError::WrongMchId`];
    /// [`NotifyError::Field`] for missing or malformed fields.
    pub fn verify(
        self,
        config: &Config,
        fallback: SignType,
    ) -> Result<PaymentNotification, NotifyError> {
        let params = self.params;
        return_success(&params)?;
        let sign_type = match params.non_empty("sign_type") {
            Some(s) => s.parse()?,
            None => fallback,
        };
        crate::sign::verify(&params, &config.api_key, sign_type)?;
        check_merchant(&params, config)?;

        let out_trade_no = OutTradeNo::new(need(&params, "out_trade_no")?)?;
        let result = match need(&params, "result_code")? {
            "SUCCESS" => PaymentResult::Success,
            _ => PaymentResult::Fail {
                err_code: params.non_empty("err_code").map(str::to_owned),
                err_code_des: params.non_empty("err_code_des").map(str::to_owned),
            },
        };
        let total_fee = Fen::parse_field("total_fee", need(&params, "total_fee")?)?;
        let transaction_id = params.non_empty("transaction_id");
        let time_end = params.non_empty("time_end");
        if result == PaymentResult::Success {
            present("transaction_id", transaction_id)?;
            crate::types::parse_beijing("time_end", present("time_end", time_end)?)?;
        }
        let (transaction_id, time_end) = (
            transaction_id.map(str::to_owned),
            time_end.map(str::to_owned),
        );
        Ok(PaymentNotification {
            appid: config.appid.clone(),
            mch_id: config.mch_id.clone(),
            out_trade_no,
            result,
            transaction_id,
            total_fee,
            cash_fee: fen(&params, "cash_fee")?,
            settlement_total_fee: fen(&params, "settlement_total_fee")?,
            coupon_fee: fen(&params, "coupon_fee")?,
            coupons: coupons(&params)?,
            bank_type: params.non_empty("bank_type").map(str::to_owned),
            time_end,
            openid: params.non_empty("openid").map(str::to_owned),
            trade_type: params.non_empty("trade_type").map(TradeType::parse),
            attach: params.non_empty("attach").map(str::to_owned),
            sign_type,
            sub_mch_id: params.non_empty("sub_mch_id").map(str::to_owned),
            sub_appid: params.non_empty("sub_appid").map(str::to_owned),
            sub_openid: params.non_empty("sub_openid").map(str::to_owned),
            params,
        })
    }
}

/// A decrypted refund notify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundNotification {
    /// The order.
    pub out_trade_no: OutTradeNo,
    /// WeChat's order number.
    pub transaction_id: Option<String>,
    /// The merchant refund number.
    pub out_refund_no: String,
    /// WeChat's refund number.
    pub refund_id: Option<String>,
    /// The outcome.
    pub refund_status: RefundStatus,
    /// Refund amount.
    pub refund_fee: Fen,
    /// Order amount.
    pub total_fee: Option<Fen>,
    /// Refund minus non-recharge coupons.
    pub settlement_refund_fee: Option<Fen>,
    /// When the money arrived, `yyyy-MM-dd HH:mm:ss` Beijing.
    pub success_time: Option<String>,
    /// Where it went.
    pub refund_recv_accout: Option<String>,
    /// Partner mode: the sub-merchant. Documented as an outer field, which
    /// is **not authenticated** (v2 refund notifies carry no signature;
    /// only `req_info` is, by decrypting): the decrypted value is taken
    /// when present, and an outer value differing from it is refused. An
    /// outer value alone is a hint: find the refund by `out_refund_no`.
    pub sub_mch_id: Option<String>,
    /// Partner mode: the sub-merchant's AppID (same rule as `sub_mch_id`).
    pub sub_appid: Option<String>,
    /// The decrypted fields.
    pub params: Params,
}

/// Checks the merchant, decrypts `req_info` with the API key and reads the
/// refund result. Refund notifies are not signed: a successful decryption
/// (valid padding and a well-formed `<root>` document) is the proof.
///
/// # Errors
/// Any [`NotifyError`].
pub fn decrypt_refund_notify(
    body: &[u8],
    config: &Config,
) -> Result<RefundNotification, NotifyError> {
    let outer = xml::parse(body)?;
    return_success(&outer)?;
    check_merchant(&outer, config)?;
    let plain = decrypt_req_info(need(&outer, "req_info")?, &config.api_key)?;
    let params = xml::parse_with(plain.as_bytes(), "root", xml::DEFAULT_MAX_BYTES)?;
    let sub_field = |field: &'static str| match (params.non_empty(field), outer.non_empty(field)) {
        (Some(inner), Some(out)) if inner != out => Err(FieldError::new(
            field,
            "the outer message and req_info disagree",
        )),
        (inner, out) => Ok(inner.or(out).map(str::to_owned)),
    };
    let (sub_mch_id, sub_appid) = (sub_field("sub_mch_id")?, sub_field("sub_appid")?);
    Ok(RefundNotification {
        out_trade_no: OutTradeNo::new(need(&params, "out_trade_no")?)?,
        transaction_id: params.non_empty("transaction_id").map(str::to_owned),
        out_refund_no: need(&params, "out_refund_no")?.to_owned(),
        refund_id: params.non_empty("refund_id").map(str::to_owned),
        refund_status: RefundStatus::parse(need(&params, "refund_status")?),
        refund_fee: Fen::parse_field("refund_fee", need(&params, "refund_fee")?)?,
        total_fee: fen(&params, "total_fee")?,
        settlement_refund_fee: fen(&params, "settlement_refund_fee")?,
        success_time: params.non_empty("success_time").map(str::to_owned),
        refund_recv_accout: params.non_empty("refund_recv_accout").map(str::to_owned),
        sub_mch_id,
        sub_appid,
        params,
    })
}
