//! Bill parsing: a generated day of 200 000 trade rows (the 27 columns of a
//! current ALL bill, CRLF, ≈ 73 MB; `tests/it/bill_gen.rs`), held in
//! memory, read by the parser beside its floors on the same bytes, in one
//! criterion group so each runs back to back:
//!
//! - `floor_split`: find every line feed and count the `,` + back-tick
//!   separators of each line, with the parser's own search (eight bytes at
//!   a time) — the scan no parser of this format avoids;
//! - `floor_split_utf8`: the same plus UTF-8 validation of each line;
//! - `push`: `BillParser::push` of the whole buffer, then `finish`: every
//!   row typed (`TradeRow`: strings copied, amounts, fee, time), the totals;
//! - `parse_reader`: `parse_reader` over the buffer (16 KiB reads, so lines
//!   that span two reads are copied once).
//!
//! Throughput is in rows (criterion's `elem/s` = rows/s). Run:
//! `cargo bench -p wxpay-core --bench bill`. Figures: BENCHMARKS.md.

#[path = "../tests/it/bill_gen.rs"]
mod bill_gen;

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use wxpay_core::bill::{BillEvent, BillParser, parse::find_byte, parse_reader};

const ROWS: u64 = 200_000;

/// Lines and `,` + back-tick separators, with the parser's search.
fn floor_split(bill: &[u8], utf8: bool) -> (u64, u64) {
    let (mut lines, mut separators) = (0u64, 0u64);
    let mut rest = bill;
    while !rest.is_empty() {
        let end = find_byte(rest, b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if utf8 {
            black_box(std::str::from_utf8(line).is_ok());
        }
        let mut at = 1;
        while at < line.len() {
            match find_byte(&line[at..], b'`') {
                Some(i) => {
                    separators += u64::from(line[at + i - 1] == b',');
                    at += i + 1;
                }
                None => break,
            }
        }
        lines += 1;
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    (lines, separators)
}

/// Rows and the sum of 应结订单金额, so nothing is optimised away.
fn consume(rows: &mut (u64, u64), e: BillEvent) {
    if let BillEvent::Trade(r) = e {
        rows.0 += 1;
        rows.1 += r.settlement_fee.0;
    }
}

fn benches(c: &mut Criterion) {
    let bill = bill_gen::GeneratedBill::bytes(ROWS);
    let expected = bill_gen::expected(ROWS);

    // Setup check: every path sees the whole bill.
    let (lines, separators) = floor_split(&bill, true);
    assert_eq!(lines, ROWS + 3);
    assert_eq!(separators, ROWS * 26 + (ROWS / 7 + 1) + 6);
    let mut rows = (0, 0);
    let mut parser = BillParser::new();
    parser.push(&bill, &mut |e| consume(&mut rows, e));
    let summary = parser.finish(&mut |e| consume(&mut rows, e));
    assert_eq!(rows, (ROWS, expected.settlement));
    assert!(summary.totals && summary.malformed == 0);
    let mut via_reader = (0, 0);
    parse_reader(&bill[..], &mut |e| consume(&mut via_reader, e)).unwrap();
    assert_eq!(via_reader, rows);
    eprintln!(
        "bill: {ROWS} rows, {} bytes ({:.0} bytes a line)",
        bill.len(),
        bill.len() as f64 / lines as f64
    );

    let mut g = c.benchmark_group("bill_200k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ROWS));
    g.bench_function("floor_split", |b| {
        b.iter(|| floor_split(black_box(&bill), false))
    });
    g.bench_function("floor_split_utf8", |b| {
        b.iter(|| floor_split(black_box(&bill), true))
    });
    g.bench_function("push", |b| {
        b.iter(|| {
            let mut rows = (0, 0);
            let mut parser = BillParser::new();
            parser.push(black_box(&bill), &mut |e| consume(&mut rows, e));
            parser.finish(&mut |e| consume(&mut rows, e));
            rows
        })
    });
    g.bench_function("parse_reader", |b| {
        b.iter(|| {
            let mut rows = (0, 0);
            parse_reader(black_box(&bill[..]), &mut |e| consume(&mut rows, e)).unwrap();
            rows
        })
    });
    g.finish();
}

criterion_group!(bill, benches);
criterion_main!(bill);
