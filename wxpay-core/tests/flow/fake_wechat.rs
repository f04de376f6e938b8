//! A fake WeChat Pay v2 as an in-memory [`Transport`]: no HTTP, no sockets,
//! no threads, no sleeps.
//!
//! It keeps WeChat's side of the world (orders with their `trade_state`,
//! payments, refunds with their statuses, the notifies WeChat still owes)
//! and answers the client's signed requests by WeChat's rules (spec
//! sections 5–9):
//!
//! - unifiedorder: a new number is created `NOTPAY`; re-entry with the same
//!   fields answers the same `prepay_id`; a paid order `ORDERPAID`, a closed
//!   one `ORDERCLOSED`, other fields `INVALID_REQUEST`;
//! - orderquery: `ORDERNOTEXIST` for an unknown number, else `NOTPAY` /
//!   `CLOSED` / `SUCCESS` / `REFUND` (paid, and some refund exists) with
//!   `total_fee` (and the payment fields once paid);
//! - closeorder: `ORDERNOTEXIST`, `ORDERPAID`, `ORDERCLOSED`, else closes;
//! - refund: `ORDERNOTEXIST` for an unpaid order, `REFUND_FEE_MISMATCH` for
//!   a wrong `total_fee` or a known number with another amount, the same
//!   answer again (nothing new) for a known number with the same amount,
//!   `NOTENOUGH` for more than is left (every refund but `REFUNDCLOSE`
//!   counts), else a new refund `PROCESSING`;
//! - refundquery by `out_trade_no`: `REFUNDNOTEXIST` when there is none,
//!   else the (first 10) refunds as `refund_status_$n`.
//!
//! Answers are signed with the configured key ([`sign::sign`]). A fault
//! hook, asked once per call, lets the scheduler lose the request, lose the
//! answer after WeChat applied it, answer with a wrong signature or an
//! unknown `err_code` (after applying), lie with a definite refusal after
//! applying a refund, or "crash the process" (the call never returns; the
//! scheduler drops the operation).
//!
//! What the scheduler does at WeChat directly: the user pays, a refund
//! settles (`SUCCESS` / `REFUNDCLOSE` / `CHANGE`, and a `CHANGE` settles
//! later), a refund is made outside the app. Each queues the notify WeChat
//! owes; the scheduler delivers them (late, twice, out of order) or loses them.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use chrono::Utc;
use wxpay_core::{
    ApiKey, BoxError, Config, Fen, HttpRequest, HttpResponse, OutTradeNo, Params, RefundStatus,
    SignType, TradeType, Transport, flow::Order, sign, testkit, xml,
};

use crate::stub::{APPID, KEY, MCH_ID};

/// What the fault hook does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFault {
    /// Answer normally.
    None,
    /// A transport error before WeChat saw the request (nothing applied).
    LostRequest,
    /// WeChat applied the request; the answer is lost (transport error).
    LostAnswer,
    /// WeChat applied the request; the answer is signed with another key.
    BadSignature,
    /// WeChat applied the request; it answers `result_code=FAIL` with a
    /// code nobody knows.
    UnknownCode,
    /// Refunds only: WeChat applied the refund but answers a definite
    /// refusal (`NOTENOUGH`, signed correctly). A lying WeChat.
    LyingRefusal,
    /// The process dies before the request leaves (the call never returns).
    CrashBefore,
    /// The process dies after WeChat applied the request.
    CrashAfter,
}

/// Asked once per call with the API path.
pub type FaultHook = Arc<dyn Fn(&str) -> CallFault + Send + Sync>;

/// WeChat's view of an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trade {
    NotPay,
    Paid,
    Closed,
}

/// A refund's status at WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WxStatus {
    Processing,
    Success,
    Closed,
    Change,
}

impl WxStatus {
    pub fn wire(self) -> RefundStatus {
        match self {
            WxStatus::Processing => RefundStatus::Processing,
            WxStatus::Success => RefundStatus::Success,
            WxStatus::Closed => RefundStatus::RefundClose,
            WxStatus::Change => RefundStatus::Change,
        }
    }

    /// Whether it is settled for good.
    pub fn is_final(self) -> bool {
        matches!(self, WxStatus::Success | WxStatus::Closed)
    }
}

#[derive(Debug, Clone)]
pub struct WxRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub fee: u64,
    pub status: WxStatus,
    /// Made outside the app (the merchant platform).
    pub outside: bool,
}

#[derive(Debug, Clone)]
pub struct WxOrder {
    pub total_fee: u64,
    pub body: String,
    pub openid: String,
    pub trade: Trade,
    pub transaction_id: Option<String>,
    pub refunds: Vec<WxRefund>,
}

impl WxOrder {
    /// The sum of the refunds that count against the amount (all but closed).
    pub fn reserved(&self) -> u64 {
        (self.refunds.iter())
            .filter(|r| r.status != WxStatus::Closed)
            .map(|r| r.fee)
            .sum()
    }

    /// The sum of the successful refunds.
    pub fn refunded(&self) -> u64 {
        (self.refunds.iter())
            .filter(|r| r.status == WxStatus::Success)
            .map(|r| r.fee)
            .sum()
    }
}

/// A notify WeChat owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owed {
    Payment {
        no: String,
    },
    Refund {
        no: String,
        out_refund_no: String,
        status: WxStatus,
    },
}

impl std::fmt::Display for Owed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owed::Payment { no } => write!(f, "pay-notify {no}"),
            Owed::Refund {
                no,
                out_refund_no,
                status,
            } => write!(f, "refund-notify {no}/{out_refund_no} {status:?}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct World {
    /// Orders by number (a BTreeMap: iteration order never decides anything
    /// by chance).
    pub orders: BTreeMap<String, WxOrder>,
    /// Notifies WeChat still owes, oldest first.
    pub owed: Vec<Owed>,
    next_refund_id: u64,
}

/// The fake. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeWechat {
    pub config: Config,
    world: Arc<Mutex<World>>,
    hook: FaultHook,
}

fn lock(m: &Mutex<World>) -> MutexGuard<'_, World> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A business answer before signing.
struct Answer {
    err: Option<(&'static str, &'static str)>,
    fields: Vec<(String, String)>,
}

impl Answer {
    fn ok(fields: Vec<(&str, String)>) -> Answer {
        Answer {
            err: None,
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn fail(code: &'static str, des: &'static str) -> Answer {
        Answer {
            err: Some((code, des)),
            fields: Vec::new(),
        }
    }
}

impl FakeWechat {
    pub fn new(hook: FaultHook) -> FakeWechat {
        let config = Config::new(APPID, MCH_ID, ApiKey::new(KEY))
            .with_notify_url("https://shop.example.com/pay/notify")
            .with_refund_notify_url("https://shop.example.com/pay/refund-notify");
        FakeWechat {
            config,
            world: Arc::new(Mutex::new(World::default())),
            hook,
        }
    }

    /// WeChat's state, locked (for the scheduler and the invariants).
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// The user pays order `no` (only a `NOTPAY` order can be paid). Answers
    /// whether the money was taken.
    pub fn pay(&self, no: &str) -> bool {
        let mut guard = self.world();
        let w = &mut *guard;
        let Some(o) = w.orders.get_mut(no) else {
            return false;
        };
        if o.trade != Trade::NotPay {
            return false;
        }
        o.trade = Trade::Paid;
        o.transaction_id = Some(format!("4200{no}"));
        w.owed.push(Owed::Payment { no: no.to_owned() });
        true
    }

    /// A refund made outside the app (the merchant platform), if the amount
    /// is left.
    pub fn outside_refund(&self, no: &str, out_refund_no: &str, fee: u64) -> bool {
        let mut guard = self.world();
        let w = &mut *guard;
        let id = w.next_refund_id;
        let Some(o) = w.orders.get_mut(no) else {
            return false;
        };
        if o.trade != Trade::Paid || fee == 0 || o.reserved() + fee > o.total_fee {
            return false;
        }
        o.refunds.push(WxRefund {
            out_refund_no: out_refund_no.to_owned(),
            refund_id: format!("50{id:012}"),
            fee,
            status: WxStatus::Processing,
            outside: true,
        });
        w.next_refund_id += 1;
        true
    }

    /// Refunds not settled for good, as `(order, out_refund_no, status)`,
    /// in a stable order.
    pub fn unsettled(&self) -> Vec<(String, String, WxStatus)> {
        let w = self.world();
        let mut all = Vec::new();
        for (no, o) in &w.orders {
            for r in &o.refunds {
                if !r.status.is_final() {
                    all.push((no.clone(), r.out_refund_no.clone(), r.status));
                }
            }
        }
        all
    }

    /// Settles refund `out_refund_no` of `no` with `to` (from `PROCESSING`,
    /// or from `CHANGE` to `SUCCESS` / `REFUNDCLOSE`), and owes its notify.
    pub fn settle(&self, no: &str, out_refund_no: &str, to: WxStatus) -> bool {
        let mut guard = self.world();
        let w = &mut *guard;
        let Some(r) = (w.orders.get_mut(no)).and_then(|o| {
            o.refunds
                .iter_mut()
                .find(|r| r.out_refund_no == out_refund_no)
        }) else {
            return false;
        };
        let legal = match r.status {
            WxStatus::Processing => to != WxStatus::Processing,
            WxStatus::Change => to.is_final(),
            _ => false,
        };
        if !legal {
            return false;
        }
        r.status = to;
        w.owed.push(Owed::Refund {
            no: no.to_owned(),
            out_refund_no: out_refund_no.to_owned(),
            status: to,
        });
        true
    }

    /// The body WeChat would POST for an owed notify.
    pub fn notify_body(&self, owed: &Owed) -> String {
        let w = self.world();
        let no = match owed {
            Owed::Payment { no } | Owed::Refund { no, .. } => no,
        };
        let o = &w.orders[no];
        let mut order = Order::new(
            OutTradeNo::new(no.clone()).expect("the fake only knows valid numbers"),
            Fen(o.total_fee),
            o.body.clone(),
            TradeType::Jsapi,
            SignType::Md5,
            Utc::now(),
        );
        order.openid = Some(o.openid.clone());
        order.transaction_id = o.transaction_id.clone();
        match owed {
            Owed::Payment { .. } => testkit::signed_payment_notify(
                &self.config,
                &order,
                o.transaction_id.as_deref().unwrap_or(""),
            ),
            Owed::Refund {
                out_refund_no,
                status,
                ..
            } => {
                let fee = (o.refunds.iter())
                    .find(|r| &r.out_refund_no == out_refund_no)
                    .map_or(0, |r| r.fee);
                testkit::refund_notify(&self.config, &order, out_refund_no, Fen(fee), status.wire())
            }
        }
    }

    fn sign(&self, a: &Answer, key: &ApiKey) -> Vec<u8> {
        let mut p = Params::new();
        p.insert("return_code", "SUCCESS");
        p.insert("return_msg", "OK");
        p.insert("appid", APPID);
        p.insert("mch_id", MCH_ID);
        p.insert("nonce_str", "fakewechatnonce0000000000000000");
        match a.err {
            None => {
                p.insert("result_code", "SUCCESS");
                for (k, v) in &a.fields {
                    p.insert(k, v);
                }
            }
            Some((code, des)) => {
                p.insert("result_code", "FAIL");
                p.insert("err_code", code);
                p.insert("err_code_des", des);
            }
        }
        let s = sign::sign(&p, key, self.config.sign_type);
        p.insert("sign", s);
        xml::to_xml(&p).into_bytes()
    }

    /// Applies one request to the world and answers it (unsigned).
    fn apply(&self, path: &str, req: &Params) -> Answer {
        let mut guard = self.world();
        let w = &mut *guard;
        let no = req.get("out_trade_no").unwrap_or("").to_owned();
        let fen = |k: &str| req.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match path {
            "/pay/unifiedorder" => {
                let (fee, body, openid) = (
                    fen("total_fee"),
                    req.get("body").unwrap_or("").to_owned(),
                    req.get("openid").unwrap_or("").to_owned(),
                );
                let o = w.orders.entry(no.clone()).or_insert_with(|| WxOrder {
                    total_fee: fee,
                    body: body.clone(),
                    openid: openid.clone(),
                    trade: Trade::NotPay,
                    transaction_id: None,
                    refunds: Vec::new(),
                });
                if (o.total_fee, &o.body, &o.openid) != (fee, &body, &openid) {
                    return Answer::fail("INVALID_REQUEST", "201 商户订单号重复");
                }
                match o.trade {
                    Trade::Paid => Answer::fail("ORDERPAID", "该订单已支付"),
                    Trade::Closed => Answer::fail("ORDERCLOSED", "该订单已关闭"),
                    Trade::NotPay => Answer::ok(vec![
                        ("trade_type", "JSAPI".into()),
                        ("prepay_id", format!("wx-prepay-{no}")),
                    ]),
                }
            }
            "/pay/orderquery" => {
                let Some(o) = w.orders.get(&no) else {
                    return Answer::fail("ORDERNOTEXIST", "此交易订单号不存在");
                };
                let state = match o.trade {
                    Trade::NotPay => "NOTPAY",
                    Trade::Closed => "CLOSED",
                    Trade::Paid if o.refunds.is_empty() => "SUCCESS",
                    Trade::Paid => "REFUND",
                };
                let mut f = vec![
                    ("out_trade_no", no.clone()),
                    ("trade_state", state.to_owned()),
                    ("total_fee", o.total_fee.to_string()),
                ];
                if let Some(tid) = &o.transaction_id {
                    f.extend([
                        ("transaction_id", tid.clone()),
                        ("cash_fee", o.total_fee.to_string()),
                        ("fee_type", "CNY".into()),
                        ("time_end", "20250101120000".into()),
                        ("bank_type", "OTHERS".into()),
                        ("trade_type", "JSAPI".into()),
                        ("openid", o.openid.clone()),
                    ]);
                }
                Answer::ok(f)
            }
            "/pay/closeorder" => {
                let Some(o) = w.orders.get_mut(&no) else {
                    return Answer::fail("ORDERNOTEXIST", "订单不存在");
                };
                match o.trade {
                    Trade::Paid => Answer::fail("ORDERPAID", "订单已支付"),
                    Trade::Closed => Answer::fail("ORDERCLOSED", "订单已关闭"),
                    Trade::NotPay => {
                        o.trade = Trade::Closed;
                        Answer::ok(vec![("result_msg", "OK".into())])
                    }
                }
            }
            "/secapi/pay/refund" => {
                let id = w.next_refund_id;
                let Some(o) = w.orders.get_mut(&no).filter(|o| o.trade == Trade::Paid) else {
                    return Answer::fail("ORDERNOTEXIST", "订单不存在或未支付");
                };
                let (out_refund_no, fee) =
                    (req.get("out_refund_no").unwrap_or(""), fen("refund_fee"));
                if fen("total_fee") != o.total_fee {
                    return Answer::fail(
                        "REFUND_FEE_MISMATCH",
                        "订单金额或退款金额与之前请求不一致",
                    );
                }
                let refund_id = match o.refunds.iter().find(|r| r.out_refund_no == out_refund_no) {
                    Some(r) if r.fee != fee => {
                        return Answer::fail(
                            "REFUND_FEE_MISMATCH",
                            "订单金额或退款金额与之前请求不一致",
                        );
                    }
                    // Same number, same amount: refunded once; the same answer.
                    Some(r) => r.refund_id.clone(),
                    None => {
                        if fee == 0 || o.reserved() + fee > o.total_fee {
                            return Answer::fail("NOTENOUGH", "累计退款金额大于支付金额");
                        }
                        let refund_id = format!("50{id:012}");
                        o.refunds.push(WxRefund {
                            out_refund_no: out_refund_no.to_owned(),
                            refund_id: refund_id.clone(),
                            fee,
                            status: WxStatus::Processing,
                            outside: false,
                        });
                        w.next_refund_id += 1;
                        refund_id
                    }
                };
                let o = &w.orders[&no];
                Answer::ok(vec![
                    ("out_trade_no", no.clone()),
                    ("out_refund_no", out_refund_no.to_owned()),
                    ("refund_id", refund_id),
                    ("refund_fee", fee.to_string()),
                    ("total_fee", o.total_fee.to_string()),
                    ("cash_fee", o.total_fee.to_string()),
                    (
                        "transaction_id",
                        o.transaction_id.clone().unwrap_or_default(),
                    ),
                ])
            }
            "/pay/refundquery" if req.contains("out_trade_no") => {
                let Some(o) = w.orders.get(&no).filter(|o| !o.refunds.is_empty()) else {
                    return Answer::fail("REFUNDNOTEXIST", "not exist");
                };
                let shown = o.refunds.len().min(10);
                let mut f = vec![
                    ("out_trade_no", no.clone()),
                    (
                        "transaction_id",
                        o.transaction_id.clone().unwrap_or_default(),
                    ),
                    ("total_fee", o.total_fee.to_string()),
                    ("cash_fee", o.total_fee.to_string()),
                    ("total_refund_count", o.refunds.len().to_string()),
                    ("refund_count", shown.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Vec<_>>();
                for (n, r) in o.refunds.iter().take(shown).enumerate() {
                    f.extend([
                        (format!("out_refund_no_{n}"), r.out_refund_no.clone()),
                        (format!("refund_id_{n}"), r.refund_id.clone()),
                        (format!("refund_fee_{n}"), r.fee.to_string()),
                        (
                            format!("refund_status_{n}"),
                            r.status.wire().as_str().to_owned(),
                        ),
                    ]);
                }
                Answer {
                    err: None,
                    fields: f,
                }
            }
            _ => Answer::fail("PARAM_ERROR", "the fake does not serve this call"),
        }
    }
}

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("", |i| &rest[i..])
}

impl Transport for FakeWechat {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, BoxError> {
        let path = path_of(&req.url).to_owned();
        let fault = (self.hook)(&path);
        if fault == CallFault::CrashBefore {
            std::future::pending::<()>().await;
        }
        if fault == CallFault::LostRequest {
            return Err("fake wechat: connection reset before the request was read".into());
        }
        let params = xml::parse(req.body.as_deref().unwrap_or("").as_bytes())?;
        sign::verify(&params, &self.config.api_key, self.config.sign_type)
            .map_err(|e| format!("fake wechat: the client sent a badly signed request: {e}"))?;
        let answer = self.apply(&path, &params);
        let body = match fault {
            CallFault::LostAnswer => {
                return Err("fake wechat: timed out waiting for the answer".into());
            }
            CallFault::CrashAfter => {
                std::future::pending::<()>().await;
                unreachable!("a crashed call never returns")
            }
            CallFault::BadSignature => self.sign(&answer, &ApiKey::new("0".repeat(32))),
            CallFault::UnknownCode => self.sign(
                &Answer::fail("FAKE_UNHEARD_OF_CODE", "a code no table lists"),
                &self.config.api_key,
            ),
            CallFault::LyingRefusal if path == "/secapi/pay/refund" => self.sign(
                &Answer::fail("NOTENOUGH", "lying: the refund was applied"),
                &self.config.api_key,
            ),
            _ => self.sign(&answer, &self.config.api_key),
        };
        Ok(HttpResponse::new(200, body))
    }
}
