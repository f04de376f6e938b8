//! Insert + PREPAID → PAID transition throughput per backend. SQLite always;
//! PostgreSQL / MySQL when `WXPAY_TEST_POSTGRES_URL` / `WXPAY_TEST_MYSQL_URL`
//! are set (the bench creates and drops its own schema / database).

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlx::{Connection, Executor};
use wxpay_core::{
    Fen, OutTradeNo, SignType, TradeType,
    flow::{Order, OrderPatch, OrderState, OrderStore, Transition, TransitionOutcome},
};
use wxpay_sqlx::SqlxStore;

static N: AtomicU64 = AtomicU64::new(0);

fn name() -> String {
    format!(
        "wxpay_bench_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}

async fn insert_and_pay(store: &SqlxStore) {
    let now = chrono::Utc::now();
    let no = OutTradeNo::new(format!("B{}", N.fetch_add(1, Ordering::Relaxed))).unwrap();
    let order = Order::new(
        no.clone(),
        Fen(1),
        "bench",
        TradeType::Jsapi,
        SignType::Md5,
        now,
    );
    store.insert(&order).await.unwrap();
    let patch = OrderPatch {
        transaction_id: Some(Some("4200".into())),
        ..OrderPatch::default()
    };
    let t = Transition::new(no, &[OrderState::Created], OrderState::Paid, patch, now).unwrap();
    assert!(matches!(
        store.transition(&t).await.unwrap(),
        TransitionOutcome::Applied(_)
    ));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("insert+transition");
    group.throughput(Throughput::Elements(1));

    let dir = std::env::temp_dir().join(name());
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let store = rt.block_on(SqlxStore::connect(&url)).unwrap();
    group.bench_function("sqlite", |b| b.iter(|| rt.block_on(insert_and_pay(&store))));
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);

    if let Ok(url) = std::env::var("WXPAY_TEST_POSTGRES_URL") {
        let schema = name();
        let store = rt.block_on(async {
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            admin
                .execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .unwrap();
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            SqlxStore::connect(&url).await.unwrap()
        });
        group.bench_function("postgres", |b| {
            b.iter(|| rt.block_on(insert_and_pay(&store)))
        });
        rt.block_on(async {
            store.close().await;
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            admin
                .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                .await
                .unwrap();
        });
    }

    if let Ok(url) = std::env::var("WXPAY_TEST_MYSQL_URL") {
        let db = name();
        let base = url
            .rsplit_once('/')
            .map_or(url.as_str(), |(b, _)| b)
            .to_owned();
        let store = rt.block_on(async {
            let mut admin = sqlx::MySqlConnection::connect(&url).await.unwrap();
            admin
                .execute(format!("CREATE DATABASE {db}").as_str())
                .await
                .unwrap();
            SqlxStore::connect(&format!("{base}/{db}")).await.unwrap()
        });
        group.bench_function("mysql", |b| b.iter(|| rt.block_on(insert_and_pay(&store))));
        rt.block_on(async {
            store.close().await;
            let mut admin = sqlx::MySqlConnection::connect(&url).await.unwrap();
            admin
                .execute(format!("DROP DATABASE {db}").as_str())
                .await
                .unwrap();
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
