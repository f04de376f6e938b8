//! The daily reconciliation's bill side, over a gateway serving a bill
//! written here: each kind of difference, what it does to the store (only
//! flags, never bill data), a corrupt download fetched again, a store that
//! cannot list a day.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDate;
use wxpay_core::{
    BodyStream, Error, Fen, FieldError, OutTradeNo, SignType, TradeState, TradeType,
    bill::{BillDownload, BillError},
    flow::{
        Api, AttentionKind, DailyOptions, FindingKind, Gateway, MemoryStore, Order, OrderState,
        OrderStore, Payments, RefundState, RequestPayment, Resolution,
        decide::{PaymentReport, RefundReport, Source},
        gateway::{Closed, Prepaid, RefundAccepted, TradeAnswer},
    },
    messages::{RefundRequest, UnifiedOrderRequest},
};

use crate::stub::{APPID, KEY, MCH_ID};

const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const TOTALS: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// One payment row.
fn pay(appid: &str, mch: &str, tid: &str, no: &str, currency: &str, yuan: &str) -> String {
    format!(
        "`2026-01-01 12:00:00,`{appid},`{mch},`0,`,`{tid},`{no},`oUser,`JSAPI,`SUCCESS,`OTHERS,`{currency},`{yuan},`0.00,`0,`0,`0.00,`0.00,`,`,`商品,`,`0.00000,`0.60%,`{yuan},`0.00,`"
    )
}

/// One refund row.
fn refund(no: &str, out_refund_no: &str, yuan: &str) -> String {
    format!(
        "`2026-01-01 13:00:00,`{APPID},`{MCH_ID},`0,`,`4200T-{no},`{no},`oUser,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5000-{out_refund_no},`{out_refund_no},`{yuan},`0.00,`ORIGINAL,`SUCCESS,`商品,`,`0.00000,`0.60%,`0.00,`{yuan},`"
    )
}

/// A bill of these rows with the totals line written as `totals` says.
fn bill(rows: &[String], totals: &str) -> Vec<u8> {
    let mut s = format!("{HEADER}\r\n");
    for r in rows {
        s.push_str(r);
        s.push_str("\r\n");
    }
    s.push_str(TOTALS);
    s.push_str("\r\n");
    s.push_str(totals);
    s.push_str("\r\n");
    s.into_bytes()
}

/// A bill's bytes and the hash WeChat gives for it (v3 `hash_value`).
type Served = (Vec<u8>, Option<String>);

/// A gateway whose bill, queries and refund answers are set by the test.
#[derive(Clone, Default)]
struct BillGateway {
    /// Bills served in turn (the last one again once the others are used).
    bills: Arc<Mutex<Vec<Served>>>,
    served: Arc<Mutex<usize>>,
    trade: Arc<Mutex<Option<TradeAnswer>>>,
    refund: Arc<Mutex<Option<RefundReport>>>,
}

#[async_trait]
impl Gateway for BillGateway {
    fn api(&self) -> Api {
        Api::V3
    }

    fn merchant(&self) -> (&str, &str) {
        (APPID, MCH_ID)
    }

    fn check(&self, _req: &UnifiedOrderRequest) -> Result<(), FieldError> {
        Ok(())
    }

    async fn prepay(&self, _req: &UnifiedOrderRequest) -> Result<Prepaid, Error> {
        unreachable!("the reconciliation never prepays")
    }

    fn request_payment(&self, _order: &Order, _prepay_id: &str) -> Result<RequestPayment, Error> {
        unreachable!("the reconciliation never asks for paySign")
    }

    async fn query(&self, _no: &OutTradeNo) -> Result<Option<TradeAnswer>, Error> {
        Ok(self.trade.lock().unwrap().clone())
    }

    async fn close(&self, _no: &OutTradeNo) -> Result<Closed, Error> {
        unreachable!("the reconciliation never closes")
    }

    fn can_refund(&self) -> bool {
        false
    }

    async fn refund(&self, _req: &RefundRequest) -> Result<RefundAccepted, Error> {
        unreachable!("the reconciliation never refunds")
    }

    async fn refunds(&self, _order: &Order) -> Result<Vec<RefundReport>, Error> {
        Ok(self.refund.lock().unwrap().clone().into_iter().collect())
    }

    async fn trade_bill(&self, _date: NaiveDate) -> Result<BillDownload, Error> {
        let mut served = self.served.lock().unwrap();
        let bills = self.bills.lock().unwrap();
        let (bytes, hash) = bills[(*served).min(bills.len() - 1)].clone();
        *served += 1;
        // Two pieces, split inside a row: the reader must not care.
        let cut = bytes.len() / 2;
        let body = BodyStream::from_chunks(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
        Ok(BillDownload::from_body(body, hash.as_deref()))
    }
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
}

fn config() -> wxpay_core::Config {
    wxpay_core::Config::new(APPID, MCH_ID, wxpay_core::ApiKey::new(KEY))
        .with_notify_url("https://example.com/notify")
}

/// A paid order of `fen`, paid on the day (unless `time_end` says else).
fn paid(no: &str, fen: u64, tid: &str, time_end: &str) -> Order {
    let mut o = Order::new(
        OutTradeNo::new(no).unwrap(),
        Fen(fen),
        "商品",
        TradeType::Jsapi,
        SignType::Md5,
        chrono::Utc::now(),
    );
    o.api = Api::V3;
    o.state = OrderState::Paid;
    o.transaction_id = Some(tid.into());
    o.time_end = Some(time_end.into());
    o.fulfilment = wxpay_core::flow::Fulfilment::Done {
        at: chrono::Utc::now(),
    };
    o
}

async fn service(store: Arc<dyn OrderStore>, g: &BillGateway) -> Payments {
    Payments::builder(config())
        .store(store)
        .v3(g.clone())
        .without_v2()
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_difference_on_the_bill_side_is_named_and_only_flagged() {
    let store = Arc::new(MemoryStore::new());
    for o in [
        paid("OK1", 2990, "4200OK1", "20260101120000"),
        paid("AMT1", 990, "4200AMT1", "20260101120000"),
        paid("CUR1", 990, "4200CUR1", "20260101120000"),
        paid("TID1", 990, "4200TID1", "20260101120000"),
        paid("APP1", 990, "4200APP1", "20260101120000"),
    ] {
        store.insert(&o).await.unwrap();
    }
    let mut refunded = paid("RF1", 990, "4200T-RF1", "20251231120000");
    refunded.state = OrderState::PartiallyRefunded;
    let mut r = wxpay_core::flow::Refund::new(
        "RF1-R1",
        Fen(500),
        RefundState::Success,
        wxpay_core::flow::RefundSource::App,
        chrono::Utc::now(),
    );
    r.effect = wxpay_core::flow::Fulfilment::Done {
        at: chrono::Utc::now(),
    };
    refunded.refunded_fee = Fen(500);
    refunded.refunds.push(r);
    store.insert(&refunded).await.unwrap();

    let rows = vec![
        pay(APPID, MCH_ID, "4200OK1", "OK1", "CNY", "29.90"),
        pay(APPID, MCH_ID, "4200AMT1", "AMT1", "CNY", "9.91"),
        pay(APPID, MCH_ID, "4200CUR1", "CUR1", "USD", "9.90"),
        pay(APPID, MCH_ID, "4200OTHER", "TID1", "CNY", "9.90"),
        // the same merchant's other app: an order the store has, and one it does not
        pay(
            "wxotherapp0000001",
            MCH_ID,
            "4200APP1",
            "APP1",
            "CNY",
            "9.90",
        ),
        pay(
            "wxotherapp0000001",
            MCH_ID,
            "4200NOTOURS",
            "NOTOURS1",
            "CNY",
            "1.00",
        ),
        // another merchant number altogether
        pay(
            APPID,
            "1999999999",
            "4200FOREIGN",
            "FOREIGN1",
            "CNY",
            "1.00",
        ),
        pay(APPID, MCH_ID, "4200GHOST", "GHOST1", "CNY", "5.00"),
        refund("RF1", "RF1-R1", "4.99"),
        "`2026-01-01 14:00:00,`broken line".to_owned(),
    ];
    // Rows: 10 written, 9 readable. Settlement: 29.90+9.91+9.90*3+1.00*2+5.00 = 76.51.
    let g = BillGateway::default();
    g.bills.lock().unwrap().push((
        bill(&rows, "`9,`76.51,`4.99,`0.00,`0.00000,`76.51,`4.99"),
        None,
    ));
    let payments = service(store.clone(), &g).await;
    let before: Vec<Order> = {
        let mut v = Vec::new();
        for no in ["OK1", "AMT1", "CUR1", "TID1", "APP1", "RF1"] {
            v.push(
                store
                    .get(&OutTradeNo::new(no).unwrap())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        v
    };

    let report = payments
        .reconcile_day(day(), DailyOptions::default())
        .await
        .unwrap();
    let got: Vec<(FindingKind, Option<&str>, Resolution)> = (report.findings.iter())
        .map(|f| (f.kind, f.out_trade_no.as_deref(), f.resolution))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                FindingKind::AmountMismatch,
                Some("AMT1"),
                Resolution::Flagged
            ),
            (
                FindingKind::CurrencyMismatch,
                Some("CUR1"),
                Resolution::Flagged
            ),
            (
                FindingKind::TransactionMismatch,
                Some("TID1"),
                Resolution::Flagged
            ),
            (
                FindingKind::ForeignMerchant,
                Some("APP1"),
                Resolution::Flagged
            ),
            (
                FindingKind::ForeignMerchant,
                Some("FOREIGN1"),
                Resolution::NeedsPerson
            ),
            (
                FindingKind::UnknownOrder,
                Some("GHOST1"),
                Resolution::NeedsPerson
            ),
            (
                FindingKind::RefundAmountMismatch,
                Some("RF1"),
                Resolution::Flagged
            ),
            (FindingKind::MalformedLine, None, Resolution::NeedsPerson),
        ],
        "{report:#?}"
    );
    assert_eq!(
        report.findings[7].line,
        Some(11),
        "the broken line's number"
    );
    assert_eq!(report.bill.rows, 9);
    assert_eq!(report.bill.other_apps, 1);
    assert_eq!(report.bill.settlement_total, Fen(7651));
    assert_eq!(report.bill.refund_total, Fen(499));
    assert!(
        !report.bill.ties_out,
        "a malformed line means it cannot tie out"
    );
    assert_eq!(report.matched, 1, "OK1 only");
    assert!(report.needs_person() && !report.is_clean());

    // Nothing but flags changed: every field else as it was.
    for (was, no) in before
        .iter()
        .zip(["OK1", "AMT1", "CUR1", "TID1", "APP1", "RF1"])
    {
        let now = store
            .get(&OutTradeNo::new(no).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (now.state, now.total_fee, &now.transaction_id, &now.refunds),
            (was.state, was.total_fee, &was.transaction_id, &was.refunds),
            "{no}"
        );
        let flags = (now.attention.iter())
            .filter(|a| a.kind == AttentionKind::BillMismatch)
            .count();
        assert_eq!(flags, usize::from(no != "OK1"), "{no}: {:?}", now.attention);
    }

    // Again: the same findings, no flag recorded twice, no version moved.
    let versions: Vec<u64> = {
        let mut v = Vec::new();
        for no in ["OK1", "AMT1", "CUR1", "TID1", "APP1", "RF1"] {
            v.push(
                store
                    .get(&OutTradeNo::new(no).unwrap())
                    .await
                    .unwrap()
                    .unwrap()
                    .version,
            );
        }
        v
    };
    let again = payments
        .reconcile_day(day(), DailyOptions::default())
        .await
        .unwrap();
    assert_eq!(again.findings.len(), report.findings.len());
    for (no, v) in ["OK1", "AMT1", "CUR1", "TID1", "APP1", "RF1"]
        .iter()
        .zip(versions)
    {
        let now = store
            .get(&OutTradeNo::new(*no).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.version, v, "{no}: a second run changed it");
    }
}

#[tokio::test]
async fn totals_that_do_not_add_up_are_named() {
    let store = Arc::new(MemoryStore::new());
    store
        .insert(&paid("OK1", 2990, "4200OK1", "20260101120000"))
        .await
        .unwrap();
    let g = BillGateway::default();
    let rows = vec![pay(APPID, MCH_ID, "4200OK1", "OK1", "CNY", "29.90")];
    g.bills.lock().unwrap().push((
        bill(&rows, "`2,`39.80,`0.00,`0.00,`0.00000,`39.80,`0.00"),
        None,
    ));
    let payments = service(store, &g).await;
    let report = payments
        .reconcile_day(day(), DailyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    let f = &report.findings[0];
    assert_eq!(
        (f.kind, f.resolution),
        (FindingKind::TotalsMismatch, Resolution::NeedsPerson)
    );
    assert!(
        f.detail.contains("1 rows, the totals line says 2"),
        "{}",
        f.detail
    );
    assert!(
        f.detail
            .contains("settlement 29.90 yuan, the totals line says 39.80"),
        "{}",
        f.detail
    );
    assert!(!report.bill.ties_out);
}

#[tokio::test]
async fn a_corrupt_download_is_fetched_again_and_its_rows_are_not_acted_on() {
    let store = Arc::new(MemoryStore::new());
    let mut lost = paid("LOST1", 990, "4200LOST1", "20260101120000");
    lost.state = OrderState::Prepaid;
    lost.transaction_id = None;
    lost.time_end = None;
    lost.fulfilment = wxpay_core::flow::Fulfilment::Pending;
    store.insert(&lost).await.unwrap();
    let rows = vec![pay(APPID, MCH_ID, "4200LOST1", "LOST1", "CNY", "9.90")];
    let good = bill(&rows, "`1,`9.90,`0.00,`0.00,`0.00000,`9.90,`0.00");
    let sha1 = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &good);
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let g = BillGateway::default();
    {
        let mut bills = g.bills.lock().unwrap();
        // Twice a bill whose hash is not WeChat's, then the real one.
        bills.push((good.clone(), Some("0".repeat(40))));
        bills.push((good.clone(), Some("0".repeat(40))));
        bills.push((good, Some(sha1.to_uppercase())));
    }
    *g.trade.lock().unwrap() = Some(TradeAnswer {
        trade_state: TradeState::Success,
        report: PaymentReport {
            transaction_id: Some("4200LOST1".into()),
            total_fee: Some(Fen(990)),
            fee_type: None,
            time_end: Some("20260101120000".into()),
            bank_type: Some("OTHERS".into()),
            cash_fee: Some(Fen(990)),
            source: Source::Query,
        },
    });
    let payments = service(store.clone(), &g).await;
    let report = payments
        .reconcile_day(day(), DailyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        *g.served.lock().unwrap(),
        3,
        "fetched until the hash matched"
    );
    assert!(report.bill.hash_checked);
    let got: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.resolution))
        .collect();
    assert_eq!(
        got,
        vec![(FindingKind::PaymentNotRecorded, Resolution::Repaired)],
        "{report:#?}"
    );
    let o = store
        .get(&OutTradeNo::new("LOST1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, OrderState::Paid, "recorded by orderquery's answer");

    // Three corrupt downloads in a row: the run fails, nothing is acted on.
    let store = Arc::new(MemoryStore::new());
    store.insert(&lost).await.unwrap();
    let g2 = BillGateway::default();
    let bad = bill(&rows, "`1,`9.90,`0.00,`0.00,`0.00000,`9.90,`0.00");
    g2.bills.lock().unwrap().push((bad, Some("0".repeat(40))));
    *g2.trade.lock().unwrap() = g.trade.lock().unwrap().clone();
    let payments = service(store.clone(), &g2).await;
    let err = payments
        .reconcile_day(day(), DailyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            wxpay_core::flow::DailyError::Bill {
                source: Error::Bill(BillError::HashMismatch { .. }),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(*g2.served.lock().unwrap(), 3);
    let o = store
        .get(&OutTradeNo::new("LOST1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        o.state,
        OrderState::Prepaid,
        "no repair from a corrupt bill"
    );
}

/// A store that keeps orders but cannot list a day.
struct NoDayListing(MemoryStore);

#[async_trait]
impl OrderStore for NoDayListing {
    async fn insert(&self, order: &Order) -> Result<(), wxpay_core::flow::StoreError> {
        self.0.insert(order).await
    }
    async fn get(&self, no: &OutTradeNo) -> Result<Option<Order>, wxpay_core::flow::StoreError> {
        self.0.get(no).await
    }
    async fn transition(
        &self,
        t: &wxpay_core::flow::Transition,
    ) -> Result<wxpay_core::flow::TransitionOutcome, wxpay_core::flow::StoreError> {
        self.0.transition(t).await
    }
    async fn claim_fulfilment(
        &self,
        no: &OutTradeNo,
        now: chrono::DateTime<chrono::Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<wxpay_core::flow::Claim>, wxpay_core::flow::StoreError> {
        self.0.claim_fulfilment(no, now, lease).await
    }
    async fn complete_fulfilment(
        &self,
        no: &OutTradeNo,
        claim: wxpay_core::flow::Claim,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, wxpay_core::flow::StoreError> {
        self.0.complete_fulfilment(no, claim, at).await
    }
}

#[tokio::test]
async fn a_store_that_cannot_list_a_day_is_said_to_be_unchecked() {
    let store = Arc::new(NoDayListing(MemoryStore::new()));
    store
        .insert(&paid("OK1", 2990, "4200OK1", "20260101120000"))
        .await
        .unwrap();
    let g = BillGateway::default();
    let rows = vec![pay(APPID, MCH_ID, "4200OK1", "OK1", "CNY", "29.90")];
    g.bills.lock().unwrap().push((
        bill(&rows, "`1,`29.90,`0.00,`0.00,`0.00000,`29.90,`0.00"),
        None,
    ));
    let payments = service(store, &g).await;
    let report = payments
        .reconcile_day(day(), DailyOptions::default())
        .await
        .unwrap();
    assert!(!report.local.checked);
    assert_eq!(report.matched, 1);
    let got: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.resolution))
        .collect();
    assert_eq!(
        got,
        vec![(FindingKind::LocalSideUnchecked, Resolution::NeedsPerson)]
    );
    assert!(report.needs_person());
}
