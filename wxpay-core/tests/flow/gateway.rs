//! The protocol seam: an order is created through the default API's
//! gateway, records that API, and is queried, closed and refunded through
//! that API's gateway only, whatever the service's default is now.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use wxpay_core::{
    Error, Fen, FieldError, OutTradeNo, RefundStatus, SignType, TradeState,
    flow::{
        Api, Gateway, MemoryStore, Order, OrderDraft, OrderState, OrderStore, Payments,
        PaymentsError, RefundState, RequestPayment,
        decide::{PaymentReport, RefundReport, Source},
        gateway::{Closed, Prepaid, RefundAccepted, TradeAnswer},
    },
    messages::{RefundRequest, UnifiedOrderRequest},
    v3::{MerchantKey, PayParamsV3},
};

use crate::stub::{APPID, MCH_ID, Stub};

/// A v3 gateway that answers from a script and records every call.
#[derive(Clone)]
struct FakeV3 {
    key: Arc<MerchantKey>,
    calls: Arc<Mutex<Vec<String>>>,
    trade: Arc<Mutex<Option<TradeAnswer>>>,
    close: Arc<Mutex<VecDeque<Closed>>>,
    refunds: Arc<Mutex<Vec<RefundReport>>>,
}

impl FakeV3 {
    fn new() -> FakeV3 {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../data/vectors-v3.json")).unwrap();
        let pem = vectors["keys"]["merchant"]["private_key_pem"]
            .as_str()
            .unwrap();
        FakeV3 {
            key: Arc::new(MerchantKey::from_pem(pem).unwrap()),
            calls: Arc::default(),
            trade: Arc::default(),
            close: Arc::default(),
            refunds: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn note(&self, call: impl Into<String>) {
        self.calls.lock().unwrap().push(call.into());
    }
}

#[async_trait]
impl Gateway for FakeV3 {
    fn api(&self) -> Api {
        Api::V3
    }

    fn merchant(&self) -> (&str, &str) {
        (APPID, MCH_ID)
    }

    fn check(&self, req: &UnifiedOrderRequest) -> Result<(), FieldError> {
        if req.body.chars().count() > 127 {
            return Err(FieldError::new("description", "longer than 127 characters"));
        }
        Ok(())
    }

    async fn prepay(&self, req: &UnifiedOrderRequest) -> Result<Prepaid, Error> {
        self.note(format!("prepay {}", req.out_trade_no));
        Ok(Prepaid {
            prepay_id: Some(format!("wx-v3-{}", req.out_trade_no)),
            code_url: None,
        })
    }

    fn request_payment(&self, _order: &Order, prepay_id: &str) -> Result<RequestPayment, Error> {
        let p = PayParamsV3::sign_with(
            &self.key,
            APPID,
            &format!("prepay_id={prepay_id}"),
            "1767240000",
            "n0nce",
        )
        .unwrap();
        Ok(RequestPayment::V3(p))
    }

    async fn query(&self, no: &OutTradeNo) -> Result<Option<TradeAnswer>, Error> {
        self.note(format!("query {no}"));
        Ok(self.trade.lock().unwrap().clone())
    }

    async fn close(&self, no: &OutTradeNo) -> Result<Closed, Error> {
        self.note(format!("close {no}"));
        Ok(self
            .close
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Closed::Closed))
    }

    fn can_refund(&self) -> bool {
        true
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundAccepted, Error> {
        self.note(format!("refund {} {}", req.out_refund_no, req.refund_fee.0));
        Ok(RefundAccepted {
            refund_id: Some(format!("5030-{}", req.out_refund_no)),
        })
    }

    async fn refunds(&self, order: &Order) -> Result<Vec<RefundReport>, Error> {
        self.note(format!("refunds {}", order.out_trade_no));
        Ok(self.refunds.lock().unwrap().clone())
    }
}

fn paid_answer(total: u64) -> TradeAnswer {
    TradeAnswer {
        trade_state: TradeState::Success,
        report: PaymentReport {
            transaction_id: Some("4200000000202612010000000001".into()),
            total_fee: Some(Fen(total)),
            fee_type: None,
            time_end: Some("20261201120000".into()),
            bank_type: Some("OTHERS".into()),
            cash_fee: Some(Fen(total)),
            source: Source::Query,
        },
    }
}

struct World {
    stub: Stub,
    store: Arc<MemoryStore>,
    v3: FakeV3,
}

impl World {
    async fn new() -> World {
        World {
            stub: Stub::start(SignType::Md5).await,
            store: Arc::new(MemoryStore::new()),
            v3: FakeV3::new(),
        }
    }

    /// A service over the same store and WeChat, with or without the v3
    /// gateway, creating new orders with `default`.
    fn payments(&self, v3: bool, default: Option<Api>) -> Payments {
        let mut b = Payments::builder(self.stub.config.clone())
            .client(self.stub.client())
            .store(self.store.clone())
            .retry_backoff(Duration::from_millis(1))
            .close_after(Duration::ZERO);
        if v3 {
            b = b.v3(self.v3.clone());
        }
        if let Some(api) = default {
            b = b.default_api(api);
        }
        b.build().unwrap()
    }

    fn v2_requests(&self) -> usize {
        [
            "/pay/unifiedorder",
            "/pay/orderquery",
            "/pay/closeorder",
            "/secapi/pay/refund",
            "/pay/refundquery",
        ]
        .iter()
        .map(|p| self.stub.requests(p).len())
        .sum()
    }
}

fn draft(no: &str) -> OrderDraft {
    OrderDraft::jsapi("o-alice", "Shop-VIP", Fen(990))
        .with_out_trade_no(OutTradeNo::new(no).unwrap())
}

#[tokio::test]
async fn a_v3_gateway_creates_new_orders_and_signs_rsa_pay_params() {
    let w = World::new().await;
    let payments = w.payments(true, None);
    assert_eq!(payments.default_api(), Api::V3);

    let out = payments
        .create_order(draft("SEAM-V3-1"), Some("203.0.113.9"))
        .await
        .unwrap();
    let order = w.store.get(&out.out_trade_no).await.unwrap().unwrap();
    assert_eq!(order.api, Api::V3);
    assert_eq!(order.state, OrderState::Prepaid);
    assert_eq!(order.prepay_id.as_deref(), Some("wx-v3-SEAM-V3-1"));
    assert_eq!(w.v3.calls(), ["prepay SEAM-V3-1"]);
    assert_eq!(w.v2_requests(), 0, "nothing went to the v2 API");

    let pay = out.pay_params.unwrap();
    assert_eq!(pay.sign_type(), "RSA");
    assert!(pay.as_v2().is_none());
    let json = serde_json::to_value(&pay).unwrap();
    assert_eq!(json["signType"], "RSA");
    assert_eq!(json["package"], "prepay_id=wx-v3-SEAM-V3-1");
    assert!(
        json.get("appId").is_none(),
        "v3 does not pass appId: {json}"
    );
}

#[tokio::test]
async fn the_v3_field_rules_are_checked_before_anything_is_stored() {
    let w = World::new().await;
    let payments = w.payments(true, None);
    let long = OrderDraft::jsapi("o-alice", "商".repeat(128), Fen(990))
        .with_out_trade_no(OutTradeNo::new("SEAM-V3-LONG").unwrap());
    let e = payments.create_order(long, None).await.unwrap_err();
    assert!(
        matches!(e, PaymentsError::Invalid(ref f) if f.field == "description"),
        "{e}"
    );
    assert!(w.store.snapshot().is_empty());
    assert!(w.v3.calls().is_empty());
}

#[tokio::test]
async fn each_order_is_finished_through_the_api_it_was_created_with() {
    let w = World::new().await;
    // Created while the service still defaulted to v2...
    let v2_first = w.payments(true, Some(Api::V2));
    let old = v2_first
        .create_order(draft("SEAM-V2-1"), None)
        .await
        .unwrap()
        .out_trade_no;
    assert_eq!(w.store.get(&old).await.unwrap().unwrap().api, Api::V2);
    // ...and one after the switch to v3.
    let payments = w.payments(true, None);
    let new = payments
        .create_order(draft("SEAM-V3-2"), None)
        .await
        .unwrap()
        .out_trade_no;
    assert_eq!(w.store.get(&new).await.unwrap().unwrap().api, Api::V3);

    // The v2 order: orderquery and closeorder at the v2 API, not v3.
    let v2_before = w.v2_requests();
    payments.sync(&old, true).await.unwrap();
    payments.close(&old).await.unwrap();
    assert!(!w.stub.requests("/pay/orderquery").is_empty());
    assert_eq!(w.stub.requests("/pay/closeorder").len(), 1);
    assert!(w.v2_requests() > v2_before);
    assert_eq!(
        w.v3.calls(),
        ["prepay SEAM-V3-2"],
        "the v2 order never reached v3"
    );

    // The v3 order: query, then close, at v3 only.
    let v2_before = w.v2_requests();
    payments.sync(&new, true).await.unwrap();
    let closed = payments.close(&new).await.unwrap();
    assert_eq!(closed.state, OrderState::Closed);
    assert_eq!(
        w.v3.calls(),
        ["prepay SEAM-V3-2", "query SEAM-V3-2", "close SEAM-V3-2"]
    );
    assert_eq!(w.v2_requests(), v2_before, "the v3 order never reached v2");
}

#[tokio::test]
async fn a_v3_order_without_a_v3_gateway_is_unconfigured_and_left_as_it_was() {
    let w = World::new().await;
    let with_v3 = w.payments(true, None);
    let no = with_v3
        .create_order(draft("SEAM-V3-3"), None)
        .await
        .unwrap()
        .out_trade_no;
    let before = serde_json::to_vec(&w.store.snapshot()).unwrap();

    let v2_only = w.payments(false, None);
    assert_eq!(v2_only.default_api(), Api::V2);
    for e in [
        v2_only.sync(&no, true).await.unwrap_err(),
        v2_only.close(&no).await.unwrap_err(),
    ] {
        assert!(
            matches!(e, PaymentsError::Unconfigured(what) if what.contains("v3")),
            "{e}"
        );
    }
    // Re-entering the v3 order is not sent as a v2 unifiedorder either.
    let e = v2_only
        .create_order(draft("SEAM-V3-3"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, PaymentsError::Unconfigured(_)), "{e}");
    assert_eq!(serde_json::to_vec(&w.store.snapshot()).unwrap(), before);
    assert_eq!(w.v2_requests(), 0);
}

#[tokio::test]
async fn a_close_that_finds_the_order_paid_records_the_payment_through_v3() {
    let w = World::new().await;
    let payments = w.payments(true, None);
    let no = payments
        .create_order(draft("SEAM-V3-4"), None)
        .await
        .unwrap()
        .out_trade_no;
    w.v3.close.lock().unwrap().push_back(Closed::Paid);
    *w.v3.trade.lock().unwrap() = Some(paid_answer(990));

    let e = payments.close(&no).await.unwrap_err();
    assert!(
        matches!(
            e,
            PaymentsError::InvalidState {
                state: OrderState::Paid,
                ..
            }
        ),
        "{e}"
    );
    let order = w.store.get(&no).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(
        order.transaction_id.as_deref(),
        Some("4200000000202612010000000001")
    );
}

#[tokio::test]
async fn a_v3_query_with_another_amount_is_refused_and_changes_nothing() {
    let w = World::new().await;
    let payments = w.payments(true, None);
    let no = payments
        .create_order(draft("SEAM-V3-5"), None)
        .await
        .unwrap()
        .out_trade_no;
    *w.v3.trade.lock().unwrap() = Some(paid_answer(1));

    let e = payments.sync(&no, true).await.unwrap_err();
    assert!(matches!(e, PaymentsError::AmountMismatch { .. }), "{e}");
    let order = w.store.get(&no).await.unwrap().unwrap();
    assert_ne!(order.state, OrderState::Paid);
}

#[tokio::test]
async fn v3_refunds_go_through_the_ledger_and_are_settled_by_v3_queries() {
    let w = World::new().await;
    let payments = w.payments(true, None);
    let no = payments
        .create_order(draft("SEAM-V3-6"), None)
        .await
        .unwrap()
        .out_trade_no;
    *w.v3.trade.lock().unwrap() = Some(paid_answer(990));
    payments.sync(&no, true).await.unwrap();

    let out = payments
        .refund(&no, "SEAM-V3-6-R1", Fen(300))
        .await
        .unwrap();
    assert_eq!(out.refund.state, RefundState::Processing);
    assert!(w.v3.calls().contains(&"refund SEAM-V3-6-R1 300".to_owned()));

    *w.v3.refunds.lock().unwrap() = vec![RefundReport {
        out_refund_no: "SEAM-V3-6-R1".into(),
        refund_id: Some("5030-SEAM-V3-6-R1".into()),
        refund_fee: Some(Fen(300)),
        status: RefundStatus::Success,
        source: Source::Query,
    }];
    let order = payments.sync_refunds(&no).await.unwrap();
    assert_eq!(order.state, OrderState::PartiallyRefunded);
    assert_eq!(order.refunded_fee, Fen(300));
    assert_eq!(w.v2_requests(), 0, "no v2 call for a v3 order");
}

#[tokio::test]
async fn v3_as_the_default_without_a_v3_gateway_is_a_start_up_error() {
    let w = World::new().await;
    let e = Payments::builder(w.stub.config.clone())
        .client(w.stub.client())
        .default_api(Api::V3)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("WXPAY_API_VERSION"), "{e}");
}
