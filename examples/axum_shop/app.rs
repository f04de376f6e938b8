//! The axum routes of the shop (shared with the end-to-end tests).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::get,
};

use hyper::{Request, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tower_service::Service;
use wxpay_axum::Wxpay;

use crate::shop::{Reply, Shop, Shutdown};

/// Serves the shop on `listener` until `shutdown`, then finishes the
/// requests in flight.
///
/// `axum::serve` has no setting for slow clients, so the router is served
/// by hyper's `http1::Builder`, which has one: a connection whose request
/// head is not in within `header_timeout` is closed (the timer starts
/// whenever hyper waits for a head, so it also ends a kept-alive
/// connection that does not start its next request).
pub async fn serve(
    shop: Arc<Shop>,
    listener: std::net::TcpListener,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router(shop.clone());
    let connections = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = service_fn(move |req: Request<Incoming>| app.clone().call(req));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(shop.server.header_timeout);
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(connections.watch(connection));
    }
    connections.shutdown().await;
    Ok(())
}

/// `/me`, and wxpay's sign-in at `/login` and its routes under `/pay`,
/// their bodies read within the deadline.
pub fn router(shop: Arc<Shop>) -> Router {
    let wxpay = Wxpay::new(shop.payments.clone()).body_timeout(shop.server.body_timeout);
    Router::new()
        .route("/me", get(me))
        .with_state(shop.clone())
        .route("/login", wxpay.clone().sign_in())
        .merge(wxpay.router_at("/pay"))
}

async fn me(State(shop): State<Arc<Shop>>, headers: HeaderMap) -> Response {
    let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    respond(shop.me(auth).await)
}

fn respond((status, body): Reply) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}
