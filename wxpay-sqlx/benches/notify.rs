//! `Payments::handle_notify` throughput per order store.
//!
//! - `notify/first/<backend>`: the paying notify of a `PREPAID` order: parse,
//!   load, verify (MD5), CAS to `PAID`, fulfilment claim + complete around a
//!   no-op `on_paid`. Orders are inserted before each timed batch
//!   (`iter_custom`), so only the notify is measured.
//! - `notify/duplicate/<backend>`: the same notify again for an order that is
//!   already `PAID` with its fulfilment done (parse, load, verify, answer).
//!
//! Backends: MemoryStore and SQLite (temp file) always; PostgreSQL / MySQL
//! when `WXPAY_TEST_POSTGRES_URL` / `WXPAY_TEST_MYSQL_URL` are set (the bench
//! creates and drops its own schema / database), otherwise they print SKIPPED.
//!
//! ```sh
//! cargo bench -p wxpay-sqlx --all-features --bench notify -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use wxpay_core::{
    ApiKey, Config,
    flow::{MemoryStore, OrderStore, Payments},
    testkit,
};

mod scratch;

static N: AtomicU64 = AtomicU64::new(0);

fn config() -> Config {
    Config::new(
        "wxd930ea5d5a258f4f",
        "10000100",
        ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
    )
}

/// Inserts `n` PREPAID orders and returns their signed first notifies.
async fn prepare(payments: &Payments, n: u64) -> Vec<String> {
    let batch = N.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("N{}x{batch}x", std::process::id());
    testkit::prepaid_with_notifies(payments, &prefix, n)
        .await
        .unwrap()
}

fn bench_store(c: &mut Criterion, rt: &Runtime, backend: &str, store: Arc<dyn OrderStore>) {
    let payments = Payments::builder(config()).store(store).build().unwrap();
    let mut group = c.benchmark_group("notify");
    group.throughput(Throughput::Elements(1));

    group.bench_function(format!("first/{backend}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let bodies = prepare(&payments, iters).await;
                let start = Instant::now();
                for body in &bodies {
                    let reply = payments.handle_notify(body.as_bytes()).await;
                    assert!(reply.is_success(), "{reply:?}");
                }
                start.elapsed()
            })
        })
    });

    let body = rt.block_on(async {
        let body = prepare(&payments, 1).await.pop().unwrap();
        assert!(payments.handle_notify(body.as_bytes()).await.is_success());
        body
    });
    group.bench_function(format!("duplicate/{backend}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let reply = payments.handle_notify(body.as_bytes()).await;
                    assert!(reply.is_success(), "{reply:?}");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    bench_store(c, &rt, "memory", Arc::new(MemoryStore::new()));
    scratch::for_each_backend(&rt, "notify/*", |backend, store| {
        bench_store(c, &rt, backend, Arc::new(store.clone()));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
