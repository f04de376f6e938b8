//! `v3::Client` against the recording transport: the request_sign vectors
//! reproduced through the client byte for byte, the response_verify and
//! notify_request vectors replayed, error mapping, and the certificate
//! store's download and refresh policy — all on an injected clock and
//! nonce source.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use wxpay_core::{
    ErrCode, Error, Fen, HttpMethod, HttpResponse, TradeState,
    v3::{
        ApiV3Key, CertificateError, Client, ClientConfig, ConfigError, Credential, MerchantKey,
        NotifyError, NotifyEvent, PlatformCertificate, PrepayRequest, PublicKey, PublicKeyVerifier,
        RefundRequest, RefundTarget, ValidationError, WechatpayHeaders, response_message,
    },
};

use crate::support::Recorder;

const APPID: &str = "wx1a2b3c4d5e6f7a8b";
const NOTIFY: &str = "https://pay.example.com/wxpay/v3/notify";
const REFUND_NOTIFY: &str = "https://pay.example.com/wxpay/v3/refund-notify";
const PLATFORM_SERIAL: &str = "5A1B2C3D4E5F60718293A4B5C6D7E8F901234567";
/// The merchant certificate of the vectors, used as a *second* platform
/// certificate (a rotation) — it has its own serial and key pair.
const ROTATED_SERIAL: &str = "3D2C1B0A99887766554433221100FFEEDDCCBBAA";
const T: i64 = 1767240000;

fn all() -> Value {
    crate::support::spec_vectors("vectors-v3.json")
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

enum Keys {
    /// The platform certificate pinned, no download.
    Pinned,
    /// Public key and pinned certificate (migration).
    Combined,
    /// Certificates downloaded only.
    Download,
}

fn config(all: &Value, keys: Keys) -> ClientConfig {
    let m = &all["keys"]["merchant"];
    let credential = Credential::new(
        s(m, "mchid"),
        s(m, "serial_no"),
        MerchantKey::from_pem(s(m, "private_key_pem")).unwrap(),
    );
    let c = ClientConfig::new(
        APPID,
        credential,
        ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap(),
    )
    .with_notify_url(NOTIFY)
    .with_refund_notify_url(REFUND_NOTIFY);
    let cert =
        || PlatformCertificate::from_pem(s(&all["keys"]["platform"], "certificate_pem")).unwrap();
    let pk = &all["keys"]["wechatpay_public_key"];
    let pk = || {
        PublicKeyVerifier::new(
            s(pk, "key_id"),
            PublicKey::from_pem(s(pk, "public_key_pem")).unwrap(),
        )
    };
    match keys {
        Keys::Pinned => c.with_platform_certificate(cert()),
        Keys::Combined => c.with_platform_certificate(cert()).with_public_key(pk()),
        Keys::Download => c.with_certificate_download(true),
    }
}

/// A client over a fresh recorder, with a settable clock and nonce.
struct Rig {
    client: Client<Recorder>,
    rec: Recorder,
    clock: Arc<AtomicI64>,
    nonce: Arc<Mutex<String>>,
}

impl Rig {
    fn new(config: ClientConfig) -> Rig {
        let rec = Recorder::default();
        let clock = Arc::new(AtomicI64::new(T));
        let nonce = Arc::new(Mutex::new("N0NCE".to_owned()));
        let (c, n) = (clock.clone(), nonce.clone());
        let client = Client::with_transport(config, rec.clone())
            .unwrap()
            .with_clock(Arc::new(move || c.load(Ordering::SeqCst)))
            .with_nonce(Arc::new(move || n.lock().unwrap().clone()));
        Rig {
            client,
            rec,
            clock,
            nonce,
        }
    }

    fn at(&self, now: i64) -> &Rig {
        self.clock.store(now, Ordering::SeqCst);
        self
    }

    fn nonce(&self, nonce: &str) -> &Rig {
        *self.nonce.lock().unwrap() = nonce.to_owned();
        self
    }

    fn reply(&self, r: HttpResponse) -> &Rig {
        self.rec.reply(Ok(r));
        self
    }

    fn urls(&self) -> Vec<String> {
        self.rec.sent().into_iter().map(|r| r.url).collect()
    }
}

/// A vector's answer as the transport would give it.
fn answer(v: &Value) -> HttpResponse {
    let mut r = HttpResponse::new(v["status"].as_u64().unwrap() as u16, s(v, "body"));
    for (k, val) in v["headers"].as_object().unwrap() {
        r = r.with_header(k, val.as_str().unwrap());
    }
    r
}

/// An answer signed with `signer`'s private key (`platform`, or `merchant`
/// for the rotated certificate) under `serial`.
fn signed(
    all: &Value,
    signer: &str,
    serial: &str,
    ts: i64,
    status: u16,
    body: &str,
) -> HttpResponse {
    let key = MerchantKey::from_pem(s(&all["keys"][signer], "private_key_pem")).unwrap();
    let nonce = "0123456789abcdef0123456789abcdef";
    let signature = key
        .sign(&response_message(&ts.to_string(), nonce, body.as_bytes()))
        .unwrap();
    HttpResponse::new(status, body)
        .with_header("Request-ID", "REQ-1")
        .with_header("Wechatpay-Timestamp", ts.to_string())
        .with_header("Wechatpay-Nonce", nonce)
        .with_header("Wechatpay-Signature", signature)
        .with_header("Wechatpay-Serial", serial)
        .with_header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
}

/// A `/v3/certificates` answer listing `(serial_no, pem)`, signed by the
/// platform key at `ts`.
fn certificates_answer(all: &Value, entries: &[(&str, &str)], ts: i64) -> HttpResponse {
    let key = ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap();
    let data: Vec<Value> = entries
        .iter()
        .map(|(serial, pem)| {
            json!({
                "serial_no": serial,
                "effective_time": "2025-01-01T00:00:00+08:00",
                "expire_time": "2030-01-01T00:00:00+08:00",
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "associated_data": "certificate",
                    "nonce": "c3Rt9PqL2mN8",
                    "ciphertext": key.encrypt(b"certificate", b"c3Rt9PqL2mN8", pem.as_bytes()).unwrap(),
                }
            })
        })
        .collect();
    let body = json!({ "data": data }).to_string();
    signed(all, "platform", PLATFORM_SERIAL, ts, 200, &body)
}

fn platform_pem(all: &Value) -> &str {
    s(&all["keys"]["platform"], "certificate_pem")
}

fn rotated_pem(all: &Value) -> &str {
    s(&all["keys"]["merchant"], "certificate_pem")
}

fn api(e: Error) -> wxpay_core::v3::ApiError {
    match e {
        Error::Api(a) => *a,
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

fn unverified(e: Error) -> wxpay_core::v3::UnverifiedAnswer {
    match e {
        Error::Unverified(u) => u,
        other => panic!("expected Error::Unverified, got {other:?}"),
    }
}

/// Checks the request the client sent against a request_sign vector:
/// method, URL, body and every header of the vector, byte for byte.
fn assert_request(rig: &Rig, index: usize, v: &Value) {
    let sent = rig.rec.sent();
    let req = &sent[index];
    let name = s(v, "name");
    assert_eq!(req.method.as_str(), s(v, "method"), "{name}");
    assert_eq!(
        req.url,
        format!("http://wechat.test{}", s(v, "canonical_url")),
        "{name}"
    );
    assert_eq!(
        req.body.as_deref().unwrap_or(""),
        s(v, "body"),
        "{name}: body"
    );
    for (k, val) in v["request_headers"].as_object().unwrap() {
        assert_eq!(req.header(k), val.as_str(), "{name}: header {k}");
    }
    assert_eq!(req.header("Authorization"), Some(s(v, "authorization")));
    assert!(req.header("User-Agent").unwrap().starts_with("wxpay-rs/"));
    assert!(!req.client_cert, "v3 never uses the client certificate");
    if req.method == HttpMethod::Get {
        assert_eq!(req.header("Content-Type"), None, "{name}");
    }
}

fn vector_rig(all: &Value, v: &Value, keys: Keys) -> Rig {
    let rig = Rig::new(config(all, keys).with_api_base("http://wechat.test"));
    rig.at(s(v, "timestamp").parse().unwrap())
        .nonce(s(v, "nonce_str"));
    rig
}

#[tokio::test]
async fn request_sign_vectors_through_the_client() {
    let all = all();
    let sign = all["request_sign"].as_array().unwrap();
    let verify = all["response_verify"].as_array().unwrap();

    // jsapi-prepay, answered by prepay-200-platform-cert.
    let v = &sign[0];
    assert_eq!(s(v, "name"), "jsapi-prepay");
    let rig = vector_rig(&all, v, Keys::Pinned);
    rig.reply(answer(&verify[0]));
    let order = PrepayRequest::jsapi(
        "小张南山店-会员月卡",
        "WXP20260101120000A1",
        Fen(2990),
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    )
    .with_time_expire(chrono::DateTime::parse_from_rfc3339("2026-01-01T12:30:00+08:00").unwrap())
    .with_attach("cart=7&src=mp");
    let prepay = rig.client.jsapi_prepay(&order).await.unwrap();
    assert_eq!(prepay.prepay_id, "wx011200009f3c5d7e1a2b4c6d8e0f123400");
    assert_eq!(prepay.raw, s(&verify[0], "body").as_bytes());
    assert_eq!(
        prepay.request_id.as_deref(),
        Some("08F1C2D3E4F5061728394A5B6C7D8E9F-0")
    );
    assert_request(&rig, 0, v);
    assert_eq!(rig.rec.sent()[0].header("Wechatpay-Serial"), None);

    // query-by-out-trade-no (the answer is not needed here).
    let v = &sign[1];
    assert_eq!(s(v, "name"), "query-by-out-trade-no");
    let rig = vector_rig(&all, v, Keys::Pinned);
    assert!(matches!(
        rig.client
            .query_by_out_trade_no("WXP20260101120000A1")
            .await,
        Err(Error::Transport { .. })
    ));
    assert_request(&rig, 0, v);

    // close-order, answered 204 by close-204-platform-cert.
    let v = &sign[2];
    assert_eq!(s(v, "name"), "close-order");
    let rig = vector_rig(&all, v, Keys::Pinned);
    rig.reply(answer(&verify[2]));
    rig.client.close("WXP20260101120000A1").await.unwrap();
    assert_request(&rig, 0, v);

    // query-by-transaction-id.
    let v = &sign[3];
    assert_eq!(s(v, "name"), "query-by-transaction-id");
    let rig = vector_rig(&all, v, Keys::Pinned);
    let _ = rig
        .client
        .query_by_transaction_id("4200002026010112000000000001")
        .await;
    assert_request(&rig, 0, v);

    // refund: the configured refund notify URL is sent.
    let v = &sign[4];
    assert_eq!(s(v, "name"), "refund");
    let rig = vector_rig(&all, v, Keys::Pinned);
    let refund = RefundRequest::new(
        RefundTarget::OutTradeNo("WXP20260101120000A1".into()),
        "RF20260102090000B1",
        Fen(1000),
        Fen(2990),
    )
    .with_reason("商品已售完");
    let _ = rig.client.refund(&refund).await;
    assert_request(&rig, 0, v);
}

#[tokio::test]
async fn public_key_mode_sends_the_key_id_as_wechatpay_serial() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Combined));
    let _ = rig
        .client
        .query_by_out_trade_no("WXP20260101120000A1")
        .await;
    let sent = rig.rec.sent();
    assert_eq!(sent.len(), 1, "no certificate download without the option");
    assert_eq!(
        sent[0].header("Wechatpay-Serial"),
        Some("PUB_KEY_ID_0114232134912410000000000000000001")
    );
    assert!(sent[0].url.starts_with("https://api.mch.weixin.qq.com/"));
}

#[tokio::test]
async fn response_verify_vectors_replayed_as_answers() {
    let all = all();
    let list = all["response_verify"].as_array().unwrap();
    assert_eq!(list.len(), 14);
    for v in list {
        let name = s(v, "name");
        let rig = Rig::new(config(&all, Keys::Combined));
        rig.at(v["now"].as_i64().unwrap()).reply(answer(v));
        let result = match name {
            "prepay-200-platform-cert" => {
                let order = PrepayRequest::jsapi("d", "WXP20260101120000A1", Fen(2990), "o");
                let r = rig.client.jsapi_prepay(&order).await;
                assert_eq!(
                    r.unwrap().prepay_id,
                    "wx011200009f3c5d7e1a2b4c6d8e0f123400",
                    "{name}"
                );
                continue;
            }
            "close-204-platform-cert" => {
                rig.client.close("WXP20260101120000A1").await.unwrap();
                continue;
            }
            _ => {
                rig.client
                    .query_by_out_trade_no("WXP20260101120000A1")
                    .await
            }
        };
        assert_eq!(
            rig.rec.sent().len(),
            1,
            "{name}: no refresh without download"
        );
        match (s(v, "expected"), s(v, "reason")) {
            ("accept", _) if name == "error-404-public-key" => {
                let a = api(result.unwrap_err());
                assert_eq!((a.status, a.code.as_str()), (404, "ORDER_NOT_EXIST"));
                assert_eq!(a.err_code, ErrCode::OrderNotExist);
                assert_eq!(a.message, "订单不存在");
                assert!(a.verified);
                assert_eq!(
                    a.request_id.as_deref(),
                    Some("08C1C2D3E4F5061728394A5B6C7D8E9F-0")
                );
                let e = Error::from(a);
                assert!(e.is_definite_refusal());
                assert!(!e.outcome_unknown() && !e.is_retryable());
                assert_eq!(e.err_code(), Some(&ErrCode::OrderNotExist));
            }
            ("accept", _) => {
                let t = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(t.state(), TradeState::Success, "{name}");
                assert_eq!(
                    t.transaction_id.as_deref(),
                    Some("4200002026010112000000000001")
                );
                assert_eq!(t.amount.as_ref().unwrap().total, Some(Fen(2990)));
                assert_eq!(t.raw, s(v, "body").as_bytes());
            }
            ("reject", reason) => {
                let e = result.unwrap_err();
                assert!(e.outcome_unknown(), "{name}");
                assert!(!e.is_definite_refusal(), "{name}");
                assert_eq!(e.err_code(), None, "{name}");
                let u = unverified(e);
                assert_eq!(
                    u.is_forged(),
                    reason == "missing_signature_headers",
                    "{name}"
                );
                let ok = match reason {
                    "signature_invalid" => u.reason == ValidationError::InvalidSignature,
                    "timestamp_out_of_window" => matches!(u.reason, ValidationError::Stale { .. }),
                    "unknown_serial" => matches!(u.reason, ValidationError::UnknownSerial { .. }),
                    "signature_probe" => u.reason == ValidationError::Probe,
                    "missing_signature_headers" => {
                        matches!(u.reason, ValidationError::MissingHeader { .. })
                    }
                    "unsupported_signature_type" => {
                        matches!(u.reason, ValidationError::UnsupportedSignatureType { .. })
                    }
                    other => panic!("{name}: unexpected reason {other}"),
                };
                assert!(ok, "{name}: {:?}", u.reason);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn unsigned_answers_transport_errors_and_202() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Pinned));

    // A proxy's 502: outcome unknown, retryable.
    rig.reply(HttpResponse::new(502, "<html>bad gateway</html>"));
    let e = rig.client.query_by_out_trade_no("A1").await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(e.outcome_unknown() && e.is_retryable() && !e.is_definite_refusal());

    // An unsigned 500 SYSTEM_ERROR body is not believed either.
    rig.reply(HttpResponse::new(
        500,
        r#"{"code":"SYSTEM_ERROR","message":"x"}"#,
    ));
    let e = rig.client.refund(&refund()).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");

    // 401 without signature: the SIGN_ERROR configuration error.
    rig.reply(HttpResponse::new(
        401,
        r#"{"code":"SIGN_ERROR","message":"签名错误","detail":{"sign_information":{"method":"GET"}}}"#,
    ));
    let a = api(rig.client.query_by_out_trade_no("A1").await.unwrap_err());
    assert_eq!(
        (a.status, a.err_code.clone(), a.verified),
        (401, ErrCode::SignError, false)
    );
    assert_eq!(
        a.detail.as_ref().unwrap()["sign_information"]["method"],
        "GET"
    );
    let e = Error::from(a);
    assert!(!e.is_definite_refusal() && !e.is_retryable());
    // The same with an empty body still reads as SIGN_ERROR.
    rig.reply(HttpResponse::new(401, ""));
    assert_eq!(
        api(rig.client.close("A1").await.unwrap_err()).err_code,
        ErrCode::SignError
    );

    // No answer at all.
    let e = rig.client.refund(&refund()).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }) && e.outcome_unknown());

    // A verified 202 is not a success: query.
    rig.reply(signed(&all, "platform", PLATFORM_SERIAL, T, 202, ""));
    let e = rig.client.refund(&refund()).await.unwrap_err();
    assert!(matches!(e, Error::Pending { .. }), "{e:?}");
    assert!(e.outcome_unknown() && !e.is_retryable());

    // A verified 200 whose body lacks the required id: outcome unknown.
    rig.reply(signed(&all, "platform", PLATFORM_SERIAL, T, 200, "{}"));
    let order = PrepayRequest::native("d", "A1", Fen(1));
    let e = rig.client.native_prepay(&order).await.unwrap_err();
    assert!(
        matches!(e, Error::Transport { .. }) && e.outcome_unknown(),
        "{e:?}"
    );
}

fn refund() -> RefundRequest {
    RefundRequest::new(
        RefundTarget::TransactionId("4200002026010112000000000001".into()),
        "RF1",
        Fen(1000),
        Fen(2990),
    )
}

#[tokio::test]
async fn verified_error_answers_map_codes_per_endpoint() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Pinned));
    let err = |status: u16, code: &str| {
        signed(
            &all,
            "platform",
            PLATFORM_SERIAL,
            T,
            status,
            &json!({"code": code, "message": "m", "detail": {"field": "/amount/total"}})
                .to_string(),
        )
    };

    // Refund: RESOURCE_NOT_EXISTS = order missing or unpaid — definite.
    rig.reply(err(404, "RESOURCE_NOT_EXISTS"));
    let e = rig.client.refund(&refund()).await.unwrap_err();
    assert_eq!(e.err_code(), Some(&ErrCode::OrderNotExist));
    assert!(e.is_definite_refusal() && !e.outcome_unknown());
    assert_eq!(api(e).detail.unwrap()["field"], "/amount/total");

    // Refund query: the same code means "no such refund".
    rig.reply(err(404, "RESOURCE_NOT_EXISTS"));
    let e = rig.client.refund_query("RF1").await.unwrap_err();
    assert_eq!(e.err_code(), Some(&ErrCode::RefundNotExist));
    assert_eq!(
        rig.rec.sent().last().unwrap().url,
        "https://api.mch.weixin.qq.com/v3/refund/domestic/refunds/RF1"
    );

    for (status, code, mapped, definite, retryable) in [
        (403, "NOT_ENOUGH", ErrCode::NotEnough, true, false),
        (
            403,
            "USER_ACCOUNT_ABNORMAL",
            ErrCode::UserAccountAbnormal,
            true,
            false,
        ),
        (400, "INVALID_REQUEST", ErrCode::InvalidRequest, true, false),
        (400, "PARAM_ERROR", ErrCode::ParamError, true, false),
        (403, "NO_AUTH", ErrCode::NoAuth, true, false),
        (404, "MCH_NOT_EXISTS", ErrCode::MchIdNotExist, true, false),
        (
            429,
            "FREQUENCY_LIMITED",
            ErrCode::FrequencyLimited,
            false,
            true,
        ),
        (500, "SYSTEM_ERROR", ErrCode::SystemError, false, true),
        (
            503,
            "SERVICE_UNAVAILABLE",
            ErrCode::Other("SERVICE_UNAVAILABLE".into()),
            false,
            true,
        ),
        (
            403,
            "REQUEST_BLOCKED",
            ErrCode::Other("REQUEST_BLOCKED".into()),
            false,
            false,
        ),
    ] {
        rig.reply(err(status, code));
        let e = rig.client.refund(&refund()).await.unwrap_err();
        assert_eq!(e.err_code(), Some(&mapped), "{code}");
        assert_eq!(e.is_definite_refusal(), definite, "{code}");
        assert_eq!(e.is_retryable(), retryable, "{code}");
        assert_eq!(e.outcome_unknown(), status >= 500, "{code}");
    }

    for (code, mapped) in [
        ("OUT_TRADE_NO_USED", ErrCode::OutTradeNoUsed),
        ("APPID_MCHID_NOT_MATCH", ErrCode::AppIdMchIdNotMatch),
        ("ORDER_CLOSED", ErrCode::OrderClosed),
        ("RULE_LIMIT", ErrCode::Other("RULE_LIMIT".into())),
    ] {
        rig.reply(err(403, code));
        let order = PrepayRequest::jsapi("d", "A1", Fen(1), "o");
        let e = rig.client.jsapi_prepay(&order).await.unwrap_err();
        assert_eq!(e.err_code(), Some(&mapped), "{code}");
    }
    // OUT_TRADE_NO_USED says "query first": not a definite refusal.
    rig.reply(err(403, "OUT_TRADE_NO_USED"));
    let order = PrepayRequest::jsapi("d", "A1", Fen(1), "o");
    assert!(
        !rig.client
            .jsapi_prepay(&order)
            .await
            .unwrap_err()
            .is_definite_refusal()
    );

    // The error message names code and Request-ID, never a key.
    rig.reply(err(400, "PARAM_ERROR"));
    let text = rig.client.refund(&refund()).await.unwrap_err().to_string();
    assert!(
        text.contains("PARAM_ERROR") && text.contains("REQ-1"),
        "{text}"
    );
}

#[tokio::test]
async fn certificate_download_from_the_vector() {
    let all = all();
    let v = &all["certificates"];
    let rig = Rig::new(config(&all, Keys::Download).with_api_base("http://wechat.test"));
    let sent_at: i64 = s(&v["request"], "timestamp").parse().unwrap();
    rig.at(sent_at).nonce(s(&v["request"], "nonce_str"));
    rig.reply(answer(v));
    let certs = rig.client.refresh_certificates().await.unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial_no(), PLATFORM_SERIAL);
    assert_eq!(
        certs[0].pem(),
        s(&v["expected"]["certificates"][0], "certificate_pem")
    );
    let store = rig.client.certificate_store();
    assert_eq!(store.serials(), vec![PLATFORM_SERIAL.to_owned()]);
    assert_eq!(store.last_refresh(), Some(sent_at));
    // The request is the vector's download-certificates, byte for byte.
    let req = &rig.rec.sent()[0];
    assert_eq!(req.url, "http://wechat.test/v3/certificates");
    assert_eq!(
        req.header("Authorization"),
        Some(s(&v["request"], "authorization"))
    );

    // The same answer with one byte of the body changed is refused.
    let rig = Rig::new(config(&all, Keys::Download));
    rig.at(v["now"].as_i64().unwrap());
    let mut tampered = answer(v);
    let i = tampered.body.iter().position(|b| *b == b'2').unwrap();
    tampered.body[i] = b'3';
    rig.reply(tampered);
    assert!(rig.client.refresh_certificates().await.is_err());
    assert!(rig.client.certificate_store().is_empty());
}

#[tokio::test]
async fn certificate_serial_mismatch_is_refused() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Download));
    let wrong = s(&all["keys"], "unknown_serial");
    rig.reply(certificates_answer(&all, &[(wrong, platform_pem(&all))], T));
    match rig.client.refresh_certificates().await {
        Err(Error::PlatformCertificates(CertificateError::SerialMismatch { listed, found })) => {
            assert_eq!((listed.as_str(), found.as_str()), (wrong, PLATFORM_SERIAL));
        }
        other => panic!("{other:?}"),
    }
    assert!(rig.client.certificate_store().is_empty());
    assert_eq!(rig.client.certificate_store().last_refresh(), None);

    // Encrypted with another APIv3 key: refused too.
    let other = ApiV3Key::new("another-apiv3-key-0123456789ABCD").unwrap();
    let ct = other
        .encrypt(
            b"certificate",
            b"c3Rt9PqL2mN8",
            platform_pem(&all).as_bytes(),
        )
        .unwrap();
    let body = json!({"data":[{"serial_no": PLATFORM_SERIAL, "encrypt_certificate": {
        "algorithm":"AEAD_AES_256_GCM","associated_data":"certificate","nonce":"c3Rt9PqL2mN8","ciphertext": ct}}]})
    .to_string();
    rig.reply(signed(&all, "platform", PLATFORM_SERIAL, T, 200, &body));
    assert!(matches!(
        rig.client.refresh_certificates().await,
        Err(Error::PlatformCertificates(
            CertificateError::Decrypt { .. }
        ))
    ));
    assert!(rig.client.certificate_store().is_empty());
}

fn query_body() -> String {
    json!({"mchid":"1900000109","out_trade_no":"A1","trade_state":"NOTPAY","new_field":1})
        .to_string()
}

#[tokio::test]
async fn unknown_serial_refreshes_once_then_succeeds() {
    let all = all();
    let rig =
        Rig::new(config(&all, Keys::Download).with_refresh_interval(Duration::from_secs(43200)));
    // First call: the lazy initial download, then the answer.
    rig.reply(certificates_answer(
        &all,
        &[(PLATFORM_SERIAL, platform_pem(&all))],
        T,
    ))
    .reply(signed(
        &all,
        "platform",
        PLATFORM_SERIAL,
        T,
        200,
        &query_body(),
    ));
    let t = rig.client.query_by_out_trade_no("A1").await.unwrap();
    assert_eq!(t.state(), TradeState::NotPay);
    assert_eq!(t.extra["new_field"], 1, "unknown fields kept");

    // WeChat starts signing with a new certificate: one download, which
    // lists it, then the same answer verifies.
    rig.at(T + 5)
        .reply(signed(
            &all,
            "merchant",
            ROTATED_SERIAL,
            T + 5,
            200,
            &query_body(),
        ))
        .reply(certificates_answer(
            &all,
            &[
                (PLATFORM_SERIAL, platform_pem(&all)),
                (ROTATED_SERIAL, rotated_pem(&all)),
            ],
            T + 5,
        ));
    rig.client.query_by_out_trade_no("A1").await.unwrap();
    let urls = rig.urls();
    assert_eq!(urls.len(), 4, "{urls:?}");
    assert!(urls[0].ends_with("/v3/certificates") && urls[3].ends_with("/v3/certificates"));
    assert_eq!(
        rig.client.certificate_store().serials(),
        vec![ROTATED_SERIAL.to_owned(), PLATFORM_SERIAL.to_owned()],
        "old and new kept during the rotation"
    );
}

#[tokio::test]
async fn unknown_serial_refreshes_once_then_fails_and_is_rate_limited() {
    let all = all();
    let rig =
        Rig::new(config(&all, Keys::Download).with_refresh_interval(Duration::from_secs(43200)));
    rig.reply(certificates_answer(
        &all,
        &[(PLATFORM_SERIAL, platform_pem(&all))],
        T,
    ));
    rig.client.refresh_certificates().await.unwrap();

    rig.at(T + 1)
        .reply(signed(
            &all,
            "merchant",
            ROTATED_SERIAL,
            T + 1,
            200,
            &query_body(),
        ))
        .reply(certificates_answer(
            &all,
            &[(PLATFORM_SERIAL, platform_pem(&all))],
            T + 1,
        ));
    let u = unverified(rig.client.query_by_out_trade_no("A1").await.unwrap_err());
    assert!(
        matches!(u.reason, ValidationError::UnknownSerial { ref serial } if serial == ROTATED_SERIAL)
    );
    assert_eq!(rig.rec.sent().len(), 3, "exactly one refresh");

    // Within the 60 s gap: no second download.
    rig.at(T + 30).reply(signed(
        &all,
        "merchant",
        ROTATED_SERIAL,
        T + 30,
        200,
        &query_body(),
    ));
    let e = rig.client.query_by_out_trade_no("A1").await.unwrap_err();
    assert!(e.outcome_unknown() && !e.is_definite_refusal());
    assert_eq!(rig.rec.sent().len(), 4, "rate-limited");

    // After the gap a new unknown serial may download again.
    rig.at(T + 95)
        .reply(signed(
            &all,
            "merchant",
            ROTATED_SERIAL,
            T + 95,
            200,
            &query_body(),
        ))
        .reply(certificates_answer(
            &all,
            &[(PLATFORM_SERIAL, platform_pem(&all))],
            T + 95,
        ));
    assert!(rig.client.query_by_out_trade_no("A1").await.is_err());
    assert_eq!(rig.rec.sent().len(), 6);

    // A foreign PUB_KEY_ID_ never triggers a download.
    rig.at(T + 200).reply(signed(
        &all,
        "wechatpay_public_key",
        "PUB_KEY_ID_0114232134912410000000000000000001",
        T + 200,
        200,
        &query_body(),
    ));
    let u = unverified(rig.client.query_by_out_trade_no("A1").await.unwrap_err());
    assert!(matches!(u.reason, ValidationError::UnknownSerial { .. }));
    assert_eq!(rig.rec.sent().len(), 7);
}

#[tokio::test]
async fn certificates_refresh_after_the_interval() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Download));
    let query = |now: i64| signed(&all, "platform", PLATFORM_SERIAL, now, 200, &query_body());
    let certs = |now: i64| certificates_answer(&all, &[(PLATFORM_SERIAL, platform_pem(&all))], now);

    rig.reply(certs(T)).reply(query(T));
    rig.client.query_by_out_trade_no("A1").await.unwrap();
    assert_eq!(rig.rec.sent().len(), 2);

    rig.at(T + 3599).reply(query(T + 3599));
    rig.client.query_by_out_trade_no("A1").await.unwrap();
    assert_eq!(rig.rec.sent().len(), 3, "not yet due");

    rig.at(T + 3600)
        .reply(certs(T + 3600))
        .reply(query(T + 3600));
    rig.client.query_by_out_trade_no("A1").await.unwrap();
    let urls = rig.urls();
    assert_eq!(urls.len(), 5);
    assert!(urls[3].ends_with("/v3/certificates"), "{urls:?}");
    assert_eq!(
        rig.client.certificate_store().last_refresh(),
        Some(T + 3600)
    );

    // A failed scheduled refresh keeps the certificates held and the call
    // goes on; it is not retried before the gap.
    rig.at(T + 7200)
        .reply(HttpResponse::new(500, "oops"))
        .reply(query(T + 7200));
    rig.client.query_by_out_trade_no("A1").await.unwrap();
    rig.at(T + 7210).reply(query(T + 7210));
    rig.client.query_by_out_trade_no("A1").await.unwrap();
    assert_eq!(rig.rec.sent().len(), 8);
    assert_eq!(rig.client.certificate_store().len(), 1);

    // The interval is capped at 12 h.
    let capped = config(&all, Keys::Download).with_refresh_interval(Duration::from_secs(86400));
    assert_eq!(capped.refresh_interval, Duration::from_secs(43200));
}

#[tokio::test]
async fn first_download_failing_without_other_keys_is_an_error() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Download));
    // A public-key-only merchant asking for certificates gets a signed 404…
    // here unsigned: outcome unknown, and nothing to verify with.
    rig.reply(HttpResponse::new(
        404,
        r#"{"code":"NOT_FOUND","message":"x"}"#,
    ));
    let e = rig.client.query_by_out_trade_no("A1").await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(rig.rec.sent().len(), 1, "the call itself was not sent");
}

#[tokio::test]
async fn notify_request_vectors() {
    let all = all();
    for v in all["notify_request"].as_array().unwrap() {
        let name = s(v, "name");
        let rig = Rig::new(config(&all, Keys::Combined));
        rig.at(v["now"].as_i64().unwrap());
        let headers = WechatpayHeaders::from_pairs(
            v["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap())),
        );
        let result = rig
            .client
            .verify_notify(&headers, s(v, "body").as_bytes())
            .await;
        if s(v, "expected") == "accept" {
            let n = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(
                n.notification.resource,
                s(v, "decrypted_resource").as_bytes()
            );
            let plain: Value = serde_json::from_str(s(v, "decrypted_resource")).unwrap();
            match &n.event {
                NotifyEvent::Transaction(t) => {
                    assert_eq!(t.out_trade_no, plain["out_trade_no"], "{name}");
                    assert_eq!(t.state(), TradeState::Success);
                    assert_eq!(
                        t.amount.as_ref().unwrap().total.map(|f| f.0),
                        plain["amount"]["total"].as_u64()
                    );
                    if name.starts_with("partner") {
                        assert_eq!(t.mchid, None);
                        assert_eq!(t.extra["sub_mchid"], "1900000200");
                    }
                }
                NotifyEvent::Refund(r) => {
                    assert_eq!(name, "refund-notify-platform-cert");
                    assert_eq!(r.refund_status, "SUCCESS");
                    assert_eq!(r.out_refund_no, "RF20260102090000B1");
                    assert_eq!(r.amount.as_ref().unwrap().refund, Some(Fen(1000)));
                }
                other => panic!("{name}: {other:?}"),
            }
        } else {
            let e = result.unwrap_err();
            assert!(matches!(e, NotifyError::Validation(_)), "{name}: {e:?}");
            let (status, body) = e.reply();
            assert_eq!(
                u64::from(status),
                v["expected_reply"]["status"].as_u64().unwrap()
            );
            assert_eq!(body, s(&v["expected_reply"], "body"), "{name}");
        }
        assert!(rig.rec.sent().is_empty(), "{name}: nothing downloaded");
    }
}

#[tokio::test]
async fn notify_with_an_unknown_serial_refreshes_once() {
    let all = all();
    let rig =
        Rig::new(config(&all, Keys::Download).with_refresh_interval(Duration::from_secs(43200)));
    rig.reply(certificates_answer(
        &all,
        &[(PLATFORM_SERIAL, platform_pem(&all))],
        T,
    ));
    rig.client.refresh_certificates().await.unwrap();

    // A refund notify signed with the rotated certificate.
    let key = ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap();
    let resource = r#"{"out_refund_no":"RF1","refund_id":"5030","refund_status":"CLOSED"}"#;
    let body = json!({"id":"n1","create_time":"2026-01-01T12:00:00+08:00","resource_type":"encrypt-resource",
        "event_type":"REFUND.CLOSED","summary":"退款关闭","resource":{"original_type":"refund",
        "algorithm":"AEAD_AES_256_GCM","associated_data":"refund","nonce":"abcdefghijkl",
        "ciphertext": key.encrypt(b"refund", b"abcdefghijkl", resource.as_bytes()).unwrap()}})
    .to_string();
    let signed_notify = signed(&all, "merchant", ROTATED_SERIAL, T + 2, 200, &body);
    let pairs: Vec<(&str, &str)> = signed_notify
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let headers = WechatpayHeaders::from_pairs(pairs);

    rig.at(T + 2).reply(certificates_answer(
        &all,
        &[
            (PLATFORM_SERIAL, platform_pem(&all)),
            (ROTATED_SERIAL, rotated_pem(&all)),
        ],
        T + 2,
    ));
    let n = rig
        .client
        .verify_notify(&headers, body.as_bytes())
        .await
        .unwrap();
    assert!(matches!(&n.event, NotifyEvent::Refund(r) if r.refund_status == "CLOSED"));
    assert_eq!(rig.rec.sent().len(), 2, "one refresh");
    // Again: known now, no download.
    rig.client
        .verify_notify(&headers, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(rig.rec.sent().len(), 2);
    // Tampered: refused with 401, no further download.
    let tampered = body.replace("退款关闭", "退款成功");
    let e = rig
        .client
        .verify_notify(&headers, tampered.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.reply().0, 401);
}

#[test]
fn pay_params_use_the_clock_nonce_and_appid_line() {
    let all = all();
    let v = &all["pay_sign"][1];
    assert_eq!(s(v, "name"), "jsapi-prepay-result");
    let rig = Rig::new(config(&all, Keys::Pinned));
    rig.at(s(v, "timeStamp").parse().unwrap())
        .nonce(s(v, "nonceStr"));
    let p = rig
        .client
        .pay_params("wx011200009f3c5d7e1a2b4c6d8e0f123400")
        .unwrap();
    assert_eq!(p.app_id, APPID);
    assert_eq!(p.package, s(v, "package"));
    assert_eq!(p.pay_sign, s(v, "paySign"));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["signType"], "RSA");
}

#[test]
fn configuration_needs_a_verification_key_and_redacts_secrets() {
    let all = all();
    let m = &all["keys"]["merchant"];
    let bare = ClientConfig::new(
        APPID,
        Credential::new(
            "1900000109",
            "3D2C",
            MerchantKey::from_pem(s(m, "private_key_pem")).unwrap(),
        ),
        ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap(),
    );
    assert_eq!(bare.validate(), Err(ConfigError::NoVerificationKey));
    assert!(matches!(
        Client::with_transport(bare, Recorder::default()),
        Err(Error::V3Config(ConfigError::NoVerificationKey))
    ));

    let config = config(&all, Keys::Combined);
    let debug = format!("{config:?}");
    assert!(!debug.contains(s(&all["keys"], "apiv3_key")), "{debug}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(debug.contains("PUB_KEY_ID_0114232134912410000000000000000001"));
    let client = Client::with_transport(config, Recorder::default()).unwrap();
    assert!(!format!("{client:?}").contains(s(&all["keys"], "apiv3_key")));
}

#[tokio::test]
async fn prepay_without_notify_url_is_refused_before_sending() {
    let all = all();
    let mut c = config(&all, Keys::Pinned);
    c.notify_url = None;
    let rig = Rig::new(c);
    let order = PrepayRequest::jsapi("d", "A1", Fen(1), "o");
    assert!(matches!(
        rig.client.jsapi_prepay(&order).await,
        Err(Error::V3Config(ConfigError::Missing("notify_url")))
    ));
    assert!(rig.rec.sent().is_empty());
}

#[tokio::test]
async fn close_and_confirm_queries_after_the_204() {
    let all = all();
    let rig = Rig::new(config(&all, Keys::Pinned));
    let closed =
        json!({"mchid":"1900000109","out_trade_no":"A1","trade_state":"CLOSED"}).to_string();
    rig.reply(signed(&all, "platform", PLATFORM_SERIAL, T, 204, ""))
        .reply(signed(&all, "platform", PLATFORM_SERIAL, T, 200, &closed));
    let t = rig.client.close_and_confirm("A1").await.unwrap();
    assert_eq!(t.state(), TradeState::Closed);
    let sent = rig.rec.sent();
    assert_eq!(sent[0].body.as_deref(), Some(r#"{"mchid":"1900000109"}"#));
    assert_eq!(sent[1].method, HttpMethod::Get);
    // A verified ORDER_CLOSED is done; an unsigned one is not believed.
    let body = r#"{"code":"ORDER_CLOSED","message":"订单已关闭"}"#;
    rig.reply(signed(&all, "platform", PLATFORM_SERIAL, T, 400, body));
    rig.client.close("A1").await.unwrap();
    rig.reply(HttpResponse::new(400, body));
    assert!(rig.client.close("A1").await.is_err());
    // A 204 whose signature was made over another body is refused.
    let mut other = signed(&all, "platform", PLATFORM_SERIAL, T, 204, "x");
    other.body.clear();
    rig.reply(other);
    let u = unverified(rig.client.close("A1").await.unwrap_err());
    assert_eq!(u.reason, ValidationError::InvalidSignature);
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn client_futures_are_send() {
    let all = all();
    let client = Client::with_transport(config(&all, Keys::Pinned), Recorder::default()).unwrap();
    assert_send(&client.query_by_out_trade_no("A1"));
    assert_send(&client.refresh_certificates());
    let h = WechatpayHeaders::default();
    assert_send(&client.verify_notify(&h, b""));
}
