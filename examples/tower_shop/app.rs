//! The hyper server of the shop (shared with the end-to-end tests).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tower_service::Service;
use wxpay_tower::WxpayService;

use crate::shop::{Shop, Shutdown};

/// Serves the shop on `listener` until `shutdown`, then finishes the
/// requests in flight.
pub async fn serve(
    shop: Arc<Shop>,
    listener: std::net::TcpListener,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let settings = shop.server;
    // wxpay's routes, their bodies read within the deadline.
    let wxpay = (WxpayService::new(shop.payments.clone()).with_prefix("/pay"))
        .with_body_timeout(settings.body_timeout);
    let login =
        WxpayService::sign_in(shop.payments.clone()).with_body_timeout(settings.body_timeout);
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let (shop, wxpay, login) = (shop.clone(), wxpay.clone(), login.clone());
        let app = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(peer); // the payer's IP for WeChat
            let (shop, mut wxpay, mut login) = (shop.clone(), wxpay.clone(), login.clone());
            async move {
                match req.uri().path() {
                    "/login" => login.call(req).await,
                    path if path.starts_with("/pay/") => wxpay.call(req).await,
                    _ => Ok::<_, Infallible>(me(&shop, &req).await),
                }
            }
        });
        // Slow clients: hyper closes a connection whose request head is not
        // in within this, and (the timer starts whenever hyper waits for a
        // head) one kept alive that does not start its next request.
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout);
        let connection = http.serve_connection(TokioIo::new(stream), app);
        tokio::spawn(connections.watch(connection));
    }
    connections.shutdown().await;
    Ok(())
}

/// `GET /me`; any other path outside wxpay's is `404`.
async fn me(shop: &Shop, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = if (req.method(), req.uri().path()) == (&Method::GET, "/me") {
        let auth = req.headers().get(header::AUTHORIZATION);
        shop.me(auth.and_then(|v| v.to_str().ok())).await
    } else {
        (404, serde_json::json!({ "error": "not_found" }))
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static parts are valid")
}
