//! WeChat's `err_code` values and what to do about each.

use std::fmt;

/// What the spec advises after a business failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAdvice {
    /// Retry with identical parameters after a short back-off.
    Retry,
    /// Wait (fix a condition, or a minute), then retry with identical parameters.
    Wait,
    /// Query the order to learn its real state, then decide.
    Query,
    /// Do not retry: fix the request, the configuration or the business state.
    No,
}

macro_rules! err_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal => $advice:ident, )*) => {
        /// A WeChat `err_code` (spec section 4.4), with [`ErrCode::Other`]
        /// for codes this version does not know.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrCode {
            $( $(#[$doc])* $variant, )*
            /// A code not in the catalogue, kept verbatim.
            Other(String),
        }

        impl ErrCode {
            /// Every catalogued code, for tests and tooling.
            pub const ALL: &'static [ErrCode] = &[$(ErrCode::$variant,)*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $( ErrCode::$variant => $wire, )*
                    ErrCode::Other(s) => s,
                }
            }

            /// The wire string of a catalogued code (`None` for
            /// [`ErrCode::Other`]), for labels that must not borrow.
            pub(crate) fn static_str(&self) -> Option<&'static str> {
                match self {
                    $( ErrCode::$variant => Some($wire), )*
                    ErrCode::Other(_) => None,
                }
            }

            /// Reads a wire string; unknown codes become [`ErrCode::Other`].
            pub fn parse(s: &str) -> ErrCode {
                match s {
                    $( $wire => ErrCode::$variant, )*
                    other => ErrCode::Other(other.to_owned()),
                }
            }

            /// The spec's retry advice. Unknown codes are [`RetryAdvice::Query`]:
            /// the safe move when the meaning is not known.
            pub fn advice(&self) -> RetryAdvice {
                match self {
                    $( ErrCode::$variant => RetryAdvice::$advice, )*
                    ErrCode::Other(_) => RetryAdvice::Query,
                }
            }
        }
    };
}

err_codes! {
    /// Parameters malformed, or re-entry with different parameters ("201 商户订单号重复").
    InvalidRequest = "INVALID_REQUEST" => No,
    /// The merchant lacks permission for this API.
    NoAuth = "NOAUTH" => No,
    /// Balance insufficient (the payer's for payments, the merchant's for refunds).
    NotEnough = "NOTENOUGH" => No,
    /// The order is already paid.
    OrderPaid = "ORDERPAID" => No,
    /// The order is closed.
    OrderClosed = "ORDERCLOSED" => No,
    /// WeChat system error; retry with the same parameters.
    SystemError = "SYSTEMERROR" => Retry,
    /// appid missing or invalid.
    AppIdNotExist = "APPID_NOT_EXIST" => No,
    /// mch_id missing or invalid.
    MchIdNotExist = "MCHID_NOT_EXIST" => No,
    /// appid not bound to this mch_id.
    AppIdMchIdNotMatch = "APPID_MCHID_NOT_MATCH" => No,
    /// A required parameter is missing.
    LackParams = "LACK_PARAMS" => No,
    /// The order number was already used.
    OutTradeNoUsed = "OUT_TRADE_NO_USED" => Query,
    /// The signature was wrong.
    SignError = "SIGNERROR" => No,
    /// The XML was malformed.
    XmlFormatError = "XML_FORMAT_ERROR" => No,
    /// Not a POST.
    RequirePostMethod = "REQUIRE_POST_METHOD" => No,
    /// Empty body.
    PostDataEmpty = "POST_DATA_EMPTY" => No,
    /// Body not UTF-8.
    NotUtf8 = "NOT_UTF8" => No,
    /// No such order.
    OrderNotExist = "ORDERNOTEXIST" => No,
    /// Refund rejected under concurrency; retry with the same `out_refund_no`.
    BizErrNeedRetry = "BIZERR_NEED_RETRY" => Retry,
    /// Past the one-year refund window.
    TradeOverdue = "TRADE_OVERDUE" => No,
    /// Generic business error; `err_code_des` has the reason.
    Error = "ERROR" => No,
    /// The payer's account is cancelled.
    UserAccountAbnormal = "USER_ACCOUNT_ABNORMAL" => No,
    /// Too many invalid requests; wait at least a minute.
    InvalidReqTooMuch = "INVALID_REQ_TOO_MUCH" => Wait,
    /// Bad `transaction_id`.
    InvalidTransactionId = "INVALID_TRANSACTIONID" => No,
    /// Parameter error.
    ParamError = "PARAM_ERROR" => No,
    /// Rate limited; slow down and retry.
    FrequencyLimited = "FREQUENCY_LIMITED" => Wait,
    /// Refund amounts differ from the order or an earlier request.
    RefundFeeMismatch = "REFUND_FEE_MISMATCH" => No,
    /// The order is still processing; retry later.
    OrderNotReady = "ORDER_NOT_READY" => Wait,
    /// Client certificate problem.
    CertError = "CERT_ERROR" => No,
    /// No refund found.
    RefundNotExist = "REFUNDNOTEXIST" => No,
    /// closeorder: the order's state does not allow it.
    TradeStateError = "TRADE_STATE_ERROR" => Query,
}

impl ErrCode {
    /// Whether repeating the same request (after the advised back-off) may
    /// succeed: true for [`RetryAdvice::Retry`] and [`RetryAdvice::Wait`].
    pub fn is_retryable(&self) -> bool {
        matches!(self.advice(), RetryAdvice::Retry | RetryAdvice::Wait)
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_unknown_is_kept() {
        for code in ErrCode::ALL {
            assert_eq!(&ErrCode::parse(code.as_str()), code);
        }
        assert_eq!(ErrCode::ALL.len(), 30);
        assert_eq!(
            ErrCode::parse("NEW_CODE"),
            ErrCode::Other("NEW_CODE".into())
        );
        assert_eq!(ErrCode::parse("NEW_CODE").as_str(), "NEW_CODE");
    }

    #[test]
    fn retry_advice_follows_the_spec() {
        assert!(ErrCode::SystemError.is_retryable());
        assert!(ErrCode::BizErrNeedRetry.is_retryable());
        assert!(ErrCode::FrequencyLimited.is_retryable());
        assert!(!ErrCode::SignError.is_retryable());
        assert!(!ErrCode::OrderPaid.is_retryable());
        assert!(!ErrCode::InvalidRequest.is_retryable());
        assert_eq!(ErrCode::OutTradeNoUsed.advice(), RetryAdvice::Query);
        assert!(!ErrCode::Other("X".into()).is_retryable());
    }
}
