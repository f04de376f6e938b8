//! The bill parser's peak heap does not grow with the bill: a generated
//! day of 20 000 and of 200 000 trade rows (made on the fly by a `Read`,
//! never held: `it/bill_gen.rs`) parsed with `parse_reader`, every row and
//! the totals checked, the peak measured with dhat; then a bill with a
//! 16 MiB line.
//!
//! Its own test binary (one global allocator per binary) without the test
//! harness (`harness = false`: no harness threads allocating beside the
//! parser), so the figures are deterministic. Runs with `cargo test`:
//!
//! ```sh
//! cargo test -p wxpay-core --test bill_memory
//! ```
//!
//! The bounds. Parsing holds: the 16 KiB read buffer of `parse_reader` (on
//! the stack), the header's 27 column names, the start of a line that
//! spans two reads (≈ 370 bytes here, its buffer grown by doubling), and
//! one `TradeRow` being built and handed to the callback (a dozen short
//! strings); the generator holds one line (1 KiB reserved). Measured: 3 080
//! bytes in 40 blocks at both sizes. `ROWS_BOUND` (16 KiB, five times that)
//! leaves room for allocator rounding and std's changes and is still far
//! below what one byte per row would cost at 200 000 rows (195 KiB). The
//! real check of "does not grow" is the second: the 200 000-row peak equals
//! the 20 000-row peak within `SAME_PEAK_SLACK` (256 bytes; the rows have
//! the same shapes, so in practice they are equal). With a line longer than
//! `MAX_LINE` the parser holds at most `MAX_LINE` (64 KiB) of it before it
//! knows it is too long, then nothing: `OVERLONG_BOUND` is `MAX_LINE` +
//! `ROWS_BOUND` (measured: 71 439 bytes with a 16 MiB line).
//!
//! dhat records a backtrace per allocation (trimmed to 4 frames here): the
//! 2.7 million allocations take ≈ 20 s of CPU in a debug build.

#[path = "it/bill_gen.rs"]
mod bill_gen;

use std::io::{self, Read};

use bill_gen::GeneratedBill;
use wxpay_core::{
    Fen,
    bill::{BillEvent, Fee, parse::MAX_LINE, parse_reader},
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const ROWS_BOUND: usize = 16 * 1024;
const SAME_PEAK_SLACK: usize = 256;
const OVERLONG_BOUND: usize = MAX_LINE + ROWS_BOUND;

/// Parses a generated day of `rows` rows; returns the peak heap (bytes).
fn day(rows: u64) -> usize {
    let profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(Some(4))
        .build();
    let expected = bill_gen::expected(rows);
    let mut seen = 0u64;
    let (mut settlement, mut refund, mut fee) = (0u64, 0u64, Fee::ZERO);
    let mut totals = None;
    let mut other = 0u64;
    let summary = parse_reader(GeneratedBill::new(rows), &mut |e| match e {
        BillEvent::Trade(r) => {
            assert_eq!(r.line, seen + 2, "rows in order, none skipped");
            settlement += r.settlement_fee.0;
            refund += r.refund_fee.0;
            fee = fee.checked_add(r.fee).unwrap();
            seen += 1;
        }
        BillEvent::TradeTotals(t) => totals = Some(t),
        _ => other += 1,
    })
    .unwrap();
    let stats = dhat::HeapStats::get();
    drop(profiler);

    assert_eq!((seen, other), (rows, 0));
    assert_eq!((summary.rows, summary.malformed), (rows, 0));
    assert!(summary.totals);
    let t = totals.unwrap();
    assert_eq!(t.count, rows);
    assert_eq!(
        (t.settlement_total, t.refund_total, t.fee_total),
        (Fen(settlement), Fen(refund), fee),
        "the rows tie to the totals line"
    );
    assert_eq!(
        (settlement, refund, fee),
        (expected.settlement, expected.refund, Fee(expected.fee)),
        "the rows are the ones generated"
    );
    assert_eq!(stats.curr_bytes, 0, "nothing left allocated");
    println!(
        "{rows} rows: peak heap {} bytes in {} blocks, {} allocations in all",
        stats.max_bytes, stats.max_blocks, stats.total_blocks
    );
    stats.max_bytes
}

/// A bill with a 16 MiB line between two rows; returns the peak heap.
fn overlong() -> usize {
    let profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(Some(4))
        .build();
    let head = format!("{}\r\n", bill_gen::HEADER);
    let mut two = Vec::new();
    GeneratedBill::new(2).read_to_end(&mut two).unwrap();
    let text = std::str::from_utf8(&two).unwrap();
    let rows: Vec<&str> = text.split("\r\n").collect();
    let (first, second, totals_head, totals) = (
        format!("{}\r\n", rows[1]),
        format!("{}\r\n", rows[2]),
        format!("{}\r\n", rows[3]),
        rows[4].to_owned(),
    );
    let bill = head
        .as_bytes()
        .chain(first.as_bytes())
        .chain(io::repeat(b'x').take(16 << 20))
        .chain(&b"\r\n"[..])
        .chain(second.as_bytes())
        .chain(totals_head.as_bytes())
        .chain(totals.as_bytes());
    let mut events = (0, Vec::new());
    let summary = parse_reader(bill, &mut |e| match e {
        BillEvent::Trade(_) => events.0 += 1,
        BillEvent::Malformed(m) => events.1.push(m.line),
        _ => {}
    })
    .unwrap();
    let stats = dhat::HeapStats::get();
    drop(profiler);
    assert_eq!(events, (2, vec![3]));
    assert_eq!((summary.lines, summary.totals), (6, true));
    println!(
        "a 16 MiB line: peak heap {} bytes in {} blocks",
        stats.max_bytes, stats.max_blocks
    );
    stats.max_bytes
}

fn main() {
    let small = day(20_000);
    let large = day(200_000);
    assert!(small <= ROWS_BOUND, "20 000 rows: {small} > {ROWS_BOUND}");
    assert!(large <= ROWS_BOUND, "200 000 rows: {large} > {ROWS_BOUND}");
    assert!(
        large <= small + SAME_PEAK_SLACK,
        "the peak grew with the rows: {small} at 20 000, {large} at 200 000"
    );
    let long = overlong();
    assert!(
        long <= OVERLONG_BOUND,
        "16 MiB line: {long} > {OVERLONG_BOUND}"
    );
    println!("bill_memory: ok");
}
