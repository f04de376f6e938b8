//! The client's error type.

use crate::{ErrCode, FieldError, SignatureError, XmlError, config::ConfigError};

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
}

impl Error {
    /// Whether repeating the identical request may succeed: transport
    /// failures, retryable business codes, and login's `-1` (busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Business { err_code, .. } => err_code.is_retryable(),
            Error::Login { errcode, .. } => *errcode == -1,
            _ => false,
        }
    }

    /// Whether the request may have taken effect although no answer says so.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Error::Transport { .. } | Error::Xml(_))
    }

    /// Whether this is a verified, definite refusal: a signed business
    /// answer whose code is catalogued and says not to retry. Only such an
    /// answer proves a request had no effect; anything else (transport
    /// failures, unverifiable or unreadable answers, unknown or retryable
    /// codes) leaves the outcome unknown for money-moving calls.
    pub fn is_definite_refusal(&self) -> bool {
        matches!(
            self,
            Error::Business { err_code, .. }
                if !matches!(err_code, ErrCode::Other(_))
                    && err_code.advice() == crate::RetryAdvice::No
        )
    }

    /// The business code, if this is a business failure.
    pub fn err_code(&self) -> Option<&ErrCode> {
        match self {
            Error::Business { err_code, .. } => Some(err_code),
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
