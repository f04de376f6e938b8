//! WeChat Pay bills: the daily trade bill and fund-flow bill that WeChat
//! publishes for every merchant (v2 `downloadbill`, v3 `tradebill` /
//! `fundflowbill`), read as a stream.
//!
//! - [`amount`]: yuan with decimals, converted exactly to fen (never
//!   through floating point), and fees with their five decimals.
//! - [`parse`]: a push parser for the bill format (a header line, rows whose
//!   fields each begin with a back-tick, a totals section), typed by column
//!   name, with bounded memory however long the bill.
//! - [`download`]: what the clients' bill downloads return, and the
//!   gzip + SHA-1 pipeline the bytes go through on the way to the parser.

pub mod amount;
pub mod download;
pub mod parse;

pub use amount::{AmountError, AmountProblem, Fee, format_yuan, parse_yuan};
pub use download::{
    AccountType, BillDecoder, BillDownload, BillError, Compression, Downloaded, TradeBillType,
};
pub use parse::{
    BillEvent, BillKind, BillParser, FlowDirection, FundFlowRow, FundFlowTotals, LineError,
    ParseSummary, TradeRow, TradeTotals, parse_reader,
};
