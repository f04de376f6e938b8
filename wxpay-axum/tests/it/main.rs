//! wxpay-axum in-process: the core's adapter kit through `Router::nest`
//! (`router`) and through `Router::merge` (`router_at`), and a checkout
//! against the simulator.

use axum::{
    Router,
    body::Body,
    http::{Request, header},
};
use tower::ServiceExt;
use wxpay_core::flow::Payments;
use wxpay_core::testkit::adapter::{self as testkit, AdapterClient, TestRequest, TestResponse};

/// The app under test: wxpay under `/pay` next to app routes, and where
/// the kit's relative paths are mounted.
struct App(Router, fn(&str) -> String);

fn under_pay(path: &str) -> String {
    format!("/pay{path}")
}

fn shop_routes() -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { "shop" }))
        .route("/payments", axum::routing::get(|| async { "not wxpay's" }))
}

/// wxpay nested (`router`).
fn app(payments: Payments) -> App {
    App(
        shop_routes().nest("/pay", wxpay_axum::router(payments)),
        under_pay,
    )
}

/// wxpay merged (`router_at`).
fn app_at(payments: Payments) -> App {
    App(
        shop_routes().merge(wxpay_axum::router_at("/pay", payments)),
        under_pay,
    )
}

/// wxpay merged, with sign-in and sign-out alone at `/login` and `/logout`.
fn app_login(payments: Payments) -> App {
    let router = shop_routes()
        .route("/login", wxpay_axum::sign_in(payments.clone()))
        .route("/logout", wxpay_axum::sign_out(payments.clone()))
        .merge(wxpay_axum::router_at("/pay", payments));
    App(router, |path| match path {
        "/sign-in" => "/login".to_owned(),
        "/sign-out" => "/logout".to_owned(),
        _ => under_pay(path),
    })
}

impl AdapterClient for App {
    async fn send(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder()
            .method(req.method.as_str())
            .uri((self.1)(&req.path));
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
            closes: res
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v == "close"),
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
    testkit::check_adapter_v3(async |p| app(p)).await;
    testkit::check_adapter_v3(async |p| app_at(p)).await;
}

#[tokio::test]
async fn merged_passes_the_adapter_kit() {
    testkit::check_adapter(async |p| app_at(p)).await;
    // /login and /logout answer 404 when no sessions are kept.
    testkit::check_adapter(async |p| app_login(p)).await;
}

async fn get(app: &App, path: &str) -> (u16, Vec<u8>) {
    let req = Request::get(path).body(Body::empty()).unwrap();
    let res = app.0.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX).await;
    (status, body.unwrap().to_vec())
}

#[tokio::test]
async fn app_routes_are_untouched() {
    for mount in [app, app_at] {
        let (payments, _) = testkit::payments(testkit::config());
        let app = mount(payments);
        assert_eq!(get(&app, "/").await, (200, b"shop".to_vec()));
        assert_eq!(get(&app, "/payments").await, (200, b"not wxpay's".to_vec()));
        // The app's own 404 (empty), not wxpay's JSON one.
        assert_eq!(get(&app, "/elsewhere").await, (404, Vec::new()));
    }
}

#[tokio::test]
async fn both_mounts_answer_every_path_under_the_prefix_alike() {
    let (payments, _) = testkit::payments(testkit::config());
    let (nested, merged) = (app(payments.clone()), app_at(payments));
    for path in [
        "/pay",
        "/pay/",
        "/pay/unknown",
        "/pay/orders/",
        "/pay/orders/A/B/C",
        "/pay/notify/extra",
        "/pay/notify",
        "/pay/orders/NOPE",
    ] {
        let (a, b) = (get(&nested, path).await, get(&merged, path).await);
        assert_eq!(a, b, "{path}");
        assert!(a.0 == 404 || a.0 == 405, "{path}: {a:?}");
        // wxpay's JSON answer, except for `/pay/`, which `nest` leaves to the app.
        assert_eq!(a.1.is_empty(), path == "/pay/", "{path}: {a:?}");
    }
}

#[test]
fn router_at_refuses_a_malformed_prefix() {
    for prefix in ["", "/", "pay", "/pay/", "/{pay}"] {
        let (payments, _) = testkit::payments(testkit::config());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Router = wxpay_axum::router_at(prefix, payments);
        }));
        assert!(r.is_err(), "{prefix:?} was accepted");
    }
}

#[tokio::test]
async fn checkout_and_sign_in_against_the_simulator() {
    let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test())
        .await
        .unwrap();
    let config = sim
        .merchant_config()
        .with_notify_url("http://127.0.0.1:9/pay/notify");
    testkit::check_adapter_checkout(config.clone(), async |p| app(p)).await;
    testkit::check_adapter_checkout(config.clone(), async |p| app_at(p)).await;
    for mount in [app, app_at, app_login] {
        let code = sim.login("o-kit-user").await;
        let openid =
            testkit::check_adapter_sign_in(config.clone(), &code, async |p| mount(p)).await;
        assert_eq!(openid, "o-kit-user");
    }
    sim.shutdown().await;
}

mod deadlines;
