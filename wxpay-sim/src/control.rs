//! The JSON control API (`/sim/...`) and the HTML cashier.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{FromRequest, Path, Request, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{any, get, post},
};
use serde::Deserialize;

use crate::{
    SimError, api, api_v3, bill,
    model::{Faults, OutsideRefund, PayResult},
    state::{OrderRef, Sim},
};

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/pay/unifiedorder", any(api::pay_api))
        .route("/pay/orderquery", any(api::pay_api))
        .route("/pay/closeorder", any(api::pay_api))
        .route("/pay/refundquery", any(api::pay_api))
        .route("/secapi/pay/refund", any(api::pay_api))
        // The classic sandbox (spec 3.1): the same endpoints under
        // `sandboxnew/`, both refund paths SDKs use, and the sandbox key.
        .route("/sandboxnew/pay/unifiedorder", any(api::pay_api))
        .route("/sandboxnew/pay/orderquery", any(api::pay_api))
        .route("/sandboxnew/pay/closeorder", any(api::pay_api))
        .route("/sandboxnew/pay/refundquery", any(api::pay_api))
        .route("/sandboxnew/secapi/pay/refund", any(api::pay_api))
        .route("/sandboxnew/pay/refund", any(api::pay_api))
        .route("/sandboxnew/pay/getsignkey", any(api::getsignkey))
        .route("/pay/downloadbill", any(bill::downloadbill))
        .route("/sandboxnew/pay/downloadbill", any(bill::downloadbill))
        .route("/v3/{*rest}", any(api_v3::v3_api))
        .route("/sns/jscode2session", get(api::jscode2session))
        .route("/sim/rotate-certificate", post(rotate_certificate))
        .route("/sim/login", post(login))
        .route("/sim/pay", post(pay))
        .route("/sim/refund", post(refund))
        .route("/sim/faults", post(set_faults).get(get_faults))
        .route("/sim/orders/{out_trade_no}", get(order))
        .route("/sim/notifies", get(notifies))
        .route("/sim/cashier/{prepay_id}", get(cashier))
        .route("/sim/cashier/{prepay_id}/pay", post(cashier_pay))
        .route("/sim/cashier/{prepay_id}/cancel", post(cashier_cancel))
        .with_state(sim)
}

/// A JSON body, whatever its `Content-Type` says (curl sends none with
/// `-d`): the control API is for people and scripts, not browsers.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let error = format!("expected a JSON body: {e}");
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": error })),
            )
                .into_response()
        })
    }
}

fn json_error(status: StatusCode, e: &SimError) -> Response {
    let mut body = serde_json::json!({ "error": e.to_string() });
    if let SimError::RefundRefused {
        err_code,
        err_code_des,
    } = e
    {
        body["err_code"] = err_code.as_str().into();
        body["err_code_des"] = err_code_des.as_str().into();
    }
    (status, Json(body)).into_response()
}

fn status_of(e: &SimError) -> StatusCode {
    match e {
        SimError::NoSuchOrder(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    }
}

#[derive(Deserialize)]
struct LoginReq {
    openid: String,
    #[serde(default)]
    unionid: Option<String>,
}

async fn login(State(sim): State<Arc<Sim>>, JsonBody(req): JsonBody<LoginReq>) -> Response {
    let code = sim.login(&req.openid, req.unionid);
    tracing::info!(openid = %req.openid, "login code minted");
    Json(serde_json::json!({ "code": code })).into_response()
}

#[derive(Deserialize)]
struct PayReq {
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    prepay_id: Option<String>,
    #[serde(default)]
    result: PayResult,
    /// The payer of a NATIVE order (JSAPI orders name theirs).
    #[serde(default)]
    openid: Option<String>,
}

async fn pay(State(sim): State<Arc<Sim>>, JsonBody(req): JsonBody<PayReq>) -> Response {
    let which = match (req.out_trade_no, req.prepay_id) {
        (Some(n), _) => OrderRef::OutTradeNo(n),
        (None, Some(p)) => OrderRef::PrepayId(p),
        (None, None) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": "give out_trade_no or prepay_id" })),
            )
                .into_response();
        }
    };
    match sim.pay(which, req.result, req.openid) {
        Ok(order) => Json(order).into_response(),
        Err(e) => json_error(status_of(&e), &e),
    }
}

async fn refund(State(sim): State<Arc<Sim>>, JsonBody(req): JsonBody<OutsideRefund>) -> Response {
    match sim.refund_outside(req) {
        Ok(refund) => Json(refund).into_response(),
        Err(e) => json_error(status_of(&e), &e),
    }
}

async fn set_faults(State(sim): State<Arc<Sim>>, JsonBody(f): JsonBody<Faults>) -> Response {
    for (name, rate) in [
        ("system_error_rate", f.system_error_rate),
        ("bad_answer_signature_rate", f.bad_answer_signature_rate),
        ("frequency_limited_rate", f.frequency_limited_rate),
        ("bad_notify_signature_rate", f.bad_notify_signature_rate),
        ("signature_probe_rate", f.signature_probe_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            let error = format!("{name} must be within 0.0..=1.0");
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": error })),
            )
                .into_response();
        }
    }
    if f.bill_unknown_rows > bill::MAX_UNKNOWN_ROWS {
        let error = format!(
            "bill_unknown_rows must be at most {}",
            bill::MAX_UNKNOWN_ROWS
        );
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response();
    }
    tracing::info!(faults = ?f, "faults set");
    sim.set_faults(f.clone());
    Json(f).into_response()
}

async fn rotate_certificate(State(sim): State<Arc<Sim>>) -> Response {
    match sim.rotate_certificate().await {
        Ok(r) => Json(r).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.faults()).into_response()
}

async fn order(State(sim): State<Arc<Sim>>, Path(no): Path<String>) -> Response {
    match sim.order(&no) {
        Some(o) => Json(o).into_response(),
        None => json_error(StatusCode::NOT_FOUND, &SimError::NoSuchOrder(no)),
    }
}

async fn notifies(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.notifies()).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, inner: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
<style>body{{font-family:sans-serif;max-width:22rem;margin:2rem auto;text-align:center}}\
.amount{{font-size:2rem;margin:1rem}}button{{width:100%;padding:.8rem;margin:.3rem 0;font-size:1rem}}\
.pay{{background:#07c160;color:#fff;border:0}}</style></head><body><h1>{t}</h1>{inner}</body></html>",
        t = escape(title)
    ))
}

async fn cashier(State(sim): State<Arc<Sim>>, Path(prepay_id): Path<String>) -> Response {
    let found = {
        let st = sim.lock();
        st.prepay_index
            .get(&prepay_id)
            .and_then(|no| st.orders.get(no))
            .map(|o| {
                (
                    o.out_trade_no.clone(),
                    o.field("body").unwrap_or_default().to_owned(),
                    o.total_fee(),
                    o.state.trade_state(),
                )
            })
    };
    let Some((no, body, fee, state)) = found else {
        return (
            StatusCode::NOT_FOUND,
            page("微信支付", "<p>prepay_id 不存在</p>"),
        )
            .into_response();
    };
    let id = escape(&prepay_id);
    page(
        "微信支付 (模拟)",
        &format!(
            "<p>{body}</p><p class=\"amount\">¥{yuan}.{fen:02}</p><p>订单号 {no}<br>状态 {state}</p>\
<form method=\"post\" action=\"/sim/cashier/{id}/pay\"><button class=\"pay\" type=\"submit\">支付</button></form>\
<form method=\"post\" action=\"/sim/cashier/{id}/cancel\"><button type=\"submit\">取消</button></form>",
            body = escape(&body),
            yuan = fee / 100,
            fen = fee % 100,
            no = escape(&no),
        ),
    )
    .into_response()
}

async fn cashier_pay(State(sim): State<Arc<Sim>>, Path(prepay_id): Path<String>) -> Response {
    match sim.pay(OrderRef::PrepayId(prepay_id), PayResult::Success, None) {
        Ok(o) => page(
            "支付成功",
            &format!(
                "<p>订单 {} 已支付</p><p>requestPayment:ok</p>",
                escape(&o.out_trade_no)
            ),
        )
        .into_response(),
        Err(e) => (
            status_of(&e),
            page("支付失败", &format!("<p>{}</p>", escape(&e.to_string()))),
        )
            .into_response(),
    }
}

async fn cashier_cancel(Path(_prepay_id): Path<String>) -> Response {
    page("已取消", "<p>requestPayment:fail cancel</p>").into_response()
}
