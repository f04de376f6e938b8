//! Bills (v2 spec 10, v3 spec 12): the trade bill and the fund-flow bill of
//! one Beijing date, built from the simulator's own orders and refunds, the
//! v2 `downloadbill` endpoint, and the download tokens of the v3 applies.
//!
//! What goes in (the rules the crate docs state for users):
//!
//! * one `SUCCESS` row per payment whose `time_end` falls on the date, and
//!   one `REFUND` row per refund that succeeded on it (`success_time`); only
//!   successful payments and refunds appear;
//! * a payment's fee is its amount times [`SimConfig::fee_rate_bps`],
//!   rounded half up to the fen; a refund gives back its share of that fee,
//!   `round(fee × refunded so far / total) − round(fee × refunded before /
//!   total)` over the order's successful refunds (oldest first), so that
//!   refunding everything gives back the whole fee, never more; the refund
//!   row shows it negative, as WeChat's bills do (`-0.27000` for 50.00 at
//!   0.54% in a real bill);
//! * refund rows carry no settlement or order amount (`0.00`), `退款类型`
//!   `ORIGINAL`, the order's goods description and `attach`, as in real bills;
//! * the fund-flow bill (basic account) has per payment an income row
//!   (`交易`) and, when the fee is not zero, a fee row (`扣除交易手续费`); per
//!   refund an expense row (`退款`) of the refund minus the fee given back,
//!   remarked `退款总金额…元;含手续费…元` like WeChat's; the balance runs
//!   from 0.00.

use std::{collections::HashMap, io::Write, sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{Method, header},
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use tokio::time::Instant;
use wxpay_core::{
    Params, RefundStatus, SignType,
    sign::verify,
    xml::{XmlError, parse},
};

use crate::{
    model::{BillKind, RefundSource, SimConfig},
    state::{CODE_TTL_FLOOR, Order, Sim, State as SimState, random_alnum},
};

/// How long a v3 `download_url` works (the 2024 pages' 5 minutes; the
/// older 30 s is stricter). A WeChat-side duration, scaled by the time
/// scale, but never under [`CODE_TTL_FLOOR`] so fast tests do not race it.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// The most rows [`crate::model::Faults::bill_unknown_rows`] adds.
pub(crate) const MAX_UNKNOWN_ROWS: u32 = 10_000;

const TRADE_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const TRADE_SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
const FUND_HEADER: &str = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号";
const FUND_SUMMARY: &str = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额";

/// The order fields every row of a payment or of its refunds shows.
#[derive(Debug, Clone)]
pub(crate) struct OrderInfo {
    pub(crate) appid: String,
    pub(crate) device_info: String,
    pub(crate) transaction_id: String,
    pub(crate) out_trade_no: String,
    pub(crate) openid: String,
    pub(crate) trade_type: String,
    pub(crate) body: String,
    pub(crate) attach: String,
}

/// A payment row.
#[derive(Debug, Clone)]
pub(crate) struct PayRow {
    /// `yyyy-MM-dd HH:mm:ss`.
    pub(crate) time: String,
    pub(crate) order: OrderInfo,
    /// `应结订单金额` (fen): the amount paid unless a fault changes it.
    pub(crate) settlement: u64,
    /// `订单金额` (fen).
    pub(crate) total: u64,
    /// The fee (fen).
    pub(crate) fee: u64,
}

/// A refund row.
#[derive(Debug, Clone)]
pub(crate) struct RefundRow {
    /// `yyyy-MM-dd HH:mm:ss`: when it succeeded.
    pub(crate) time: String,
    pub(crate) order: OrderInfo,
    pub(crate) refund_id: String,
    pub(crate) out_refund_no: String,
    /// The amount refunded (fen).
    pub(crate) refund: u64,
    /// The share of the payment's fee given back (fen).
    pub(crate) fee_returned: u64,
    /// `资金变更提交申请人` of the fund-flow row.
    pub(crate) applicant: String,
}

/// Everything of one date that can be billed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Day {
    pub(crate) payments: Vec<PayRow>,
    pub(crate) refunds: Vec<RefundRow>,
}

/// A row of a trade bill, in time order.
enum Row<'a> {
    Pay(&'a PayRow),
    Refund(&'a RefundRow),
}

impl Row<'_> {
    fn key(&self) -> (&str, u8, &str) {
        match self {
            Row::Pay(p) => (&p.time, 0, &p.order.out_trade_no),
            Row::Refund(r) => (&r.time, 1, &r.out_refund_no),
        }
    }
}

/// Which trade bill (`bill_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TradeBill {
    All,
    Success,
    Refund,
}

/// Why a bill cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BillFailure {
    /// [`crate::model::Faults::bill_not_ready`].
    NotReady,
    /// Nothing to bill that day.
    NoBill,
}

/// The fee of `amount` fen at `bps` basis points, rounded half up.
pub(crate) fn fee(amount: u64, bps: u32) -> u64 {
    let exact = u128::from(amount) * u128::from(bps);
    u64::try_from((exact + 5_000) / 10_000).unwrap_or(u64::MAX)
}

/// `fee × part / total`, rounded half up (0 for a zero total).
fn share(fee: u64, part: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    let (fee, part, total) = (u128::from(fee), u128::from(part), u128::from(total));
    u64::try_from((2 * fee * part + total) / (2 * total)).unwrap_or(u64::MAX)
}

/// Fen as yuan with two decimals, signed: `29.90`, `-0.06`.
pub(crate) fn yuan(fen: i128) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// A fee in fen as yuan with five decimals: `0.18000`, `-0.06000`.
pub(crate) fn fee5(fen: i128) -> String {
    format!("{}000", yuan(fen))
}

/// Basis points as a percentage with two decimals: `0.60%`.
pub(crate) fn rate(bps: u32) -> String {
    format!("{}.{:02}%", bps / 100, bps % 100)
}

/// `yyyyMMdd` (v2 `bill_date`), strictly.
pub(crate) fn parse_date_v2(s: &str) -> Option<NaiveDate> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::from_ymd_opt(
        s[0..4].parse().ok()?,
        s[4..6].parse().ok()?,
        s[6..8].parse().ok()?,
    )
}

/// `yyyy-MM-dd` (v3 `bill_date`), strictly.
pub(crate) fn parse_date_v3(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    parse_date_v2(&format!("{}{}{}", &s[0..4], &s[5..7], &s[8..10]))
}

/// `yyyyMMddHHmmss` → `yyyy-MM-dd HH:mm:ss`.
fn spaced(t: &str) -> Option<String> {
    if t.len() != 14 || !t.is_ascii() {
        return None;
    }
    Some(format!(
        "{}-{}-{} {}:{}:{}",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[8..10],
        &t[10..12],
        &t[12..14]
    ))
}

fn order_info(cfg: &SimConfig, o: &Order) -> OrderInfo {
    OrderInfo {
        appid: o.field("appid").unwrap_or(&cfg.appid).to_owned(),
        device_info: o.field("device_info").unwrap_or_default().to_owned(),
        transaction_id: o.transaction_id.clone().unwrap_or_default(),
        out_trade_no: o.out_trade_no.clone(),
        openid: o.openid().unwrap_or_default().to_owned(),
        trade_type: o.trade_type().to_owned(),
        body: o.field("body").unwrap_or_default().to_owned(),
        attach: o.field("attach").unwrap_or_default().to_owned(),
    }
}

/// The payments and refunds of `date` in `st`, faults applied (unknown
/// rows added, amounts changed), each list in time order.
pub(crate) fn collect(st: &SimState, cfg: &SimConfig, date: NaiveDate) -> Day {
    let compact = date.format("%Y%m%d").to_string();
    let dashed = date.format("%Y-%m-%d").to_string();
    let changes: HashMap<&str, u64> = st
        .faults
        .bill_amount_changes
        .iter()
        .map(|c| (c.out_trade_no.as_str(), c.settlement_fee.get()))
        .collect();
    let bps = cfg.fee_rate_bps;
    let mut day = Day::default();
    for o in st.orders.values() {
        let Some(time_end) = o.time_end.as_deref() else {
            continue;
        };
        if !o.state.is_paid() {
            continue;
        }
        let total = o.total_fee();
        let paid_fee = fee(total, bps);
        let info = order_info(cfg, o);
        if time_end.starts_with(&compact)
            && let Some(time) = spaced(time_end)
        {
            day.payments.push(PayRow {
                time,
                order: info.clone(),
                settlement: changes
                    .get(o.out_trade_no.as_str())
                    .copied()
                    .unwrap_or(total),
                total,
                fee: paid_fee,
            });
        }
        let mut refunded = 0;
        for r in o
            .refunds
            .iter()
            .filter(|r| r.status == RefundStatus::Success)
        {
            let before = share(paid_fee, refunded, total);
            refunded += r.refund_fee;
            let fee_returned = share(paid_fee, refunded, total).saturating_sub(before);
            let Some(time) = r.success_time.as_deref() else {
                continue;
            };
            if !time.starts_with(&dashed) {
                continue;
            }
            day.refunds.push(RefundRow {
                time: time.to_owned(),
                order: info.clone(),
                refund_id: r.refund_id.clone(),
                out_refund_no: r.out_refund_no.clone(),
                refund: r.refund_fee,
                fee_returned,
                applicant: match r.source {
                    RefundSource::Api => format!("{}API", cfg.mch_id),
                    RefundSource::VendorPlatform => cfg.mch_id.clone(),
                },
            });
        }
    }
    for n in 1..=st.faults.bill_unknown_rows.min(MAX_UNKNOWN_ROWS) {
        let total = 100 * u64::from(n);
        let secs = n.min(86_399);
        day.payments.push(PayRow {
            time: format!(
                "{dashed} {:02}:{:02}:{:02}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            ),
            order: OrderInfo {
                appid: cfg.appid.clone(),
                device_info: String::new(),
                transaction_id: format!("4200{compact}9{n:015}"),
                out_trade_no: format!("SIMUNKNOWN{compact}{n:04}"),
                openid: "oSIMUNKNOWNPAYER000000000000".to_owned(),
                trade_type: "JSAPI".to_owned(),
                body: "未知订单".to_owned(),
                attach: String::new(),
            },
            settlement: total,
            total,
            fee: fee(total, bps),
        });
    }
    day.payments
        .sort_by(|a, b| (&a.time, &a.order.out_trade_no).cmp(&(&b.time, &b.order.out_trade_no)));
    day.refunds
        .sort_by(|a, b| (&a.time, &a.out_refund_no).cmp(&(&b.time, &b.out_refund_no)));
    day
}

/// A data line: every field back-tick prefixed, CRLF.
fn line(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('`');
        out.push_str(f);
    }
    out.push_str("\r\n");
}

/// The trade bill text (spec 12.4), `None` when it has no rows.
pub(crate) fn render_trade(day: &Day, which: TradeBill, mch_id: &str, bps: u32) -> Option<String> {
    let mut rows: Vec<Row<'_>> = Vec::new();
    if which != TradeBill::Refund {
        rows.extend(day.payments.iter().map(Row::Pay));
    }
    if which != TradeBill::Success {
        rows.extend(day.refunds.iter().map(Row::Refund));
    }
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| a.key().cmp(&b.key()));
    let rate = rate(bps);
    let (mut settlement, mut refunds, mut fees, mut totals, mut asked) = (0i128, 0, 0, 0, 0);
    let mut out = String::with_capacity(512 + rows.len() * 256);
    out.push_str(TRADE_HEADER);
    out.push_str("\r\n");
    for row in &rows {
        let (o, time) = match row {
            Row::Pay(p) => (&p.order, &p.time),
            Row::Refund(r) => (&r.order, &r.time),
        };
        let common = [
            time.as_str(),
            &o.appid,
            mch_id,
            "0",
            &o.device_info,
            &o.transaction_id,
            &o.out_trade_no,
            &o.openid,
            &o.trade_type,
        ];
        match row {
            Row::Pay(p) => {
                let (s, t, f) = (
                    i128::from(p.settlement),
                    i128::from(p.total),
                    i128::from(p.fee),
                );
                settlement += s;
                totals += t;
                fees += f;
                let (s, f, t) = (yuan(s), fee5(f), yuan(t));
                let rest = [
                    "SUCCESS", "OTHERS", "CNY", &s, "0.00", "0", "0", "0.00", "0.00", "", "",
                    &o.body, &o.attach, &f, &rate, &t, "0.00", "",
                ];
                line(&mut out, &[&common[..], &rest[..]].concat());
            }
            Row::Refund(r) => {
                let (a, f) = (i128::from(r.refund), -i128::from(r.fee_returned));
                refunds += a;
                asked += a;
                fees += f;
                let (a, f) = (yuan(a), fee5(f));
                let rest = [
                    "REFUND",
                    "OTHERS",
                    "CNY",
                    "0.00",
                    "0.00",
                    &r.refund_id,
                    &r.out_refund_no,
                    &a,
                    "0.00",
                    "ORIGINAL",
                    "SUCCESS",
                    &o.body,
                    &o.attach,
                    &f,
                    &rate,
                    "0.00",
                    &a,
                    "",
                ];
                line(&mut out, &[&common[..], &rest[..]].concat());
            }
        }
    }
    out.push_str(TRADE_SUMMARY);
    out.push_str("\r\n");
    line(
        &mut out,
        &[
            &rows.len().to_string(),
            &yuan(settlement),
            &yuan(refunds),
            "0.00",
            &fee5(fees),
            &yuan(totals),
            &yuan(asked),
        ],
    );
    Some(out)
}

/// The fund-flow bill text of the basic account (spec 12.4), the balance
/// running from `opening` fen; `None` when it has no rows.
pub(crate) fn render_fund_flow(day: &Day, opening: i128) -> Option<String> {
    let mut rows: Vec<Row<'_>> = day.payments.iter().map(Row::Pay).collect();
    rows.extend(day.refunds.iter().map(Row::Refund));
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut balance = opening;
    let (mut count, mut incomes, mut income, mut expenses, mut expense) =
        (0usize, 0usize, 0i128, 0usize, 0i128);
    let mut out = String::with_capacity(512 + rows.len() * 300);
    out.push_str(FUND_HEADER);
    out.push_str("\r\n");
    for row in &rows {
        match row {
            Row::Pay(p) => {
                let o = &p.order;
                let amount = i128::from(p.settlement);
                balance += amount;
                incomes += 1;
                income += amount;
                count += 1;
                line(
                    &mut out,
                    &[
                        &p.time,
                        &o.transaction_id,
                        &format!("{}F1", o.transaction_id),
                        "交易",
                        "交易",
                        "收入",
                        &yuan(amount),
                        &yuan(balance),
                        "system",
                        "",
                        &o.out_trade_no,
                    ],
                );
                if p.fee > 0 {
                    let fee = i128::from(p.fee);
                    balance -= fee;
                    expenses += 1;
                    expense += fee;
                    count += 1;
                    line(
                        &mut out,
                        &[
                            &p.time,
                            &o.transaction_id,
                            &format!("{}F2", o.transaction_id),
                            "扣除交易手续费",
                            "扣除交易手续费",
                            "支出",
                            &yuan(fee),
                            &yuan(balance),
                            "system",
                            "",
                            &o.out_trade_no,
                        ],
                    );
                }
            }
            Row::Refund(r) => {
                let amount = i128::from(r.refund) - i128::from(r.fee_returned);
                balance -= amount;
                expenses += 1;
                expense += amount;
                count += 1;
                line(
                    &mut out,
                    &[
                        &r.time,
                        &r.refund_id,
                        &format!("{}F1", r.refund_id),
                        "退款",
                        "退款",
                        "支出",
                        &yuan(amount),
                        &yuan(balance),
                        &r.applicant,
                        &format!(
                            "退款总金额{}元;含手续费{}元",
                            yuan(i128::from(r.refund)),
                            yuan(i128::from(r.fee_returned))
                        ),
                        &r.out_refund_no,
                    ],
                );
            }
        }
    }
    out.push_str(FUND_SUMMARY);
    out.push_str("\r\n");
    line(
        &mut out,
        &[
            &count.to_string(),
            &incomes.to_string(),
            &yuan(income),
            &expenses.to_string(),
            &yuan(expense),
        ],
    );
    Some(out)
}

/// The bill of `date`, faults applied: what the endpoints serve
/// (before compression).
///
/// # Errors
/// [`BillFailure::NotReady`] under the fault, [`BillFailure::NoBill`]
/// without rows.
pub(crate) fn build(sim: &Sim, date: NaiveDate, kind: BillKind) -> Result<String, BillFailure> {
    let st = sim.lock();
    if st.faults.bill_not_ready {
        return Err(BillFailure::NotReady);
    }
    let cfg = &sim.config;
    let day = collect(&st, cfg, date);
    drop(st);
    let text = match kind {
        BillKind::All => render_trade(&day, TradeBill::All, &cfg.mch_id, cfg.fee_rate_bps),
        BillKind::Success => render_trade(&day, TradeBill::Success, &cfg.mch_id, cfg.fee_rate_bps),
        BillKind::Refund => render_trade(&day, TradeBill::Refund, &cfg.mch_id, cfg.fee_rate_bps),
        BillKind::FundFlow => render_fund_flow(&day, 0),
    };
    text.ok_or(BillFailure::NoBill)
}

/// Gzip (one member, no file name, mtime 0: the same bytes every time).
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    enc.write_all(data).expect("in-memory gzip");
    enc.finish().expect("in-memory gzip")
}

/// Lower-case hex SHA-1 (the `hash_value` of spec 12.3).
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A v3 bill waiting to be downloaded.
pub(crate) struct BillToken {
    /// The bill as served (gzip already applied when asked for).
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) issued: Instant,
}

/// The lifetime of a download token at this simulator's time scale.
pub(crate) fn token_ttl(sim: &Sim) -> Duration {
    sim.scaled(TOKEN_TTL).max(CODE_TTL_FLOOR)
}

/// Keeps `bytes` for download under a new random token (dropping expired
/// ones).
pub(crate) fn issue_token(sim: &Sim, st: &mut SimState, bytes: Vec<u8>) -> String {
    let ttl = token_ttl(sim);
    st.bill_tokens.retain(|_, t| t.issued.elapsed() <= ttl);
    let token = random_alnum(48);
    st.bill_tokens.insert(
        token.clone(),
        BillToken {
            bytes: Arc::new(bytes),
            issued: Instant::now(),
        },
    );
    token
}

/// The bytes behind a live token; a token works any number of times until
/// it expires.
pub(crate) fn redeem(sim: &Sim, token: &str) -> Option<Arc<Vec<u8>>> {
    let ttl = token_ttl(sim);
    let st = sim.lock();
    st.bill_tokens
        .get(token)
        .filter(|t| t.issued.elapsed() <= ttl)
        .map(|t| Arc::clone(&t.bytes))
}

/// A v2 `downloadbill` failure: `return_code=FAIL`, `return_msg`, and the
/// `error_code` seen from WeChat where one is known (`20001` request
/// problems, `20002` no bill).
struct Fail {
    msg: String,
    error_code: Option<&'static str>,
}

fn fail(msg: impl Into<String>) -> Fail {
    Fail {
        msg: msg.into(),
        error_code: None,
    }
}

fn request_problem(msg: &str) -> Fail {
    Fail {
        msg: msg.to_owned(),
        error_code: Some("20001"),
    }
}

fn no_bill() -> Fail {
    Fail {
        msg: "No Bill Exist".to_owned(),
        error_code: Some("20002"),
    }
}

/// What a v2 request asks for.
struct V2Request {
    date: NaiveDate,
    kind: Option<BillKind>,
    gzip: bool,
}

fn check_v2(sim: &Sim, body: &[u8]) -> Result<V2Request, Fail> {
    let req: Params = match parse(body) {
        Ok(p) => p,
        Err(XmlError::Empty) => return Err(fail("post数据为空")),
        Err(XmlError::NotUtf8(_)) => return Err(fail("编码格式错误，请使用UTF-8编码")),
        Err(_) => return Err(fail("XML格式错误")),
    };
    let sign_type = match req.non_empty("sign_type") {
        None => SignType::Md5,
        Some(s) => s.parse().map_err(|_| fail("sign_type参数格式错误"))?,
    };
    for name in ["appid", "mch_id", "nonce_str", "sign", "bill_date"] {
        if req.non_empty(name).is_none() {
            return Err(request_problem("missing parameter"));
        }
    }
    if let Err(b) = crate::api::check_identity(sim, &req) {
        return Err(fail(b.des));
    }
    if verify(&req, &sim.config.api_key, sign_type).is_err() {
        return Err(fail("签名错误"));
    }
    if sim.roll_system_error() {
        return Err(fail("SYSTEMERROR"));
    }
    let date = req
        .non_empty("bill_date")
        .and_then(parse_date_v2)
        .ok_or_else(|| request_problem("data format error"))?;
    let kind = match req.non_empty("bill_type").unwrap_or("ALL") {
        "ALL" => Some(BillKind::All),
        "SUCCESS" => Some(BillKind::Success),
        "REFUND" => Some(BillKind::Refund),
        // Refunds from the recharge funds: the simulator makes none.
        "RECHARGE_REFUND" => None,
        _ => return Err(request_problem("invalid bill_type")),
    };
    let gzip = match req.non_empty("tar_type") {
        None => false,
        Some("GZIP") => true,
        Some(_) => return Err(request_problem("invalid tar_type")),
    };
    Ok(V2Request { date, kind, gzip })
}

/// `POST /pay/downloadbill` (and under `/sandboxnew/`): the bill as plain
/// text or gzip, unsigned; failures as unsigned `return_code=FAIL` XML.
pub(crate) async fn downloadbill(
    State(sim): State<Arc<Sim>>,
    method: Method,
    body: Bytes,
) -> Response {
    let delay = sim.faults().delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let result = if method == Method::POST {
        check_v2(&sim, &body).and_then(|req| {
            let kind = req.kind.ok_or_else(no_bill)?;
            let text = build(&sim, req.date, kind).map_err(|e| match e {
                BillFailure::NotReady => fail("Bill Creating"),
                BillFailure::NoBill => no_bill(),
            })?;
            Ok((req, text))
        })
    } else {
        Err(fail("请使用post方法"))
    };
    match result {
        Ok((req, text)) => {
            let bytes = if req.gzip {
                gzip(text.as_bytes())
            } else {
                text.into_bytes()
            };
            tracing::info!(%method, path = "/pay/downloadbill", date = %req.date, gzip = req.gzip, bytes = bytes.len(), "bill served");
            let content_type = if req.gzip {
                "application/octet-stream"
            } else {
                "text/plain; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(Fail { msg, error_code }) => {
            tracing::info!(%method, path = "/pay/downloadbill", "return_code=FAIL return_msg={msg}");
            let mut p = Params::new();
            p.insert("return_code", "FAIL");
            p.insert("return_msg", msg.as_str());
            p.insert_opt("error_code", error_code);
            (
                [(header::CONTENT_TYPE, "text/xml; charset=UTF-8")],
                crate::wire::to_xml(&p, "xml", sim.config.ints()),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(tid: &str, no: &str, body: &str, attach: &str) -> OrderInfo {
        OrderInfo {
            appid: "wx1a2b3c4d5e6f7a8b".into(),
            device_info: String::new(),
            transaction_id: tid.into(),
            out_trade_no: no.into(),
            openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            trade_type: "JSAPI".into(),
            body: body.into(),
            attach: attach.into(),
        }
    }

    fn vector_day() -> Day {
        let pay = |time: &str, order, total| PayRow {
            time: String::from(time),
            order,
            settlement: total,
            total,
            fee: fee(total, 60),
        };
        Day {
            // Out of order on purpose: rendering sorts by time.
            payments: vec![
                pay(
                    "2026-01-01 18:20:05",
                    info(
                        "4200002026010118200000000002",
                        "WXP20260101182000C3",
                        "小张南山店-咖啡",
                        "",
                    ),
                    990,
                ),
                pay(
                    "2026-01-01 12:01:30",
                    info(
                        "4200002026010112000000000001",
                        "WXP20260101120000A1",
                        "小张南山店-会员月卡",
                        "cart=7&src=mp",
                    ),
                    2990,
                ),
            ],
            refunds: Vec::new(),
        }
    }

    /// `bills[0].file_text` of `vectors-v3.json`, byte for byte.
    const VECTOR_TRADE: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n`2026-01-01 12:01:30,`wx1a2b3c4d5e6f7a8b,`1900000109,`0,`,`4200002026010112000000000001,`WXP20260101120000A1,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`OTHERS,`CNY,`29.90,`0.00,`0,`0,`0.00,`0.00,`,`,`小张南山店-会员月卡,`cart=7&src=mp,`0.18000,`0.60%,`29.90,`0.00,`\r\n`2026-01-01 18:20:05,`wx1a2b3c4d5e6f7a8b,`1900000109,`0,`,`4200002026010118200000000002,`WXP20260101182000C3,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`OTHERS,`CNY,`9.90,`0.00,`0,`0,`0.00,`0.00,`,`,`小张南山店-咖啡,`,`0.06000,`0.60%,`9.90,`0.00,`\r\n总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n`2,`39.80,`0.00,`0.00,`0.24000,`39.80,`0.00\r\n";

    /// `bills[1].file_text`: its balance starts at 100.00.
    const VECTOR_FUND: &str = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号\r\n`2026-01-01 12:01:30,`4200002026010112000000000001,`4200002026010112000000000001F1,`交易,`交易,`收入,`29.90,`129.90,`system,`,`WXP20260101120000A1\r\n`2026-01-01 12:01:30,`4200002026010112000000000001,`4200002026010112000000000001F2,`扣除交易手续费,`扣除交易手续费,`支出,`0.18,`129.72,`system,`,`WXP20260101120000A1\r\n资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\r\n`2,`1,`29.90,`1,`0.18\r\n";

    #[test]
    fn the_trade_vector_is_reproduced_byte_for_byte() {
        let text = render_trade(&vector_day(), TradeBill::All, "1900000109", 60).unwrap();
        assert_eq!(text, VECTOR_TRADE);
        assert_eq!(text.len(), 1108);
        assert_eq!(
            sha1_hex(text.as_bytes()),
            "9e1118d7d571107f7bcfa73abfafa95373749f11"
        );
        assert_eq!(
            render_trade(&vector_day(), TradeBill::Success, "1900000109", 60).unwrap(),
            VECTOR_TRADE
        );
        assert!(render_trade(&vector_day(), TradeBill::Refund, "1900000109", 60).is_none());
    }

    #[test]
    fn the_fund_flow_vector_is_reproduced_byte_for_byte() {
        let mut day = vector_day();
        day.payments
            .retain(|p| p.order.out_trade_no == "WXP20260101120000A1");
        let text = render_fund_flow(&day, 10_000).unwrap();
        assert_eq!(text, VECTOR_FUND);
        assert_eq!(
            sha1_hex(text.as_bytes()),
            "506f2aa7039d7d0d9a3bdeae328fc53560473206"
        );
        assert!(render_fund_flow(&Day::default(), 0).is_none());
    }

    #[test]
    fn fees_round_half_up_to_the_fen() {
        assert_eq!(fee(2990, 60), 18);
        assert_eq!(fee(990, 60), 6);
        assert_eq!(fee(250, 60), 2); // 1.5 fen
        assert_eq!(fee(249, 60), 1); // 1.494 fen
        assert_eq!(fee(1, 60), 0);
        assert_eq!(fee(5000, 54), 27);
        assert_eq!(fee(u64::MAX, 10_000), u64::MAX);
        assert_eq!(fee5(18), "0.18000");
        assert_eq!(fee5(-6), "-0.06000");
        assert_eq!(yuan(-1), "-0.01");
        assert_eq!(yuan(123_456), "1234.56");
        assert_eq!(rate(60), "0.60%");
        assert_eq!(rate(100), "1.00%");
        assert_eq!(rate(1234), "12.34%");
    }

    #[test]
    fn refunds_give_back_their_share_and_never_more_than_the_fee() {
        // 29.90 paid, fee 0.18: 10.00 back returns round(0.18 × 1000/2990)
        // = 0.06; the rest (19.90) returns the remaining 0.12.
        assert_eq!(share(18, 1000, 2990), 6);
        assert_eq!(share(18, 2990, 2990) - share(18, 1000, 2990), 12);
        // Three refunds of a third each add up to the whole fee.
        let steps = [333, 666, 999].map(|c| share(10, c, 999));
        assert_eq!(steps, [3, 7, 10]);
        assert_eq!(share(5, 1, 0), 0);
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(
            parse_date_v2("20260101"),
            NaiveDate::from_ymd_opt(2026, 1, 1)
        );
        assert_eq!(
            parse_date_v3("2026-02-28"),
            NaiveDate::from_ymd_opt(2026, 2, 28)
        );
        for bad in [
            "2026-02-30",
            "2026/01/01",
            "2026-1-01",
            "20260101",
            "",
            "２０２６-01-01",
        ] {
            assert_eq!(parse_date_v3(bad), None, "{bad}");
        }
        for bad in ["20261301", "2026-01-01", "2026010", "+2026010"] {
            assert_eq!(parse_date_v2(bad), None, "{bad}");
        }
    }

    #[test]
    fn gzip_round_trips_and_is_deterministic() {
        let data = VECTOR_TRADE.as_bytes();
        let a = gzip(data);
        assert_eq!(a, gzip(data));
        assert_eq!(&a[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut out).unwrap();
        assert_eq!(out, data);
    }
}
