//! wxpay-axum in-process: the core's adapter kit through `Router::nest`,
//! and a checkout against the simulator.

use axum::{
    Router,
    body::Body,
    http::{Request, header},
};
use tower::ServiceExt;
use wxpay_core::flow::{
    Payments,
    http::testkit::{self, AdapterClient, TestRequest, TestResponse},
};

/// The app under test: wxpay nested under `/pay` next to an app route.
struct App(Router);

fn app(payments: Payments) -> App {
    App(Router::new()
        .route("/", axum::routing::get(|| async { "shop" }))
        .nest("/pay", wxpay_axum::router(payments)))
}

impl AdapterClient for App {
    async fn send(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder()
            .method(req.method.as_str())
            .uri(format!("/pay{}", req.path));
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let res = self
            .0
            .clone()
            .oneshot(builder.body(Body::from(req.body)).unwrap())
            .await
            .unwrap();
        let header = |name| {
            res.headers()
                .get(name)
                .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        TestResponse {
            status: res.status().as_u16(),
            content_type: header(header::CONTENT_TYPE),
            allow: header(header::ALLOW),
            body: axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        }
    }
}

#[tokio::test]
async fn passes_the_adapter_kit() {
    testkit::check_adapter(async |p| app(p)).await;
}

#[tokio::test]
async fn app_routes_are_untouched() {
    let (payments, _) = testkit::payments(testkit::config());
    let res = app(payments)
        .0
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn checkout_against_the_simulator() {
    let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test())
        .await
        .unwrap();
    let config = sim
        .merchant_config()
        .with_notify_url("http://127.0.0.1:9/pay/notify");
    testkit::check_adapter_checkout(config, async |p| app(p)).await;
    sim.shutdown().await;
}
