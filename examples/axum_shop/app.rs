//! The axum routes of the shop (shared with the end-to-end tests).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::shop::{Reply, Shop, Shutdown};

/// Serves the shop on `listener` until `shutdown`, then finishes the
/// requests in flight.
pub async fn serve(
    shop: Arc<Shop>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router(shop))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `/me`, and wxpay's sign-in at `/login` and its routes under `/pay`.
pub fn router(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/me", get(me))
        .with_state(shop.clone())
        .route("/login", wxpay_axum::sign_in(shop.payments.clone()))
        .merge(wxpay_axum::router_at("/pay", shop.payments.clone()))
}

async fn me(State(shop): State<Arc<Shop>>, headers: HeaderMap) -> Response {
    let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    respond(shop.me(auth).await)
}

fn respond((status, body): Reply) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}
