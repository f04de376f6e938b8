//! The body deadline: in-process (`actix_web::test`) on tokio's paused
//! clock (exact and instant), and over a real socket served by
//! `HttpServer` (real time, a short deadline, a client that gives up after
//! a few seconds).

use std::{sync::Arc, time::Duration};

use actix_web::{
    App, HttpServer,
    dev::Payload,
    error::PayloadError,
    http::ConnectionType,
    test,
    web::{self, Bytes},
};
use futures::{StreamExt, stream};
use tokio::time::Instant;
use wxpay_actix::{DEFAULT_BODY_TIMEOUT, Wxpay};
use wxpay_core::testkit::adapter as testkit;
use wxpay_core::{
    Fen, OutTradeNo,
    flow::{MemoryStore, OrderState, OrderStore, Payments},
};

const DEADLINE: Duration = Duration::from_millis(200);
/// How long a client waits for an answer: far past the deadline, far
/// short of forever.
const PATIENCE: Duration = Duration::from_secs(5);

/// `chunks`, each after its pause; then the end of the body, or (`hang`)
/// silence for ever.
fn trickle(chunks: Vec<(Duration, Vec<u8>)>, hang: bool) -> Payload {
    let sent = stream::iter(chunks).then(|(pause, chunk)| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, PayloadError>(Bytes::from(chunk))
    });
    let rest = if hang {
        stream::pending().left_stream()
    } else {
        stream::empty().right_stream()
    };
    Payload::Stream {
        payload: Box::pin(sent.chain(rest)),
    }
}

/// What came back, and how long it took.
struct Answer {
    status: u16,
    closes: bool,
    text: String,
    took: Duration,
}

/// wxpay with `deadline`: in a scope at `/pay`, through `configure` at
/// `/configured`, sign-in alone at `/login`.
fn app(
    payments: Payments,
    deadline: Option<Duration>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let wxpay = match deadline {
        Some(d) => Wxpay::new(payments.clone()).body_timeout(d),
        None => Wxpay::new(payments.clone()),
    };
    let app = App::new()
        .route("/login", wxpay.clone().sign_in())
        .service(web::scope("/configured").configure(wxpay.clone().configure()));
    match deadline {
        Some(_) => app.service(wxpay.scope("/pay")),
        // The defaults, through the free functions.
        None => app.service(wxpay_actix::scope("/pay", payments)),
    }
}

/// Sends `payload` to `path` of `app` (in-process), waiting up to
/// `patience` for the answer.
async fn send(
    payments: Payments,
    deadline: Option<Duration>,
    path: &str,
    headers: &[(&str, &str)],
    payload: Payload,
    patience: Duration,
) -> Answer {
    let svc = test::init_service(app(payments, deadline)).await;
    let mut req = test::TestRequest::post().uri(path);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let (req, _) = req.to_request().replace_payload(payload);
    let started = Instant::now();
    let res = tokio::time::timeout(patience, test::call_service(&svc, req))
        .await
        .expect("an answer within the deadline, not never");
    let took = started.elapsed();
    Answer {
        status: res.status().as_u16(),
        closes: res.response().head().connection_type() == ConnectionType::Close,
        text: String::from_utf8_lossy(&test::read_body(res).await).into_owned(),
        took,
    }
}

/// Payments with a `PREPAID` order `T-1` of 5 fen, and its signed notify.
async fn shop() -> (Payments, Arc<MemoryStore>, Vec<u8>) {
    let config = testkit::config();
    let (payments, store) = testkit::payments(config.clone());
    store
        .insert(&testkit::prepaid_order("T-1", Some("alice"), Fen(5)))
        .await
        .unwrap();
    let notify = testkit::sign_body(
        testkit::notify_params(&config, "T-1", Fen(5)),
        &config.api_key,
    );
    (payments, store, notify)
}

async fn state(store: &MemoryStore) -> OrderState {
    let no = OutTradeNo::new("T-1").unwrap();
    store.get(&no).await.unwrap().unwrap().state
}

#[actix_web::test]
async fn a_notify_body_that_stops_is_answered_fail_at_the_deadline() {
    tokio::time::pause();
    let (payments, store, notify) = shop().await;
    for path in ["/pay/notify", "/configured/notify"] {
        // Half of a valid notify, then silence.
        let half = notify[..notify.len() / 2].to_vec();
        let payload = trickle(vec![(Duration::ZERO, half)], true);
        let a = send(
            payments.clone(),
            Some(DEADLINE),
            path,
            &[],
            payload,
            PATIENCE,
        )
        .await;
        assert_eq!(a.status, 200, "{path}");
        assert!(a.text.contains("FAIL"), "{path}: {}", a.text);
        assert!(a.closes, "{path}: the rest of the body is unread");
        assert!(
            a.took >= DEADLINE && a.took < PATIENCE,
            "{path}: {:?}",
            a.took
        );
    }
    assert_eq!(state(&store).await, OrderState::Prepaid);
}

#[actix_web::test]
async fn an_order_body_that_stops_is_answered_408_and_stores_nothing() {
    tokio::time::pause();
    let (payments, _store, _) = shop().await;
    for path in ["/pay/orders", "/configured/orders", "/login"] {
        let payload = trickle(vec![(Duration::ZERO, br#"{"sku":"#.to_vec())], true);
        let headers = [("x-user", "bob"), ("content-type", "application/json")];
        let a = send(
            payments.clone(),
            Some(DEADLINE),
            path,
            &headers,
            payload,
            PATIENCE,
        )
        .await;
        // The sign-in route without sessions is unknown: 404, still closed.
        let expected = if path == "/login" { 404 } else { 408 };
        assert_eq!(a.status, expected, "{path}: {}", a.text);
        if expected == 408 {
            assert!(
                a.text.starts_with(r#"{"error":"request_timeout""#),
                "{path}: {}",
                a.text
            );
        }
        assert!(a.closes, "{path}");
        assert!(
            a.took >= DEADLINE && a.took < PATIENCE,
            "{path}: {:?}",
            a.took
        );
    }
    assert!(payments.orders_of("bob", 10).await.unwrap().is_empty());
}

#[actix_web::test]
async fn a_body_that_trickles_in_within_the_deadline_is_served() {
    tokio::time::pause();
    let (payments, store, notify) = shop().await;
    // Four pieces, 40 ms apart: complete at 160 ms of a 200 ms deadline.
    let pieces = notify
        .chunks(notify.len().div_ceil(4))
        .map(|c| (Duration::from_millis(40), c.to_vec()))
        .collect();
    let payload = trickle(pieces, false);
    let a = send(
        payments,
        Some(DEADLINE),
        "/pay/notify",
        &[],
        payload,
        PATIENCE,
    )
    .await;
    assert_eq!((a.status, a.closes), (200, false));
    assert_eq!(a.text, wxpay_core::notify::REPLY_SUCCESS);
    assert!(a.took < DEADLINE, "{:?}", a.took);
    assert_eq!(state(&store).await, OrderState::Paid);
}

#[actix_web::test]
async fn the_default_deadline_is_ten_seconds() {
    tokio::time::pause();
    let (payments, store, notify) = shop().await;
    assert_eq!(DEFAULT_BODY_TIMEOUT, Duration::from_secs(10));
    for path in ["/pay/notify", "/configured/notify", "/login"] {
        let payload = trickle(vec![(Duration::ZERO, notify[..10].to_vec())], true);
        let patience = DEFAULT_BODY_TIMEOUT + PATIENCE;
        let a = send(payments.clone(), None, path, &[], payload, patience).await;
        assert!(a.closes, "{path}");
        assert!(
            a.took >= DEFAULT_BODY_TIMEOUT && a.took < DEFAULT_BODY_TIMEOUT + DEADLINE,
            "{path}: {:?}",
            a.took
        );
    }
    assert_eq!(state(&store).await, OrderState::Prepaid);
}

/// [`wxpay_core::testkit::adapter::exchange`] within [`PATIENCE`].
async fn exchange(addr: std::net::SocketAddr, sent: &[u8]) -> (String, Duration) {
    wxpay_core::testkit::adapter::exchange(addr, sent, PATIENCE).await
}

#[actix_web::test]
async fn over_tcp_a_declared_body_that_never_comes_is_answered_at_the_deadline() {
    let (payments, store, _) = shop().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = payments.clone();
    let server = HttpServer::new(move || app(served.clone(), Some(DEADLINE)))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let (got, took) = exchange(
        addr,
        b"POST /pay/notify HTTP/1.1\r\nhost: shop\r\ncontent-length: 500000\r\n\r\n<xml>",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    assert!(got.contains("FAIL"), "{got}");
    assert!(took >= DEADLINE, "{took:?}");
    let (got, took) = exchange(
        addr,
        b"POST /pay/orders HTTP/1.1\r\nhost: shop\r\nx-user: bob\r\ncontent-length: 500000\r\n\r\n{\"sku\"",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout"), "{got}");
    assert!(took >= DEADLINE, "{took:?}");
    assert_eq!(state(&store).await, OrderState::Prepaid);
    assert!(payments.orders_of("bob", 10).await.unwrap().is_empty());
    handle.stop(false).await;
}
