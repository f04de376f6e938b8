//! # wxpay-actix
//!
//! The [actix-web](https://docs.rs/actix-web) adapter of wxpay: [`scope`]
//! returns a [`Scope`] to register in your `App` (or use [`configure`] in a
//! scope of your own). It only pulls the method, path, headers and body out
//! of the request, calls [`wxpay_core::flow::http::handle`] and builds the
//! response; routes, statuses and bodies are the core's.
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{App, HttpServer, web};
//! use async_trait::async_trait;
//! use wxpay_core::{Config, Fen, flow::*};
//!
//! struct Shop;
//! #[async_trait]
//! impl Checkout for Shop {
//!     async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
//!         // Your session, your prices: never the client's.
//!         let user = req.header("x-user").ok_or_else(|| Rejection::unauthorized("sign in first"))?;
//!         Ok(OrderDraft::jsapi(format!("openid-of-{user}"), "Shop-VIP", Fen(990)).with_owner(user))
//!     }
//!     async fn identify(&self, req: &CheckoutRequest) -> Result<Option<String>, Rejection> {
//!         Ok(req.header("x-user").map(str::to_owned))
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let payments = Payments::builder(Config::from_env()?) // notify_url: https://…/pay/notify
//!         .store(Arc::new(MemoryStore::new()))
//!         .checkout(Shop)
//!         .build()?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .route("/", web::get().to(|| async { "my shop" }))
//!             // POST /pay/orders, GET /pay/orders/{no}, POST /pay/orders/{no}/close,
//!             // POST /pay/notify, POST /pay/refund-notify
//!             .service(wxpay_actix::scope("/pay", payments.clone()))
//!     })
//!     .bind(("0.0.0.0", 8080))?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! Bodies are read up to [`MAX_BODY_BYTES`] (1 MiB): a larger one is a
//! `FAIL` reply on the notify routes and `413` elsewhere, sent with
//! `Connection: close` (the rest of the body stays unread). The client IP is
//! the connection's peer address.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use actix_web::{
    HttpRequest, HttpResponse, Scope,
    http::{StatusCode, header},
    web,
};
pub use wxpay_core::flow::http::MAX_BODY_BYTES;
use wxpay_core::flow::{
    Payments,
    http::{HttpIn, HttpOut, handle},
};

/// The payment routes under `prefix` (e.g. `/pay`). Every path under the
/// prefix is answered by wxpay: unknown ones with `404`, wrong methods with
/// `405`.
pub fn scope(prefix: &str, payments: Payments) -> Scope {
    web::scope(prefix).configure(configure(payments))
}

/// The payment routes as a configuration for a scope of your own
/// (`web::scope("/pay").configure(wxpay_actix::configure(payments))`). It
/// sets the scope's default service: register no other routes in that
/// scope.
pub fn configure(payments: Payments) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.default_service(web::to(move |req: HttpRequest, body: web::Payload| {
            let payments = payments.clone();
            async move { serve(&payments, req, body).await }
        }));
    }
}

async fn serve(payments: &Payments, req: HttpRequest, body: web::Payload) -> HttpResponse {
    // Inside the scope, the unprocessed part of the path is relative to it.
    let mut input = HttpIn::new(
        req.method().as_str(),
        req.match_info().unprocessed(),
        Vec::new(),
    );
    if input.needs_headers() {
        for (name, value) in req.headers() {
            input.add_header(name.as_str(), value.as_bytes());
        }
        input.client_ip = req.peer_addr().map(|addr| addr.ip().to_string());
    }
    match body.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => input.body = bytes.into(),
        Ok(Err(_)) | Err(_) => input = input.with_body_too_large(),
    }
    response(handle(payments, input).await)
}

/// The one mapping from the core's answer to an actix response.
fn response(out: HttpOut) -> HttpResponse {
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, out.content_type));
    if let Some(allow) = out.allow {
        res.insert_header((header::ALLOW, allow));
    }
    if out.close {
        res.force_close();
    }
    res.body(out.body)
}
