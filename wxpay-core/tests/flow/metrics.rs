//! What the flow records through the `metrics` facade, read back from a
//! `DebuggingRecorder` installed on this test's thread only (each
//! `#[tokio::test]` runs on its own current-thread runtime, so the stub's
//! tasks record into the same recorder and the tests stay independent).

use std::sync::Arc;

use async_trait::async_trait;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use wxpay_core::{
    Fen, SignType,
    flow::*,
    metrics::{CHECKOUT_SECONDS, NOTIFY_TOTAL, UPSTREAM_ERRORS_TOTAL, UPSTREAM_SECONDS},
    testkit::{payment_notify_params, sign_notify, signed_payment_notify},
};

use crate::stub::{Script, Stub};

struct Vip;

#[async_trait]
impl Checkout for Vip {
    async fn order(&self, _req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        Ok(OrderDraft::jsapi("o-alice", "Shop-VIP", Fen(990)))
    }
}

async fn payments() -> (Stub, Payments) {
    let stub = Stub::start(SignType::Md5).await;
    let payments = Payments::builder(stub.config.clone())
        .client(stub.client())
        .store(Arc::new(MemoryStore::new()))
        .checkout(Vip)
        .retry_backoff(std::time::Duration::from_millis(1))
        .build()
        .unwrap();
    (stub, payments)
}

/// One snapshot (taking it drains the recorder: read everything from one).
pub(crate) type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// Every recorded value of `kind` named `name` whose labels include `labels`.
fn values<'a>(
    snap: &'a Snapshot,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a DebugValue> {
    snap.iter()
        .filter(|(k, ..)| {
            k.kind() == kind
                && k.key().name() == name
                && labels.iter().all(|(l, v)| {
                    k.key()
                        .labels()
                        .any(|label| label.key() == *l && label.value() == *v)
                })
        })
        .map(|(.., v)| v)
        .collect()
}

pub(crate) fn counter(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    values(snap, MetricKind::Counter, name, labels)
        .into_iter()
        .map(|v| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is no counter: {other:?}"),
        })
        .sum()
}

fn samples(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> usize {
    values(snap, MetricKind::Histogram, name, labels)
        .into_iter()
        .map(|v| match v {
            DebugValue::Histogram(s) => s.len(),
            other => panic!("{name} is no histogram: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn v2_notifies_are_counted_by_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    wxpay_core::metrics::describe();

    let (stub, p) = payments().await;
    let out = p.checkout(CheckoutRequest::new("{}")).await.unwrap();
    let order = p.order(&out.out_trade_no).await.unwrap();
    let body = signed_payment_notify(&stub.config, &order, "4200000000000000000000000001");

    assert!(p.handle_notify(body.as_bytes()).await.is_success());
    assert!(p.handle_notify(body.as_bytes()).await.is_success());
    let mut thief = stub.config.clone();
    thief.api_key = wxpay_core::ApiKey::new("0123456789abcdef0123456789abcdef");
    let forged = signed_payment_notify(&thief, &order, "4200000000000000000000000001");
    assert!(!p.handle_notify(forged.as_bytes()).await.is_success());

    let snap = snapshotter.snapshot().into_vec();
    let v2 = |outcome| {
        counter(
            &snap,
            NOTIFY_TOTAL,
            &[("api", "v2"), ("kind", "payment"), ("outcome", outcome)],
        )
    };
    assert_eq!(v2("paid"), 1);
    assert_eq!(v2("duplicate"), 1);
    assert_eq!(v2("rejected_bad_signature"), 1);
    assert_eq!(counter(&snap, NOTIFY_TOTAL, &[]), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_mismatched_amount_is_counted_as_its_rejection() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let (stub, p) = payments().await;
    let out = p.checkout(CheckoutRequest::new("{}")).await.unwrap();
    let order = p.order(&out.out_trade_no).await.unwrap();
    let mut params = payment_notify_params(&stub.config, &order, "4200000000000000000000000002");
    params.insert("total_fee", "1");
    let body = sign_notify(&stub.config, params, SignType::Md5);
    assert!(!p.handle_notify(body.as_bytes()).await.is_success());

    let snap = snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(
            &snap,
            NOTIFY_TOTAL,
            &[("api", "v2"), ("outcome", "rejected_amount_mismatch")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            wxpay_core::metrics::ATTENTION_TOTAL,
            &[("kind", "AMOUNT_MISMATCH")]
        ),
        1
    );
}

#[tokio::test(flavor = "current_thread")]
async fn checkout_and_upstream_calls_are_timed_and_errors_counted_by_code() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let (stub, p) = payments().await;
    stub.script([Script::Business("SYSTEMERROR"), Script::Http500, Script::Ok]);
    p.checkout(CheckoutRequest::new("{}")).await.unwrap();

    let snap = snapshotter.snapshot().into_vec();
    let errors = |code| {
        counter(
            &snap,
            UPSTREAM_ERRORS_TOTAL,
            &[("api", "v2"), ("endpoint", "prepay"), ("code", code)],
        )
    };
    assert_eq!(errors("SYSTEMERROR"), 1);
    assert_eq!(errors("transport"), 1);
    assert_eq!(
        samples(
            &snap,
            UPSTREAM_SECONDS,
            &[("api", "v2"), ("endpoint", "prepay")]
        ),
        3
    );
    assert_eq!(samples(&snap, CHECKOUT_SECONDS, &[("outcome", "ok")]), 1);
}
