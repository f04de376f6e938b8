//! `bill::parse` on the spec's bill vectors (`vectors-v3.json`, `bills`),
//! on hand-written samples (`tests/data/bills/`: a v2 ALL bill with
//! refunds, a damaged current bill, a fund-flow bill) and on generated
//! bills: field by field, totals tied out, every chunking giving the same
//! events.

use std::io::{self, Read};

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;
use wxpay_core::{
    Fen,
    bill::{
        BillEvent, BillKind, BillParser, Fee, FlowDirection, FundFlowRow, FundFlowTotals,
        ParseSummary, TradeRow, TradeTotals, parse::MAX_LINE, parse_reader,
    },
};

use crate::bill_gen::{self, GeneratedBill};

fn vector_text(name: &str) -> String {
    let all = crate::support::spec_vectors("vectors-v3.json");
    let v = all["bills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no bill vector {name}"))
        .clone();
    let text = v["file_text"].as_str().unwrap().to_owned();
    assert_eq!(Value::from(text.len()), v["file_bytes"], "{name}");
    text
}

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/bills/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse_chunks(bill: &[u8], size: usize) -> (Vec<BillEvent>, ParseSummary) {
    let mut events = Vec::new();
    let mut parser = BillParser::new();
    for chunk in bill.chunks(size) {
        parser.push(chunk, &mut |e| events.push(e));
    }
    let summary = parser.finish(&mut |e| events.push(e));
    (events, summary)
}

fn parse(bill: &[u8]) -> (Vec<BillEvent>, ParseSummary) {
    parse_chunks(bill, bill.len().max(1))
}

fn trades(events: &[BillEvent]) -> Vec<&TradeRow> {
    events
        .iter()
        .filter_map(|e| match e {
            BillEvent::Trade(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn flows(events: &[BillEvent]) -> Vec<&FundFlowRow> {
    events
        .iter()
        .filter_map(|e| match e {
            BillEvent::FundFlow(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn trade_totals(events: &[BillEvent]) -> Vec<&TradeTotals> {
    events
        .iter()
        .filter_map(|e| match e {
            BillEvent::TradeTotals(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn malformed(events: &[BillEvent]) -> Vec<(u64, &str)> {
    events
        .iter()
        .filter_map(|e| match e {
            BillEvent::Malformed(m) => Some((m.line, m.reason.as_str())),
            _ => None,
        })
        .collect()
}

fn at(day: (i32, u32, u32), time: (u32, u32, u32)) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(day.0, day.1, day.2)
        .unwrap()
        .and_hms_opt(time.0, time.1, time.2)
        .unwrap()
}

/// The trade rows add up to the totals line, column by column.
fn assert_trade_ties(rows: &[&TradeRow], t: &TradeTotals) {
    let sum = |f: fn(&TradeRow) -> u64| Fen(rows.iter().map(|r| f(r)).sum());
    assert_eq!(t.count, rows.len() as u64, "总交易单数");
    assert_eq!(
        sum(|r| r.settlement_fee.0),
        t.settlement_total,
        "应结订单总金额"
    );
    assert_eq!(sum(|r| r.refund_fee.0), t.refund_total, "退款总金额");
    assert_eq!(
        sum(|r| r.recharge_refund_fee.0),
        t.recharge_refund_total,
        "充值券退款总金额"
    );
    let fees = rows
        .iter()
        .fold(Fee::ZERO, |s, r| s.checked_add(r.fee).unwrap());
    assert_eq!(fees, t.fee_total, "手续费总金额");
    if let Some(order_total) = t.order_total {
        assert_eq!(sum(|r| r.total_fee.unwrap().0), order_total, "订单总金额");
    }
    if let Some(applied) = t.applied_refund_total {
        assert_eq!(
            sum(|r| r.applied_refund_fee.unwrap().0),
            applied,
            "申请退款总金额"
        );
    }
}

fn assert_flow_ties(rows: &[&FundFlowRow], t: &FundFlowTotals) {
    let of = |d: FlowDirection| rows.iter().filter(move |r| r.direction == d);
    assert_eq!(t.count, rows.len() as u64);
    assert_eq!(t.income_count, of(FlowDirection::In).count() as u64);
    assert_eq!(t.expense_count, of(FlowDirection::Out).count() as u64);
    assert_eq!(
        t.income,
        Fen(of(FlowDirection::In).map(|r| r.amount.0).sum())
    );
    assert_eq!(
        t.expense,
        Fen(of(FlowDirection::Out).map(|r| r.amount.0).sum())
    );
}

#[test]
fn trade_bill_vector_field_by_field() {
    let text = vector_text("trade-bill-all-gzip");
    let (events, summary) = parse(text.as_bytes());
    assert_eq!(events.len(), 3, "{events:?}");
    let row =
        |line, time, transaction_id: &str, out_trade_no: &str, fen, body: &str, attach, fee| {
            TradeRow {
                line,
                trade_time: time,
                appid: "wx1a2b3c4d5e6f7a8b".into(),
                mch_id: "1900000109".into(),
                sub_mch_id: None,
                device_info: None,
                transaction_id: transaction_id.into(),
                out_trade_no: out_trade_no.into(),
                openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
                trade_type: "JSAPI".into(),
                trade_state: "SUCCESS".into(),
                bank_type: Some("OTHERS".into()),
                currency: "CNY".into(),
                settlement_fee: Fen(fen),
                coupon_fee: Fen(0),
                refund_id: None,
                out_refund_no: None,
                refund_fee: Fen(0),
                recharge_refund_fee: Fen(0),
                refund_type: None,
                refund_status: None,
                body: body.into(),
                attach,
                fee: Fee(fee),
                rate: Some("0.60%".into()),
                total_fee: Some(Fen(fen)),
                applied_refund_fee: Some(Fen(0)),
                rate_note: None,
                extra: vec![],
            }
        };
    let first = row(
        2,
        at((2026, 1, 1), (12, 1, 30)),
        "4200002026010112000000000001",
        "WXP20260101120000A1",
        2990,
        "小张南山店-会员月卡",
        Some("cart=7&src=mp".to_owned()),
        18_000,
    );
    let second = row(
        3,
        at((2026, 1, 1), (18, 20, 5)),
        "4200002026010118200000000002",
        "WXP20260101182000C3",
        990,
        "小张南山店-咖啡",
        None,
        6_000,
    );
    assert_eq!(events[0], BillEvent::Trade(first));
    assert_eq!(events[1], BillEvent::Trade(second));
    let totals = TradeTotals {
        line: 5,
        count: 2,
        settlement_total: Fen(3980),
        refund_total: Fen(0),
        recharge_refund_total: Fen(0),
        fee_total: Fee(24_000),
        order_total: Some(Fen(3980)),
        applied_refund_total: Some(Fen(0)),
    };
    assert_eq!(events[2], BillEvent::TradeTotals(totals.clone()));
    assert_trade_ties(&trades(&events), &totals);
    assert_eq!(
        summary,
        ParseSummary {
            lines: 5,
            rows: 2,
            malformed: 0,
            totals: true
        }
    );
    let BillEvent::Trade(r) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        r.trade_time_utc(),
        Utc.with_ymd_and_hms(2026, 1, 1, 4, 1, 30).unwrap()
    );
    assert!(!r.is_refund());
}

#[test]
fn trade_bill_vector_with_a_changed_amount_does_not_tie() {
    // The vector's negative case: 29.90 -> 29.91 in the first row. It
    // parses, and the tie-out catches it.
    let all = crate::support::spec_vectors("vectors-v3.json");
    let text = all["bills"][0]["negative"]["file_text"].as_str().unwrap();
    let (events, _) = parse(text.as_bytes());
    let rows = trades(&events);
    assert_eq!(rows[0].settlement_fee, Fen(2991));
    let t = trade_totals(&events)[0];
    let sum: u64 = rows.iter().map(|r| r.settlement_fee.0).sum();
    assert_eq!((sum, t.settlement_total), (3981, Fen(3980)));
}

#[test]
fn fund_flow_bill_vector_field_by_field() {
    let text = vector_text("fund-flow-bill-basic");
    let (events, summary) = parse(text.as_bytes());
    let row = |line, flow_no: &str, name: &str, direction, amount, balance| FundFlowRow {
        line,
        time: at((2026, 1, 1), (12, 1, 30)),
        business_no: "4200002026010112000000000001".into(),
        flow_no: flow_no.into(),
        business_name: name.into(),
        business_type: name.into(),
        direction,
        amount: Fen(amount),
        balance: Fen(balance),
        applicant: "system".into(),
        note: None,
        voucher_no: Some("WXP20260101120000A1".into()),
        extra: vec![],
    };
    let totals = FundFlowTotals {
        line: 5,
        count: 2,
        income_count: 1,
        income: Fen(2990),
        expense_count: 1,
        expense: Fen(18),
    };
    assert_eq!(
        events,
        [
            BillEvent::FundFlow(row(
                2,
                "4200002026010112000000000001F1",
                "交易",
                FlowDirection::In,
                2990,
                12990
            )),
            BillEvent::FundFlow(row(
                3,
                "4200002026010112000000000001F2",
                "扣除交易手续费",
                FlowDirection::Out,
                18,
                12972
            )),
            BillEvent::FundFlowTotals(totals.clone()),
        ]
    );
    assert_flow_ties(&flows(&events), &totals);
    // The balance runs: previous + income − expense.
    let rows = flows(&events);
    assert_eq!(rows[1].balance.0, rows[0].balance.0 - rows[1].amount.0);
    assert_eq!(
        (summary.rows, summary.malformed, summary.totals),
        (2, 0, true)
    );
    assert_eq!(
        rows[0].time_utc(),
        Utc.with_ymd_and_hms(2026, 1, 1, 4, 1, 30).unwrap()
    );
}

#[test]
fn v2_bill_with_refunds_bom_lf_and_an_unknown_column() {
    let bill = sample("all-v2-refunds.txt");
    assert!(bill.starts_with(b"\xEF\xBB\xBF"));
    assert!(!bill.contains(&b'\r') && !bill.ends_with(b"\n"));
    let (events, summary) = parse(&bill);
    assert_eq!(
        summary,
        ParseSummary {
            lines: 9,
            rows: 6,
            malformed: 0,
            totals: true
        }
    );
    let rows = trades(&events);
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6, 7]);

    // CJK names with a comma, back-ticks, `,` + back-tick, a trailing comma.
    let bodies: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "小张南山店-拿铁,大杯",
            "会员`年卡`",
            "买一,`送一（咖啡）",
            "小张南山店-拿铁,大杯",
            "会员`年卡`",
            "测试商品,"
        ]
    );
    assert_eq!(rows[1].attach.as_deref(), Some("a=1,b=2"));
    assert_eq!(rows[2].attach, None);
    assert_eq!(rows[1].device_info.as_deref(), Some("POS-01"));
    assert_eq!(rows[1].trade_type, "NATIVE");

    // The unknown column, by name, whatever its position; the columns after it still right.
    assert_eq!(rows[0].extra, [("优惠详情".to_owned(), String::new())]);
    assert_eq!(
        rows[2].extra,
        [("优惠详情".to_owned(), "代金券1.00".to_owned())]
    );
    assert_eq!(
        (rows[2].settlement_fee, rows[2].coupon_fee),
        (Fen(900), Fen(100))
    );
    assert_eq!(
        (rows[2].fee, rows[2].rate.as_deref()),
        (Fee(5_000), Some("0.60%"))
    );

    // Older bills: no 订单金额 / 申请退款金额 / 费率备注.
    assert!(
        rows.iter().all(|r| r.total_fee.is_none()
            && r.applied_refund_fee.is_none()
            && r.rate_note.is_none())
    );

    // Payments and refunds.
    let paid: Vec<(&str, Fen, Fee)> = rows
        .iter()
        .filter(|r| !r.is_refund())
        .map(|r| (r.out_trade_no.as_str(), r.settlement_fee, r.fee))
        .collect();
    assert_eq!(
        paid,
        [
            ("S20260315A011", Fen(1500), Fee(9_000)),
            ("S20260315A012", Fen(8800), Fee(53_000)),
            ("S20260315A013", Fen(900), Fee(5_000)),
            ("S20260315A014", Fen(1), Fee(0)),
        ]
    );
    let refund = rows[3];
    assert!(refund.is_refund());
    assert_eq!(refund.trade_state, "REFUND");
    assert_eq!(refund.settlement_fee, Fen(0));
    assert_eq!(refund.refund_fee, Fen(1500));
    assert_eq!(refund.fee, Fee(-9_000));
    assert_eq!(refund.fee.to_string(), "-0.09000");
    assert_eq!(
        refund.refund_id.as_deref(),
        Some("50300002026031514000000000021")
    );
    assert_eq!(refund.out_refund_no.as_deref(), Some("R20260315A011"));
    assert_eq!(
        (
            refund.refund_type.as_deref(),
            refund.refund_status.as_deref()
        ),
        (Some("ORIGINAL"), Some("SUCCESS"))
    );
    let partial = rows[4];
    assert_eq!(
        (
            partial.refund_fee,
            partial.fee,
            partial.refund_status.as_deref()
        ),
        (Fen(800), Fee(-5_000), Some("PROCESSING"))
    );
    assert!(
        rows.iter()
            .take(3)
            .all(|r| r.refund_id.is_none() && r.out_refund_no.is_none())
    );

    // 特约商户号 `0` is no sub-merchant; a real one is kept.
    assert_eq!(rows[0].sub_mch_id, None);
    assert_eq!(rows[5].sub_mch_id.as_deref(), Some("1900000200"));
    assert_eq!(
        rows[5].trade_time_utc(),
        Utc.with_ymd_and_hms(2026, 3, 15, 15, 59, 59).unwrap()
    );

    let totals = trade_totals(&events);
    assert_eq!(
        *totals[0],
        TradeTotals {
            line: 9,
            count: 6,
            settlement_total: Fen(11_201),
            refund_total: Fen(2_300),
            recharge_refund_total: Fen(0),
            fee_total: Fee(53_000),
            order_total: None,
            applied_refund_total: None,
        }
    );
    assert_trade_ties(&rows, totals[0]);
}

#[test]
fn damaged_bill_reports_each_line_and_keeps_reading() {
    let bill = sample("all-v3-damaged.txt");
    assert!(bill.windows(2).any(|w| w == b"\r\n") && !bill.ends_with(b"\n"));
    let (events, summary) = parse(&bill);
    let order: Vec<u64> = events.iter().map(BillEvent::line).collect();
    assert_eq!(
        order,
        [2, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15],
        "in line order"
    );

    let bad = malformed(&events);
    let lines: Vec<u64> = bad.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [3, 5, 7, 8, 9, 11, 14, 15]);
    let reason = |line: u64| bad.iter().find(|(l, _)| *l == line).unwrap().1;
    assert_eq!(
        reason(3),
        "应结订单金额: \"29.9O\" is not an amount in yuan: only ASCII digits and one decimal point"
    );
    assert_eq!(reason(5), "not UTF-8 (byte 190 of the line)");
    assert_eq!(reason(7), "10 fields where the header has 27");
    assert_eq!(
        reason(8),
        "交易时间: \"2026-04-01 25:00:00\" is not a time (yyyy-MM-dd HH:mm:ss)"
    );
    assert_eq!(
        reason(9),
        "手续费: \"0.036000\" is not a fee: more than 5 decimals"
    );
    assert!(reason(11).starts_with("neither a row"), "{}", reason(11));
    assert_eq!(
        reason(14),
        "after the totals line (line 13): the bill has ended"
    );
    assert_eq!(reason(15), reason(14));
    // No reason dumps the line it refused.
    for (_, r) in &bad {
        assert!(!r.contains("oUpF8uMuAJO") && r.len() < 200, "{r}");
    }

    // The rows around the damage are whole.
    let rows = trades(&events);
    let got: Vec<(u64, &str, Fen, Fee)> = rows
        .iter()
        .map(|r| (r.line, r.out_trade_no.as_str(), r.settlement_fee, r.fee))
        .collect();
    assert_eq!(
        got,
        [
            (2, "D0001", Fen(2990), Fee(18_000)),
            (4, "D0003", Fen(1200), Fee(7_000)),
            (10, "D0001", Fen(0), Fee(-18_000)),
        ]
    );
    assert_eq!(rows[1].body, "蛋糕,切块");
    assert!(rows[2].is_refund());
    assert_eq!(rows[2].refund_fee, Fen(2990));
    assert_eq!(rows[2].applied_refund_fee, Some(Fen(2990)));

    // The totals (of the undamaged bill) are still read: nothing went
    // missing silently, every data line is a row or a Malformed.
    let t = trade_totals(&events);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].line, t[0].count), (13, 8));
    assert_eq!(t[0].fee_total, Fee(38_600));
    let row_lines_refused = lines.iter().filter(|&&l| l < 12 && l != 11).count() as u64;
    assert_eq!(summary.rows + row_lines_refused, t[0].count);
    assert_eq!(
        summary,
        ParseSummary {
            lines: 15,
            rows: 3,
            malformed: 8,
            totals: true
        }
    );
}

#[test]
fn overlong_line_in_a_bill_is_skipped_and_the_rest_read() {
    let bill = sample("all-v2-refunds.txt");
    let text = std::str::from_utf8(&bill).unwrap();
    let (head, rest) = text.split_once('\n').unwrap();
    let (first, rest) = rest.split_once('\n').unwrap();
    // A row whose name is 100 000 characters (300 000 bytes), then one just
    // under the bound (read whole).
    let huge = first.replace("小张南山店-拿铁,大杯", &"长".repeat(100_000));
    let pad = MAX_LINE - first.len() + "小张南山店-拿铁,大杯".len() - 1;
    let long = first.replace("小张南山店-拿铁,大杯", &"x".repeat(pad));
    assert_eq!(long.len(), MAX_LINE - 1);
    let bill = format!("{head}\n{first}\n{huge}\n{long}\n{rest}");
    for size in [1, 7, 4096, 16 * 1024, bill.len()] {
        let (events, summary) = parse_chunks(bill.as_bytes(), size);
        assert_eq!(
            malformed(&events),
            [(3, "longer than 65536 bytes: skipped")],
            "{size}"
        );
        let rows = trades(&events);
        assert_eq!(rows.len(), 7);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].body.len(), pad);
        assert_eq!(rows[2].line, 5);
        assert_eq!(trade_totals(&events)[0].line, 11);
        assert_eq!((summary.lines, summary.malformed), (11, 1));
    }
    // Through a reader too.
    let mut events = Vec::new();
    let summary = parse_reader(bill.as_bytes(), &mut |e| events.push(e)).unwrap();
    assert_eq!(
        (summary.rows, summary.malformed, summary.totals),
        (7, 1, true)
    );
}

#[test]
fn fund_flow_sample_with_full_width_header() {
    let (events, summary) = parse(&sample("fundflow-fullwidth.txt"));
    assert_eq!(
        summary,
        ParseSummary {
            lines: 7,
            rows: 4,
            malformed: 0,
            totals: true
        }
    );
    let rows = flows(&events);
    let got: Vec<(FlowDirection, Fen, Fen)> = rows
        .iter()
        .map(|r| (r.direction, r.amount, r.balance))
        .collect();
    assert_eq!(
        got,
        [
            (FlowDirection::In, Fen(10_000), Fen(110_000)),
            (FlowDirection::Out, Fen(60), Fen(109_940)),
            (FlowDirection::Out, Fen(2_000), Fen(107_940)),
            (FlowDirection::Out, Fen(5_000), Fen(102_940)),
        ]
    );
    let refund = rows[2];
    assert_eq!(refund.note.as_deref(), Some("退款,`尺码不符"));
    assert_eq!(refund.voucher_no, None);
    assert_eq!(refund.applicant, "1900000109@1900000109");
    assert_eq!(refund.business_name, "退款");
    assert_eq!(refund.extra, [("附加信息".to_owned(), "批次7".to_owned())]);
    assert_eq!(rows[0].voucher_no.as_deref(), Some("D0001"));
    assert_eq!(rows[0].note, None);
    // The balance runs.
    for w in rows.windows(2) {
        let signed = |r: &FundFlowRow| match r.direction {
            FlowDirection::In => r.amount.0 as i64,
            FlowDirection::Out => -(r.amount.0 as i64),
        };
        assert_eq!(w[1].balance.0 as i64, w[0].balance.0 as i64 + signed(w[1]));
    }
    let BillEvent::FundFlowTotals(t) = events.last().unwrap() else {
        panic!("{events:?}")
    };
    assert_eq!((t.count, t.income, t.expense), (4, Fen(10_000), Fen(7_060)));
    assert_flow_ties(&rows, t);
}

#[test]
fn every_chunk_size_gives_the_same_events() {
    let trade = vector_text("trade-bill-all-gzip").into_bytes();
    let flow = vector_text("fund-flow-bill-basic").into_bytes();
    let bills = [
        trade.clone(),
        flow.clone(),
        sample("all-v2-refunds.txt"),
        sample("all-v3-damaged.txt"),
        sample("fundflow-fullwidth.txt"),
    ];
    for bill in &bills {
        // Multi-byte characters everywhere, so sizes up to 64 cut inside them.
        assert!(bill.iter().any(|b| *b >= 0x80));
        let whole = parse(bill);
        assert!(whole.1.lines > 4);
        for size in 1..=64 {
            assert_eq!(parse_chunks(bill, size), whole, "chunks of {size}");
        }
    }
    // Every split into two pieces: inside each UTF-8 sequence, between
    // every CR and LF, inside the BOM.
    for bill in [&trade, &flow, &bills[2]] {
        let whole = parse(bill);
        for cut in 0..=bill.len() {
            let mut events = Vec::new();
            let mut p = BillParser::new();
            p.push(&bill[..cut], &mut |e| events.push(e));
            p.push(&bill[cut..], &mut |e| events.push(e));
            let summary = p.finish(&mut |e| events.push(e));
            assert_eq!((events, summary), whole, "cut at {cut}");
        }
    }
}

/// Gives its bytes a few at a time, with `Interrupted` now and then.
struct Trickle<'a> {
    bytes: &'a [u8],
    calls: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(5) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (self.calls % 17 + 1).min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn parse_reader_retries_interruptions_and_matches_push() {
    for bill in [sample("all-v3-damaged.txt"), sample("all-v2-refunds.txt")] {
        let whole = parse(&bill);
        let mut events = Vec::new();
        let summary = parse_reader(
            Trickle {
                bytes: &bill,
                calls: 0,
            },
            &mut |e| events.push(e),
        )
        .unwrap();
        assert_eq!((events, summary), whole);
    }
}

#[test]
fn parse_reader_returns_the_readers_error_after_the_lines_it_read() {
    struct Broken(Vec<u8>);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("connection reset"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let text = vector_text("trade-bill-all-gzip");
    let cut = text.find("总交易单数").unwrap();
    let mut events = Vec::new();
    let err = parse_reader(Broken(text.as_bytes()[..cut].to_vec()), &mut |e| {
        events.push(e)
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(trades(&events).len(), 2);
}

#[test]
fn a_bill_cut_short_has_no_totals() {
    let text = vector_text("trade-bill-all-gzip");
    let cut = text.find("总交易单数").unwrap();
    // After the totals header: no totals line.
    let (events, summary) = parse(&text.as_bytes()[..cut + "总交易单数".len()]);
    assert_eq!(trades(&events).len(), 2);
    assert_eq!((summary.totals, summary.malformed), (false, 0));
    // And cut inside the last row: that row is malformed, reported at finish.
    let cut = text.find("`9.90").unwrap();
    let (events, summary) = parse(&text.as_bytes()[..cut]);
    assert_eq!(
        malformed(&events),
        [(3, "12 fields where the header has 27")]
    );
    assert!(!summary.totals);
}

#[test]
fn generated_bill_every_row_and_the_totals() {
    let n = 20_000;
    let expected = bill_gen::expected(n);
    let mut seen = 0u64;
    let mut refunds = 0u64;
    let mut rejoined = 0u64;
    let mut sums = (0u64, 0u64, Fee::ZERO);
    let mut totals = None;
    let mut unexpected = None;
    let summary = parse_reader(GeneratedBill::new(n), &mut |e| match e {
        BillEvent::Trade(r) => {
            // In order, one per line, nothing skipped.
            assert_eq!(r.line, seen + 2);
            let order = if bill_gen::is_refund(seen) {
                seen - 1
            } else {
                seen
            };
            assert_eq!(r.out_trade_no, format!("WXP20260101{order:08}"));
            assert_eq!(r.is_refund(), bill_gen::is_refund(seen));
            if r.is_refund() {
                refunds += 1;
                assert_eq!(r.refund_fee, Fen(bill_gen::amount(seen - 1)));
            } else {
                assert_eq!(r.settlement_fee, Fen(bill_gen::amount(seen)));
            }
            if r.body.contains(",`") {
                rejoined += 1;
            }
            sums.0 += r.settlement_fee.0;
            sums.1 += r.refund_fee.0;
            sums.2 = sums.2.checked_add(r.fee).unwrap();
            seen += 1;
        }
        BillEvent::TradeTotals(t) => totals = Some(t),
        other => unexpected = Some(other),
    })
    .unwrap();
    assert_eq!(unexpected, None, "no other event");
    assert_eq!(seen, n);
    assert_eq!(refunds, expected.refunds);
    assert_eq!(rejoined, n.div_ceil(7));
    let t = totals.unwrap();
    assert_eq!(t.count, n);
    assert_eq!(
        (t.settlement_total, t.refund_total, t.fee_total),
        (Fen(sums.0), Fen(sums.1), sums.2)
    );
    assert_eq!(
        (sums.0, sums.1, sums.2),
        (expected.settlement, expected.refund, Fee(expected.fee))
    );
    assert_eq!(t.order_total, Some(Fen(expected.settlement)));
    assert_eq!(t.applied_refund_total, Some(Fen(expected.refund)));
    assert_eq!(
        summary,
        ParseSummary {
            lines: n + 3,
            rows: n,
            malformed: 0,
            totals: true
        }
    );
}

#[test]
fn the_kind_is_known_after_the_header() {
    let mut p = BillParser::new();
    let text = vector_text("trade-bill-all-gzip");
    let (head, _) = text.split_once('\n').unwrap();
    p.push(head.as_bytes(), &mut |_| {});
    assert_eq!(p.kind(), None, "the header line is not finished");
    p.push(b"\n", &mut |_| {});
    assert_eq!(p.kind(), Some(BillKind::Trade));
}

#[test]
fn events_make_a_json_report() {
    let (events, summary) = parse(vector_text("trade-bill-all-gzip").as_bytes());
    let json = serde_json::to_value(&events).unwrap();
    let row = &json[0]["Trade"];
    assert_eq!(row["out_trade_no"], "WXP20260101120000A1");
    assert_eq!(row["settlement_fee"], 2990);
    assert_eq!(row["fee"], 18_000);
    assert_eq!(row["trade_time"], "2026-01-01T12:01:30");
    assert_eq!(json[2]["TradeTotals"]["fee_total"], 24_000);
    let back: Vec<BillEvent> = serde_json::from_value(json).unwrap();
    assert_eq!(back, events);
    let s = serde_json::to_value(summary).unwrap();
    assert_eq!(
        s,
        serde_json::json!({"lines": 5, "rows": 2, "malformed": 0, "totals": true})
    );
}
