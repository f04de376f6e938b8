//! Heap allocations per notify: a measurement, run on purpose, not part of
//! the default test command (`cargo test` skips it):
//!
//! ```sh
//! cargo test -p wxpay-axum --test allocs -- --ignored --nocapture
//! ```
//!
//! A count depends on more than our code (lazily initialised statics in
//! tokio, tracing and hyper, the test harness's own threads), and once it
//! went over budget on a fresh clone and stopped every test after it, so it
//! is a benchmark (BENCHMARKS.md records its figures), not a guard.
//! Each test binary has one global allocator, hence this file.

use std::sync::Arc;

use axum::{Router, body::Body, http::Request, routing::post};
use tower::ServiceExt;
use wxpay_core::{
    ApiKey, Config,
    flow::{MemoryStore, Payments},
    notify::REPLY_SUCCESS,
    testkit,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// `handle_notify` alone: parse (2), verify and type the fields (9), the
/// order number, the store read, the reply; a paying notify adds the
/// decision (its patch copies the payment's three strings, and the
/// transition the order number: the report stays whole so that a lost race
/// is decided again), the versioned compare-and-set that also holds the
/// fulfilment claim, the completion, and `on_paid`.
const CORE_FIRST: u64 = 25;
const CORE_DUPLICATE: u64 = 15;
/// What the axum adapter adds over a bare handler and the core: the core's
/// request and response types.
const ADAPTER: u64 = 2;

fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

/// Allocations made while `app` answers one notify.
async fn through(app: &Router, body: &str) -> u64 {
    let req = Request::post("/pay/notify")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let before = allocations();
    let res = app.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let n = allocations() - before;
    assert!(bytes.starts_with(b"<xml><return_code><![CDATA[SUCCESS]]>"));
    n
}

/// Allocations made while `handle_notify` answers one notify.
async fn core(payments: &Payments, body: &str) -> u64 {
    let before = allocations();
    let reply = payments.handle_notify(body.as_bytes()).await;
    let n = allocations() - before;
    assert!(reply.is_success(), "{reply:?}");
    n
}

fn payments() -> Payments {
    let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
    Payments::builder(Config::new("wxd930ea5d5a258f4f", "10000100", key))
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap()
}

#[test]
#[ignore = "a measurement: run with --ignored (see the file's docs)"]
fn notify_allocation_budgets() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let payments = payments();
        let bodies = testkit::prepaid_with_notifies(&payments, "A", 8)
            .await
            .unwrap();
        let merged: Router = Router::new().merge(wxpay_axum::router_at("/pay", payments.clone()));
        let nested: Router = Router::new().nest("/pay", wxpay_axum::router(payments.clone()));
        let bare: Router = Router::new().route(
            "/pay/notify",
            post(|body: axum::body::Bytes| async move {
                drop(body);
                REPLY_SUCCESS
            }),
        );
        // Warm-up: lazily initialised statics (tracing callsites, …).
        core(&payments, &bodies[0]).await;
        through(&bare, &bodies[0]).await;

        let bare_cost = through(&bare, &bodies[0]).await;
        let (core_first, core_duplicate) = (core(&payments, &bodies[1]).await, core(&payments, &bodies[1]).await);
        assert!(core_first <= CORE_FIRST, "a paying notify made {core_first} allocations, budget {CORE_FIRST}");
        assert!(
            core_duplicate <= CORE_DUPLICATE,
            "a duplicate notify made {core_duplicate} allocations, budget {CORE_DUPLICATE}"
        );
        // Through the axum adapter, merged (`router_at`) and nested (`router`).
        let first = through(&merged, &bodies[2]).await;
        let duplicate = through(&merged, &bodies[2]).await;
        assert!(
            first <= bare_cost + CORE_FIRST + ADAPTER,
            "router_at: a paying notify made {first} allocations, budget {bare_cost} (bare axum) + {CORE_FIRST} + {ADAPTER}"
        );
        assert!(
            duplicate <= bare_cost + CORE_DUPLICATE + ADAPTER,
            "router_at: a duplicate notify made {duplicate} allocations, budget {bare_cost} (bare axum) + {CORE_DUPLICATE} + {ADAPTER}"
        );
        // `nest` rewrites the URI and records the nesting on every request:
        // what `router_at`'s docs promise to save.
        let nested_cost = through(&nested, &bodies[3]).await;
        // The figures BENCHMARKS.md records (`-- --nocapture` shows them).
        println!(
            "allocations per notify: bare axum {bare_cost}; core first {core_first}, duplicate {core_duplicate}; router_at first {first}, duplicate {duplicate}; nested router first {nested_cost}"
        );
        assert!(
            nested_cost > first,
            "router under nest: {nested_cost} allocations, router_at: {first}"
        );
    });
}
