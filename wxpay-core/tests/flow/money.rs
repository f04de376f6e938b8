//! The rare money paths of issue 14, one test each: each of these lost or
//! doubled money before the refund ledger and the versioned
//! compare-and-set.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use wxpay_core::{
    BoxError, Fen, OutTradeNo, RefundStatus, SignType,
    flow::*,
    testkit::{payment_notify_params, refund_notify, sign_notify, signed_payment_notify},
};

use crate::stub::Stub;

#[derive(Clone, Default)]
struct Events {
    paid: Arc<AtomicUsize>,
    refunded: Arc<AtomicUsize>,
    attention: Arc<AtomicUsize>,
    fail_paid: Arc<AtomicBool>,
    fail_refunded: Arc<AtomicBool>,
}

#[async_trait]
impl PaymentEvents for Events {
    async fn on_paid(&self, _order: &Order) -> Result<(), BoxError> {
        if self.fail_paid.load(Ordering::SeqCst) {
            return Err("grant service down".into());
        }
        self.paid.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_refunded(&self, _order: &Order, _r: &Refund) -> Result<(), BoxError> {
        if self.fail_refunded.load(Ordering::SeqCst) {
            return Err("revoke service down".into());
        }
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
    events: Events,
    payments: Payments,
}

/// Leases short enough to run out within a test (the waits below are
/// lower bounds: a sleep lasts at least as long as asked).
const LEASE: Duration = Duration::from_millis(40);

async fn world_with(
    sign_type: SignType,
    tweak: impl FnOnce(PaymentsBuilder) -> PaymentsBuilder,
) -> World {
    let stub = Stub::start(sign_type).await;
    let store = Arc::new(MemoryStore::new());
    let events = Events::default();
    let builder = Payments::builder(stub.config.clone())
        .client(stub.client())
        .store(store.clone())
        .events(events.clone())
        .retry_backoff(Duration::from_millis(1))
        .fulfilment_lease(LEASE)
        .close_after(Duration::ZERO);
    World {
        payments: tweak(builder).build().unwrap(),
        stub,
        store,
        events,
    }
}

async fn world() -> World {
    world_with(SignType::Md5, |b| b).await
}

impl World {
    async fn get(&self, no: &OutTradeNo) -> Order {
        self.payments.order(no).await.unwrap()
    }
    async fn prepaid(&self) -> Order {
        let out = self
            .payments
            .create_order(OrderDraft::jsapi("o-alice", "VIP", Fen(990)), None)
            .await
            .unwrap();
        self.get(&out.out_trade_no).await
    }
    async fn paid(&self) -> Order {
        let o = self.prepaid().await;
        let tid = format!("4200{}", o.out_trade_no);
        let reply = self
            .payments
            .handle_notify(signed_payment_notify(&self.stub.config, &o, &tid).as_bytes())
            .await;
        assert!(reply.is_success(), "{reply:?}");
        self.get(&o.out_trade_no).await
    }
    async fn refund_notify(
        &self,
        o: &Order,
        no: &str,
        fee: u64,
        status: RefundStatus,
    ) -> NotifyReply {
        let body = refund_notify(&self.stub.config, o, no, Fen(fee), status);
        self.payments.handle_refund_notify(body.as_bytes()).await
    }
    fn reconciler(&self) -> Reconciler {
        self.payments
            .reconciler(Duration::from_secs(60))
            .quiet_after(Duration::ZERO)
    }
    fn count(c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }
}

/// Case 1: `on_paid` failed, the order was refunded, the lease ran out:
/// the goods are not granted for money that went back.
#[tokio::test]
async fn no_goods_for_a_refunded_order_after_on_paid_failed() {
    let w = world().await;
    w.events.fail_paid.store(true, Ordering::SeqCst);
    let o = w.paid().await;
    assert!(
        matches!(o.fulfilment, Fulfilment::Claimed { .. }),
        "{:?}",
        o.fulfilment
    );
    w.payments
        .refund(&o.out_trade_no, "R1", Fen(990))
        .await
        .unwrap();
    w.refund_notify(&o, "R1", 990, RefundStatus::Success).await;
    assert_eq!(w.get(&o.out_trade_no).await.state, OrderState::Refunded);
    // The grant service is back and the lease is over.
    w.events.fail_paid.store(false, Ordering::SeqCst);
    tokio::time::sleep(LEASE * 3).await;
    w.reconciler().run_once().await.unwrap();
    let dup = signed_payment_notify(&w.stub.config, &o, &format!("4200{}", o.out_trade_no));
    assert!(w.payments.handle_notify(dup.as_bytes()).await.is_success());
    assert_eq!(
        World::count(&w.events.paid),
        0,
        "on_paid ran for a refunded order"
    );
    // `on_refunded` did run: the app takes back whatever it may have granted.
    assert_eq!(World::count(&w.events.refunded), 1);

    // A refund in flight blocks it too, until it is settled: closed, the
    // money is the merchant's again and the goods are due.
    w.events.fail_paid.store(true, Ordering::SeqCst);
    let o = w.paid().await;
    w.payments
        .refund(&o.out_trade_no, "R2", Fen(990))
        .await
        .unwrap();
    w.events.fail_paid.store(false, Ordering::SeqCst);
    tokio::time::sleep(LEASE * 3).await;
    w.reconciler().run_once().await.unwrap();
    assert_eq!(
        World::count(&w.events.paid),
        0,
        "on_paid ran with a refund in flight"
    );
    w.refund_notify(&o, "R2", 990, RefundStatus::RefundClose)
        .await;
    let back = w.get(&o.out_trade_no).await;
    assert_eq!(
        (back.state, back.refundable()),
        (OrderState::Paid, Fen(990))
    );
    w.reconciler().run_once().await.unwrap();
    assert_eq!(World::count(&w.events.paid), 1);
}

/// Case 1b: orderquery answers `REFUND` for an order whose notify was
/// lost: the payment and its refunds are recorded in one write, and the
/// goods are not granted.
#[tokio::test]
async fn orderquery_refund_records_the_refunds_and_grants_nothing() {
    let w = world().await;
    let o = w.prepaid().await;
    let no = o.out_trade_no.as_str();
    w.stub.set_trade_state(no, "REFUND");
    w.stub.set_refunds(no, &[("DESK-9", 990, "SUCCESS")]);
    let after = w.payments.sync(&o.out_trade_no, true).await.unwrap();
    assert_eq!(after.state, OrderState::Refunded);
    assert_eq!(after.refunded_fee, Fen(990));
    let r = after.refund("DESK-9").unwrap();
    assert_eq!(
        (r.state, r.source),
        (RefundState::Success, RefundSource::Found)
    );
    assert_eq!(after.attention[0].kind, AttentionKind::RefundFound);
    assert_eq!(World::count(&w.events.paid), 0);
    assert_eq!(World::count(&w.events.refunded), 1);
    assert_eq!(World::count(&w.events.attention), 1);
}

/// Case 2: WeChat took the refund, but its answer cannot be believed (a
/// wrong signature, a malformed field, an HTTP 500, an unknown code): the
/// refund stays reserved as UNKNOWN, so the customer cannot be refunded
/// twice, and refundquery settles it.
#[tokio::test]
async fn an_ambiguous_refund_answer_is_unknown_never_restored() {
    for fault in ["bad-sign", "bad-field", "http500", "unknown-code"] {
        let w = world().await;
        let o = w.paid().await;
        if fault == "unknown-code" {
            w.stub.state.lock().unwrap().refund_err = Some("SOMETHING_NEW");
        } else {
            w.stub.state.lock().unwrap().refund_fault = Some(fault);
        }
        let r = w
            .payments
            .refund(&o.out_trade_no, "R1", Fen(990))
            .await
            .unwrap();
        assert_eq!(r.refund.state, RefundState::Unknown, "{fault}");
        assert_eq!(r.order.state, OrderState::Refunding, "{fault}");
        // A second full refund under another number is refused locally.
        assert!(
            matches!(
                w.payments.refund(&o.out_trade_no, "R2", Fen(990)).await,
                Err(PaymentsError::Invalid(_))
            ),
            "{fault}"
        );
        // WeChat settles it; refundquery brings it home.
        w.stub.state.lock().unwrap().refund_fault = None;
        w.stub.state.lock().unwrap().refund_err = None;
        if fault == "unknown-code" {
            // (the stub did not take it: refundquery says so, and the
            // refund is sent again under its number)
            w.stub.set_refunds(o.out_trade_no.as_str(), &[]);
        } else {
            w.stub
                .set_refunds(o.out_trade_no.as_str(), &[("R1", 990, "SUCCESS")]);
        }
        let after = w.payments.sync_refunds(&o.out_trade_no).await.unwrap();
        if fault == "unknown-code" {
            assert_eq!(
                after.refund("R1").unwrap().state,
                RefundState::Processing,
                "{fault}"
            );
            assert_eq!(
                w.stub.requests("/secapi/pay/refund").len(),
                2,
                "{fault}: sent again"
            );
        } else {
            assert_eq!(after.state, OrderState::Refunded, "{fault}");
            assert_eq!(after.refunded_fee, Fen(990), "{fault}");
            assert_eq!(w.stub.requests("/secapi/pay/refund").len(), 1, "{fault}");
        }
    }
}

/// Case 3: duplicate refund notifies of two refunds, delivered at once
/// many times over: both settle, neither overwrites the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refund_notifies_lose_no_settlement() {
    let w = world().await;
    let o = w.paid().await;
    w.payments
        .refund(&o.out_trade_no, "R1", Fen(300))
        .await
        .unwrap();
    w.payments
        .refund(&o.out_trade_no, "R2", Fen(400))
        .await
        .unwrap();
    let bodies = [
        refund_notify(&w.stub.config, &o, "R1", Fen(300), RefundStatus::Success),
        refund_notify(&w.stub.config, &o, "R2", Fen(400), RefundStatus::Success),
    ];
    let payments = Arc::new(w.payments.clone());
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (p, b, body) = (payments.clone(), barrier.clone(), bodies[i % 2].clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            p.handle_refund_notify(body.as_bytes()).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_success());
    }
    let after = w.get(&o.out_trade_no).await;
    assert_eq!(after.refunded_fee, Fen(700));
    assert_eq!(after.state, OrderState::PartiallyRefunded);
    assert_eq!(
        World::count(&w.events.refunded),
        2,
        "on_refunded once per refund"
    );
}

/// Case 4: the refund notify is lost: the reconciler settles the refund
/// by refundquery; a refund that cannot be sent at all fails before
/// anything is recorded.
#[tokio::test]
async fn lost_refund_notify_is_settled_by_the_reconciler_and_no_certificate_records_nothing() {
    let w = world().await;
    let o = w.paid().await;
    w.payments
        .refund(&o.out_trade_no, "R1", Fen(990))
        .await
        .unwrap();
    w.stub
        .set_refunds(o.out_trade_no.as_str(), &[("R1", 990, "SUCCESS")]);
    let report = w.reconciler().run_once().await.unwrap();
    assert!(report.refunds_synced >= 1, "{report:?}");
    let after = w.get(&o.out_trade_no).await;
    assert_eq!(
        (after.state, after.refunded_fee),
        (OrderState::Refunded, Fen(990))
    );
    // A later refund of another order is not blocked by anything stuck.
    let other = w.paid().await;
    w.payments
        .refund(&other.out_trade_no, "R1b", Fen(1))
        .await
        .unwrap();

    // Without the client certificate: refused before anything is recorded.
    let bare = Payments::builder(w.stub.config.clone())
        .store(w.store.clone())
        .build()
        .unwrap();
    let before = w.get(&other.out_trade_no).await;
    assert!(matches!(
        bare.refund(&other.out_trade_no, "R2", Fen(5)).await,
        Err(PaymentsError::Unconfigured(_))
    ));
    assert_eq!(w.get(&other.out_trade_no).await, before);
}

/// Case 5: a refund made in the merchant platform: its notify is recorded
/// (FOUND, flagged), the order follows it, the entitlement goes.
#[tokio::test]
async fn a_refund_made_outside_the_app_is_recorded_and_flagged() {
    let w = world().await;
    let o = w.paid().await;
    let reply = w
        .refund_notify(&o, "DESK-1", 990, RefundStatus::Success)
        .await;
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
    let after = w.get(&o.out_trade_no).await;
    let r = after.refund("DESK-1").unwrap();
    assert_eq!(
        (r.state, r.source, r.refund_fee),
        (RefundState::Success, RefundSource::Found, Fen(990))
    );
    assert_eq!(
        after.attention.last().unwrap().kind,
        AttentionKind::RefundFound
    );
    assert!(!after.entitled());
    assert_eq!(World::count(&w.events.attention), 1);
    assert_eq!(World::count(&w.events.refunded), 1);
    // Its duplicate changes nothing, and flags nothing again.
    let reply = w
        .refund_notify(&o, "DESK-1", 990, RefundStatus::Success)
        .await;
    assert!(matches!(reply.outcome, NotifyOutcome::RefundIgnored { .. }));
    assert_eq!(w.get(&o.out_trade_no).await, after);
    assert_eq!(World::count(&w.events.attention), 1);
}

/// Case 6: a second `transaction_id` and a verified amount mismatch are
/// recorded on the order and reported, not only logged.
#[tokio::test]
async fn double_payments_and_amount_mismatches_are_recorded() {
    let w = world().await;
    let o = w.paid().await;
    let second = signed_payment_notify(&w.stub.config, &o, "4200000000000000000000000999");
    let reply = w.payments.handle_notify(second.as_bytes()).await;
    assert!(reply.is_success(), "{reply:?}");
    let after = w.get(&o.out_trade_no).await;
    assert_eq!(after.attention[0].kind, AttentionKind::DoublePayment);
    assert!(
        after.attention[0]
            .detail
            .contains("4200000000000000000000000999")
    );
    assert_eq!(
        after.transaction_id, o.transaction_id,
        "the first payment stays recorded"
    );
    assert_eq!(World::count(&w.events.attention), 1);
    // WeChat delivers it again: recorded once.
    w.payments.handle_notify(second.as_bytes()).await;
    assert_eq!(w.get(&o.out_trade_no).await.attention.len(), 1);
    assert_eq!(World::count(&w.events.attention), 1);

    let open = w.prepaid().await;
    let mut p = payment_notify_params(&w.stub.config, &open, "4200000000000000000000000998");
    p.insert("total_fee", "1");
    let reply = w
        .payments
        .handle_notify(sign_notify(&w.stub.config, p, SignType::Md5).as_bytes())
        .await;
    assert!(!reply.is_success());
    let after = w.get(&open.out_trade_no).await;
    assert_eq!(after.state, OrderState::Prepaid);
    assert_eq!(after.attention[0].kind, AttentionKind::AmountMismatch);
    assert_eq!(World::count(&w.events.attention), 2);
}

/// Case 7: a late payment is held for a person by default, fulfilled or
/// refunded by policy; `on_refunded` is retried until it succeeds.
#[tokio::test]
async fn late_payments_follow_the_policy_and_on_refunded_is_retried() {
    for policy in [
        AttentionPolicy::Hold,
        AttentionPolicy::Fulfil,
        AttentionPolicy::Refund,
    ] {
        let w = world_with(SignType::Md5, |b| b.attention_policy(policy)).await;
        let o = w.prepaid().await;
        w.payments.close(&o.out_trade_no).await.unwrap();
        let late = signed_payment_notify(&w.stub.config, &o, "4200000000000000000000000555");
        let reply = w.payments.handle_notify(late.as_bytes()).await;
        assert!(
            matches!(reply.outcome, NotifyOutcome::Paid { late: true, .. }),
            "{reply:?}"
        );
        let after = w.get(&o.out_trade_no).await;
        assert_eq!(
            after.attention[0].kind,
            AttentionKind::LatePayment,
            "{policy:?}"
        );
        assert_eq!(World::count(&w.events.attention), 1, "{policy:?}");
        match policy {
            AttentionPolicy::Hold => {
                assert_eq!(after.fulfilment, Fulfilment::Held);
                w.reconciler().run_once().await.unwrap();
                assert_eq!(World::count(&w.events.paid), 0, "held means held");
            }
            AttentionPolicy::Fulfil => {
                assert!(matches!(after.fulfilment, Fulfilment::Done { .. }));
                assert_eq!(World::count(&w.events.paid), 1);
            }
            _ => {
                assert_eq!(World::count(&w.events.paid), 0);
                let r = after.refund(&format!("{}-LATE", o.out_trade_no)).unwrap();
                assert_eq!((r.refund_fee, r.state), (Fen(990), RefundState::Processing));
                assert_eq!(after.state, OrderState::Refunding);
            }
        }
    }

    // on_refunded fails, then is retried by the reconciler after its lease.
    let w = world().await;
    let o = w.paid().await;
    w.events.fail_refunded.store(true, Ordering::SeqCst);
    w.refund_notify(&o, "R1", 990, RefundStatus::Success).await;
    assert_eq!(World::count(&w.events.refunded), 0);
    w.events.fail_refunded.store(false, Ordering::SeqCst);
    tokio::time::sleep(LEASE * 3).await;
    let report = w.reconciler().run_once().await.unwrap();
    assert_eq!(report.fulfilled, 1, "{report:?}");
    assert_eq!(World::count(&w.events.refunded), 1);
    w.reconciler().run_once().await.unwrap();
    assert_eq!(
        World::count(&w.events.refunded),
        1,
        "once done, never again"
    );
}

/// Case 8: the order's sign type decides; the currency must be the
/// order's; pay params are signed like the order; amounts never
/// overflow; closing too early is a clear 409.
#[tokio::test]
async fn sign_type_currency_pay_params_arithmetic_and_close() {
    // An HMAC order takes no notify that says MD5, even correctly signed.
    let w = world_with(SignType::HmacSha256, |b| b).await;
    let o = w.prepaid().await;
    let mut p = payment_notify_params(&w.stub.config, &o, "4200000000000000000000000001");
    p.insert("sign_type", "MD5");
    let reply = w
        .payments
        .handle_notify(sign_notify(&w.stub.config, p.clone(), SignType::Md5).as_bytes())
        .await;
    assert_eq!(
        reply.outcome,
        NotifyOutcome::Rejected(NotifyRejection::BadSignature)
    );
    assert_eq!(w.get(&o.out_trade_no).await, o);

    // An MD5 order takes an HMAC notify only where the merchant allows it.
    for allow in [false, true] {
        let w = world_with(SignType::Md5, |b| b.hmac_notifies_for_md5_orders(allow)).await;
        let o = w.prepaid().await;
        let mut p = payment_notify_params(&w.stub.config, &o, "4200000000000000000000000002");
        p.insert("sign_type", "HMAC-SHA256");
        let body = sign_notify(&w.stub.config, p, SignType::HmacSha256);
        assert_eq!(
            w.payments.handle_notify(body.as_bytes()).await.is_success(),
            allow
        );
    }

    // Another currency: refused, flagged, otherwise unchanged.
    let w = world().await;
    let o = w.prepaid().await;
    let mut p = payment_notify_params(&w.stub.config, &o, "4200000000000000000000000003");
    p.insert("fee_type", "USD");
    let reply = w
        .payments
        .handle_notify(sign_notify(&w.stub.config, p, SignType::Md5).as_bytes())
        .await;
    assert!(
        matches!(
            reply.outcome,
            NotifyOutcome::Rejected(NotifyRejection::CurrencyMismatch { .. })
        ),
        "{reply:?}"
    );
    let after = w.get(&o.out_trade_no).await;
    assert_eq!(after.state, OrderState::Prepaid);
    assert_eq!(after.attention[0].kind, AttentionKind::CurrencyMismatch);

    // Pay params are signed with the order's sign type, whatever the
    // configuration says today.
    let hmac = world_with(SignType::HmacSha256, |b| b).await;
    let o = hmac.prepaid().await;
    let md5_now = Payments::builder(hmac.stub.config.clone().with_sign_type(SignType::Md5))
        .client(hmac.stub.client())
        .store(hmac.store.clone())
        .build()
        .unwrap();
    let again = md5_now
        .create_order(
            OrderDraft::jsapi("o-alice", "VIP", Fen(990)).with_out_trade_no(o.out_trade_no.clone()),
            None,
        )
        .await
        .unwrap();
    let pay = again.pay_params.unwrap();
    let pay = pay.as_v2().expect("a v2 order is paid with v2 parameters");
    assert_eq!(pay.sign_type, SignType::HmacSha256);
    assert!(pay.verify(&hmac.stub.config.api_key));

    // A refund report beyond any sum: recorded saturating, flagged, no panic.
    let w = world().await;
    let o = w.paid().await;
    // (19 digits: the most a wire amount has; two of them overflow u64)
    let huge = 9_999_999_999_999_999_999;
    assert!(
        w.refund_notify(&o, "HUGE-1", huge, RefundStatus::Success)
            .await
            .is_success()
    );
    assert!(
        w.refund_notify(&o, "HUGE-2", huge, RefundStatus::Success)
            .await
            .is_success()
    );
    let after = w.get(&o.out_trade_no).await;
    assert_eq!(after.state, OrderState::Refunded);
    assert_eq!(after.refunded_fee, Fen(u64::MAX));
    assert_eq!(after.refundable(), Fen(0));

    // Closing within WeChat's 5 minutes: 409 with the time to wait; nothing sent.
    let w = world_with(SignType::Md5, |b| b.close_after(Duration::from_secs(300))).await;
    let o = w.prepaid().await;
    let e = w.payments.close(&o.out_trade_no).await.unwrap_err();
    assert_eq!(e.http_status(), 409);
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(290) && wait <= Duration::from_secs(300),
        "{wait:?}"
    );
    assert!(w.stub.requests("/pay/closeorder").is_empty());
    assert_eq!(w.get(&o.out_trade_no).await.state, OrderState::Prepaid);
}

/// A reconciler stops when asked, after the pass in progress, and its task
/// ends; dropping a handle lets it run on.
#[tokio::test]
async fn the_reconciler_stops_gracefully() {
    let w = world().await;
    let handle = w
        .payments
        .reconciler(Duration::from_millis(5))
        .quiet_after(Duration::ZERO)
        .spawn();
    assert!(!handle.is_finished());
    handle.stop().await;
    // A lost notify is recovered only by a running reconciler.
    let o = w.prepaid().await;
    w.stub.set_trade_state(o.out_trade_no.as_str(), "SUCCESS");
    let detached = w
        .payments
        .reconciler(Duration::from_millis(5))
        .quiet_after(Duration::ZERO)
        .spawn();
    drop(detached);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.get(&o.out_trade_no).await.state != OrderState::Paid {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped handle stopped the reconciler"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
