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
//! | `POST` | `/notify` | the payment notify: always `200` with WeChat's XML (`SUCCESS`/`FAIL`) |
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

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{CheckoutOutcome, CheckoutRequest, Order, Payments, PaymentsError, Rejection};
use crate::{OutTradeNo, notify};

/// The most body bytes an adapter reads (1 MiB). Real notifies are a few
/// KiB; checkout bodies are small JSON.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
    /// The raw body (at most [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
    /// The peer's IP address, if known (sent to WeChat as
    /// `spbill_create_ip` at checkout).
    pub client_ip: Option<String>,
    /// The body was longer than [`MAX_BODY_BYTES`] or could not be read in
    /// full: the request is refused without looking at
    /// [`body`](HttpIn::body).
    pub body_too_large: bool,
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
    /// identifies the caller); the notify routes read the body alone, so an
    /// adapter may skip copying headers when this is `false`.
    pub fn needs_headers(&self) -> bool {
        !matches!(
            Route::parse(&self.path),
            Some(Route::Notify | Route::RefundNotify)
        )
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
            _ => "POST",
        }
    }
}

/// Answers one request: routes it, calls [`Payments`], and builds the
/// response. Never fails: every error becomes a status (order routes) or a
/// `FAIL` reply (notify routes), logged with `tracing`.
pub async fn handle(payments: &Payments, req: HttpIn) -> HttpOut {
    let unread_body = req.body_too_large;
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
    if req.method != route.allow() {
        return HttpOut::method_not_allowed(route.allow());
    }
    match route {
        Route::Notify | Route::RefundNotify if req.body_too_large => {
            tracing::warn!(path = %req.path, "notify body over the size limit refused");
            HttpOut::xml(notify::reply_fail("报文过大"))
        }
        Route::Notify => HttpOut::xml(payments.handle_notify(&req.body).await.body),
        Route::RefundNotify => HttpOut::xml(payments.handle_refund_notify(&req.body).await.body),
        _ if req.body_too_large => HttpOut::too_large(),
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
        Route::SignIn => sign_in(payments, &req.body).await,
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
    let ask = if creq.body.iter().all(u8::is_ascii_whitespace) {
        Ask {
            refund_fee: None,
            out_refund_no: None,
        }
    } else {
        match serde_json::from_slice::<Ask>(&creq.body) {
            Ok(a) => a,
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
async fn sign_in(payments: &Payments, body: &[u8]) -> HttpOut {
    #[derive(serde::Deserialize)]
    struct Code {
        code: String,
    }
    // wx.login's codes are 32 characters; the code goes into a URL.
    let code = match serde_json::from_slice::<Code>(body) {
        Ok(c) if !c.code.is_empty() && c.code.len() <= 128 => c.code,
        _ => return HttpOut::error(400, "bad_request", "expected a JSON body {\"code\"}"),
    };
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
            let code = match kind.status() {
                401 => "unauthorized",
                403 => "forbidden",
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
        PaymentsError::Wechat(_) => {
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

/// A conformance kit for web adapters (feature `testkit`): one suite that
/// every adapter of [`handle`] runs in-process, so that all of them expose
/// the same routes, statuses, JSON and XML.
///
/// Implement [`AdapterClient`](testkit::AdapterClient) over your framework's test client (prefixing
/// the relative paths with your mount point), then call [`check_adapter`](testkit::check_adapter)
/// with a function that mounts a [`Payments`] and returns the client.
/// [`check_adapter_checkout`](testkit::check_adapter_checkout) adds successful checkouts against a WeChat
/// (e.g. the `wxpay-sim` simulator) behind [`Config::with_api_base`](crate::Config::with_api_base).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit {
    use std::{future::Future, sync::Arc, time::Duration};

    use async_trait::async_trait;
    use chrono::Utc;
    use serde_json::Value;

    use super::MAX_BODY_BYTES;
    use crate::{
        ApiKey, Config, Fen, OutTradeNo, Params, SignType, TradeType,
        flow::{
            Checkout, CheckoutRequest, MemorySessions, MemoryStore, Order, OrderDraft, OrderState,
            OrderStore, Payments, Rejection,
        },
    };

    /// The kit's AppID.
    pub const APPID: &str = "wxd930ea5d5a258f4f";
    /// The kit's merchant number.
    pub const MCH_ID: &str = "10000100";
    /// The kit's API key.
    pub const API_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    /// A request the kit sends; `path` is relative to the mount point.
    #[derive(Debug, Clone)]
    pub struct TestRequest {
        /// The method.
        pub method: String,
        /// The path relative to the mount point (`/orders/A1`).
        pub path: String,
        /// Headers (in the case the kit chose; adapters must not care).
        pub headers: Vec<(String, String)>,
        /// The body (sometimes over [`MAX_BODY_BYTES`]).
        pub body: Vec<u8>,
    }

    /// What the adapter answered.
    #[derive(Debug, Clone)]
    pub struct TestResponse {
        /// The status code.
        pub status: u16,
        /// The `Content-Type` header.
        pub content_type: Option<String>,
        /// The `Allow` header.
        pub allow: Option<String>,
        /// Whether the response closes the connection (`Connection: close`,
        /// or the framework's equivalent).
        pub closes: bool,
        /// The body.
        pub body: Vec<u8>,
    }

    impl TestResponse {
        /// The body as text (lossy).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The body as JSON.
        ///
        /// # Panics
        /// When it is not JSON.
        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
        }
    }

    /// Sends a [`TestRequest`] through the adapter under test.
    pub trait AdapterClient {
        /// Sends one request and returns the response.
        fn send(&self, req: TestRequest) -> impl Future<Output = TestResponse>;
    }

    /// The kit's [`Checkout`]: the caller is the `x-user` header; checkout
    /// needs it (401 otherwise) and a JSON body `{"sku": "vip"}` (JSAPI,
    /// 990 fen, payer `o-<user>`) or `{"sku": "qr"}` (NATIVE, 1990 fen);
    /// other bodies are 400. Orders are owned by the caller.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct KitCheckout;

    #[async_trait]
    impl Checkout for KitCheckout {
        async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
            #[derive(serde::Deserialize)]
            struct Buy {
                sku: String,
            }
            let user = req
                .header("x-user")
                .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
            let draft = match req.json::<Buy>()?.sku.as_str() {
                "vip" => OrderDraft::jsapi(format!("o-{user}"), "Shop-VIP", Fen(990)),
                "qr" => OrderDraft::native("qr", "Shop-QR", Fen(1990)),
                _ => return Err(Rejection::bad_request("unknown sku")),
            };
            Ok(draft.with_owner(user))
        }

        async fn identify(&self, req: &CheckoutRequest) -> Result<Option<String>, Rejection> {
            Ok(req.header("x-user").map(str::to_owned))
        }
    }

    /// The kit's merchant configuration ([`APPID`], [`MCH_ID`],
    /// [`API_KEY`]), with WeChat at an address that refuses connections.
    pub fn config() -> Config {
        Config::new(APPID, MCH_ID, ApiKey::new(API_KEY))
            .with_api_base("http://127.0.0.1:9")
            .with_notify_url("https://shop.example.com/pay/notify")
    }

    /// A [`Payments`] over `config` with [`KitCheckout`] and a fresh
    /// [`MemoryStore`] (returned too, for inspection).
    ///
    /// # Panics
    /// When the client cannot be built.
    pub fn payments(config: Config) -> (Payments, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let payments = Payments::builder(config)
            .store(Arc::clone(&store) as Arc<dyn OrderStore>)
            .checkout(KitCheckout)
            .close_after(Duration::ZERO)
            .build()
            .expect("payments");
        (payments, store)
    }

    /// As [`payments`], keeping sign-in sessions in a fresh
    /// [`MemorySessions`].
    ///
    /// # Panics
    /// When the client cannot be built.
    pub fn payments_with_sessions(config: Config) -> (Payments, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let payments = Payments::builder(config)
            .store(Arc::clone(&store) as Arc<dyn OrderStore>)
            .sessions(Arc::new(MemorySessions::new()))
            .checkout(KitCheckout)
            .close_after(Duration::ZERO)
            .build()
            .expect("payments");
        (payments, store)
    }

    /// A `PREPAID` JSAPI order, synced just now (so status routes do not
    /// call WeChat).
    ///
    /// # Panics
    /// For an invalid order number.
    pub fn prepaid_order(out_trade_no: &str, owner: Option<&str>, total_fee: Fen) -> Order {
        let now = super::super::payments::now();
        let mut o = Order::new(
            OutTradeNo::new(out_trade_no).expect("order number"),
            total_fee,
            "Shop-VIP",
            TradeType::Jsapi,
            SignType::Md5,
            now,
        );
        o.state = OrderState::Prepaid;
        o.owner = owner.map(str::to_owned);
        o.openid = Some("o-payer".into());
        o.prepay_id = Some(format!("wx{out_trade_no}"));
        o.synced_at = Some(now);
        o
    }

    /// The fields of a successful payment notify for `out_trade_no` and
    /// `total_fee` under `config`, unsigned.
    pub fn notify_params(config: &Config, out_trade_no: &str, total_fee: Fen) -> Params {
        let fee = total_fee.0.to_string();
        [
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", config.appid.as_str()),
            ("mch_id", config.mch_id.as_str()),
            ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("result_code", "SUCCESS"),
            ("openid", "o-payer"),
            ("is_subscribe", "N"),
            ("trade_type", "JSAPI"),
            ("bank_type", "OTHERS"),
            ("total_fee", fee.as_str()),
            ("fee_type", "CNY"),
            ("cash_fee", fee.as_str()),
            ("transaction_id", "4200000000000000000000000001"),
            ("out_trade_no", out_trade_no),
            (
                "time_end",
                crate::types::format_beijing(Utc::now()).as_str(),
            ),
        ]
        .into_iter()
        .collect()
    }

    /// Signs `params` (MD5) with `key` and returns the XML body.
    pub fn sign_body(mut params: Params, key: &ApiKey) -> Vec<u8> {
        params.remove("sign");
        let sign = crate::sign::sign(&params, key, SignType::Md5);
        params.insert("sign", sign);
        crate::xml::to_xml(&params).into_bytes()
    }

    /// A request with headers.
    pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> TestRequest {
        TestRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    fn assert_fail_xml(what: &str, r: &TestResponse) {
        assert_eq!(r.status, 200, "{what}: notify answers 200, got {r:?}");
        let ct = r.content_type.as_deref().unwrap_or("");
        assert!(ct.contains("xml"), "{what}: XML content type, got {ct:?}");
        let text = r.text();
        assert!(
            text.starts_with("<xml><return_code><![CDATA[FAIL]]></return_code>"),
            "{what}: FAIL reply expected, got {text}"
        );
    }

    fn assert_error(what: &str, r: &TestResponse, status: u16, code: &str) {
        assert_eq!(r.status, status, "{what}: status, got {}", r.text());
        let ct = r.content_type.as_deref().unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{what}: JSON content type, got {ct:?}"
        );
        let v = r.json();
        assert_eq!(v["error"], code, "{what}: error code in {v}");
        assert!(v["message"].is_string(), "{what}: message in {v}");
    }

    /// Runs the suite: the route table (404, 405 with `Allow`), the payment
    /// notify (valid → `SUCCESS` and `PAID`; forged, foreign merchant, wrong
    /// amount, unknown order, malformed, entity declarations, non-UTF-8 and
    /// a 2 MiB body → HTTP 200 `FAIL` with the order unchanged; the
    /// connection closes after the 2 MiB one and only after it), the refund
    /// notify's refusals, order status and close by the owner versus
    /// others (404), and checkout refusals (401, 400, 413) that store
    /// nothing. Nothing calls WeChat. Panics at the first deviation.
    ///
    /// # Panics
    /// When the adapter deviates.
    pub async fn check_adapter<C, F>(mount: F)
    where
        C: AdapterClient,
        F: AsyncFnOnce(Payments) -> C,
    {
        let config = config();
        let (payments, store) = payments(config.clone());
        let client = mount(payments).await;
        let send = async |r: TestRequest| client.send(r).await;
        let alice = [("X-User", "alice")];
        let bob = [("x-user", "bob")];

        // Route table.
        // The mount point itself may be answered by the framework.
        let r = send(request("GET", "/", &[], b"")).await;
        assert_eq!(r.status, 404, "GET /");
        for (method, path) in [
            ("GET", "/nope"),
            ("POST", "/orders/A1/refund"),
            ("GET", "/orders/"),
            ("POST", "/notify/x"),
            ("POST", "/sign-in"),
            ("POST", "/sign-out"),
        ] {
            let r = send(request(method, path, &[], b"")).await;
            assert_error(&format!("{method} {path}"), &r, 404, "not_found");
        }
        for (method, path, allow) in [
            ("GET", "/notify", "POST"),
            ("PUT", "/refund-notify", "POST"),
            ("GET", "/orders", "POST"),
            ("POST", "/orders/A1", "GET"),
            ("DELETE", "/orders/A1", "GET"),
            ("GET", "/orders/A1/close", "POST"),
        ] {
            let r = send(request(method, path, &[], b"")).await;
            assert_error(&format!("{method} {path}"), &r, 405, "method_not_allowed");
            assert_eq!(
                r.allow.as_deref(),
                Some(allow),
                "{method} {path}: Allow header"
            );
        }

        // Payment notify refusals: HTTP 200 FAIL, order untouched.
        let a = prepaid_order("KIT-A1", Some("alice"), Fen(990));
        store.insert(&a).await.expect("insert");
        let get = async |no: &str| {
            store
                .get(&OutTradeNo::new(no).unwrap())
                .await
                .unwrap()
                .unwrap()
        };
        let key = config.api_key.clone();
        let good = notify_params(&config, "KIT-A1", Fen(990));
        let mut forged = String::from_utf8(sign_body(good.clone(), &key)).unwrap();
        let at = forged.find("<sign>").expect("sign element") + "<sign><![CDATA[".len();
        forged.replace_range(
            at..at + 1,
            if &forged[at..at + 1] == "0" { "1" } else { "0" },
        );
        let mut foreign = good.clone();
        foreign.insert("appid", "wx0000000000000000");
        let mut cheap = good.clone();
        cheap.insert("total_fee", "1");
        cheap.insert("cash_fee", "1");
        let mut unknown = good.clone();
        unknown.insert("out_trade_no", "KIT-NOPE");
        let mut big = b"<xml><return_code>SUCCESS</return_code><attach>".to_vec();
        big.resize(2 * MAX_BODY_BYTES, b'a');
        big.extend_from_slice(b"</attach></xml>");
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("forged signature", forged.into_bytes()),
            ("unsigned", crate::xml::to_xml(&good).into_bytes()),
            ("foreign appid", sign_body(foreign, &key)),
            ("wrong amount", sign_body(cheap, &key)),
            ("unknown order", sign_body(unknown, &key)),
            ("signed with another key", sign_body(good.clone(), &ApiKey::new("x".repeat(32)))),
            ("empty body", Vec::new()),
            ("malformed XML", b"<xml><return_code>SUCCESS</return_code><out_trade_no>KIT-A1".to_vec()),
            ("JSON", br#"{"out_trade_no":"KIT-A1"}"#.to_vec()),
            (
                "entity declarations",
                br#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "KIT-A1"><!ENTITY b "&a;&a;&a;&a;&a;">]><xml><out_trade_no>&b;</out_trade_no></xml>"#.to_vec(),
            ),
            (
                "external entity",
                br#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><attach>&x;</attach></xml>"#.to_vec(),
            ),
            ("non-UTF-8", b"<xml><out_trade_no>KIT-\xff\xfe</out_trade_no></xml>".to_vec()),
            ("2 MiB body", big),
        ];
        for (what, body) in bad {
            let before = get("KIT-A1").await;
            let r = send(request(
                "POST",
                "/notify",
                &[("content-type", "text/xml")],
                &body,
            ))
            .await;
            assert_fail_xml(what, &r);
            assert_eq!(
                r.closes,
                body.len() > MAX_BODY_BYTES,
                "{what}: the connection closes exactly when the body was not read to its end"
            );
            let after = get("KIT-A1").await;
            if what == "wrong amount" {
                // A verified notify with another amount is recorded as an
                // attention case (once), and nothing else changes.
                assert_eq!(
                    after.attention.iter().map(|a| a.kind).collect::<Vec<_>>(),
                    [crate::flow::AttentionKind::AmountMismatch],
                    "{what}: flagged for a person"
                );
                let mut unflagged = after.clone();
                unflagged.attention.clear();
                unflagged.version = before.version;
                unflagged.updated_at = before.updated_at;
                assert_eq!(
                    unflagged, before,
                    "{what}: the order must not change but for the flag"
                );
            } else {
                assert_eq!(after, before, "{what}: the order must not change");
            }
        }

        // Refund notify refusals.
        for (what, body) in [
            ("refund: empty", Vec::new()),
            ("refund: malformed", b"<xml><req_info>".to_vec()),
            (
                "refund: undecryptable",
                sign_body(
                    [
                        ("return_code", "SUCCESS"),
                        ("appid", APPID),
                        ("mch_id", MCH_ID),
                        ("nonce_str", "n"),
                        ("req_info", "bm90IGVuY3J5cHRlZA=="),
                    ]
                    .into_iter()
                    .collect(),
                    &key,
                ),
            ),
        ] {
            let before = get("KIT-A1").await;
            let r = send(request("POST", "/refund-notify", &[], &body)).await;
            assert_fail_xml(what, &r);
            let after = get("KIT-A1").await;
            if what == "wrong amount" {
                // A verified notify with another amount is recorded as an
                // attention case (once), and nothing else changes.
                assert_eq!(
                    after.attention.iter().map(|a| a.kind).collect::<Vec<_>>(),
                    [crate::flow::AttentionKind::AmountMismatch],
                    "{what}: flagged for a person"
                );
                let mut unflagged = after.clone();
                unflagged.attention.clear();
                unflagged.version = before.version;
                unflagged.updated_at = before.updated_at;
                assert_eq!(
                    unflagged, before,
                    "{what}: the order must not change but for the flag"
                );
            } else {
                assert_eq!(after, before, "{what}: the order must not change");
            }
        }

        // The genuine notify, then a duplicate.
        for what in ["valid notify", "duplicate notify"] {
            let r = send(request(
                "POST",
                "/notify",
                &[],
                &sign_body(good.clone(), &key),
            ))
            .await;
            assert_eq!(r.status, 200, "{what}");
            assert_eq!(r.text(), crate::notify::REPLY_SUCCESS, "{what}");
            assert!(
                r.content_type.as_deref().unwrap_or("").contains("xml"),
                "{what}"
            );
            let a = get("KIT-A1").await;
            assert_eq!(a.state, OrderState::Paid, "{what}: order paid");
            assert_eq!(
                a.transaction_id.as_deref(),
                Some("4200000000000000000000000001")
            );
        }

        // Status: the owner only.
        store
            .insert(&prepaid_order("KIT-B1", Some("alice"), Fen(1990)))
            .await
            .unwrap();
        store
            .insert(&prepaid_order("KIT-C1", None, Fen(1)))
            .await
            .unwrap();
        let r = send(request("GET", "/orders/KIT-B1", &alice, b"")).await;
        assert_eq!(r.status, 200, "owner sees the order: {}", r.text());
        assert!(
            r.content_type
                .as_deref()
                .unwrap_or("")
                .starts_with("application/json")
        );
        assert_eq!(
            r.json(),
            serde_json::json!({"out_trade_no": "KIT-B1", "state": "PREPAID", "total_fee": 1990})
        );
        let r = send(request("GET", "/orders/KIT-A1", &alice, b"")).await;
        assert_eq!(
            r.json(),
            serde_json::json!({
                "out_trade_no": "KIT-A1", "state": "PAID", "total_fee": 990,
                "transaction_id": "4200000000000000000000000001"
            })
        );
        let not_found = [
            ("GET", "/orders/KIT-B1", &bob[..], "another user"),
            ("GET", "/orders/KIT-B1", &[][..], "anonymous"),
            (
                "GET",
                "/orders/KIT-C1",
                &alice[..],
                "an order without owner",
            ),
            ("GET", "/orders/KIT-NOPE", &alice[..], "an unknown order"),
            ("GET", "/orders/bad%20no", &alice[..], "an invalid number"),
            (
                "POST",
                "/orders/KIT-B1/close",
                &bob[..],
                "close by another user",
            ),
            (
                "POST",
                "/orders/KIT-NOPE/close",
                &alice[..],
                "close of an unknown order",
            ),
        ];
        for (method, path, headers, what) in not_found {
            let before = get("KIT-B1").await;
            let r = send(request(method, path, headers, b"")).await;
            assert_error(what, &r, 404, "not_found");
            assert_eq!(
                get("KIT-B1").await,
                before,
                "{what}: the order must not change"
            );
        }
        let r = send(request("POST", "/orders/KIT-A1/close", &alice, b"")).await;
        assert_error("close of a paid order", &r, 409, "invalid_state");

        // Checkout refusals store nothing.
        let count = store.len();
        let r = send(request("POST", "/orders", &[], br#"{"sku":"vip"}"#)).await;
        assert_error("checkout without a session", &r, 401, "unauthorized");
        assert_eq!(r.json()["message"], "sign in first");
        let r = send(request("POST", "/orders", &alice, b"nope")).await;
        assert_error("checkout with a bad body", &r, 400, "bad_request");
        let r = send(request("POST", "/orders", &alice, br#"{"sku":"gold"}"#)).await;
        assert_error("checkout of an unknown sku", &r, 400, "bad_request");
        let huge = vec![b' '; 2 * MAX_BODY_BYTES];
        let r = send(request("POST", "/orders", &alice, &huge)).await;
        assert_error("checkout with a 2 MiB body", &r, 413, "payload_too_large");
        assert!(
            r.closes,
            "checkout with a 2 MiB body: the connection must close"
        );
        assert_eq!(store.len(), count, "refused checkouts store nothing");
    }

    /// The sign-in routes through the adapter, on a [`Payments`] that keeps
    /// sessions ([`payments_with_sessions`]); the client sends `/sign-in`
    /// and `/sign-out` wherever the adapter mounted them. `config` must
    /// point at a WeChat whose `jscode2session` accepts `code` once and
    /// refuses it after that (e.g. the `wxpay-sim` simulator, with a code
    /// from `SimHandle::login`). Checks refusals (405, 400, 413), a sign-in
    /// whose token the service then knows and whose answer holds no session
    /// key, the used code's `401`, and sign-out. Returns the openid.
    ///
    /// # Panics
    /// When the adapter deviates.
    pub async fn check_adapter_sign_in<C, F>(config: Config, code: &str, mount: F) -> String
    where
        C: AdapterClient,
        F: AsyncFnOnce(Payments) -> C,
    {
        let (payments, _) = payments_with_sessions(config);
        let client = mount(payments.clone()).await;
        let send = async |r: TestRequest| client.send(r).await;
        let json = [("content-type", "application/json")];

        for method in ["GET", "PUT"] {
            let r = send(request(method, "/sign-in", &[], b"")).await;
            assert_error(&format!("{method} /sign-in"), &r, 405, "method_not_allowed");
            assert_eq!(r.allow.as_deref(), Some("POST"));
        }
        let long = format!(r#"{{"code":"{}"}}"#, "c".repeat(129));
        for (what, body) in [
            ("not JSON", &b"code=abc"[..]),
            ("no code", br#"{"js_code":"abc"}"#),
            ("an empty code", br#"{"code":""}"#),
            ("a code that is not a string", br#"{"code":123}"#),
            ("a 129-character code", long.as_bytes()),
        ] {
            let r = send(request("POST", "/sign-in", &json, body)).await;
            assert_error(&format!("sign-in with {what}"), &r, 400, "bad_request");
        }
        let huge = vec![b' '; 2 * MAX_BODY_BYTES];
        let r = send(request("POST", "/sign-in", &json, &huge)).await;
        assert_error("sign-in with a 2 MiB body", &r, 413, "payload_too_large");
        assert!(
            r.closes,
            "sign-in with a 2 MiB body: the connection must close"
        );

        let body = serde_json::json!({ "code": code }).to_string();
        let r = send(request("POST", "/sign-in", &json, body.as_bytes())).await;
        assert_eq!(r.status, 200, "sign-in: {}", r.text());
        let v = r.json();
        let token = v["token"].as_str().expect("token").to_owned();
        let openid = v["openid"].as_str().expect("openid").to_owned();
        assert!(token.len() >= 43, "a 256-bit token: {token:?}");
        assert!(
            v["expires_at"].as_i64().expect("expires_at") > Utc::now().timestamp(),
            "expires in the future: {v}"
        );
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["expires_at", "openid", "token"],
            "nothing else, no session key"
        );
        let bearer = format!("Bearer {token}");
        let who = payments.signed_in(Some(&bearer)).await.expect("lookup");
        assert_eq!(
            who.map(|s| s.openid),
            Some(openid.clone()),
            "the token names the user"
        );

        let r = send(request("POST", "/sign-in", &json, body.as_bytes())).await;
        assert_error("sign-in with a used code", &r, 401, "unauthorized");

        let auth = [("Authorization", bearer.as_str())];
        for (what, headers, ended) in [
            ("sign-out without a token", &[][..], false),
            ("sign-out", &auth[..], true),
            ("sign-out again", &auth[..], false),
        ] {
            let r = send(request("POST", "/sign-out", headers, b"")).await;
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            assert_eq!(
                r.json(),
                serde_json::json!({ "signed_out": ended }),
                "{what}"
            );
        }
        let who = payments.signed_in(Some(&bearer)).await.expect("lookup");
        assert!(who.is_none(), "the token no longer works after sign-out");
        openid
    }

    /// Successful checkouts through the adapter: `config` must point at a
    /// WeChat that accepts its merchant (e.g. the `wxpay-sim` simulator).
    /// Checks the `201` bodies for JSAPI (`pay_params`) and NATIVE
    /// (`code_url`), and that the buyer can read the order and another
    /// user cannot. Returns the JSAPI order's number.
    ///
    /// # Panics
    /// When the adapter deviates.
    pub async fn check_adapter_checkout<C, F>(config: Config, mount: F) -> String
    where
        C: AdapterClient,
        F: AsyncFnOnce(Payments) -> C,
    {
        let appid = config.appid.clone();
        let (payments, store) = payments(config);
        let client = mount(payments).await;
        let alice = [("x-user", "alice"), ("content-type", "application/json")];

        let r = client
            .send(request("POST", "/orders", &alice, br#"{"sku":"vip"}"#))
            .await;
        assert_eq!(r.status, 201, "JSAPI checkout: {}", r.text());
        let v = r.json();
        let no = v["out_trade_no"].as_str().expect("out_trade_no").to_owned();
        assert_eq!(v["total_fee"], 990);
        assert_eq!(v["trade_type"], "JSAPI");
        assert!(v.get("code_url").is_none(), "no code_url for JSAPI: {v}");
        let p = &v["pay_params"];
        assert_eq!(p["appId"], appid.as_str());
        assert!(
            p["package"]
                .as_str()
                .unwrap_or("")
                .starts_with("prepay_id="),
            "{p}"
        );
        for k in ["timeStamp", "nonceStr", "signType", "paySign"] {
            assert!(p[k].is_string(), "pay_params.{k} in {p}");
        }
        let stored = store
            .get(&OutTradeNo::new(no.as_str()).unwrap())
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(stored.state, OrderState::Prepaid);
        assert_eq!(stored.owner.as_deref(), Some("alice"));

        let r = client
            .send(request("GET", &format!("/orders/{no}"), &alice, b""))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["state"], "PREPAID");
        let r = client
            .send(request(
                "GET",
                &format!("/orders/{no}"),
                &[("x-user", "bob")],
                b"",
            ))
            .await;
        assert_eq!(r.status, 404);

        let r = client
            .send(request("POST", "/orders", &alice, br#"{"sku":"qr"}"#))
            .await;
        assert_eq!(r.status, 201, "NATIVE checkout: {}", r.text());
        let v = r.json();
        assert_eq!(v["trade_type"], "NATIVE");
        assert_eq!(v["total_fee"], 1990);
        assert!(v["code_url"].as_str().is_some_and(|u| !u.is_empty()), "{v}");
        assert!(
            v.get("pay_params").is_none(),
            "no pay_params for NATIVE: {v}"
        );
        no
    }
}

#[cfg(test)]
mod tests {
    use super::{testkit::*, *};

    /// `handle` itself, as a perfect adapter would call it.
    struct Direct(Payments);

    impl AdapterClient for Direct {
        async fn send(&self, req: TestRequest) -> TestResponse {
            let too_large = req.body.len() > MAX_BODY_BYTES;
            let mut r = HttpIn::new(&req.method, req.path, req.body);
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
}
