//! A large trade bill made on the fly: a [`Read`] that writes the header,
//! `rows` rows and the totals as it is read, holding one line at a time
//! (never the whole bill). Shared by the integration tests, the heap test
//! (`tests/bill_memory.rs`) and the bench (`benches/bill.rs`).
//!
//! Row `i` (0-based, on line `i + 2`): order `WXP20260101{i:08}`, paid at
//! `00:00:00 + i·86400/rows` seconds, `100 + (i·7919 mod 50 000)` fen, fee
//! 0.6 % (6 units of 1/100 000 yuan per fen). Every tenth row
//! (`i mod 10 = 9`) refunds the row before it in full (its order number and
//! 微信订单号): 应结订单金额 0.00, 退款金额 that row's amount, 手续费 minus its
//! fee. Names are CJK with a
//! comma; every seventh holds `,` + back-tick. The totals are written from
//! what was generated, in the generator's own formatting (not the crate's).
#![allow(dead_code)]

use std::io::{self, Read, Write};

/// The 27 columns of a current ALL bill (`wxpay-v3.md` §12.4).
pub const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";

/// The sums a bill of `rows` rows carries (computed from the formulas,
/// without a bill).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expected {
    pub rows: u64,
    pub refunds: u64,
    /// 应结订单总金额 (= 订单总金额), fen.
    pub settlement: u64,
    /// 退款总金额 (= 申请退款总金额), fen.
    pub refund: u64,
    /// 手续费总金额, 1/100 000 yuan.
    pub fee: i64,
}

/// Order `i`'s amount in fen.
pub fn amount(i: u64) -> u64 {
    100 + (i * 7919) % 50_000
}

pub fn is_refund(i: u64) -> bool {
    i % 10 == 9
}

pub fn expected(rows: u64) -> Expected {
    let mut e = Expected {
        rows,
        ..Expected::default()
    };
    for i in 0..rows {
        if is_refund(i) {
            e.refunds += 1;
            e.refund += amount(i - 1);
            e.fee -= 6 * amount(i - 1) as i64;
        } else {
            e.settlement += amount(i);
            e.fee += 6 * amount(i) as i64;
        }
    }
    e
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Rows,
    TotalsHeader,
    Totals,
    End,
}

/// The bill as a reader.
#[derive(Debug)]
pub struct GeneratedBill {
    rows: u64,
    next: u64,
    stage: Stage,
    line: Vec<u8>,
    at: usize,
    sums: Expected,
}

impl GeneratedBill {
    pub fn new(rows: u64) -> Self {
        Self {
            rows,
            next: 0,
            stage: Stage::Header,
            line: Vec::with_capacity(1024),
            at: 0,
            sums: Expected {
                rows,
                ..Expected::default()
            },
        }
    }

    /// The whole bill in memory (for the bench).
    pub fn bytes(rows: u64) -> Vec<u8> {
        let mut v = Vec::new();
        Self::new(rows).read_to_end(&mut v).unwrap();
        v
    }

    /// Writes the next line into `self.line`; `false` at the end.
    fn fill(&mut self) -> bool {
        self.line.clear();
        self.at = 0;
        let l = &mut self.line;
        match self.stage {
            Stage::Header => {
                l.extend_from_slice(HEADER.as_bytes());
                self.stage = if self.rows == 0 {
                    Stage::TotalsHeader
                } else {
                    Stage::Rows
                };
            }
            Stage::Rows => {
                let i = self.next;
                let secs = i * 86_400 / self.rows;
                let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
                let body = if i.is_multiple_of(7) {
                    "买一,`送一-拿铁"
                } else {
                    "小张南山店-咖啡,大杯"
                };
                let (order, amount) = if is_refund(i) {
                    (i - 1, amount(i - 1))
                } else {
                    (i, amount(i))
                };
                write!(
                    l,
                    "`2026-01-01 {h:02}:{m:02}:{s:02},`wx1a2b3c4d5e6f7a8b,`1900000109,`0,`,`42000020260101{order:014},`WXP20260101{order:08},`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,"
                )
                .unwrap();
                if is_refund(i) {
                    self.sums.refunds += 1;
                    self.sums.refund += amount;
                    self.sums.fee -= 6 * amount as i64;
                    write!(
                        l,
                        "`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300020260101{i:014},`R{order:08},`{},`0.00,`ORIGINAL,`SUCCESS,`{body},`cart=7&src=mp,`-{},`0.60%,`0.00,`{},`",
                        yuan(amount),
                        fee(6 * amount),
                        yuan(amount),
                    )
                    .unwrap();
                } else {
                    self.sums.settlement += amount;
                    self.sums.fee += 6 * amount as i64;
                    write!(
                        l,
                        "`SUCCESS,`OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`{body},`cart=7&src=mp,`{},`0.60%,`{},`0.00,`",
                        yuan(amount),
                        fee(6 * amount),
                        yuan(amount),
                    )
                    .unwrap();
                }
                self.next += 1;
                if self.next == self.rows {
                    self.stage = Stage::TotalsHeader;
                }
            }
            Stage::TotalsHeader => {
                l.extend_from_slice(
                    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
                        .as_bytes(),
                );
                self.stage = Stage::Totals;
            }
            Stage::Totals => {
                let s = self.sums;
                let sign = if s.fee < 0 { "-" } else { "" };
                write!(
                    l,
                    "`{},`{},`{},`0.00,`{sign}{},`{},`{}",
                    s.rows,
                    yuan(s.settlement),
                    yuan(s.refund),
                    fee(s.fee.unsigned_abs()),
                    yuan(s.settlement),
                    yuan(s.refund),
                )
                .unwrap();
                self.stage = Stage::End;
            }
            Stage::End => return false,
        }
        self.line.extend_from_slice(b"\r\n");
        true
    }
}

/// Fen as yuan text (written here, not with the crate's `format_yuan`).
struct Yuan(u64);
impl std::fmt::Display for Yuan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}
fn yuan(fen: u64) -> Yuan {
    Yuan(fen)
}

/// Fee units (1/100 000 yuan) as text, unsigned.
struct FeeText(u64);
impl std::fmt::Display for FeeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:05}", self.0 / 100_000, self.0 % 100_000)
    }
}
fn fee(units: u64) -> FeeText {
    FeeText(units)
}

impl Read for GeneratedBill {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.at == self.line.len() && !self.fill() {
                break;
            }
            let take = (buf.len() - n).min(self.line.len() - self.at);
            buf[n..n + take].copy_from_slice(&self.line[self.at..self.at + take]);
            self.at += take;
            n += take;
        }
        Ok(n)
    }
}
