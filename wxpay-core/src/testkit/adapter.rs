//! A conformance kit for web adapters (feature `testkit`): one suite that
//! every adapter of [`handle`](crate::flow::http::handle) runs in-process, so that all of them expose
//! the same routes, statuses, JSON and XML.
//!
//! Implement [`AdapterClient`] over your framework's test client (prefixing
//! the relative paths with your mount point), then call [`check_adapter`]
//! with a function that mounts a [`Payments`] and returns the client.
//! [`check_adapter_checkout`] adds successful checkouts against a WeChat
//! (e.g. the `wxpay-sim` simulator) behind [`Config::with_api_base`](crate::Config::with_api_base).

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;

use crate::flow::http::MAX_BODY_BYTES;
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
    let now = crate::flow::now();
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

    // "My orders": newest first, a page at a time, the caller's only.
    let base = crate::flow::now();
    for (i, (no, owner)) in [
        ("KITLIST1", "carol"),
        ("KITLIST2", "carol"),
        ("KITLIST3", "carol"),
        ("KITLIST4", "dave"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut o = prepaid_order(no, Some(owner), Fen(100));
        o.created_at = base - chrono::Duration::seconds(100 - i as i64);
        store.insert(&o).await.expect("insert");
    }
    let carol = [("x-user", "carol")];
    let nos = |v: &Value| -> Vec<String> {
        (v["orders"].as_array().expect("orders").iter())
            .map(|o| o["out_trade_no"].as_str().expect("number").to_owned())
            .collect()
    };
    let r = send(request("GET", "/orders?limit=2", &carol, b"")).await;
    assert_eq!(r.status, 200, "GET /orders: {}", r.text());
    let page = r.json();
    assert_eq!(nos(&page), ["KITLIST3", "KITLIST2"], "newest first: {page}");
    assert_eq!(page["next"], "KITLIST2", "{page}");
    assert_eq!(page["orders"][0]["state"], "PREPAID");
    let r = send(request(
        "GET",
        "/orders?before=KITLIST2&limit=2",
        &carol,
        b"",
    ))
    .await;
    let last = r.json();
    assert_eq!(nos(&last), ["KITLIST1"], "{last}");
    assert_eq!(last["next"], Value::Null, "the last page: {last}");
    let r = send(request("GET", "/orders", &[("x-user", "dave")], b"")).await;
    assert_eq!(nos(&r.json()), ["KITLIST4"], "only the caller's");
    let r = send(request("GET", "/orders", &[], b"")).await;
    assert_error("GET /orders anonymous", &r, 401, "unauthorized");
    for q in ["limit=0", "limit=101", "limit=x", "before=%%%"] {
        let r = send(request("GET", &format!("/orders?{q}"), &carol, b"")).await;
        assert_error(&format!("GET /orders?{q}"), &r, 400, "bad_request");
    }
    // Another user's order as the cursor: the same 404 as an unknown one.
    let r = send(request("GET", "/orders?before=KITLIST4", &carol, b"")).await;
    assert_error("GET /orders?before=<not yours>", &r, 404, "not_found");

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
        ("PUT", "/orders", "GET, POST"),
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

/// API v3 notifies through the adapter: the `Wechatpay-*` headers (in any
/// case) and the raw body must reach the core untouched. Mounts a
/// [`Payments`] with a [`V3Gateway`](crate::flow::V3Gateway) over the
/// [`v3` kit](super::v3)'s merchant, then checks: a notify with a forged
/// signature or without its headers is `401` with `{"code":"FAIL"}` and
/// changes nothing; the genuine one is `204` and pays the order once
/// (again `204`, nothing twice); a v3 refund notify on `/refund-notify` is
/// `204`.
///
/// # Panics
/// On the first difference.
pub async fn check_adapter_v3<C, F>(mount: F)
where
    C: AdapterClient,
    F: AsyncFnOnce(Payments) -> C,
{
    use super::v3::{self as kit, Wechat};
    use crate::flow::{Api, V3Gateway};

    let store = Arc::new(MemoryStore::new());
    let client = crate::v3::Client::new(kit::client_config(kit::APPID))
        .expect("the kit's v3 client")
        .boxed();
    let payments = Payments::builder(config())
        .store(Arc::clone(&store) as Arc<dyn OrderStore>)
        .checkout(KitCheckout)
        .v3(V3Gateway::new(client))
        .build()
        .expect("payments");
    let no = OutTradeNo::new("KITV3ORDER1").expect("valid");
    let mut order = Order::new(
        no.clone(),
        Fen(990),
        "Shop-VIP",
        TradeType::Jsapi,
        SignType::Md5,
        Utc::now(),
    );
    order.api = Api::V3;
    order.state = OrderState::Prepaid;
    store.insert(&order).await.expect("insert");
    let adapter = mount(payments).await;

    let wechat = Wechat::new();
    let now = Utc::now().timestamp();
    let good = wechat.payment(no.as_str(), 990, now);
    let as_request = |n: &super::v3::NotifyRequest, path: &str, lower: bool| TestRequest {
        method: "POST".into(),
        path: path.into(),
        headers: n
            .headers
            .iter()
            .map(|(k, v)| {
                let k = if lower {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                (k, v.clone())
            })
            .chain([("Content-Type".to_owned(), "application/json".to_owned())])
            .collect(),
        body: n.body.clone(),
    };
    let before = serde_json::to_vec(&store.snapshot()).expect("JSON");
    let assert_refused = |what: &str, r: &TestResponse, status: u16| {
        assert_eq!(r.status, status, "{what}: got {}", r.text());
        assert_eq!(r.json()["code"], "FAIL", "{what}");
        let after = serde_json::to_vec(&store.snapshot()).expect("JSON");
        assert_eq!(after, before, "{what} changed the store");
    };

    let mut forged = good.clone();
    let other = wechat.payment(no.as_str(), 1, now);
    forged.set_header(
        "Wechatpay-Signature",
        other.header("Wechatpay-Signature").expect("signed"),
    );
    let r = adapter.send(as_request(&forged, "/notify", false)).await;
    assert_refused("v3 notify with a forged signature", &r, 401);
    let mut bare = good.clone();
    bare.headers.clear();
    let mut r = as_request(&bare, "/notify", false);
    r.headers.push(("Wechatpay-Signature".into(), "x".into()));
    let r = adapter.send(r).await;
    assert_refused("v3 notify without its other headers", &r, 401);

    let r = adapter.send(as_request(&good, "/notify", true)).await;
    assert_eq!(
        r.status,
        204,
        "v3 payment notify (headers in lower case): {}",
        r.text()
    );
    let paid = store.get(&no).await.expect("get").expect("order");
    assert_eq!(
        paid.state,
        OrderState::Paid,
        "v3 payment notify pays the order"
    );
    let r = adapter.send(as_request(&good, "/notify", false)).await;
    assert_eq!(r.status, 204, "v3 duplicate: {}", r.text());
    assert_eq!(
        store.get(&no).await.expect("get").expect("order").version,
        paid.version,
        "a duplicate changes nothing"
    );

    let refund = wechat.notify(
        "REFUND.CLOSED",
        &wechat.refund(no.as_str(), "KITV3ORDER1-R9", 990, 990, "CLOSED"),
        wechat.api_v3_key(),
        "refund",
        now,
        true,
    );
    let r = adapter
        .send(as_request(&refund, "/refund-notify", false))
        .await;
    assert_eq!(r.status, 204, "v3 refund notify: {}", r.text());
}

/// Writes `sent` (raw HTTP/1.1 bytes, e.g. a head that stops half-way, or
/// a `Content-Length` larger than the body that follows) on a fresh
/// connection to `addr`, then reads until the server closes or resets it:
/// what came back, and when the connection ended. For testing a server's
/// bounds on slow clients (body deadlines, header and idle timeouts).
///
/// # Panics
/// When the server holds the connection longer than `patience` (it has no
/// bound), or the connection cannot be opened or written.
pub async fn exchange(
    addr: std::net::SocketAddr,
    sent: &[u8],
    patience: Duration,
) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = std::time::Instant::now();
    conn.write_all(sent).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(patience, async {
        let mut buf = [0; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(
        read.is_ok(),
        "the server held the connection for {patience:?}: {got:?}"
    );
    (got, started.elapsed())
}
