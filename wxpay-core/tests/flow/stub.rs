//! An in-process WeChat Pay stub: signs its answers, records requests, and
//! plays scripted faults.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::Uri, response::IntoResponse};
use wxpay_core::{ApiKey, Client, ClientIdentity, Config, Params, SignType, sign, xml};

pub const APPID: &str = "wxd930ea5d5a258f4f";
pub const MCH_ID: &str = "10000100";
pub const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// One scripted unifiedorder answer.
#[derive(Debug, Clone)]
pub enum Script {
    Ok,
    Business(&'static str),
    Http500,
    Delay(Duration),
}

#[derive(Default)]
pub struct Inner {
    pub requests: Vec<(String, Params)>,
    pub unified: VecDeque<Script>,
    /// out_trade_no → trade_state (default NOTPAY), for orderquery.
    pub trade_state: HashMap<String, String>,
    pub close_err: Option<&'static str>,
    pub refund_err: Option<&'static str>,
    /// How the refund answer goes wrong after WeChat took the refund:
    /// `bad-sign` (signed with another key), `bad-field` (a malformed
    /// `refund_fee`), `http500`.
    pub refund_fault: Option<&'static str>,
    /// out_trade_no → its refunds at WeChat (`out_refund_no`, fee, status),
    /// for refundquery (REFUNDNOTEXIST when none).
    pub refunds: HashMap<String, Vec<(String, u64, &'static str)>>,
}

#[derive(Clone)]
pub struct Stub {
    pub config: Config,
    pub state: Arc<Mutex<Inner>>,
}

impl Stub {
    pub async fn start(sign_type: SignType) -> Stub {
        let state = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = Config::new(APPID, MCH_ID, ApiKey::new(KEY))
            .with_sign_type(sign_type)
            .with_api_base(&base)
            .with_open_api_base(&base)
            .with_notify_url("https://shop.example.com/pay/notify")
            .with_app_secret(wxpay_core::AppSecret::new("app-secret"));
        let stub = Stub {
            config: config.clone(),
            state: state.clone(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(stub.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        stub
    }

    /// A client with a (test) merchant certificate, so refunds can be sent.
    pub fn client(&self) -> Client {
        let data = |name: &str| {
            std::fs::read(format!(
                "{}/tests/data/cert/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let id = ClientIdentity::from_pem(&data("cert.pem"), &data("key.pem"));
        Client::with_identity(self.config.clone(), &id).unwrap()
    }

    pub fn script(&self, s: impl IntoIterator<Item = Script>) {
        self.state.lock().unwrap().unified.extend(s);
    }

    pub fn set_trade_state(&self, out_trade_no: &str, state: &str) {
        self.state
            .lock()
            .unwrap()
            .trade_state
            .insert(out_trade_no.to_owned(), state.to_owned());
    }

    pub fn set_refunds(&self, out_trade_no: &str, refunds: &[(&str, u64, &'static str)]) {
        self.state.lock().unwrap().refunds.insert(
            out_trade_no.to_owned(),
            refunds
                .iter()
                .map(|(n, f, s)| ((*n).to_owned(), *f, *s))
                .collect(),
        );
    }

    pub fn requests(&self, path: &str) -> Vec<Params> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn answer(config: &Config, err: Option<&str>, fields: &[(&str, String)]) -> String {
    let mut p = Params::new();
    p.insert("return_code", "SUCCESS");
    p.insert("return_msg", "OK");
    p.insert("appid", config.appid.as_str());
    p.insert("mch_id", config.mch_id.as_str());
    p.insert("nonce_str", wxpay_core::types::nonce_str());
    match err {
        None => {
            p.insert("result_code", "SUCCESS");
            for (k, v) in fields {
                p.insert(*k, v.as_str());
            }
        }
        Some(code) => {
            p.insert("result_code", "FAIL");
            p.insert("err_code", code);
            p.insert("err_code_des", "stub");
        }
    }
    let s = sign::sign(&p, &config.api_key, config.sign_type);
    p.insert("sign", s);
    xml::to_xml(&p)
}

async fn handle(State(stub): State<Stub>, uri: Uri, body: Bytes) -> axum::response::Response {
    let path = uri.path().to_owned();
    let c = &stub.config;
    if path == "/sns/jscode2session" {
        let code = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("js_code="))
            .unwrap_or("")
            .to_owned();
        // `err<n>` plays WeChat refusing the code with errcode n.
        if let Some(errcode) = code.strip_prefix("err").and_then(|n| n.parse::<i64>().ok()) {
            return axum::Json(serde_json::json!({ "errcode": errcode, "errmsg": "refused" }))
                .into_response();
        }
        return axum::Json(serde_json::json!({
            "openid": format!("o-{code}"),
            "session_key": "c2Vzc2lvbmtleQ==",
            "unionid": "u-1",
        }))
        .into_response();
    }
    let req = xml::parse(&body).unwrap();
    sign::verify(&req, &c.api_key, c.sign_type).expect("requests are signed");
    let no = req.get("out_trade_no").unwrap_or("").to_owned();
    let script = {
        let mut s = stub.state.lock().unwrap();
        s.requests.push((path.clone(), req.clone()));
        if path == "/pay/unifiedorder" {
            s.unified.pop_front().unwrap_or(Script::Ok)
        } else {
            Script::Ok
        }
    };
    let xml = match path.as_str() {
        "/pay/unifiedorder" => match script {
            Script::Http500 => {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
            }
            Script::Business(code) => answer(c, Some(code), &[]),
            Script::Ok | Script::Delay(_) => {
                if let Script::Delay(d) = script {
                    tokio::time::sleep(d).await;
                }
                let tt = req.get("trade_type").unwrap_or("JSAPI").to_owned();
                let mut f = vec![
                    ("trade_type", tt.clone()),
                    ("prepay_id", format!("wx-prepay-{no}")),
                ];
                if tt == "NATIVE" {
                    f.push(("code_url", format!("weixin://wxpay/bizpayurl?pr={no}")));
                }
                answer(c, None, &f)
            }
        },
        "/pay/orderquery" => {
            let state = stub
                .state
                .lock()
                .unwrap()
                .trade_state
                .get(&no)
                .cloned()
                .unwrap_or_else(|| "NOTPAY".into());
            let mut f = vec![("out_trade_no", no.clone()), ("trade_state", state.clone())];
            if state == "SUCCESS" || state == "REFUND" {
                let fee = stub
                    .state
                    .lock()
                    .unwrap()
                    .requests
                    .iter()
                    .find(|(p, r)| p == "/pay/unifiedorder" && r.get("out_trade_no") == Some(&no))
                    .and_then(|(_, r)| r.get("total_fee").map(str::to_owned))
                    .unwrap_or_else(|| "1".into());
                f.extend([
                    ("total_fee", fee.clone()),
                    ("cash_fee", fee),
                    ("transaction_id", format!("42000{no}")),
                    ("time_end", "20250101120000".into()),
                    ("bank_type", "OTHERS".into()),
                    ("trade_type", "JSAPI".into()),
                ]);
            }
            answer(c, None, &f)
        }
        "/pay/closeorder" => answer(c, stub.state.lock().unwrap().close_err, &[]),
        "/pay/refundquery" => {
            let refunds = stub.state.lock().unwrap().refunds.get(&no).cloned();
            match refunds.filter(|r| !r.is_empty()) {
                None => answer(c, Some("REFUNDNOTEXIST"), &[]),
                Some(list) => {
                    let mut f: Vec<(String, String)> = vec![
                        ("out_trade_no".into(), no.clone()),
                        ("refund_count".into(), list.len().to_string()),
                    ];
                    for (i, (n, fee, st)) in list.iter().enumerate() {
                        f.push((format!("out_refund_no_{i}"), n.clone()));
                        f.push((format!("refund_fee_{i}"), fee.to_string()));
                        f.push((format!("refund_status_{i}"), (*st).to_owned()));
                        f.push((format!("refund_id_{i}"), format!("5000{i}{n}")));
                    }
                    let f: Vec<(&str, String)> =
                        f.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                    answer(c, None, &f)
                }
            }
        }
        "/secapi/pay/refund" => {
            let (err, fault) = {
                let mut s = stub.state.lock().unwrap();
                if s.refund_err.is_none() {
                    // WeChat takes it (once per number).
                    let out_refund_no = req.get("out_refund_no").unwrap_or("").to_owned();
                    let fee: u64 = req.get("refund_fee").unwrap_or("0").parse().unwrap_or(0);
                    let list = s.refunds.entry(no.clone()).or_default();
                    if !list.iter().any(|(n, _, _)| *n == out_refund_no) {
                        list.push((out_refund_no, fee, "PROCESSING"));
                    }
                }
                (s.refund_err, s.refund_fault)
            };
            match fault {
                Some("http500") => {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
                }
                Some("bad-sign") => {
                    let wrong = Config::new(
                        APPID,
                        MCH_ID,
                        ApiKey::new("wrong-key-wrong-key-wrong-key-00"),
                    )
                    .with_sign_type(c.sign_type);
                    let body = answer(&wrong, err, &[("out_trade_no", no.clone())]);
                    return body.into_response();
                }
                Some("bad-field") => {
                    let body = answer(
                        c,
                        err,
                        &[("out_trade_no", no.clone()), ("refund_fee", "1.5".into())],
                    );
                    return body.into_response();
                }
                _ => {}
            }
            answer(
                c,
                err,
                &[
                    ("out_trade_no", no.clone()),
                    (
                        "out_refund_no",
                        req.get("out_refund_no").unwrap_or("").into(),
                    ),
                    ("refund_id", "50000000000001".into()),
                    ("refund_fee", req.get("refund_fee").unwrap_or("").into()),
                    ("total_fee", req.get("total_fee").unwrap_or("").into()),
                    ("cash_fee", req.get("total_fee").unwrap_or("").into()),
                ],
            )
        }
        other => panic!("stub: unexpected path {other}"),
    };
    xml.into_response()
}
