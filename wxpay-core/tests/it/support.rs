//! Shared test helpers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use md5::{Digest, Md5};
use wxpay_core::{ApiKey, BoxError, Config, HttpRequest, HttpResponse, Params, Transport};

pub const APPID: &str = "wxd930ea5d5a258f4f";
pub const MCH_ID: &str = "10000100";
pub const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

pub fn config() -> Config {
    Config::new(APPID, MCH_ID, ApiKey::new(KEY))
        .with_api_base("http://wechat.test")
        .with_notify_url("https://shop.example.com/pay/notify")
}

/// MD5 signature computed from the spec's rules, independently of the crate.
pub fn md5_sign(pairs: &[(&str, &str)], key: &str) -> String {
    let mut sorted: Vec<_> = pairs
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut s = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    s.push_str("&key=");
    s.push_str(key);
    format!("{:X}", Md5::digest(s.as_bytes()))
}

/// A transport that records requests and plays back canned answers.
#[derive(Clone, Default)]
pub struct Recorder {
    pub sent: Arc<Mutex<Vec<HttpRequest>>>,
    replies: Arc<Mutex<VecDeque<Result<HttpResponse, String>>>>,
}

impl Recorder {
    pub fn reply_xml(&self, body: String) -> &Self {
        self.replies
            .lock()
            .unwrap()
            .push_back(Ok(HttpResponse::new(200, body)));
        self
    }

    pub fn reply(&self, r: Result<HttpResponse, String>) -> &Self {
        self.replies.lock().unwrap().push_back(r);
        self
    }

    pub fn sent(&self) -> Vec<HttpRequest> {
        self.sent.lock().unwrap().clone()
    }
}

impl Transport for Recorder {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, BoxError> {
        self.sent.lock().unwrap().push(req);
        let next = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err("no canned reply".into()));
        next.map_err(BoxError::from)
    }
}

/// A signed SUCCESS/SUCCESS answer with `extra` business fields.
pub fn signed_answer(extra: &[(&str, &str)]) -> String {
    let mut p: Params = [
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "IITRi8Iabbblz1Jc"),
        ("result_code", "SUCCESS"),
    ]
    .into_iter()
    .collect();
    for (k, v) in extra {
        p.insert(*k, *v);
    }
    let pairs: Vec<(String, String)> = p.iter().map(|(k, v)| (k.into(), v.into())).collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    p.insert("sign", md5_sign(&refs, KEY));
    wxpay_core::xml::to_xml(&p)
}

/// `tests/data/<file>`, parsed; when the shared spec folder is present
/// (`../shared/spec/<file>` from the repository root) the copy must equal it.
pub fn spec_vectors(file: &str) -> serde_json::Value {
    let dir = env!("CARGO_MANIFEST_DIR");
    let here = format!("{dir}/tests/data/{file}");
    let text = std::fs::read_to_string(&here).unwrap_or_else(|e| panic!("{here}: {e}"));
    let shared = format!("{dir}/../../shared/spec/{file}");
    if let Ok(original) = std::fs::read_to_string(&shared) {
        assert_eq!(text, original, "tests/data/{file} differs from {shared}");
    }
    serde_json::from_str(&text).unwrap()
}
