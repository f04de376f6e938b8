//! The body deadline: in-process on tokio's paused clock (exact and
//! instant), and over a real socket served by `axum::serve` (real time, a
//! short deadline, a client that gives up after a few seconds).

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{Request, header},
};
use futures::{Stream, StreamExt, stream};
use tokio::time::Instant;
use tower::ServiceExt;
use wxpay_axum::{DEFAULT_BODY_TIMEOUT, Wxpay};
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
fn trickle(chunks: Vec<(Duration, Vec<u8>)>, hang: bool) -> Body {
    let sent = stream::iter(chunks).then(|(pause, chunk)| async move {
        tokio::time::sleep(pause).await;
        Bytes::from(chunk)
    });
    let rest = if hang {
        stream::pending().left_stream()
    } else {
        stream::empty().right_stream()
    };
    body(sent.chain(rest))
}

fn body(chunks: impl Stream<Item = Bytes> + Send + 'static) -> Body {
    Body::from_stream(chunks.map(Ok::<_, std::io::Error>))
}

/// Sends `body` to `app` at `path`: status, `Connection: close`, body text
/// and how long the answer took.
async fn send(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (u16, bool, String, Duration) {
    send_within(PATIENCE, app, path, headers, body).await
}

/// [`send`], waiting up to `patience` for the answer.
async fn send_within(
    patience: Duration,
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (u16, bool, String, Duration) {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let started = Instant::now();
    let res = tokio::time::timeout(patience, app.clone().oneshot(req.body(body).unwrap()))
        .await
        .expect("an answer within the deadline, not never")
        .unwrap();
    let took = started.elapsed();
    let closes = res
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v == "close");
    let status = res.status().as_u16();
    let text = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        closes,
        String::from_utf8_lossy(&text).into_owned(),
        took,
    )
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

/// wxpay merged at `/pay` and nested at `/nested`, with `deadline`.
fn app(payments: Payments, deadline: Duration) -> Router {
    let wxpay = Wxpay::new(payments).body_timeout(deadline);
    Router::new()
        .route("/login", wxpay.clone().sign_in())
        .nest("/nested", wxpay.clone().router())
        .merge(wxpay.router_at("/pay"))
}

#[tokio::test(start_paused = true)]
async fn a_notify_body_that_stops_is_answered_fail_at_the_deadline() {
    let (payments, store, notify) = shop().await;
    let app = app(payments, DEADLINE);
    for path in ["/pay/notify", "/nested/notify"] {
        // Half of a valid notify, then silence.
        let half = notify[..notify.len() / 2].to_vec();
        let (status, closes, text, took) =
            send(&app, path, &[], trickle(vec![(Duration::ZERO, half)], true)).await;
        assert_eq!(status, 200, "{path}");
        assert!(text.contains("FAIL"), "{path}: {text}");
        assert!(closes, "{path}: the rest of the body is unread");
        assert!(took >= DEADLINE && took < PATIENCE, "{path}: {took:?}");
    }
    assert_eq!(state(&store).await, OrderState::Prepaid);
}

#[tokio::test(start_paused = true)]
async fn an_order_body_that_stops_is_answered_408_and_stores_nothing() {
    let (payments, _store, _) = shop().await;
    let app = app(payments.clone(), DEADLINE);
    for path in ["/pay/orders", "/nested/orders", "/login"] {
        let start = br#"{"sku":"#.to_vec();
        let (status, closes, text, took) = send(
            &app,
            path,
            &[("x-user", "bob"), ("content-type", "application/json")],
            trickle(vec![(Duration::ZERO, start)], true),
        )
        .await;
        // The sign-in route without sessions is unknown: 404, still closed.
        let expected = if path == "/login" { 404 } else { 408 };
        assert_eq!(status, expected, "{path}: {text}");
        if expected == 408 {
            assert!(
                text.starts_with(r#"{"error":"request_timeout""#),
                "{path}: {text}"
            );
        }
        assert!(closes, "{path}");
        assert!(took >= DEADLINE && took < PATIENCE, "{path}: {took:?}");
    }
    assert!(payments.orders_of("bob", 10).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_body_that_trickles_in_within_the_deadline_is_served() {
    let (payments, store, notify) = shop().await;
    let app = app(payments, DEADLINE);
    // Four pieces, 40 ms apart: complete at 160 ms of a 200 ms deadline.
    let pieces = notify
        .chunks(notify.len().div_ceil(4))
        .map(|c| (Duration::from_millis(40), c.to_vec()))
        .collect();
    let (status, closes, text, took) = send(&app, "/pay/notify", &[], trickle(pieces, false)).await;
    assert_eq!((status, closes), (200, false));
    assert_eq!(text, wxpay_core::notify::REPLY_SUCCESS);
    assert!(took < DEADLINE, "{took:?}");
    assert_eq!(state(&store).await, OrderState::Paid);
}

#[tokio::test(start_paused = true)]
async fn the_default_deadline_is_ten_seconds() {
    let (payments, store, notify) = shop().await;
    assert_eq!(DEFAULT_BODY_TIMEOUT, Duration::from_secs(10));
    let apps: [Router; 3] = [
        Router::new().merge(wxpay_axum::router_at("/pay", payments.clone())),
        Router::new().nest("/pay", wxpay_axum::router(payments.clone())),
        Router::new().route("/pay/notify", wxpay_axum::sign_in(payments.clone())),
    ];
    for app in apps {
        let body = trickle(vec![(Duration::ZERO, notify[..10].to_vec())], true);
        let patience = DEFAULT_BODY_TIMEOUT + PATIENCE;
        let (_, closes, _, took) = send_within(patience, &app, "/pay/notify", &[], body).await;
        assert!(closes);
        assert!(
            took >= DEFAULT_BODY_TIMEOUT && took < DEFAULT_BODY_TIMEOUT + DEADLINE,
            "{took:?}"
        );
    }
    assert_eq!(state(&store).await, OrderState::Prepaid);
}

/// [`wxpay_core::testkit::adapter::exchange`] within [`PATIENCE`].
async fn exchange(addr: std::net::SocketAddr, sent: &[u8]) -> (String, Duration) {
    wxpay_core::testkit::adapter::exchange(addr, sent, PATIENCE).await
}

#[tokio::test]
async fn over_tcp_a_declared_body_that_never_comes_is_answered_at_the_deadline() {
    let (payments, store, _) = shop().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app(payments.clone(), DEADLINE)).into_future());
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
    server.abort();
}
