//! Bill amounts, read exactly: yuan with up to two decimals into [`Fen`],
//! and fees with up to five decimals (signed) into [`Fee`]. No floating
//! point anywhere.
//!
//! The grammar is strict and the same for every amount column:
//!
//! | text | yuan ([`parse_yuan`]) | fee ([`Fee::parse`]) |
//! |---|---|---|
//! | `29.90`, `5.5`, `5`, `0`, `0.00` | 2990, 550, 500, 0, 0 fen | likewise, in 1/100 000 yuan |
//! | `0.18000`, `-0.06000` | refused (3+ decimals, sign) | 18 000, −6 000 |
//! | `007.50` | 750 fen (leading zeros are unambiguous, so accepted) | accepted |
//! | `1.`, `.5`, `-` | refused: a point needs digits on both sides | refused |
//! | `1.230` | refused: more decimals than the type holds, even zeros | `1.230` is a fee of 123 000 |
//! | `+1`, `-1` | refused: no sign | `+1` refused, `-1` accepted |
//! | ` 1`, `1 `, `1e3`, `1,000`, `１`, `NaN` | refused | refused |
//! | past `u64` fen / `i64` units | refused (overflow) | refused (overflow) |
//!
//! ```
//! use wxpay_core::{Fen, bill::amount::{Fee, format_yuan, parse_yuan}};
//! assert_eq!(parse_yuan("29.90").unwrap(), Fen(2990));
//! assert_eq!(format_yuan(Fen(2990)), "29.90");
//! assert_eq!(Fee::parse("-0.06000").unwrap(), Fee(-6000));
//! assert_eq!(Fee::from_fen(Fen(18)).to_string(), "0.18000");
//! assert!(parse_yuan("1.234").is_err());
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::Fen;

/// Decimal places of a yuan amount (fen).
const YUAN_PLACES: u32 = 2;
/// Decimal places of a fee: 1/100 000 yuan.
const FEE_PLACES: u32 = 5;
/// At most this many characters of a refused text go into an error.
const SHOWN_CHARS: usize = 32;

/// What is wrong with an amount's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AmountProblem {
    /// The text is empty.
    Empty,
    /// A sign where none is allowed (`-` on a yuan amount, `+` anywhere).
    Sign,
    /// A character other than ASCII digits and one decimal point.
    NotANumber,
    /// A decimal point without digits on both sides (`1.`, `.5`), or a bare `-`.
    MissingDigits,
    /// More decimals than the amount can hold.
    TooManyDecimals {
        /// The most decimals allowed: 2 for yuan, 5 for a fee.
        max: u32,
    },
    /// Larger than the type holds (`u64` fen, `i64` fee units).
    Overflow,
}

impl fmt::Display for AmountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty"),
            Self::Sign => f.write_str("a sign is not allowed here"),
            Self::NotANumber => f.write_str("only ASCII digits and one decimal point"),
            Self::MissingDigits => f.write_str("digits missing around the decimal point"),
            Self::TooManyDecimals { max } => write!(f, "more than {max} decimals"),
            Self::Overflow => f.write_str("too large"),
        }
    }
}

/// An amount's text that [`parse_yuan`] or [`Fee::parse`] refused. It names
/// the text (amounts are not secret), cut to its first 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {what}: {problem}")]
pub struct AmountError {
    text: String,
    what: &'static str,
    problem: AmountProblem,
}

impl AmountError {
    fn new(text: &str, what: &'static str, problem: AmountProblem) -> Self {
        let text = match text.char_indices().nth(SHOWN_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
        Self {
            text,
            what,
            problem,
        }
    }

    /// The refused text (its first 32 characters, then `…` if it was longer).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What is wrong with it.
    pub fn problem(&self) -> AmountProblem {
        self.problem
    }
}

/// Reads ASCII digits with an optional point and at most `places` decimals,
/// as an integer count of 10^-`places` units.
fn read_unsigned(s: &str, places: u32) -> Result<u64, AmountProblem> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(AmountProblem::Empty);
    }
    // One pass: the digits accumulate (an overflow is reported only once
    // the text is known to be a number), the point is remembered.
    let mut units: u64 = 0;
    let mut overflow = false;
    let mut point = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                match units
                    .checked_mul(10)
                    .and_then(|u| u.checked_add(u64::from(c - b'0')))
                {
                    Some(u) => units = u,
                    None => overflow = true,
                }
            }
            b'.' if point.is_none() => point = Some(i),
            b'+' | b'-' if i == 0 => return Err(AmountProblem::Sign),
            _ => return Err(AmountProblem::NotANumber),
        }
    }
    let decimals = point.map_or(0, |p| b.len() - p - 1);
    if point == Some(0) || (point.is_some() && decimals == 0) {
        return Err(AmountProblem::MissingDigits);
    }
    if decimals > places as usize {
        return Err(AmountProblem::TooManyDecimals { max: places });
    }
    if overflow {
        return Err(AmountProblem::Overflow);
    }
    // `decimals <= places`, checked above.
    units
        .checked_mul(10u64.pow(places - decimals as u32))
        .ok_or(AmountProblem::Overflow)
}

/// Reads a bill amount in yuan (`"29.90"`) as fen: ASCII digits, optionally
/// a point and one or two decimals. See the [module docs](self) for the
/// whole grammar.
///
/// # Errors
/// An [`AmountError`] naming the text: empty, a sign, anything but digits
/// and one point, a point without digits on both sides, three or more
/// decimals, or more than `u64::MAX` fen.
pub fn parse_yuan(s: &str) -> Result<Fen, AmountError> {
    read_unsigned(s, YUAN_PLACES)
        .map(Fen)
        .map_err(|p| AmountError::new(s, "an amount in yuan", p))
}

/// Writes fen as yuan with exactly two decimals: `Fen(2990)` → `"29.90"`,
/// `Fen(5)` → `"0.05"`. [`parse_yuan`] reads it back to the same value.
pub fn format_yuan(f: Fen) -> String {
    format!("{}.{:02}", f.0 / 100, f.0 % 100)
}

/// A fee or other bill figure with up to five decimals of a yuan, signed
/// (refund rows carry negative fees): units of 1/100 000 yuan, so one fen
/// is 1 000.
///
/// Displays with exactly five decimals (`"0.18000"`, `"-0.06000"`), the way
/// bills write it; serializes as the integer count of units.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fee(pub i64);

impl Fee {
    /// No fee.
    pub const ZERO: Fee = Fee(0);

    /// Units of a fee in one fen.
    pub const PER_FEN: i64 = 1000;

    /// Reads a bill fee (`"0.18000"`, `"-0.06000"`, `"0"`): an optional
    /// leading `-`, ASCII digits, optionally a point and one to five
    /// decimals.
    ///
    /// # Errors
    /// An [`AmountError`] naming the text: empty, a `+` (or a `-` anywhere
    /// but first), anything but digits and one point, a point without
    /// digits on both sides, six or more decimals, or outside `i64` units.
    pub fn parse(s: &str) -> Result<Fee, AmountError> {
        let err = |p| AmountError::new(s, "a fee", p);
        let (negative, rest) = match s.strip_prefix('-') {
            Some("") => return Err(err(AmountProblem::MissingDigits)),
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let units = read_unsigned(rest, FEE_PLACES).map_err(|p| match p {
            // "--1", "-+1": the second sign is not a number.
            AmountProblem::Sign if negative => err(AmountProblem::NotANumber),
            p => err(p),
        })?;
        let signed = if negative {
            0i64.checked_sub_unsigned(units)
        } else {
            i64::try_from(units).ok()
        };
        signed.map(Fee).ok_or_else(|| err(AmountProblem::Overflow))
    }

    /// A whole number of fen as a fee (× 1 000). Saturates at `i64::MAX`
    /// units, which only an amount above 92 trillion yuan reaches; use
    /// [`Fee::checked_from_fen`] to be told.
    pub fn from_fen(f: Fen) -> Fee {
        Fee::checked_from_fen(f).unwrap_or(Fee(i64::MAX))
    }

    /// A whole number of fen as a fee, or `None` when it does not fit.
    pub fn checked_from_fen(f: Fen) -> Option<Fee> {
        i64::try_from(f.0)
            .ok()
            .and_then(|n| n.checked_mul(Fee::PER_FEN))
            .map(Fee)
    }

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Fee) -> Option<Fee> {
        self.0.checked_add(other.0).map(Fee)
    }

    /// The difference, or `None` on overflow.
    pub fn checked_sub(self, other: Fee) -> Option<Fee> {
        self.0.checked_sub(other.0).map(Fee)
    }
}

impl fmt::Display for Fee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let m = self.0.unsigned_abs();
        let per_yuan = 10u64.pow(FEE_PLACES);
        write!(f, "{sign}{}.{:05}", m / per_yuan, m % per_yuan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (64-bit LCG, top bits).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0
        }
    }

    #[test]
    fn yuan_accepted_forms() {
        for (text, fen) in [
            ("29.90", 2990),
            ("9.90", 990),
            ("0", 0),
            ("0.00", 0),
            ("0.0", 0),
            ("5", 500),
            ("5.5", 550),
            ("0.01", 1),
            ("0.1", 10),
            ("100", 10000),
            ("007.50", 750),
            ("00", 0),
            ("184467440737095516.15", u64::MAX),
        ] {
            assert_eq!(parse_yuan(text), Ok(Fen(fen)), "{text}");
        }
    }

    #[test]
    fn yuan_refusals_name_text_and_problem() {
        use AmountProblem::*;
        for (text, problem) in [
            ("", Empty),
            ("1.234", TooManyDecimals { max: 2 }),
            ("1.230", TooManyDecimals { max: 2 }),
            ("0.000", TooManyDecimals { max: 2 }),
            ("-1", Sign),
            ("+1", Sign),
            ("-0.00", Sign),
            ("1e3", NotANumber),
            ("1E3", NotANumber),
            (" 1", NotANumber),
            ("1 ", NotANumber),
            ("1.2.3", NotANumber),
            ("1,000", NotANumber),
            ("1..2", NotANumber),
            ("0x10", NotANumber),
            ("NaN", NotANumber),
            ("inf", NotANumber),
            ("１", NotANumber),
            ("٣", NotANumber),
            ("1_000", NotANumber),
            ("1.", MissingDigits),
            (".5", MissingDigits),
            (".", MissingDigits),
            ("184467440737095516.16", Overflow),
            ("184467440737095517", Overflow),
            ("99999999999999999999999", Overflow),
        ] {
            let e = parse_yuan(text).unwrap_err();
            assert_eq!(e.problem(), problem, "{text:?}");
            assert_eq!(e.text(), text);
            let shown = e.to_string();
            assert!(shown.contains(&format!("{text:?}")), "{shown}");
            assert!(shown.contains("yuan"), "{shown}");
        }
    }

    #[test]
    fn long_refused_text_is_cut_in_the_error() {
        let long = "9".repeat(200) + "x";
        let e = parse_yuan(&long).unwrap_err();
        assert_eq!(e.text(), format!("{}…", "9".repeat(32)));
        assert!(e.to_string().len() < 120, "{e}");
        // Cut on a character boundary.
        let cjk = "金".repeat(40);
        let e = parse_yuan(&cjk).unwrap_err();
        assert_eq!(e.text(), format!("{}…", "金".repeat(32)));
    }

    #[test]
    fn yuan_round_trips() {
        // Every amount up to 1 000 yuan both ways.
        for n in 0..=100_000u64 {
            let text = format_yuan(Fen(n));
            assert_eq!(parse_yuan(&text), Ok(Fen(n)), "{text}");
            let (int, frac) = text.split_once('.').unwrap();
            assert_eq!(frac.len(), 2);
            assert_eq!(int, (n / 100).to_string());
        }
        // Spread over the whole range, and the edges.
        let mut rng = Lcg(7);
        let edges = [
            u64::MAX,
            u64::MAX - 1,
            u64::MAX / 100 * 100,
            1 << 53,
            (1 << 53) + 1,
        ];
        for n in (0..20_000)
            .map(|_| rng.next() >> (rng.next() % 64))
            .chain(edges)
        {
            let text = format_yuan(Fen(n));
            assert_eq!(parse_yuan(&text), Ok(Fen(n)), "{text}");
            assert_eq!(format_yuan(parse_yuan(&text).unwrap()), text);
        }
        // Canonical texts come back unchanged; others normalise.
        for text in ["0.00", "0.05", "29.90", "1234567.89"] {
            assert_eq!(format_yuan(parse_yuan(text).unwrap()), text);
        }
        for (text, canonical) in [("5", "5.00"), ("5.5", "5.50"), ("007.5", "7.50")] {
            assert_eq!(format_yuan(parse_yuan(text).unwrap()), canonical);
        }
    }

    #[test]
    fn fees_read_signed_with_five_decimals() {
        for (text, units) in [
            ("0.18000", 18_000),
            ("-0.06000", -6_000),
            ("0.24000", 24_000),
            ("0.01000", 1_000),
            ("0", 0),
            ("-0", 0),
            ("-0.00000", 0),
            ("0.6", 60_000),
            ("1.230", 123_000),
            ("12.34567", 1_234_567),
            ("-12.34567", -1_234_567),
            ("92233720368547.75807", i64::MAX),
            ("-92233720368547.75808", i64::MIN),
        ] {
            assert_eq!(Fee::parse(text), Ok(Fee(units)), "{text}");
        }
        use AmountProblem::*;
        for (text, problem) in [
            ("", Empty),
            ("-", MissingDigits),
            ("+1", Sign),
            ("--1", NotANumber),
            ("-+1", NotANumber),
            ("1-", NotANumber),
            ("0.000001", TooManyDecimals { max: 5 }),
            ("-0.000001", TooManyDecimals { max: 5 }),
            ("1e-3", NotANumber),
            (" -1", NotANumber),
            ("-.5", MissingDigits),
            ("-1.", MissingDigits),
            ("92233720368547.75808", Overflow),
            ("-92233720368547.75809", Overflow),
            ("184467440737095.51616", Overflow),
        ] {
            let e = Fee::parse(text).unwrap_err();
            assert_eq!(e.problem(), problem, "{text:?}");
            assert!(e.to_string().contains("a fee"), "{e}");
        }
    }

    #[test]
    fn fees_display_as_bills_write_them_and_round_trip() {
        assert_eq!(Fee(18_000).to_string(), "0.18000");
        assert_eq!(Fee(-6_000).to_string(), "-0.06000");
        assert_eq!(Fee(0).to_string(), "0.00000");
        assert_eq!(Fee(-1).to_string(), "-0.00001");
        assert_eq!(Fee(1_234_567).to_string(), "12.34567");
        assert_eq!(Fee(i64::MIN).to_string(), "-92233720368547.75808");
        assert_eq!(Fee(i64::MAX).to_string(), "92233720368547.75807");
        let mut rng = Lcg(11);
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -1,
            0,
            1,
            -100_000,
            100_000,
        ];
        for n in (0..20_000)
            .map(|_| (rng.next() as i64) >> (rng.next() % 64))
            .chain(edges)
        {
            let text = Fee(n).to_string();
            assert_eq!(Fee::parse(&text), Ok(Fee(n)), "{text}");
        }
    }

    #[test]
    fn fees_from_fen() {
        assert_eq!(Fee::from_fen(Fen(18)), Fee(18_000));
        assert_eq!(Fee::from_fen(Fen(0)), Fee::ZERO);
        assert_eq!(Fee::from_fen(Fen(18)).to_string(), "0.18000");
        let largest = i64::MAX as u64 / 1000;
        assert_eq!(
            Fee::checked_from_fen(Fen(largest)),
            Some(Fee(largest as i64 * 1000))
        );
        assert_eq!(Fee::checked_from_fen(Fen(largest + 1)), None);
        assert_eq!(Fee::from_fen(Fen(u64::MAX)), Fee(i64::MAX));
        assert_eq!(Fee(1).checked_add(Fee(-3)), Some(Fee(-2)));
        assert_eq!(Fee(i64::MAX).checked_add(Fee(1)), None);
        assert_eq!(Fee(i64::MIN).checked_sub(Fee(1)), None);
        // A fee in fen and its yuan text agree.
        for n in [0u64, 1, 99, 2990, 123_456] {
            assert_eq!(
                Fee::parse(&format_yuan(Fen(n))),
                Ok(Fee::from_fen(Fen(n))),
                "{n}"
            );
        }
    }

    #[test]
    fn fees_serialize_as_units() {
        assert_eq!(serde_json::to_string(&Fee(-6000)).unwrap(), "-6000");
        assert_eq!(serde_json::from_str::<Fee>("18000").unwrap(), Fee(18000));
    }
}
