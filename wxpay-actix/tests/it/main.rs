//! wxpay-actix in-process (`actix_web::test`): the core's adapter kit
//! through `scope` and `configure`, and a checkout against the simulator.

use std::{future::Future, pin::Pin, rc::Rc};

use actix_web::{
    App,
    http::{ConnectionType, header},
    test, web,
};
use wxpay_core::flow::{
    Payments,
    http::testkit::{self, AdapterClient, TestRequest, TestResponse},
};

type Sender = Box<dyn Fn(TestRequest) -> Pin<Box<dyn Future<Output = TestResponse>>>>;

struct Client(Sender);

impl AdapterClient for Client {
    async fn send(&self, req: TestRequest) -> TestResponse {
        (self.0)(req).await
    }
}

/// wxpay under `/pay`, through [`wxpay_actix::scope`] or a scope of the
/// app's own with [`wxpay_actix::configure`], next to an app route.
async fn mount(payments: Payments, via_configure: bool) -> Client {
    let wxpay = if via_configure {
        web::scope("/pay").configure(wxpay_actix::configure(payments))
    } else {
        wxpay_actix::scope("/pay", payments)
    };
    let app = App::new()
        .route("/", web::get().to(|| async { "shop" }))
        .service(wxpay);
    let svc = Rc::new(test::init_service(app).await);
    Client(Box::new(move |req: TestRequest| {
        let svc = Rc::clone(&svc);
        Box::pin(async move {
            let mut r = test::TestRequest::default()
                .method(req.method.parse().unwrap())
                .uri(&format!("/pay{}", req.path))
                .peer_addr("203.0.113.7:4000".parse().unwrap());
            for (k, v) in req.headers {
                r = r.insert_header((k, v));
            }
            let res = test::call_service(&*svc, r.set_payload(req.body).to_request()).await;
            let header = |name| {
                res.headers()
                    .get(name)
                    .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
            };
            TestResponse {
                status: res.status().as_u16(),
                content_type: header(header::CONTENT_TYPE),
                allow: header(header::ALLOW),
                // actix writes the Connection header from the response head.
                closes: res.response().head().connection_type() == ConnectionType::Close,
                body: test::read_body(res).await.to_vec(),
            }
        })
    }))
}

#[actix_web::test]
async fn passes_the_adapter_kit() {
    testkit::check_adapter(async |p| mount(p, false).await).await;
}

#[actix_web::test]
async fn passes_the_adapter_kit_through_configure() {
    testkit::check_adapter(async |p| mount(p, true).await).await;
}

#[actix_web::test]
async fn checkout_against_the_simulator() {
    let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test())
        .await
        .unwrap();
    let config = sim
        .merchant_config()
        .with_notify_url("http://127.0.0.1:9/pay/notify");
    testkit::check_adapter_checkout(config, async |p| mount(p, false).await).await;
    sim.shutdown().await;
}
