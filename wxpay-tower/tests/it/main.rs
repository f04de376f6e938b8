//! wxpay-tower: the core's adapter kit in-process (`oneshot`), a checkout
//! against the simulator, the notify-only services, and the service served
//! by hyper on an OS-assigned port.

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use wxpay_core::testkit::adapter::{self as testkit, AdapterClient, TestRequest, TestResponse};
use wxpay_core::{
    Fen, OutTradeNo,
    flow::{OrderState, OrderStore, Payments},
};
use wxpay_tower::WxpayService;

/// wxpay's routes under `/pay`, and, when set, the sign-in and sign-out
/// services alone (as an app would route `/login` and `/logout` to them).
struct Client {
    routes: WxpayService,
    login: Option<(WxpayService, WxpayService)>,
}

impl AdapterClient for Client {
    async fn send(&self, req: TestRequest) -> TestResponse {
        let (svc, uri) = match (&self.login, req.path.as_str()) {
            (Some((sign_in, _)), "/sign-in") => (sign_in, "/login".to_owned()),
            (Some((_, sign_out)), "/sign-out") => (sign_out, "/logout".to_owned()),
            (_, path) => (&self.routes, format!("/pay{path}")),
        };
        let mut builder = Request::builder().method(req.method.as_str()).uri(uri);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let req = builder.body(Full::new(Bytes::from(req.body))).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let header = |name| {
            res.headers()
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        TestResponse {
            status: res.status().as_u16(),
            content_type: header(header::CONTENT_TYPE),
            allow: header(header::ALLOW),
            closes: res
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v == "close"),
            body: res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        }
    }
}

fn mount(payments: Payments) -> Client {
    Client {
        routes: WxpayService::new(payments).with_prefix("/pay"),
        login: None,
    }
}

fn mount_with_login(payments: Payments) -> Client {
    Client {
        login: Some((
            WxpayService::sign_in(payments.clone()),
            WxpayService::sign_out(payments.clone()),
        )),
        ..mount(payments)
    }
}

#[tokio::test]
async fn passes_the_adapter_kit() {
    testkit::check_adapter(async |p| mount(p)).await;
    testkit::check_adapter_v3(async |p| mount(p)).await;
    // The sign-in services answer 404 when no sessions are kept.
    testkit::check_adapter(async |p| mount_with_login(p)).await;
}

#[tokio::test]
async fn paths_outside_the_prefix_are_not_found() {
    let (payments, _) = testkit::payments(testkit::config());
    let svc = WxpayService::new(payments).with_prefix("/pay");
    for path in ["/notify", "/payx/notify", "/"] {
        let req = Request::post(path).body(Full::new(Bytes::new())).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn notify_only_services_answer_any_path() {
    let config = testkit::config();
    let (payments, store) = testkit::payments(config.clone());
    store
        .insert(&testkit::prepaid_order("T-1", None, Fen(5)))
        .await
        .unwrap();
    let body = testkit::sign_body(
        testkit::notify_params(&config, "T-1", Fen(5)),
        &config.api_key,
    );
    let svc = WxpayService::payment_notify(payments.clone());
    let res = svc
        .clone()
        .oneshot(
            Request::post("/anything/wx-callback")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], wxpay_core::notify::REPLY_SUCCESS.as_bytes());
    let order = store
        .get(&OutTradeNo::new("T-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.state, OrderState::Paid);

    let res = svc
        .oneshot(
            Request::get("/wx-callback")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()[header::ALLOW], "POST");

    let res = WxpayService::refund_notify(payments)
        .oneshot(
            Request::post("/r")
                .body(Full::new(Bytes::from("<xml/>")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("FAIL"));
}

#[tokio::test]
async fn checkout_and_sign_in_against_the_simulator() {
    let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test())
        .await
        .unwrap();
    let config = sim
        .merchant_config()
        .with_notify_url("http://127.0.0.1:9/pay/notify");
    testkit::check_adapter_checkout(config.clone(), async |p| mount(p)).await;
    for mount in [mount, mount_with_login] {
        let code = sim.login("o-kit-user").await;
        let openid =
            testkit::check_adapter_sign_in(config.clone(), &code, async |p| mount(p)).await;
        assert_eq!(openid, "o-kit-user");
    }
    sim.shutdown().await;
}

/// Served by hyper directly (no tower, no framework), reached with reqwest.
#[tokio::test]
async fn served_by_hyper() {
    use hyper::{server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tower_service::Service;

    let config = testkit::config();
    let (payments, store) = testkit::payments(config.clone());
    store
        .insert(&testkit::prepaid_order("H-1", Some("alice"), Fen(990)))
        .await
        .unwrap();
    let wxpay = WxpayService::new(payments).with_prefix("/pay");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let wxpay = wxpay.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let mut wxpay = wxpay.clone();
                    req.extensions_mut().insert(peer);
                    async move { wxpay.call(req).await }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let http = reqwest::Client::new();
    let base = format!("http://{addr}/pay");
    let res = http
        .get(format!("{base}/orders/H-1"))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"out_trade_no":"H-1","state":"PREPAID","total_fee":990}"#
    );

    let body = testkit::sign_body(
        testkit::notify_params(&config, "H-1", Fen(990)),
        &config.api_key,
    );
    let res = http
        .post(format!("{base}/notify"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), wxpay_core::notify::REPLY_SUCCESS);

    let big = vec![b'x'; 2 * wxpay_tower::MAX_BODY_BYTES];
    let res = http
        .post(format!("{base}/notify"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The rest of the body is unread: hyper must not keep the connection.
    assert_eq!(res.headers()["connection"], "close");
    assert!(res.text().await.unwrap().contains("FAIL"));

    let res = http.get(format!("{base}/notify")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");

    let order = store
        .get(&OutTradeNo::new("H-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.state, OrderState::Paid);
    server.abort();
}

mod deadlines;
