//! API v3: requests signed with `wxpay_core::v3::Credential`, every answer
//! and notify checked with the core's validators.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};
use wxpay_core::v3::{
    ApiV3Key, CertificateVerifier, Credential, EncryptedResource, NotifyValidator,
    PlatformCertificate, ResponseValidator, ValidationError, Verifier, WechatpayHeaders,
    decrypt_certificates,
};
use wxpay_sim::{
    Faults, NotifyKind, Protocol, RefundResult, SimConfig, SimHandle, Simulator, VerifyMode,
};

use crate::common::{Env, create_order, eventually, fast_config, unique};

const PLATFORM_SERIAL: &str = "5A1B2C3D4E5F60718293A4B5C6D7E8F901234567";
const PUB_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000000001";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn validate(&self, verifier: impl Verifier) -> Result<(), ValidationError> {
        let headers = WechatpayHeaders::from_pairs(
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        ResponseValidator::new(verifier).validate(self.status, &headers, &self.body, now())
    }

    fn serial(&self) -> &str {
        self.header("Wechatpay-Serial").unwrap_or_default()
    }
}

/// A v3 merchant client of the simulator.
pub(crate) struct Client {
    base: String,
    credential: Credential,
    http: reqwest::Client,
    /// Sent as `Wechatpay-Serial` on every request when set.
    serial_header: Option<String>,
}

impl Client {
    pub(crate) fn new(sim: &SimHandle) -> Client {
        Client {
            base: sim.base_url(),
            credential: sim.v3_merchant().credential().expect("merchant key known"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            serial_header: None,
        }
    }

    pub(crate) async fn call(&self, method: &str, url: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = self
            .credential
            .authorization(
                method,
                url,
                &now().to_string(),
                &unique("n"),
                body.as_bytes(),
            )
            .unwrap();
        self.send(method, url, body, &auth).await
    }

    pub(crate) async fn send(&self, method: &str, url: &str, body: String, auth: &str) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{url}", self.base))
            .header("Authorization", auth)
            .header("Accept", "application/json");
        if !body.is_empty() {
            req = req.header("Content-Type", "application/json").body(body);
        }
        if let Some(s) = &self.serial_header {
            req = req.header("Wechatpay-Serial", s);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = resp.bytes().await.unwrap().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }
}

pub(crate) fn jsapi_body(
    sim: &SimHandle,
    out_trade_no: &str,
    total: u64,
    notify_url: &str,
) -> Value {
    let c = sim.config();
    json!({
        "appid": c.appid,
        "mchid": c.mch_id,
        "description": "模拟商店-商品",
        "out_trade_no": out_trade_no,
        "notify_url": notify_url,
        "attach": "a1",
        "amount": { "total": total, "currency": "CNY" },
        "payer": { "openid": "oUser123" },
    })
}

pub(crate) fn cert_verifier() -> CertificateVerifier {
    CertificateVerifier::with_certificates([PlatformCertificate::from_pem(include_str!(
        "../../data/v3_platform_cert.pem"
    ))
    .unwrap()])
}

fn assert_error(resp: &Resp, status: u16, code: &str) {
    assert_eq!(
        (resp.status, resp.json()["code"].as_str()),
        (status, Some(code)),
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
}

async fn start(cfg: SimConfig) -> (SimHandle, Client) {
    let sim = Simulator::start(cfg).await.unwrap();
    let client = Client::new(&sim);
    (sim, client)
}

#[tokio::test]
async fn cert_mode_prepay_query_refund_round_trip() {
    let (sim, c) = start(fast_config()).await;
    let v = cert_verifier();
    let no = unique("v3a");
    let body = jsapi_body(&sim, &no, 300, "http://127.0.0.1:9/notify");
    let r = c
        .call("POST", "/v3/pay/transactions/jsapi", Some(body.clone()))
        .await;
    assert_eq!(r.status, 200);
    r.validate(&v).unwrap();
    assert_eq!(r.serial(), PLATFORM_SERIAL);
    assert_eq!(
        r.header("Wechatpay-Signature-Type"),
        Some("WECHATPAY2-SHA256-RSA2048")
    );
    assert!(r.header("Request-ID").is_some());
    let prepay_id = r.json()["prepay_id"].as_str().unwrap().to_owned();
    assert!(prepay_id.starts_with("wx"));

    // Re-entry: identical body (keys in another order) → the same prepay_id.
    let reordered: Value = serde_json::from_str(&{
        let mut m: Vec<(String, Value)> = body.as_object().unwrap().clone().into_iter().collect();
        m.reverse();
        serde_json::to_string(&m.into_iter().collect::<serde_json::Map<_, _>>()).unwrap()
    })
    .unwrap();
    let again = c
        .call("POST", "/v3/pay/transactions/jsapi", Some(reordered))
        .await;
    again.validate(&v).unwrap();
    assert_eq!(again.json()["prepay_id"], prepay_id.as_str());
    // Other fields under the same number → 403 OUT_TRADE_NO_USED, signed.
    let other = jsapi_body(&sim, &no, 301, "http://127.0.0.1:9/notify");
    let used = c
        .call("POST", "/v3/pay/transactions/jsapi", Some(other))
        .await;
    used.validate(&v).unwrap();
    assert_error(&used, 403, "OUT_TRADE_NO_USED");

    let q = format!("/v3/pay/transactions/out-trade-no/{no}?mchid=1900000109");
    let r = c.call("GET", &q, None).await;
    r.validate(&v).unwrap();
    assert_eq!(r.json()["trade_state"], "NOTPAY");
    assert!(r.json().get("transaction_id").is_none());

    let order = sim.pay(&no).await.unwrap();
    assert_eq!(order.protocol, Protocol::V3);
    let r = c.call("GET", &q, None).await;
    r.validate(&v).unwrap();
    let t = r.json();
    assert_eq!(t["trade_state"], "SUCCESS");
    assert_eq!(t["amount"]["total"], 300);
    assert_eq!(t["payer"]["openid"], "oUser123");
    assert_eq!(t["attach"], "a1");
    let tid = t["transaction_id"].as_str().unwrap().to_owned();
    assert!(t["success_time"].as_str().unwrap().ends_with("+08:00"));
    let by_id = c
        .call(
            "GET",
            &format!("/v3/pay/transactions/id/{tid}?mchid=1900000109"),
            None,
        )
        .await;
    by_id.validate(&v).unwrap();
    assert_eq!(by_id.json()["out_trade_no"], no.as_str());
    let missing = c
        .call(
            "GET",
            "/v3/pay/transactions/out-trade-no/nosuch123?mchid=1900000109",
            None,
        )
        .await;
    missing.validate(&v).unwrap();
    assert_error(&missing, 404, "ORDER_NOT_EXIST");
    let no_mchid = c
        .call(
            "GET",
            &format!("/v3/pay/transactions/out-trade-no/{no}"),
            None,
        )
        .await;
    assert_error(&no_mchid, 400, "PARAM_ERROR");
    assert_eq!(no_mchid.json()["detail"]["field"], "mchid");

    // Refund: PROCESSING, then SUCCESS after the (scaled) delay.
    let refund = |refund_no: &str, fee: u64| {
        json!({
            "out_trade_no": no,
            "out_refund_no": refund_no,
            "reason": "不想要了",
            "amount": { "refund": fee, "total": 300, "currency": "CNY" },
        })
    };
    let rno = unique("r");
    let r = c
        .call(
            "POST",
            "/v3/refund/domestic/refunds",
            Some(refund(&rno, 100)),
        )
        .await;
    r.validate(&v).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "PROCESSING");
    assert_eq!(r.json()["amount"]["refund"], 100);
    let refund_id = r.json()["refund_id"].as_str().unwrap().to_owned();
    // The same refund again is the same refund.
    let r2 = c
        .call(
            "POST",
            "/v3/refund/domestic/refunds",
            Some(refund(&rno, 100)),
        )
        .await;
    assert_eq!(r2.json()["refund_id"], refund_id.as_str());
    // More than what is left → 400 INVALID_REQUEST.
    let too_much = c
        .call(
            "POST",
            "/v3/refund/domestic/refunds",
            Some(refund(&unique("r"), 201)),
        )
        .await;
    too_much.validate(&v).unwrap();
    assert_error(&too_much, 400, "INVALID_REQUEST");
    let path = format!("/v3/refund/domestic/refunds/{rno}");
    let done = eventually(|| async {
        let r = c.call("GET", &path, None).await;
        r.validate(&v).unwrap();
        (r.json()["status"] == "SUCCESS").then(|| r.json())
    })
    .await;
    assert!(done["success_time"].as_str().is_some());
    assert_eq!(done["out_trade_no"], no.as_str());
    let unknown = c
        .call("GET", "/v3/refund/domestic/refunds/nosuch", None)
        .await;
    assert_error(&unknown, 404, "RESOURCE_NOT_EXISTS");
    let unpaid = unique("v3u");
    c.call(
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(jsapi_body(&sim, &unpaid, 10, "http://127.0.0.1:9/notify")),
    )
    .await;
    let r = c
        .call(
            "POST",
            "/v3/refund/domestic/refunds",
            Some(json!({"out_trade_no": unpaid, "out_refund_no": unique("r"),
                "amount": {"refund": 1, "total": 10, "currency": "CNY"}})),
        )
        .await;
    assert_error(&r, 404, "RESOURCE_NOT_EXISTS");

    // The order as the control API sees it.
    let o = sim.order(&no).await.unwrap();
    assert_eq!(o.refunds[0].protocol, Protocol::V3);
}

#[tokio::test]
async fn close_answers_204_signed_over_empty_body() {
    let (sim, c) = start(fast_config()).await;
    let v = cert_verifier();
    let no = unique("v3c");
    c.call(
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(jsapi_body(&sim, &no, 5, "http://127.0.0.1:9/notify")),
    )
    .await;
    let close = format!("/v3/pay/transactions/out-trade-no/{no}/close");
    let r = c
        .call("POST", &close, Some(json!({"mchid": "1900000109"})))
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    r.validate(&v).unwrap();
    let q = c
        .call(
            "GET",
            &format!("/v3/pay/transactions/out-trade-no/{no}?mchid=1900000109"),
            None,
        )
        .await;
    assert_eq!(q.json()["trade_state"], "CLOSED");
    // A closed order cannot be prepaid again.
    let again = c
        .call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(jsapi_body(&sim, &no, 5, "http://127.0.0.1:9/notify")),
        )
        .await;
    assert_error(&again, 400, "ORDER_CLOSED");
    assert!(sim.pay(&no).await.is_err());
}

#[tokio::test]
async fn pubkey_mode_signs_with_the_public_key_and_has_no_certificates() {
    let (sim, c) = start(fast_config().with_verify_mode(VerifyMode::PubKey)).await;
    let m = sim.v3_merchant();
    assert_eq!(m.public_key_id, PUB_KEY_ID);
    let v = m.public_key_verifier();
    let no = unique("v3n");
    let mut body = jsapi_body(&sim, &no, 42, "http://127.0.0.1:9/notify");
    body.as_object_mut().unwrap().remove("payer");
    let r = c
        .call("POST", "/v3/pay/transactions/native", Some(body))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.serial(), PUB_KEY_ID);
    r.validate(&v).unwrap();
    // Not the certificate's signature.
    assert!(r.validate(cert_verifier()).is_err());
    assert!(
        r.json()["code_url"]
            .as_str()
            .unwrap()
            .starts_with("weixin://wxpay/bizpayurl?pr=")
    );
    sim.pay(&no).await.unwrap();
    let q = c
        .call(
            "GET",
            &format!("/v3/pay/transactions/out-trade-no/{no}?mchid=1900000109"),
            None,
        )
        .await;
    q.validate(&v).unwrap();
    assert_eq!(q.json()["trade_type"], "NATIVE");
    assert_eq!(q.json()["trade_state"], "SUCCESS");
    let refund = c
        .call(
            "POST",
            "/v3/refund/domestic/refunds",
            Some(
                json!({"transaction_id": q.json()["transaction_id"], "out_refund_no": unique("r"),
                "amount": {"refund": 42, "total": 42, "currency": "CNY"}}),
            ),
        )
        .await;
    refund.validate(&v).unwrap();
    assert_eq!(refund.json()["out_trade_no"], no.as_str());
    let certs = c.call("GET", "/v3/certificates", None).await;
    certs.validate(&v).unwrap();
    assert_error(&certs, 404, "NOT_FOUND");
}

#[tokio::test]
async fn bad_signature_skew_and_wrong_mchid_are_401_unsigned() {
    let (sim, c) = start(fast_config()).await;
    let url = "/v3/pay/transactions/jsapi";
    let body = jsapi_body(&sim, &unique("v3s"), 1, "http://127.0.0.1:9/notify").to_string();
    let ts = now().to_string();
    let good = c
        .credential
        .authorization("POST", url, &ts, "nonce1", body.as_bytes())
        .unwrap();

    // The body changed after signing.
    let tampered = body.replace("\"total\":1", "\"total\":2");
    let r = c.send("POST", url, tampered, &good).await;
    assert_error(&r, 401, "SIGN_ERROR");
    assert!(r.header("Wechatpay-Signature").is_none());
    assert_eq!(
        r.validate(cert_verifier()),
        Err(ValidationError::Unauthenticated)
    );
    assert_eq!(r.json()["detail"]["sign_information"]["url"], url);

    // Signed by another key (the platform's) under the merchant serial.
    let other = Credential::new(
        "1900000109",
        "3D2C1B0A99887766554433221100FFEEDDCCBBAA",
        wxpay_core::v3::MerchantKey::from_pem(include_str!("../../data/v3_platform_key.pem"))
            .unwrap(),
    );
    let auth = other
        .authorization("POST", url, &ts, "nonce2", body.as_bytes())
        .unwrap();
    assert_error(
        &c.send("POST", url, body.clone(), &auth).await,
        401,
        "SIGN_ERROR",
    );

    // Clock skew beyond 5 minutes, either way.
    for skew in [-301, 301] {
        let ts = (now() + skew).to_string();
        let auth = c
            .credential
            .authorization("POST", url, &ts, "nonce3", body.as_bytes())
            .unwrap();
        let r = c.send("POST", url, body.clone(), &auth).await;
        assert_error(&r, 401, "SIGN_ERROR");
        assert!(r.json()["message"].as_str().unwrap().contains("5分钟"));
    }

    // Another mchid, another serial, no header, another scheme.
    let key = || {
        wxpay_core::v3::MerchantKey::from_pem(include_str!("../../data/v3_merchant_key.pem"))
            .unwrap()
    };
    for cred in [
        Credential::new(
            "1900000999",
            "3D2C1B0A99887766554433221100FFEEDDCCBBAA",
            key(),
        ),
        Credential::new(
            "1900000109",
            "3D2C1B0A99887766554433221100FFEEDDCCBBAB",
            key(),
        ),
    ] {
        let auth = cred
            .authorization("POST", url, &ts, "nonce4", body.as_bytes())
            .unwrap();
        assert_error(
            &c.send("POST", url, body.clone(), &auth).await,
            401,
            "SIGN_ERROR",
        );
    }
    assert_error(
        &c.send("POST", url, body.clone(), "").await,
        401,
        "SIGN_ERROR",
    );
    let basic = good.replacen("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3", 1);
    assert_error(
        &c.send("POST", url, body.clone(), &basic).await,
        401,
        "SIGN_ERROR",
    );

    // The untampered request goes through.
    let r = c.send("POST", url, body, &good).await;
    assert_eq!(r.status, 200);
    r.validate(cert_verifier()).unwrap();
    // No order was created by the refused ones.
    assert!(sim.notifies().await.is_empty());
}

#[tokio::test]
async fn field_errors_are_param_error_with_detail() {
    let (sim, c) = start(fast_config()).await;
    let url = "/v3/pay/transactions/jsapi";
    let mut zero = jsapi_body(&sim, &unique("v3f"), 0, "http://127.0.0.1:9/notify");
    let r = c.call("POST", url, Some(zero.clone())).await;
    assert_error(&r, 400, "PARAM_ERROR");
    assert_eq!(r.json()["detail"]["field"], "/amount/total");
    zero["amount"]["total"] = json!(1);
    zero.as_object_mut().unwrap().remove("payer");
    let r = c.call("POST", url, Some(zero.clone())).await;
    assert_eq!(r.json()["detail"]["field"], "/payer/openid");
    zero["payer"] = json!({"openid": "o1"});
    zero["appid"] = json!("wx0000000000000000");
    assert_error(
        &c.call("POST", url, Some(zero.clone())).await,
        400,
        "APPID_MCHID_NOT_MATCH",
    );
    zero["appid"] = json!(sim.config().appid);
    zero["notify_url"] = json!("https://example.com/n?x=1");
    assert_error(
        &c.call("POST", url, Some(zero.clone())).await,
        400,
        "PARAM_ERROR",
    );
    zero["notify_url"] = json!(null);
    assert_error(&c.call("POST", url, Some(zero)).await, 400, "PARAM_ERROR");
    let r = c.call("POST", url, None).await;
    assert_error(&r, 400, "PARAM_ERROR");
    r.validate(cert_verifier()).unwrap();
}

#[tokio::test]
async fn one_numbering_space_for_v2_and_v3() {
    let env = Env::with(fast_config()).await;
    let c = Client::new(&env.sim);
    let no = unique("both");
    create_order(&env, &no, "http://127.0.0.1:9/notify", None).await;
    let r = c
        .call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(jsapi_body(&env.sim, &no, 1, "http://127.0.0.1:9/notify")),
        )
        .await;
    assert_error(&r, 403, "OUT_TRADE_NO_USED");
    // v3 can query the v2 order.
    let q = c
        .call(
            "GET",
            &format!("/v3/pay/transactions/out-trade-no/{no}?mchid=1900000109"),
            None,
        )
        .await;
    assert_eq!(q.json()["trade_state"], "NOTPAY");
    assert_eq!(env.sim.order(&no).await.unwrap().protocol, Protocol::V2);
}

#[tokio::test]
async fn certificates_decrypt_verify_and_rotate() {
    // 24 h of rotation grace become 0.864 s.
    let (sim, c) = start(SimConfig::test().with_time_scale(0.00001)).await;
    let key = ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEF").unwrap();
    let r = c.call("GET", "/v3/certificates", None).await;
    assert_eq!(r.status, 200);
    let entry = &r.json()["data"][0];
    assert_eq!(
        entry["encrypt_certificate"]["associated_data"],
        "certificate"
    );
    assert_eq!(
        entry["encrypt_certificate"]["nonce"]
            .as_str()
            .unwrap()
            .len(),
        12
    );
    let certs = decrypt_certificates(&r.body, &key).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial_no(), PLATFORM_SERIAL);
    // Bootstrap: the listed certificate verifies the answer itself.
    r.validate(CertificateVerifier::with_certificates(certs))
        .unwrap();

    let rotation = sim.rotate_certificate().await.unwrap();
    assert_eq!(rotation.previous_serial_no, PLATFORM_SERIAL);
    assert_eq!(rotation.serial_no.len(), 40);
    assert!(
        rotation
            .serial_no
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    );
    let r = c.call("GET", "/v3/certificates", None).await;
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2);
    let certs = decrypt_certificates(&r.body, &key).unwrap();
    let serials: Vec<&str> = certs.iter().map(PlatformCertificate::serial_no).collect();
    assert_eq!(serials, [PLATFORM_SERIAL, rotation.serial_no.as_str()]);
    // The old one's expire_time is shortened (to 24 scaled hours: now).
    let old_expire =
        chrono::DateTime::parse_from_rfc3339(data[0]["expire_time"].as_str().unwrap()).unwrap();
    assert!(old_expire < chrono::Utc::now() + chrono::Duration::hours(1));
    assert_eq!(r.serial(), rotation.serial_no);
    r.validate(CertificateVerifier::with_certificates(certs))
        .unwrap();
    // The new certificate signs every answer now.
    let q = c
        .call(
            "GET",
            "/v3/pay/transactions/out-trade-no/nosuch123?mchid=1900000109",
            None,
        )
        .await;
    assert_eq!(q.serial(), rotation.serial_no);
    assert!(q.validate(cert_verifier()).is_err());
    q.validate(sim.v3_merchant().certificate_verifier())
        .unwrap();
    // After the (scaled) grace the old certificate is no longer listed.
    let r = eventually(|| async {
        let r = c.call("GET", "/v3/certificates", None).await;
        (r.json()["data"].as_array().unwrap().len() == 1).then_some(r)
    })
    .await;
    assert_eq!(
        r.json()["data"][0]["serial_no"],
        rotation.serial_no.as_str()
    );
}

/// One received notify: headers and raw body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A v3 notify receiver on 127.0.0.1:0: records headers and raw bodies,
/// answers with the scripted statuses, then 204.
#[derive(Clone)]
struct Listener {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Listener {
    async fn start(script: Vec<u16>) -> Listener {
        type Shared = (Arc<Mutex<Vec<u16>>>, Arc<Mutex<Vec<Received>>>);
        let got = Arc::new(Mutex::new(Vec::new()));
        let state: Shared = (
            Arc::new(Mutex::new(script.into_iter().rev().collect())),
            Arc::clone(&got),
        );
        async fn handler(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            s.1.lock().unwrap().push((headers, body.to_vec()));
            let status = s.0.lock().unwrap().pop().unwrap_or(204);
            StatusCode::from_u16(status).unwrap()
        }
        let app = Router::new()
            .route("/notify", post(handler))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Listener {
            url: format!("http://{addr}/notify"),
            got,
        }
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(|| async {
            let got = self.got.lock().unwrap().clone();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

/// Verifies and decrypts one received notify: (event_type, resource).
fn open_notify(
    headers: &[(String, String)],
    body: &[u8],
    verifier: impl Verifier,
) -> Result<(String, Value), ValidationError> {
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json"))
    );
    let h = WechatpayHeaders::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    NotifyValidator::new(verifier).validate(&h, body, now())?;
    let envelope: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(envelope["resource_type"], "encrypt-resource");
    let resource: EncryptedResource = serde_json::from_value(envelope["resource"].clone()).unwrap();
    let plain = ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEF")
        .unwrap()
        .decrypt_resource(&resource)
        .unwrap();
    Ok((
        envelope["event_type"].as_str().unwrap().to_owned(),
        serde_json::from_slice(&plain).unwrap(),
    ))
}

#[tokio::test]
async fn payment_notify_is_signed_encrypted_and_retried_until_204() {
    let listener = Listener::start(vec![500, 500]).await;
    let (sim, c) = start(fast_config()).await;
    let no = unique("v3p");
    c.call(
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(jsapi_body(&sim, &no, 888, &listener.url)),
    )
    .await;
    sim.pay(&no).await.unwrap();
    let got = listener.wait_for(3).await;
    for (headers, body) in &got {
        let (event, t) = open_notify(headers, body, cert_verifier()).unwrap();
        assert_eq!(event, "TRANSACTION.SUCCESS");
        assert_eq!(t["out_trade_no"], no.as_str());
        assert_eq!(t["trade_state"], "SUCCESS");
        assert_eq!(t["amount"]["total"], 888);
        assert_eq!(t["appid"], sim.config().appid.as_str());
        assert_eq!(t["mchid"], "1900000109");
        let envelope: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(envelope["resource"]["associated_data"], "transaction");
    }
    let (log, done) = sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.iter().any(|a| a.delivered))
        .await;
    assert!(done);
    let attempts: Vec<(u32, Option<u16>, bool)> = log
        .iter()
        .map(|a| (a.attempt, a.status, a.delivered))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Some(500), false),
            (2, Some(500), false),
            (3, Some(204), true)
        ]
    );
    assert!(
        log.iter()
            .all(|a| a.protocol == Protocol::V3 && a.kind == NotifyKind::Payment)
    );
    assert!(
        log.iter()
            .all(|a| a.serial.as_deref() == Some(PLATFORM_SERIAL))
    );
    // No more attempts after the 204 (the next retry would be due in 30 ms).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(listener.got.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn refund_notifies_success_and_closed() {
    let listener = Listener::start(vec![]).await;
    let cfg = fast_config().with_refund_delay(Duration::from_secs(10));
    let (sim, c) = start(cfg).await;
    let no = unique("v3r");
    c.call(
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(jsapi_body(&sim, &no, 100, "http://127.0.0.1:9/unused")),
    )
    .await;
    sim.pay(&no).await.unwrap();
    let refund = |rno: &str, fee: u64| {
        json!({"out_trade_no": no, "out_refund_no": rno, "notify_url": listener.url,
            "amount": {"refund": fee, "total": 100, "currency": "CNY"}})
    };
    let ok_no = unique("rs");
    c.call(
        "POST",
        "/v3/refund/domestic/refunds",
        Some(refund(&ok_no, 30)),
    )
    .await;
    let got = listener.wait_for(1).await;
    let (event, r) = open_notify(&got[0].0, &got[0].1, cert_verifier()).unwrap();
    assert_eq!(event, "REFUND.SUCCESS");
    assert_eq!(r["out_refund_no"], ok_no.as_str());
    assert_eq!(r["refund_status"], "SUCCESS");
    assert_eq!(r["amount"]["refund"], 30);
    assert_eq!(r["amount"]["total"], 100);
    assert_eq!(r["mchid"], "1900000109");
    assert!(r["success_time"].is_string());
    let envelope: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(envelope["resource"]["associated_data"], "refund");

    sim.set_faults(Faults {
        refund_result: RefundResult::RefundClose,
        ..Faults::default()
    })
    .await;
    let closed_no = unique("rc");
    c.call(
        "POST",
        "/v3/refund/domestic/refunds",
        Some(refund(&closed_no, 70)),
    )
    .await;
    let got = listener.wait_for(2).await;
    let (event, r) = open_notify(&got[1].0, &got[1].1, cert_verifier()).unwrap();
    assert_eq!(event, "REFUND.CLOSED");
    assert_eq!(r["refund_status"], "CLOSED");
    assert!(r.get("success_time").is_none());
    sim.set_faults(Faults {
        refund_result: RefundResult::Change,
        ..Faults::default()
    })
    .await;
    // A refund on the merchant platform of a v3 order notifies in v3 too.
    sim.refund_outside(
        wxpay_sim::OutsideRefund::new(&no, wxpay_core::Fen(70))
            .with_out_refund_no("desk-1")
            .with_notify_url(&listener.url),
    )
    .await
    .unwrap();
    let got = listener.wait_for(3).await;
    let (event, r) = open_notify(&got[2].0, &got[2].1, cert_verifier()).unwrap();
    assert_eq!(event, "REFUND.ABNORMAL");
    assert_eq!(r["out_refund_no"], "desk-1");
}

#[tokio::test]
async fn notify_faults_corrupt_signature_and_drop() {
    let listener = Listener::start(vec![]).await;
    let (sim, c) = start(fast_config()).await;
    sim.set_faults(Faults {
        bad_notify_signature_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let no = unique("v3x");
    c.call(
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(jsapi_body(&sim, &no, 1, &listener.url)),
    )
    .await;
    sim.pay(&no).await.unwrap();
    let got = listener.wait_for(1).await;
    assert_eq!(
        open_notify(&got[0].0, &got[0].1, cert_verifier()).unwrap_err(),
        ValidationError::InvalidSignature
    );
    sim.set_faults(Faults {
        signature_probe_rate: 1.0,
        ..Faults::default()
    })
    .await;
    // (The listener acknowledged the first one without checking; pay another.)
    let no2 = unique("v3x");
    c.call(
        "POST",
        "/v3/pay/transactions/jsapi",
        Some(jsapi_body(&sim, &no2, 1, &listener.url)),
    )
    .await;
    sim.pay(&no2).await.unwrap();
    let got = listener.wait_for(2).await;
    assert_eq!(
        open_notify(&got[1].0, &got[1].1, cert_verifier()).unwrap_err(),
        ValidationError::Probe
    );
    // Answers can be probed or corrupted too; FREQUENCY_LIMITED is signed.
    let q = format!("/v3/pay/transactions/out-trade-no/{no}?mchid=1900000109");
    assert_eq!(
        c.call("GET", &q, None).await.validate(cert_verifier()),
        Err(ValidationError::Probe)
    );
    sim.set_faults(Faults {
        bad_answer_signature_rate: 1.0,
        ..Faults::default()
    })
    .await;
    assert_eq!(
        c.call("GET", &q, None).await.validate(cert_verifier()),
        Err(ValidationError::InvalidSignature)
    );
    sim.set_faults(Faults {
        frequency_limited_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let r = c.call("GET", &q, None).await;
    r.validate(cert_verifier()).unwrap();
    assert_error(&r, 429, "FREQUENCY_LIMITED");
    sim.set_faults(Faults {
        system_error_rate: 1.0,
        ..Faults::default()
    })
    .await;
    assert_error(&c.call("GET", &q, None).await, 500, "SYSTEM_ERROR");
}

#[tokio::test]
async fn migration_answers_follow_the_request_serial_and_notifies_mix() {
    let listener = Listener::start(vec![]).await;
    let cfg = fast_config()
        .with_verify_mode(VerifyMode::Migration)
        .with_v3_seed(7);
    let (sim, mut c) = start(cfg).await;
    let m = sim.v3_merchant();
    let q = "/v3/pay/transactions/out-trade-no/nosuch123?mchid=1900000109";
    let r = c.call("GET", q, None).await;
    assert_eq!(r.serial(), PLATFORM_SERIAL);
    r.validate(m.combined_verifier()).unwrap();
    c.serial_header = Some(PUB_KEY_ID.to_owned());
    let r = c.call("GET", q, None).await;
    assert_eq!(r.serial(), PUB_KEY_ID);
    r.validate(m.combined_verifier()).unwrap();
    c.serial_header = Some(PLATFORM_SERIAL.to_owned());
    assert_eq!(c.call("GET", q, None).await.serial(), PLATFORM_SERIAL);
    // /v3/certificates still lists the certificate during the migration.
    assert_eq!(c.call("GET", "/v3/certificates", None).await.status, 200);

    let n = 12;
    for i in 0..n {
        let no = unique(&format!("v3m{i}"));
        c.call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(jsapi_body(&sim, &no, 1, &listener.url)),
        )
        .await;
        sim.pay(&no).await.unwrap();
    }
    let got = listener.wait_for(n).await;
    let mut serials = std::collections::BTreeSet::new();
    for (headers, body) in &got {
        let (event, _) = open_notify(headers, body, m.combined_verifier()).unwrap();
        assert_eq!(event, "TRANSACTION.SUCCESS");
        let serial = headers
            .iter()
            .find(|(k, _)| k == "wechatpay-serial")
            .map(|(_, v)| v.clone())
            .unwrap();
        serials.insert(serial);
    }
    // Seed 7 draws both keys within 12 notifies.
    assert_eq!(
        serials.into_iter().collect::<Vec<_>>(),
        [PLATFORM_SERIAL, PUB_KEY_ID]
    );
}

#[tokio::test]
async fn generated_keys_are_written_to_the_keys_dir() {
    let dir = std::env::temp_dir().join(unique("wxpay-sim-keys"));
    let cfg = fast_config()
        .with_generated_v3_keys()
        .with_verify_mode(VerifyMode::Migration)
        .with_keys_dir(&dir);
    let (sim, c) = start(cfg).await;
    let m = sim.v3_merchant();
    let env = std::fs::read_to_string(dir.join("wxpay.env")).unwrap();
    let line = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {env}"))
            .to_owned()
    };
    assert_eq!(line("WXPAY_API_VERSION"), "v3");
    assert_eq!(line("WXPAY_MCH_ID"), "1900000109");
    assert_eq!(line("WXPAY_APPID"), sim.config().appid);
    assert_eq!(line("WXPAY_API_BASE"), sim.base_url());
    assert_eq!(line("WXPAY_MCH_SERIAL"), m.mch_serial);
    assert_eq!(line("WXPAY_PUBLIC_KEY_ID"), m.public_key_id);
    assert_eq!(line("WXPAY_APIV3_KEY").len(), 32);
    assert_eq!(line("WXPAY_APIV3_KEY"), m.apiv3_key.expose());
    let key_pem = std::fs::read_to_string(line("WXPAY_MCH_PRIVATE_KEY_FILE")).unwrap();
    assert_eq!(
        Some(key_pem.as_str()),
        m.mch_private_key_pem.as_ref().map(|k| k.expose())
    );
    let pub_pem = std::fs::read_to_string(line("WXPAY_PUBLIC_KEY_FILE")).unwrap();
    assert_eq!(pub_pem, m.public_key_pem);
    // The generated certificates parse with the core, serials 40 upper-case hex.
    for (file, serial) in [
        ("platform_cert.pem", m.platform_serial.as_str()),
        ("apiclient_cert.pem", m.mch_serial.as_str()),
    ] {
        let cert = PlatformCertificate::from_pem(&std::fs::read_to_string(dir.join(file)).unwrap())
            .unwrap();
        assert_eq!(cert.serial_no(), serial);
        assert_eq!(serial.len(), 40);
        assert!(
            serial
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
    }
    for file in ["platform_key.pem", "pub_key_private.pem"] {
        assert!(
            std::fs::read_to_string(dir.join(file))
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
    // A merchant configured from the files talks to the simulator.
    let credential = Credential::new(
        "1900000109",
        line("WXPAY_MCH_SERIAL"),
        wxpay_core::v3::MerchantKey::from_pem(&key_pem).unwrap(),
    );
    let client = Client { credential, ..c };
    let r = client
        .call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(jsapi_body(&sim, &unique("g"), 1, "http://127.0.0.1:9/n")),
        )
        .await;
    assert_eq!(r.status, 200);
    r.validate(m.combined_verifier()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rotate_certificate_through_the_control_api() {
    let (sim, c) = start(fast_config()).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{}/sim/rotate-certificate", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rotation: wxpay_sim::CertificateRotation = resp.json().await.unwrap();
    assert_eq!(rotation.previous_serial_no, PLATFORM_SERIAL);
    let m = sim.v3_merchant();
    assert_eq!(m.platform_serial, rotation.serial_no);
    assert_eq!(m.platform_certificates_pem.len(), 2);
    let r = c.call("GET", "/v3/certificates", None).await;
    assert_eq!(r.serial(), rotation.serial_no);
    r.validate(m.certificate_verifier()).unwrap();
}
