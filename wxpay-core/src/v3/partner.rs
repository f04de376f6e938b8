//! Service-provider (partner, 服务商) mode at the protocol level (spec 15):
//! the provider (`sp_mchid`, with its own key, certificates and APIv3 key)
//! calls the APIs for a sub-merchant (`sub_mchid`).
//!
//! The [`Client`] is the provider's: its credential's mchid is `sp_mchid`,
//! every request is signed with the provider's key and carries
//! `mchid="<sp_mchid>"` in `Authorization`; answers and notifies are
//! verified like every v3 message. What changes is the paths and bodies
//! (spec 15.2, 15.3), the `paySign` AppID (spec 15.4) and the resources
//! (spec 15.6), which name `sp_mchid` and `sub_mchid`: a verified answer
//! naming another merchant than the one asked for is refused
//! ([`PartnerError::ForeignAnswer`]).
//!
//! ```no_run
//! # async fn demo(client: wxpay_core::v3::Client) -> Result<(), wxpay_core::Error> {
//! use wxpay_core::{Fen, v3::{PartnerPayer, PartnerPrepayRequest, SubMerchant}};
//! let sub = SubMerchant::new("wx9f8e7d6c5b4a3f2e", "1900000100", "1900000200")
//!     .with_sub_appid("wx0a1b2c3d4e5f6a7b");
//! let order = PartnerPrepayRequest::jsapi(
//!     "服务商测试门店-咖啡",
//!     "SPX20260101120500B7",
//!     Fen(1800),
//!     PartnerPayer::SubOpenid("oQw7P5LmN2kR8sT4vX6yZ1aB3cD0".into()),
//! );
//! let prepay = client.partner_jsapi_prepay(&sub, &order).await?;
//! let params = client.partner_pay_params(&sub, &order, &prepay.prepay_id)?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::{
    Fen, HttpMethod, Transport,
    bill::download::{BillDownload, Compression, TradeBillType},
    error::Error,
};

use super::{
    bill::{BillApplication, bill_path_for},
    client::{Client, path_escape},
    error::Endpoint,
    messages::{
        JsapiPrepayResponse, NativePrepayResponse, PrepayAmount, PrepayDetail, PromotionDetail,
        Refund, RefundAmount, RefundRequest, SceneInfo, SettleInfo, TransactionAmount,
        TransactionScene, Verified, format_time,
    },
    notify::{Notification, NotifyError},
    paysign::PayParamsV3,
    validate::WechatpayHeaders,
};

type Extra = serde_json::Map<String, serde_json::Value>;

/// Why a partner call was refused: a rule broken before sending (nothing
/// was sent), or a verified answer about another merchant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartnerError {
    /// The sub-merchant names another service provider than the one whose
    /// key signs the client's requests. Nothing was sent.
    #[error("the sub-merchant's sp_mchid {sub:?} is not the client's mchid {client:?}")]
    SpMchidMismatch {
        /// The client's (credential's) mchid.
        client: String,
        /// The sub-merchant's `sp_mchid`.
        sub: String,
    },
    /// A required partner id is empty. Nothing was sent.
    #[error("partner mode: {field} must not be empty")]
    Empty {
        /// The wire name.
        field: &'static str,
    },
    /// A partner JSAPI prepay without `payer` (`sp_openid` or
    /// `sub_openid`). Nothing was sent.
    #[error("a partner JSAPI prepay needs payer.sp_openid or payer.sub_openid")]
    MissingPayer,
    /// `payer.sub_openid` without `sub_appid` (spec 15.3: the AppID that
    /// openid belongs to is required). Nothing was sent.
    #[error("payer.sub_openid needs the sub-merchant's sub_appid")]
    SubOpenidWithoutSubAppid,
    /// A verified answer names another `sp_mchid` or `sub_mchid` than the
    /// one asked for (or leaves it out where it must be present): never
    /// accepted. The call's outcome is unknown.
    #[error("verified answer names {field} {found:?}, not {expected:?}")]
    ForeignAnswer {
        /// `sp_mchid` or `sub_mchid`.
        field: &'static str,
        /// The id asked for.
        expected: String,
        /// The id in the answer (`None`: absent).
        found: Option<String>,
    },
}

impl PartnerError {
    /// Whether the request may have been sent and taken effect: only for
    /// [`PartnerError::ForeignAnswer`] (the answer is not believed, so the
    /// outcome is unknown); every other variant is raised before sending.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, PartnerError::ForeignAnswer { .. })
    }
}

/// The sub-merchant a partner call is for, with the provider ids it is
/// called under (spec 15.1, 15.3).
///
/// * `sp_appid`: an AppID bound to the provider's `sp_mchid`;
/// * `sp_mchid`: the provider's merchant number — must be the client's own
///   mchid (the key that signs);
/// * `sub_mchid`: the sub-merchant;
/// * `sub_appid`: the sub-merchant's own mini-program AppID, if the payer
///   is identified under it (`sub_openid`).
///
/// ```
/// use wxpay_core::v3::SubMerchant;
/// let sub = SubMerchant::new("wx9f8e7d6c5b4a3f2e", "1900000100", "1900000200")
///     .with_sub_appid("wx0a1b2c3d4e5f6a7b");
/// assert_eq!(sub.sub_appid.as_deref(), Some("wx0a1b2c3d4e5f6a7b"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SubMerchant {
    /// The provider's AppID (`sp_appid`).
    pub sp_appid: String,
    /// The provider's merchant number (`sp_mchid`).
    pub sp_mchid: String,
    /// The sub-merchant's number (`sub_mchid`).
    pub sub_mchid: String,
    /// The sub-merchant's AppID (`sub_appid`), if it has one.
    pub sub_appid: Option<String>,
}

impl SubMerchant {
    /// A sub-merchant without `sub_appid`.
    pub fn new(
        sp_appid: impl Into<String>,
        sp_mchid: impl Into<String>,
        sub_mchid: impl Into<String>,
    ) -> SubMerchant {
        SubMerchant {
            sp_appid: sp_appid.into(),
            sp_mchid: sp_mchid.into(),
            sub_mchid: sub_mchid.into(),
            sub_appid: None,
        }
    }

    /// Sets `sub_appid`.
    pub fn with_sub_appid(mut self, sub_appid: impl Into<String>) -> SubMerchant {
        self.sub_appid = Some(sub_appid.into());
        self
    }

    /// Checks the ids before anything is sent: none empty, `sp_mchid`
    /// equal to `client_mchid` (the mchid of the signing credential).
    ///
    /// # Errors
    /// [`PartnerError::Empty`], [`PartnerError::SpMchidMismatch`].
    pub fn check(&self, client_mchid: &str) -> Result<(), PartnerError> {
        for (field, value) in [
            ("sp_appid", self.sp_appid.as_str()),
            ("sp_mchid", self.sp_mchid.as_str()),
            ("sub_mchid", self.sub_mchid.as_str()),
        ] {
            if value.trim().is_empty() {
                return Err(PartnerError::Empty { field });
            }
        }
        if self
            .sub_appid
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            return Err(PartnerError::Empty { field: "sub_appid" });
        }
        if self.sp_mchid != client_mchid {
            return Err(PartnerError::SpMchidMismatch {
                client: client_mchid.to_owned(),
                sub: self.sp_mchid.clone(),
            });
        }
        Ok(())
    }

    /// Checks that a verified answer's `sp_mchid` / `sub_mchid` are this
    /// sub-merchant's. `None` means the field is absent: refused when
    /// `required`, else accepted.
    fn check_answer(
        &self,
        sp_mchid: Option<&str>,
        sub_mchid: Option<&str>,
        required: bool,
    ) -> Result<(), PartnerError> {
        for (field, expected, found) in [
            ("sp_mchid", &self.sp_mchid, sp_mchid),
            ("sub_mchid", &self.sub_mchid, sub_mchid),
        ] {
            let ok = match found {
                Some(f) => f == expected,
                None => !required,
            };
            if !ok {
                return Err(PartnerError::ForeignAnswer {
                    field,
                    expected: expected.clone(),
                    found: found.map(str::to_owned),
                });
            }
        }
        Ok(())
    }
}

/// How the payer of a partner JSAPI prepay is identified (spec 15.3):
/// exactly one of the two openids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartnerPayer {
    /// `payer.sp_openid`: the openid under `sp_appid` (a mini-program owned
    /// by the provider). `paySign` then uses `sp_appid`.
    SpOpenid(String),
    /// `payer.sub_openid`: the openid under `sub_appid` (a mini-program
    /// owned by the sub-merchant; `sub_appid` required). `paySign` then
    /// uses `sub_appid`.
    SubOpenid(String),
}

impl PartnerPayer {
    /// The AppID `wx.requestPayment` must be signed with for this payer
    /// (spec 15.4): `sub_appid` for [`PartnerPayer::SubOpenid`], else
    /// `sp_appid`.
    ///
    /// # Errors
    /// [`PartnerError::SubOpenidWithoutSubAppid`].
    pub fn app_id<'a>(&self, sub: &'a SubMerchant) -> Result<&'a str, PartnerError> {
        match self {
            PartnerPayer::SpOpenid(_) => Ok(&sub.sp_appid),
            PartnerPayer::SubOpenid(_) => sub
                .sub_appid
                .as_deref()
                .ok_or(PartnerError::SubOpenidWithoutSubAppid),
        }
    }

    fn check(&self, sub: &SubMerchant) -> Result<(), PartnerError> {
        let (field, openid) = match self {
            PartnerPayer::SpOpenid(o) => ("payer.sp_openid", o),
            PartnerPayer::SubOpenid(o) => ("payer.sub_openid", o),
        };
        if openid.trim().is_empty() {
            return Err(PartnerError::Empty { field });
        }
        self.app_id(sub).map(|_| ())
    }
}

#[derive(Serialize)]
struct PayerWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    sp_openid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_openid: Option<&'a str>,
}

/// A partner JSAPI or NATIVE prepay (spec 15.3): the fields of
/// [`PrepayRequest`](super::PrepayRequest) with the payer as
/// [`PartnerPayer`]; the ids come from the [`SubMerchant`] and
/// `notify_url` from the client's configuration.
///
/// ```
/// use wxpay_core::{Fen, v3::{PartnerPayer, PartnerPrepayRequest}};
/// let req = PartnerPrepayRequest::jsapi("门店-咖啡", "SPX20260101120500B7", Fen(1800), PartnerPayer::SpOpenid("oSp1".into()))
///     .with_attach("table=4");
/// assert_eq!(req.amount.currency, "CNY");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartnerPrepayRequest {
    /// Goods description (≤ 127 characters).
    pub description: String,
    /// Merchant order number: keep it unique across the whole provider
    /// (spec 15.5).
    pub out_trade_no: String,
    /// Payment deadline (sent as `yyyy-MM-DDTHH:mm:ss+08:00`).
    pub time_expire: Option<DateTime<FixedOffset>>,
    /// Merchant data echoed once paid (≤ 128).
    pub attach: Option<String>,
    /// Coupon tag.
    pub goods_tag: Option<String>,
    /// Amount.
    pub amount: PrepayAmount,
    /// Payer (JSAPI only; `None` for NATIVE).
    pub payer: Option<PartnerPayer>,
    /// Receipt details.
    pub detail: Option<PrepayDetail>,
    /// Scene.
    pub scene_info: Option<SceneInfo>,
    /// Settlement (profit sharing).
    pub settle_info: Option<SettleInfo>,
}

impl PartnerPrepayRequest {
    /// A JSAPI prepay for `payer`, in CNY.
    pub fn jsapi(
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        total: Fen,
        payer: PartnerPayer,
    ) -> PartnerPrepayRequest {
        let mut req = PartnerPrepayRequest::native(description, out_trade_no, total);
        req.payer = Some(payer);
        req
    }

    /// A NATIVE (QR code) prepay, in CNY.
    pub fn native(
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        total: Fen,
    ) -> PartnerPrepayRequest {
        PartnerPrepayRequest {
            description: description.into(),
            out_trade_no: out_trade_no.into(),
            time_expire: None,
            attach: None,
            goods_tag: None,
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
    pub fn with_time_expire(mut self, t: DateTime<FixedOffset>) -> PartnerPrepayRequest {
        self.time_expire = Some(t);
        self
    }

    /// Sets `attach`.
    pub fn with_attach(mut self, attach: impl Into<String>) -> PartnerPrepayRequest {
        self.attach = Some(attach.into());
        self
    }

    /// Sets `scene_info`.
    pub fn with_scene_info(mut self, scene: SceneInfo) -> PartnerPrepayRequest {
        self.scene_info = Some(scene);
        self
    }

    /// The exact JSON body, in WeChat's field order (the vector's):
    /// `sp_appid, sp_mchid, sub_appid?, sub_mchid, description, …`.
    fn to_body(&self, sub: &SubMerchant, notify_url: &str, jsapi: bool) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            sp_appid: &'a str,
            sp_mchid: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub_appid: Option<&'a str>,
            sub_mchid: &'a str,
            description: &'a str,
            out_trade_no: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            time_expire: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            attach: Option<&'a str>,
            notify_url: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            goods_tag: Option<&'a str>,
            amount: &'a PrepayAmount,
            #[serde(skip_serializing_if = "Option::is_none")]
            payer: Option<PayerWire<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a PrepayDetail>,
            #[serde(skip_serializing_if = "Option::is_none")]
            scene_info: Option<&'a SceneInfo>,
            #[serde(skip_serializing_if = "Option::is_none")]
            settle_info: Option<&'a SettleInfo>,
        }
        let payer = if jsapi {
            self.payer.as_ref().map(|p| match p {
                PartnerPayer::SpOpenid(o) => PayerWire {
                    sp_openid: Some(o),
                    sub_openid: None,
                },
                PartnerPayer::SubOpenid(o) => PayerWire {
                    sp_openid: None,
                    sub_openid: Some(o),
                },
            })
        } else {
            None
        };
        let wire = Wire {
            sp_appid: &sub.sp_appid,
            sp_mchid: &sub.sp_mchid,
            sub_appid: sub.sub_appid.as_deref(),
            sub_mchid: &sub.sub_mchid,
            description: &self.description,
            out_trade_no: &self.out_trade_no,
            time_expire: self.time_expire.as_ref().map(format_time),
            attach: self.attach.as_deref(),
            notify_url,
            goods_tag: self.goods_tag.as_deref(),
            amount: &self.amount,
            payer,
            detail: self.detail.as_ref(),
            scene_info: self.scene_info.as_ref(),
            settle_info: self.settle_info.as_ref(),
        };
        serde_json::to_string(&wire).expect("plain structs serialise")
    }
}

/// `payer` of a partner transaction: the openid under `sp_appid` and/or
/// under `sub_appid`, as applicable.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PartnerTransactionPayer {
    /// The payer's openid under `sp_appid`.
    pub sp_openid: Option<String>,
    /// The payer's openid under `sub_appid`.
    pub sub_openid: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A partner transaction (spec 15.6): the partner query answer and the
/// decrypted partner `TRANSACTION.SUCCESS` resource. `sp_mchid`,
/// `sub_mchid`, `out_trade_no` and `trade_state` are required (a direct
/// merchant's resource, which has `mchid` instead, does not parse); the
/// rest as in [`Transaction`](super::Transaction).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PartnerTransaction {
    /// The provider's AppID.
    pub sp_appid: Option<String>,
    /// The provider's merchant number.
    pub sp_mchid: String,
    /// The sub-merchant's AppID (if used at prepay).
    pub sub_appid: Option<String>,
    /// The sub-merchant's number.
    pub sub_mchid: String,
    /// Merchant order number.
    pub out_trade_no: String,
    /// WeChat order number (absent until paid).
    pub transaction_id: Option<String>,
    /// `JSAPI`, `NATIVE`, …
    pub trade_type: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, … (unknown: intermediate).
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
    pub payer: Option<PartnerTransactionPayer>,
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

impl PartnerTransaction {
    /// Reads a decrypted resource (or a query answer's body).
    ///
    /// # Errors
    /// The JSON error when the bytes are not a partner transaction (for
    /// instance a direct merchant's, without `sp_mchid`).
    pub fn from_resource(resource: &[u8]) -> Result<PartnerTransaction, serde_json::Error> {
        serde_json::from_slice(resource)
    }

    /// `trade_state` as the flow's [`TradeState`](crate::TradeState).
    pub fn state(&self) -> crate::TradeState {
        crate::TradeState::parse(&self.trade_state)
    }

    /// Checks that this transaction is `sub`'s: same `sp_mchid` and
    /// `sub_mchid` (spec 15.6: check both before processing).
    ///
    /// # Errors
    /// [`PartnerError::ForeignAnswer`].
    pub fn check_sub_merchant(&self, sub: &SubMerchant) -> Result<(), PartnerError> {
        sub.check_answer(Some(&self.sp_mchid), Some(&self.sub_mchid), true)
    }
}

/// The decrypted resource of a partner `REFUND.*` notify (spec 15.6): the
/// direct fields with `mchid` replaced by `sp_mchid` + `sub_mchid` (both
/// required here); `amount` and `user_received_account` may be absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PartnerRefundResource {
    /// The provider's merchant number.
    pub sp_mchid: String,
    /// The sub-merchant's number.
    pub sub_mchid: String,
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
    /// Amounts.
    pub amount: Option<RefundAmount>,
    /// Unknown fields (`channel`, `funds_account`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

impl PartnerRefundResource {
    /// Reads a decrypted refund resource.
    ///
    /// # Errors
    /// The JSON error when the bytes are not a partner refund resource.
    pub fn from_resource(resource: &[u8]) -> Result<PartnerRefundResource, serde_json::Error> {
        serde_json::from_slice(resource)
    }

    /// Checks that this refund is `sub`'s (same `sp_mchid`, `sub_mchid`).
    ///
    /// # Errors
    /// [`PartnerError::ForeignAnswer`].
    pub fn check_sub_merchant(&self, sub: &SubMerchant) -> Result<(), PartnerError> {
        sub.check_answer(Some(&self.sp_mchid), Some(&self.sub_mchid), true)
    }
}

/// What a verified, decrypted partner notify is about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PartnerNotifyEvent {
    /// `TRANSACTION.*`: the partner transaction.
    Transaction(Box<PartnerTransaction>),
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    Refund(Box<PartnerRefundResource>),
    /// An authentic event type this version does not model.
    Other,
}

/// A verified partner notify: envelope, decrypted bytes, typed event.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedPartnerNotify {
    /// Envelope and decrypted resource.
    pub notification: Notification,
    /// The typed resource.
    pub event: PartnerNotifyEvent,
}

impl VerifiedPartnerNotify {
    /// Types the resource of a verified notification by its event type.
    ///
    /// # Errors
    /// The JSON error when the resource is not the partner shape of its
    /// event type (e.g. a direct merchant's resource).
    pub fn from_notification(
        notification: Notification,
    ) -> Result<VerifiedPartnerNotify, serde_json::Error> {
        let kind = notification
            .event_type
            .split('.')
            .next()
            .unwrap_or_default();
        let event = match kind {
            "TRANSACTION" => PartnerNotifyEvent::Transaction(Box::new(
                PartnerTransaction::from_resource(&notification.resource)?,
            )),
            "REFUND" => PartnerNotifyEvent::Refund(Box::new(PartnerRefundResource::from_resource(
                &notification.resource,
            )?)),
            _ => PartnerNotifyEvent::Other,
        };
        Ok(VerifiedPartnerNotify {
            notification,
            event,
        })
    }
}

impl<T: Transport> Client<T> {
    fn partner_check(&self, sub: &SubMerchant) -> Result<(), Error> {
        Ok(sub.check(self.config().mchid())?)
    }

    fn partner_prepay_body(
        &self,
        sub: &SubMerchant,
        req: &PartnerPrepayRequest,
        jsapi: bool,
    ) -> Result<String, Error> {
        self.partner_check(sub)?;
        if req.amount.total.0 == 0 {
            return Err(crate::FieldError::new("amount.total", "must be at least 1 fen").into());
        }
        if jsapi {
            req.payer
                .as_ref()
                .ok_or(PartnerError::MissingPayer)?
                .check(sub)?;
        }
        let notify_url = self
            .config()
            .notify_url
            .as_deref()
            .ok_or(super::ConfigError::Missing("notify_url"))?;
        Ok(req.to_body(sub, notify_url, jsapi))
    }

    /// `POST /v3/pay/partner/transactions/jsapi` → `prepay_id` (spec 15.2,
    /// 15.3). Not retried: on an unknown outcome re-send the identical
    /// request.
    ///
    /// # Errors
    /// Before sending: [`Error::Partner`] ([`PartnerError::SpMchidMismatch`],
    /// [`PartnerError::Empty`], [`PartnerError::MissingPayer`],
    /// [`PartnerError::SubOpenidWithoutSubAppid`]), [`Error::V3Config`]
    /// without notify URL; then any call [`Error`].
    pub async fn partner_jsapi_prepay(
        &self,
        sub: &SubMerchant,
        req: &PartnerPrepayRequest,
    ) -> Result<Verified<JsapiPrepayResponse>, Error> {
        let body = self.partner_prepay_body(sub, req, true)?;
        self.call(
            Endpoint::Prepay,
            HttpMethod::Post,
            "/v3/pay/partner/transactions/jsapi".into(),
            Some(body),
        )
        .await?
        .parse(Endpoint::Prepay)
    }

    /// `POST /v3/pay/partner/transactions/native` → `code_url`; `payer` is
    /// not sent.
    ///
    /// # Errors
    /// As [`Client::partner_jsapi_prepay`] (no payer rule).
    pub async fn partner_native_prepay(
        &self,
        sub: &SubMerchant,
        req: &PartnerPrepayRequest,
    ) -> Result<Verified<NativePrepayResponse>, Error> {
        let body = self.partner_prepay_body(sub, req, false)?;
        self.call(
            Endpoint::Prepay,
            HttpMethod::Post,
            "/v3/pay/partner/transactions/native".into(),
            Some(body),
        )
        .await?
        .parse(Endpoint::Prepay)
    }

    async fn partner_query(
        &self,
        sub: &SubMerchant,
        path: String,
    ) -> Result<Verified<PartnerTransaction>, Error> {
        let t: Verified<PartnerTransaction> = self
            .call(Endpoint::Query, HttpMethod::Get, path, None)
            .await?
            .parse(Endpoint::Query)?;
        t.check_sub_merchant(sub)?;
        Ok(t)
    }

    /// `GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid=…&sub_mchid=…`.
    /// The verified answer must name `sub`'s `sp_mchid` and `sub_mchid`.
    ///
    /// # Errors
    /// [`Error::Partner`] before sending for a bad sub-merchant, after for
    /// an answer about another merchant ([`PartnerError::ForeignAnswer`]);
    /// any call [`Error`].
    pub async fn partner_query_by_out_trade_no(
        &self,
        sub: &SubMerchant,
        out_trade_no: &str,
    ) -> Result<Verified<PartnerTransaction>, Error> {
        self.partner_check(sub)?;
        let path = format!(
            "/v3/pay/partner/transactions/out-trade-no/{}?sp_mchid={}&sub_mchid={}",
            path_escape(out_trade_no),
            path_escape(&sub.sp_mchid),
            path_escape(&sub.sub_mchid)
        );
        self.partner_query(sub, path).await
    }

    /// `GET /v3/pay/partner/transactions/id/{transaction_id}?sp_mchid=…&sub_mchid=…`.
    ///
    /// # Errors
    /// As [`Client::partner_query_by_out_trade_no`].
    pub async fn partner_query_by_transaction_id(
        &self,
        sub: &SubMerchant,
        transaction_id: &str,
    ) -> Result<Verified<PartnerTransaction>, Error> {
        self.partner_check(sub)?;
        let path = format!(
            "/v3/pay/partner/transactions/id/{}?sp_mchid={}&sub_mchid={}",
            path_escape(transaction_id),
            path_escape(&sub.sp_mchid),
            path_escape(&sub.sub_mchid)
        );
        self.partner_query(sub, path).await
    }

    /// `POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close`
    /// with `{"sp_mchid","sub_mchid"}`; WeChat answers 204. As with
    /// [`Client::close`], a 204 is not proof: query afterwards.
    ///
    /// # Errors
    /// [`Error::Partner`] before sending; any call [`Error`] (a verified
    /// `ORDER_CLOSED` is accepted).
    pub async fn partner_close(&self, sub: &SubMerchant, out_trade_no: &str) -> Result<(), Error> {
        self.partner_check(sub)?;
        let path = format!(
            "/v3/pay/partner/transactions/out-trade-no/{}/close",
            path_escape(out_trade_no)
        );
        let body =
            serde_json::json!({ "sp_mchid": sub.sp_mchid, "sub_mchid": sub.sub_mchid }).to_string();
        self.post_close(path, body).await
    }

    /// `POST /v3/refund/domestic/refunds` for `sub`: the body of
    /// [`Client::refund`] with `sub_mchid` first. The answer's `sp_mchid` /
    /// `sub_mchid`, when present, must be `sub`'s. Not retried: on an
    /// unknown outcome query, and resubmit with the **same**
    /// `out_refund_no`.
    ///
    /// # Errors
    /// [`Error::Partner`] before sending, or for an answer about another
    /// merchant; any call [`Error`].
    pub async fn partner_refund(
        &self,
        sub: &SubMerchant,
        req: &RefundRequest,
    ) -> Result<Verified<Refund>, Error> {
        self.partner_check(sub)?;
        let c = self.config();
        let notify_url = c.refund_notify_url.as_deref().or(c.notify_url.as_deref());
        let body = req.to_body_for(Some(&sub.sub_mchid), notify_url);
        let answer = self
            .call(
                Endpoint::Refund,
                HttpMethod::Post,
                "/v3/refund/domestic/refunds".into(),
                Some(body),
            )
            .await?;
        check_refund_answer(sub, answer.parse(Endpoint::Refund)?)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}?sub_mchid=…`.
    ///
    /// # Errors
    /// As [`Client::partner_refund`]; no such refund is [`Error::Api`]
    /// with [`ErrCode::RefundNotExist`](crate::ErrCode::RefundNotExist).
    pub async fn partner_refund_query(
        &self,
        sub: &SubMerchant,
        out_refund_no: &str,
    ) -> Result<Verified<Refund>, Error> {
        self.partner_check(sub)?;
        let path = format!(
            "/v3/refund/domestic/refunds/{}?sub_mchid={}",
            path_escape(out_refund_no),
            path_escape(&sub.sub_mchid)
        );
        let answer = self
            .call(Endpoint::RefundQuery, HttpMethod::Get, path, None)
            .await?;
        check_refund_answer(sub, answer.parse(Endpoint::RefundQuery)?)
    }

    /// `GET /v3/bill/tradebill?bill_date=…&bill_type=…&sub_mchid=…[&tar_type=GZIP]`
    /// (spec 12.1, 15.2), then the file ([`Client::download_bill_file`]):
    /// the trade bill of one sub-merchant. For all sub-merchants at once
    /// use [`Client::trade_bill`] (no `sub_mchid`).
    ///
    /// # Errors
    /// [`Error::Partner`] before sending for a bad sub-merchant; as
    /// [`Client::trade_bill`].
    pub async fn partner_trade_bill(
        &self,
        sub: &SubMerchant,
        date: NaiveDate,
        bill_type: TradeBillType,
        compression: Compression,
    ) -> Result<BillDownload, Error> {
        let application = self
            .apply_partner_trade_bill(sub, date, bill_type, compression)
            .await?;
        self.download_bill_file(&application).await
    }

    /// The application of [`Client::partner_trade_bill`] alone.
    ///
    /// # Errors
    /// As [`Client::partner_trade_bill`].
    pub async fn apply_partner_trade_bill(
        &self,
        sub: &SubMerchant,
        date: NaiveDate,
        bill_type: TradeBillType,
        compression: Compression,
    ) -> Result<BillApplication, Error> {
        self.partner_check(sub)?;
        let path = bill_path_for(
            "/v3/bill/tradebill",
            date,
            ("bill_type", bill_type.as_str()),
            Some(&sub.sub_mchid),
            compression,
        );
        self.apply(Endpoint::TradeBill, path).await
    }

    /// `wx.requestPayment` parameters for a partner prepay (spec 15.4):
    /// `appId` is `sub_appid` when `req`'s payer is a `sub_openid`, else
    /// `sp_appid`; signed with the provider's key, the client's clock and
    /// nonce source.
    ///
    /// # Errors
    /// [`Error::Partner`] for a bad sub-merchant, a request without payer
    /// or a `sub_openid` without `sub_appid`; [`Error::Signing`] if the
    /// crypto library fails.
    pub fn partner_pay_params(
        &self,
        sub: &SubMerchant,
        req: &PartnerPrepayRequest,
        prepay_id: &str,
    ) -> Result<PayParamsV3, Error> {
        self.partner_check(sub)?;
        let payer = req.payer.as_ref().ok_or(PartnerError::MissingPayer)?;
        payer.check(sub)?;
        self.pay_params_for(payer.app_id(sub)?, prepay_id)
    }

    /// [`Client::verify_notify`] for a provider's notify URL: verifies
    /// (refreshing the certificates once on an unknown serial), decrypts
    /// and reads the partner resource. Check
    /// [`PartnerTransaction::check_sub_merchant`] (or the refund's) against
    /// your sub-merchant before acting on it.
    ///
    /// # Errors
    /// [`NotifyError`]; a resource that is not the partner shape is
    /// [`NotifyError::Resource`].
    pub async fn verify_partner_notify(
        &self,
        headers: &WechatpayHeaders<'_>,
        body: &[u8],
    ) -> Result<VerifiedPartnerNotify, NotifyError> {
        let notification = self.notification(headers, body).await?;
        VerifiedPartnerNotify::from_notification(notification).map_err(NotifyError::Resource)
    }
}

/// A refund answer names no merchant in the documented shape; when it does
/// (`sp_mchid`, `sub_mchid`, kept in `extra`), they must be `sub`'s (a
/// value that is not a string never is).
fn check_refund_answer(sub: &SubMerchant, r: Verified<Refund>) -> Result<Verified<Refund>, Error> {
    let mut ids = [None, None];
    for (slot, (field, expected)) in ids
        .iter_mut()
        .zip([("sp_mchid", &sub.sp_mchid), ("sub_mchid", &sub.sub_mchid)])
    {
        match r.extra.get(field) {
            None => {}
            Some(serde_json::Value::String(id)) => *slot = Some(id.as_str()),
            Some(other) => {
                return Err(PartnerError::ForeignAnswer {
                    field,
                    expected: expected.clone(),
                    found: Some(other.to_string()),
                }
                .into());
            }
        }
    }
    sub.check_answer(ids[0], ids[1], false)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> SubMerchant {
        SubMerchant::new("wxsp", "1900000100", "1900000200")
    }

    #[test]
    fn sub_merchant_checks() {
        assert_eq!(sub().check("1900000100"), Ok(()));
        assert_eq!(
            sub().check("1900000109"),
            Err(PartnerError::SpMchidMismatch {
                client: "1900000109".into(),
                sub: "1900000100".into()
            })
        );
        let mut s = sub();
        s.sub_mchid = " ".into();
        assert_eq!(
            s.check("1900000100"),
            Err(PartnerError::Empty { field: "sub_mchid" })
        );
        assert_eq!(
            sub().with_sub_appid("").check("1900000100"),
            Err(PartnerError::Empty { field: "sub_appid" })
        );
    }

    #[test]
    fn payer_app_id_follows_the_openid() {
        let with = sub().with_sub_appid("wxsub");
        let sp = PartnerPayer::SpOpenid("o1".into());
        let su = PartnerPayer::SubOpenid("o2".into());
        assert_eq!(sp.app_id(&with), Ok("wxsp"));
        assert_eq!(su.app_id(&with), Ok("wxsub"));
        assert_eq!(sp.app_id(&sub()), Ok("wxsp"));
        assert_eq!(
            su.app_id(&sub()),
            Err(PartnerError::SubOpenidWithoutSubAppid)
        );
        assert_eq!(
            PartnerPayer::SpOpenid("".into()).check(&with),
            Err(PartnerError::Empty {
                field: "payer.sp_openid"
            })
        );
    }

    #[test]
    fn answers_must_name_the_sub_merchant() {
        let s = sub();
        assert_eq!(
            s.check_answer(Some("1900000100"), Some("1900000200"), true),
            Ok(())
        );
        assert!(s.check_answer(None, None, false).is_ok());
        let e = s
            .check_answer(Some("1900000100"), Some("1900000201"), false)
            .unwrap_err();
        assert_eq!(
            e,
            PartnerError::ForeignAnswer {
                field: "sub_mchid",
                expected: "1900000200".into(),
                found: Some("1900000201".into())
            }
        );
        assert!(e.outcome_unknown());
        assert!(matches!(
            s.check_answer(Some("1900000101"), Some("1900000200"), true),
            Err(PartnerError::ForeignAnswer {
                field: "sp_mchid",
                ..
            })
        ));
        assert!(s.check_answer(Some("1900000100"), None, true).is_err());
        assert!(!PartnerError::MissingPayer.outcome_unknown());
    }

    #[test]
    fn native_body_has_no_payer() {
        let req =
            PartnerPrepayRequest::jsapi("d", "SPX1", Fen(1), PartnerPayer::SpOpenid("o1".into()));
        let jsapi = req.to_body(&sub(), "https://n.example/n", true);
        assert!(
            jsapi.ends_with(r#""amount":{"total":1,"currency":"CNY"},"payer":{"sp_openid":"o1"}}"#),
            "{jsapi}"
        );
        let native = req.to_body(&sub(), "https://n.example/n", false);
        assert!(!native.contains("payer"), "{native}");
        assert!(!native.contains("sub_appid"), "{native}");
    }
}
