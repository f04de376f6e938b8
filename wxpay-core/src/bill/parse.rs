//! The bill file format, read as a stream of typed events with bounded
//! memory (`wxpay-v3.md` §12.4, `wxpay-v2.md` §10).
//!
//! A bill is a header line of column names, data lines whose fields each
//! begin with a back-tick and are joined by `,`, then a totals header line
//! (`总交易单数,…` or `资金流水总笔数,…`) and one totals data line. The kind
//! of bill (trade or fund flow) and where each value sits come from the
//! header's names, never from positions: other `bill_type`s have other
//! columns, and columns this version does not know are kept in each row's
//! `extra`.
//!
//! [`BillParser`] takes the bytes in chunks of any size as a download
//! delivers them and calls back with one [`BillEvent`] per row, per totals
//! line and per line it cannot read ([`BillEvent::Malformed`], with the
//! line's number and why). A bad line never stops the bill: the rest is
//! still read. Its memory is one line at most ([`MAX_LINE`]) and does not
//! grow with the number of lines; a longer line is reported and skipped
//! without being held.
//!
//! ```
//! use wxpay_core::{Fen, bill::{amount::Fee, parse::{BillEvent, BillParser}}};
//!
//! let bill = "交易时间,微信订单号,商户订单号,交易状态,应结订单金额,商品名称,手续费\r\n\
//!             `2026-01-01 12:01:30,`4200002026010112000000000001,`A1,`SUCCESS,`29.90,`会员月卡,`0.18000\r\n\
//!             `2026-01-01 12:05:00,`4200002026010112000000000002,`A2,`SUCCESS,`2x.00,`咖啡,`0.06000\r\n\
//!             总交易单数,应结订单总金额,手续费总金额\r\n\
//!             `2,`39.80,`0.24000\r\n";
//! let mut events = Vec::new();
//! let mut parser = BillParser::new();
//! for chunk in bill.as_bytes().chunks(7) {
//!     parser.push(chunk, &mut |e| events.push(e));
//! }
//! let summary = parser.finish(&mut |e| events.push(e));
//!
//! let BillEvent::Trade(row) = &events[0] else { panic!() };
//! assert_eq!((row.out_trade_no.as_str(), row.settlement_fee, row.fee), ("A1", Fen(2990), Fee(18_000)));
//! let BillEvent::Malformed(bad) = &events[1] else { panic!() };
//! assert_eq!(bad.line, 3);
//! assert!(bad.reason.contains("应结订单金额"));
//! let BillEvent::TradeTotals(totals) = &events[2] else { panic!() };
//! assert_eq!((totals.count, totals.settlement_total), (2, Fen(3980)));
//! assert_eq!((summary.rows, summary.malformed, summary.totals), (1, 1, true));
//! ```
//!
//! What counts as a line: bytes up to a line feed, a carriage return before
//! it dropped (CRLF or LF bills); the last line may lack one. A UTF-8 byte
//! order mark at the start is skipped; empty lines are skipped (but keep
//! their number). Line numbers are 1-based and count every line, empty ones
//! included, so they match an editor's.
//!
//! Splitting a data line: on `,` + back-tick only, never on a bare comma
//! (a product name may hold commas and back-ticks). When a line has more
//! fields than the header, a free-text value held `,` + back-tick itself:
//! the surplus pieces are joined back into `商品名称` (or `商户数据包` when
//! there is no `商品名称`) of a trade bill, `备注` of a fund-flow bill. The
//! format is ambiguous there — had two free-text values in one row held it,
//! the whole surplus lands in the first — and the bill gives nothing better
//! to go on. A line with fewer fields than the header is malformed.
//!
//! A bill without a totals line (a download cut short, say) shows as
//! [`ParseSummary::totals`] `false`: check it before trusting the rows.

use std::io::{self, Read};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::amount::{Fee, parse_yuan};
use crate::types::{Fen, beijing};

/// The longest line the parser reads: 65 536 bytes before its line feed.
/// A longer line is reported as [`BillEvent::Malformed`] and skipped up to
/// its line feed without being held (the longest real bill line is a few
/// hundred bytes; a product name is at most 128 characters).
pub const MAX_LINE: usize = 64 * 1024;

/// One thing read from a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
// Events go to the callback one at a time and the parser holds none: a
// `Box` per row would be an allocation per row for nothing.
#[allow(clippy::large_enum_variant)]
pub enum BillEvent {
    /// A row of a trade bill.
    Trade(TradeRow),
    /// The totals line of a trade bill.
    TradeTotals(TradeTotals),
    /// A row of a fund-flow bill.
    FundFlow(FundFlowRow),
    /// The totals line of a fund-flow bill.
    FundFlowTotals(FundFlowTotals),
    /// A line that could not be read; the lines after it still are.
    Malformed(LineError),
}

impl BillEvent {
    /// The 1-based number of the line the event comes from.
    pub fn line(&self) -> u64 {
        match self {
            Self::Trade(r) => r.line,
            Self::TradeTotals(t) => t.line,
            Self::FundFlow(r) => r.line,
            Self::FundFlowTotals(t) => t.line,
            Self::Malformed(e) => e.line,
        }
    }
}

/// Why a line of a bill could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// The line's 1-based number.
    pub line: u64,
    /// What is wrong: the column and the refused value (amounts and times
    /// only, cut short), or the field counts; never the whole line.
    pub reason: String,
}

/// A row of a trade bill (`tradebill` / `downloadbill`). Text columns are
/// as written; a known column absent from the header reads as `None`, an
/// empty string or zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRow {
    /// The line's 1-based number.
    pub line: u64,
    /// 交易时间, Beijing time as in the file (`yyyy-MM-dd HH:mm:ss`); see
    /// [`TradeRow::trade_time_utc`].
    pub trade_time: NaiveDateTime,
    /// 公众账号ID.
    pub appid: String,
    /// 商户号.
    pub mch_id: String,
    /// 特约商户号; `0` (direct merchants) or empty reads as `None`.
    pub sub_mch_id: Option<String>,
    /// 设备号.
    pub device_info: Option<String>,
    /// 微信订单号.
    pub transaction_id: String,
    /// 商户订单号.
    pub out_trade_no: String,
    /// 用户标识 (openid).
    pub openid: Option<String>,
    /// 交易类型 (`JSAPI`, `NATIVE`, …).
    pub trade_type: String,
    /// 交易状态: `SUCCESS`, `REFUND`, `REVOKED`, … as written.
    pub trade_state: String,
    /// 付款银行.
    pub bank_type: Option<String>,
    /// 货币种类.
    pub currency: String,
    /// 应结订单金额.
    pub settlement_fee: Fen,
    /// 代金券金额.
    pub coupon_fee: Fen,
    /// 微信退款单号; `0` or empty reads as `None`.
    pub refund_id: Option<String>,
    /// 商户退款单号; `0` or empty reads as `None`.
    pub out_refund_no: Option<String>,
    /// 退款金额.
    pub refund_fee: Fen,
    /// 充值券退款金额.
    pub recharge_refund_fee: Fen,
    /// 退款类型.
    pub refund_type: Option<String>,
    /// 退款状态.
    pub refund_status: Option<String>,
    /// 商品名称.
    pub body: String,
    /// 商户数据包.
    pub attach: Option<String>,
    /// 手续费 (negative on refund rows: the fee given back).
    pub fee: Fee,
    /// 费率, e.g. `0.60%`.
    pub rate: Option<String>,
    /// 订单金额 (absent in older bills; empty reads as `None`).
    pub total_fee: Option<Fen>,
    /// 申请退款金额 (absent in older bills; empty reads as `None`).
    pub applied_refund_fee: Option<Fen>,
    /// 费率备注.
    pub rate_note: Option<String>,
    /// Columns this version does not know: (header name, value), in order.
    pub extra: Vec<(String, String)>,
}

impl TradeRow {
    /// [`TradeRow::trade_time`] as an instant (the file's times are Beijing
    /// time, UTC+8).
    pub fn trade_time_utc(&self) -> DateTime<Utc> {
        beijing_to_utc(self.trade_time)
    }

    /// Whether the row is a refund: 交易状态 `REFUND`, or a refund number
    /// present.
    pub fn is_refund(&self) -> bool {
        self.trade_state == "REFUND" || self.refund_id.is_some() || self.out_refund_no.is_some()
    }
}

/// The totals line of a trade bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeTotals {
    /// The totals data line's 1-based number.
    pub line: u64,
    /// 总交易单数.
    pub count: u64,
    /// 应结订单总金额.
    pub settlement_total: Fen,
    /// 退款总金额.
    pub refund_total: Fen,
    /// 充值券退款总金额.
    pub recharge_refund_total: Fen,
    /// 手续费总金额.
    pub fee_total: Fee,
    /// 订单总金额 (absent in older bills).
    pub order_total: Option<Fen>,
    /// 申请退款总金额 (absent in older bills).
    pub applied_refund_total: Option<Fen>,
}

/// A row of a fund-flow bill (`fundflowbill`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundFlowRow {
    /// The line's 1-based number.
    pub line: u64,
    /// 记账时间, Beijing time as in the file; see [`FundFlowRow::time_utc`].
    pub time: NaiveDateTime,
    /// 微信支付业务单号.
    pub business_no: String,
    /// 资金流水单号.
    pub flow_no: String,
    /// 业务名称.
    pub business_name: String,
    /// 业务类型.
    pub business_type: String,
    /// 收支类型.
    pub direction: FlowDirection,
    /// 收支金额(元) (the header may write `（元）`).
    pub amount: Fen,
    /// 账户结余(元).
    pub balance: Fen,
    /// 资金变更提交申请人.
    pub applicant: String,
    /// 备注.
    pub note: Option<String>,
    /// 业务凭证号.
    pub voucher_no: Option<String>,
    /// Columns this version does not know: (header name, value), in order.
    pub extra: Vec<(String, String)>,
}

impl FundFlowRow {
    /// [`FundFlowRow::time`] as an instant (Beijing time, UTC+8).
    pub fn time_utc(&self) -> DateTime<Utc> {
        beijing_to_utc(self.time)
    }
}

/// 收支类型 of a fund flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowDirection {
    /// 收入: money in.
    In,
    /// 支出: money out.
    Out,
}

/// The totals line of a fund-flow bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundFlowTotals {
    /// The totals data line's 1-based number.
    pub line: u64,
    /// 资金流水总笔数.
    pub count: u64,
    /// 收入笔数.
    pub income_count: u64,
    /// 收入金额.
    pub income: Fen,
    /// 支出笔数.
    pub expense_count: u64,
    /// 支出金额.
    pub expense: Fen,
}

/// What a whole bill gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ParseSummary {
    /// Lines read (every line, empty and malformed ones included).
    pub lines: u64,
    /// Rows given ([`BillEvent::Trade`] and [`BillEvent::FundFlow`]).
    pub rows: u64,
    /// [`BillEvent::Malformed`] given.
    pub malformed: u64,
    /// Whether a totals line was read. `false` means the bill is not whole
    /// (or its totals line was malformed): do not reconcile from it alone.
    pub totals: bool,
}

/// The kind of a bill, told by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BillKind {
    /// A trade bill: the header has `商户订单号`.
    Trade,
    /// A fund-flow bill: the header has `资金流水单号` (and no `商户订单号`).
    FundFlow,
}

// ---------------------------------------------------------------------------
// Columns

const TRADE_COLUMNS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];
const T_TIME: usize = 0;
const T_APPID: usize = 1;
const T_MCH_ID: usize = 2;
const T_SUB_MCH_ID: usize = 3;
const T_DEVICE: usize = 4;
const T_TRANSACTION_ID: usize = 5;
const T_OUT_TRADE_NO: usize = 6;
const T_OPENID: usize = 7;
const T_TRADE_TYPE: usize = 8;
const T_TRADE_STATE: usize = 9;
const T_BANK: usize = 10;
const T_CURRENCY: usize = 11;
const T_SETTLEMENT: usize = 12;
const T_COUPON: usize = 13;
const T_REFUND_ID: usize = 14;
const T_OUT_REFUND_NO: usize = 15;
const T_REFUND_FEE: usize = 16;
const T_RECHARGE_REFUND: usize = 17;
const T_REFUND_TYPE: usize = 18;
const T_REFUND_STATUS: usize = 19;
const T_BODY: usize = 20;
const T_ATTACH: usize = 21;
const T_FEE: usize = 22;
const T_RATE: usize = 23;
const T_TOTAL_FEE: usize = 24;
const T_APPLIED_REFUND: usize = 25;
const T_RATE_NOTE: usize = 26;

const FUND_COLUMNS: [&str; 11] = [
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额(元)",
    "账户结余(元)",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
];
const F_TIME: usize = 0;
const F_BUSINESS_NO: usize = 1;
const F_FLOW_NO: usize = 2;
const F_BUSINESS_NAME: usize = 3;
const F_BUSINESS_TYPE: usize = 4;
const F_DIRECTION: usize = 5;
const F_AMOUNT: usize = 6;
const F_BALANCE: usize = 7;
const F_APPLICANT: usize = 8;
const F_NOTE: usize = 9;
const F_VOUCHER: usize = 10;

const TRADE_TOTALS: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];
const TT_COUNT: usize = 0;
const TT_SETTLEMENT: usize = 1;
const TT_REFUND: usize = 2;
const TT_RECHARGE_REFUND: usize = 3;
const TT_FEE: usize = 4;
const TT_ORDER: usize = 5;
const TT_APPLIED_REFUND: usize = 6;

const FUND_TOTALS: [&str; 5] = [
    "资金流水总笔数",
    "收入笔数",
    "收入金额",
    "支出笔数",
    "支出金额",
];
const FT_COUNT: usize = 0;
const FT_INCOME_COUNT: usize = 1;
const FT_INCOME: usize = 2;
const FT_EXPENSE_COUNT: usize = 3;
const FT_EXPENSE: usize = 4;

/// The most known columns of any table (the trade bill's).
const MAX_KNOWN: usize = TRADE_COLUMNS.len();

/// Values of a line by known column.
type Values<'a> = [Option<&'a str>; MAX_KNOWN];

/// A header's columns matched against a table of known names.
#[derive(Debug, Clone)]
struct Layout {
    table: &'static [&'static str],
    /// Per header column: the known column it is, or `None` (kept in `extra`).
    slots: Vec<Option<u8>>,
    /// Header names as written (for `extra`).
    names: Vec<String>,
    /// The header column that takes a line's surplus pieces.
    free_text: Option<usize>,
}

impl Layout {
    /// Matches header names (`,`-separated) against `table`. A name seen
    /// twice counts once; its repeats are kept in `extra`.
    fn new(header: &str, table: &'static [&'static str]) -> Layout {
        let names: Vec<String> = header
            .split(',')
            .map(|n| clean_name(n).to_owned())
            .collect();
        let mut seen = [false; MAX_KNOWN];
        let slots = names
            .iter()
            .map(|n| {
                let i = known_index(table, n)?;
                (!std::mem::replace(&mut seen[i], true)).then_some(i as u8)
            })
            .collect();
        Layout {
            table,
            slots,
            names,
            free_text: None,
        }
    }

    /// The header column holding known column `known`.
    fn column_of(&self, known: usize) -> Option<usize> {
        self.slots.iter().position(|s| *s == Some(known as u8))
    }

    fn has(&self, known: usize) -> bool {
        self.column_of(known).is_some()
    }

    /// The first of `required` the header lacks.
    fn missing(&self, required: &[usize]) -> Option<&'static str> {
        required
            .iter()
            .find(|&&k| !self.has(k))
            .map(|&k| self.table[k])
    }

    /// Splits a data line (fields begin with a back-tick, joined by `,`)
    /// into `values` by known column; unknown columns go to `extra`.
    fn split<'a>(
        &self,
        line: &'a str,
        values: &mut Values<'a>,
        mut extra: impl FnMut(&str, &'a str),
    ) -> Result<(), String> {
        let Some(body) = line.strip_prefix('`') else {
            return Err("not a data line: its first field does not begin with a back-tick".into());
        };
        let b = body.as_bytes();
        let width = self.slots.len();
        // One pass finds the separators, holding the first ones' positions.
        let mut held = [0usize; SEPARATORS_HELD];
        let mut separators = 0;
        let mut at = 0;
        while let Some(i) = next_separator(b, at) {
            if let Some(slot) = held.get_mut(separators) {
                *slot = i;
            }
            separators += 1;
            at = i + 2;
        }
        let fields = separators + 1;
        let surplus = match fields.checked_sub(width) {
            None => return Err(format!("{fields} fields where the header has {width}")),
            Some(0) => 0,
            Some(s) if self.free_text.is_some() => s,
            Some(_) => {
                return Err(format!(
                    "{fields} fields where the header has {width}, and no free-text column to hold a `,` + back-tick"
                ));
            }
        };
        let mut put = |col: usize, value: &'a str| match self.slots[col] {
            Some(k) => values[usize::from(k)] = Some(value),
            None => extra(&self.names[col], value),
        };
        // `,` and back-tick are ASCII: the cuts below are character boundaries.
        if separators <= SEPARATORS_HELD {
            // Piece `p` runs from after separator `p - 1` to separator `p`.
            let start = |p: usize| if p == 0 { 0 } else { held[p - 1] + 2 };
            let end = |p: usize| if p == separators { b.len() } else { held[p] };
            let mut piece = 0;
            for col in 0..width {
                let last = if Some(col) == self.free_text {
                    piece + surplus
                } else {
                    piece
                };
                put(col, &body[start(piece)..end(last)]);
                piece = last + 1;
            }
        } else {
            // A very wide line: search again column by column.
            let mut start = 0;
            for col in 0..width {
                let mut end = next_separator(b, start);
                if Some(col) == self.free_text {
                    for _ in 0..surplus {
                        end = end.and_then(|i| next_separator(b, i + 2));
                    }
                }
                let end = end.unwrap_or(b.len());
                put(col, &body[start..end]);
                start = end + 2;
            }
        }
        Ok(())
    }
}

/// Separator positions [`Layout::split`] holds from its first pass (a line
/// with more fields is split by searching again).
const SEPARATORS_HELD: usize = 63;

/// Position of the next `,` + back-tick at or after `from`.
fn next_separator(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from + 1;
    while at < b.len() {
        let tick = at + find_byte(&b[at..], b'`')?;
        if b[tick - 1] == b',' {
            return Some(tick - 1);
        }
        at = tick + 1;
    }
    None
}

/// Position of the first `needle` in `hay`, eight bytes at a time (the
/// line feed and back-tick searches are most of a bill's bytes). Public for
/// the parser's benchmark floor only.
#[doc(hidden)]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut words = hay.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ pattern;
        // The lowest high bit set marks the first zero byte of `x`, i.e. the
        // first `needle` (bits above it may be set falsely by the borrow).
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(base + (zero.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// A header name without surrounding spaces or a stray back-tick.
fn clean_name(name: &str) -> &str {
    let name = name.trim();
    name.strip_prefix('`').unwrap_or(name)
}

/// Index of `name` in `table`, full-width parentheses read as ASCII ones
/// (`收支金额（元）` = `收支金额(元)`).
fn known_index(table: &[&str], name: &str) -> Option<usize> {
    if name.contains(['（', '）']) {
        let ascii = name.replace('（', "(").replace('）', ")");
        table.iter().position(|k| *k == ascii)
    } else {
        table.iter().position(|k| *k == name)
    }
}

// ---------------------------------------------------------------------------
// Values

fn beijing_to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    match beijing().from_local_datetime(&t).single() {
        Some(t) => t.with_timezone(&Utc),
        // A fixed offset maps every local time to exactly one instant.
        None => unreachable!("UTC+8 has no gaps or folds"),
    }
}

/// The first 32 characters of a refused value, for a message.
fn shown(s: &str) -> String {
    match s.char_indices().nth(32) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

fn text(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

/// Empty reads as `None`.
fn opt(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Empty or `0` reads as `None`.
fn opt_number(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty() && *s != "0").map(str::to_owned)
}

/// An amount; a column the header lacks is zero.
fn yuan(column: &str, v: Option<&str>) -> Result<Fen, String> {
    v.map_or(Ok(Fen(0)), |s| {
        parse_yuan(s).map_err(|e| format!("{column}: {e}"))
    })
}

/// An amount; absent or empty is `None`.
fn opt_yuan(column: &str, v: Option<&str>) -> Result<Option<Fen>, String> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => parse_yuan(s)
            .map(Some)
            .map_err(|e| format!("{column}: {e}")),
    }
}

/// A fee; a column the header lacks is zero.
fn fee(column: &str, v: Option<&str>) -> Result<Fee, String> {
    v.map_or(Ok(Fee::ZERO), |s| {
        Fee::parse(s).map_err(|e| format!("{column}: {e}"))
    })
}

/// A count of rows; a column the header lacks is zero.
fn count(column: &str, v: Option<&str>) -> Result<u64, String> {
    match v {
        None => Ok(0),
        Some(s) if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map_err(|_| format!("{column}: {} is too large", shown(s))),
        Some(s) => Err(format!("{column}: {} is not a count", shown(s))),
    }
}

/// `yyyy-MM-dd HH:mm:ss` exactly.
fn time(column: &str, v: Option<&str>) -> Result<NaiveDateTime, String> {
    let s = v.ok_or_else(|| format!("{column}: missing"))?;
    parse_time(s)
        .ok_or_else(|| format!("{column}: {} is not a time (yyyy-MM-dd HH:mm:ss)", shown(s)))
}

fn parse_time(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?.and_hms_opt(
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    )
}

fn trade_row(line: u64, v: &Values<'_>, extra: Vec<(String, String)>) -> Result<TradeRow, String> {
    let c = &TRADE_COLUMNS;
    Ok(TradeRow {
        line,
        trade_time: time(c[T_TIME], v[T_TIME])?,
        settlement_fee: yuan(c[T_SETTLEMENT], v[T_SETTLEMENT])?,
        coupon_fee: yuan(c[T_COUPON], v[T_COUPON])?,
        refund_fee: yuan(c[T_REFUND_FEE], v[T_REFUND_FEE])?,
        recharge_refund_fee: yuan(c[T_RECHARGE_REFUND], v[T_RECHARGE_REFUND])?,
        fee: fee(c[T_FEE], v[T_FEE])?,
        total_fee: opt_yuan(c[T_TOTAL_FEE], v[T_TOTAL_FEE])?,
        applied_refund_fee: opt_yuan(c[T_APPLIED_REFUND], v[T_APPLIED_REFUND])?,
        appid: text(v[T_APPID]),
        mch_id: text(v[T_MCH_ID]),
        sub_mch_id: opt_number(v[T_SUB_MCH_ID]),
        device_info: opt(v[T_DEVICE]),
        transaction_id: text(v[T_TRANSACTION_ID]),
        out_trade_no: text(v[T_OUT_TRADE_NO]),
        openid: opt(v[T_OPENID]),
        trade_type: text(v[T_TRADE_TYPE]),
        trade_state: text(v[T_TRADE_STATE]),
        bank_type: opt(v[T_BANK]),
        currency: text(v[T_CURRENCY]),
        refund_id: opt_number(v[T_REFUND_ID]),
        out_refund_no: opt_number(v[T_OUT_REFUND_NO]),
        refund_type: opt(v[T_REFUND_TYPE]),
        refund_status: opt(v[T_REFUND_STATUS]),
        body: text(v[T_BODY]),
        attach: opt(v[T_ATTACH]),
        rate: opt(v[T_RATE]),
        rate_note: opt(v[T_RATE_NOTE]),
        extra,
    })
}

fn fund_flow_row(
    line: u64,
    v: &Values<'_>,
    extra: Vec<(String, String)>,
) -> Result<FundFlowRow, String> {
    let c = &FUND_COLUMNS;
    let direction = match v[F_DIRECTION] {
        Some("收入") => FlowDirection::In,
        Some("支出") => FlowDirection::Out,
        other => {
            return Err(format!(
                "{}: {} is neither 收入 nor 支出",
                c[F_DIRECTION],
                shown(other.unwrap_or_default())
            ));
        }
    };
    Ok(FundFlowRow {
        line,
        time: time(c[F_TIME], v[F_TIME])?,
        direction,
        amount: yuan(c[F_AMOUNT], v[F_AMOUNT])?,
        balance: yuan(c[F_BALANCE], v[F_BALANCE])?,
        business_no: text(v[F_BUSINESS_NO]),
        flow_no: text(v[F_FLOW_NO]),
        business_name: text(v[F_BUSINESS_NAME]),
        business_type: text(v[F_BUSINESS_TYPE]),
        applicant: text(v[F_APPLICANT]),
        note: opt(v[F_NOTE]),
        voucher_no: opt(v[F_VOUCHER]),
        extra,
    })
}

fn trade_totals(line: u64, v: &Values<'_>) -> Result<TradeTotals, String> {
    let c = &TRADE_TOTALS;
    Ok(TradeTotals {
        line,
        count: count(c[TT_COUNT], v[TT_COUNT])?,
        settlement_total: yuan(c[TT_SETTLEMENT], v[TT_SETTLEMENT])?,
        refund_total: yuan(c[TT_REFUND], v[TT_REFUND])?,
        recharge_refund_total: yuan(c[TT_RECHARGE_REFUND], v[TT_RECHARGE_REFUND])?,
        fee_total: fee(c[TT_FEE], v[TT_FEE])?,
        order_total: opt_yuan(c[TT_ORDER], v[TT_ORDER])?,
        applied_refund_total: opt_yuan(c[TT_APPLIED_REFUND], v[TT_APPLIED_REFUND])?,
    })
}

fn fund_flow_totals(line: u64, v: &Values<'_>) -> Result<FundFlowTotals, String> {
    let c = &FUND_TOTALS;
    Ok(FundFlowTotals {
        line,
        count: count(c[FT_COUNT], v[FT_COUNT])?,
        income_count: count(c[FT_INCOME_COUNT], v[FT_INCOME_COUNT])?,
        income: yuan(c[FT_INCOME], v[FT_INCOME])?,
        expense_count: count(c[FT_EXPENSE_COUNT], v[FT_EXPENSE_COUNT])?,
        expense: yuan(c[FT_EXPENSE], v[FT_EXPENSE])?,
    })
}

// ---------------------------------------------------------------------------
// The parser

#[derive(Debug, Clone)]
enum State {
    /// Waiting for the header (the first non-empty line).
    Header,
    /// Reading rows.
    Rows { kind: BillKind, layout: Layout },
    /// After the totals header: the next non-empty line is the totals line.
    TotalsData { kind: BillKind, layout: Layout },
    /// After the totals line: nothing more may follow.
    Done { totals_line: u64 },
    /// The header could not be used: no line can be read.
    Unusable { header_line: u64 },
}

/// Push parser for a bill: feed byte chunks of any size as they arrive
/// (from a download), get [`BillEvent`]s. See the [module docs](self) for
/// the format and an example.
///
/// Memory: the current line when it spans chunks (never more than
/// [`MAX_LINE`]) and the header's column names; nothing grows with the
/// number of lines.
#[derive(Debug, Clone)]
pub struct BillParser {
    state: State,
    /// The start of a line that spans chunks.
    buf: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`] (already reported).
    skipping: bool,
    /// Lines finished so far.
    line: u64,
    summary: ParseSummary,
}

impl Default for BillParser {
    fn default() -> Self {
        Self::new()
    }
}

impl BillParser {
    /// A parser at the start of a bill.
    pub fn new() -> BillParser {
        BillParser {
            state: State::Header,
            buf: Vec::new(),
            skipping: false,
            line: 0,
            summary: ParseSummary::default(),
        }
    }

    /// The kind of bill, once its header was read and usable.
    pub fn kind(&self) -> Option<BillKind> {
        match &self.state {
            State::Rows { kind, .. } | State::TotalsData { kind, .. } => Some(*kind),
            State::Header | State::Done { .. } | State::Unusable { .. } => None,
        }
    }

    /// What the bill gave so far (lines finished; a line still open is not
    /// counted).
    pub fn summary(&self) -> ParseSummary {
        ParseSummary {
            lines: self.line,
            ..self.summary
        }
    }

    /// Reads the next bytes of the bill, calling `out` for each event of
    /// each line they finish.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut dyn FnMut(BillEvent)) {
        loop {
            let newline = find_byte(bytes, b'\n');
            let piece = &bytes[..newline.unwrap_or(bytes.len())];
            let mut in_place = false;
            if !self.skipping {
                if self.buf.len() + piece.len() > MAX_LINE {
                    self.buf.clear();
                    self.skipping = true;
                    let reason = format!("longer than {MAX_LINE} bytes: skipped");
                    self.lost_line(self.line + 1, reason, out);
                } else if newline.is_some() && self.buf.is_empty() {
                    in_place = true;
                } else {
                    self.append(piece);
                }
            }
            let Some(at) = newline else { return };
            self.line += 1;
            if in_place {
                self.read_line(piece, out);
            } else if !self.skipping {
                let buf = std::mem::take(&mut self.buf);
                self.read_line(&buf, out);
                self.buf = buf;
                self.buf.clear();
            }
            self.skipping = false;
            bytes = &bytes[at + 1..];
        }
    }

    /// Ends the bill: reads a last line without a line feed, and returns
    /// what the whole bill gave.
    pub fn finish(mut self, out: &mut dyn FnMut(BillEvent)) -> ParseSummary {
        if self.skipping {
            self.line += 1;
        } else if !self.buf.is_empty() {
            self.line += 1;
            let buf = std::mem::take(&mut self.buf);
            self.read_line(&buf, out);
        }
        self.summary()
    }

    /// Holds the start of a line, growing the buffer at most to
    /// [`MAX_LINE`] (the caller checked the line fits).
    fn append(&mut self, piece: &[u8]) {
        let need = self.buf.len() + piece.len();
        if need > self.buf.capacity() {
            let target = (self.buf.capacity() * 2).clamp(need, MAX_LINE.max(need));
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(piece);
    }

    /// A line that could not be read at all (too long, not UTF-8) still
    /// takes its place: in place of the header it leaves the bill
    /// unreadable, in place of the totals line it ends the bill.
    fn lost_line(&mut self, line: u64, reason: String, out: &mut dyn FnMut(BillEvent)) {
        let reason = match self.state {
            State::Header => {
                self.state = State::Unusable { header_line: line };
                format!("header: {reason}")
            }
            State::TotalsData { .. } => {
                self.state = State::Done { totals_line: line };
                format!("totals: {reason}")
            }
            _ => reason,
        };
        self.malformed(line, reason, out);
    }

    fn malformed(&mut self, line: u64, reason: String, out: &mut dyn FnMut(BillEvent)) {
        self.summary.malformed += 1;
        out(BillEvent::Malformed(LineError { line, reason }));
    }

    /// One whole line (without its line feed), numbered `self.line`.
    fn read_line(&mut self, raw: &[u8], out: &mut dyn FnMut(BillEvent)) {
        let number = self.line;
        let mut raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if number == 1 {
            raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        }
        if raw.is_empty() {
            return;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                let reason = format!("not UTF-8 (byte {} of the line)", e.valid_up_to() + 1);
                return self.lost_line(number, reason, out);
            }
        };
        match std::mem::replace(&mut self.state, State::Header) {
            State::Header => {
                self.state = match read_header(text) {
                    Ok((kind, layout)) => State::Rows { kind, layout },
                    Err(reason) => {
                        self.malformed(number, reason, out);
                        State::Unusable {
                            header_line: number,
                        }
                    }
                };
            }
            State::Rows { kind, layout } => {
                if text.starts_with('`') {
                    self.row(kind, &layout, number, text, out);
                    self.state = State::Rows { kind, layout };
                } else if let Some(totals) = totals_header(kind, text) {
                    self.state = State::TotalsData {
                        kind,
                        layout: totals,
                    };
                } else {
                    let reason = match kind {
                        BillKind::Trade => {
                            "neither a row (its fields begin with a back-tick) nor the totals header (总交易单数,…)"
                        }
                        BillKind::FundFlow => {
                            "neither a row (its fields begin with a back-tick) nor the totals header (资金流水总笔数,…)"
                        }
                    };
                    self.malformed(number, reason.into(), out);
                    self.state = State::Rows { kind, layout };
                }
            }
            State::TotalsData { kind, layout } => {
                self.state = State::Done {
                    totals_line: number,
                };
                let mut values: Values<'_> = [None; MAX_KNOWN];
                let read = layout
                    .split(text, &mut values, |_, _| {})
                    .and_then(|()| match kind {
                        BillKind::Trade => {
                            trade_totals(number, &values).map(BillEvent::TradeTotals)
                        }
                        BillKind::FundFlow => {
                            fund_flow_totals(number, &values).map(BillEvent::FundFlowTotals)
                        }
                    });
                match read {
                    Ok(event) => {
                        self.summary.totals = true;
                        out(event);
                    }
                    Err(reason) => self.malformed(number, format!("totals: {reason}"), out),
                }
            }
            State::Done { totals_line } => {
                self.state = State::Done { totals_line };
                let reason =
                    format!("after the totals line (line {totals_line}): the bill has ended");
                self.malformed(number, reason, out);
            }
            State::Unusable { header_line } => {
                self.state = State::Unusable { header_line };
                let reason =
                    format!("the header (line {header_line}) is not usable, so no row can be read");
                self.malformed(number, reason, out);
            }
        }
    }

    fn row(
        &mut self,
        kind: BillKind,
        layout: &Layout,
        number: u64,
        text: &str,
        out: &mut dyn FnMut(BillEvent),
    ) {
        let mut values: Values<'_> = [None; MAX_KNOWN];
        let mut extra = Vec::new();
        let read = layout
            .split(text, &mut values, |name, value| {
                extra.push((name.to_owned(), value.to_owned()));
            })
            .and_then(|()| match kind {
                BillKind::Trade => trade_row(number, &values, extra).map(BillEvent::Trade),
                BillKind::FundFlow => {
                    fund_flow_row(number, &values, extra).map(BillEvent::FundFlow)
                }
            });
        match read {
            Ok(event) => {
                self.summary.rows += 1;
                out(event);
            }
            Err(reason) => self.malformed(number, reason, out),
        }
    }
}

/// The bill's kind and columns from its header line.
fn read_header(text: &str) -> Result<(BillKind, Layout), String> {
    let trade = Layout::new(text, &TRADE_COLUMNS);
    let (kind, mut layout, required): (_, _, &[usize]) = if trade.has(T_OUT_TRADE_NO) {
        (
            BillKind::Trade,
            trade,
            &[T_TIME, T_TRANSACTION_ID, T_OUT_TRADE_NO],
        )
    } else {
        let fund = Layout::new(text, &FUND_COLUMNS);
        if !fund.has(F_FLOW_NO) {
            return Err(format!(
                "header: neither 商户订单号 (a trade bill) nor 资金流水单号 (a fund-flow bill) among its {} columns, so no row can be read",
                trade.slots.len()
            ));
        }
        (
            BillKind::FundFlow,
            fund,
            &[F_TIME, F_FLOW_NO, F_DIRECTION, F_AMOUNT],
        )
    };
    if let Some(name) = layout.missing(required) {
        let what = match kind {
            BillKind::Trade => "trade",
            BillKind::FundFlow => "fund-flow",
        };
        return Err(format!(
            "header: a {what} bill without a {name} column, so no row can be read"
        ));
    }
    layout.free_text = match kind {
        BillKind::Trade => layout
            .column_of(T_BODY)
            .or_else(|| layout.column_of(T_ATTACH)),
        BillKind::FundFlow => layout.column_of(F_NOTE),
    };
    Ok((kind, layout))
}

/// The totals header of a `kind` bill: a line (no back-tick) naming the
/// kind's count column.
fn totals_header(kind: BillKind, text: &str) -> Option<Layout> {
    let (table, count) = match kind {
        BillKind::Trade => (&TRADE_TOTALS[..], TT_COUNT),
        BillKind::FundFlow => (&FUND_TOTALS[..], FT_COUNT),
    };
    let layout = Layout::new(text, table);
    layout.has(count).then_some(layout)
}

/// Reads a whole bill from `reader` (a file, a decompressed download) in
/// 16 KiB chunks, calling `out` for each event. Convenience over
/// [`BillParser`].
///
/// # Errors
/// The reader's error (other than [`io::ErrorKind::Interrupted`], which is
/// retried); the events of the lines read before it were given.
pub fn parse_reader(
    mut reader: impl Read,
    out: &mut dyn FnMut(BillEvent),
) -> io::Result<ParseSummary> {
    let mut parser = BillParser::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(parser.finish(out)),
            Ok(n) => parser.push(&chunk[..n], out),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bill: &[u8]) -> (Vec<BillEvent>, ParseSummary) {
        let mut got = Vec::new();
        let mut p = BillParser::new();
        p.push(bill, &mut |e| got.push(e));
        let s = p.finish(&mut |e| got.push(e));
        (got, s)
    }

    fn malformed(events: &[BillEvent]) -> Vec<(u64, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                BillEvent::Malformed(m) => Some((m.line, m.reason.clone())),
                _ => None,
            })
            .collect()
    }

    const HEAD: &str = "交易时间,微信订单号,商户订单号,商品名称,商户数据包,应结订单金额,手续费\n";

    fn one_trade(line: &str) -> Result<TradeRow, String> {
        let (ev, _) = events(format!("{HEAD}{line}\n").as_bytes());
        match ev.into_iter().next() {
            Some(BillEvent::Trade(r)) => Ok(r),
            Some(BillEvent::Malformed(m)) => Err(m.reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn find_byte_agrees_with_position() {
        let mut hay: Vec<u8> = (0..=255u8).collect();
        hay.extend_from_slice("交易,`\n时间`\r\n".as_bytes());
        for needle in 0..=255u8 {
            for start in 0..hay.len() {
                for end in start..=hay.len().min(start + 40) {
                    let h = &hay[start..end];
                    assert_eq!(
                        find_byte(h, needle),
                        h.iter().position(|&b| b == needle),
                        "{needle} in {start}..{end}"
                    );
                }
            }
        }
        // Repeats and neighbours: the first one wins.
        for n in 0..20 {
            let mut h = vec![b'a'; n];
            h.extend_from_slice(b"``\x5f\x61`");
            assert_eq!(find_byte(&h, b'`'), Some(n));
            assert_eq!(find_byte(&h, 0x5f), Some(n + 2));
        }
    }

    #[test]
    fn separators() {
        let found = |s: &str| {
            let b = s.as_bytes();
            let mut v = Vec::new();
            let mut at = 0;
            while let Some(i) = next_separator(b, at) {
                v.push(i);
                at = i + 2;
            }
            v
        };
        assert_eq!(found("a,`b,`c"), [1, 4]);
        assert_eq!(found("a,b`c"), Vec::<usize>::new());
        assert_eq!(found("`a``,`"), [4]);
        assert_eq!(found(",`,`"), [0, 2]);
        assert_eq!(found(""), Vec::<usize>::new());
        assert_eq!(found("商,`品"), [3]);
    }

    #[test]
    fn fields_split_on_comma_backtick_only() {
        let r = one_trade("`2026-01-01 00:00:00,`42,`A1,`咖啡,大杯,`a,b`c,`1.00,`0.01000").unwrap();
        assert_eq!(r.body, "咖啡,大杯");
        assert_eq!(r.attach.as_deref(), Some("a,b`c"));
        assert_eq!(r.settlement_fee, Fen(100));
        // A value may itself begin with a back-tick: only the first is the prefix.
        let r = one_trade("`2026-01-01 00:00:00,`42,`A1,``引号`,`,`1.00,`0").unwrap();
        assert_eq!(r.body, "`引号`");
        assert_eq!(r.attach, None);
    }

    #[test]
    fn surplus_pieces_rejoin_into_the_body() {
        let r = one_trade("`2026-01-01 00:00:00,`42,`A1,`买一,`送一,`x,`y,`1.00,`0").unwrap();
        assert_eq!(r.body, "买一,`送一,`x");
        assert_eq!(r.attach.as_deref(), Some("y"));
        assert_eq!(r.settlement_fee, Fen(100));
        // Without 商品名称 the surplus goes to 商户数据包.
        let head = "交易时间,微信订单号,商户订单号,商户数据包,应结订单金额\n";
        let (ev, _) =
            events(format!("{head}`2026-01-01 00:00:00,`42,`A1,`k=1,`v,`2.00\n").as_bytes());
        let BillEvent::Trade(r) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(r.attach.as_deref(), Some("k=1,`v"));
        assert_eq!(r.settlement_fee, Fen(200));
        // Without either the line is malformed.
        let head = "交易时间,微信订单号,商户订单号,应结订单金额\n";
        let (ev, _) = events(format!("{head}`2026-01-01 00:00:00,`42,`A1,`x,`2.00\n").as_bytes());
        let m = malformed(&ev);
        assert_eq!(m.len(), 1);
        assert!(m[0].1.contains("5 fields where the header has 4"), "{m:?}");
    }

    #[test]
    fn wide_lines_split_the_same_both_ways() {
        // 70 columns (past the 63 separators held): the second way.
        let mut head = "交易时间,微信订单号,商户订单号,商品名称".to_owned();
        let mut row = "`2026-01-01 00:00:00,`42,`A1,`买一,`送一".to_owned();
        for i in 0..66 {
            head.push_str(&format!(",列{i}"));
            row.push_str(&format!(",`v{i}"));
        }
        for (head, row) in [
            (head.clone(), row.clone()),
            (head, row.replace(",`送一", "")),
        ] {
            let (ev, _) = events(format!("{head}\n{row}\n").as_bytes());
            let BillEvent::Trade(r) = &ev[0] else {
                panic!("{ev:?}")
            };
            let want = if row.contains("送一") {
                "买一,`送一"
            } else {
                "买一"
            };
            assert_eq!(r.body, want);
            assert_eq!(r.extra.len(), 66);
            assert_eq!(r.extra[0], ("列0".to_owned(), "v0".to_owned()));
            assert_eq!(r.extra[65], ("列65".to_owned(), "v65".to_owned()));
        }
        // Exactly at the bound: 63 separators held, 64 fields.
        let mut head = "交易时间,微信订单号,商户订单号,商品名称".to_owned();
        let mut row = "`2026-01-01 00:00:00,`42,`A1,`x".to_owned();
        for i in 0..59 {
            head.push_str(&format!(",列{i}"));
            row.push_str(&format!(",`v{i}"));
        }
        for extra_piece in ["", ",`y"] {
            let row = row.replacen(",`x", &format!(",`x{extra_piece}"), 1);
            let (ev, _) = events(format!("{head}\n{row}\n").as_bytes());
            let BillEvent::Trade(r) = &ev[0] else {
                panic!("{ev:?}")
            };
            assert_eq!(r.body, format!("x{extra_piece}"));
            assert_eq!(r.extra[58], ("列58".to_owned(), "v58".to_owned()));
        }
    }

    #[test]
    fn fewer_fields_than_the_header_is_malformed() {
        let e = one_trade("`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.00").unwrap_err();
        assert_eq!(e, "6 fields where the header has 7");
    }

    #[test]
    fn bad_values_name_their_column() {
        let e = one_trade("`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.0.0,`0").unwrap_err();
        assert!(e.starts_with("应结订单金额: \"1.0.0\""), "{e}");
        let e = one_trade("`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.00,`0.1234567").unwrap_err();
        assert!(e.starts_with("手续费: \"0.1234567\""), "{e}");
        let e = one_trade("`2026-02-30 00:00:00,`42,`A1,`x,`y,`1.00,`0").unwrap_err();
        assert!(
            e.starts_with("交易时间: \"2026-02-30 00:00:00\" is not a time"),
            "{e}"
        );
        let e = one_trade("`20260101000000,`42,`A1,`x,`y,`1.00,`0").unwrap_err();
        assert!(e.starts_with("交易时间:"), "{e}");
        let e = one_trade("`2026-01-01 00:00:00,`42,`A1,`x,`y,`,`0").unwrap_err();
        assert!(
            e.starts_with("应结订单金额: \"\" is not an amount in yuan: empty"),
            "{e}"
        );
        // A long bad value is cut.
        let long = "9".repeat(500);
        let e = one_trade(&format!("`2026-01-01 00:00:00,`42,`A1,`x,`y,`{long}x,`0")).unwrap_err();
        assert!(e.len() < 150, "{e}");
        // The text columns are never quoted in a reason.
        let e = one_trade("`2026-01-01 00:00:00,`42,`secret-ish,`x,`y,`1.00").unwrap_err();
        assert!(!e.contains("secret-ish"));
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2026-01-01 12:01:30"),
            NaiveDate::from_ymd_opt(2026, 1, 1)
                .unwrap()
                .and_hms_opt(12, 1, 30)
        );
        for bad in [
            "2026-01-01T12:01:30",
            "2026-1-01 12:01:30",
            "2026-01-01 12:01:3",
            "2026-01-01 12:01:30 ",
            "2026-01-01 24:00:00",
            "2026-01-01 23:59:60",
            "2026-13-01 00:00:00",
            "2026-00-01 00:00:00",
            "+026-01-01 00:00:00",
            "２026-01-01 00:00:0",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn trade_times_are_beijing() {
        let r = one_trade("`2026-01-01 08:00:00,`42,`A1,`x,`y,`1.00,`0").unwrap();
        assert_eq!(
            r.trade_time_utc(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        );
        let r = one_trade("`2026-01-01 07:59:59,`42,`A1,`x,`y,`1.00,`0").unwrap();
        assert_eq!(
            r.trade_time_utc(),
            Utc.with_ymd_and_hms(2025, 12, 31, 23, 59, 59).unwrap()
        );
    }

    #[test]
    fn columns_by_name_in_any_order() {
        let bill = "手续费,商户订单号,未来列,应结订单金额,交易时间,微信订单号\n\
                    `-0.01000,`A9,`新,`0.00,`2026-01-01 00:00:00,`42\n";
        let (ev, s) = events(bill.as_bytes());
        let BillEvent::Trade(r) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(r.fee, Fee(-1000));
        assert_eq!(r.out_trade_no, "A9");
        assert_eq!(r.transaction_id, "42");
        assert_eq!(r.extra, [("未来列".to_owned(), "新".to_owned())]);
        // Columns the header lacks: empty, None or zero.
        assert_eq!((r.appid.as_str(), r.body.as_str()), ("", ""));
        assert_eq!((r.total_fee, r.attach.as_deref()), (None, None));
        assert_eq!(r.refund_fee, Fen(0));
        assert!(!s.totals);
    }

    #[test]
    fn a_repeated_column_counts_once() {
        let bill = "交易时间,微信订单号,商户订单号,应结订单金额,应结订单金额\n\
                    `2026-01-01 00:00:00,`42,`A1,`1.00,`2.00\n";
        let (ev, _) = events(bill.as_bytes());
        let BillEvent::Trade(r) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(r.settlement_fee, Fen(100));
        assert_eq!(r.extra, [("应结订单金额".to_owned(), "2.00".to_owned())]);
    }

    #[test]
    fn unusable_headers() {
        for (head, says) in [
            ("交易时间,微信订单号,应结订单金额", "neither 商户订单号"),
            (
                "交易时间,商户订单号,应结订单金额",
                "without a 微信订单号 column",
            ),
            ("微信订单号,商户订单号", "without a 交易时间 column"),
            (
                "记账时间,资金流水单号,收支类型",
                "without a 收支金额(元) column",
            ),
            ("", "neither"),
        ] {
            let bill = format!("{head}\n`2026-01-01 00:00:00,`42,`1.00\n`x\n总交易单数\n`1\n");
            let (ev, s) = events(bill.as_bytes());
            let m = malformed(&ev);
            if head.is_empty() {
                // An empty first line is skipped: the row is the header.
                assert_eq!(m[0].0, 2);
            } else {
                assert_eq!(m[0].0, 1);
            }
            assert!(m[0].1.contains(says), "{head}: {m:?}");
            assert!(
                m[1..].iter().all(|(_, r)| r.contains("is not usable")),
                "{m:?}"
            );
            assert_eq!(ev.len(), m.len(), "only Malformed: {ev:?}");
            assert_eq!((s.rows, s.totals), (0, false));
            assert_eq!(s.malformed as usize, m.len());
        }
    }

    #[test]
    fn fund_flow_headers_accept_full_width_parentheses() {
        let bill = "记账时间,资金流水单号,收支类型,收支金额（元）,账户结余（元）,备注\n\
                    `2026-01-01 00:00:00,`F1,`支出,`0.18,`129.72,`手续费,`含,`逗号\n\
                    `2026-01-01 00:00:00,`F2,`转入,`0.18,`129.72,`\n";
        let (ev, _) = events(bill.as_bytes());
        let BillEvent::FundFlow(r) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (r.direction, r.amount, r.balance),
            (FlowDirection::Out, Fen(18), Fen(12972))
        );
        assert_eq!(r.note.as_deref(), Some("手续费,`含,`逗号"));
        let m = malformed(&ev);
        assert_eq!(
            m,
            [(3, "收支类型: \"转入\" is neither 收入 nor 支出".to_owned())]
        );
    }

    #[test]
    fn line_endings_bom_and_empty_lines() {
        let lf = format!("{HEAD}`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.00,`0\n");
        let crlf = lf.replace('\n', "\r\n");
        let bom = format!("\u{feff}{crlf}");
        let spaced = lf.replace('\n', "\n\n");
        let unterminated = lf.trim_end_matches('\n').to_owned();
        for (bill, lines, row_line) in [
            (&lf, 2, 2),
            (&crlf, 2, 2),
            (&bom, 2, 2),
            (&spaced, 4, 3),
            (&unterminated, 2, 2),
        ] {
            let (ev, s) = events(bill.as_bytes());
            let BillEvent::Trade(r) = &ev[0] else {
                panic!("{bill:?}: {ev:?}")
            };
            assert_eq!(r.fee, Fee::ZERO);
            assert_eq!(r.line, row_line);
            assert_eq!(r.settlement_fee, Fen(100), "{bill:?}");
            assert_eq!(r.body, "x");
            assert_eq!((s.lines, s.rows, s.malformed), (lines, 1, 0), "{bill:?}");
        }
        // A BOM anywhere but the very start is not skipped.
        let late = format!("\n\u{feff}{lf}");
        let (ev, _) = events(late.as_bytes());
        let m = malformed(&ev);
        assert_eq!(m[0].0, 2);
        assert!(m[0].1.contains("without a 交易时间 column"), "{m:?}");
    }

    #[test]
    fn overlong_lines_are_skipped_not_held() {
        let row = "`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.00,`0";
        let padded = |n: usize| {
            format!(
                "`2026-01-01 00:00:00,`42,`A1,`x{},`y,`1.00,`0",
                "x".repeat(n)
            )
        };
        let fits = padded(MAX_LINE - row.len());
        let over = padded(MAX_LINE - row.len() + 1);
        assert_eq!((fits.len(), over.len()), (MAX_LINE, MAX_LINE + 1));
        let bill = format!("{HEAD}{fits}\n{over}\n{row}\n");
        for size in [1, 1000, 65_535, 65_536, 65_537, bill.len()] {
            let mut p = BillParser::new();
            let mut ev = Vec::new();
            for chunk in bill.as_bytes().chunks(size) {
                p.push(chunk, &mut |e| ev.push(e));
                assert!(p.buf.capacity() <= MAX_LINE, "{}", p.buf.capacity());
            }
            let s = p.finish(&mut |e| ev.push(e));
            assert_eq!(ev.len(), 3, "{size}");
            // The line of exactly MAX_LINE bytes is read.
            let BillEvent::Trade(r) = &ev[0] else {
                panic!()
            };
            assert_eq!(r.line, 2);
            assert_eq!(
                malformed(&ev),
                [(3, format!("longer than {MAX_LINE} bytes: skipped"))]
            );
            assert_eq!(ev[2].line(), 4);
            assert_eq!((s.lines, s.rows, s.malformed), (4, 2, 1));
        }
        // An over-long last line without a line feed.
        let bill = format!("{HEAD}{row}\n{over}");
        let (ev, s) = events(bill.as_bytes());
        assert_eq!(malformed(&ev).len(), 1);
        assert_eq!((s.lines, s.rows, s.malformed), (3, 1, 1));
    }

    #[test]
    fn a_lost_header_or_totals_line_keeps_its_place() {
        // An over-long header: the bill cannot be read.
        let bill = format!("{}\n`2026-01-01 00:00:00,`42,`A1\n", "交".repeat(MAX_LINE));
        let (ev, s) = events(bill.as_bytes());
        let m = malformed(&ev);
        assert_eq!(
            m[0],
            (1, format!("header: longer than {MAX_LINE} bytes: skipped"))
        );
        assert_eq!(m[1].0, 2);
        assert!(
            m[1].1.contains("the header (line 1) is not usable"),
            "{m:?}"
        );
        assert_eq!((s.rows, s.malformed), (0, 2));
        // A totals line that is not UTF-8: the bill has ended without totals.
        let mut bill = format!("{HEAD}总交易单数,应结订单总金额\n").into_bytes();
        bill.extend_from_slice(b"`1,`\xFF\n`1,`1.00\n");
        let (ev, s) = events(&bill);
        assert_eq!(
            malformed(&ev),
            [
                (3, "totals: not UTF-8 (byte 5 of the line)".to_owned()),
                (
                    4,
                    "after the totals line (line 3): the bill has ended".to_owned()
                )
            ]
        );
        assert!(!s.totals);
    }

    #[test]
    fn non_utf8_lines() {
        let mut bill = HEAD.as_bytes().to_vec();
        bill.extend_from_slice(b"`2026-01-01 00:00:00,`42,`A1,`\xC0\xAF,`y,`1.00,`0\n");
        bill.extend_from_slice("`2026-01-01 00:00:00,`43,`A2,`x,`y,`2.00,`0\n".as_bytes());
        let (ev, s) = events(&bill);
        assert_eq!(
            malformed(&ev),
            [(2, "not UTF-8 (byte 31 of the line)".to_owned())]
        );
        assert_eq!(ev[1].line(), 3);
        assert_eq!((s.rows, s.malformed), (1, 1));
        // A non-UTF-8 header makes the bill unreadable.
        let (ev, s) = events(b"\xFF\xFE\n`x\n");
        let m = malformed(&ev);
        assert!(m[0].1.starts_with("header: not UTF-8"), "{m:?}");
        assert!(m[1].1.contains("not usable"), "{m:?}");
        assert_eq!(s.malformed, 2);
    }

    #[test]
    fn totals_and_what_follows() {
        let bill = format!(
            "{HEAD}`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.00,`0.01000\n\
             总交易单数,应结订单总金额,手续费总金额\n`1,`1.00,`0.01000\n\n`2026-01-01 00:00:00,`43,`A2,`x,`y,`1.00,`0\n总交易单数\n"
        );
        let (ev, s) = events(bill.as_bytes());
        let BillEvent::TradeTotals(t) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (
                t.line,
                t.count,
                t.settlement_total,
                t.fee_total,
                t.order_total
            ),
            (4, 1, Fen(100), Fee(1000), None)
        );
        assert_eq!(
            malformed(&ev),
            [
                (
                    6,
                    "after the totals line (line 4): the bill has ended".to_owned()
                ),
                (
                    7,
                    "after the totals line (line 4): the bill has ended".to_owned()
                )
            ]
        );
        assert_eq!((s.lines, s.rows, s.malformed, s.totals), (7, 1, 2, true));
        // A bad totals line is malformed, and the bill has no totals.
        let bill = format!("{HEAD}总交易单数,应结订单总金额\n`1,`x\n");
        let (ev, s) = events(bill.as_bytes());
        assert_eq!(malformed(&ev)[0].0, 3);
        assert!(
            malformed(&ev)[0].1.starts_with("totals: 应结订单总金额"),
            "{ev:?}"
        );
        assert!(!s.totals);
        // The other kind's totals header in a trade bill is not a totals header.
        let bill = format!("{HEAD}资金流水总笔数,收入笔数\n`1,`1\n");
        let (ev, s) = events(bill.as_bytes());
        assert_eq!(malformed(&ev).len(), 2);
        assert!(!s.totals);
    }

    #[test]
    fn kind_and_summary_while_reading() {
        let mut p = BillParser::new();
        assert_eq!(p.kind(), None);
        p.push(b"\xEF\xBB", &mut |_| {});
        p.push(b"\xBF", &mut |_| {});
        p.push(
            "记账时间,资金流水单号,收支类型,收支金额(元)\n`2026".as_bytes(),
            &mut |_| {},
        );
        assert_eq!(p.kind(), Some(BillKind::FundFlow));
        assert_eq!(p.summary().lines, 1);
    }

    #[test]
    fn events_serialize() {
        let r = one_trade("`2026-01-01 00:00:00,`42,`A1,`x,`y,`1.00,`-0.01000").unwrap();
        let e = BillEvent::Trade(r);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"settlement_fee\":100"), "{json}");
        assert!(json.contains("\"fee\":-1000"), "{json}");
        assert_eq!(serde_json::from_str::<BillEvent>(&json).unwrap(), e);
    }
}
