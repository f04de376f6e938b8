//! The shops' bounds on slow clients, over raw TCP: the server settings
//! (`--header-timeout`: hyper's `header_read_timeout`, actix-web's
//! `client_request_timeout` and `keep_alive`) and wxpay's body deadline
//! (`--body-timeout`), each configured short here, against a client that
//! gives up after a few seconds.

use std::{net::SocketAddr, time::Duration};

use crate::harness::{Framework, Running};

/// The shops' header timeout in these tests (seconds).
const HEADER_TIMEOUT: f64 = 1.0;
/// The body deadline in these tests (seconds).
const BODY_TIMEOUT: f64 = 0.2;
/// How long a client waits for the server to answer or close.
const PATIENCE: Duration = Duration::from_secs(5);

/// [`wxpay_core::testkit::adapter::exchange`] with the shop, within
/// [`PATIENCE`].
async fn exchange(shop: &Running, sent: &[u8]) -> (String, Duration) {
    let addr: SocketAddr = shop.base.trim_start_matches("http://").parse().unwrap();
    wxpay_core::testkit::adapter::exchange(addr, sent, PATIENCE).await
}

/// A head that stops half-way, and a kept-alive connection left idle, are
/// closed at the header timeout.
pub async fn slow_and_idle_clients_are_cut_off(fw: Framework) {
    let shop = Running::start_timing_out(fw, HEADER_TIMEOUT, 10.0).await;
    // actix-web's timers read a clock it refreshes every 500 ms: a
    // deadline may pass up to that much early.
    let at_least = Duration::from_secs_f64(HEADER_TIMEOUT) / 2;

    let (got, took) = exchange(&shop, b"POST /pay/notify HTTP/1.1\r\nhost: shop\r\n").await;
    assert!(took >= at_least, "{fw:?}: closed after {took:?}");
    // hyper closes; actix-web answers 408 first.
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 408"),
        "{fw:?}: {got}"
    );

    let (got, took) = exchange(&shop, b"GET /me HTTP/1.1\r\nhost: shop\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 401"), "{fw:?}: {got}");
    assert!(took >= at_least, "{fw:?}: closed after {took:?}");
}

/// `Content-Length: 500000`, five bytes, silence: the notify route answers
/// `FAIL` and the order route `408`, at the body deadline, and close.
pub async fn a_body_that_never_comes_is_answered_at_the_deadline(fw: Framework) {
    let shop = Running::start_timing_out(fw, 10.0, BODY_TIMEOUT).await;
    let deadline = Duration::from_secs_f64(BODY_TIMEOUT);
    let (got, took) = exchange(
        &shop,
        b"POST /pay/notify HTTP/1.1\r\nhost: shop\r\ncontent-length: 500000\r\n\r\n<xml>",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{fw:?}: {got}");
    assert!(got.contains("FAIL"), "{fw:?}: {got}");
    assert!(took >= deadline, "{fw:?}: answered after {took:?}");
    let (got, took) = exchange(
        &shop,
        b"POST /pay/orders HTTP/1.1\r\nhost: shop\r\ncontent-length: 500000\r\n\r\n{\"sku\"",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{fw:?}: {got}");
    assert!(got.contains("request_timeout"), "{fw:?}: {got}");
    assert!(took >= deadline, "{fw:?}: answered after {took:?}");
}
