//! Insert + PREPAID → PAID transition throughput per backend. SQLite always;
//! PostgreSQL / MySQL when `WXPAY_TEST_POSTGRES_URL` / `WXPAY_TEST_MYSQL_URL`
//! are set (the bench creates and drops its own schema / database).

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wxpay_core::{
    Fen, OutTradeNo, SignType, TradeType,
    flow::{Order, OrderPatch, OrderState, OrderStore, Transition, TransitionOutcome},
};
use wxpay_sqlx::SqlxStore;

mod scratch;

static N: AtomicU64 = AtomicU64::new(0);

async fn insert_and_pay(store: &SqlxStore) {
    let now = chrono::Utc::now();
    let no = OutTradeNo::new(format!("B{}", N.fetch_add(1, Ordering::Relaxed))).unwrap();
    let order = Order::new(no, Fen(1), "bench", TradeType::Jsapi, SignType::Md5, now);
    store.insert(&order).await.unwrap();
    let patch = OrderPatch {
        transaction_id: Some(Some("4200".into())),
        ..OrderPatch::default()
    };
    let t = Transition::new(&order, OrderState::Paid, patch, now).unwrap();
    assert!(matches!(
        store.transition(&t).await.unwrap(),
        TransitionOutcome::Applied(_)
    ));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("insert+transition");
    group.throughput(Throughput::Elements(1));
    scratch::for_each_backend(&rt, "insert+transition", |backend, store| {
        group.bench_function(backend, |b| b.iter(|| rt.block_on(insert_and_pay(store))));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
