use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::Utc;
use wxpay_core::{
    BoxError, Fen, OutTradeNo, RefundStatus, SignType,
    flow::RefundState,
    flow::*,
    notify,
    testkit::{payment_notify_params, refund_notify, sign_notify, signed_payment_notify},
};

use crate::stub::{Script, Stub};

struct Shop;

#[async_trait]
impl Checkout for Shop {
    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        #[derive(serde::Deserialize)]
        struct Buy {
            sku: String,
        }
        let openid = req
            .header("x-openid")
            .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        let price = match req.json::<Buy>()?.sku.as_str() {
            "vip" => Fen(990),
            _ => return Err(Rejection::bad_request("unknown sku")),
        };
        Ok(OrderDraft::jsapi(openid, "Shop-VIP", price).with_owner("user:1"))
    }
}

#[derive(Clone, Default)]
struct Counting {
    paid: Arc<AtomicUsize>,
    refunded: Arc<AtomicUsize>,
    attention: Arc<AtomicUsize>,
}

#[async_trait]
impl PaymentEvents for Counting {
    async fn on_paid(&self, _order: &Order) -> Result<(), BoxError> {
        // Long enough for concurrent duplicates to overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.paid.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_refunded(
        &self,
        _order: &Order,
        _r: &wxpay_core::flow::Refund,
    ) -> Result<(), BoxError> {
        self.refunded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_attention(&self, _order: &Order) {
        self.attention.fetch_add(1, Ordering::SeqCst);
    }
}

struct World {
    stub: Stub,
    store: Arc<MemoryStore>,
    events: Counting,
    payments: Payments,
}

async fn world_with(sign_type: SignType) -> World {
    let stub = Stub::start(sign_type).await;
    let store = Arc::new(MemoryStore::new());
    let events = Counting::default();
    let payments = Payments::builder(stub.config.clone())
        .client(stub.client())
        .store(store.clone())
        .checkout(Shop)
        .events(events.clone())
        .retry_backoff(Duration::from_millis(10))
        .close_after(Duration::ZERO)
        .build()
        .unwrap();
    World {
        stub,
        store,
        events,
        payments,
    }
}

async fn world() -> World {
    world_with(SignType::Md5).await
}

fn buy() -> CheckoutRequest {
    CheckoutRequest::new(r#"{"sku":"vip","total_fee":1}"#)
        .with_header("X-OpenID", "o-alice")
        .with_client_ip("203.0.113.9")
}

fn draft(no: &str) -> OrderDraft {
    OrderDraft::jsapi("o-alice", "Shop-VIP", Fen(990))
        .with_out_trade_no(OutTradeNo::new(no).unwrap())
}

impl World {
    fn paid(&self) -> usize {
        self.events.paid.load(Ordering::SeqCst)
    }
    async fn get(&self, no: &OutTradeNo) -> Order {
        self.payments.order(no).await.unwrap()
    }
    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.store.snapshot()).unwrap()
    }
    async fn prepaid(&self) -> Order {
        let out = self.payments.checkout(buy()).await.unwrap();
        self.get(&out.out_trade_no).await
    }
}

#[tokio::test]
async fn checkout_prices_on_the_server_and_stores_prepaid() {
    let w = world().await;
    let out = w.payments.checkout(buy()).await.unwrap();
    assert_eq!(out.total_fee, Fen(990));
    let pay = out.pay_params.clone().unwrap();
    let pay = pay.as_v2().expect("a v2 order is paid with v2 parameters");
    assert!(pay.verify(&w.stub.config.api_key));
    assert!(pay.package.starts_with("prepay_id=wx-prepay-"));

    let sent = w.stub.requests("/pay/unifiedorder");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].get("total_fee"),
        Some("990"),
        "the client's total_fee is ignored"
    );
    assert_eq!(sent[0].get("openid"), Some("o-alice"));
    assert_eq!(sent[0].get("spbill_create_ip"), Some("203.0.113.9"));
    assert_eq!(sent[0].get("out_trade_no"), Some(out.out_trade_no.as_str()));

    let order = w.get(&out.out_trade_no).await;
    assert_eq!(order.state, OrderState::Prepaid);
    assert_eq!(order.owner.as_deref(), Some("user:1"));
    assert!(order.prepay_id.is_some());
    let ttl = order.prepay_expires_at.unwrap() - Utc::now();
    assert!(ttl > chrono::Duration::minutes(119) && ttl <= chrono::Duration::minutes(120));
}

#[tokio::test]
async fn native_orders_get_a_code_url_and_no_pay_params() {
    let w = world().await;
    let native = OrderDraft::native("sku-qr", "Shop-QR", Fen(1990));
    let out = w.payments.create_order(native, None).await.unwrap();
    assert!(out.pay_params.is_none(), "{out:?}");
    assert!(out.code_url.as_deref().is_some_and(|u| !u.is_empty()));
    let sent = w.stub.requests("/pay/unifiedorder");
    assert_eq!(sent[0].get("trade_type"), Some("NATIVE"));
    assert_eq!(sent[0].get("product_id"), Some("sku-qr"));
    assert_eq!(sent[0].get("openid"), None);
}

#[tokio::test]
async fn rejected_checkouts_store_nothing() {
    let w = world().await;
    let e = w
        .payments
        .checkout(CheckoutRequest::new(r#"{"sku":"vip"}"#))
        .await
        .unwrap_err();
    assert!(matches!(&e, PaymentsError::Rejected(r) if r.kind == RejectionKind::Unauthorized));
    assert_eq!(e.http_status(), 401);
    let e = w
        .payments
        .checkout(CheckoutRequest::new(r#"{"sku":"gold"}"#).with_header("x-openid", "o"))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(w.store.is_empty());
    assert!(w.stub.requests("/pay/unifiedorder").is_empty());
}

#[tokio::test]
async fn unifiedorder_retries_reenter_with_the_same_number_and_fields() {
    let w = world().await;
    w.stub
        .script([Script::Business("SYSTEMERROR"), Script::Http500, Script::Ok]);
    let out = w.payments.checkout(buy()).await.unwrap();
    let sent = w.stub.requests("/pay/unifiedorder");
    assert_eq!(sent.len(), 3);
    let business = |p: &wxpay_core::Params| {
        let mut p = p.clone();
        p.remove("nonce_str");
        p.remove("sign");
        p
    };
    assert!(sent.iter().all(|p| business(p) == business(&sent[0])));
    assert_eq!(sent[0].get("out_trade_no"), Some(out.out_trade_no.as_str()));
    assert_eq!(w.get(&out.out_trade_no).await.state, OrderState::Prepaid);
}

#[tokio::test]
async fn unifiedorder_refused_for_good_fails_the_order() {
    let w = world().await;
    w.stub.script([Script::Business("INVALID_REQUEST")]);
    let e = w
        .payments
        .create_order(draft("FAIL1"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, PaymentsError::Wechat(_)));
    assert_eq!(w.stub.requests("/pay/unifiedorder").len(), 1);
    let no = OutTradeNo::new("FAIL1").unwrap();
    assert_eq!(w.get(&no).await.state, OrderState::Failed);

    // Retries exhausted: the outcome is unknown, the order stays CREATED.
    w.stub
        .script([Script::Http500, Script::Http500, Script::Http500]);
    w.payments
        .create_order(draft("UNKNOWN1"), None)
        .await
        .unwrap_err();
    let no = OutTradeNo::new("UNKNOWN1").unwrap();
    assert_eq!(w.get(&no).await.state, OrderState::Created);
    // Checking out the same draft again re-enters the order.
    let out = w
        .payments
        .create_order(draft("UNKNOWN1"), None)
        .await
        .unwrap();
    assert!(out.pay_params.is_some());
    assert_eq!(w.get(&no).await.state, OrderState::Prepaid);
    // ... and a different draft under that number is refused.
    let other = OrderDraft::jsapi("o-bob", "Shop-VIP", Fen(1)).with_out_trade_no(no.clone());
    assert!(matches!(
        w.payments.create_order(other, None).await,
        Err(PaymentsError::Invalid(_))
    ));
}

#[tokio::test]
async fn fifty_concurrent_duplicate_notifies_fulfil_once() {
    let w = world().await;
    let order = w.prepaid().await;
    let body = signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000001");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let p = w.payments.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            p.handle_notify(body.as_bytes()).await
        }));
    }
    let mut paid = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        assert!(reply.is_success(), "{reply:?}");
        assert_eq!(reply.body, notify::reply_success());
        match reply.outcome {
            NotifyOutcome::Paid { late: false, .. } => paid += 1,
            NotifyOutcome::Duplicate { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(paid, 1);
    assert_eq!(w.paid(), 1);
    let stored = w.get(&order.out_trade_no).await;
    assert_eq!(stored.state, OrderState::Paid);
    assert_eq!(
        stored.transaction_id.as_deref(),
        Some("4200000000000000000000000001")
    );
    assert_eq!(stored.cash_fee, Some(Fen(990)));
    assert!(matches!(stored.fulfilment, Fulfilment::Done { .. }));
    // A later duplicate changes nothing.
    let before = w.bytes();
    let reply = w.payments.handle_notify(body.as_bytes()).await;
    assert!(matches!(reply.outcome, NotifyOutcome::Duplicate { .. }));
    assert_eq!(w.bytes(), before);
    assert_eq!(w.paid(), 1);
}

#[tokio::test]
async fn refused_notifies_change_nothing_and_answer_fail() {
    let w = world().await;
    let order = w.prepaid().await;
    let c = &w.stub.config;
    let good = payment_notify_params(c, &order, "4200000000000000000000000002");

    let mut forged = xml_params(&sign_notify(c, good.clone(), SignType::Md5));
    forged.insert("total_fee", "1");
    let mut wrong_key = c.clone();
    wrong_key.api_key = wxpay_core::ApiKey::new("another-key-another-key-another-k");
    let mut foreign_app = good.clone();
    foreign_app.insert("appid", "wx-someone-else");
    let mut foreign_mch = good.clone();
    foreign_mch.insert("mch_id", "999");
    let mut cheap = good.clone();
    cheap.insert("total_fee", "1");
    cheap.insert("cash_fee", "1");
    let mut unknown = good.clone();
    unknown.insert("out_trade_no", "NOSUCHORDER");
    let mut no_sign = good.clone();
    no_sign.remove("sign");
    let return_fail =
        "<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>".to_owned();

    let cases: Vec<(&str, String, NotifyRejection)> = vec![
        (
            "forged",
            wxpay_core::xml::to_xml(&forged),
            NotifyRejection::BadSignature,
        ),
        (
            "wrong key",
            sign_notify(&wrong_key, good.clone(), SignType::Md5),
            NotifyRejection::BadSignature,
        ),
        (
            "hmac instead of md5",
            sign_notify(c, good.clone(), SignType::HmacSha256),
            NotifyRejection::BadSignature,
        ),
        (
            "unsigned",
            wxpay_core::xml::to_xml(&no_sign),
            NotifyRejection::BadSignature,
        ),
        (
            "foreign appid",
            sign_notify(c, foreign_app, SignType::Md5),
            NotifyRejection::WrongMerchant,
        ),
        (
            "foreign mch_id",
            sign_notify(c, foreign_mch, SignType::Md5),
            NotifyRejection::WrongMerchant,
        ),
        (
            "wrong amount",
            sign_notify(c, cheap, SignType::Md5),
            NotifyRejection::AmountMismatch {
                expected: Fen(990),
                received: Fen(1),
            },
        ),
        (
            "unknown order",
            sign_notify(c, unknown.clone(), SignType::Md5),
            NotifyRejection::UnknownOrder,
        ),
        (
            // no oracle for which order numbers exist: a forged notify for
            // an unknown order is a bad signature, like any forged notify
            "unknown order, forged",
            sign_notify(&wrong_key, unknown.clone(), SignType::Md5),
            NotifyRejection::BadSignature,
        ),
        (
            "malformed",
            "<xml><a>".to_owned(),
            NotifyRejection::Malformed,
        ),
        (
            "doctype",
            "<!DOCTYPE x [<!ENTITY e 'x'>]><xml><a>&e;</a></xml>".to_owned(),
            NotifyRejection::Malformed,
        ),
        ("return FAIL", return_fail, NotifyRejection::ReturnFail),
    ];
    let mut before = w.bytes();
    for (name, body, why) in cases {
        let reply = w.payments.handle_notify(body.as_bytes()).await;
        assert!(!reply.is_success(), "{name}: {reply:?}");
        assert!(
            reply
                .body
                .contains("<return_code><![CDATA[FAIL]]></return_code>"),
            "{name}"
        );
        let flagged = matches!(why, NotifyRejection::AmountMismatch { .. });
        assert_eq!(reply.outcome, NotifyOutcome::Rejected(why), "{name}");
        if flagged {
            // A verified notify with another amount is recorded as an
            // attention case; nothing else changes.
            let orders = w.store.snapshot();
            let flags: Vec<_> = orders.iter().flat_map(|o| &o.attention).collect();
            assert_eq!(flags.len(), 1, "{name}: {flags:?}");
            assert_eq!(
                flags[0].kind,
                wxpay_core::flow::AttentionKind::AmountMismatch
            );
            assert_eq!(w.events.attention.load(Ordering::SeqCst), 1, "{name}");
            let unflagged: Vec<Order> = orders
                .into_iter()
                .map(|mut o| {
                    if !o.attention.is_empty() {
                        o.attention.clear();
                        o.version -= 1;
                    }
                    o
                })
                .collect();
            let was: Vec<Order> = serde_json::from_slice(&before).unwrap();
            let same = unflagged.iter().zip(&was).all(|(a, b)| {
                Order {
                    updated_at: b.updated_at,
                    ..a.clone()
                } == *b
            });
            assert!(same, "{name}: only the flag may change");
            before = w.bytes();
        } else {
            assert_eq!(w.bytes(), before, "{name}: the store changed");
        }
    }
    assert_eq!(w.paid(), 0);
    // The genuine one still works afterwards.
    let reply = w
        .payments
        .handle_notify(sign_notify(c, good, SignType::Md5).as_bytes())
        .await;
    assert!(matches!(reply.outcome, NotifyOutcome::Paid { .. }));
    assert_eq!(w.paid(), 1);
}

fn xml_params(body: &str) -> wxpay_core::Params {
    wxpay_core::xml::parse(body.as_bytes()).unwrap()
}

#[tokio::test]
async fn failed_payment_notify_records_nothing_and_answers_success() {
    let w = world().await;
    let order = w.prepaid().await;
    let mut p = payment_notify_params(&w.stub.config, &order, "");
    p.insert("result_code", "FAIL");
    p.insert("err_code", "NOTENOUGH");
    let before = w.bytes();
    let reply = w
        .payments
        .handle_notify(sign_notify(&w.stub.config, p, SignType::Md5).as_bytes())
        .await;
    assert!(reply.is_success());
    assert!(matches!(reply.outcome, NotifyOutcome::PaymentFailed { .. }));
    assert_eq!(w.bytes(), before);
}

#[tokio::test]
async fn hmac_notify_without_sign_type_is_verified_with_the_orders_algorithm() {
    let w = world_with(SignType::HmacSha256).await;
    let order = w.prepaid().await;
    assert_eq!(order.sign_type, SignType::HmacSha256);
    let body = signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000003");
    assert!(!body.contains("sign_type"));
    let reply = w.payments.handle_notify(body.as_bytes()).await;
    assert!(
        matches!(reply.outcome, NotifyOutcome::Paid { .. }),
        "{reply:?}"
    );
}

#[tokio::test]
async fn notify_that_overtakes_unifiedorder_wins() {
    let w = world().await;
    w.stub.script([Script::Delay(Duration::from_millis(400))]);
    let p = w.payments.clone();
    let create = tokio::spawn(async move { p.create_order(draft("RACE1"), None).await });
    let no = OutTradeNo::new("RACE1").unwrap();
    let order = loop {
        if let Some(o) = w.store.get(&no).await.unwrap() {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(order.state, OrderState::Created);
    let reply = w
        .payments
        .handle_notify(
            signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000004")
                .as_bytes(),
        )
        .await;
    assert!(matches!(
        reply.outcome,
        NotifyOutcome::Paid { late: false, .. }
    ));
    let out = create.await.unwrap().unwrap();
    assert!(
        out.pay_params.is_none(),
        "a paid order gets nothing to pay again"
    );
    let stored = w.get(&no).await;
    assert_eq!(
        stored.state,
        OrderState::Paid,
        "unifiedorder's late answer must not undo the payment"
    );
    assert_eq!(w.paid(), 1);
}

#[tokio::test]
async fn lost_notify_is_recovered_by_status_and_rate_limited() {
    let w = world().await;
    let order = w.prepaid().await;
    let no = &order.out_trade_no;
    // Unpaid: one orderquery, then rate-limited.
    assert_eq!(
        w.payments.status(no).await.unwrap().state,
        OrderState::Prepaid
    );
    assert_eq!(
        w.payments.status(no).await.unwrap().state,
        OrderState::Prepaid
    );
    assert_eq!(w.stub.requests("/pay/orderquery").len(), 1);
    assert!(w.get(no).await.synced_at.is_some());
    // Paid at WeChat, notify lost: a forced sync records it and fulfils.
    w.stub.set_trade_state(no.as_str(), "SUCCESS");
    let o = w.payments.sync(no, true).await.unwrap();
    assert_eq!(o.state, OrderState::Paid);
    assert_eq!(
        o.transaction_id.as_deref(),
        Some(format!("42000{no}").as_str())
    );
    assert_eq!(w.paid(), 1);
    // Paid orders are answered from the store.
    w.payments.status(no).await.unwrap();
    assert_eq!(w.stub.requests("/pay/orderquery").len(), 2);
    // The notify arriving at last is a duplicate.
    let reply = w
        .payments
        .handle_notify(signed_payment_notify(&w.stub.config, &o, &format!("42000{no}")).as_bytes())
        .await;
    assert!(matches!(reply.outcome, NotifyOutcome::Duplicate { .. }));
    assert_eq!(w.paid(), 1);
}

#[tokio::test]
async fn sync_applies_closed_and_payerror() {
    let w = world().await;
    let a = w.prepaid().await;
    let b = w.prepaid().await;
    w.stub.set_trade_state(a.out_trade_no.as_str(), "CLOSED");
    w.stub.set_trade_state(b.out_trade_no.as_str(), "PAYERROR");
    assert_eq!(
        w.payments.sync(&a.out_trade_no, true).await.unwrap().state,
        OrderState::Closed
    );
    assert_eq!(
        w.payments.sync(&b.out_trade_no, true).await.unwrap().state,
        OrderState::Failed
    );
    assert_eq!(w.paid(), 0);
}

#[tokio::test]
async fn payment_after_close_is_recorded_and_flagged() {
    let w = world().await;
    let order = w.prepaid().await;
    let closed = w.payments.close(&order.out_trade_no).await.unwrap();
    assert_eq!(closed.state, OrderState::Closed);
    assert_eq!(w.stub.requests("/pay/closeorder").len(), 1);
    let reply = w
        .payments
        .handle_notify(
            signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000005")
                .as_bytes(),
        )
        .await;
    assert!(reply.is_success());
    assert!(matches!(
        reply.outcome,
        NotifyOutcome::Paid { late: true, .. }
    ));
    let stored = w.get(&order.out_trade_no).await;
    assert_eq!(stored.state, OrderState::Paid);
    assert_eq!(stored.attention.len(), 1, "{:?}", stored.attention);
    assert_eq!(
        stored.attention[0].kind,
        wxpay_core::flow::AttentionKind::LatePayment
    );
    assert!(stored.attention[0].detail.contains("CLOSED"));
    // The default policy holds the goods for a person.
    assert_eq!(stored.fulfilment, Fulfilment::Held);
    assert_eq!(w.paid(), 0);
    let released = w.payments.release_hold(&order.out_trade_no).await.unwrap();
    assert!(matches!(released.fulfilment, Fulfilment::Done { .. }));
    assert_eq!(w.events.attention.load(Ordering::SeqCst), 1);
    assert_eq!(w.paid(), 1);
}

#[tokio::test]
async fn close_of_an_order_paid_meanwhile_records_the_payment() {
    let w = world().await;
    let order = w.prepaid().await;
    w.stub.state.lock().unwrap().close_err = Some("ORDERPAID");
    w.stub
        .set_trade_state(order.out_trade_no.as_str(), "SUCCESS");
    let e = w.payments.close(&order.out_trade_no).await.unwrap_err();
    assert!(
        matches!(
            e,
            PaymentsError::InvalidState {
                state: OrderState::Paid,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.http_status(), 409);
    assert_eq!(w.paid(), 1);
    // Closing a paid order is refused without asking WeChat.
    assert!(w.payments.close(&order.out_trade_no).await.is_err());
    assert_eq!(w.stub.requests("/pay/closeorder").len(), 1);
}

#[tokio::test]
async fn crash_between_paid_and_fulfilment_is_repaired_by_the_reconciler() {
    let w = world().await;
    let order = w.prepaid().await;
    // The process "died" right after recording the payment.
    let t = Transition::new(&order, OrderState::Paid, OrderPatch::default(), Utc::now()).unwrap();
    assert!(matches!(
        w.store.transition(&t).await.unwrap(),
        TransitionOutcome::Applied(_)
    ));
    let r = w.payments.reconciler(Duration::from_secs(60));
    let report = r.run_once().await.unwrap();
    assert_eq!(report.fulfilled, 1);
    assert_eq!(w.paid(), 1);
    r.run_once().await.unwrap();
    assert_eq!(w.paid(), 1);

    // A live claim (another instance running on_paid) blocks; an expired
    // one (that instance died) does not.
    let live = w.prepaid().await;
    let dead = w.prepaid().await;
    for o in [&live, &dead] {
        let t = Transition::new(o, OrderState::Paid, OrderPatch::default(), Utc::now()).unwrap();
        w.store.transition(&t).await.unwrap();
    }
    let lease = Duration::from_secs(300);
    let long_ago = Utc::now() - chrono::Duration::seconds(600);
    assert!(
        w.store
            .claim_fulfilment(&live.out_trade_no, Utc::now(), lease)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        w.store
            .claim_fulfilment(&dead.out_trade_no, long_ago, lease)
            .await
            .unwrap()
            .is_some()
    );
    let report = r.run_once().await.unwrap();
    assert_eq!(report.fulfilled, 1);
    assert_eq!(w.paid(), 2);
    assert!(matches!(
        w.get(&live.out_trade_no).await.fulfilment,
        Fulfilment::Claimed { .. }
    ));
    assert!(matches!(
        w.get(&dead.out_trade_no).await.fulfilment,
        Fulfilment::Done { .. }
    ));
}

#[tokio::test]
async fn reconciler_closes_expired_orders_and_recovers_lost_payments() {
    let w = world().await;
    let old = Utc::now() - chrono::Duration::hours(3);
    let mut expired = Order::new(
        OutTradeNo::new("OLD1").unwrap(),
        Fen(5),
        "x",
        wxpay_core::TradeType::Jsapi,
        SignType::Md5,
        old,
    );
    expired.state = OrderState::Prepaid;
    expired.prepay_id = Some("wx-old".into());
    expired.prepay_expires_at = Some(old + chrono::Duration::hours(2));
    w.store.insert(&expired).await.unwrap();
    let mut lost = Order::new(
        OutTradeNo::new("LOST1").unwrap(),
        Fen(1),
        "x",
        wxpay_core::TradeType::Jsapi,
        SignType::Md5,
        Utc::now() - chrono::Duration::minutes(10),
    );
    lost.state = OrderState::Prepaid;
    lost.prepay_expires_at = Some(Utc::now() + chrono::Duration::minutes(110));
    w.store.insert(&lost).await.unwrap();
    w.stub.set_trade_state("LOST1", "SUCCESS");
    let fresh = w.prepaid().await;

    let report = w
        .payments
        .reconciler(Duration::from_secs(60))
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.synced, 2, "{report:?}");
    assert_eq!(report.closed, 1);
    assert_eq!(report.paid, 1);
    assert_eq!(w.get(&expired.out_trade_no).await.state, OrderState::Closed);
    assert_eq!(w.get(&lost.out_trade_no).await.state, OrderState::Paid);
    assert_eq!(w.get(&fresh.out_trade_no).await.state, OrderState::Prepaid);
    assert_eq!(w.paid(), 1);
}

#[tokio::test]
async fn refunds_settle_through_the_refund_notify() {
    let w = world().await;
    let order = w.prepaid().await;
    let no = order.out_trade_no.clone();
    w.payments
        .handle_notify(
            signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000006")
                .as_bytes(),
        )
        .await;
    // Illegal refunds.
    assert!(matches!(
        w.payments.refund(&no, "R0", Fen(0)).await,
        Err(PaymentsError::Invalid(_))
    ));
    assert!(matches!(
        w.payments.refund(&no, "R0", Fen(991)).await,
        Err(PaymentsError::Invalid(_))
    ));

    let o = w.payments.refund(&no, "R1", Fen(300)).await.unwrap();
    assert_eq!(o.order.state, OrderState::Refunding);
    assert_eq!(o.refund.state, RefundState::Processing);
    assert_eq!(o.refund.refund_id.as_deref(), Some("50000000000001"));
    // Several refunds may be in flight; their sum never exceeds the amount.
    let r2 = w.payments.refund(&no, "R2", Fen(690)).await.unwrap();
    assert_eq!(r2.order.refundable(), Fen(0));
    assert!(matches!(
        w.payments.refund(&no, "R9", Fen(1)).await,
        Err(PaymentsError::Invalid(_))
    ));
    // The same number with another amount is refused; the same refund again
    // is answered as recorded (accepted already: nothing sent).
    assert!(matches!(
        w.payments.refund(&no, "R1", Fen(301)).await,
        Err(PaymentsError::Invalid(_))
    ));
    let again = w.payments.refund(&no, "R1", Fen(300)).await.unwrap();
    assert_eq!(again.refund.state, RefundState::Processing);
    assert_eq!(w.stub.requests("/secapi/pay/refund").len(), 2);

    let paid = w.get(&no).await;
    let body = refund_notify(&w.stub.config, &paid, "R1", Fen(300), RefundStatus::Success);
    let reply = w.payments.handle_refund_notify(body.as_bytes()).await;
    assert!(reply.is_success(), "{reply:?}");
    let o = w.get(&no).await;
    assert_eq!(o.state, OrderState::Refunding, "R2 is still in flight");
    assert_eq!(o.refunded_fee, Fen(300));
    assert_eq!(o.refund("R1").unwrap().state, RefundState::Success);
    assert!(matches!(
        o.refund("R1").unwrap().effect,
        Fulfilment::Done { .. }
    ));
    // Duplicate refund notify: nothing more.
    let reply = w.payments.handle_refund_notify(body.as_bytes()).await;
    assert!(matches!(reply.outcome, NotifyOutcome::RefundIgnored { .. }));
    assert_eq!(w.get(&no).await.refunded_fee, Fen(300));

    // A closed refund frees its amount.
    let body = refund_notify(
        &w.stub.config,
        &paid,
        "R2",
        Fen(690),
        RefundStatus::RefundClose,
    );
    w.payments.handle_refund_notify(body.as_bytes()).await;
    let o = w.get(&no).await;
    assert_eq!(o.state, OrderState::PartiallyRefunded);
    assert_eq!(o.refunded_fee, Fen(300));

    // The rest, refunded.
    w.payments.refund(&no, "R3", Fen(690)).await.unwrap();
    let body = refund_notify(&w.stub.config, &paid, "R3", Fen(690), RefundStatus::Success);
    w.payments.handle_refund_notify(body.as_bytes()).await;
    let o = w.get(&no).await;
    assert_eq!(o.state, OrderState::Refunded);
    assert_eq!(o.refunded_fee, Fen(990));
    assert_eq!(w.events.refunded.load(Ordering::SeqCst), 2);
    // A late payment notify does not move a refunded order back.
    let reply = w
        .payments
        .handle_notify(
            signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000006")
                .as_bytes(),
        )
        .await;
    assert!(matches!(reply.outcome, NotifyOutcome::Duplicate { .. }));
    assert_eq!(w.get(&no).await.state, OrderState::Refunded);

    // Nothing is left of a refunded order; an unpaid one has nothing.
    assert!(matches!(
        w.payments.refund(&no, "R4", Fen(1)).await,
        Err(PaymentsError::Invalid(_))
    ));
    let unpaid = w.prepaid().await;
    assert!(matches!(
        w.payments.refund(&unpaid.out_trade_no, "R5", Fen(1)).await,
        Err(PaymentsError::InvalidState {
            state: OrderState::Prepaid,
            ..
        })
    ));
}

#[tokio::test]
async fn refused_refund_restores_the_order() {
    let w = world().await;
    let order = w.prepaid().await;
    w.payments
        .handle_notify(
            signed_payment_notify(&w.stub.config, &order, "4200000000000000000000000007")
                .as_bytes(),
        )
        .await;
    w.stub.state.lock().unwrap().refund_err = Some("NOTENOUGH");
    assert!(
        w.payments
            .refund(&order.out_trade_no, "R1", Fen(10))
            .await
            .is_err()
    );
    let o = w.get(&order.out_trade_no).await;
    assert_eq!(o.state, OrderState::Paid);
    // Recorded as refused: nothing refunded, the whole amount free again.
    assert_eq!(o.refund("R1").unwrap().state, RefundState::Refused);
    assert_eq!(o.refundable(), o.total_fee);
    // The same number may be sent again (WeChat's rule for a failed refund).
    w.stub.state.lock().unwrap().refund_err = None;
    let again = w
        .payments
        .refund(&order.out_trade_no, "R1", Fen(10))
        .await
        .unwrap();
    assert_eq!(again.refund.state, RefundState::Processing);
    assert_eq!(again.order.state, OrderState::Refunding);
}

#[tokio::test]
async fn login_keeps_the_session_key_secret() {
    let w = world().await;
    let s = w.payments.login("code123").await.unwrap();
    assert_eq!(s.openid, "o-code123");
    assert_eq!(s.unionid.as_deref(), Some("u-1"));
    assert!(!format!("{s:?}").contains("c2Vzc2lvbmtleQ"));
}

#[tokio::test]
async fn unknown_orders_are_not_found() {
    let w = world().await;
    let no = OutTradeNo::new("NOPE").unwrap();
    assert_eq!(w.payments.status(&no).await.unwrap_err().http_status(), 404);
    assert!(matches!(
        w.payments.close(&no).await,
        Err(PaymentsError::NotFound(_))
    ));
}

struct Flaky {
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl PaymentEvents for Flaky {
    async fn on_paid(&self, _order: &Order) -> Result<(), BoxError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("grant service down".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn failed_on_paid_is_retried_after_the_lease() {
    let stub = Stub::start(SignType::Md5).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let payments = Payments::builder(stub.config.clone())
        .client(stub.client())
        .checkout(Shop)
        .events(Flaky {
            calls: calls.clone(),
        })
        .fulfilment_lease(Duration::from_millis(200))
        .build()
        .unwrap();
    let out = payments.checkout(buy()).await.unwrap();
    let order = payments.order(&out.out_trade_no).await.unwrap();
    let reply = payments
        .handle_notify(
            signed_payment_notify(&stub.config, &order, "4200000000000000000000000008").as_bytes(),
        )
        .await;
    assert!(
        reply.is_success(),
        "the payment is recorded even if on_paid fails"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let r = payments.reconciler(Duration::from_secs(60));
    r.run_once().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "lease still live");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(r.run_once().await.unwrap().fulfilled, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    r.run_once().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Sleeps `delay` on its first call, then answers at once.
struct SlowOnce {
    calls: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    delay: Duration,
}

#[async_trait]
impl PaymentEvents for SlowOnce {
    async fn on_paid(&self, _order: &Order) -> Result<(), BoxError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            tokio::time::sleep(self.delay).await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn an_on_paid_over_its_budget_is_cancelled_and_retried() {
    let stub = Stub::start(SignType::Md5).await;
    let (calls, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let payments = Payments::builder(stub.config.clone())
        .client(stub.client())
        .checkout(Shop)
        .events(SlowOnce {
            calls: calls.clone(),
            finished: finished.clone(),
            delay: Duration::from_secs(30),
        })
        // budget: 80 % of the lease
        .fulfilment_lease(Duration::from_millis(250))
        .build()
        .unwrap();
    let out = payments.checkout(buy()).await.unwrap();
    let order = payments.order(&out.out_trade_no).await.unwrap();
    let started = std::time::Instant::now();
    let reply = payments
        .handle_notify(
            signed_payment_notify(&stub.config, &order, "4200000000000000000000000009").as_bytes(),
        )
        .await;
    assert!(reply.is_success(), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the notify waited for the slow effect"
    );
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    let stored = payments.order(&out.out_trade_no).await.unwrap();
    assert!(
        matches!(stored.fulfilment, Fulfilment::Claimed { .. }),
        "a cancelled effect is not marked done: {:?}",
        stored.fulfilment
    );
    // After the lease the reconciler runs it again; this time it is quick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = payments.reconciler(Duration::from_secs(60));
    assert_eq!(r.run_once().await.unwrap().fulfilled, 1);
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (2, 1)
    );
    let stored = payments.order(&out.out_trade_no).await.unwrap();
    assert!(matches!(stored.fulfilment, Fulfilment::Done { .. }));
}

/// Behind a reverse proxy: the payer's address is read from the proxy's
/// `X-Forwarded-For` only when the peer is a configured proxy; otherwise
/// the headers are the client's own claims and the peer is the payer.
#[tokio::test]
async fn the_payers_address_comes_from_trusted_proxies_only() {
    use wxpay_core::flow::{
        TrustedProxies,
        http::{self, HttpIn},
    };
    let stub = Stub::start(SignType::Md5).await;
    let build = |proxies: Option<TrustedProxies>| {
        let mut b = Payments::builder(stub.config.clone())
            .client(stub.client())
            .store(Arc::new(MemoryStore::new()))
            .checkout(Shop);
        if let Some(p) = proxies {
            b = b.trusted_proxies(p);
        }
        b.build().unwrap()
    };
    let checkout = |peer: &str| {
        HttpIn::new("POST", "/orders", br#"{"sku":"vip"}"#.to_vec())
            .with_header("X-OpenID", "o-alice")
            .with_header("X-Forwarded-For", "1.1.1.1, 198.51.100.4, 10.0.0.2")
            .with_client_ip(peer)
    };
    let last_ip = || {
        let sent = stub.requests("/pay/unifiedorder");
        sent.last()
            .unwrap()
            .get("spbill_create_ip")
            .unwrap()
            .to_owned()
    };

    let behind = build(Some(TrustedProxies::parse(["10.0.0.0/8"]).unwrap()));
    assert_eq!(
        http::handle(&behind, checkout("10.0.0.3")).await.status,
        201
    );
    assert_eq!(
        last_ip(),
        "198.51.100.4",
        "the rightmost address no proxy added"
    );
    // A client reaching the app directly cannot choose its address.
    assert_eq!(
        http::handle(&behind, checkout("203.0.113.9")).await.status,
        201
    );
    assert_eq!(last_ip(), "203.0.113.9");
    // Without the setting, forwarding headers are never believed.
    let direct = build(None);
    assert_eq!(
        http::handle(&direct, checkout("10.0.0.3")).await.status,
        201
    );
    assert_eq!(last_ip(), "10.0.0.3");

    // An app that knows better sets it on the draft.
    let draft = OrderDraft::jsapi("o-alice", "Shop-VIP", Fen(990)).with_client_ip("192.0.2.77");
    direct.create_order(draft, Some("10.0.0.3")).await.unwrap();
    assert_eq!(last_ip(), "192.0.2.77");
    // None known at all: 127.0.0.1 (logged once).
    direct
        .create_order(OrderDraft::jsapi("o-alice", "Shop-VIP", Fen(990)), None)
        .await
        .unwrap();
    assert_eq!(last_ip(), "127.0.0.1");
}
