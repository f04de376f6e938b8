//! Value types: amounts in fen, order numbers, trade types and states, Beijing time.

use std::{fmt, str::FromStr};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use rand::{Rng, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};

/// A field value that breaks the protocol's rules, found before sending or
/// while reading a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct FieldError {
    /// The field's wire name.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// An amount in fen (1/100 CNY). Amounts are integers on the wire and here;
/// floats never touch money.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fen(pub u64);

impl Fen {
    /// The number of fen.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Reads a wire amount: ASCII digits only (no sign, no decimal point).
    ///
    /// # Errors
    /// A [`FieldError`] naming `field`.
    pub fn parse_field(field: &'static str, s: &str) -> Result<Fen, FieldError> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new(
                field,
                format!("{s:?} is not an amount in fen"),
            ));
        }
        s.parse()
            .map(Fen)
            .map_err(|_| FieldError::new(field, "amount out of range"))
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A merchant order number: 1–32 characters of `[A-Za-z0-9_|*-]`.
///
/// ```
/// use wxpay_core::OutTradeNo;
/// assert!(OutTradeNo::new("20150806125346").is_ok());
/// assert!(OutTradeNo::new("订单1").is_err());
/// assert!(OutTradeNo::new("x".repeat(33)).is_err());
/// assert_eq!(OutTradeNo::generate().as_str().len(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OutTradeNo(String);

impl OutTradeNo {
    /// Validates an order number.
    ///
    /// # Errors
    /// A [`FieldError`] for `out_trade_no` when it is empty, longer than 32
    /// characters, or has a character outside `[A-Za-z0-9_|*-]`.
    pub fn new(s: impl Into<String>) -> Result<Self, FieldError> {
        let s = s.into();
        if s.is_empty() || s.len() > 32 {
            return Err(FieldError::new(
                "out_trade_no",
                format!("must be 1 to 32 characters, got {}", s.chars().count()),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*')))
        {
            return Err(FieldError::new(
                "out_trade_no",
                format!("character {c:?} is not allowed (use [A-Za-z0-9_|*-])"),
            ));
        }
        Ok(Self(s))
    }

    /// A fresh number: Beijing time `yyyyMMddHHmmss` plus 18 random
    /// alphanumerics (32 characters, sortable by creation time).
    pub fn generate() -> Self {
        Self(format_beijing(Utc::now()) + &random_alphanumeric(18))
    }

    /// The number as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutTradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OutTradeNo {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for OutTradeNo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutTradeNo::new(s).map_err(serde::de::Error::custom)
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident, fallback $fb:ident { $( $(#[$d:meta])* $v:ident = $w:literal, )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$d])* $v, )*
            /// A value this version does not know, kept verbatim.
            $fb(String),
        }

        impl $name {
            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$v => $w, )*
                    $name::$fb(s) => s,
                }
            }

            /// Reads a wire string; unknown values are kept in the fallback.
            pub fn parse(s: &str) -> Self {
                match s {
                    $( $w => $name::$v, )*
                    other => $name::$fb(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self::parse(&String::deserialize(d)?))
            }
        }
    };
}

wire_enum!(
    /// `trade_type`.
    TradeType, fallback Other {
        /// Mini-program and official-account payment (needs `openid`).
        Jsapi = "JSAPI",
        /// QR-code payment (needs `product_id`, returns `code_url`).
        Native = "NATIVE",
        /// In-app payment.
        App = "APP",
        /// H5 payment in a mobile browser.
        Mweb = "MWEB",
        /// Payment-code (scan the user); seen only in queries.
        Micropay = "MICROPAY",
    }
);

wire_enum!(
    /// orderquery's `trade_state`.
    TradeState, fallback Unknown {
        /// Paid.
        Success = "SUCCESS",
        /// Paid, then (partly) refunded.
        Refund = "REFUND",
        /// Not paid yet.
        NotPay = "NOTPAY",
        /// Closed; cannot be paid.
        Closed = "CLOSED",
        /// Reversed (micropay only).
        Revoked = "REVOKED",
        /// The user is paying (micropay only).
        UserPaying = "USERPAYING",
        /// Payment failed.
        PayError = "PAYERROR",
        /// Received, waiting for deduction.
        Accept = "ACCEPT",
    }
);

impl TradeState {
    /// Whether the money was taken (`SUCCESS` or `REFUND`).
    pub fn is_paid(&self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }

    /// Whether the state can still change by itself. Unknown states count
    /// as intermediate: query again.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            TradeState::NotPay
                | TradeState::UserPaying
                | TradeState::Accept
                | TradeState::Unknown(_)
        )
    }
}

wire_enum!(
    /// A refund's status (`refund_status`, `refund_status_$n`).
    RefundStatus, fallback Other {
        /// Refunded.
        Success = "SUCCESS",
        /// Refund closed.
        RefundClose = "REFUNDCLOSE",
        /// In progress.
        Processing = "PROCESSING",
        /// Abnormal; handle by hand in the merchant platform.
        Change = "CHANGE",
    }
);

/// Beijing time (UTC+8, no DST), the zone of every v2 timestamp.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Formats an instant as `yyyyMMddHHmmss` in Beijing time.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2014, 11, 11, 0, 0, 0).unwrap();
/// assert_eq!(wxpay_core::types::format_beijing(t), "20141111080000");
/// ```
pub fn format_beijing(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Reads `yyyyMMddHHmmss` (order times) or `yyyy-MM-dd HH:mm:ss` (refund
/// times) as Beijing time.
///
/// # Errors
/// A [`FieldError`] naming `field` when the text is neither form.
pub fn parse_beijing(field: &'static str, s: &str) -> Result<DateTime<FixedOffset>, FieldError> {
    let bad = || FieldError::new(field, format!("{s:?} is not a Beijing time"));
    // Byte positions of the 14 digits in either form (every notify has one
    // of these, so it is read by hand rather than through a format string).
    const COMPACT: [usize; 14] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
    const SPACED: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let b = s.as_bytes();
    let positions = match b.len() {
        14 => &COMPACT,
        19 if b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':' => {
            &SPACED
        }
        _ => return Err(bad()),
    };
    let mut digits = [0u32; 14];
    for (d, &at) in digits.iter_mut().zip(positions) {
        if !b[at].is_ascii_digit() {
            return Err(bad());
        }
        *d = u32::from(b[at] - b'0');
    }
    let n = |r: std::ops::Range<usize>| digits[r].iter().fold(0, |n, d| n * 10 + d);
    let naive = NaiveDate::from_ymd_opt(n(0..4) as i32, n(4..6), n(6..8))
        .and_then(|d| d.and_hms_opt(n(8..10), n(10..12), n(12..14)))
        .ok_or_else(bad)?;
    beijing()
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| FieldError::new(field, "ambiguous time"))
}

/// A random 32-character alphanumeric `nonce_str`.
pub fn nonce_str() -> String {
    random_alphanumeric(32)
}

fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_digits_only() {
        assert_eq!(Fen::parse_field("total_fee", "88"), Ok(Fen(88)));
        assert_eq!(Fen::parse_field("total_fee", "0"), Ok(Fen(0)));
        for bad in ["", "-1", "+1", "1.00", "0x10", " 1", "99999999999999999999"] {
            assert!(Fen::parse_field("total_fee", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn out_trade_no_rules() {
        for ok in ["a", "A-b_c|d*e", &"9".repeat(32)] {
            assert!(OutTradeNo::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a@b", "订单", "ａ", &"9".repeat(33)] {
            let e = OutTradeNo::new(bad).unwrap_err();
            assert_eq!(e.field, "out_trade_no");
        }
        let a = OutTradeNo::generate();
        let b = OutTradeNo::generate();
        assert_ne!(a, b);
        assert!(OutTradeNo::new(a.as_str()).is_ok());
    }

    #[test]
    fn states_keep_unknown_values() {
        assert_eq!(TradeState::parse("SUCCESS"), TradeState::Success);
        let s = TradeState::parse("SOMETHING_NEW");
        assert_eq!(s.as_str(), "SOMETHING_NEW");
        assert!(!s.is_final());
        assert!(TradeState::Closed.is_final());
        assert!(TradeState::Refund.is_paid());
        assert_eq!(TradeType::parse("NATIVE"), TradeType::Native);
        assert_eq!(
            serde_json::to_string(&TradeType::Jsapi).unwrap(),
            "\"JSAPI\""
        );
    }

    #[test]
    fn beijing_times() {
        let t = parse_beijing("time_end", "20150806125400").unwrap();
        assert_eq!(t.to_rfc3339(), "2015-08-06T12:54:00+08:00");
        let t = parse_beijing("success_time", "2015-08-06 13:00:00").unwrap();
        assert_eq!(
            t.with_timezone(&Utc).to_rfc3339(),
            "2015-08-06T05:00:00+00:00"
        );
        assert!(parse_beijing("time_end", "2015080612540").is_err());
        for bad in [
            "20151306125400",      // month 13
            "20150230125400",      // 30 February
            "20150806245400",      // hour 24
            "2015080612540x",      // not a digit
            "+0150806125400",      // a sign is not a digit
            "2015-08-06T13:00:00", // ISO separator
            "2015/08/06 13:00:00",
            "201508061254000",
            "",
        ] {
            let e = parse_beijing("time_end", bad).unwrap_err();
            assert_eq!(e.field, "time_end", "{bad:?}");
        }
        assert_eq!(
            parse_beijing("time_end", "20160229235959")
                .unwrap()
                .to_rfc3339(),
            "2016-02-29T23:59:59+08:00"
        );
        assert_eq!(nonce_str().len(), 32);
    }
}
