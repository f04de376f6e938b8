//! [`Checkout`]: the app's say over what an order is, and the values around it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::{Fen, OutTradeNo, TradeType};

/// A checkout request as the client sent it, framework-free. Nothing in it
/// is trusted: the [`Checkout`] decides what the order is.
#[derive(Debug, Clone, Default)]
pub struct CheckoutRequest {
    /// The raw request body (usually JSON such as `{"sku": "vip-month"}`).
    pub body: Vec<u8>,
    /// Request headers, names in lowercase.
    pub headers: BTreeMap<String, String>,
    /// The caller's IP address, if the adapter knows it (sent as
    /// `spbill_create_ip`; `127.0.0.1` otherwise).
    pub client_ip: Option<String>,
    /// The signed-in user (openid), filled in by [`Payments`](super::Payments)
    /// from the `Authorization: Bearer …` header when it keeps sessions
    /// ([`PaymentsBuilder::sessions`](super::PaymentsBuilder::sessions)).
    pub(crate) user: Option<String>,
}

impl CheckoutRequest {
    /// A request with a body and no headers.
    pub fn new(body: impl Into<Vec<u8>>) -> CheckoutRequest {
        CheckoutRequest {
            body: body.into(),
            ..CheckoutRequest::default()
        }
    }

    /// Adds a header (the name is lowercased).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> CheckoutRequest {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// Sets the caller's IP.
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> CheckoutRequest {
        self.client_ip = Some(ip.into());
        self
    }

    /// Sets the signed-in user (for tests of a [`Checkout`]; in a running
    /// app [`Payments`](super::Payments) sets it from the session).
    pub fn with_user(mut self, openid: impl Into<String>) -> CheckoutRequest {
        self.user = Some(openid.into());
        self
    }

    /// The signed-in user's openid: set only from a live session of
    /// [`Payments::sign_in`](super::Payments::sign_in), never from the
    /// request's own fields.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A header's value (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// A [`RejectionKind::BadRequest`] rejection naming the JSON problem.
    ///
    /// ```
    /// # use wxpay_core::flow::CheckoutRequest;
    /// #[derive(serde::Deserialize)]
    /// struct Buy { sku: String }
    /// let req = CheckoutRequest::new(r#"{"sku":"vip"}"#);
    /// assert_eq!(req.json::<Buy>().unwrap().sku, "vip");
    /// assert!(CheckoutRequest::new("nope").json::<Buy>().is_err());
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Rejection::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// The authoritative order the app derives from a [`CheckoutRequest`]: the
/// amount comes from the app's prices and the payer from its own session,
/// never from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderDraft {
    /// The app's user id (stored as [`Order::owner`](super::Order::owner)).
    pub owner: Option<String>,
    /// The payer (required for JSAPI).
    pub openid: Option<String>,
    /// Goods description (`body`, ≤ 127 bytes).
    pub body: String,
    /// The price in fen.
    pub total_fee: Fen,
    /// `JSAPI` or `NATIVE`.
    pub trade_type: TradeType,
    /// The product (required for NATIVE).
    pub product_id: Option<String>,
    /// Merchant data echoed back by WeChat.
    pub attach: Option<String>,
    /// The order number to use; wxpay generates one when `None`.
    pub out_trade_no: Option<OutTradeNo>,
    /// The payer's IP address (v2 `spbill_create_ip`, v3
    /// `scene_info.payer_client_ip`), when the app knows it better than
    /// the request's peer address (e.g. from its own proxy setup). Default:
    /// the request's [`client_ip`](CheckoutRequest::client_ip).
    pub client_ip: Option<String>,
}

impl OrderDraft {
    /// A mini-program (JSAPI) order.
    ///
    /// ```
    /// use wxpay_core::{Fen, flow::OrderDraft};
    /// let draft = OrderDraft::jsapi("openid-of-the-session", "Shop-VIP month", Fen(990))
    ///     .with_owner("user:42")
    ///     .with_attach("sku=vip-month");
    /// assert_eq!(draft.total_fee, Fen(990));
    /// ```
    pub fn jsapi(openid: impl Into<String>, body: impl Into<String>, total_fee: Fen) -> OrderDraft {
        OrderDraft {
            owner: None,
            openid: Some(openid.into()),
            body: body.into(),
            total_fee,
            trade_type: TradeType::Jsapi,
            product_id: None,
            attach: None,
            out_trade_no: None,
            client_ip: None,
        }
    }

    /// A QR-code (NATIVE) order.
    pub fn native(
        product_id: impl Into<String>,
        body: impl Into<String>,
        total_fee: Fen,
    ) -> OrderDraft {
        OrderDraft {
            openid: None,
            product_id: Some(product_id.into()),
            trade_type: TradeType::Native,
            ..OrderDraft::jsapi("", body, total_fee)
        }
    }

    /// Sets the owner.
    pub fn with_owner(mut self, owner: impl Into<String>) -> OrderDraft {
        self.owner = Some(owner.into());
        self
    }

    /// Sets `attach`.
    pub fn with_attach(mut self, attach: impl Into<String>) -> OrderDraft {
        self.attach = Some(attach.into());
        self
    }

    /// Sets [`client_ip`](OrderDraft::client_ip).
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> OrderDraft {
        self.client_ip = Some(ip.into());
        self
    }

    /// Uses this order number (re-entering the order when it exists with
    /// the same fields).
    pub fn with_out_trade_no(mut self, out_trade_no: OutTradeNo) -> OrderDraft {
        self.out_trade_no = Some(out_trade_no);
        self
    }
}

/// Why the app refused a checkout; adapters map it to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The request is malformed (400).
    BadRequest,
    /// The caller is not signed in (401).
    Unauthorized,
    /// The caller may not buy this (403).
    Forbidden,
    /// The request conflicts with the app's state: sold out, a purchase
    /// already in progress (409).
    Conflict,
    /// The app failed (its database, a service it calls): `500` with a
    /// generic body; the message is logged, never shown (500).
    Internal,
}

impl RejectionKind {
    /// The matching HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            RejectionKind::BadRequest => 400,
            RejectionKind::Unauthorized => 401,
            RejectionKind::Forbidden => 403,
            RejectionKind::Conflict => 409,
            RejectionKind::Internal => 500,
        }
    }
}

/// A refused checkout: a status-like kind and a message safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// What kind of refusal.
    pub kind: RejectionKind,
    /// A message for the client.
    pub message: String,
}

impl Rejection {
    /// A refusal of the given kind.
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionKind::BadRequest, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionKind::Unauthorized, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionKind::Forbidden, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionKind::Conflict, message)
    }

    /// 500: the app's own failure. `error` is logged with the request and
    /// never sent to the client (it gets a generic message).
    ///
    /// ```
    /// use wxpay_core::flow::{Rejection, RejectionKind};
    /// let r = Rejection::internal("catalog database unreachable");
    /// assert_eq!(r.kind.status(), 500);
    /// ```
    pub fn internal(error: impl std::fmt::Display) -> Rejection {
        Rejection::new(RejectionKind::Internal, error.to_string())
    }
}

/// The app's checkout logic: turns an untrusted request into an
/// authoritative [`OrderDraft`] (who pays, what, how much) or a [`Rejection`].
///
/// ```
/// use async_trait::async_trait;
/// use wxpay_core::{Fen, flow::{Checkout, CheckoutRequest, OrderDraft, Rejection}};
///
/// struct Shop;
///
/// #[async_trait]
/// impl Checkout for Shop {
///     async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
///         #[derive(serde::Deserialize)]
///         struct Buy { sku: String }
///         // The payer comes from the app's own session, never from the body.
///         let openid = req.header("x-session-openid").ok_or_else(|| Rejection::unauthorized("sign in first"))?;
///         let price = match req.json::<Buy>()?.sku.as_str() {
///             "vip-month" => Fen(990),
///             _ => return Err(Rejection::bad_request("unknown sku")),
///         };
///         Ok(OrderDraft::jsapi(openid, "Shop-VIP month", price))
///     }
/// }
/// ```
#[async_trait]
pub trait Checkout: Send + Sync + 'static {
    /// Decides the order for a request.
    ///
    /// # Errors
    /// A [`Rejection`] the adapter turns into a 400/401/403 response.
    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection>;

    /// Who is calling, for the order routes (status, close): the app's user
    /// id from the request's headers (its own session), `None` for an
    /// anonymous caller. The routes answer only the order whose
    /// [`Order::owner`](super::Order::owner) equals it (others get `404`),
    /// so set the same id with [`OrderDraft::with_owner`] in
    /// [`order`](Checkout::order). Only headers and `client_ip` are filled in
    /// (the body is empty).
    ///
    /// Default: the signed-in user ([`CheckoutRequest::user`]) when
    /// [`Payments`](super::Payments) keeps sessions, and otherwise `None`,
    /// which lets nobody see any order through the routes.
    ///
    /// # Errors
    /// A [`Rejection`] (e.g. 401 for an expired session) answered as is.
    async fn identify(&self, req: &CheckoutRequest) -> Result<Option<String>, Rejection> {
        Ok(req.user().map(str::to_owned))
    }
}

/// The checkout used when the app configures none: refuses everything, so
/// that no endpoint sells anything by accident.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCheckout;

#[async_trait]
impl Checkout for NoCheckout {
    async fn order(&self, _req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        Err(Rejection::forbidden("checkout is not configured"))
    }
}

/// What a successful checkout returns to the client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CheckoutOutcome {
    /// The order number (for status polling).
    pub out_trade_no: OutTradeNo,
    /// The amount the order was priced at.
    pub total_fee: Fen,
    /// `JSAPI` or `NATIVE`.
    pub trade_type: TradeType,
    /// `wx.requestPayment` parameters (JSAPI), signed for the order's API.
    pub pay_params: Option<super::RequestPayment>,
    /// The QR-code URL (NATIVE).
    pub code_url: Option<String>,
}
