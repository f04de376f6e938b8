//! Test helpers: an independent signer (straight from spec section 2), a
//! client for the simulator and a scripted notify receiver.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aes::{
    Aes256,
    cipher::{BlockDecrypt, KeyInit, generic_array::GenericArray},
};
use axum::{Router, body::Bytes, extract::State, routing::post};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use wxpay_sim::{SimConfig, SimHandle, Simulator};

pub type Fields = BTreeMap<String, String>;

/// stringSignTemp: non-empty fields but `sign`, sorted by name bytes, `&key=K`.
pub fn string_sign_temp(fields: &Fields, key: &str) -> String {
    let mut s: String = fields
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}&"))
        .collect();
    s.push_str("key=");
    s.push_str(key);
    s
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Signs per spec 2.1 with `MD5` or `HMAC-SHA256`.
pub fn spec_sign(fields: &Fields, key: &str, sign_type: &str) -> String {
    let temp = string_sign_temp(fields, key);
    match sign_type {
        "MD5" => hex_upper(&Md5::digest(temp.as_bytes())),
        "HMAC-SHA256" => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(temp.as_bytes());
            hex_upper(&mac.finalize().into_bytes())
        }
        other => panic!("unknown sign type {other}"),
    }
}

/// A `<xml>` body with every value in CDATA.
pub fn xml_body(fields: &Fields) -> String {
    let mut s = String::from("<xml>");
    for (k, v) in fields {
        s.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
    }
    s.push_str("</xml>");
    s
}

pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn parse(body: &str) -> Fields {
    wxpay_core::xml::parse(body.as_bytes())
        .unwrap_or_else(|e| panic!("reply is not v2 XML ({e}): {body}"))
        .into_inner()
}

pub fn fast_config() -> SimConfig {
    SimConfig::test().with_time_scale(0.001)
}

pub struct Env {
    pub sim: SimHandle,
    pub cfg: SimConfig,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Env {
        Self::with(fast_config()).await
    }

    pub async fn with(cfg: SimConfig) -> Env {
        let sim = Simulator::start(cfg.clone()).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Env { sim, cfg, http }
    }

    pub fn key(&self) -> &str {
        self.cfg.api_key.expose()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    /// The common fields, with `sign_type` when `sign_type` is not `None`.
    pub fn base(&self, sign_type: Option<&str>) -> Fields {
        let mut f = fields(&[
            ("appid", &self.cfg.appid),
            ("mch_id", &self.cfg.mch_id),
            ("nonce_str", &wxpay_core::types::nonce_str()),
        ]);
        if let Some(t) = sign_type {
            f.insert("sign_type".into(), t.into());
        }
        f
    }

    /// Posts JSON to the control API: the status and the answer (JSON, or
    /// the text as a JSON string when it is not JSON).
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    /// A JSON answer of the control API.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        r.json().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Signs `f` (with the algorithm named by its `sign_type`, MD5 if none),
    /// posts it, and checks the reply: `return_code=FAIL` carries no sign;
    /// anything else is signed with the request's algorithm and no `sign_type`.
    pub async fn call(&self, path: &str, mut f: Fields) -> Fields {
        let st = self.sign(&mut f);
        self.send_checked(path, &f, &st).await
    }

    /// [`Env::call`] without checking the reply's signature.
    pub async fn call_unverified(&self, path: &str, mut f: Fields) -> Fields {
        self.sign(&mut f);
        self.send(path, &f).await
    }

    /// Adds `sign` (algorithm named by `sign_type`, MD5 if none); returns
    /// the algorithm.
    fn sign(&self, f: &mut Fields) -> String {
        let st = f.get("sign_type").cloned().unwrap_or_else(|| "MD5".into());
        let s = spec_sign(f, self.key(), &st);
        f.insert("sign".into(), s);
        st
    }

    async fn send(&self, path: &str, f: &Fields) -> Fields {
        let (status, body) = self.post_raw(path, xml_body(f)).await;
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    pub async fn send_checked(&self, path: &str, f: &Fields, st: &str) -> Fields {
        let reply = self.send(path, f).await;
        assert_reply_signed(&reply, self.key(), st);
        reply
    }
}

/// The spec 2.4 rule for replies.
pub fn assert_reply_signed(reply: &Fields, key: &str, st: &str) {
    if reply["return_code"] == "FAIL" {
        assert!(
            !reply.contains_key("sign"),
            "FAIL reply is signed: {reply:?}"
        );
        return;
    }
    assert_eq!(reply["return_code"], "SUCCESS");
    assert!(!reply.contains_key("sign_type"), "{reply:?}");
    let sign = reply.get("sign").expect("SUCCESS reply without sign");
    assert_eq!(sign.len(), if st == "MD5" { 32 } else { 64 });
    assert_eq!(*sign, spec_sign(reply, key, st), "reply sign: {reply:?}");
}

pub fn assert_err(reply: &Fields, code: &str) {
    assert_eq!(reply["return_code"], "SUCCESS", "{reply:?}");
    assert_eq!(reply["result_code"], "FAIL", "{reply:?}");
    assert_eq!(reply["err_code"], code, "{reply:?}");
    assert!(!reply["err_code_des"].is_empty());
}

pub fn assert_ok(reply: &Fields) {
    assert_eq!(reply["return_code"], "SUCCESS", "{reply:?}");
    assert_eq!(reply["result_code"], "SUCCESS", "{reply:?}");
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &wxpay_core::types::nonce_str()[..16])
}

/// Spec 12.2, written independently of the simulator.
pub fn decrypt(req_info: &str, api_key: &str) -> String {
    let key: String = Md5::digest(api_key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cipher = Aes256::new(GenericArray::from_slice(key.as_bytes()));
    let mut data = STANDARD.decode(req_info).unwrap();
    assert_eq!(data.len() % 16, 0);
    for block in data.chunks_exact_mut(16) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    let pad = *data.last().unwrap() as usize;
    assert!((1..=16).contains(&pad));
    assert!(data[data.len() - pad..].iter().all(|b| *b as usize == pad));
    data.truncate(data.len() - pad);
    String::from_utf8(data).unwrap()
}

/// A secapi refund request (HMAC-SHA256).
pub fn refund_req(
    env: &Env,
    no: &str,
    refund_no: &str,
    total: &str,
    fee: &str,
    url: Option<&str>,
) -> Fields {
    let mut f = env.base(Some("HMAC-SHA256"));
    f.insert("out_trade_no".into(), no.into());
    f.insert("out_refund_no".into(), refund_no.into());
    f.insert("total_fee".into(), total.into());
    f.insert("refund_fee".into(), fee.into());
    if let Some(u) = url {
        f.insert("notify_url".into(), u.into());
    }
    f
}

/// The decrypted `<root>` of a refund notify body (spec 12).
pub fn refund_notify(body: &str, api_key: &str) -> Fields {
    let outer = parse(body);
    assert!(
        !outer.contains_key("sign"),
        "refund notifies are not signed"
    );
    let plain = decrypt(&outer["req_info"], api_key);
    wxpay_core::xml::parse_with(plain.as_bytes(), "root", 1 << 16)
        .unwrap()
        .into_inner()
}

/// A refund of `fee` from an 88-fen order through `/secapi/pay/refund`,
/// its answer checked like [`Env::call`]'s.
pub async fn api_refund(env: &Env, no: &str, refund_no: &str, fee: &str) -> Fields {
    let req = refund_req(env, no, refund_no, "88", fee, None);
    env.call("/secapi/pay/refund", req).await
}

/// A refundquery request by `key`.
pub fn refundquery(env: &Env, key: &str, value: &str) -> Fields {
    let mut f = env.base(None);
    f.insert(key.into(), value.into());
    f
}

/// A fast simulator (scale 0.001) whose refunds stay `PROCESSING` for
/// `delay` (before scaling) and notify `recv` unless told otherwise.
pub async fn refund_env(delay: Duration, recv: &Receiver) -> Env {
    let cfg = fast_config()
        .with_refund_delay(delay)
        .with_refund_notify_url(&recv.url);
    Env::with(cfg).await
}

/// A new order of 88 fen, paid.
pub async fn paid_order(env: &Env, prefix: &str) -> String {
    let no = unique(prefix);
    create_order(env, &no, "http://127.0.0.1:9/pay", None).await;
    env.sim.pay(&no).await.unwrap();
    no
}

/// A JSAPI unifiedorder request for `out_trade_no`.
pub fn order_fields(env: &Env, out_trade_no: &str, notify_url: &str, st: Option<&str>) -> Fields {
    let mut f = env.base(st);
    for (k, v) in [
        ("body", "腾讯-游戏"),
        ("out_trade_no", out_trade_no),
        ("total_fee", "88"),
        ("spbill_create_ip", "127.0.0.1"),
        ("notify_url", notify_url),
        ("trade_type", "JSAPI"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("attach", "shop=12&floor=3"),
    ] {
        f.insert(k.into(), v.into());
    }
    f
}

pub async fn create_order(
    env: &Env,
    out_trade_no: &str,
    notify_url: &str,
    st: Option<&str>,
) -> Fields {
    let reply = env
        .call(
            "/pay/unifiedorder",
            order_fields(env, out_trade_no, notify_url, st),
        )
        .await;
    assert_ok(&reply);
    reply
}

/// A notify receiver on 127.0.0.1:0 answering from a script, then SUCCESS.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct RecvState {
    script: Arc<Mutex<Vec<&'static str>>>,
    received: Arc<Mutex<Vec<String>>>,
}

pub const SUCCESS_XML: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
pub const FAIL_XML: &str = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[busy]]></return_msg></xml>";

impl Receiver {
    pub async fn start(script: Vec<&'static str>) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = RecvState {
            script: Arc::new(Mutex::new(script.into_iter().rev().collect())),
            received: Arc::clone(&received),
        };
        async fn handler(State(s): State<RecvState>, body: Bytes) -> String {
            s.received
                .lock()
                .unwrap()
                .push(String::from_utf8(body.to_vec()).unwrap());
            s.script
                .lock()
                .unwrap()
                .pop()
                .unwrap_or(SUCCESS_XML)
                .to_owned()
        }
        let app = Router::new()
            .route("/notify", post(handler))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/notify"),
            received,
        }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` bodies arrived (bounded).
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let b = self.bodies();
            if b.len() >= n || tokio::time::Instant::now() >= deadline {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Polls `f` until it returns `Some` (bounded by 5 s).
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
