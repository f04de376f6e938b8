//! The API v3 endpoints (`/v3/...`): requests verified against the
//! merchant's key (spec 2), JSON answers and errors (spec 14) signed with
//! the platform certificate or the WeChat Pay public key (spec 3), and the
//! v3 notifies (spec 13).

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use wxpay_core::{
    Params, RefundStatus, SignType,
    v3::{AEAD_AES_256_GCM, AUTH_SCHEME, request_message},
};

use crate::{
    api::{MAX_REFUNDS, NewRefund, accept_refund},
    bill,
    keys::Tamper,
    model::{BillKind, NotifyKind, Protocol, RefundSource, VerifyMode},
    notify::NotifyJob,
    state::{
        Order, OrderState, PREPAY_TTL, Refund, Sim, State as SimState, prepay_id, random_alnum,
    },
};

/// The largest clock difference a request's `Authorization` timestamp may
/// have, in seconds (spec 2.4). A clock rule, not a WeChat-side duration:
/// never scaled.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// `yyyy-MM-DDTHH:mm:ss+08:00`, the form every v3 time field uses.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&wxpay_core::types::beijing())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// An answer before signing.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    /// Signed with the `Wechatpay-*` headers (every answer but a bill
    /// download, spec 12.3).
    signed: bool,
    content_type: &'static str,
}

const JSON: &str = "application/json; charset=utf-8";

impl Answer {
    fn json(status: StatusCode, v: &Value) -> Answer {
        Answer {
            status,
            body: serde_json::to_vec(v).unwrap_or_default(),
            signed: true,
            content_type: JSON,
        }
    }

    /// A bill file: unsigned, as WeChat streams it.
    fn file(bytes: Vec<u8>) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: bytes,
            signed: false,
            content_type: "application/octet-stream",
        }
    }

    fn ok(v: &Value) -> Answer {
        Answer::json(StatusCode::OK, v)
    }

    fn no_content() -> Answer {
        Answer {
            status: StatusCode::NO_CONTENT,
            body: Vec::new(),
            signed: true,
            content_type: JSON,
        }
    }

    /// A spec 14.1 error: `{"code","message"}`.
    fn error(status: StatusCode, code: &str, message: &str) -> Answer {
        Answer::json(status, &json!({ "code": code, "message": message }))
    }

    /// A spec 14.1 error with `detail`.
    fn error_detail(status: StatusCode, code: &str, message: &str, detail: Value) -> Answer {
        Answer::json(
            status,
            &json!({ "code": code, "message": message, "detail": detail }),
        )
    }

    fn code(&self) -> Option<String> {
        if self.content_type != JSON {
            return None;
        }
        serde_json::from_slice::<Value>(&self.body)
            .ok()?
            .get("code")?
            .as_str()
            .map(str::to_owned)
    }
}

type Result<T> = std::result::Result<T, Answer>;

fn param_error(field: &str, location: &str, value: Option<&Value>, issue: &str) -> Answer {
    let mut detail = json!({ "field": field, "location": location, "issue": issue });
    if let Some(v) = value {
        detail["value"] = v.clone();
    }
    Answer::error_detail(
        StatusCode::BAD_REQUEST,
        "PARAM_ERROR",
        &format!("参数错误: {field} {issue}"),
        detail,
    )
}

/// Axum handler for every `/v3/...` path.
pub(crate) async fn v3_api(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = sim.faults().delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let url = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    // Bill download tokens stay out of the logs.
    let logged = redact_token(&url);
    if let Err(answer) = authenticate(&sim, method.as_str(), &url, &headers, &body) {
        tracing::info!(%method, url = %logged, code = ?answer.code(), "v3 request refused (401, unsigned)");
        return respond(answer, None);
    }
    let faults = sim.faults();
    let answer = if sim.roll(faults.system_error_rate) {
        Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYSTEM_ERROR",
            "系统错误",
        )
    } else if sim.roll(faults.frequency_limited_rate) {
        Answer::error(
            StatusCode::TOO_MANY_REQUESTS,
            "FREQUENCY_LIMITED",
            "频率超限",
        )
    } else {
        // The base of bill `download_url`s: how the client reached us.
        let base = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"))
            .or_else(|| sim.base_url.get().cloned())
            .unwrap_or_default();
        let req = Req {
            method: &method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            body: &body,
            base: &base,
        };
        route(&sim, &req).unwrap_or_else(|e| e)
    };
    if !answer.signed {
        tracing::info!(%method, url = %logged, status = answer.status.as_u16(), bytes = answer.body.len(), "v3 answer (unsigned file)");
        return respond(answer, None);
    }
    let request_serial = headers
        .get("wechatpay-serial")
        .and_then(|v| v.to_str().ok());
    let tamper = if sim.roll(faults.signature_probe_rate) {
        Tamper::Probe
    } else if sim.roll(faults.bad_answer_signature_rate) {
        Tamper::Corrupt
    } else {
        Tamper::None
    };
    let signer = sim.v3.answer_signer(request_serial);
    let signature = sim.v3.sign(signer, &answer.body, tamper);
    tracing::info!(
        %method,
        url = %logged,
        status = answer.status.as_u16(),
        code = ?answer.code(),
        serial = %signature.serial,
        ?tamper,
        "v3 answer"
    );
    respond(answer, Some(signature))
}

/// `url` with the value of a `token` query parameter replaced by `***`.
fn redact_token(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = url.split_once('?') else {
        return url.into();
    };
    if !query.split('&').any(|p| p.starts_with("token=")) {
        return url.into();
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("token=") {
                "token=***"
            } else {
                p
            }
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

fn respond(answer: Answer, signature: Option<crate::keys::Signature>) -> Response {
    let mut headers = HeaderMap::new();
    let request_id = random_alnum(32).to_ascii_uppercase();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    if !answer.body.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type),
        );
    }
    if let Some(sig) = signature {
        for (name, value) in sig.headers() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
    (answer.status, headers, answer.body).into_response()
}

/// Checks `Authorization` (spec 2.5): scheme, the five pairs, mchid,
/// serial, clock skew, the RSA signature over the message rebuilt from what
/// was received. Failures are 401 `SIGN_ERROR`, unsigned.
fn authenticate(
    sim: &Sim,
    method: &str,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<()> {
    let refuse = |message: &str| Answer::error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", message);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("Http头缺少Authorization"))?;
    let pairs = value
        .strip_prefix(AUTH_SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| {
            refuse("不支持的认证类型，Authorization需以WECHATPAY2-SHA256-RSA2048开头")
        })?;
    let mut fields = HashMap::new();
    for pair in pairs.split(',') {
        let (k, v) = pair
            .trim()
            .split_once('=')
            .ok_or_else(|| refuse("Http头Authorization值格式错误"))?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| refuse("Http头Authorization值格式错误"))?;
        fields.insert(k, v);
    }
    let get = |name: &str| {
        fields
            .get(name)
            .copied()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| refuse(&format!("Http头Authorization缺少{name}")))
    };
    let (mchid, nonce, timestamp, serial, signature) = (
        get("mchid")?,
        get("nonce_str")?,
        get("timestamp")?,
        get("serial_no")?,
        get("signature")?,
    );
    if mchid != sim.config.mch_id {
        return Err(refuse("商户号mchid与签名不匹配"));
    }
    let ts: i64 = timestamp
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| timestamp.parse().ok())
        .flatten()
        .ok_or_else(|| refuse("Authorization中的timestamp格式错误"))?;
    if (Utc::now().timestamp() - ts).abs() > MAX_SKEW_SECS {
        return Err(refuse(
            "Authorization中的timestamp与发起请求的时间不得超过5分钟",
        ));
    }
    if !serial.eq_ignore_ascii_case(sim.v3.merchant_serial()) {
        return Err(refuse("商户证书序列号有误"));
    }
    let message = request_message(method, url, timestamp, nonce, body);
    if !sim.v3.merchant_verifies(serial, &message, signature) {
        let text = String::from_utf8_lossy(&message);
        let truncated: String = text.chars().take(64).collect();
        return Err(Answer::error_detail(
            StatusCode::UNAUTHORIZED,
            "SIGN_ERROR",
            "签名错误",
            json!({
                "detail": {"issue": "sign not match"},
                "field": "signature",
                "location": "authorization",
                "sign_information": {
                    "method": method,
                    "url": url,
                    "sign_message_length": message.len(),
                    "truncated_sign_message": truncated,
                },
            }),
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TradeType {
    Jsapi,
    Native,
}

/// A v3 request, verified.
struct Req<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    body: &'a [u8],
    /// `http://HOST[:PORT]` the request reached.
    base: &'a str,
}

fn route(sim: &Arc<Sim>, req: &Req<'_>) -> Result<Answer> {
    let (method, query, body) = (req.method, req.query, req.body);
    let segs: Vec<&str> = req.path.trim_start_matches("/v3/").split('/').collect();
    let post = *method == Method::POST;
    let get = *method == Method::GET;
    match segs.as_slice() {
        ["pay", "transactions", "jsapi"] if post => prepay(sim, TradeType::Jsapi, body),
        ["pay", "transactions", "native"] if post => prepay(sim, TradeType::Native, body),
        ["pay", "transactions", "out-trade-no", no] if get => {
            query_order(sim, Lookup::OutTradeNo(percent_decode(no)), query)
        }
        ["pay", "transactions", "id", id] if get => {
            query_order(sim, Lookup::TransactionId(percent_decode(id)), query)
        }
        ["pay", "transactions", "out-trade-no", no, "close"] if post => {
            close(sim, &percent_decode(no), body)
        }
        ["refund", "domestic", "refunds"] if post => refund(sim, body),
        ["refund", "domestic", "refunds", no] if get => refund_query(sim, &percent_decode(no)),
        ["certificates"] if get => Ok(certificates(sim)),
        ["bill", "tradebill"] if get => apply_bill(sim, BillApply::Trade, query, req.base),
        ["bill", "fundflowbill"] if get => apply_bill(sim, BillApply::FundFlow, query, req.base),
        ["billdownload", "file"] if get => download_bill(sim, query),
        _ => Err(Answer::error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "请求的资源不存在（wxpay-sim 未实现此接口）",
        )),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Parses a JSON object body; `null` anywhere and characters of 4 UTF-8
/// bytes are refused (spec 1.2).
fn parse_body(body: &[u8]) -> Result<Value> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            &format!("请求体不是合法的JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "请求体必须是JSON对象",
        ));
    }
    check_values(&v, "")?;
    Ok(v)
}

fn check_values(v: &Value, pointer: &str) -> Result<()> {
    match v {
        Value::Null => Err(param_error(pointer, "body", None, "null is not allowed")),
        Value::String(s) if s.chars().any(|c| c.len_utf8() > 3) => Err(param_error(
            pointer,
            "body",
            Some(v),
            "only characters of 1-3 UTF-8 bytes are supported",
        )),
        Value::Object(m) => m
            .iter()
            .try_for_each(|(k, v)| check_values(v, &format!("{pointer}/{k}"))),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_values(v, &format!("{pointer}/{i}"))),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Text {
    Any,
    /// `[0-9A-Za-z_\-|*]`, 6 characters at least.
    TradeNo,
    /// `[0-9A-Za-z_\-|*@]`.
    RefundNo,
    /// `http(s)://…` without a query string.
    Url,
}

fn text<'a>(
    v: &'a Value,
    pointer: &str,
    max: usize,
    kind: Text,
    required: bool,
) -> Result<Option<&'a str>> {
    let Some(field) = v.pointer(pointer) else {
        return if required {
            Err(param_error(pointer, "body", None, "is required"))
        } else {
            Ok(None)
        };
    };
    let s = field
        .as_str()
        .ok_or_else(|| param_error(pointer, "body", Some(field), "must be a string"))?;
    if s.is_empty() && required {
        return Err(param_error(
            pointer,
            "body",
            Some(field),
            "must not be empty",
        ));
    }
    if s.chars().count() > max {
        return Err(param_error(
            pointer,
            "body",
            Some(field),
            &format!("must be at most {max} characters"),
        ));
    }
    let ok = match kind {
        Text::Any => true,
        Text::TradeNo => {
            s.len() >= 6
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*'))
        }
        Text::RefundNo => s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*' | '@')),
        Text::Url => (s.starts_with("http://") || s.starts_with("https://")) && !s.contains('?'),
    };
    if !ok {
        return Err(param_error(
            pointer,
            "body",
            Some(field),
            "has an invalid format",
        ));
    }
    Ok(Some(s))
}

/// A positive integer amount in fen.
fn amount(v: &Value, pointer: &str) -> Result<u64> {
    let field = v
        .pointer(pointer)
        .ok_or_else(|| param_error(pointer, "body", None, "is required"))?;
    field
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| param_error(pointer, "body", Some(field), "must be a positive integer"))
}

fn currency(v: &Value, pointer: &str, required: bool) -> Result<()> {
    match text(v, pointer, 16, Text::Any, required)? {
        None | Some("CNY") => Ok(()),
        Some(_) => Err(param_error(
            pointer,
            "body",
            v.pointer(pointer),
            "must be CNY",
        )),
    }
}

fn check_mchid(sim: &Sim, mchid: &str) -> Result<()> {
    if mchid == sim.config.mch_id {
        Ok(())
    } else {
        Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "MCH_NOT_EXISTS",
            "商户号不存在",
        ))
    }
}

fn prepay(sim: &Arc<Sim>, kind: TradeType, body: &[u8]) -> Result<Answer> {
    let v = parse_body(body)?;
    let appid = text(&v, "/appid", 32, Text::Any, true)?.unwrap_or_default();
    let mchid = text(&v, "/mchid", 32, Text::Any, true)?.unwrap_or_default();
    let description = text(&v, "/description", 127, Text::Any, true)?.unwrap_or_default();
    let out_trade_no = text(&v, "/out_trade_no", 32, Text::TradeNo, true)?.unwrap_or_default();
    let notify_url = text(&v, "/notify_url", 255, Text::Url, true)?.unwrap_or_default();
    let attach = text(&v, "/attach", 128, Text::Any, false)?;
    text(&v, "/goods_tag", 32, Text::Any, false)?;
    if let Some(t) = text(&v, "/time_expire", 64, Text::Any, false)?
        && DateTime::parse_from_rfc3339(t).is_err()
    {
        return Err(param_error(
            "/time_expire",
            "body",
            v.pointer("/time_expire"),
            "must be yyyy-MM-DDTHH:mm:ss+TIMEZONE",
        ));
    }
    let total = amount(&v, "/amount/total")?;
    currency(&v, "/amount/currency", false)?;
    let openid = match kind {
        TradeType::Jsapi => text(&v, "/payer/openid", 128, Text::Any, true)?,
        TradeType::Native => None,
    };
    check_mchid(sim, mchid)?;
    if appid != sim.config.appid {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "AppID和mch_id不匹配",
        ));
    }
    let trade_type = match kind {
        TradeType::Jsapi => "JSAPI",
        TradeType::Native => "NATIVE",
    };
    let answer = |order: &Order| match kind {
        TradeType::Jsapi => Answer::ok(&json!({ "prepay_id": order.prepay_id })),
        TradeType::Native => Answer::ok(&json!({ "code_url": order.code_url })),
    };
    let mut st = sim.lock();
    let prepay_ttl = sim.scaled(PREPAY_TTL);
    if let Some(order) = st.orders.get_mut(out_trade_no) {
        match order.state {
            OrderState::Success | OrderState::Refund => {
                return Err(Answer::error(
                    StatusCode::FORBIDDEN,
                    "OUT_TRADE_NO_USED",
                    "该订单已支付，商户订单号重复",
                ));
            }
            OrderState::Closed => {
                return Err(Answer::error(
                    StatusCode::BAD_REQUEST,
                    "ORDER_CLOSED",
                    "订单已关闭",
                ));
            }
            OrderState::NotPay | OrderState::PayError => {}
        }
        if order.v3_request.as_ref() != Some(&v) {
            return Err(Answer::error(
                StatusCode::FORBIDDEN,
                "OUT_TRADE_NO_USED",
                "商户订单号重复",
            ));
        }
        if order.prepay_issued.elapsed() > prepay_ttl {
            order.prepay_id = prepay_id();
            order.prepay_issued = tokio::time::Instant::now();
            let (id, no) = (order.prepay_id.clone(), out_trade_no.to_owned());
            st.prepay_index.insert(id, no);
        }
        return Ok(answer(&st.orders[out_trade_no]));
    }
    let mut request = Params::new();
    request.insert("appid", appid);
    request.insert("mch_id", mchid);
    request.insert("body", description);
    request.insert("out_trade_no", out_trade_no);
    request.insert("total_fee", total.to_string());
    request.insert("notify_url", notify_url);
    request.insert("trade_type", trade_type);
    request.insert_opt("openid", openid);
    request.insert_opt("attach", attach.filter(|a| !a.is_empty()));
    request.insert_opt(
        "device_info",
        v.pointer("/scene_info/device_id").and_then(Value::as_str),
    );
    let now = tokio::time::Instant::now();
    let order = Order {
        out_trade_no: out_trade_no.to_owned(),
        request,
        sign_type: SignType::Md5,
        created: now,
        prepay_id: prepay_id(),
        prepay_issued: now,
        code_url: (kind == TradeType::Native)
            .then(|| format!("weixin://wxpay/bizpayurl?pr={}", random_alnum(9))),
        state: OrderState::NotPay,
        transaction_id: None,
        time_end: None,
        payer_openid: None,
        refunds: Vec::new(),
        protocol: Protocol::V3,
        v3_request: Some(v.clone()),
        created_at: Utc::now(),
        paid_at: None,
    };
    let a = answer(&order);
    tracing::info!(%out_trade_no, trade_type, total, "v3 prepay");
    st.prepay_index
        .insert(order.prepay_id.clone(), out_trade_no.to_owned());
    st.orders.insert(out_trade_no.to_owned(), order);
    Ok(a)
}

fn trade_state_desc(state: OrderState) -> &'static str {
    match state {
        OrderState::NotPay => "订单未支付",
        OrderState::Success => "支付成功",
        OrderState::Closed => "订单已关闭",
        OrderState::PayError => "支付失败，请重新下单支付",
        OrderState::Refund => "订单发生过退款，退款详情请查询退款单",
    }
}

/// The Transaction object (spec 9.2, 13.3).
pub(crate) fn transaction(sim: &Sim, order: &Order) -> Value {
    let total = order.total_fee();
    let mut t = json!({
        "appid": order.field("appid").unwrap_or(&sim.config.appid),
        "mchid": sim.config.mch_id,
        "out_trade_no": order.out_trade_no,
        "trade_type": order.trade_type(),
        "trade_state": order.state.trade_state().as_str(),
        "trade_state_desc": trade_state_desc(order.state),
        "amount": { "total": total, "currency": "CNY", "payer_currency": "CNY" },
    });
    if let Some(openid) = order.openid() {
        t["payer"] = json!({ "openid": openid });
    }
    if let Some(device) = order.field("device_info") {
        t["scene_info"] = json!({ "device_id": device });
    }
    if order.state.is_paid() {
        t["transaction_id"] = json!(order.transaction_id);
        t["bank_type"] = json!("OTHERS");
        t["attach"] = json!(order.field("attach").unwrap_or(""));
        if let Some(at) = order.paid_at {
            t["success_time"] = json!(rfc3339(at));
        }
        t["amount"]["payer_total"] = json!(total);
        t["promotion_detail"] = json!([]);
    }
    t
}

enum Lookup {
    OutTradeNo(String),
    TransactionId(String),
}

fn query_order(sim: &Arc<Sim>, which: Lookup, query: &str) -> Result<Answer> {
    let mchid = query_param(query, "mchid")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| param_error("mchid", "query", None, "is required"))?;
    check_mchid(sim, &mchid)?;
    let st = sim.lock();
    let no = match &which {
        Lookup::OutTradeNo(no) => Some(no.as_str()),
        Lookup::TransactionId(id) => st.transaction_index.get(id).map(String::as_str),
    };
    let order = no
        .and_then(|no| st.orders.get(no))
        .ok_or_else(|| Answer::error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"))?;
    Ok(Answer::ok(&transaction(sim, order)))
}

fn close(sim: &Arc<Sim>, out_trade_no: &str, body: &[u8]) -> Result<Answer> {
    let v = parse_body(body)?;
    let mchid = text(&v, "/mchid", 32, Text::Any, true)?.unwrap_or_default();
    check_mchid(sim, mchid)?;
    let mut st = sim.lock();
    let order = st
        .orders
        .get_mut(out_trade_no)
        .ok_or_else(|| Answer::error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"))?;
    match order.state {
        OrderState::Success | OrderState::Refund => Err(Answer::error(
            StatusCode::FORBIDDEN,
            "TRADE_ERROR",
            "订单已支付，不能关单",
        )),
        OrderState::Closed => Ok(Answer::no_content()),
        OrderState::NotPay | OrderState::PayError => {
            order.state = OrderState::Closed;
            tracing::info!(%out_trade_no, "v3 close");
            Ok(Answer::no_content())
        }
    }
}

/// The refund `status` of v3 (spec 11.4).
fn refund_status(s: &RefundStatus) -> &str {
    match s {
        RefundStatus::Processing => "PROCESSING",
        RefundStatus::Success => "SUCCESS",
        RefundStatus::RefundClose => "CLOSED",
        RefundStatus::Change => "ABNORMAL",
        other => other.as_str(),
    }
}

fn funds_account(refund: &Refund) -> &'static str {
    match refund.refund_account.as_str() {
        "REFUND_SOURCE_RECHARGE_FUNDS" => "AVAILABLE",
        _ => "UNSETTLED",
    }
}

/// The Refund object (spec 11.3).
fn refund_json(order: &Order, refund: &Refund) -> Value {
    let total = order.total_fee();
    let mut r = json!({
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": rfc3339(refund.created_at),
        "status": refund_status(&refund.status),
        "funds_account": funds_account(refund),
        "amount": {
            "total": total,
            "refund": refund.refund_fee,
            "from": [],
            "payer_total": total,
            "payer_refund": refund.refund_fee,
            "settlement_refund": refund.refund_fee,
            "settlement_total": total,
            "discount_refund": 0,
            "currency": "CNY",
            "refund_fee": 0,
        },
        "promotion_detail": [],
    });
    if let Some(at) = refund.success_at {
        r["success_time"] = json!(rfc3339(at));
    }
    r
}

fn find_refund<'a>(st: &'a SimState, out_refund_no: &str) -> Option<(&'a Order, &'a Refund)> {
    let owner = st.refund_index.get(out_refund_no)?;
    let order = st.orders.get(owner)?;
    let refund = order
        .refunds
        .iter()
        .find(|r| r.out_refund_no == out_refund_no)?;
    Some((order, refund))
}

fn refund(sim: &Arc<Sim>, body: &[u8]) -> Result<Answer> {
    let v = parse_body(body)?;
    let out_refund_no = text(&v, "/out_refund_no", 64, Text::RefundNo, true)?.unwrap_or_default();
    let transaction_id = text(&v, "/transaction_id", 32, Text::Any, false)?;
    let out_trade_no = text(&v, "/out_trade_no", 32, Text::TradeNo, false)?;
    text(&v, "/reason", 80, Text::Any, false)?;
    let notify_url = text(&v, "/notify_url", 256, Text::Url, false)?;
    text(&v, "/funds_account", 32, Text::Any, false)?;
    let refund_fee = amount(&v, "/amount/refund")?;
    let total_fee = amount(&v, "/amount/total")?;
    currency(&v, "/amount/currency", true)?;
    if transaction_id.is_none() && out_trade_no.is_none() {
        return Err(param_error(
            "/out_trade_no",
            "body",
            None,
            "transaction_id or out_trade_no is required",
        ));
    }
    let not_found = || Answer::error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在");
    let (owner, created) = {
        let mut st = sim.lock();
        let owner = match (transaction_id, out_trade_no) {
            (Some(tid), no) => {
                let owner = st
                    .transaction_index
                    .get(tid)
                    .cloned()
                    .ok_or_else(not_found)?;
                if no.is_some_and(|no| no != owner) {
                    return Err(Answer::error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        "transaction_id与out_trade_no不匹配",
                    ));
                }
                owner
            }
            (None, Some(no)) => {
                if !st.orders.contains_key(no) {
                    return Err(not_found());
                }
                no.to_owned()
            }
            (None, None) => return Err(not_found()),
        };
        if st.orders[&owner].refunds.len() >= MAX_REFUNDS
            && !st.orders[&owner]
                .refunds
                .iter()
                .any(|r| r.out_refund_no == out_refund_no)
        {
            return Err(Answer::error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "退款次数超过限制（50次）",
            ));
        }
        let new = NewRefund {
            out_refund_no: Some(out_refund_no.to_owned()),
            total_fee,
            refund_fee,
            notify_url: notify_url.map(str::to_owned),
            refund_account: None,
            source: RefundSource::Api,
            protocol: Protocol::V3,
        };
        let (_, created) = accept_refund(&mut st, &owner, new).map_err(|b| match b.code {
            "ORDERNOTEXIST" => Answer::error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", &b.des),
            "PARAM_ERROR" => Answer::error(StatusCode::BAD_REQUEST, "PARAM_ERROR", &b.des),
            _ => Answer::error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &b.des),
        })?;
        (owner, created)
    };
    tracing::info!(out_trade_no = %owner, %out_refund_no, refund_fee, created, "v3 refund");
    if created {
        sim.schedule_refund(owner, out_refund_no.to_owned());
    }
    let st = sim.lock();
    let (order, refund) = find_refund(&st, out_refund_no).ok_or_else(not_found)?;
    Ok(Answer::ok(&refund_json(order, refund)))
}

fn refund_query(sim: &Arc<Sim>, out_refund_no: &str) -> Result<Answer> {
    let st = sim.lock();
    let (order, refund) = find_refund(&st, out_refund_no).ok_or_else(|| {
        Answer::error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在")
    })?;
    Ok(Answer::ok(&refund_json(order, refund)))
}

fn certificates(sim: &Sim) -> Answer {
    if sim.v3.mode() == VerifyMode::PubKey {
        return Answer::error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥",
        );
    }
    Answer {
        status: StatusCode::OK,
        body: sim.v3.certificates_body(),
        signed: true,
        content_type: JSON,
    }
}

#[derive(Clone, Copy)]
enum BillApply {
    Trade,
    FundFlow,
}

/// `GET /v3/bill/tradebill` and `/v3/bill/fundflowbill` (spec 12.1–12.3):
/// the bill is built now and kept behind a download token.
fn apply_bill(sim: &Arc<Sim>, which: BillApply, query: &str, base: &str) -> Result<Answer> {
    let no_statement = || {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "NO_STATEMENT_EXIST",
            "账单文件不存在",
        )
    };
    let raw_date = query_param(query, "bill_date").filter(|d| !d.is_empty());
    let date = match &raw_date {
        None => return Err(param_error("bill_date", "query", None, "is required")),
        Some(d) => bill::parse_date_v3(d).ok_or_else(|| {
            param_error(
                "bill_date",
                "query",
                Some(&json!(d)),
                "must be a date yyyy-MM-DD",
            )
        })?,
    };
    let kind = match which {
        BillApply::Trade => match query_param(query, "bill_type").as_deref() {
            None | Some("ALL") => Some(BillKind::All),
            Some("SUCCESS") => Some(BillKind::Success),
            Some("REFUND") => Some(BillKind::Refund),
            // Recharge refunds and personalised bills: the simulated
            // merchant has none.
            Some("RECHARGE_REFUND" | "ALL_SPECIAL" | "SUC_SPECIAL" | "REF_SPECIAL") => None,
            Some(other) => {
                return Err(param_error(
                    "bill_type",
                    "query",
                    Some(&json!(other)),
                    "must be ALL, SUCCESS, REFUND, RECHARGE_REFUND, ALL_SPECIAL, SUC_SPECIAL or REF_SPECIAL",
                ));
            }
        },
        BillApply::FundFlow => match query_param(query, "account_type").as_deref() {
            None | Some("BASIC") => Some(BillKind::FundFlow),
            // The operation and fees accounts see no flows here.
            Some("OPERATION" | "FEES") => None,
            Some(other) => {
                return Err(param_error(
                    "account_type",
                    "query",
                    Some(&json!(other)),
                    "must be BASIC, OPERATION or FEES",
                ));
            }
        },
    };
    let gzip = match query_param(query, "tar_type").as_deref() {
        None => false,
        Some("GZIP") => true,
        Some(other) => {
            return Err(param_error(
                "tar_type",
                "query",
                Some(&json!(other)),
                "must be GZIP",
            ));
        }
    };
    if sim.faults().bill_not_ready {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "STATEMENT_CREATING",
            "账单生成中，请稍后再试",
        ));
    }
    let kind = kind.ok_or_else(no_statement)?;
    let text = bill::build(sim, date, kind).map_err(|e| match e {
        bill::BillFailure::NotReady => Answer::error(
            StatusCode::BAD_REQUEST,
            "STATEMENT_CREATING",
            "账单生成中，请稍后再试",
        ),
        bill::BillFailure::NoBill => no_statement(),
    })?;
    let plain = text.into_bytes();
    let bad_hash = {
        let mut st = sim.lock();
        let bad = st.faults.bill_bad_hash > 0;
        if bad {
            st.faults.bill_bad_hash -= 1;
        }
        bad
    };
    let hash = if bad_hash {
        // The digest of the file with one byte more: well formed, wrong.
        let mut longer = plain.clone();
        longer.push(b'\n');
        bill::sha1_hex(&longer)
    } else {
        bill::sha1_hex(&plain)
    };
    let bytes = if gzip { bill::gzip(&plain) } else { plain };
    let token = bill::issue_token(sim, &mut sim.lock(), bytes);
    let mut url = format!("{base}/v3/billdownload/file?token={token}");
    if gzip {
        url.push_str("&tartype=gzip");
    }
    tracing::info!(%date, gzip, bad_hash, "v3 bill applied");
    // WeChat's field order, which serde_json's map would sort away.
    let body = format!(
        "{{\"hash_type\":\"SHA1\",\"hash_value\":{},\"download_url\":{}}}",
        json!(hash),
        json!(url)
    );
    Ok(Answer {
        status: StatusCode::OK,
        body: body.into_bytes(),
        signed: true,
        content_type: JSON,
    })
}

/// `GET /v3/billdownload/file?token=…`: the file behind a live token,
/// unsigned; an unknown or expired token is 400 `INVALID_REQUEST` (signed,
/// like every v3 error).
fn download_bill(sim: &Arc<Sim>, query: &str) -> Result<Answer> {
    let bytes = query_param(query, "token")
        .and_then(|t| bill::redeem(sim, &t))
        .ok_or_else(|| {
            Answer::error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "账单下载链接无效或已过期，请重新申请账单",
            )
        })?;
    Ok(Answer::file(bytes.to_vec()))
}

fn notify_id() -> String {
    let hex = random_alnum(64)
        .bytes()
        .map(|b| char::from(b"0123456789abcdef"[usize::from(b) % 16]))
        .collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The notify envelope of spec 13.2 around `resource`, encrypted with the
/// APIv3 key.
fn envelope(sim: &Sim, event_type: &str, summary: &str, aad: &str, resource: &Value) -> String {
    let nonce = random_alnum(12);
    let plain = serde_json::to_vec(resource).unwrap_or_default();
    let ciphertext = sim
        .v3
        .apiv3
        .encrypt(aad.as_bytes(), nonce.as_bytes(), &plain)
        .expect("12-byte nonce");
    let mut body = Map::new();
    body.insert("id".into(), json!(notify_id()));
    body.insert("create_time".into(), json!(rfc3339(Utc::now())));
    body.insert("resource_type".into(), json!("encrypt-resource"));
    body.insert("event_type".into(), json!(event_type));
    body.insert("summary".into(), json!(summary));
    body.insert(
        "resource".into(),
        json!({
            "original_type": aad,
            "algorithm": AEAD_AES_256_GCM,
            "ciphertext": ciphertext,
            "associated_data": aad,
            "nonce": nonce,
        }),
    );
    Value::Object(body).to_string()
}

/// The `TRANSACTION.SUCCESS` notify of a freshly paid v3 order.
pub(crate) fn payment_notify_job(sim: &Sim, order: &Order) -> NotifyJob {
    let resource = transaction(sim, order);
    NotifyJob {
        kind: NotifyKind::Payment,
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: None,
        url: order.field("notify_url").unwrap_or_default().to_owned(),
        body: envelope(
            sim,
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            &resource,
        ),
        protocol: Protocol::V3,
    }
}

/// The `REFUND.SUCCESS` / `REFUND.CLOSED` / `REFUND.ABNORMAL` notify of a
/// refund that just reached its final status.
pub(crate) fn refund_notify_job(
    sim: &Sim,
    order: &Order,
    refund: &Refund,
    url: String,
) -> NotifyJob {
    let status = refund_status(&refund.status);
    let (event_type, summary) = match status {
        "SUCCESS" => ("REFUND.SUCCESS", "退款成功"),
        "CLOSED" => ("REFUND.CLOSED", "退款关闭"),
        _ => ("REFUND.ABNORMAL", "退款异常"),
    };
    let total = order.total_fee();
    let mut resource = json!({
        "mchid": sim.config.mch_id,
        "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": status,
        "user_received_account": "支付用户零钱",
        "channel": "ORIGINAL",
        "funds_account": funds_account(refund),
        "create_time": rfc3339(refund.created_at),
        "amount": {
            "total": total,
            "refund": refund.refund_fee,
            "payer_total": total,
            "payer_refund": refund.refund_fee,
        },
    });
    if let Some(at) = refund.success_at {
        resource["success_time"] = json!(rfc3339(at));
    }
    NotifyJob {
        kind: NotifyKind::Refund,
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: Some(refund.out_refund_no.clone()),
        url,
        body: envelope(sim, event_type, summary, "refund", &resource),
        protocol: Protocol::V3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_and_query() {
        assert_eq!(percent_decode("a%7Cb%2A"), "a|b*");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(
            query_param("x=1&mchid=1900000109", "mchid").as_deref(),
            Some("1900000109")
        );
    }

    #[test]
    fn download_tokens_are_not_logged() {
        assert_eq!(
            redact_token("/v3/billdownload/file?token=Secret123&tartype=gzip"),
            "/v3/billdownload/file?token=***&tartype=gzip"
        );
        assert_eq!(redact_token("/v3/x?mchid=1"), "/v3/x?mchid=1");
        assert_eq!(redact_token("/v3/x"), "/v3/x");
    }

    #[test]
    fn times_are_beijing_rfc3339() {
        let t = DateTime::from_timestamp(1_767_240_000, 0).unwrap();
        assert_eq!(rfc3339(t), "2026-01-01T12:00:00+08:00");
    }

    #[test]
    fn nulls_and_emoji_are_refused() {
        assert!(parse_body(br#"{"a":{"b":null}}"#).is_err());
        assert!(parse_body("{\"a\":\"\u{1F600}\"}".as_bytes()).is_err());
        assert!(parse_body(br#"[1]"#).is_err());
        assert!(parse_body(br#"{"a":"ok"}"#).is_ok());
    }
}
