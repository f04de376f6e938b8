//! wxpay-actix in-process (`actix_web::test`): the core's adapter kit
//! through `scope` and `configure`, and a checkout against the simulator.

use std::{future::Future, pin::Pin, rc::Rc};

use actix_web::{
    App,
    http::{ConnectionType, header},
    test, web,
};
use wxpay_core::flow::Payments;
use wxpay_core::testkit::adapter::{self as testkit, AdapterClient, TestRequest, TestResponse};

type Sender = Box<dyn Fn(TestRequest) -> Pin<Box<dyn Future<Output = TestResponse>>>>;

struct Client(Sender);

impl AdapterClient for Client {
    async fn send(&self, req: TestRequest) -> TestResponse {
        (self.0)(req).await
    }
}

/// How wxpay is mounted.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// [`wxpay_actix::scope`] at `/pay`.
    Scope,
    /// A scope of the app's own with [`wxpay_actix::configure`].
    Configure,
    /// [`wxpay_actix::scope`], and sign-in and sign-out alone at `/login`
    /// and `/logout` ([`wxpay_actix::sign_in`], [`wxpay_actix::sign_out`]).
    Login,
}

/// wxpay under `/pay` as `via` says, next to an app route.
async fn mount(payments: Payments, via: Via) -> Client {
    let wxpay = if via == Via::Configure {
        web::scope("/pay").configure(wxpay_actix::configure(payments.clone()))
    } else {
        wxpay_actix::scope("/pay", payments.clone())
    };
    let mut app = App::new().route("/", web::get().to(|| async { "shop" }));
    if via == Via::Login {
        app = app
            .route("/login", wxpay_actix::sign_in(payments.clone()))
            .route("/logout", wxpay_actix::sign_out(payments));
    }
    let app = app.service(wxpay);
    let svc = Rc::new(test::init_service(app).await);
    Client(Box::new(move |req: TestRequest| {
        let svc = Rc::clone(&svc);
        Box::pin(async move {
            let mut r = test::TestRequest::default()
                .method(req.method.parse().unwrap())
                .uri(&match (via, req.path.as_str()) {
                    (Via::Login, "/sign-in") => "/login".to_owned(),
                    (Via::Login, "/sign-out") => "/logout".to_owned(),
                    (_, path) => format!("/pay{path}"),
                })
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
    testkit::check_adapter(async |p| mount(p, Via::Scope).await).await;
    testkit::check_adapter_v3(async |p| mount(p, Via::Scope).await).await;
}

#[actix_web::test]
async fn passes_the_adapter_kit_through_configure() {
    testkit::check_adapter(async |p| mount(p, Via::Configure).await).await;
    testkit::check_adapter_v3(async |p| mount(p, Via::Configure).await).await;
}

#[actix_web::test]
async fn checkout_and_sign_in_against_the_simulator() {
    let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test())
        .await
        .unwrap();
    let config = sim
        .merchant_config()
        .with_notify_url("http://127.0.0.1:9/pay/notify");
    testkit::check_adapter_checkout(config.clone(), async |p| mount(p, Via::Scope).await).await;
    for via in [Via::Scope, Via::Configure, Via::Login] {
        let code = sim.login("o-kit-user").await;
        let openid =
            testkit::check_adapter_sign_in(config.clone(), &code, async |p| mount(p, via).await)
                .await;
        assert_eq!(openid, "o-kit-user");
    }
    sim.shutdown().await;
}

#[actix_web::test]
async fn passes_the_adapter_kit_with_login_routes() {
    // /login and /logout answer 404 when no sessions are kept.
    testkit::check_adapter(async |p| mount(p, Via::Login).await).await;
}

mod deadlines;
