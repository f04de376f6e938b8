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
//! With [sessions](wxpay_core::flow::PaymentsBuilder::sessions) kept, the
//! routes include `POST /sign-in` and `POST /sign-out`; [`sign_in`] and
//! [`sign_out`] mount them alone at a path of your own:
//! `App::new().route("/login", wxpay_actix::sign_in(payments.clone()))`.
//!
//! Bodies are read up to [`MAX_BODY_BYTES`] (1 MiB): a larger one is a
//! `FAIL` reply on the notify routes and `413` elsewhere, sent with
//! `Connection: close` (the rest of the body stays unread). The client IP is
//! the connection's peer address.
//!
//! Reading a body has a deadline, [`DEFAULT_BODY_TIMEOUT`] (10 s) from when
//! wxpay starts reading it; [`Wxpay`] mounts the same routes with another
//! ([`Wxpay::body_timeout`]). A body not complete by then is refused unread
//! (`408` JSON on the order routes, the `FAIL` reply on the notify routes,
//! with `Connection: close`) and never reaches the flow.
//!
//! Slow or idle connections before a request's body are `HttpServer`'s to
//! bound: `client_request_timeout` (5 s by default: the head of a
//! connection's first request, answered `408`) and `keep_alive` (5 s by
//! default: the wait for the next request), as `examples/actix_shop` sets
//! them.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

use std::time::Duration;

use actix_web::{
    HttpRequest, HttpResponse, Route, Scope,
    http::{StatusCode, header},
    web,
};
pub use wxpay_core::flow::http::{DEFAULT_BODY_TIMEOUT, MAX_BODY_BYTES};
use wxpay_core::flow::{
    Payments,
    http::{HttpIn, HttpOut, handle, is_signature_header},
};

/// The payment routes under `prefix` (e.g. `/pay`). Every path under the
/// prefix is answered by wxpay: unknown ones with `404`, wrong methods with
/// `405`.
pub fn scope(prefix: &str, payments: Payments) -> Scope {
    Wxpay::new(payments).scope(prefix)
}

/// The payment routes as a configuration for a scope of your own
/// (`web::scope("/pay").configure(wxpay_actix::configure(payments))`). It
/// sets the scope's default service: register no other routes in that
/// scope.
pub fn configure(payments: Payments) -> impl FnOnce(&mut web::ServiceConfig) {
    Wxpay::new(payments).configure()
}

/// The sign-in route alone, for `App::route` at a path of your own
/// (`.route("/login", wxpay_actix::sign_in(payments))`): `POST {"code"}` →
/// `{"token", "openid", "expires_at"}`, the core's `/sign-in` (see
/// [`wxpay_core::flow::http`]). It takes every method (others answer
/// `405`). Needs a [`Payments`] that keeps sessions; without them it
/// answers `404`.
pub fn sign_in(payments: Payments) -> Route {
    Wxpay::new(payments).sign_in()
}

/// The sign-out route alone (`POST`, `Authorization: Bearer …` →
/// `{"signed_out": bool}`), like [`sign_in`].
pub fn sign_out(payments: Payments) -> Route {
    Wxpay::new(payments).sign_out()
}

/// The routes of [`scope`], [`configure`], [`sign_in`] and [`sign_out`]
/// with settings of your own; those functions are `Wxpay::new(payments)`
/// with the defaults.
///
/// ```
/// # let payments = wxpay_core::testkit::adapter::payments(wxpay_core::testkit::adapter::config()).0;
/// use std::time::Duration;
/// use wxpay_actix::Wxpay;
///
/// let wxpay = Wxpay::new(payments).body_timeout(Duration::from_secs(4));
/// let app = actix_web::App::new()
///     .route("/login", wxpay.clone().sign_in())
///     .service(wxpay.scope("/pay"));
/// ```
#[derive(Debug, Clone)]
pub struct Wxpay {
    payments: Payments,
    body_timeout: Duration,
}

impl Wxpay {
    /// The routes over `payments`, with the defaults.
    pub fn new(payments: Payments) -> Wxpay {
        Wxpay {
            payments,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// How long wxpay waits for a request's body, from when it starts
    /// reading it ([`DEFAULT_BODY_TIMEOUT`], 10 s, unless set). A body not
    /// complete by then is refused unread: `408` on the order routes, the
    /// `FAIL` reply on the notify routes, with `Connection: close`.
    pub fn body_timeout(mut self, timeout: Duration) -> Wxpay {
        self.body_timeout = timeout;
        self
    }

    /// The routes under `prefix`, like [`scope`].
    pub fn scope(self, prefix: &str) -> Scope {
        web::scope(prefix).configure(self.configure())
    }

    /// The routes as a configuration for a scope of your own, like
    /// [`configure`].
    pub fn configure(self) -> impl FnOnce(&mut web::ServiceConfig) {
        move |cfg| {
            cfg.default_service(web::to(move |req: HttpRequest, body: web::Payload| {
                let wxpay = self.clone();
                async move { wxpay.serve(req, body, None).await }
            }));
        }
    }

    /// The sign-in route alone, like [`sign_in`].
    pub fn sign_in(self) -> Route {
        self.fixed("/sign-in")
    }

    /// The sign-out route alone, like [`sign_out`].
    pub fn sign_out(self) -> Route {
        self.fixed("/sign-out")
    }

    fn fixed(self, path: &'static str) -> Route {
        web::route().to(move |req: HttpRequest, body: web::Payload| {
            let wxpay = self.clone();
            async move { wxpay.serve(req, body, Some(path)).await }
        })
    }

    /// Answers `req` as the wxpay route `path`, or (`None`) as the one the
    /// request's path names inside the scope.
    async fn serve(
        &self,
        req: HttpRequest,
        body: web::Payload,
        path: Option<&'static str>,
    ) -> HttpResponse {
        // Inside the scope, the unprocessed part of the path is relative to it.
        let path = path.unwrap_or_else(|| req.match_info().unprocessed());
        let mut input = HttpIn::new(req.method().as_str(), path, Vec::new());
        input.query = req.query_string().to_owned();
        let all = input.needs_headers();
        // The notify routes take only the v3 signature headers.
        for (name, value) in req.headers() {
            if all || is_signature_header(name.as_str()) {
                input.add_header(name.as_str(), value.as_bytes());
            }
        }
        if all {
            input.client_ip = req.peer_addr().map(|addr| addr.ip().to_string());
        }
        let read = async {
            match body.to_bytes_limited(MAX_BODY_BYTES).await {
                Ok(Ok(bytes)) => Ok(bytes.into()),
                Ok(Err(_)) | Err(_) => Err(()),
            }
        };
        let input = input.read_body(self.body_timeout, read).await;
        response(handle(&self.payments, input).await)
    }
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
