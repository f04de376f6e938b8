//! # wxpay-tower
//!
//! [`WxpayService`]: the wxpay routes as a [`tower_service::Service`] over
//! any [`http_body::Body`], usable from hyper directly or from any
//! tower-based framework. It only reads the request, calls
//! [`wxpay_core::flow::http::handle`] and builds the response; routes,
//! statuses and bodies are the core's. It never fails
//! (`Error = Infallible`): every problem is a status or a WeChat `FAIL`
//! reply, logged by the core.
//!
//! Mounted under `/pay` of a hyper server, next to the app's own routes:
//!
//! ```no_run
//! use std::{convert::Infallible, sync::Arc, time::Duration};
//! use async_trait::async_trait;
//! use http_body_util::Full;
//! use hyper::{body::Bytes, server::conn::http1, service::service_fn};
//! use hyper_util::rt::{TokioIo, TokioTimer};
//! use tower_service::Service;
//! use wxpay_core::{Config, Fen, flow::*};
//! use wxpay_tower::WxpayService;
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
//! // POST /pay/orders, GET /pay/orders/{no}, POST /pay/orders/{no}/close,
//! // POST /pay/notify, POST /pay/refund-notify
//! let wxpay = WxpayService::new(payments).with_prefix("/pay");
//!
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     let wxpay = wxpay.clone();
//!     tokio::spawn(async move {
//!         let app = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
//!             let mut wxpay = wxpay.clone();
//!             async move {
//!                 if !req.uri().path().starts_with("/pay/") {
//!                     return Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("my shop"))));
//!                 }
//!                 req.extensions_mut().insert(peer); // the payer's IP for WeChat
//!                 wxpay.call(req).await
//!             }
//!         });
//!         // Slow or idle clients: the head must be in within 10 s.
//!         let mut http = http1::Builder::new();
//!         http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
//!         let _ = http.serve_connection(TokioIo::new(stream), app).await;
//!     });
//! }
//! # }
//! ```
//!
//! With [sessions](wxpay_core::flow::PaymentsBuilder::sessions) kept, the
//! routes include `POST /sign-in` and `POST /sign-out`;
//! [`WxpayService::sign_in`] and [`WxpayService::sign_out`] serve them
//! alone at a path of your own (route `/login` to it), like
//! [`WxpayService::payment_notify`] does for the notify.
//!
//! Bodies are read up to [`MAX_BODY_BYTES`] (1 MiB): a larger one is a
//! `FAIL` reply on the notify routes and `413` elsewhere, sent with
//! `Connection: close` (the rest of the body stays unread). The client IP is
//! taken from a [`SocketAddr`] in the request's extensions (insert the
//! peer address in your accept loop, as above; axum's `ConnectInfo` is not
//! read).
//!
//! Reading a body has a deadline, [`DEFAULT_BODY_TIMEOUT`] (10 s) from when
//! the service starts reading it; [`WxpayService::with_body_timeout`] sets
//! another. A body not complete by then is refused unread (`408` JSON on
//! the order routes, the `FAIL` reply on the notify routes, with
//! `Connection: close`) and never reaches the flow. The deadline uses
//! tokio's timer, so serve the service on a tokio runtime.
//!
//! Slow or idle connections before a request's body are the server's to
//! bound: with hyper, give its `http1::Builder` a timer and a
//! `header_read_timeout`, as above (hyper starts it whenever it waits for a
//! request head, so it also closes a kept-alive connection left idle).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

use std::{
    convert::Infallible,
    error::Error as StdError,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
pub use wxpay_core::flow::http::{DEFAULT_BODY_TIMEOUT, MAX_BODY_BYTES};
use wxpay_core::flow::{
    Payments,
    http::{HttpIn, HttpOut, handle, is_signature_header},
};

/// Which requests the service answers.
#[derive(Debug, Clone)]
enum Mode {
    /// All routes; the request path minus this prefix.
    Routes(Arc<str>),
    /// One fixed route (`/notify`, `/sign-in`…) whatever the path.
    Fixed(&'static str),
}

/// The wxpay routes as a tower service. Cheap to clone.
///
/// `Response = http::Response<Full<Bytes>>`, `Error = Infallible`; the
/// future is `Send`.
#[derive(Debug, Clone)]
pub struct WxpayService {
    payments: Payments,
    mode: Mode,
    body_timeout: Duration,
}

impl WxpayService {
    /// All routes, the request path taken as relative to the mount point
    /// (`/orders`, `/notify`…). Use [`with_prefix`](WxpayService::with_prefix)
    /// when the service sees full paths.
    pub fn new(payments: Payments) -> WxpayService {
        WxpayService {
            payments,
            mode: Mode::Routes(Arc::from("")),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Strips `prefix` (e.g. `/pay`) from request paths; paths outside it
    /// answer `404`.
    pub fn with_prefix(mut self, prefix: &str) -> WxpayService {
        self.mode = Mode::Routes(Arc::from(prefix.trim_end_matches('/')));
        self
    }

    /// How long the service waits for a request's body, from when it starts
    /// reading it ([`DEFAULT_BODY_TIMEOUT`], 10 s, unless set). A body not
    /// complete by then is refused unread: `408` on the order routes, the
    /// `FAIL` reply on the notify routes, with `Connection: close`.
    ///
    /// ```
    /// # let payments = wxpay_core::testkit::adapter::payments(wxpay_core::testkit::adapter::config()).0;
    /// use std::time::Duration;
    /// use wxpay_tower::WxpayService;
    ///
    /// let notify = WxpayService::payment_notify(payments).with_body_timeout(Duration::from_secs(4));
    /// ```
    pub fn with_body_timeout(mut self, timeout: Duration) -> WxpayService {
        self.body_timeout = timeout;
        self
    }

    /// Only the payment notify, whatever the path: mount it at your
    /// `notify_url`. Other methods than `POST` answer `405`.
    pub fn payment_notify(payments: Payments) -> WxpayService {
        WxpayService {
            payments,
            mode: Mode::Fixed("/notify"),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Only the refund notify, whatever the path (see
    /// [`payment_notify`](WxpayService::payment_notify)).
    pub fn refund_notify(payments: Payments) -> WxpayService {
        WxpayService {
            payments,
            mode: Mode::Fixed("/refund-notify"),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Only the sign-in route, whatever the path: mount it where your
    /// mini-program signs in (`POST /login`). `POST {"code"}` →
    /// `{"token", "openid", "expires_at"}`, the core's `/sign-in` (see
    /// [`wxpay_core::flow::http`]). Needs a [`Payments`] that keeps
    /// sessions; without them it answers `404`.
    pub fn sign_in(payments: Payments) -> WxpayService {
        WxpayService {
            payments,
            mode: Mode::Fixed("/sign-in"),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Only the sign-out route, whatever the path (`POST`,
    /// `Authorization: Bearer …` → `{"signed_out": bool}`), like
    /// [`sign_in`](WxpayService::sign_in).
    pub fn sign_out(payments: Payments) -> WxpayService {
        WxpayService {
            payments,
            mode: Mode::Fixed("/sign-out"),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    fn relative_path(&self, path: &str) -> Option<String> {
        match &self.mode {
            Mode::Fixed(p) => Some((*p).to_owned()),
            Mode::Routes(prefix) => {
                let rest = path.strip_prefix(&**prefix)?;
                (rest.starts_with('/') || rest.is_empty()).then(|| rest.to_owned())
            }
        }
    }

    async fn serve<B>(self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        // A path outside the prefix becomes one the core does not know (404).
        let path = self.relative_path(parts.uri.path()).unwrap_or_default();
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
                .get::<SocketAddr>()
                .map(|addr| addr.ip().to_string());
        }
        let read = async {
            let collected = Limited::new(body, MAX_BODY_BYTES).collect().await?;
            Ok::<_, Box<dyn StdError + Send + Sync>>(collected.to_bytes().into())
        };
        let input = input.read_body(self.body_timeout, read).await;
        response(handle(&self.payments, input).await)
    }
}

/// The one mapping from the core's answer to an `http` response.
fn response(out: HttpOut) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(out.body)));
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

impl<B> tower_service::Service<Request<B>> for WxpayService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(req).await) })
    }
}
