//! The daily reconciliation against the simulator's bills: a day with
//! normal payments, a lost payment notify, a refund made in the merchant
//! platform whose notify was dropped, and a paid order the simulator never
//! saw; the report names exactly those, the repair run makes the store agree
//! with the simulator, a second run changes nothing, and once a person has
//! acknowledged what was flagged the day is clean — through the library on
//! both APIs, and through `wxpay reconcile` on v3.

use std::{collections::BTreeSet, time::Duration};

use chrono::NaiveDate;
use serde_json::Value;
use wxpay_core::{
    Fen, OutTradeNo, SignType, TradeType,
    flow::{
        AttentionKind, DailyError, DailyOptions, DailyReport, FindingKind, Fulfilment, Order,
        OrderState, RefundState, Resolution,
    },
};
use wxpay_sim::{Faults, OutsideRefund, VerifyMode};

use crate::harness::{Framework, Merchant, Running, sqlite_url, temp_db};

/// What a scenario made: the orders and the Beijing days they fall on.
struct Day {
    /// Paid normally, notified.
    normal: Vec<String>,
    /// Paid normally, then refunded in the merchant platform (notify dropped).
    refunded: String,
    /// Paid at the simulator, its notify lost.
    lost: String,
    /// Paid in the store only: the simulator never saw it.
    local_only: String,
    /// The days the payments and the refund fall on (one, unless the test
    /// ran across midnight Beijing time).
    dates: BTreeSet<NaiveDate>,
}

/// Waits until no effect of the order is running (`on_paid` runs after the
/// notify recorded the payment, so `PAID` comes first), so that the store's
/// versions only change by what the test does next.
async fn settled(app: &Running, no: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let o = app.stored(no).await;
        let running = |f: Fulfilment| matches!(f, Fulfilment::Claimed { .. } | Fulfilment::Pending);
        let busy = (o.state == OrderState::Paid && running(o.fulfilment))
            || (o.refunds.iter()).any(|r| r.state == RefundState::Success && running(r.effect));
        if !busy {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{no}: effects never finished: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn date_of(time_end: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&time_end[..8], "%Y%m%d").unwrap()
}

/// Makes the day: two normal payments, one refunded in the merchant
/// platform with its notify dropped, one whose payment notify is lost, and
/// one paid order only the store has.
async fn make_day(app: &Running) -> Day {
    let alice = app.login("o-daily-alice").await;
    let normal = vec![
        app.paid_order(&alice, 1).await,
        app.paid_order(&alice, 2).await,
    ];
    let refunded = app.paid_order(&alice, 1).await;
    let sim = app.sim();
    sim.set_faults(Faults {
        drop_notifies: true,
        drop_refund_notifies: true,
        ..Faults::default()
    })
    .await;
    sim.refund_outside(OutsideRefund::new(&refunded, Fen(998)).with_out_refund_no("DESK-DAILY-1"))
        .await
        .unwrap();
    // The lost notify: paid at the simulator; nothing reaches the shop (and
    // nothing here asks, so the store keeps it PREPAID).
    let lost = app.order(&alice, 3).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.pay(&lost).await.unwrap();
    // The platform refund settles at the simulator (its delay, scaled).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let refund_time = loop {
        let o = sim.order(&refunded).await.unwrap();
        if let Some(t) = o.refunds.first().and_then(|r| r.success_time.clone()) {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the platform refund never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut dates = BTreeSet::new();
    for no in normal.iter().chain([&refunded, &lost]) {
        let o = sim.order(no).await.unwrap();
        dates.insert(date_of(o.time_end.as_deref().unwrap()));
    }
    dates.insert(NaiveDate::parse_from_str(&refund_time[..10], "%Y-%m-%d").unwrap());
    // A paid order the simulator never saw, on the first normal payment's day.
    let first = app.stored(&normal[0]).await;
    let local_only = format!("LOCAL{}", &first.out_trade_no.as_str()[5..]);
    let mut o = Order::new(
        OutTradeNo::new(local_only.clone()).unwrap(),
        Fen(1996),
        "wxpay shop-VIP membership",
        TradeType::Jsapi,
        SignType::Md5,
        first.created_at,
    );
    o.api = first.api;
    o.state = OrderState::Paid;
    o.transaction_id = Some("4200000000000000000000000001".into());
    o.time_end = first.time_end.clone();
    o.fulfilment = Fulfilment::Done {
        at: first.created_at,
    };
    app.shop.payments.store().insert(&o).await.unwrap();
    for no in normal.iter().chain([&refunded]) {
        settled(app, no).await;
    }
    Day {
        normal,
        refunded,
        lost,
        local_only,
        dates,
    }
}

/// The findings of every day, as (kind, order or refund number, resolution).
fn findings(reports: &[DailyReport]) -> BTreeSet<(FindingKind, String, Resolution)> {
    (reports.iter())
        .flat_map(|r| &r.findings)
        .map(|f| {
            let no = (f.out_refund_no.clone())
                .or_else(|| f.out_trade_no.clone())
                .unwrap_or_default();
            (f.kind, no, f.resolution)
        })
        .collect()
}

/// The store's view of the scenario's orders: state, version, refunds.
async fn snapshot(app: &Running, day: &Day) -> Vec<(String, OrderState, u64, usize, usize)> {
    let mut all = day.normal.clone();
    all.extend([
        day.refunded.clone(),
        day.lost.clone(),
        day.local_only.clone(),
    ]);
    let mut out = Vec::new();
    for no in all {
        let o = app.stored(&no).await;
        out.push((no, o.state, o.version, o.refunds.len(), o.attention.len()));
    }
    out
}

/// Checks the store agrees with the simulator after the repair run.
async fn store_agrees(app: &Running, day: &Day) {
    let lost = app.stored(&day.lost).await;
    let at_sim = app.sim().order(&day.lost).await.unwrap();
    assert_eq!(lost.state, OrderState::Paid);
    assert_eq!(lost.transaction_id, at_sim.transaction_id);
    assert_eq!(lost.time_end, at_sim.time_end);
    let refunded = app.stored(&day.refunded).await;
    let r = refunded
        .refund("DESK-DAILY-1")
        .expect("the platform refund is recorded");
    assert_eq!((r.state, r.refund_fee), (RefundState::Success, Fen(998)));
    assert_eq!(refunded.state, OrderState::Refunded);
    let local = app.stored(&day.local_only).await;
    assert_eq!(
        local.state,
        OrderState::Paid,
        "a payment is never undone by a bill"
    );
    assert!(
        (local.attention.iter()).any(|a| a.kind == AttentionKind::BillMismatch),
        "{:?}",
        local.attention
    );
}

/// What the repair run must find: exactly the three cases.
fn expected_first(day: &Day) -> BTreeSet<(FindingKind, String, Resolution)> {
    [
        (
            FindingKind::PaymentNotRecorded,
            day.lost.clone(),
            Resolution::Repaired,
        ),
        (
            FindingKind::RefundNotRecorded,
            "DESK-DAILY-1".to_owned(),
            Resolution::Repaired,
        ),
        (
            FindingKind::PaymentNotInBill,
            day.local_only.clone(),
            Resolution::Flagged,
        ),
    ]
    .into_iter()
    .collect()
}

async fn run_days(app: &Running, day: &Day, options: DailyOptions) -> Vec<DailyReport> {
    let mut out = Vec::new();
    for d in &day.dates {
        out.push(app.shop.payments.reconcile_day(*d, options).await.unwrap());
    }
    out
}

/// Through the library: dry run, repair run, a second run, acknowledgment,
/// a clean day.
pub async fn repairs_a_day_then_finds_it_clean(merchant: Merchant) {
    let app = Running::start_quiet(Framework::Axum, merchant, temp_db("daily")).await;
    let day = make_day(&app).await;
    let before = snapshot(&app, &day).await;

    // A dry run names the same cases and changes nothing.
    let dry = run_days(&app, &day, DailyOptions::dry_run()).await;
    let named: BTreeSet<_> = findings(&dry).into_iter().map(|(k, n, _)| (k, n)).collect();
    let want: BTreeSet<_> = expected_first(&day)
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    assert_eq!(named, want, "{:#?}", dry);
    assert!(dry.iter().all(|r| r.needs_person()));
    assert_eq!(
        snapshot(&app, &day).await,
        before,
        "a dry run changes nothing"
    );

    let first = run_days(&app, &day, DailyOptions::default()).await;
    assert_eq!(findings(&first), expected_first(&day), "{first:#?}");
    for r in &first {
        assert!(r.bill.available && r.bill.ties_out, "{r:#?}");
        assert!(r.local.checked);
        // Every payment row of the day matched or was repaired; the rows
        // add up to the totals line.
        let t = r.bill.totals.as_ref().unwrap();
        assert_eq!(t.count, r.bill.rows);
        assert_eq!(t.settlement_total, r.bill.settlement_total);
    }
    store_agrees(&app, &day).await;
    for no in day.normal.iter().chain([&day.refunded, &day.lost]) {
        settled(&app, no).await;
    }
    let repaired = snapshot(&app, &day).await;

    // A second run changes nothing: only the flagged case is left.
    let second = run_days(&app, &day, DailyOptions::default()).await;
    assert_eq!(
        findings(&second),
        [(
            FindingKind::PaymentNotInBill,
            day.local_only.clone(),
            Resolution::Flagged
        )]
        .into_iter()
        .collect(),
        "{second:#?}"
    );
    assert_eq!(
        snapshot(&app, &day).await,
        repaired,
        "the second run changed the store"
    );

    // A person deals with it; the day is clean.
    let no = OutTradeNo::new(day.local_only.clone()).unwrap();
    let (_, n) = app
        .shop
        .payments
        .acknowledge(&no, Some(AttentionKind::BillMismatch))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let third = run_days(&app, &day, DailyOptions::default()).await;
    assert!(third.iter().all(DailyReport::is_clean), "{third:#?}");
    assert!(third.iter().all(|r| !r.needs_person()));
    assert_eq!(
        findings(&third),
        [(
            FindingKind::PaymentNotInBill,
            day.local_only.clone(),
            Resolution::Acknowledged
        )]
        .into_iter()
        .collect()
    );
}

/// The simulator's bill faults: not ready, a row the app does not know, a
/// row whose amount differs, a corrupt download fetched again.
pub async fn bill_faults_are_reported_not_repaired(merchant: Merchant) {
    let app = Running::start_quiet(Framework::Axum, merchant, temp_db("daily-faults")).await;
    let alice = app.login("o-daily-bob").await;
    let paid = app.paid_order(&alice, 1).await;
    let other = app.paid_order(&alice, 2).await;
    let date = date_of(app.stored(&paid).await.time_end.as_deref().unwrap());
    let sim = app.sim();
    let p = &app.shop.payments;

    sim.set_faults(Faults {
        bill_not_ready: true,
        ..Faults::default()
    })
    .await;
    assert!(matches!(
        p.reconcile_day(date, DailyOptions::default()).await,
        Err(DailyError::NotReady { .. })
    ));

    settled(&app, &paid).await;
    settled(&app, &other).await;
    let before = (app.stored(&paid).await, app.stored(&other).await);
    sim.set_faults(Faults {
        bill_unknown_rows: 1,
        bill_amount_changes: vec![wxpay_sim::BillAmountChange {
            out_trade_no: paid.clone(),
            settlement_fee: Fen(1),
        }],
        bill_bad_hash: u32::from(merchant.api() == wxpay_core::flow::Api::V3),
        ..Faults::default()
    })
    .await;
    let r = p
        .reconcile_day(date, DailyOptions::default())
        .await
        .unwrap();
    let kinds: Vec<_> = r.findings.iter().map(|f| (f.kind, f.resolution)).collect();
    assert!(
        kinds.contains(&(FindingKind::UnknownOrder, Resolution::NeedsPerson)),
        "{r:#?}"
    );
    assert!(
        kinds.contains(&(FindingKind::AmountMismatch, Resolution::Flagged)),
        "{r:#?}"
    );
    assert_eq!(kinds.len(), 2, "{r:#?}");
    assert!(r.bill.ties_out, "the totals follow the rows");
    let after_paid = app.stored(&paid).await;
    assert_eq!(after_paid.state, before.0.state);
    assert_eq!(
        after_paid.total_fee, before.0.total_fee,
        "bill data is never written into an order"
    );
    assert!(
        after_paid
            .attention
            .iter()
            .any(|a| a.kind == AttentionKind::BillMismatch)
    );
    assert_eq!(
        app.stored(&other).await,
        before.1,
        "the other order is untouched"
    );
    if merchant.api() == wxpay_core::flow::Api::V3 {
        assert!(r.bill.hash_checked);
    }
}

/// `wxpay reconcile` on the scenario: exit 1 naming the three cases, the
/// store repaired; `wxpay acknowledge`; then a clean day and exit 0.
#[cfg(feature = "cli")]
pub async fn the_command_line_repairs_then_prints_a_clean_day(mode: VerifyMode) {
    let db = temp_db("daily-cli");
    let app = Running::start_quiet(Framework::Axum, Merchant::KeysDir(mode), db.clone()).await;
    let day = make_day(&app).await;
    let env_file = app.env_file.clone().unwrap();
    let run = |args: Vec<String>| {
        let db = sqlite_url(&db);
        let env_file = env_file.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_wxpay"))
                    .args(&args)
                    .arg("--env-file")
                    .arg(&env_file)
                    .arg("--database-url")
                    .arg(db)
                    .env_remove("DATABASE_URL")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let reconcile = |format: &'static str| {
        let run = &run;
        let dates: Vec<_> = day.dates.iter().copied().collect();
        async move {
            let mut out = Vec::new();
            for d in dates {
                out.push(
                    run(vec![
                        "reconcile".into(),
                        "--date".into(),
                        d.to_string(),
                        "--format".into(),
                        format.into(),
                    ])
                    .await,
                );
            }
            out
        }
    };
    let first = reconcile("json").await;
    let reports: Vec<DailyReport> = first
        .iter()
        .map(|o| {
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
                panic!(
                    "{e}: {}\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
        })
        .collect();
    assert_eq!(findings(&reports), expected_first(&day), "{reports:#?}");
    assert!(
        first.iter().any(|o| o.status.code() == Some(1)),
        "a flag needs a person"
    );
    store_agrees(&app, &day).await;
    let json: Value = serde_json::from_slice(&first[0].stdout).unwrap();
    assert_eq!(
        json["date"],
        Value::String(day.dates.first().unwrap().to_string())
    );

    let ack = run(vec![
        "acknowledge".into(),
        "--order".into(),
        day.local_only.clone(),
    ])
    .await;
    assert!(
        ack.status.success(),
        "{}",
        String::from_utf8_lossy(&ack.stderr)
    );
    assert!(String::from_utf8_lossy(&ack.stdout).contains("1 attention case(s) acknowledged"));

    let clean = reconcile("text").await;
    for o in &clean {
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(text.contains(": clean"), "{text}");
        assert!(text.contains("ties out to its totals line"), "{text}");
    }
}

/// The reconciler's daily run: yesterday (Beijing), once the bill is out;
/// not again once done; retried later while the bill is not ready.
pub async fn the_reconciler_runs_yesterday_once(merchant: Merchant) {
    use wxpay_core::flow::DailySchedule;
    let app = Running::start_quiet(Framework::Axum, merchant, temp_db("daily-schedule")).await;
    let sim = app.sim();
    let midnight = chrono::NaiveTime::from_hms_opt(0, 0, 0).unwrap();
    let retry = Duration::from_secs(3600);
    let schedule = DailySchedule::default().after(midnight).retry(retry);
    // Not ready: no report, no error; the retry waits an hour.
    sim.set_faults(Faults {
        bill_not_ready: true,
        ..Faults::default()
    })
    .await;
    let reconciler = app
        .shop
        .payments
        .reconciler(Duration::from_secs(60))
        .daily(Some(schedule));
    let first = reconciler.run_once().await.unwrap();
    assert!(first.daily.is_none());
    assert_eq!(first.errors, 0);
    sim.set_faults(Faults {
        bill_unknown_rows: 1,
        ..Faults::default()
    })
    .await;
    assert!(
        reconciler.run_once().await.unwrap().daily.is_none(),
        "asked again before the retry time"
    );
    // A fresh reconciler (a restart) asks at once: the bill of yesterday
    // holds the simulator's unknown row, which needs a person.
    let reconciler = app
        .shop
        .payments
        .reconciler(Duration::from_secs(60))
        .daily(Some(schedule));
    let report = reconciler
        .run_once()
        .await
        .unwrap()
        .daily
        .expect("the day was reconciled");
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    assert!(report.date < today, "{}", report.date);
    assert!(report.needs_person());
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    assert_eq!(report.findings[0].kind, FindingKind::UnknownOrder);
    // Done: not again.
    assert!(reconciler.run_once().await.unwrap().daily.is_none());
}
