//! The WeChat endpoints: the XML pay API and `jscode2session`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use wxpay_core::{
    ApiKey, Params, RefundStatus, SignType,
    sign::{sign, verify},
    types::nonce_str,
    xml::{XmlError, parse},
};

use crate::{
    SimError,
    model::{OutsideRefund, Protocol, RefundSource},
    state::{
        CLOSE_MIN_AGE, CODE_TTL, CODE_TTL_FLOOR, Order, OrderState, PREPAY_TTL, Refund, Sim,
        State as SimState, prepay_id, random_alnum, refund_id,
    },
};

/// The pay-API endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
    Refund,
    RefundQuery,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        // The sandbox speaks the same protocol one path segment down.
        let path = path.strip_prefix("/sandboxnew").unwrap_or(path);
        Some(match path {
            "/pay/unifiedorder" => Endpoint::UnifiedOrder,
            "/pay/orderquery" => Endpoint::OrderQuery,
            "/pay/closeorder" => Endpoint::CloseOrder,
            // `/sandboxnew/pay/refund` is gopay's sandbox refund path.
            "/secapi/pay/refund" | "/pay/refund" => Endpoint::Refund,
            "/pay/refundquery" => Endpoint::RefundQuery,
            _ => return None,
        })
    }

    /// The err_code this endpoint uses for a malformed or too long field.
    fn format_error(self) -> &'static str {
        match self {
            Endpoint::Refund | Endpoint::RefundQuery => "PARAM_ERROR",
            _ => "INVALID_REQUEST",
        }
    }
}

/// A reply: protocol failure (unsigned) or a signed message.
pub(crate) enum Reply {
    Fail(&'static str),
    Signed(Params, SignType),
}

/// A business failure: `result_code=FAIL` with these codes.
pub(crate) struct Biz {
    pub(crate) code: &'static str,
    pub(crate) des: String,
}

fn biz(code: &'static str, des: impl Into<String>) -> Biz {
    Biz {
        code,
        des: des.into(),
    }
}

/// Axum handler for every pay-API path.
pub(crate) async fn pay_api(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let delay = sim.faults().delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let Some(endpoint) = Endpoint::from_path(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let reply = if method != Method::POST {
        Reply::Fail("请使用post方法")
    } else {
        handle(&sim, endpoint, &body)
    };
    let (params, summary) = match reply {
        Reply::Fail(msg) => {
            let mut p = Params::new();
            p.insert("return_code", "FAIL");
            p.insert("return_msg", msg);
            (p, format!("return_code=FAIL return_msg={msg}"))
        }
        Reply::Signed(mut p, st) => {
            let mut summary = match p.get("err_code") {
                Some(code) => format!("result_code=FAIL err_code={code}"),
                None => "result_code=SUCCESS".to_owned(),
            };
            let key = &sim.config.api_key;
            let s = if sim.roll_bad_signature() {
                summary.push_str(" (signed with a wrong key by fault injection)");
                sign(&p, &ApiKey::new(format!("{}-corrupted", key.expose())), st)
            } else {
                sign(&p, key, st)
            };
            p.insert("sign", s);
            (p, summary)
        }
    };
    tracing::info!(%method, path = uri.path(), bytes = body.len(), "{summary}");
    (
        [(header::CONTENT_TYPE, "text/xml; charset=UTF-8")],
        crate::wire::to_xml(&params, "xml", sim.config.ints()),
    )
        .into_response()
}

/// `POST /sandboxnew/pay/getsignkey` (spec 3.1): `mch_id`, `nonce_str` and
/// an MD5 `sign` made with the production key give `sandbox_signkey`, in an
/// unsigned answer. The simulator's sandbox key is its API key, so a
/// sandbox-mode SDK signs and verifies with the key the simulator uses.
pub(crate) async fn getsignkey(
    State(sim): State<Arc<Sim>>,
    method: Method,
    body: Bytes,
) -> Response {
    let cfg = &sim.config;
    let mut out = Params::new();
    let fail = if method != Method::POST {
        Some("请使用post方法")
    } else {
        match parse(&body) {
            Err(XmlError::Empty) => Some("post数据为空"),
            Err(XmlError::NotUtf8(_)) => Some("编码格式错误，请使用UTF-8编码"),
            Err(_) => Some("XML格式错误"),
            Ok(req) => match req.non_empty("mch_id") {
                None => Some("缺少参数mch_id"),
                Some(m) if m != cfg.mch_id => Some("商户号mch_id不存在"),
                Some(_) if req.non_empty("sign").is_none() => Some("缺少参数sign"),
                Some(_) if verify(&req, &cfg.api_key, SignType::Md5).is_err() => Some("签名错误"),
                Some(_) => None,
            },
        }
    };
    match fail {
        Some(msg) => {
            out.insert("return_code", "FAIL");
            out.insert("return_msg", msg);
        }
        None => {
            out.insert("return_code", "SUCCESS");
            out.insert("return_msg", "ok");
            out.insert("mch_id", cfg.mch_id.as_str());
            out.insert("sandbox_signkey", cfg.api_key.expose());
        }
    }
    tracing::info!(%method, path = "/sandboxnew/pay/getsignkey", ok = fail.is_none(), "sandbox key");
    (
        [(header::CONTENT_TYPE, "text/xml; charset=UTF-8")],
        crate::wire::to_xml(&out, "xml", sim.config.ints()),
    )
        .into_response()
}

/// Checks a request and runs it against the state.
pub(crate) fn handle(sim: &Arc<Sim>, endpoint: Endpoint, body: &[u8]) -> Reply {
    let req = match parse(body) {
        Ok(p) => p,
        Err(XmlError::Empty) => return Reply::Fail("post数据为空"),
        Err(XmlError::NotUtf8(_)) => return Reply::Fail("编码格式错误，请使用UTF-8编码"),
        Err(_) => return Reply::Fail("XML格式错误"),
    };
    let sign_type = match req.non_empty("sign_type") {
        None => SignType::Md5,
        Some(s) => match s.parse() {
            Ok(t) => t,
            Err(_) => return Reply::Fail("sign_type参数格式错误"),
        },
    };
    let cfg = &sim.config;
    let mut out = Params::new();
    out.insert("return_code", "SUCCESS");
    out.insert("return_msg", "OK");
    out.insert("appid", cfg.appid.as_str());
    out.insert("mch_id", cfg.mch_id.as_str());
    out.insert("nonce_str", nonce_str());
    let result = check_identity(sim, &req).and_then(|()| {
        if req.non_empty("sign").is_none() {
            return Err(biz("LACK_PARAMS", "缺少参数sign"));
        }
        Ok(())
    });
    // A wrong signature is a protocol failure: there is nothing to sign.
    if result.is_ok() && verify(&req, &cfg.api_key, sign_type).is_err() {
        return Reply::Fail("签名错误");
    }
    let result = result
        .and_then(|()| {
            if sim.roll_system_error() {
                Err(biz("SYSTEMERROR", "系统错误"))
            } else {
                Ok(())
            }
        })
        .and_then(|()| check_fields(endpoint, &req))
        .and_then(|()| {
            let mut st = sim.lock();
            match endpoint {
                Endpoint::UnifiedOrder => unifiedorder(sim, &mut st, &req, sign_type, &mut out),
                Endpoint::OrderQuery => orderquery(&st, &req, &mut out),
                Endpoint::CloseOrder => closeorder(sim, &mut st, &req, &mut out),
                Endpoint::Refund => refund(&mut st, &req, &mut out),
                Endpoint::RefundQuery => refundquery(&st, &req, &mut out),
            }
        });
    match result {
        Ok(scheduled) => {
            out.insert("result_code", "SUCCESS");
            if let Some((out_trade_no, out_refund_no)) = scheduled {
                sim.schedule_refund(out_trade_no, out_refund_no);
            }
        }
        Err(Biz { code, des }) => {
            out.insert("result_code", "FAIL");
            out.insert("err_code", code);
            out.insert("err_code_des", des);
        }
    }
    Reply::Signed(out, sign_type)
}

pub(crate) fn check_identity(sim: &Sim, req: &Params) -> Result<(), Biz> {
    let cfg = &sim.config;
    let appid = req.non_empty("appid");
    let mch_id = req.non_empty("mch_id");
    match mch_id {
        None => return Err(biz("MCHID_NOT_EXIST", "缺少参数mch_id")),
        Some(m) if m != cfg.mch_id => return Err(biz("MCHID_NOT_EXIST", "商户号mch_id不存在")),
        Some(_) => {}
    }
    match appid {
        None => Err(biz("APPID_NOT_EXIST", "缺少参数appid")),
        Some(a) if a == cfg.appid => Ok(()),
        // A well-formed AppID that is not bound to this merchant.
        Some(a) if a.len() == 18 && a.starts_with("wx") && a.is_ascii() => {
            Err(biz("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配"))
        }
        Some(_) => Err(biz("APPID_NOT_EXIST", "appid不存在")),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    /// Positive integer amount in fen (`0` allowed only where noted).
    Fee,
    /// Non-negative integer.
    Int,
    /// `[A-Za-z0-9_|*-]` (out_trade_no).
    TradeNo,
    /// `[A-Za-z0-9_|*@-]` (out_refund_no).
    RefundNo,
    /// `yyyyMMddHHmmss`.
    Time14,
    /// `http(s)://…`.
    Url,
    Digits,
}

struct Rule {
    name: &'static str,
    max: usize,
    kind: Kind,
    required: bool,
}

const fn r(name: &'static str, max: usize, kind: Kind, required: bool) -> Rule {
    Rule {
        name,
        max,
        kind,
        required,
    }
}

const COMMON: &[Rule] = &[
    r("appid", 32, Kind::Text, true),
    r("mch_id", 32, Kind::Text, true),
    r("nonce_str", 32, Kind::Text, true),
    r("sign", 64, Kind::Text, true),
    r("sign_type", 32, Kind::Text, false),
];

const UNIFIEDORDER: &[Rule] = &[
    r("device_info", 32, Kind::Text, false),
    r("body", 128, Kind::Text, true),
    r("detail", 6144, Kind::Text, false),
    r("attach", 127, Kind::Text, false),
    r("out_trade_no", 32, Kind::TradeNo, true),
    r("fee_type", 16, Kind::Text, false),
    r("total_fee", 19, Kind::Fee, true),
    r("spbill_create_ip", 64, Kind::Text, true),
    r("time_start", 14, Kind::Time14, false),
    r("time_expire", 14, Kind::Time14, false),
    r("goods_tag", 32, Kind::Text, false),
    r("notify_url", 256, Kind::Url, true),
    r("trade_type", 16, Kind::Text, true),
    r("product_id", 32, Kind::Text, false),
    r("limit_pay", 32, Kind::Text, false),
    r("openid", 128, Kind::Text, false),
    r("receipt", 8, Kind::Text, false),
    r("profit_sharing", 16, Kind::Text, false),
    r("scene_info", 256, Kind::Text, false),
];

const ORDERQUERY: &[Rule] = &[
    r("transaction_id", 32, Kind::Digits, false),
    r("out_trade_no", 32, Kind::TradeNo, false),
];

const CLOSEORDER: &[Rule] = &[r("out_trade_no", 32, Kind::TradeNo, true)];

const REFUND: &[Rule] = &[
    r("transaction_id", 32, Kind::Digits, false),
    r("out_trade_no", 32, Kind::TradeNo, false),
    r("out_refund_no", 64, Kind::RefundNo, true),
    r("total_fee", 19, Kind::Fee, true),
    r("refund_fee", 19, Kind::Fee, true),
    r("refund_fee_type", 8, Kind::Text, false),
    r("refund_desc", 80, Kind::Text, false),
    r("refund_account", 30, Kind::Text, false),
    r("notify_url", 256, Kind::Url, false),
    r("op_user_id", 32, Kind::Text, false),
];

const REFUNDQUERY: &[Rule] = &[
    r("transaction_id", 32, Kind::Digits, false),
    r("out_trade_no", 32, Kind::TradeNo, false),
    r("out_refund_no", 64, Kind::RefundNo, false),
    r("refund_id", 32, Kind::Digits, false),
    r("offset", 10, Kind::Int, false),
];

fn check_fields(endpoint: Endpoint, req: &Params) -> Result<(), Biz> {
    let rules = match endpoint {
        Endpoint::UnifiedOrder => UNIFIEDORDER,
        Endpoint::OrderQuery => ORDERQUERY,
        Endpoint::CloseOrder => CLOSEORDER,
        Endpoint::Refund => REFUND,
        Endpoint::RefundQuery => REFUNDQUERY,
    };
    check_rules(COMMON.iter().chain(rules), endpoint.format_error(), req)
}

/// Checks presence, length and format of each rule's field; `bad` is the
/// err_code of a malformed or too long one.
fn check_rules<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    bad: &'static str,
    req: &Params,
) -> Result<(), Biz> {
    for rule in rules {
        let Some(v) = req.non_empty(rule.name) else {
            if rule.required {
                return Err(biz("LACK_PARAMS", format!("缺少参数{}", rule.name)));
            }
            continue;
        };
        let name = rule.name;
        if v.len() > rule.max {
            return Err(biz(bad, format!("{name}参数长度有误")));
        }
        // v2 takes only 1–3 byte UTF-8 characters.
        let ok = !v.chars().any(|c| c.len_utf8() > 3)
            && match rule.kind {
                Kind::Text => true,
                Kind::Fee => {
                    v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<u64>().is_ok_and(|n| n > 0)
                }
                Kind::Int | Kind::Digits => v.bytes().all(|b| b.is_ascii_digit()),
                Kind::TradeNo => v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*')),
                Kind::RefundNo => v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*' | '@')),
                Kind::Time14 => wxpay_core::types::parse_beijing(name, v).is_ok() && v.len() == 14,
                Kind::Url => {
                    (v.starts_with("http://") || v.starts_with("https://")) && !v.contains('?')
                }
            };
        if !ok {
            return Err(biz(bad, format!("{name}参数格式错误")));
        }
    }
    Ok(())
}

type Outcome = Result<Option<(String, String)>, Biz>;

fn unifiedorder(
    sim: &Sim,
    st: &mut SimState,
    req: &Params,
    sign_type: SignType,
    out: &mut Params,
) -> Outcome {
    let trade_type = req.non_empty("trade_type").unwrap_or_default();
    match trade_type {
        "JSAPI" if req.non_empty("openid").is_none() => {
            return Err(biz("LACK_PARAMS", "JSAPI支付必须传openid"));
        }
        "NATIVE" if req.non_empty("product_id").is_none() => {
            return Err(biz("LACK_PARAMS", "NATIVE支付必须传product_id"));
        }
        "JSAPI" | "NATIVE" | "APP" | "MWEB" => {}
        _ => return Err(biz("INVALID_REQUEST", "trade_type参数格式错误")),
    }
    if req.non_empty("fee_type").is_some_and(|f| f != "CNY") {
        return Err(biz("INVALID_REQUEST", "fee_type参数格式错误"));
    }
    let mut request: Params = req
        .iter()
        .filter(|(k, v)| !v.is_empty() && *k != "nonce_str" && *k != "sign")
        .collect();
    if request.get("sign_type") == Some("MD5") {
        // `MD5` is the default: sending it or not is the same request.
        request.remove("sign_type");
    }
    let out_trade_no = req.non_empty("out_trade_no").unwrap_or_default().to_owned();
    let prepay_ttl = sim.scaled(PREPAY_TTL);
    if let Some(order) = st.orders.get_mut(&out_trade_no) {
        match order.state {
            OrderState::Success | OrderState::Refund => {
                return Err(biz("ORDERPAID", "该订单已支付"));
            }
            OrderState::Closed => return Err(biz("ORDERCLOSED", "该订单已关闭")),
            OrderState::NotPay | OrderState::PayError => {}
        }
        if order.request != request {
            return Err(biz("INVALID_REQUEST", "201 商户订单号重复"));
        }
        if order.prepay_issued.elapsed() > prepay_ttl {
            // Re-entry after the 2 hours: a fresh prepay session.
            order.prepay_id = prepay_id();
            order.prepay_issued = tokio::time::Instant::now();
            st.prepay_index
                .insert(order.prepay_id.clone(), out_trade_no.clone());
        }
        let order = &st.orders[&out_trade_no];
        success_fields(order, out);
        return Ok(None);
    }
    let now = tokio::time::Instant::now();
    let order = Order {
        out_trade_no: out_trade_no.clone(),
        request,
        sign_type,
        created: now,
        prepay_id: prepay_id(),
        prepay_issued: now,
        code_url: (trade_type == "NATIVE")
            .then(|| format!("weixin://wxpay/bizpayurl?pr={}", random_alnum(7))),
        state: OrderState::NotPay,
        transaction_id: None,
        time_end: None,
        payer_openid: None,
        refunds: Vec::new(),
        protocol: Protocol::V2,
        v3_request: None,
        created_at: chrono::Utc::now(),
        paid_at: None,
    };
    success_fields(&order, out);
    st.prepay_index
        .insert(order.prepay_id.clone(), out_trade_no.clone());
    st.orders.insert(out_trade_no, order);
    Ok(None)
}

fn success_fields(order: &Order, out: &mut Params) {
    out.insert("trade_type", order.trade_type());
    out.insert("prepay_id", order.prepay_id.as_str());
    out.insert_opt("code_url", order.code_url.as_deref());
    out.insert_opt("device_info", order.field("device_info"));
}

fn find_order<'a>(st: &'a SimState, req: &Params) -> Result<&'a Order, Biz> {
    let key = if let Some(tid) = req.non_empty("transaction_id") {
        st.transaction_index.get(tid).map(String::as_str)
    } else if let Some(no) = req.non_empty("out_trade_no") {
        Some(no)
    } else {
        return Err(biz("LACK_PARAMS", "缺少参数out_trade_no"));
    };
    key.and_then(|k| st.orders.get(k))
        .ok_or_else(|| biz("ORDERNOTEXIST", "订单不存在"))
}

fn orderquery(st: &SimState, req: &Params, out: &mut Params) -> Outcome {
    let order = find_order(st, req)?;
    let state = order.state;
    out.insert("out_trade_no", order.out_trade_no.as_str());
    out.insert("trade_state", state.trade_state().as_str());
    out.insert(
        "trade_state_desc",
        match state {
            OrderState::NotPay => "订单未支付",
            OrderState::Success => "支付成功",
            OrderState::Closed => "订单已关闭",
            OrderState::PayError => "支付失败，请重新下单支付",
            OrderState::Refund => "订单发生过退款，退款详情请查询退款单",
        },
    );
    out.insert("total_fee", order.total_fee().to_string());
    out.insert_opt("attach", order.field("attach"));
    out.insert_opt("device_info", order.field("device_info"));
    if state.is_paid() || state == OrderState::PayError {
        out.insert_opt("openid", order.openid());
        out.insert("is_subscribe", "N");
        out.insert("trade_type", order.trade_type());
        out.insert("bank_type", "OTHERS");
        out.insert("fee_type", order.field("fee_type").unwrap_or("CNY"));
    }
    if state.is_paid() {
        out.insert("cash_fee", order.total_fee().to_string());
        out.insert("cash_fee_type", "CNY");
        out.insert_opt("transaction_id", order.transaction_id.as_deref());
        out.insert_opt("time_end", order.time_end.as_deref());
    }
    Ok(None)
}

fn closeorder(sim: &Sim, st: &mut SimState, req: &Params, out: &mut Params) -> Outcome {
    let no = req.non_empty("out_trade_no").unwrap_or_default();
    let min_age = sim.scaled(CLOSE_MIN_AGE);
    let order = st
        .orders
        .get_mut(no)
        .ok_or_else(|| biz("ORDERNOTEXIST", "订单不存在"))?;
    match order.state {
        OrderState::Success | OrderState::Refund => {
            Err(biz("ORDERPAID", "订单已支付，不能发起关单"))
        }
        OrderState::Closed => Err(biz("ORDERCLOSED", "订单已关闭")),
        OrderState::NotPay | OrderState::PayError => {
            if order.created.elapsed() < min_age {
                return Err(biz(
                    "TRADE_STATE_ERROR",
                    "订单创建后5分钟内不能关单，请稍后再试",
                ));
            }
            order.state = OrderState::Closed;
            out.insert("result_msg", "OK");
            Ok(None)
        }
    }
}

/// The most partial refunds an order can have.
pub(crate) const MAX_REFUNDS: usize = 50;

fn refund(st: &mut SimState, req: &Params, out: &mut Params) -> Outcome {
    if req.non_empty("transaction_id").is_none() && req.non_empty("out_trade_no").is_none() {
        return Err(biz("LACK_PARAMS", "缺少参数out_trade_no"));
    }
    let out_trade_no = find_order(st, req)
        .map_err(|_| biz("ORDERNOTEXIST", "订单不存在"))?
        .out_trade_no
        .clone();
    let fee = |name| {
        req.non_empty(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let new = NewRefund {
        out_refund_no: req.non_empty("out_refund_no").map(str::to_owned),
        total_fee: fee("total_fee"),
        refund_fee: fee("refund_fee"),
        notify_url: req.non_empty("notify_url").map(str::to_owned),
        refund_account: req.non_empty("refund_account").map(str::to_owned),
        source: RefundSource::Api,
        protocol: Protocol::V2,
    };
    let (i, created) = accept_refund(st, &out_trade_no, new)?;
    let order = &st.orders[&out_trade_no];
    let refund = &order.refunds[i];
    refund_fields(order, refund, out);
    Ok(created.then(|| (out_trade_no, refund.out_refund_no.clone())))
}

/// A refund asked for, by the API or on the merchant platform.
pub(crate) struct NewRefund {
    /// `None`: numbered with its `refund_id`.
    pub(crate) out_refund_no: Option<String>,
    /// What the request says the order's amount is.
    pub(crate) total_fee: u64,
    pub(crate) refund_fee: u64,
    pub(crate) notify_url: Option<String>,
    /// `None`: `REFUND_SOURCE_UNSETTLED_FUNDS`.
    pub(crate) refund_account: Option<String>,
    pub(crate) source: RefundSource,
    /// The notify format.
    pub(crate) protocol: Protocol,
}

/// WeChat's refund rules: accepts the refund (`PROCESSING`, to end as
/// `refund_result` says now) into the order, or finds the same refund asked
/// again. Returns its index in the order's refunds and whether it is new.
pub(crate) fn accept_refund(
    st: &mut SimState,
    out_trade_no: &str,
    new: NewRefund,
) -> Result<(usize, bool), Biz> {
    let refund_id = refund_id();
    let out_refund_no = new.out_refund_no.unwrap_or_else(|| refund_id.clone());
    if st
        .refund_index
        .get(&out_refund_no)
        .is_some_and(|owner| owner != out_trade_no)
    {
        return Err(biz("INVALID_REQUEST", "退款单号已存在，且属于另一笔订单"));
    }
    let outcome = st.faults.refund_result;
    let order = st
        .orders
        .get_mut(out_trade_no)
        .ok_or_else(|| biz("ORDERNOTEXIST", "订单不存在"))?;
    if !order.state.is_paid() {
        return Err(biz("ORDERNOTEXIST", "订单未支付，不能退款"));
    }
    let mismatch = "订单金额或退款金额与之前请求不一致，请核实后再试";
    if let Some(i) = order
        .refunds
        .iter()
        .position(|r| r.out_refund_no == out_refund_no)
    {
        // Same number: the same refund, once — provided the amounts agree.
        let existing = &order.refunds[i];
        if existing.total_fee != new.total_fee || existing.refund_fee != new.refund_fee {
            return Err(biz("INVALID_REQUEST", mismatch));
        }
        return Ok((i, false));
    }
    let (total_fee, refund_fee) = (new.total_fee, new.refund_fee);
    if total_fee != order.total_fee() {
        return Err(biz("REFUND_FEE_MISMATCH", mismatch));
    }
    if refund_fee > total_fee {
        return Err(biz("INVALID_REQUEST", "退款金额大于支付金额"));
    }
    if order.refunded() + refund_fee > order.total_fee() {
        return Err(biz("NOTENOUGH", "订单可退金额不足"));
    }
    if order.refunds.len() >= MAX_REFUNDS {
        return Err(biz("ERROR", "退款次数超过限制"));
    }
    order.refunds.push(Refund {
        out_refund_no: out_refund_no.clone(),
        refund_id: refund_id.clone(),
        total_fee,
        refund_fee,
        status: RefundStatus::Processing,
        notify_url: new.notify_url,
        success_time: None,
        refund_account: new
            .refund_account
            .unwrap_or_else(|| "REFUND_SOURCE_UNSETTLED_FUNDS".to_owned()),
        outcome,
        source: new.source,
        protocol: new.protocol,
        created_at: chrono::Utc::now(),
        success_at: None,
    });
    order.state = OrderState::Refund;
    let i = order.refunds.len() - 1;
    st.refund_id_index.insert(refund_id, out_refund_no.clone());
    st.refund_index
        .insert(out_refund_no, out_trade_no.to_owned());
    Ok((i, true))
}

/// The fields of a refund made on the merchant platform, checked as
/// `/secapi/pay/refund` checks its own.
const OUTSIDE_REFUND: &[Rule] = &[
    r("out_refund_no", 64, Kind::RefundNo, false),
    r("refund_fee", 19, Kind::Fee, true),
    r("notify_url", 256, Kind::Url, false),
];

/// A refund on the merchant platform: the API's field checks and refund
/// rules, for an order the platform knows.
pub(crate) fn refund_outside(st: &mut SimState, req: &OutsideRefund) -> Result<(usize, bool), Biz> {
    let mut fields = Params::new();
    fields.insert_opt("out_refund_no", req.out_refund_no.as_deref());
    fields.insert("refund_fee", req.refund_fee.to_string());
    fields.insert_opt("notify_url", req.notify_url.as_deref());
    check_rules(OUTSIDE_REFUND, Endpoint::Refund.format_error(), &fields)?;
    let total_fee = st.orders.get(&req.out_trade_no).map_or(0, Order::total_fee);
    let protocol = st
        .orders
        .get(&req.out_trade_no)
        .map_or(Protocol::V2, |o| o.protocol);
    let new = NewRefund {
        out_refund_no: req.out_refund_no.clone(),
        total_fee,
        refund_fee: req.refund_fee.get(),
        notify_url: req.notify_url.clone(),
        refund_account: None,
        source: RefundSource::VendorPlatform,
        protocol,
    };
    accept_refund(st, &req.out_trade_no, new)
}

impl From<Biz> for SimError {
    fn from(b: Biz) -> Self {
        SimError::RefundRefused {
            err_code: b.code.to_owned(),
            err_code_des: b.des,
        }
    }
}

fn refund_fields(order: &Order, refund: &Refund, out: &mut Params) {
    out.insert_opt("transaction_id", order.transaction_id.as_deref());
    out.insert("out_trade_no", order.out_trade_no.as_str());
    out.insert("out_refund_no", refund.out_refund_no.as_str());
    out.insert("refund_id", refund.refund_id.as_str());
    out.insert("refund_fee", refund.refund_fee.to_string());
    out.insert("settlement_refund_fee", refund.refund_fee.to_string());
    out.insert("total_fee", order.total_fee().to_string());
    out.insert("settlement_total_fee", order.total_fee().to_string());
    out.insert("fee_type", "CNY");
    out.insert("cash_fee", order.total_fee().to_string());
    out.insert("cash_fee_type", "CNY");
    out.insert("cash_refund_fee", refund.refund_fee.to_string());
    out.insert("coupon_refund_fee", "0");
    out.insert("coupon_refund_count", "0");
}

/// Refunds listed per page of refundquery.
const PAGE: usize = 10;

fn refundquery(st: &SimState, req: &Params, out: &mut Params) -> Outcome {
    let not_exist = || biz("REFUNDNOTEXIST", "not exist");
    // Priority: refund_id > out_refund_no > transaction_id > out_trade_no.
    let single = if let Some(id) = req.non_empty("refund_id") {
        Some(st.refund_id_index.get(id).ok_or_else(not_exist)?.clone())
    } else {
        req.non_empty("out_refund_no").map(str::to_owned)
    };
    let (order, refunds): (&Order, Vec<&Refund>) = if let Some(no) = single {
        let owner = st.refund_index.get(&no).ok_or_else(not_exist)?;
        let order = &st.orders[owner];
        let refund = order
            .refunds
            .iter()
            .find(|r| r.out_refund_no == no)
            .ok_or_else(not_exist)?;
        (order, vec![refund])
    } else {
        let order = find_order(st, req).map_err(|e| match e.code {
            "LACK_PARAMS" => e,
            _ => not_exist(),
        })?;
        (order, order.refunds.iter().collect())
    };
    if refunds.is_empty() {
        return Err(not_exist());
    }
    let offset: usize = req
        .non_empty("offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if offset >= refunds.len() {
        return Err(biz("PARAM_ERROR", "offset参数错误"));
    }
    let page: Vec<&Refund> = refunds.iter().skip(offset).take(PAGE).copied().collect();
    out.insert("total_refund_count", refunds.len().to_string());
    out.insert_opt("transaction_id", order.transaction_id.as_deref());
    out.insert("out_trade_no", order.out_trade_no.as_str());
    out.insert("total_fee", order.total_fee().to_string());
    out.insert("settlement_total_fee", order.total_fee().to_string());
    out.insert("cash_fee", order.total_fee().to_string());
    out.insert("fee_type", "CNY");
    let refund_fee: u64 = refunds.iter().map(|r| r.refund_fee).sum();
    out.insert("refund_fee", refund_fee.to_string());
    out.insert("refund_count", page.len().to_string());
    for (n, r) in page.iter().enumerate() {
        out.insert(format!("out_refund_no_{n}"), r.out_refund_no.as_str());
        out.insert(format!("refund_id_{n}"), r.refund_id.as_str());
        out.insert(format!("refund_channel_{n}"), "ORIGINAL");
        out.insert(format!("refund_fee_{n}"), r.refund_fee.to_string());
        out.insert(
            format!("settlement_refund_fee_{n}"),
            r.refund_fee.to_string(),
        );
        out.insert(format!("coupon_refund_fee_{n}"), "0");
        out.insert(format!("coupon_refund_count_{n}"), "0");
        out.insert(format!("refund_status_{n}"), r.status.as_str());
        out.insert(format!("refund_account_{n}"), r.refund_account.as_str());
        out.insert(format!("refund_recv_accout_{n}"), "支付用户零钱");
        out.insert_opt(
            format!("refund_success_time_{n}").as_str(),
            r.success_time.as_deref(),
        );
    }
    Ok(None)
}

/// `GET /sns/jscode2session`.
pub(crate) async fn jscode2session(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let delay = sim.faults().delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let body = code2session(&sim, &q);
    let summary = match body.get("errcode") {
        Some(code) => format!("errcode={code}"),
        None => "ok".to_owned(),
    };
    tracing::info!(path = "/sns/jscode2session", "{summary}");
    // Like the real endpoint: JSON served as text/plain.
    ([(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}

fn code2session(sim: &Sim, q: &HashMap<String, String>) -> serde_json::Value {
    let err = |code: i64, msg: &str| {
        serde_json::json!({
            "errcode": code,
            "errmsg": format!("{msg}, rid: {}", random_alnum(24).to_lowercase()),
        })
    };
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let cfg = &sim.config;
    if get("appid") != Some(cfg.appid.as_str()) {
        return err(40013, "invalid appid");
    }
    // Compared as plain strings: the simulator is not a security boundary.
    if get("secret") != Some(cfg.app_secret.expose()) {
        return err(40125, "invalid appsecret");
    }
    if get("grant_type") != Some("authorization_code") {
        return err(40002, "invalid grant_type");
    }
    let Some(code) = get("js_code") else {
        return err(41008, "missing code");
    };
    if sim.roll_system_error() {
        return err(-1, "system error");
    }
    // Scaled like every time rule, but never under CODE_TTL_FLOOR: at a fast
    // time scale a code must not expire between a test minting and using it.
    let ttl = sim.scaled(CODE_TTL).max(CODE_TTL_FLOOR);
    let mut st = sim.lock();
    let Some(entry) = st.codes.get_mut(code) else {
        return err(40029, "invalid code");
    };
    if entry.used {
        return err(40163, "code been used");
    }
    if entry.minted.elapsed() > ttl {
        return err(40029, "invalid code");
    }
    entry.used = true;
    let mut key = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut key);
    let session_key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    let mut v = serde_json::json!({ "session_key": session_key, "openid": entry.openid });
    if let Some(u) = &entry.unionid {
        v["unionid"] = serde_json::Value::String(u.clone());
    }
    v
}
