//! API v3 notifies through `Payments` and the framework-free router: the
//! real `V3Gateway` and `v3::Client`, notifies signed and encrypted here
//! with the spec vectors' WeChat-side keys, a fixed clock. Every bad input
//! is refused with its status and leaves every stored order as it was.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use serde_json::{Value, json};
use wxpay_core::{
    ApiKey, BoxError, Config, Fen, OutTradeNo, SignType, TradeType,
    flow::{
        Api, MemoryStore, NotifyOutcome, NotifyRejection, Order, OrderState, OrderStore,
        PaymentEvents, Payments, Refund, RefundSource, RefundState, V3Gateway,
        http::{self, HttpIn},
    },
    testkit::v3::{self as kit, NotifyRequest, Wechat},
    v3::{self, ApiV3Key},
};

const NOW: i64 = 1_767_240_000;
const APPID: &str = kit::APPID;

type Wire = NotifyRequest;

trait Payment {
    fn payment_now(&self, no: &str, total: u64) -> Wire;
}

impl Payment for Wechat {
    fn payment_now(&self, no: &str, total: u64) -> Wire {
        self.payment(no, total, NOW)
    }
}

#[derive(Clone, Default)]
struct Counting {
    paid: Arc<AtomicUsize>,
    refunded: Arc<AtomicUsize>,
}

#[async_trait]
impl PaymentEvents for Counting {
    async fn on_paid(&self, _order: &Order) -> Result<(), BoxError> {
        self.paid.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_refunded(&self, _order: &Order, _refund: &Refund) -> Result<(), BoxError> {
        self.refunded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct World {
    wechat: Wechat,
    store: Arc<MemoryStore>,
    events: Counting,
    payments: Payments,
}

fn v3_client() -> v3::Client<wxpay_core::BoxTransport> {
    v3::Client::new(kit::client_config(APPID))
        .unwrap()
        .with_clock(Arc::new(|| NOW))
        .boxed()
}

impl World {
    fn new(with_v3: bool) -> World {
        let wechat = Wechat::new();
        let store = Arc::new(MemoryStore::new());
        let events = Counting::default();
        let config = Config::new(
            APPID,
            kit::mchid(),
            ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
        );
        let mut b = Payments::builder(config)
            .store(store.clone())
            .events(events.clone());
        if with_v3 {
            b = b.v3(V3Gateway::new(v3_client()));
        }
        World {
            wechat,
            store,
            events,
            payments: b.build().unwrap(),
        }
    }

    async fn order(&self, no: &str, total: u64) -> OutTradeNo {
        let no = OutTradeNo::new(no).unwrap();
        let mut o = Order::new(
            no.clone(),
            Fen(total),
            "Shop-VIP",
            TradeType::Jsapi,
            SignType::Md5,
            chrono::Utc::now(),
        );
        o.api = Api::V3;
        o.state = OrderState::Prepaid;
        o.prepay_id = Some("wx-prepay".into());
        self.store.insert(&o).await.unwrap();
        no
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.store.snapshot()).unwrap()
    }

    async fn deliver(&self, wire: &Wire) -> wxpay_core::flow::NotifyReply {
        self.payments
            .handle_notify_v3(wire.headers(), &wire.body)
            .await
    }

    fn paid(&self) -> usize {
        self.events.paid.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_verified_payment_notify_pays_the_order_once_and_answers_204() {
    let w = World::new(true);
    let no = w.order("V3NOTIFY01", 990).await;
    let wire = w.wechat.payment_now("V3NOTIFY01", 990);

    let reply = w.deliver(&wire).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(reply.body.is_empty());
    assert!(
        matches!(reply.outcome, NotifyOutcome::Paid { late: false, .. }),
        "{reply:?}"
    );
    let order = w.store.get(&no).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(order.transaction_id.as_deref(), Some("42000V3NOTIFY01"));
    assert_eq!(
        order.time_end.as_deref(),
        Some("20260101123000"),
        "recorded in v2's form"
    );
    assert_eq!(w.paid(), 1);

    // WeChat delivers again: 204, nothing happens twice.
    let again = w.deliver(&wire).await;
    assert_eq!(again.status, 204);
    assert!(
        matches!(again.outcome, NotifyOutcome::Duplicate { .. }),
        "{again:?}"
    );
    assert_eq!(w.paid(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn v3_notifies_are_counted_by_kind_and_outcome() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let w = World::new(true);
    w.order("V3METRICS1", 990).await;
    let wire = w.wechat.payment_now("V3METRICS1", 990);
    assert_eq!(w.deliver(&wire).await.status, 204);
    assert_eq!(w.deliver(&wire).await.status, 204);
    let mut forged = wire.clone();
    let other = w.wechat.payment_now("V3METRICS1", 1);
    forged.set_header(
        "Wechatpay-Signature",
        other.header("Wechatpay-Signature").unwrap(),
    );
    assert_eq!(w.deliver(&forged).await.status, 401);

    let snap = snapshotter.snapshot().into_vec();
    let count = |kind, outcome| {
        crate::metrics::counter(
            &snap,
            wxpay_core::metrics::NOTIFY_TOTAL,
            &[("api", "v3"), ("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(count("payment", "paid"), 1);
    assert_eq!(count("payment", "duplicate"), 1);
    // Refused before the event was read: its kind is not known.
    assert_eq!(count("unknown", "rejected_bad_signature"), 1);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_payment_record_it_once() {
    let w = World::new(true);
    w.order("V3NOTIFY02", 990).await;
    // Signed by either key, as during the public-key migration.
    let a = w.wechat.payment_now("V3NOTIFY02", 990);
    let b = w.wechat.notify(
        "TRANSACTION.SUCCESS",
        &w.wechat.transaction("V3NOTIFY02", 990),
        w.wechat.api_v3_key(),
        "transaction",
        NOW - 5,
        true,
    );
    let (ra, rb) = tokio::join!(w.deliver(&a), w.deliver(&b));
    assert_eq!((ra.status, rb.status), (204, 204));
    let paid = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r.outcome, NotifyOutcome::Paid { .. }))
        .count();
    assert_eq!(paid, 1, "{ra:?} / {rb:?}");
    assert_eq!(w.paid(), 1);
}

#[tokio::test]
async fn every_bad_notify_is_refused_with_its_status_and_changes_nothing() {
    let w = World::new(true);
    w.order("V3NOTIFY03", 990).await;
    let wechat = &w.wechat;
    let good = wechat.payment_now("V3NOTIFY03", 990);
    let tx = wechat.transaction("V3NOTIFY03", 990);
    let other_key = ApiV3Key::new("anotherApiV3Key0123456789ABCDEFG").unwrap();

    let mut cases: Vec<(&str, Wire, u16)> = Vec::new();
    let mut forged = good.clone();
    let other = wechat.payment_now("V3NOTIFY03", 1);
    forged.set_header(
        "Wechatpay-Signature",
        other.header("Wechatpay-Signature").unwrap(),
    );
    cases.push(("forged signature", forged, 401));
    let mut missing = good.clone();
    missing.headers.retain(|(n, _)| n != "Wechatpay-Signature");
    cases.push(("missing signature", missing, 401));
    let mut serial = good.clone();
    serial.set_header(
        "Wechatpay-Serial",
        "7A1B2C3D4E5F60718293A4B5C6D7E8F901234567",
    );
    cases.push(("unknown serial", serial, 401));
    let mut probe = good.clone();
    probe.set_header("Wechatpay-Signature", "WECHATPAY/SIGNTEST/abcdef");
    cases.push(("signature probe", probe, 401));
    cases.push((
        "300 s old",
        wechat.notify(
            "TRANSACTION.SUCCESS",
            &tx,
            wechat.api_v3_key(),
            "transaction",
            NOW - 300,
            false,
        ),
        401,
    ));
    cases.push((
        "300 s ahead",
        wechat.notify(
            "TRANSACTION.SUCCESS",
            &tx,
            wechat.api_v3_key(),
            "transaction",
            NOW + 300,
            false,
        ),
        401,
    ));
    let mut altered = good.clone();
    let at = altered.body.iter().position(|&b| b == b'E').unwrap();
    altered.body[at] = b'F';
    cases.push(("body altered by one byte", altered, 401));
    let mut reserialised = good.clone();
    let pretty: Value = serde_json::from_slice(&good.body).unwrap();
    reserialised.body = serde_json::to_vec_pretty(&pretty).unwrap();
    cases.push(("body re-serialised", reserialised, 401));
    // A tampered GCM tag, signed afresh (only the APIv3 key can catch it).
    let mut envelope: Value = serde_json::from_slice(&good.body).unwrap();
    let ct = envelope["resource"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if ct.ends_with('A') { 'B' } else { 'A' };
    envelope["resource"]["ciphertext"] = json!(format!("{}{flipped}", &ct[..ct.len() - 1]));
    cases.push((
        "tampered GCM tag",
        wechat.signed(envelope.to_string().into_bytes(), NOW, false),
        500,
    ));
    cases.push((
        "wrong associated data",
        with_aad(
            wechat.notify(
                "TRANSACTION.SUCCESS",
                &tx,
                wechat.api_v3_key(),
                "refund",
                NOW,
                false,
            ),
            "transaction",
        ),
        500,
    ));
    cases.push((
        "wrong APIv3 key",
        wechat.notify(
            "TRANSACTION.SUCCESS",
            &tx,
            &other_key,
            "transaction",
            NOW,
            false,
        ),
        500,
    ));
    cases.push((
        "not JSON",
        wechat.signed(b"<xml>nope</xml>".to_vec(), NOW, false),
        400,
    ));
    let mut foreign_mch = tx.clone();
    foreign_mch["mchid"] = json!("1900000999");
    cases.push((
        "another mchid",
        wechat.notify(
            "TRANSACTION.SUCCESS",
            &foreign_mch,
            wechat.api_v3_key(),
            "transaction",
            NOW,
            false,
        ),
        400,
    ));
    let mut foreign_app = tx.clone();
    foreign_app["appid"] = json!("wx0000000000000000");
    cases.push((
        "another appid",
        wechat.notify(
            "TRANSACTION.SUCCESS",
            &foreign_app,
            wechat.api_v3_key(),
            "transaction",
            NOW,
            false,
        ),
        400,
    ));
    cases.push((
        "unknown order",
        wechat.payment_now("V3NOSUCHORDER", 990),
        404,
    ));

    let before = w.snapshot();
    for (what, wire, status) in cases {
        let reply = w.deliver(&wire).await;
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert!(!reply.is_success(), "{what}");
        let body: Value =
            serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("{what}: {}", reply.body));
        assert_eq!(body["code"], "FAIL", "{what}");
        assert_eq!(w.snapshot(), before, "{what} changed a stored order");
    }
    assert_eq!(w.paid(), 0);

    // The genuine one still pays.
    assert_eq!(w.deliver(&good).await.status, 204);
    assert_eq!(w.paid(), 1);
}

/// Rewrites the envelope's `associated_data` (the resource was encrypted
/// with another one), signed afresh.
fn with_aad(wire: Wire, aad: &str) -> Wire {
    let mut envelope: Value = serde_json::from_slice(&wire.body).unwrap();
    envelope["resource"]["associated_data"] = json!(aad);
    Wechat::new().signed(envelope.to_string().into_bytes(), NOW, false)
}

#[tokio::test]
async fn an_amount_or_currency_mismatch_is_flagged_and_not_paid() {
    let w = World::new(true);
    let no = w.order("V3NOTIFY04", 990).await;
    let reply = w.deliver(&w.wechat.payment_now("V3NOTIFY04", 1)).await;
    assert_eq!(reply.status, 400);
    assert!(matches!(
        reply.outcome,
        NotifyOutcome::Rejected(NotifyRejection::AmountMismatch {
            expected: Fen(990),
            received: Fen(1)
        })
    ));
    let mut tx = w.wechat.transaction("V3NOTIFY04", 990);
    tx["amount"]["currency"] = json!("USD");
    let reply = w
        .deliver(&w.wechat.notify(
            "TRANSACTION.SUCCESS",
            &tx,
            w.wechat.api_v3_key(),
            "transaction",
            NOW,
            false,
        ))
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        matches!(
            reply.outcome,
            NotifyOutcome::Rejected(NotifyRejection::CurrencyMismatch { .. })
        ),
        "{reply:?}"
    );
    let order = w.store.get(&no).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::Prepaid);
    assert_eq!(order.attention.len(), 2, "{:?}", order.attention);
    assert_eq!(w.paid(), 0);
}

#[tokio::test]
async fn each_resource_pays_only_the_order_it_names() {
    // Two notifies under one envelope id: deduplication is by the decrypted
    // business keys, never by the id.
    let w = World::new(true);
    let a = w.order("V3NOTIFY05", 990).await;
    let b = w.order("V3NOTIFY06", 500).await;
    assert_eq!(
        w.deliver(&w.wechat.payment_now("V3NOTIFY05", 990))
            .await
            .status,
        204
    );
    let second = w.deliver(&w.wechat.payment_now("V3NOTIFY06", 500)).await;
    assert!(
        matches!(second.outcome, NotifyOutcome::Paid { ref out_trade_no, .. } if *out_trade_no == b),
        "{second:?}"
    );
    assert_eq!(
        w.store
            .get(&a)
            .await
            .unwrap()
            .unwrap()
            .transaction_id
            .as_deref(),
        Some("42000V3NOTIFY05")
    );
    assert_eq!(
        w.store
            .get(&b)
            .await
            .unwrap()
            .unwrap()
            .transaction_id
            .as_deref(),
        Some("42000V3NOTIFY06")
    );
    assert_eq!(w.paid(), 2);
}

#[tokio::test]
async fn a_refund_notify_settles_the_ledger_once() {
    let w = World::new(true);
    let no = w.order("V3NOTIFY07", 990).await;
    assert_eq!(
        w.deliver(&w.wechat.payment_now("V3NOTIFY07", 990))
            .await
            .status,
        204
    );
    // The app's refund, accepted (as `refund` records it).
    let mut o = w.store.get(&no).await.unwrap().unwrap();
    let at = chrono::Utc::now();
    let patch = wxpay_core::flow::OrderPatch {
        refunds: vec![Refund {
            out_refund_no: "V3NOTIFY07-R1".into(),
            refund_fee: Fen(990),
            state: RefundState::Processing,
            refund_id: None,
            source: RefundSource::App,
            effect: wxpay_core::flow::Fulfilment::Pending,
            created_at: at,
            updated_at: at,
        }],
        ..Default::default()
    };
    w.store
        .transition(
            &wxpay_core::flow::Transition::new(&o, OrderState::Refunding, patch, at).unwrap(),
        )
        .await
        .unwrap();
    o = w.store.get(&no).await.unwrap().unwrap();
    assert_eq!(o.state, OrderState::Refunding);

    let resource = w
        .wechat
        .refund("V3NOTIFY07", "V3NOTIFY07-R1", 990, 990, "SUCCESS");
    let wire = w.wechat.notify(
        "REFUND.SUCCESS",
        &resource,
        w.wechat.api_v3_key(),
        "refund",
        NOW,
        true,
    );
    let reply = w.deliver(&wire).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(
        matches!(
            reply.outcome,
            NotifyOutcome::Refund {
                state: OrderState::Refunded,
                ..
            }
        ),
        "{reply:?}"
    );
    let o = w.store.get(&no).await.unwrap().unwrap();
    assert_eq!(o.refunded_fee, Fen(990));
    assert_eq!(o.refunds[0].state, RefundState::Success);
    assert_eq!(w.events.refunded.load(Ordering::SeqCst), 1);

    // Again: acknowledged, nothing new.
    let again = w.deliver(&wire).await;
    assert_eq!(again.status, 204);
    assert!(
        matches!(again.outcome, NotifyOutcome::RefundIgnored { .. }),
        "{again:?}"
    );
    assert_eq!(w.events.refunded.load(Ordering::SeqCst), 1);

    // For another merchant: refused, nothing changed.
    let before = w.snapshot();
    let mut foreign = resource.clone();
    foreign["mchid"] = json!("1900000999");
    let reply = w
        .deliver(&w.wechat.notify(
            "REFUND.SUCCESS",
            &foreign,
            w.wechat.api_v3_key(),
            "refund",
            NOW,
            true,
        ))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(w.snapshot(), before);
}

#[tokio::test]
async fn an_event_this_library_does_not_handle_is_acknowledged() {
    let w = World::new(true);
    let wire = w.wechat.notify(
        "PAYSCORE.USER_OPEN_SERVICE",
        &json!({"x": 1}),
        w.wechat.api_v3_key(),
        "payscore",
        NOW,
        false,
    );
    let before = w.snapshot();
    let reply = w.deliver(&wire).await;
    assert_eq!(reply.status, 204);
    assert!(
        matches!(reply.outcome, NotifyOutcome::Ignored { ref event_type } if event_type == "PAYSCORE.USER_OPEN_SERVICE")
    );
    assert_eq!(w.snapshot(), before);
}

#[tokio::test]
async fn the_notify_route_serves_v3_and_v2_alike() {
    let w = World::new(true);
    w.order("V3NOTIFY08", 990).await;
    let wire = w.wechat.payment_now("V3NOTIFY08", 990);
    let mut req = HttpIn::new("POST", "/notify", wire.body.clone());
    for (n, v) in &wire.headers {
        assert!(req.wants_header(n));
        req.add_header(n, v.as_bytes());
    }
    let out = http::handle(&w.payments, req).await;
    assert_eq!(out.status, 204);
    assert_eq!(w.paid(), 1);

    // A v2 XML notify still takes the v2 path (here: refused as unsigned).
    let out = http::handle(
        &w.payments,
        HttpIn::new(
            "POST",
            "/notify",
            b"<xml><return_code>SUCCESS</return_code></xml>".to_vec(),
        ),
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(
        String::from_utf8(out.body)
            .unwrap()
            .contains("<return_code><![CDATA[FAIL]]>")
    );

    // An oversized v3 body: 413 with v3's FAIL shape.
    let mut big = HttpIn::new("POST", "/notify", Vec::new()).with_body_too_large();
    big.add_header("Wechatpay-Signature", b"x");
    let out = http::handle(&w.payments, big).await;
    assert_eq!(out.status, 413);
    assert!(out.close);
}

#[tokio::test]
async fn without_api_v3_a_v3_notify_is_answered_500_and_retried() {
    let w = World::new(false);
    w.order("V3NOTIFY09", 990).await;
    let before = w.snapshot();
    let reply = w.deliver(&w.wechat.payment_now("V3NOTIFY09", 990)).await;
    assert_eq!(reply.status, 500);
    assert_eq!(w.snapshot(), before);
}
