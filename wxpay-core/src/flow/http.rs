//! The HTTP surface of [`Payments`], framework-free: every web adapter
//! (`wxpay-tower`, `wxpay-axum`, `wxpay-actix`) only turns its request into
//! an [`HttpIn`], calls [`handle`] and turns the [`HttpOut`] into its
//! response. Routing, status codes, JSON and the WeChat XML replies live
//! here, once.
//!
//! Routes, relative to where the adapter is mounted (e.g. `/pay`):
//!
//! | method | path | answer |
//! |---|---|---|
//! | `POST` | `/orders` | the app's [`Checkout`](super::Checkout) decides; `201 {"out_trade_no", "total_fee", "trade_type", "pay_params"}` (JSAPI) or `"code_url"` (NATIVE) |
//! | `GET` | `/orders/{out_trade_no}` | `200 {"out_trade_no", "state", "total_fee", "transaction_id"?}` ([`Payments::status`]: a stale `PREPAID` order is synced by orderquery) |
//! | `POST` | `/orders/{out_trade_no}/close` | `200`, same body ([`Payments::close`]) |
//! | `GET` | `/orders?limit=&before=` | the caller's orders ([`Checkout::identify`](super::Checkout::identify); `401` for an anonymous caller), newest first: `200 {"orders": [{…as above, "created_at"}], "next": "<out_trade_no>" \| null}` (`created_at` in Unix seconds); `limit` 1–100 (default 20), `before` the `next` of the previous page ([`Payments::orders_page`]) |
//! | `POST` | `/notify` | the payment notify. API v2 (XML): always `200` with WeChat's XML (`SUCCESS`/`FAIL`). API v3 (JSON with `Wechatpay-*` headers; payment and refund events alike): `204`, or `4xx`/`5xx` with `{"code":"FAIL","message"}` ([`Payments::handle_notify_v3`]) |
//! | `POST` | `/refund-notify` | the refund notify: the same |
//! | `POST` | `/sign-in` | with [sessions](super::PaymentsBuilder::sessions) only: `{"code"}` from `wx.login` → `200 {"token", "openid", "expires_at"}` ([`Payments::sign_in`]; `expires_at` in Unix seconds) |
//! | `POST` | `/sign-out` | with sessions only: ends the session of the `Authorization: Bearer` token → `200 {"signed_out": true \| false}` |
//!
//! | `GET` | `/admin/orders/{out_trade_no}` | with an [admin check](super::PaymentsBuilder::admin) only: `200 {"out_trade_no", "state", "total_fee", "refunded_fee", "refundable", "transaction_id", "fulfilment", "refunds": [{"out_refund_no", "refund_fee", "state", "source", …}], "attention": [{"kind", "detail", "at"}]}` |
//! | `POST` | `/admin/orders/{out_trade_no}/refund` | with an admin check only: `{"refund_fee"?, "out_refund_no"?}` (default: all that is left, under `{out_trade_no}-R{n}`) → `200 {"out_refund_no", "refund_fee", "state"}` ([`Payments::refund`]; `state` is `PROCESSING`, or `UNKNOWN` when WeChat's answer was ambiguous: refundquery settles it); WeChat's definite refusal → `422 {"error": "refund_refused", …, "state": "REFUSED"}` |
//!
//! Without sessions, `/sign-in` and `/sign-out` are unknown paths; without
//! an admin check, so are the admin routes, and a caller the check refuses
//! gets `401`. Adapters
//! can also mount the sign-in and sign-out routes alone, at a path of the
//! app's choice (`POST /login`).
//!
//! Anything else is `404`; a known path with another method is `405` with
//! an `Allow` header. Order routes answer errors as JSON
//! `{"error": "<code>", "message": "<text safe to show>"}` with the status
//! of [`PaymentsError::http_status`]; internal errors are logged with
//! `tracing` and never described to the client.
//!
//! ## Who may see an order
//!
//! The app decides who is calling: [`Checkout::identify`](super::Checkout::identify)
//! reads the request's headers (its session) and returns the caller's user
//! id, `None` for an anonymous caller, or a [`Rejection`] (e.g. 401 for an
//! expired session). `GET` and `close` answer only when the order has an
//! [`owner`](super::Order::owner) **and** it equals the caller's id;
//! everyone else gets the same `404` as for an unknown order (no oracle for
//! order numbers). Orders without an owner are therefore not reachable
//! through these routes at all: set [`OrderDraft::with_owner`](super::OrderDraft::with_owner)
//! in [`Checkout::order`](super::Checkout::order) to the id `identify`
//! returns (for guest checkouts, a guest/session id).
//!
//! ## Bodies
//!
//! Adapters read at most [`MAX_BODY_BYTES`]; a larger (or unreadable) body is
//! flagged with [`HttpIn::body_too_large`] and refused without being looked
//! at: `413` on order routes, a `FAIL` reply on the notify routes (WeChat
//! needs XML, and never sends such bodies). The rest of such a body was
//! never read, so the connection cannot carry another request (RFC 9112
//! §6.3): the answer sets [`HttpOut::close`], which adapters turn into
//! `Connection: close`, so that the client opens a new connection instead
//! of reusing one the server is closing.
//!
//! Reading a body also has a deadline, [`DEFAULT_BODY_TIMEOUT`] (10 s) unless
//! the adapter is configured otherwise: a client that declares a body and
//! then sends it slowly, or not at all, would otherwise hold a connection
//! (and a task) for as long as it likes. A body not complete in time is
//! flagged with [`HttpIn::body_timed_out`] and refused like one over the
//! limit, never looked at and never reaching the flow (nothing is stored or
//! changed): `408` with `{"error": "request_timeout", …}` on order routes,
//! the `FAIL` reply on the notify routes, with [`HttpOut::close`] set.
//! [`HttpIn::read_body`] does the reading for the adapters, so that the
//! rule is the same in every one.
//!
//! ```
//! use std::sync::Arc;
//! use wxpay_core::{ApiKey, Config, flow::{MemoryStore, Payments, http::{self, HttpIn}}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = Config::new("wxd930ea5d5a258f4f", "10000100", ApiKey::new("192006250b4c09247ec02edce69f6a2d"));
//! let payments = Payments::builder(config).store(Arc::new(MemoryStore::new())).build().unwrap();
//!
//! let out = http::handle(&payments, HttpIn::new("POST", "/notify", b"<xml>not signed</xml>".to_vec())).await;
//! assert_eq!(out.status, 200);
//! assert!(String::from_utf8(out.body).unwrap().contains("FAIL"));
//!
//! let out = http::handle(&payments, HttpIn::new("GET", "/notify", Vec::new())).await;
//! assert_eq!((out.status, out.allow), (405, Some("POST")));
//! # }
//! ```

use std::{collections::BTreeMap, future::Future, task::Poll, time::Duration};

use serde_json::{Value, json};

use super::{
    CheckoutOutcome, CheckoutRequest, Order, Payments, PaymentsError, Rejection, RejectionKind,
};
use crate::{OutTradeNo, notify};

/// The most body bytes an adapter reads (1 MiB). Real notifies are a few
/// KiB; checkout bodies are small JSON.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long an adapter waits for a request's body by default (10 s), from
/// when it starts reading it (the headers are in) until the last byte.
///
/// A notify body is a few KiB and a checkout body a few hundred bytes:
/// either arrives in one or two packets, so a body that takes seconds is a
/// client holding the connection. WeChat itself gives up on a notify after
/// 5 s and sends it again later, so a deadline above that never cuts off a
/// notify WeChat is still waiting for, and twice that leaves a slow mobile
/// network room for the order routes' small bodies.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `Content-Type` of JSON answers.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// `Content-Type` of the WeChat XML replies.
pub const CONTENT_TYPE_XML: &str = "application/xml; charset=utf-8";

/// A request, as an adapter hands it to [`handle`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HttpIn {
    /// The method, uppercase (`GET`, `POST`…).
    pub method: String,
    /// The path relative to where the adapter is mounted, starting with `/`
    /// (`/orders/ABC`), without the query string.
    pub path: String,
    /// Request headers, names in lowercase; repeated headers joined with
    /// `", "`. See [`HttpIn::add_header`].
    pub headers: BTreeMap<String, String>,
    /// The query string, without `?` (read by `GET /orders`).
    pub query: String,
    /// The raw body (at most [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
    /// The peer's IP address, if known (sent to WeChat as
    /// `spbill_create_ip` at checkout).
    pub client_ip: Option<String>,
    /// The body was longer than [`MAX_BODY_BYTES`] or could not be read in
    /// full: the request is refused without looking at
    /// [`body`](HttpIn::body).
    pub body_too_large: bool,
    /// The body was not complete within the adapter's deadline
    /// ([`DEFAULT_BODY_TIMEOUT`] unless configured): the request is refused
    /// without looking at [`body`](HttpIn::body) (`408` on order routes,
    /// `FAIL` on the notify routes, the connection closed).
    pub body_timed_out: bool,
}

impl HttpIn {
    /// A request with no headers. `method` is uppercased.
    pub fn new(method: &str, path: impl Into<String>, body: Vec<u8>) -> HttpIn {
        HttpIn {
            method: method.to_ascii_uppercase(),
            path: path.into(),
            body,
            ..HttpIn::default()
        }
    }

    /// Adds a header as it came off the wire: the name is lowercased, a
    /// value that is not UTF-8 is dropped, a repeated header is joined to
    /// the previous value with `", "`.
    pub fn add_header(&mut self, name: &str, value: &[u8]) {
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        self.headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }

    /// Adds a header (builder style); see [`HttpIn::add_header`].
    pub fn with_header(mut self, name: &str, value: &str) -> HttpIn {
        self.add_header(name, value.as_bytes());
        self
    }

    /// Whether [`handle`] reads this request's headers and client IP. Only
    /// the order routes do (the app's [`Checkout`](super::Checkout)
    /// identifies the caller); the notify routes read the body and the
    /// `Wechatpay-*` headers alone ([`is_signature_header`]), so an adapter
    /// copies only those when this is `false`.
    pub fn needs_headers(&self) -> bool {
        !matches!(
            Route::parse(&self.path),
            Some(Route::Notify | Route::RefundNotify)
        )
    }

    /// Whether an adapter copies header `name` into this request: every
    /// header for the routes that [need them](HttpIn::needs_headers); on
    /// the notify routes only the `Wechatpay-*` signature headers, which an
    /// API v3 notify is verified with (a v2 notify carries none, so copying
    /// them costs the v2 path nothing).
    ///
    /// ```
    /// use wxpay_core::flow::http::HttpIn;
    /// let notify = HttpIn::new("POST", "/notify", Vec::new());
    /// assert!(notify.wants_header("Wechatpay-Signature"));
    /// assert!(!notify.wants_header("cookie"));
    /// assert!(HttpIn::new("GET", "/orders/A", Vec::new()).wants_header("cookie"));
    /// ```
    pub fn wants_header(&self, name: &str) -> bool {
        self.needs_headers() || is_signature_header(name)
    }

    /// Sets [`query`](HttpIn::query) (without `?`).
    pub fn with_query(mut self, query: impl Into<String>) -> HttpIn {
        self.query = query.into();
        self
    }

    /// Sets [`client_ip`](HttpIn::client_ip).
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> HttpIn {
        self.client_ip = Some(ip.into());
        self
    }

    /// Marks the body as over the limit.
    pub fn with_body_too_large(mut self) -> HttpIn {
        self.body_too_large = true;
        self.body.clear();
        self
    }

    /// Marks the body as not complete within the deadline.
    pub fn with_body_timed_out(mut self) -> HttpIn {
        self.body_timed_out = true;
        self.body.clear();
        self
    }

    /// Sets [`body`](HttpIn::body) from `read`, an adapter's read of the
    /// whole body (at most [`MAX_BODY_BYTES`]), given `timeout` to finish:
    /// an error (over the limit, or the body could not be read) marks the
    /// body [too large](HttpIn::with_body_too_large), the deadline passing
    /// first marks it [timed out](HttpIn::with_body_timed_out) (and drops
    /// `read`). A body that is complete at the first poll, as a small body
    /// that came with the headers is, starts no timer.
    ///
    /// The deadline is tokio's timer: call it on a tokio runtime (axum,
    /// actix-web and hyper with `TokioIo` all run on one).
    ///
    /// ```
    /// use std::time::Duration;
    /// use wxpay_core::flow::http::HttpIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let read = async { Ok::<_, std::io::Error>(b"<xml/>".to_vec()) };
    /// let req = HttpIn::new("POST", "/notify", Vec::new()).read_body(Duration::from_secs(10), read).await;
    /// assert_eq!(req.body, b"<xml/>");
    ///
    /// let never = std::future::pending::<Result<Vec<u8>, std::io::Error>>();
    /// let req = HttpIn::new("POST", "/notify", Vec::new()).read_body(Duration::from_millis(1), never).await;
    /// assert!(req.body_timed_out);
    /// # }
    /// ```
    pub async fn read_body<E>(
        self,
        timeout: Duration,
        read: impl Future<Output = Result<Vec<u8>, E>>,
    ) -> HttpIn {
        let mut read = std::pin::pin!(read);
        // Most bodies are in by now: no timer (tokio's take a driver lock).
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        let read = match first {
            Poll::Ready(done) => Some(done),
            Poll::Pending => tokio::time::timeout(timeout, read).await.ok(),
        };
        match read {
            Some(Ok(body)) => HttpIn { body, ..self },
            Some(Err(_)) => self.with_body_too_large(),
            None => self.with_body_timed_out(),
        }
    }
}

/// Whether `name` is one of the `Wechatpay-*` headers that sign an API v3
/// notify (any case): what adapters copy on the notify routes, where
/// [`HttpIn::needs_headers`] is `false`.
pub fn is_signature_header(name: &str) -> bool {
    name.len() > 10 && name.as_bytes()[..10].eq_ignore_ascii_case(b"wechatpay-")
}

/// The response an adapter sends: exactly these parts, nothing added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpOut {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// The `Allow` header (set on `405`).
    pub allow: Option<&'static str>,
    /// Close the connection after this response (`Connection: close`): the
    /// request's body was not read to its end.
    pub close: bool,
}

impl HttpOut {
    fn json(status: u16, value: &Value) -> HttpOut {
        HttpOut {
            status,
            content_type: CONTENT_TYPE_JSON,
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            allow: None,
            close: false,
        }
    }

    fn error(status: u16, code: &str, message: &str) -> HttpOut {
        HttpOut::json(status, &json!({ "error": code, "message": message }))
    }

    fn notify(status: u16, content_type: &'static str, body: String) -> HttpOut {
        HttpOut {
            status,
            content_type,
            body: body.into_bytes(),
            allow: None,
            close: false,
        }
    }

    fn xml(body: String) -> HttpOut {
        HttpOut {
            status: 200,
            content_type: CONTENT_TYPE_XML,
            body: body.into_bytes(),
            allow: None,
            close: false,
        }
    }

    fn not_found() -> HttpOut {
        HttpOut::error(404, "not_found", "not found")
    }

    fn method_not_allowed(allow: &'static str) -> HttpOut {
        HttpOut {
            allow: Some(allow),
            ..HttpOut::error(405, "method_not_allowed", "method not allowed")
        }
    }

    fn too_large() -> HttpOut {
        HttpOut::error(413, "payload_too_large", "request body too large")
    }

    fn timed_out() -> HttpOut {
        HttpOut::error(
            408,
            "request_timeout",
            "the request body did not arrive in time",
        )
    }
}

/// Whether a request to a notify route is an API v3 notify: it carries
/// the `Wechatpay-Signature` header, or API v3 is configured and its body
/// is JSON (a v2 notify is XML and has neither). Both protocols share the
/// notify routes, so a merchant moving from v2 to v3 keeps one
/// `notify_url` for the orders of both.
fn is_v3_notify(payments: &Payments, req: &HttpIn) -> bool {
    req.headers.contains_key("wechatpay-signature")
        || (payments.inner.gateways.get(super::Api::V3).is_some()
            && req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

/// The routes, parsed from a path.
enum Route {
    Orders,
    Order(String),
    Close(String),
    Notify,
    RefundNotify,
    SignIn,
    SignOut,
    AdminOrder(String),
    AdminRefund(String),
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let rest = path.strip_prefix('/')?;
        let mut segments = rest.split('/');
        let segments = [
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ];
        match segments {
            [Some("admin"), Some("orders"), Some(no), None, _] if !no.is_empty() => {
                Some(Route::AdminOrder(no.to_owned()))
            }
            [
                Some("admin"),
                Some("orders"),
                Some(no),
                Some("refund"),
                None,
            ] if !no.is_empty() => Some(Route::AdminRefund(no.to_owned())),
            [Some("orders"), None, ..] => Some(Route::Orders),
            [Some("orders"), Some(no), None, ..] if !no.is_empty() => {
                Some(Route::Order(no.to_owned()))
            }
            [Some("orders"), Some(no), Some("close"), None, _] if !no.is_empty() => {
                Some(Route::Close(no.to_owned()))
            }
            [Some("notify"), None, ..] => Some(Route::Notify),
            [Some("refund-notify"), None, ..] => Some(Route::RefundNotify),
            [Some("sign-in"), None, ..] => Some(Route::SignIn),
            [Some("sign-out"), None, ..] => Some(Route::SignOut),
            _ => None,
        }
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Order(_) | Route::AdminOrder(_) => "GET",
            Route::Orders => "GET, POST",
            _ => "POST",
        }
    }
}

/// Answers one request: routes it, calls [`Payments`], and builds the
/// response. Never fails: every error becomes a status (order routes) or a
/// `FAIL` reply (notify routes), logged with `tracing`.
pub async fn handle(payments: &Payments, req: HttpIn) -> HttpOut {
    let unread_body = req.body_too_large || req.body_timed_out;
    let mut out = answer(payments, req).await;
    out.close = unread_body;
    out
}

async fn answer(payments: &Payments, req: HttpIn) -> HttpOut {
    let route = Route::parse(&req.path)
        .filter(|r| payments.keeps_sessions() || !matches!(r, Route::SignIn | Route::SignOut))
        .filter(|r| {
            payments.inner.admin.is_some()
                || !matches!(r, Route::AdminOrder(_) | Route::AdminRefund(_))
        });
    let Some(route) = route else {
        return HttpOut::not_found();
    };
    if !route.allow().split(", ").any(|m| m == req.method) {
        return HttpOut::method_not_allowed(route.allow());
    }
    let mut req = req;
    if let Some(proxies) = &payments.inner.trusted_proxies {
        req.client_ip = proxies.client_ip(
            req.client_ip.as_deref(),
            req.headers.get("x-forwarded-for").map(String::as_str),
            req.headers.get("x-real-ip").map(String::as_str),
        );
    }
    match route {
        Route::Notify | Route::RefundNotify if req.body_too_large => {
            tracing::warn!(path = %req.path, "notify body over the size limit refused");
            if is_v3_notify(payments, &req) {
                HttpOut::notify(413, CONTENT_TYPE_JSON, crate::v3::reply_fail("报文过大"))
            } else {
                HttpOut::xml(notify::reply_fail("报文过大"))
            }
        }
        Route::Notify | Route::RefundNotify if is_v3_notify(payments, &req) => {
            let headers = crate::v3::WechatpayHeaders::from_fn(|name| {
                req.headers
                    .get(&name.to_ascii_lowercase())
                    .map(String::as_str)
            });
            let reply = payments.handle_notify_v3(headers, &req.body).await;
            HttpOut::notify(reply.status, reply.content_type, reply.body)
        }
        Route::Notify | Route::RefundNotify if req.body_timed_out => {
            tracing::warn!(path = %req.path, "notify body not received within the deadline refused");
            HttpOut::xml(notify::reply_fail("报文接收超时"))
        }
        Route::Notify => HttpOut::xml(payments.handle_notify(&req.body).await.body),
        Route::RefundNotify => HttpOut::xml(payments.handle_refund_notify(&req.body).await.body),
        _ if req.body_too_large => HttpOut::too_large(),
        _ if req.body_timed_out => {
            tracing::info!(path = %req.path, "request body not received within the deadline refused");
            HttpOut::timed_out()
        }
        Route::Orders if req.method == "GET" => Box::pin(my_orders(payments, req)).await,
        Route::Orders => {
            let creq = CheckoutRequest {
                body: req.body,
                headers: req.headers,
                client_ip: req.client_ip,
                user: None,
            };
            // Checkout, status and close wait on WeChat (milliseconds): their
            // large futures are boxed so that the notify routes' future,
            // which every framework moves into a box of its own, stays small.
            match Box::pin(payments.checkout(creq)).await {
                Ok(outcome) => HttpOut::json(201, &checkout_json(&outcome)),
                Err(e) => error_out(&e),
            }
        }
        Route::SignIn => sign_in(payments, &req.body, req.client_ip.as_deref()).await,
        Route::SignOut => {
            let auth = req.headers.get("authorization").map(String::as_str);
            match payments.sign_out(auth).await {
                Ok(ended) => HttpOut::json(200, &json!({ "signed_out": ended })),
                Err(e) => error_out(&e),
            }
        }
        Route::Order(no) => match owned_order(payments, &no, req).await {
            Ok(no) => order_answer(Box::pin(payments.status(&no)).await),
            Err(out) => out,
        },
        Route::Close(no) => match owned_order(payments, &no, req).await {
            Ok(no) => order_answer(Box::pin(payments.close(&no)).await),
            Err(out) => out,
        },
        Route::AdminOrder(no) => Box::pin(admin(payments, &no, false, req)).await,
        Route::AdminRefund(no) => Box::pin(admin(payments, &no, true, req)).await,
    }
}

/// The admin routes: `GET /admin/orders/{no}` (the order, its refund
/// ledger and attention cases) and `POST /admin/orders/{no}/refund
/// {"refund_fee"?, "out_refund_no"?}` (default: all that is left, under
/// `{no}-R{n}` with `n` the ledger's next entry, so that a repeated click
/// repeats the same refund instead of making a second one).
async fn admin(payments: &Payments, no: &str, refund: bool, req: HttpIn) -> HttpOut {
    let creq = CheckoutRequest {
        body: req.body,
        headers: req.headers,
        client_ip: req.client_ip,
        user: None,
    };
    let Some(auth) = &payments.inner.admin else {
        return HttpOut::not_found();
    };
    if !auth.allows(&creq).await {
        tracing::warn!("admin route refused: not allowed");
        return HttpOut::error(401, "unauthorized", "admin credentials required");
    }
    let Ok(no) = OutTradeNo::new(no) else {
        return HttpOut::not_found();
    };
    let order = match payments.order(&no).await {
        Ok(o) => o,
        Err(e) => return error_out(&e),
    };
    if !refund {
        return HttpOut::json(200, &admin_order_json(&order));
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        refund_fee: Option<u64>,
        out_refund_no: Option<String>,
    }
    // An empty body, `null` or `{}` all mean "the rest, numbered for me".
    let ask = if creq.body.iter().all(u8::is_ascii_whitespace) {
        Ask {
            refund_fee: None,
            out_refund_no: None,
        }
    } else {
        match serde_json::from_slice::<Option<Ask>>(&creq.body) {
            Ok(a) => a.unwrap_or(Ask {
                refund_fee: None,
                out_refund_no: None,
            }),
            Err(_) => {
                return HttpOut::error(
                    400,
                    "bad_request",
                    "expected a JSON body {\"refund_fee\"?, \"out_refund_no\"?}",
                );
            }
        }
    };
    let fee = ask
        .refund_fee
        .map_or_else(|| order.refundable(), crate::Fen);
    let out_refund_no = ask
        .out_refund_no
        .unwrap_or_else(|| format!("{no}-R{}", order.refunds.len() + 1));
    match payments.refund(&no, &out_refund_no, fee).await {
        Ok(r) => HttpOut::json(
            200,
            &json!({
                "out_refund_no": r.refund.out_refund_no,
                "refund_fee": r.refund.refund_fee.0,
                "state": r.refund.state.as_str(),
            }),
        ),
        Err(PaymentsError::Wechat(e)) if e.is_definite_refusal() => {
            tracing::warn!(error = %e, "admin refund refused by WeChat");
            HttpOut::json(
                422,
                &json!({
                    "error": "refund_refused",
                    "message": e.to_string(),
                    "out_refund_no": out_refund_no,
                    "refund_fee": fee.0,
                    "state": "REFUSED",
                }),
            )
        }
        Err(e) => error_out(&e),
    }
}

/// The admin view of an order: money, ledger, attention.
fn admin_order_json(o: &Order) -> Value {
    let refunds: Vec<Value> = (o.refunds.iter())
        .map(|r| {
            json!({
                "out_refund_no": r.out_refund_no,
                "refund_fee": r.refund_fee.0,
                "state": r.state.as_str(),
                "source": r.source.as_str(),
                "refund_id": r.refund_id,
                "created_at": r.created_at.to_rfc3339(),
                "updated_at": r.updated_at.to_rfc3339(),
            })
        })
        .collect();
    let attention: Vec<Value> = (o.attention.iter())
        .map(|a| json!({ "kind": a.kind.as_str(), "detail": a.detail, "at": a.at.to_rfc3339() }))
        .collect();
    json!({
        "out_trade_no": o.out_trade_no.as_str(),
        "state": o.state.as_str(),
        "total_fee": o.total_fee.0,
        "refunded_fee": o.refunded_fee.0,
        "refundable": o.refundable().0,
        "transaction_id": o.transaction_id,
        "owner": o.owner,
        "fulfilment": match o.fulfilment {
            super::Fulfilment::Pending => "PENDING",
            super::Fulfilment::Claimed { .. } => "CLAIMED",
            super::Fulfilment::Done { .. } => "DONE",
            super::Fulfilment::Held => "HELD",
        },
        "refunds": refunds,
        "attention": attention,
        "created_at": o.created_at.to_rfc3339(),
        "updated_at": o.updated_at.to_rfc3339(),
    })
}

/// The order number, if the order exists and the caller owns it; the error
/// response otherwise (404 for unknown and foreign orders alike).
/// The most orders one `GET /orders` page holds.
pub const MAX_ORDERS_PAGE: usize = 100;
const DEFAULT_ORDERS_PAGE: usize = 20;

/// `GET /orders?limit=&before=`: the caller's orders, newest first, a page
/// at a time; `next` is the cursor of the following page (`before=` it),
/// `null` on the last.
async fn my_orders(payments: &Payments, req: HttpIn) -> HttpOut {
    let mut limit = DEFAULT_ORDERS_PAGE;
    let mut before = None;
    for pair in req.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_ORDERS_PAGE).contains(&n) => limit = n,
                _ => {
                    return HttpOut::error(
                        400,
                        "bad_request",
                        "limit must be a number from 1 to 100",
                    );
                }
            },
            "before" => match OutTradeNo::new(v) {
                Ok(no) => before = Some(no),
                Err(_) => {
                    return HttpOut::error(400, "bad_request", "before is not an order number");
                }
            },
            _ => {}
        }
    }
    let creq = CheckoutRequest {
        body: Vec::new(),
        headers: req.headers,
        client_ip: req.client_ip,
        user: None,
    };
    let caller = match payments.identify(creq).await {
        Ok(Some(c)) => c,
        Ok(None) => return HttpOut::error(401, "unauthorized", "sign in first"),
        Err(e) => return error_out(&e),
    };
    match payments.orders_page(&caller, before.as_ref(), limit).await {
        Ok((orders, next)) => {
            let orders: Vec<Value> = (orders.iter())
                .map(|o| {
                    let mut v = order_json(o);
                    v["created_at"] = json!(o.created_at.timestamp());
                    v
                })
                .collect();
            HttpOut::json(
                200,
                &json!({ "orders": orders, "next": next.as_ref().map(OutTradeNo::as_str) }),
            )
        }
        Err(e) => error_out(&e),
    }
}

async fn owned_order(payments: &Payments, no: &str, req: HttpIn) -> Result<OutTradeNo, HttpOut> {
    let Ok(no) = OutTradeNo::new(no) else {
        return Err(HttpOut::not_found());
    };
    let creq = CheckoutRequest {
        body: Vec::new(),
        headers: req.headers,
        client_ip: req.client_ip,
        user: None,
    };
    let caller = payments.identify(creq).await.map_err(|e| error_out(&e))?;
    let order = payments.order(&no).await.map_err(|e| error_out(&e))?;
    if !may_see(caller.as_deref(), &order) {
        tracing::info!(out_trade_no = %no, "order route refused to a caller who does not own the order");
        return Err(HttpOut::not_found());
    }
    Ok(no)
}

/// `POST /sign-in {"code"}`: a refused code (invalid, used, expired) is
/// `401` and the client calls `wx.login` again; WeChat's quota (`45011`)
/// is `429`; WeChat being busy or unreachable is `502`.
async fn sign_in(payments: &Payments, body: &[u8], client_ip: Option<&str>) -> HttpOut {
    #[derive(serde::Deserialize)]
    struct Code {
        code: String,
    }
    // wx.login's codes are 32 characters; the code goes into a URL.
    let code = match serde_json::from_slice::<Code>(body) {
        Ok(c) if !c.code.is_empty() && c.code.len() <= 128 => c.code,
        Ok(_) => {
            return HttpOut::error(
                400,
                "bad_request",
                "code must be 1 to 128 characters (wx.login's code)",
            );
        }
        Err(_) => return HttpOut::error(400, "bad_request", "expected a JSON body {\"code\"}"),
    };
    if let Some(limiter) = &payments.inner.sign_in_limit
        && let Err(wait) = limiter.take(client_ip.unwrap_or("unknown"), std::time::Instant::now())
    {
        tracing::warn!(client_ip, "sign-in refused: over the rate limit");
        return HttpOut::json(
            429,
            &json!({
                "error": "too_many_requests",
                "message": "too many sign-ins; try again later",
                "retry_after": wait.as_secs().max(1),
            }),
        );
    }
    match Box::pin(payments.sign_in(&code)).await {
        Ok(signed) => HttpOut::json(
            200,
            &json!({
                "token": signed.token.expose(),
                "openid": signed.session.openid,
                "expires_at": signed.expires_at.timestamp(),
            }),
        ),
        Err(PaymentsError::Wechat(crate::Error::Login { errcode, errmsg })) if errcode != -1 => {
            tracing::warn!(errcode, errmsg = %errmsg, "sign-in refused by WeChat");
            if errcode == 45011 {
                HttpOut::error(
                    429,
                    "too_many_requests",
                    "too many sign-ins; try again later",
                )
            } else {
                HttpOut::error(
                    401,
                    "unauthorized",
                    "the login code was refused; call wx.login again",
                )
            }
        }
        Err(e) => error_out(&e),
    }
}

/// The access rule of the order routes: the order has an owner and it is
/// the caller.
pub fn may_see(caller: Option<&str>, order: &Order) -> bool {
    matches!((caller, order.owner.as_deref()), (Some(c), Some(o)) if c == o)
}

fn order_answer(result: Result<Order, PaymentsError>) -> HttpOut {
    match result {
        Ok(order) => HttpOut::json(200, &order_json(&order)),
        Err(e) => error_out(&e),
    }
}

/// The public view of an order.
fn order_json(order: &Order) -> Value {
    let mut v = json!({
        "out_trade_no": order.out_trade_no.as_str(),
        "state": order.state.as_str(),
        "total_fee": order.total_fee.0,
    });
    if let Some(t) = &order.transaction_id {
        v["transaction_id"] = json!(t);
    }
    v
}

fn checkout_json(o: &CheckoutOutcome) -> Value {
    let mut v = json!({
        "out_trade_no": o.out_trade_no.as_str(),
        "total_fee": o.total_fee.0,
        "trade_type": o.trade_type.as_str(),
    });
    // `Payments` gives pay params for JSAPI only; NATIVE has `code_url`.
    if let Some(p) = &o.pay_params {
        v["pay_params"] = serde_json::to_value(p).unwrap_or(Value::Null);
    }
    if let Some(u) = &o.code_url {
        v["code_url"] = json!(u);
    }
    v
}

/// The one mapping from a [`PaymentsError`] to a JSON error response.
fn error_out(e: &PaymentsError) -> HttpOut {
    let status = e.http_status();
    match e {
        PaymentsError::Rejected(Rejection { kind, message }) => {
            let code = match kind {
                RejectionKind::Unauthorized => "unauthorized",
                RejectionKind::Forbidden => "forbidden",
                RejectionKind::Conflict => "conflict",
                RejectionKind::Internal => {
                    tracing::error!(error = %message, "the app's checkout failed");
                    return HttpOut::error(
                        status,
                        "internal_error",
                        "internal error; try again later",
                    );
                }
                _ => "bad_request",
            };
            HttpOut::error(status, code, message)
        }
        PaymentsError::NotFound(_) => HttpOut::not_found(),
        PaymentsError::TooEarly { retry_after, .. } => HttpOut::json(
            status,
            &json!({
                "error": "too_early",
                "message": e.to_string(),
                "retry_after": retry_after.as_secs().max(1),
            }),
        ),
        PaymentsError::InvalidState { .. } | PaymentsError::Invalid(_) => {
            let code = if status == 409 {
                "invalid_state"
            } else {
                "invalid"
            };
            HttpOut::error(status, code, &e.to_string())
        }
        PaymentsError::Wechat(_) if status == 502 => {
            tracing::warn!(error = %e, source = ?std::error::Error::source(e), "order route: WeChat call failed");
            HttpOut::error(
                status,
                "upstream_error",
                "WeChat Pay is unavailable; try again later",
            )
        }
        _ if status >= 500 => {
            tracing::error!(error = %e, source = ?std::error::Error::source(e), "order route failed");
            HttpOut::error(status, "internal_error", "internal error; try again later")
        }
        _ => HttpOut::error(status, "error", "request refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::OrderStore;
    use crate::testkit::adapter::*;

    /// `handle` itself, as a perfect adapter would call it.
    struct Direct(Payments);

    impl AdapterClient for Direct {
        async fn send(&self, req: TestRequest) -> TestResponse {
            let too_large = req.body.len() > MAX_BODY_BYTES;
            let (path, query) = match req.path.split_once('?') {
                Some((p, q)) => (p.to_owned(), q.to_owned()),
                None => (req.path.clone(), String::new()),
            };
            let mut r = HttpIn::new(&req.method, path, req.body).with_query(query);
            for (k, v) in &req.headers {
                r.add_header(k, v.as_bytes());
            }
            if too_large {
                r = r.with_body_too_large();
            }
            let out = handle(&self.0, r).await;
            TestResponse {
                status: out.status,
                content_type: Some(out.content_type.to_owned()),
                allow: out.allow.map(str::to_owned),
                closes: out.close,
                body: out.body,
            }
        }
    }

    #[tokio::test]
    async fn handle_passes_the_adapter_kit() {
        check_adapter(async |p| Direct(p)).await;
    }

    #[tokio::test]
    async fn a_timed_out_body_is_refused_and_changes_nothing() {
        let config = config();
        let (payments, store) = payments(config.clone());
        store
            .insert(&prepaid_order("T-1", Some("alice"), crate::Fen(5)))
            .await
            .unwrap();
        // Even a valid notify is not looked at once its read timed out.
        let body = sign_body(
            notify_params(&config, "T-1", crate::Fen(5)),
            &config.api_key,
        );
        let out = handle(
            &payments,
            HttpIn::new("POST", "/notify", body).with_body_timed_out(),
        )
        .await;
        assert_eq!((out.status, out.content_type), (200, CONTENT_TYPE_XML));
        assert!(out.close);
        let text = String::from_utf8(out.body).unwrap();
        assert!(text.contains("FAIL") && text.contains("超时"), "{text}");
        let order = store.get(&OutTradeNo::new("T-1").unwrap()).await.unwrap();
        assert_eq!(order.unwrap().state, crate::flow::OrderState::Prepaid);

        let out = handle(
            &payments,
            HttpIn::new("POST", "/orders", br#"{"sku":"vip"}"#.to_vec())
                .with_header("x-user", "bob")
                .with_body_timed_out(),
        )
        .await;
        assert_eq!((out.status, out.content_type), (408, CONTENT_TYPE_JSON));
        assert!(out.close);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["error"], "request_timeout");
        assert!(payments.orders_of("bob", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn read_body_sets_the_body_or_a_flag() {
        let later = async {
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(b"late but in time".to_vec())
        };
        let r = HttpIn::new("POST", "/notify", Vec::new())
            .read_body(Duration::from_secs(5), later)
            .await;
        assert_eq!(r.body, b"late but in time");
        assert!(!r.body_timed_out && !r.body_too_large);

        let r = HttpIn::new("POST", "/notify", b"stale".to_vec())
            .read_body(Duration::from_secs(5), async {
                Err::<Vec<u8>, _>(std::io::Error::other("over the limit"))
            })
            .await;
        assert!(r.body_too_large && !r.body_timed_out && r.body.is_empty());

        let never = std::future::pending::<Result<Vec<u8>, std::io::Error>>();
        let r = HttpIn::new("POST", "/notify", Vec::new())
            .read_body(Duration::from_millis(1), never)
            .await;
        assert!(r.body_timed_out && !r.body_too_large && r.body.is_empty());
    }

    #[test]
    fn headers_are_lowercased_and_joined() {
        let mut r = HttpIn::new("post", "/orders", Vec::new());
        r.add_header("X-User", b"a");
        r.add_header("x-user", b"b");
        r.add_header("X-Bin", b"\xff");
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers.get("x-user").map(String::as_str), Some("a, b"));
        assert!(!r.headers.contains_key("x-bin"));
    }

    #[test]
    fn routes_parse() {
        assert!(matches!(Route::parse("/orders"), Some(Route::Orders)));
        assert!(matches!(Route::parse("/orders/A?x=1"), Some(Route::Order(n)) if n == "A"));
        assert!(matches!(Route::parse("/orders/A/close"), Some(Route::Close(n)) if n == "A"));
        assert!(Route::parse("orders").is_none());
        assert!(Route::parse("").is_none());
        assert!(Route::parse("/orders//close").is_none());
        assert!(Route::parse("/orders/A/close/x").is_none());
        assert!(Route::parse("/notify/x").is_none());
        assert!(Route::parse("/orders/").is_none());
        assert!(matches!(Route::parse("/sign-in"), Some(Route::SignIn)));
        assert!(matches!(Route::parse("/sign-out"), Some(Route::SignOut)));
        assert!(Route::parse("/sign-in/x").is_none());
        assert!(!HttpIn::new("POST", "/notify", Vec::new()).needs_headers());
        assert!(!HttpIn::new("POST", "/refund-notify?x", Vec::new()).needs_headers());
        assert!(HttpIn::new("GET", "/orders/A", Vec::new()).needs_headers());
        assert!(HttpIn::new("GET", "/elsewhere", Vec::new()).needs_headers());
    }

    #[test]
    fn store_errors_do_not_leak() {
        let e = PaymentsError::Store(crate::flow::StoreError::Backend("password=hunter2".into()));
        let out = error_out(&e);
        assert_eq!(out.status, 500);
        assert!(!String::from_utf8(out.body).unwrap().contains("hunter2"));
    }

    #[test]
    fn admin_routes_parse() {
        assert!(matches!(Route::parse("/admin/orders/A"), Some(Route::AdminOrder(n)) if n == "A"));
        assert!(
            matches!(Route::parse("/admin/orders/A/refund"), Some(Route::AdminRefund(n)) if n == "A")
        );
        assert!(Route::parse("/admin/orders/A/refund/x").is_none());
        assert!(Route::parse("/admin/orders/").is_none());
        assert!(Route::parse("/admin/orders").is_none());
        assert!(HttpIn::new("GET", "/admin/orders/A", Vec::new()).needs_headers());
    }

    #[test]
    fn checkout_conflicts_and_the_apps_own_failures() {
        let conflict = error_out(&PaymentsError::Rejected(Rejection::conflict("sold out")));
        assert_eq!(conflict.status, 409);
        let v: Value = serde_json::from_slice(&conflict.body).unwrap();
        assert_eq!(
            (&v["error"], &v["message"]),
            (&json!("conflict"), &json!("sold out"))
        );
        let internal = error_out(&PaymentsError::Rejected(Rejection::internal(
            "db at 10.0.0.7 refused: password=hunter2",
        )));
        assert_eq!(internal.status, 500);
        let body = String::from_utf8(internal.body).unwrap();
        assert!(
            body.contains("internal_error") && !body.contains("hunter2"),
            "{body}"
        );
        // Our configuration is not WeChat's failure: 500, not 502.
        let config = PaymentsError::Wechat(crate::Error::Config(crate::ConfigError::Missing(
            "WXPAY_APP_SECRET",
        )));
        assert_eq!(error_out(&config).status, 500);
    }
}
