//! # wxpay-axum
//!
//! The [axum](https://docs.rs/axum) adapter of wxpay: [`router`] returns a
//! [`Router`] to [`nest`](Router::nest) under any prefix of your app, and
//! [`router_at`] the same routes at a prefix, to [`merge`](Router::merge)
//! (cheaper per request: see its docs). It only extracts the request, calls
//! [`wxpay_core::flow::http::handle`] and builds the response; routes,
//! statuses and bodies are the core's.
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use axum::{Router, routing::get};
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
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let payments = Payments::builder(Config::from_env()?) // notify_url: https://…/pay/notify
//!     .store(Arc::new(MemoryStore::new()))
//!     .checkout(Shop)
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "my shop" }))
//!     // POST /pay/orders, GET /pay/orders/{no}, POST /pay/orders/{no}/close,
//!     // POST /pay/notify, POST /pay/refund-notify
//!     .nest("/pay", wxpay_axum::router(payments));
//!
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // `with_connect_info` lets checkout send the payer's IP to WeChat.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! With [sessions](wxpay_core::flow::PaymentsBuilder::sessions) kept, the
//! routes include `POST /sign-in` and `POST /sign-out`; [`sign_in`] and
//! [`sign_out`] mount them alone at a path of your own:
//!
//! ```
//! # let payments = wxpay_core::testkit::adapter::payments(wxpay_core::testkit::adapter::config()).0;
//! let app: axum::Router = axum::Router::new()
//!     .route("/login", wxpay_axum::sign_in(payments.clone())) // {"code"} → {"token", …}
//!     .route("/logout", wxpay_axum::sign_out(payments.clone()))
//!     .merge(wxpay_axum::router_at("/pay", payments));
//! ```
//!
//! Bodies are read up to [`MAX_BODY_BYTES`] (1 MiB): a larger one is a
//! `FAIL` reply on the notify routes and `413` elsewhere, sent with
//! `Connection: close` (the rest of the body stays unread). The client IP comes
//! from [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) when the app
//! is served with it.
//!
//! Reading a body has a deadline, [`DEFAULT_BODY_TIMEOUT`] (10 s) from when
//! wxpay starts reading it; [`Wxpay`] mounts the same routes with another
//! ([`Wxpay::body_timeout`]). A body not complete by then is refused unread
//! (`408` JSON on the order routes, the `FAIL` reply on the notify routes,
//! with `Connection: close`) and never reaches the flow.
//!
//! Slow or idle connections before a request's body are the server's to
//! bound, and `axum::serve` has no setting for them: serve the router
//! through hyper's `http1::Builder` with a timer and a
//! `header_read_timeout` instead (hyper starts it whenever it waits for a
//! request head, so it also closes a kept-alive connection left idle), as
//! `examples/axum_shop` does.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::Response,
    routing::{MethodRouter, any},
};
pub use wxpay_core::flow::http::{DEFAULT_BODY_TIMEOUT, MAX_BODY_BYTES};
use wxpay_core::flow::{
    Payments,
    http::{HttpIn, HttpOut, handle, is_signature_header},
};

/// The payment routes as a router to nest under a prefix (see the crate
/// docs). Every path under the prefix is answered by wxpay: unknown ones
/// with `404`, wrong methods with `405`.
pub fn router<S>(payments: Payments) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Wxpay::new(payments).router()
}

/// The payment routes at `prefix` (`"/pay"`: `/pay/notify`, `/pay/orders`
/// …), as a router to [`merge`](Router::merge) into your app. The routes and
/// answers are those of [`router`] nested at `prefix`, but each request
/// skips `nest`'s work: axum rewrites a nested request's URI and records
/// the nesting. With axum 0.8 that is 8 more heap allocations per notify
/// (46 instead of 38, of which a bare axum handler makes 13;
/// `tests/allocs.rs`), which shows on the notify route under load.
///
/// ```
/// # let payments = wxpay_core::testkit::adapter::payments(wxpay_core::testkit::adapter::config()).0;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "my shop" }))
///     .merge(wxpay_axum::router_at("/pay", payments));
/// ```
///
/// # Panics
/// If `prefix` does not start with `/`, ends with `/`, or holds `{` or `}`
/// (axum's rule for nesting, checked here at start-up).
pub fn router_at<S>(prefix: &str, payments: Payments) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Wxpay::new(payments).router_at(prefix)
}

/// The sign-in route alone, for [`Router::route`] at a path of your own
/// (`.route("/login", wxpay_axum::sign_in(payments))`): `POST {"code"}` →
/// `{"token", "openid", "expires_at"}`, the core's `/sign-in` (see
/// [`wxpay_core::flow::http`]). Needs a [`Payments`] that keeps sessions;
/// without them it answers `404`.
pub fn sign_in<S>(payments: Payments) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    Wxpay::new(payments).sign_in()
}

/// The sign-out route alone (`POST`, `Authorization: Bearer …` →
/// `{"signed_out": bool}`), like [`sign_in`].
pub fn sign_out<S>(payments: Payments) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    Wxpay::new(payments).sign_out()
}

/// The routes of [`router`], [`router_at`], [`sign_in`] and [`sign_out`]
/// with settings of your own; those functions are `Wxpay::new(payments)`
/// with the defaults.
///
/// ```
/// # let payments = wxpay_core::testkit::adapter::payments(wxpay_core::testkit::adapter::config()).0;
/// use std::time::Duration;
/// use wxpay_axum::Wxpay;
///
/// let wxpay = Wxpay::new(payments).body_timeout(Duration::from_secs(4));
/// let app: axum::Router = axum::Router::new()
///     .route("/login", wxpay.clone().sign_in())
///     .merge(wxpay.router_at("/pay"));
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

    /// The routes as a router to nest, like [`router`].
    pub fn router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new().fallback(serve_nested).with_state(self)
    }

    /// The routes at `prefix`, to merge, like [`router_at`].
    ///
    /// # Panics
    /// If `prefix` does not start with `/`, ends with `/`, or holds `{` or
    /// `}`.
    pub fn router_at<S>(self, prefix: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        assert!(
            prefix.len() > 1
                && prefix.starts_with('/')
                && !prefix.ends_with('/')
                && !prefix.contains(['{', '}']),
            "wxpay_axum::router_at: the prefix must start with `/`, not end with one, and hold no `{{` or `}}`: {prefix:?}"
        );
        let mounted = Mounted {
            wxpay: self,
            prefix_len: prefix.len(),
        };
        // Every path under the prefix, like a nested fallback; the fixed ones
        // first, so that the notifies take matchit's static path (no captured
        // parameters to store).
        ["", "/notify", "/refund-notify", "/orders", "/{*rest}"]
            .into_iter()
            .fold(Router::new(), |r, path| {
                r.route(&format!("{prefix}{path}"), any(serve_at))
            })
            .with_state(mounted)
    }

    /// The sign-in route alone, like [`sign_in`].
    pub fn sign_in<S>(self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.fixed("/sign-in")
    }

    /// The sign-out route alone, like [`sign_out`].
    pub fn sign_out<S>(self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.fixed("/sign-out")
    }

    fn fixed<S>(self, path: &'static str) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        any(serve_fixed).with_state(Fixed { wxpay: self, path })
    }
}

#[derive(Clone)]
struct Fixed {
    wxpay: Wxpay,
    path: &'static str,
}

#[derive(Clone)]
struct Mounted {
    wxpay: Wxpay,
    prefix_len: usize,
}

async fn serve_nested(State(wxpay): State<Wxpay>, req: Request) -> Response {
    // Inside `nest`, the URI path is relative to the prefix.
    serve(&wxpay, req, Path::Skip(0)).await
}

async fn serve_at(State(mounted): State<Mounted>, req: Request) -> Response {
    serve(&mounted.wxpay, req, Path::Skip(mounted.prefix_len)).await
}

async fn serve_fixed(State(fixed): State<Fixed>, req: Request) -> Response {
    serve(&fixed.wxpay, req, Path::Fixed(fixed.path)).await
}

/// Which wxpay path a request is for.
enum Path {
    /// The request's path past its first bytes (the prefix the route matched).
    Skip(usize),
    /// This one, whatever the request's path.
    Fixed(&'static str),
}

/// Answers `req` as the wxpay route `path` says.
async fn serve(wxpay: &Wxpay, req: Request, path: Path) -> Response {
    let (parts, body) = req.into_parts();
    let path = match path {
        Path::Skip(skip) => parts.uri.path().get(skip..).unwrap_or_default(),
        Path::Fixed(path) => path,
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut input = HttpIn::new(parts.method.as_str(), path, Vec::new());
    input.query = parts.uri.query().unwrap_or_default().to_owned();
    let all = input.needs_headers();
    // The notify routes take only the v3 signature headers.
    for (name, value) in &parts.headers {
        if all || is_signature_header(name.as_str()) {
            input.add_header(name.as_str(), value.as_bytes());
        }
    }
    if all {
        input.client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
    }
    let read =
        async { Ok::<_, axum::Error>(axum::body::to_bytes(body, MAX_BODY_BYTES).await?.into()) };
    let input = input.read_body(wxpay.body_timeout, read).await;
    response(handle(&wxpay.payments, input).await)
}

/// The one mapping from the core's answer to an axum response.
fn response(out: HttpOut) -> Response {
    let mut res = Response::new(Body::from(out.body));
    *res.status_mut() =
        StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(out.content_type),
    );
    if let Some(allow) = out.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if out.close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
