//! The body deadline: in-process on tokio's paused clock (exact and
//! instant), and over a real socket served by hyper (real time, a short
//! deadline, a client that gives up after a few seconds), plus hyper's own
//! `header_read_timeout` for slow heads.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use http::{Request, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::Instant;
use tower::ServiceExt;
use wxpay_core::testkit::adapter as testkit;
use wxpay_core::{
    Fen, OutTradeNo,
    flow::{OrderState, OrderStore, Payments},
};
use wxpay_tower::{DEFAULT_BODY_TIMEOUT, WxpayService};

const DEADLINE: Duration = Duration::from_millis(200);
/// How long a client waits for an answer: far past the deadline, far
/// short of forever.
const PATIENCE: Duration = Duration::from_secs(5);

/// `chunks`, each after its pause; then the end of the body, or (`hang`)
/// silence for ever.
fn trickle(
    chunks: Vec<(Duration, Vec<u8>)>,
    hang: bool,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let sent = stream::iter(chunks).then(|(pause, chunk)| async move {
        tokio::time::sleep(pause).await;
        Bytes::from(chunk)
    });
    let rest = if hang {
        stream::pending().left_stream()
    } else {
        stream::empty().right_stream()
    };
    sent.chain(rest)
}

/// Sends `body` to `svc` at `path`: status, `Connection: close`, body text
/// and how long the answer took.
async fn send(
    svc: &WxpayService,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Stream<Item = Bytes> + Send + 'static,
) -> (u16, bool, String, Duration) {
    let body = StreamBody::new(body.map(|b| Ok::<_, std::io::Error>(Frame::data(b))));
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let started = Instant::now();
    let res = tokio::time::timeout(PATIENCE, svc.clone().oneshot(req.body(body).unwrap()))
        .await
        .expect("an answer within the deadline, not never")
        .unwrap();
    let took = started.elapsed();
    let closes = res
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v == "close");
    let status = res.status().as_u16();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        closes,
        String::from_utf8_lossy(&text).into_owned(),
        took,
    )
}

/// Payments with a `PREPAID` order `T-1` of 5 fen, and its signed notify.
async fn shop() -> (
    Payments,
    std::sync::Arc<wxpay_core::flow::MemoryStore>,
    Vec<u8>,
) {
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

async fn state(store: &wxpay_core::flow::MemoryStore) -> OrderState {
    let no = OutTradeNo::new("T-1").unwrap();
    store.get(&no).await.unwrap().unwrap().state
}

#[tokio::test(start_paused = true)]
async fn a_notify_body_that_stops_is_answered_fail_at_the_deadline() {
    let (payments, store, notify) = shop().await;
    let svc = WxpayService::new(payments)
        .with_prefix("/pay")
        .with_body_timeout(DEADLINE);
    // Half of a valid notify, then silence.
    let half = notify[..notify.len() / 2].to_vec();
    let (status, closes, text, took) = send(
        &svc,
        "/pay/notify",
        &[],
        trickle(vec![(Duration::ZERO, half)], true),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("FAIL"), "{text}");
    assert!(
        closes,
        "the rest of the body is unread: the connection must close"
    );
    assert!(took >= DEADLINE && took < PATIENCE, "{took:?}");
    assert_eq!(state(&store).await, OrderState::Prepaid);
}

#[tokio::test(start_paused = true)]
async fn an_order_body_that_stops_is_answered_408_and_stores_nothing() {
    let (payments, _store, _) = shop().await;
    let svc = WxpayService::new(payments.clone())
        .with_prefix("/pay")
        .with_body_timeout(DEADLINE);
    let start = br#"{"sku":"#.to_vec();
    let (status, closes, text, took) = send(
        &svc,
        "/pay/orders",
        &[("x-user", "bob"), ("content-type", "application/json")],
        trickle(vec![(Duration::ZERO, start)], true),
    )
    .await;
    assert_eq!(status, 408, "{text}");
    assert!(text.starts_with(r#"{"error":"request_timeout""#), "{text}");
    assert!(closes);
    assert!(took >= DEADLINE && took < PATIENCE, "{took:?}");
    assert!(payments.orders_of("bob", 10).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_body_that_trickles_in_within_the_deadline_is_served() {
    let (payments, store, notify) = shop().await;
    let svc = WxpayService::payment_notify(payments).with_body_timeout(DEADLINE);
    // Four pieces, 40 ms apart: complete at 160 ms of a 200 ms deadline.
    let pieces = notify
        .chunks(notify.len().div_ceil(4))
        .map(|c| (Duration::from_millis(40), c.to_vec()))
        .collect();
    let (status, closes, text, took) = send(&svc, "/wx-notify", &[], trickle(pieces, false)).await;
    assert_eq!((status, closes), (200, false));
    assert_eq!(text, wxpay_core::notify::REPLY_SUCCESS);
    assert!(took < DEADLINE, "{took:?}");
    assert_eq!(state(&store).await, OrderState::Paid);
}

#[tokio::test(start_paused = true)]
async fn the_default_deadline_is_ten_seconds() {
    let (payments, store, notify) = shop().await;
    assert_eq!(DEFAULT_BODY_TIMEOUT, Duration::from_secs(10));
    for svc in [
        WxpayService::new(payments.clone()).with_prefix("/pay"),
        WxpayService::payment_notify(payments.clone()),
    ] {
        let body = trickle(vec![(Duration::ZERO, notify[..10].to_vec())], true);
        let started = Instant::now();
        let req = Request::post("/pay/notify")
            .body(StreamBody::new(
                body.map(|b| Ok::<_, std::io::Error>(Frame::data(b))),
            ))
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= DEFAULT_BODY_TIMEOUT && took < DEFAULT_BODY_TIMEOUT + DEADLINE,
            "{took:?}"
        );
        assert_eq!(res.headers()[header::CONNECTION], "close");
    }
    assert_eq!(state(&store).await, OrderState::Prepaid);
}

/// The shop's service served by hyper on 127.0.0.1:0, each connection
/// with `header_read_timeout`.
async fn serve(svc: WxpayService, header_timeout: Duration) -> std::net::SocketAddr {
    use hyper::{server::conn::http1, service::service_fn};
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_service::Service;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                let app = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut svc = svc.clone();
                    async move { svc.call(req).await }
                });
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let _ = http.serve_connection(TokioIo::new(stream), app).await;
            });
        }
    });
    addr
}

/// [`wxpay_core::testkit::adapter::exchange`] within [`PATIENCE`].
async fn exchange(addr: std::net::SocketAddr, sent: &[u8]) -> (String, Duration) {
    wxpay_core::testkit::adapter::exchange(addr, sent, PATIENCE).await
}

#[tokio::test]
async fn over_tcp_a_declared_body_that_never_comes_is_answered_at_the_deadline() {
    let (payments, store, _) = shop().await;
    let svc = WxpayService::new(payments.clone())
        .with_prefix("/pay")
        .with_body_timeout(DEADLINE);
    let addr = serve(svc, Duration::from_secs(30)).await;
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
}

#[tokio::test]
async fn over_tcp_hyper_closes_a_slow_head_at_its_header_read_timeout() {
    let (payments, _, _) = shop().await;
    let addr = serve(WxpayService::new(payments).with_prefix("/pay"), DEADLINE).await;
    let (got, took) = exchange(addr, b"POST /pay/notify HTTP/1.1\r\nhost: shop\r\n").await;
    assert!(took >= DEADLINE, "{took:?}");
    // hyper answers 408 or just closes, depending on its version.
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
}
