//! The notify route in process, without sockets: one `oneshot` through an
//! axum `Router` per request, so the figures are the handler's own cost
//! (what the load test's `wxpay-memory` adds over `bare`), without hyper,
//! the kernel or the load generator.
//!
//! - `route/bare`: `POST /pay/notify` read the body and answer the fixed
//!   SUCCESS XML — the floor, as in `examples/notify_load.rs`.
//! - `route/wxpay/first`: `wxpay_axum::router_at("/pay", …)`,
//!   `MemoryStore`, no-op `on_paid`; the paying notify of a `PREPAID` order
//!   (orders inserted before each timed batch).
//! - `route/wxpay/duplicate`: the same notify again for a paid order.
//!
//! ```sh
//! cargo bench -p wxpay-axum --bench route -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::Request, routing::post};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt;
use wxpay_core::{
    ApiKey, Config,
    flow::{MemoryStore, Payments},
    notify::REPLY_SUCCESS,
    testkit,
};

fn config() -> Config {
    Config::new(
        "wxd930ea5d5a258f4f",
        "10000100",
        ApiKey::new("192006250b4c09247ec02edce69f6a2d"),
    )
}

/// Inserts `n` PREPAID orders and returns their signed paying notifies.
async fn prepare(payments: &Payments, n: u64, batch: &mut u64) -> Vec<String> {
    *batch += 1;
    testkit::prepaid_with_notifies(payments, &format!("B{batch}x"), n)
        .await
        .unwrap()
}

async fn send(app: &Router, body: &str) {
    let req = Request::post("/pay/notify")
        .header("content-type", "text/xml")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(bytes.starts_with(b"<xml><return_code><![CDATA[SUCCESS]]>"));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let payments = Payments::builder(config())
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let wxpay: Router = Router::new().merge(wxpay_axum::router_at("/pay", payments.clone()));
    let bare: Router = Router::new().route(
        "/pay/notify",
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            (
                [("content-type", "application/xml; charset=utf-8")],
                REPLY_SUCCESS,
            )
        }),
    );
    let mut next = 0;
    let dup = rt.block_on(async {
        let body = prepare(&payments, 1, &mut next).await.pop().unwrap();
        send(&wxpay, &body).await;
        body
    });

    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare", |b| b.iter(|| rt.block_on(send(&bare, &dup))));
    group.bench_function("wxpay/first", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let bodies = prepare(&payments, iters, &mut next).await;
                let start = Instant::now();
                for body in &bodies {
                    send(&wxpay, body).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("wxpay/duplicate", |b| {
        b.iter(|| rt.block_on(send(&wxpay, &dup)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
