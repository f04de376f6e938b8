//! The hyper server of the shop (shared with the end-to-end tests).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tower_service::Service;
use wxpay_tower::WxpayService;

use crate::shop::{Reply, Shop};

type Body = BoxBody<Bytes, Infallible>;

/// Serves the shop on `listener` until the process ends.
pub async fn serve(shop: Arc<Shop>, listener: std::net::TcpListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let wxpay = WxpayService::new(shop.payments.clone()).with_prefix("/pay");
    loop {
        let (stream, peer) = listener.accept().await?;
        let (shop, wxpay) = (shop.clone(), wxpay.clone());
        tokio::spawn(async move {
            let app = service_fn(move |mut req: Request<Incoming>| {
                let (shop, mut wxpay) = (shop.clone(), wxpay.clone());
                async move {
                    if req.uri().path().starts_with("/pay/") {
                        req.extensions_mut().insert(peer); // the payer's IP for WeChat
                        let res = wxpay.call(req).await?;
                        return Ok::<_, Infallible>(res.map(|b| b.boxed()));
                    }
                    Ok(route(&shop, req).await)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), app)
                .await;
        });
    }
}

/// The shop's own routes.
async fn route(shop: &Shop, req: Request<Incoming>) -> Response<Body> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/login") => {
            match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(body) => respond(shop.login(&body.to_bytes()).await),
                Err(_) => respond((413, serde_json::json!({"error": "payload_too_large"}))),
            }
        }
        (Method::GET, "/me") => respond(shop.me(auth.as_deref()).await),
        _ => respond((404, serde_json::json!({"error": "not_found"}))),
    }
}

fn respond((status, body): Reply) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("static parts are valid")
}
