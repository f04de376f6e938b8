//! The client's error type.

use crate::{
    ErrCode, FieldError, SignatureError, XmlError, bill::download::BillError, config::ConfigError,
    v3,
};

/// A boxed error from the transport.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call to WeChat did not succeed.
///
/// The variants follow the spec's decision procedure (4.2): a transport
/// failure leaves the outcome unknown; a protocol `FAIL` carries no
/// signature; a signed answer whose signature is wrong is refused; a
/// business `FAIL` carries WeChat's [`ErrCode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Network failure, timeout, a non-200 status or an unreadable body:
    /// the request may or may not have taken effect.
    #[error("transport failure, outcome unknown: {message}")]
    Transport {
        /// What happened (never contains secrets).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The answer was not a well-formed v2 message.
    #[error("unreadable response")]
    Xml(#[from] XmlError),
    /// `return_code=FAIL`: WeChat refused the request at protocol level.
    #[error("WeChat refused the request: {return_msg}")]
    Protocol {
        /// WeChat's `return_msg`.
        return_msg: String,
    },
    /// A signed answer whose signature does not verify: refused as forged or corrupt.
    #[error("response signature invalid")]
    InvalidSignature(#[source] SignatureError),
    /// `result_code=FAIL`.
    #[error("WeChat business error {err_code}: {err_code_des}")]
    Business {
        /// The code.
        err_code: ErrCode,
        /// WeChat's description.
        err_code_des: String,
    },
    /// A request field breaks the protocol's rules (checked before sending),
    /// or a response field is missing or malformed.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// `jscode2session` answered with an `errcode`.
    #[error("login failed: errcode {errcode}: {errmsg}")]
    Login {
        /// WeChat's errcode (40029 invalid code, 40163 code used, 45011 quota, -1 busy…).
        errcode: i64,
        /// WeChat's errmsg.
        errmsg: String,
    },
    /// The configuration lacks something this call needs.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client certificate could not be loaded.
    #[error("client certificate: {0}")]
    Certificate(String),
    /// API v3: an error answer (spec 14.1) — verified, or the unsigned 401
    /// of a request WeChat could not authenticate (`SIGN_ERROR`).
    /// Boxed: the error stays small for the v2 paths.
    #[error(transparent)]
    Api(Box<v3::ApiError>),
    /// API v3: an answer refused by verification (bad signature, probe,
    /// stale timestamp, unknown serial, forged 2xx): outcome unknown.
    #[error(transparent)]
    Unverified(#[from] v3::UnverifiedAnswer),
    /// API v3: a verified `202 Accepted` — still processing, not a
    /// success: query the result.
    #[error("WeChat Pay v3 answered 202 (accepted, still processing): query the result")]
    Pending {
        /// The `Request-ID` header.
        request_id: Option<String>,
    },
    /// API v3: the configuration cannot serve this call.
    #[error(transparent)]
    V3Config(#[from] v3::ConfigError),
    /// API v3: a downloaded platform certificate was refused (does not
    /// decrypt with the APIv3 key, or its serial differs from `serial_no`).
    #[error("platform certificate download refused")]
    PlatformCertificates(#[source] v3::CertificateError),
    /// API v3: RSA signing failed inside the crypto library.
    #[error(transparent)]
    Signing(#[from] v3::SigningError),
    /// A bill download (v2 `downloadbill`, v3 `tradebill` / `fundflowbill`)
    /// did not give a bill: not ready yet, none for that day, corrupt, or
    /// refused ([`BillError`]).
    #[error(transparent)]
    Bill(#[from] BillError),
    /// API v3 service-provider (partner) mode: a sub-merchant or payer
    /// that breaks a rule (nothing was sent), or a verified answer naming
    /// another merchant (refused; outcome unknown).
    #[error(transparent)]
    Partner(#[from] v3::PartnerError),
}

impl From<v3::ApiError> for Error {
    fn from(e: v3::ApiError) -> Error {
        Error::Api(Box::new(e))
    }
}

impl Error {
    /// Whether repeating the identical request may succeed: transport
    /// failures, retryable business codes (v2 and v3: `SYSTEM_ERROR`,
    /// `FREQUENCY_LIMITED`, …), login's `-1` (busy), v3 answers refused
    /// by verification (spec 14.4: repeat the idempotent call, or query),
    /// the v2 `return_msg`s that name a WeChat-side failure (`SYSTEMERROR`,
    /// and `downloadbill`'s `CompressGZip Error` / `UnCompressGZip Error`),
    /// and bills not ready yet or received corrupt
    /// ([`BillError::is_retryable`]). Not a 202 ([`Error::Pending`]: query
    /// instead), not "no bill".
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Unverified(_) => true,
            Error::Api(e) => e.is_retryable(),
            Error::Business { err_code, .. } => err_code.is_retryable(),
            Error::Login { errcode, .. } => *errcode == -1,
            Error::Protocol { return_msg } => {
                ["SYSTEMERROR", "CompressGZip Error", "UnCompressGZip Error"]
                    .iter()
                    .any(|m| return_msg.trim().eq_ignore_ascii_case(m))
            }
            Error::Bill(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether this is a bill that is not generated yet
    /// ([`BillError::NotReady`]): ask again later.
    pub fn is_bill_not_ready(&self) -> bool {
        matches!(self, Error::Bill(BillError::NotReady { .. }))
    }

    /// Whether there is no bill for that day ([`BillError::NoBill`]).
    pub fn is_no_bill(&self) -> bool {
        matches!(self, Error::Bill(BillError::NoBill))
    }

    /// Whether the request may have taken effect although no answer says so.
    /// For v3: refused answers, 202, and error answers that are unsigned
    /// or 5xx.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::Transport { .. }
            | Error::Xml(_)
            | Error::Unverified(_)
            | Error::Pending { .. } => true,
            Error::Api(e) => e.outcome_unknown(),
            Error::Partner(e) => e.outcome_unknown(),
            _ => false,
        }
    }

    /// Whether this is a verified, definite refusal: a signed business
    /// answer whose code is catalogued and says not to retry. Only such an
    /// answer proves a request had no effect; anything else (transport
    /// failures, unverifiable or unreadable answers, unknown or retryable
    /// codes) leaves the outcome unknown for money-moving calls.
    ///
    /// For v3: a *verified* [`Error::Api`] whose mapped code is catalogued
    /// with advice [`No`](crate::RetryAdvice::No); an unsigned 401 never is.
    pub fn is_definite_refusal(&self) -> bool {
        match self {
            Error::Business { err_code, .. } => {
                !matches!(err_code, ErrCode::Other(_))
                    && err_code.advice() == crate::RetryAdvice::No
            }
            Error::Api(e) => e.is_definite_refusal(),
            _ => false,
        }
    }

    /// The business code, if this is a business failure (v2) or a v3
    /// error answer (its code mapped per endpoint, [`v3::map_code`]).
    pub fn err_code(&self) -> Option<&ErrCode> {
        match self {
            Error::Business { err_code, .. } => Some(err_code),
            Error::Api(e) => Some(&e.err_code),
            _ => None,
        }
    }

    pub(crate) fn transport(message: impl Into<String>, source: Option<BoxError>) -> Error {
        Error::Transport {
            message: message.into(),
            source,
        }
    }
}
