//! API v3 errors (spec 14): error answers, refused answers and
//! configuration mistakes, with the mapping of v3 codes onto [`ErrCode`]
//! so that the protocol-free flow keeps reading `err_code()` and
//! `is_definite_refusal()` unchanged.

use std::fmt;

use crate::{ErrCode, RetryAdvice};

use super::validate::ValidationError;

/// The endpoint an answer came from: codes are mapped per endpoint (spec
/// 14.3), e.g. `RESOURCE_NOT_EXISTS` means "no such refund" on a refund
/// query but "order not found or unpaid" on a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /v3/pay/transactions/jsapi` or `/native`.
    Prepay,
    /// `GET /v3/pay/transactions/out-trade-no/…` or `/id/…`.
    Query,
    /// `POST /v3/pay/transactions/out-trade-no/…/close`.
    Close,
    /// `POST /v3/refund/domestic/refunds`.
    Refund,
    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    RefundQuery,
    /// `GET /v3/certificates`.
    Certificates,
    /// `GET /v3/bill/tradebill`.
    TradeBill,
    /// `GET /v3/bill/fundflowbill`.
    FundFlowBill,
    /// `GET` of a bill's `download_url` (the file).
    BillDownload,
}

impl Endpoint {
    /// A short name for messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Prepay => "prepay",
            Endpoint::Query => "query",
            Endpoint::Close => "close",
            Endpoint::Refund => "refund",
            Endpoint::RefundQuery => "refund query",
            Endpoint::Certificates => "certificates",
            Endpoint::TradeBill => "trade bill",
            Endpoint::FundFlowBill => "fund-flow bill",
            Endpoint::BillDownload => "bill download",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps a v3 `code` onto the catalogue the flow understands (spec 14.2,
/// 14.3). Codes without a counterpart become [`ErrCode::Other`], which is
/// never a definite refusal.
///
/// ```
/// use wxpay_core::{ErrCode, v3::{Endpoint, map_code}};
/// assert_eq!(map_code(Endpoint::Query, "ORDER_NOT_EXIST"), ErrCode::OrderNotExist);
/// assert_eq!(map_code(Endpoint::RefundQuery, "RESOURCE_NOT_EXISTS"), ErrCode::RefundNotExist);
/// assert_eq!(map_code(Endpoint::Refund, "RESOURCE_NOT_EXISTS"), ErrCode::OrderNotExist);
/// assert_eq!(map_code(Endpoint::Prepay, "RULE_LIMIT"), ErrCode::Other("RULE_LIMIT".into()));
/// ```
pub fn map_code(endpoint: Endpoint, code: &str) -> ErrCode {
    match (endpoint, code) {
        // "No platform certificate" (public-key merchants) and the odd
        // "certificate expired" NOT_ENOUGH of spec 4.1: nothing the flow
        // should read as a business answer.
        (Endpoint::Certificates, _) => ErrCode::Other(code.to_owned()),
        (Endpoint::RefundQuery, "RESOURCE_NOT_EXISTS") => ErrCode::RefundNotExist,
        // Refund: the order does not exist or is unpaid — a definite "no
        // refund was made", not "no such refund".
        (Endpoint::Refund, "RESOURCE_NOT_EXISTS") => ErrCode::OrderNotExist,
        (_, "ORDER_NOT_EXIST" | "ORDERNOTEXIST") => ErrCode::OrderNotExist,
        (_, "ORDER_CLOSED") => ErrCode::OrderClosed,
        (_, "OUT_TRADE_NO_USED") => ErrCode::OutTradeNoUsed,
        (_, "NOT_ENOUGH") => ErrCode::NotEnough,
        (_, "SYSTEM_ERROR") => ErrCode::SystemError,
        (_, "PARAM_ERROR") => ErrCode::ParamError,
        (_, "INVALID_REQUEST") => ErrCode::InvalidRequest,
        (_, "SIGN_ERROR") => ErrCode::SignError,
        (_, "NO_AUTH") => ErrCode::NoAuth,
        (_, "APPID_MCHID_NOT_MATCH") => ErrCode::AppIdMchIdNotMatch,
        (_, "MCH_NOT_EXISTS") => ErrCode::MchIdNotExist,
        (_, "FREQUENCY_LIMITED") => ErrCode::FrequencyLimited,
        (_, "USER_ACCOUNT_ABNORMAL") => ErrCode::UserAccountAbnormal,
        (_, other) => ErrCode::Other(other.to_owned()),
    }
}

/// A WeChat Pay v3 error answer (spec 14.1): a non-2xx status with
/// `{"code","message","detail"}`. Either verified (signed by WeChat, spec
/// 3.3 step 7) or the unsigned 401 WeChat gives when it could not
/// authenticate our request (`SIGN_ERROR`: key, serial, mchid or clock).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiError {
    /// The endpoint called.
    pub endpoint: Endpoint,
    /// The HTTP status.
    pub status: u16,
    /// WeChat's `code`, verbatim (empty if the body had none).
    pub code: String,
    /// WeChat's `message` (human text).
    pub message: String,
    /// WeChat's `detail`, raw JSON (e.g. `{"field","value","issue","location"}`,
    /// or the `sign_information` of a 401).
    pub detail: Option<serde_json::Value>,
    /// The `Request-ID` header (support asks for it).
    pub request_id: Option<String>,
    /// Whether the answer's signature was verified. Only a verified answer
    /// proves anything; an unsigned 401 is a hint to fix the configuration.
    pub verified: bool,
    /// `code` mapped for [`endpoint`](ApiError::endpoint) ([`map_code`]).
    pub err_code: ErrCode,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

impl ApiError {
    /// Reads an error answer; a body that is not the JSON shape gives an
    /// empty `code` (an unsigned 401 defaults to `SIGN_ERROR`).
    pub(crate) fn from_answer(
        endpoint: Endpoint,
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        verified: bool,
    ) -> ApiError {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or(ErrorBody {
            code: String::new(),
            message: String::new(),
            detail: None,
        });
        let code = if parsed.code.is_empty() && status == 401 && !verified {
            "SIGN_ERROR".to_owned()
        } else {
            parsed.code
        };
        ApiError {
            endpoint,
            status,
            err_code: map_code(endpoint, &code),
            code,
            message: parsed.message,
            detail: parsed.detail.filter(|d| !d.is_null()),
            request_id,
            verified,
        }
    }

    /// Whether this answer proves the request had no effect: verified, with
    /// a catalogued code whose advice is [`RetryAdvice::No`].
    pub fn is_definite_refusal(&self) -> bool {
        self.verified
            && !matches!(self.err_code, ErrCode::Other(_))
            && self.err_code.advice() == RetryAdvice::No
    }

    /// Whether repeating the identical request may succeed (spec 14.3:
    /// `SYSTEM_ERROR` R, `FREQUENCY_LIMITED` W), and uncatalogued 5xx codes
    /// (`SERVICE_UNAVAILABLE`, spec 1.1).
    pub fn is_retryable(&self) -> bool {
        self.err_code.is_retryable()
            || (matches!(self.err_code, ErrCode::Other(_)) && self.status >= 500)
    }

    /// Whether the request may have taken effect: unverified answers and
    /// 5xx (a "system error" may hide an applied request, spec 14.3).
    pub fn outcome_unknown(&self) -> bool {
        !self.verified || self.status >= 500
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WeChat Pay v3 {} answered {} {}: {}",
            self.endpoint, self.status, self.code, self.message
        )?;
        if !self.verified {
            f.write_str(" (unsigned)")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [Request-ID {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A v3 answer refused by verification (spec 3.3): bad signature, probe,
/// stale or future timestamp, unknown serial (after one refresh),
/// unsupported signature type, or a 2xx without signature headers
/// (forged). Its body was not read; the call's outcome is unknown —
/// re-learn the state with a (verified) query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WeChat Pay v3 answer (HTTP {status}) refused, outcome unknown")]
#[non_exhaustive]
pub struct UnverifiedAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `Request-ID` header, if any.
    pub request_id: Option<String>,
    /// Why it was refused.
    #[source]
    pub reason: ValidationError,
}

impl UnverifiedAnswer {
    /// Whether the answer is forged in the spec's sense: a 2xx without
    /// signature headers.
    pub fn is_forged(&self) -> bool {
        matches!(self.reason, ValidationError::MissingHeader { .. })
    }
}

/// A v3 client configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No WeChat Pay public key, no pinned platform certificate and no
    /// certificate download: no answer could ever be verified.
    #[error(
        "API v3 needs a verification key: a WeChat Pay public key, platform certificates, or certificate download"
    )]
    NoVerificationKey,
    /// A call needs a URL that is not configured.
    #[error("API v3: {0} is not configured")]
    Missing(&'static str),
}
