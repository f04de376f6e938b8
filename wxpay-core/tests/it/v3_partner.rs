//! v3 service-provider (partner) mode through `v3::Client` on the
//! recording transport: the three partner vectors byte for byte
//! (`request_sign/partner-jsapi-prepay`, `pay_sign/partner-sub-appid`,
//! `notify_request/partner-payment-notify-platform-cert`), every partner
//! request's exact method, path, query and body, the payer and
//! sub-merchant rules refused before sending, and verified answers about
//! another merchant refused.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicI64, Ordering},
};

use serde_json::{Value, json};
use wxpay_core::{
    Error, Fen, HttpMethod, HttpRequest, HttpResponse, TradeState,
    v3::{
        ApiV3Key, Client, ClientConfig, Credential, MerchantKey, NotifyError, PartnerError,
        PartnerNotifyEvent, PartnerPayer, PartnerPrepayRequest, PlatformCertificate, PublicKey,
        PublicKeyVerifier, RefundRequest, RefundTarget, SubMerchant, WechatpayHeaders,
        response_message,
    },
};

use crate::support::Recorder;

const NOTIFY: &str = "https://pay.example.com/wxpay/v3/notify";
const REFUND_NOTIFY: &str = "https://pay.example.com/wxpay/v3/refund-notify";
const PLATFORM_SERIAL: &str = "5A1B2C3D4E5F60718293A4B5C6D7E8F901234567";
const BASE: &str = "http://wechat.test";
const T: i64 = 1767240300;

fn all() -> Value {
    crate::support::spec_vectors("vectors-v3.json")
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn named<'a>(all: &'a Value, section: &str, name: &str) -> &'a Value {
    all[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{section}/{name}"))
}

fn merchant_key(all: &Value) -> MerchantKey {
    MerchantKey::from_pem(s(&all["keys"]["merchant"], "private_key_pem")).unwrap()
}

/// The service provider's configuration: the vectors' merchant key pair
/// under `sp_mchid` (keys.partner.note), the platform certificate pinned
/// and the public key (both key sources, as for the notify vectors).
fn config(all: &Value) -> ClientConfig {
    let p = &all["keys"]["partner"];
    let m = &all["keys"]["merchant"];
    let credential = Credential::new(s(p, "sp_mchid"), s(m, "serial_no"), merchant_key(all));
    let pk = &all["keys"]["wechatpay_public_key"];
    ClientConfig::new(
        s(p, "sp_appid"),
        credential,
        ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap(),
    )
    .with_notify_url(NOTIFY)
    .with_refund_notify_url(REFUND_NOTIFY)
    .with_api_base(BASE)
    .with_platform_certificate(
        PlatformCertificate::from_pem(s(&all["keys"]["platform"], "certificate_pem")).unwrap(),
    )
    .with_public_key(PublicKeyVerifier::new(
        s(pk, "key_id"),
        PublicKey::from_pem(s(pk, "public_key_pem")).unwrap(),
    ))
}

/// The vectors' sub-merchant, with its `sub_appid`.
fn sub(all: &Value) -> SubMerchant {
    let p = &all["keys"]["partner"];
    SubMerchant::new(s(p, "sp_appid"), s(p, "sp_mchid"), s(p, "sub_mchid"))
        .with_sub_appid(s(p, "sub_appid"))
}

struct Rig {
    client: Client<Recorder>,
    rec: Recorder,
    clock: Arc<AtomicI64>,
    nonce: Arc<Mutex<String>>,
}

impl Rig {
    fn new(all: &Value) -> Rig {
        let rec = Recorder::default();
        let clock = Arc::new(AtomicI64::new(T));
        let nonce = Arc::new(Mutex::new("N0NCE".to_owned()));
        let (c, n) = (clock.clone(), nonce.clone());
        let client = Client::with_transport(config(all), rec.clone())
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

    fn last(&self) -> HttpRequest {
        self.rec.sent().pop().expect("a request was sent")
    }
}

/// An answer signed by the platform certificate's key at `T`.
fn signed(all: &Value, status: u16, body: &str) -> HttpResponse {
    let key = MerchantKey::from_pem(s(&all["keys"]["platform"], "private_key_pem")).unwrap();
    let nonce = "0123456789abcdef0123456789abcdef";
    let signature = key
        .sign(&response_message(&T.to_string(), nonce, body.as_bytes()))
        .unwrap();
    HttpResponse::new(status, body)
        .with_header("Request-ID", "REQ-P")
        .with_header("Wechatpay-Timestamp", T.to_string())
        .with_header("Wechatpay-Nonce", nonce)
        .with_header("Wechatpay-Signature", signature)
        .with_header("Wechatpay-Serial", PLATFORM_SERIAL)
        .with_header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
}

/// Checks one sent request: method, URL (so path and query), body, and an
/// `Authorization` computed independently over exactly those bytes with
/// the provider's mchid, serial and key.
fn assert_sent(all: &Value, req: &HttpRequest, method: &str, path_and_query: &str, body: &str) {
    assert_eq!(req.method.as_str(), method, "{path_and_query}");
    assert_eq!(req.url, format!("{BASE}{path_and_query}"));
    assert_eq!(req.body.as_deref().unwrap_or(""), body, "{path_and_query}");
    let credential = Credential::new(
        s(&all["keys"]["partner"], "sp_mchid"),
        s(&all["keys"]["merchant"], "serial_no"),
        merchant_key(all),
    );
    let expected = credential
        .authorization(
            method,
            path_and_query,
            &T.to_string(),
            "N0NCE",
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(req.header("Authorization"), Some(expected.as_str()));
    assert!(
        expected.contains("mchid=\"1900000100\""),
        "signed as the provider"
    );
    if req.method == HttpMethod::Post {
        assert_eq!(req.header("Content-Type"), Some("application/json"));
    } else {
        assert_eq!(req.header("Content-Type"), None);
    }
}

fn partner_err(e: Error) -> PartnerError {
    match e {
        Error::Partner(p) => p,
        other => panic!("expected Error::Partner, got {other:?}"),
    }
}

fn jsapi_order(payer: PartnerPayer) -> PartnerPrepayRequest {
    PartnerPrepayRequest::jsapi(
        "服务商测试门店-咖啡",
        "SPX20260101120500B7",
        Fen(1800),
        payer,
    )
}

fn sub_openid() -> PartnerPayer {
    PartnerPayer::SubOpenid("oQw7P5LmN2kR8sT4vX6yZ1aB3cD0".into())
}

#[tokio::test]
async fn partner_jsapi_prepay_reproduces_the_request_sign_vector() {
    let all = all();
    let v = named(&all, "request_sign", "partner-jsapi-prepay");
    let rig = Rig::new(&all);
    rig.at(s(v, "timestamp").parse().unwrap())
        .nonce(s(v, "nonce_str"));
    let answer = r#"{"prepay_id":"wx01120500aa11bb22cc33dd44ee55ff6600"}"#;
    rig.reply(signed(&all, 200, answer));
    let prepay = rig
        .client
        .partner_jsapi_prepay(&sub(&all), &jsapi_order(sub_openid()))
        .await
        .unwrap();
    assert_eq!(prepay.prepay_id, "wx01120500aa11bb22cc33dd44ee55ff6600");
    assert_eq!(prepay.raw, answer.as_bytes());

    let req = rig.last();
    assert_eq!(req.method.as_str(), s(v, "method"));
    assert_eq!(req.url, format!("{BASE}{}", s(v, "canonical_url")));
    assert!(s(v, "url").ends_with(s(v, "canonical_url")));
    assert_eq!(
        req.body.as_deref(),
        Some(s(v, "body")),
        "body byte for byte"
    );
    for (k, val) in v["request_headers"].as_object().unwrap() {
        assert_eq!(req.header(k), val.as_str(), "header {k}");
    }
    assert_eq!(req.header("Authorization"), Some(s(v, "authorization")));
    assert!(!req.client_cert);
}

#[test]
fn partner_pay_params_reproduce_the_pay_sign_vector() {
    let all = all();
    let v = named(&all, "pay_sign", "partner-sub-appid");
    let rig = Rig::new(&all);
    rig.at(s(v, "timeStamp").parse().unwrap())
        .nonce(s(v, "nonceStr"));
    let prepay_id = s(v, "package").strip_prefix("prepay_id=").unwrap();
    let p = rig
        .client
        .partner_pay_params(&sub(&all), &jsapi_order(sub_openid()), prepay_id)
        .unwrap();
    assert_eq!(p.app_id, s(v, "appId"), "sub_openid → sub_appid");
    assert_eq!(p.pay_sign, s(v, "paySign"));
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        v["requestPayment_object"]
    );

    // sp_openid → sp_appid on the appId line (a different signature).
    let sp = jsapi_order(PartnerPayer::SpOpenid("oSpOpenid0001".into()));
    let p = rig
        .client
        .partner_pay_params(&sub(&all), &sp, prepay_id)
        .unwrap();
    assert_eq!(p.app_id, "wx9f8e7d6c5b4a3f2e");
    let message = format!(
        "wx9f8e7d6c5b4a3f2e\n{}\n{}\n{}\n",
        s(v, "timeStamp"),
        s(v, "nonceStr"),
        s(v, "package")
    );
    assert_eq!(
        p.pay_sign,
        merchant_key(&all).sign(message.as_bytes()).unwrap()
    );
    assert_ne!(p.pay_sign, s(v, "paySign"));

    // A sub_openid without sub_appid, or no payer: refused.
    let p = &all["keys"]["partner"];
    let bare = SubMerchant::new(s(p, "sp_appid"), s(p, "sp_mchid"), s(p, "sub_mchid"));
    let e = rig
        .client
        .partner_pay_params(&bare, &jsapi_order(sub_openid()), prepay_id)
        .unwrap_err();
    assert_eq!(partner_err(e), PartnerError::SubOpenidWithoutSubAppid);
    let native = PartnerPrepayRequest::native("d", "SPX1", Fen(1));
    let e = rig
        .client
        .partner_pay_params(&sub(&all), &native, prepay_id)
        .unwrap_err();
    assert_eq!(partner_err(e), PartnerError::MissingPayer);
}

fn headers(v: &Value) -> WechatpayHeaders<'_> {
    WechatpayHeaders::from_pairs(
        v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap())),
    )
}

#[tokio::test]
async fn partner_notify_vector_verifies_decrypts_and_parses() {
    let all = all();
    let v = named(
        &all,
        "notify_request",
        "partner-payment-notify-platform-cert",
    );
    let rig = Rig::new(&all);
    rig.at(v["now"].as_i64().unwrap());
    let n = rig
        .client
        .verify_partner_notify(&headers(v), s(v, "body").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        n.notification.resource,
        s(v, "decrypted_resource").as_bytes()
    );
    assert_eq!(n.notification.event_type, "TRANSACTION.SUCCESS");
    let PartnerNotifyEvent::Transaction(t) = &n.event else {
        panic!("{:?}", n.event);
    };
    assert_eq!(t.sp_appid.as_deref(), Some("wx9f8e7d6c5b4a3f2e"));
    assert_eq!(t.sp_mchid, "1900000100");
    assert_eq!(t.sub_appid.as_deref(), Some("wx0a1b2c3d4e5f6a7b"));
    assert_eq!(t.sub_mchid, "1900000200");
    assert_eq!(t.out_trade_no, "SPX20260101120500B7");
    assert_eq!(
        t.transaction_id.as_deref(),
        Some("4200002026010112050000000007")
    );
    assert_eq!(t.state(), TradeState::Success);
    assert_eq!(t.attach.as_deref(), Some(""));
    let payer = t.payer.as_ref().unwrap();
    assert_eq!(
        payer.sub_openid.as_deref(),
        Some("oQw7P5LmN2kR8sT4vX6yZ1aB3cD0")
    );
    assert_eq!(payer.sp_openid, None);
    let amount = t.amount.as_ref().unwrap();
    assert_eq!(
        (amount.total, amount.payer_total),
        (Some(Fen(1800)), Some(Fen(1800)))
    );
    assert!(t.extra.is_empty(), "every field typed: {:?}", t.extra);
    assert!(rig.rec.sent().is_empty());

    // The flow's check: ours, and not another sub-merchant's.
    t.check_sub_merchant(&sub(&all)).unwrap();
    let mut other = sub(&all);
    other.sub_mchid = "1900000201".into();
    assert!(matches!(
        t.check_sub_merchant(&other),
        Err(PartnerError::ForeignAnswer {
            field: "sub_mchid",
            ..
        })
    ));

    // A tampered body is refused before decryption (401).
    let tampered = s(v, "body").replace("支付成功", "支付失败");
    let e = rig
        .client
        .verify_partner_notify(&headers(v), tampered.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(e, NotifyError::Validation(_)), "{e:?}");
    assert_eq!(e.reply().0, 401);

    // A direct merchant's payment notify is not a partner resource.
    let d = named(&all, "notify_request", "payment-notify-public-key");
    rig.at(d["now"].as_i64().unwrap());
    let e = rig
        .client
        .verify_partner_notify(&headers(d), s(d, "body").as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(e, NotifyError::Resource(_)), "{e:?}");
    assert_eq!(e.reply().0, 500);
}

#[tokio::test]
async fn partner_refund_notify_is_typed() {
    let all = all();
    let rig = Rig::new(&all);
    let key = ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap();
    let resource = r#"{"sp_mchid":"1900000100","sub_mchid":"1900000200","out_trade_no":"SPX20260101120500B7","transaction_id":"4200002026010112050000000007","out_refund_no":"SPR1","refund_id":"50300","refund_status":"SUCCESS","success_time":"2026-01-02T09:00:05+08:00","user_received_account":"支付用户零钱","amount":{"total":1800,"refund":800,"payer_total":1800,"payer_refund":800}}"#;
    let body = json!({"id":"n2","create_time":"2026-01-02T09:00:06+08:00","resource_type":"encrypt-resource",
        "event_type":"REFUND.SUCCESS","summary":"退款成功","resource":{"original_type":"refund",
        "algorithm":"AEAD_AES_256_GCM","associated_data":"refund","nonce":"abcdefghijkl",
        "ciphertext": key.encrypt(b"refund", b"abcdefghijkl", resource.as_bytes()).unwrap()}})
    .to_string();
    let answer = signed(&all, 200, &body);
    let pairs: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let n = rig
        .client
        .verify_partner_notify(&WechatpayHeaders::from_pairs(pairs), body.as_bytes())
        .await
        .unwrap();
    let PartnerNotifyEvent::Refund(r) = &n.event else {
        panic!("{:?}", n.event);
    };
    assert_eq!(
        (r.sp_mchid.as_str(), r.sub_mchid.as_str()),
        ("1900000100", "1900000200")
    );
    assert_eq!(r.out_refund_no, "SPR1");
    assert_eq!(r.refund_status, "SUCCESS");
    assert_eq!(r.amount.as_ref().unwrap().refund, Some(Fen(800)));
    r.check_sub_merchant(&sub(&all)).unwrap();
}

fn transaction_body(sp_mchid: &str, sub_mchid: &str) -> String {
    json!({"sp_appid":"wx9f8e7d6c5b4a3f2e","sp_mchid":sp_mchid,"sub_appid":"wx0a1b2c3d4e5f6a7b",
        "sub_mchid":sub_mchid,"out_trade_no":"SPX20260101120500B7","trade_state":"NOTPAY",
        "trade_state_desc":"订单未支付"})
    .to_string()
}

#[tokio::test]
async fn every_partner_request_is_exact() {
    let all = all();
    let sub = sub(&all);
    let rig = Rig::new(&all);

    // NATIVE: no payer.
    rig.reply(signed(
        &all,
        200,
        r#"{"code_url":"weixin://wxpay/bizpayurl?pr=P1"}"#,
    ));
    let native = PartnerPrepayRequest::native("门店-扫码", "SPX20260101120600N1", Fen(500));
    let r = rig
        .client
        .partner_native_prepay(&sub, &native)
        .await
        .unwrap();
    assert_eq!(r.code_url, "weixin://wxpay/bizpayurl?pr=P1");
    assert_sent(
        &all,
        &rig.last(),
        "POST",
        "/v3/pay/partner/transactions/native",
        r#"{"sp_appid":"wx9f8e7d6c5b4a3f2e","sp_mchid":"1900000100","sub_appid":"wx0a1b2c3d4e5f6a7b","sub_mchid":"1900000200","description":"门店-扫码","out_trade_no":"SPX20260101120600N1","notify_url":"https://pay.example.com/wxpay/v3/notify","amount":{"total":500,"currency":"CNY"}}"#,
    );

    // JSAPI with sp_openid, time_expire and attach, without sub_appid.
    let bare = SubMerchant::new("wx9f8e7d6c5b4a3f2e", "1900000100", "1900000200");
    rig.reply(signed(&all, 200, r#"{"prepay_id":"wxP2"}"#));
    let order = jsapi_order(PartnerPayer::SpOpenid("oSp1".into()))
        .with_time_expire(
            chrono::DateTime::parse_from_rfc3339("2026-01-01T12:30:00+08:00").unwrap(),
        )
        .with_attach("t=4");
    rig.client
        .partner_jsapi_prepay(&bare, &order)
        .await
        .unwrap();
    assert_sent(
        &all,
        &rig.last(),
        "POST",
        "/v3/pay/partner/transactions/jsapi",
        r#"{"sp_appid":"wx9f8e7d6c5b4a3f2e","sp_mchid":"1900000100","sub_mchid":"1900000200","description":"服务商测试门店-咖啡","out_trade_no":"SPX20260101120500B7","time_expire":"2026-01-01T12:30:00+08:00","attach":"t=4","notify_url":"https://pay.example.com/wxpay/v3/notify","amount":{"total":1800,"currency":"CNY"},"payer":{"sp_openid":"oSp1"}}"#,
    );

    // Query by out_trade_no and by transaction_id.
    rig.reply(signed(
        &all,
        200,
        &transaction_body("1900000100", "1900000200"),
    ));
    let t = rig
        .client
        .partner_query_by_out_trade_no(&sub, "SPX20260101120500B7")
        .await
        .unwrap();
    assert_eq!(t.state(), TradeState::NotPay);
    assert_eq!(t.request_id.as_deref(), Some("REQ-P"));
    assert_sent(
        &all,
        &rig.last(),
        "GET",
        "/v3/pay/partner/transactions/out-trade-no/SPX20260101120500B7?sp_mchid=1900000100&sub_mchid=1900000200",
        "",
    );
    rig.reply(signed(
        &all,
        200,
        &transaction_body("1900000100", "1900000200"),
    ));
    rig.client
        .partner_query_by_transaction_id(&sub, "4200002026010112050000000007")
        .await
        .unwrap();
    assert_sent(
        &all,
        &rig.last(),
        "GET",
        "/v3/pay/partner/transactions/id/4200002026010112050000000007?sp_mchid=1900000100&sub_mchid=1900000200",
        "",
    );

    // Close: 204.
    rig.reply(signed(&all, 204, ""));
    rig.client
        .partner_close(&sub, "SPX20260101120500B7")
        .await
        .unwrap();
    assert_sent(
        &all,
        &rig.last(),
        "POST",
        "/v3/pay/partner/transactions/out-trade-no/SPX20260101120500B7/close",
        r#"{"sp_mchid":"1900000100","sub_mchid":"1900000200"}"#,
    );

    // Refund: the direct body with sub_mchid first.
    let refund_answer = r#"{"refund_id":"50300","out_refund_no":"SPR1","transaction_id":"4200002026010112050000000007","out_trade_no":"SPX20260101120500B7","status":"PROCESSING","amount":{"total":1800,"refund":800,"currency":"CNY"}}"#;
    rig.reply(signed(&all, 200, refund_answer));
    let refund = RefundRequest::new(
        RefundTarget::OutTradeNo("SPX20260101120500B7".into()),
        "SPR1",
        Fen(800),
        Fen(1800),
    )
    .with_reason("部分退款");
    let r = rig.client.partner_refund(&sub, &refund).await.unwrap();
    assert_eq!(r.status.as_deref(), Some("PROCESSING"));
    assert_sent(
        &all,
        &rig.last(),
        "POST",
        "/v3/refund/domestic/refunds",
        r#"{"sub_mchid":"1900000200","out_trade_no":"SPX20260101120500B7","out_refund_no":"SPR1","reason":"部分退款","notify_url":"https://pay.example.com/wxpay/v3/refund-notify","amount":{"refund":800,"total":1800,"currency":"CNY"}}"#,
    );

    // Refund query: ?sub_mchid= only.
    rig.reply(signed(&all, 200, refund_answer));
    rig.client.partner_refund_query(&sub, "SPR1").await.unwrap();
    assert_sent(
        &all,
        &rig.last(),
        "GET",
        "/v3/refund/domestic/refunds/SPR1?sub_mchid=1900000200",
        "",
    );
    assert_eq!(rig.rec.sent().len(), 7);
}

#[tokio::test]
async fn rules_are_refused_before_anything_is_sent() {
    let all = all();
    let rig = Rig::new(&all);
    let good = sub(&all);
    let p = &all["keys"]["partner"];
    let bare = SubMerchant::new(s(p, "sp_appid"), s(p, "sp_mchid"), s(p, "sub_mchid"));

    // sub_openid without sub_appid.
    let e = rig
        .client
        .partner_jsapi_prepay(&bare, &jsapi_order(sub_openid()))
        .await
        .unwrap_err();
    assert_eq!(partner_err(e), PartnerError::SubOpenidWithoutSubAppid);
    // JSAPI without payer.
    let native = PartnerPrepayRequest::native("d", "SPX20260101120600N1", Fen(1));
    let e = rig
        .client
        .partner_jsapi_prepay(&good, &native)
        .await
        .unwrap_err();
    assert_eq!(partner_err(e), PartnerError::MissingPayer);
    // An empty openid.
    let e = rig
        .client
        .partner_jsapi_prepay(&good, &jsapi_order(PartnerPayer::SubOpenid(String::new())))
        .await
        .unwrap_err();
    assert_eq!(
        partner_err(e),
        PartnerError::Empty {
            field: "payer.sub_openid"
        }
    );
    // Zero amount.
    let e = rig
        .client
        .partner_native_prepay(&good, &PartnerPrepayRequest::native("d", "SPX2", Fen(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Field(ref f) if f.field == "amount.total"),
        "{e:?}"
    );

    // Another provider than the one whose key signs: every call refuses.
    let mut foreign = good.clone();
    foreign.sp_mchid = "1900000109".into();
    let mismatch = PartnerError::SpMchidMismatch {
        client: "1900000100".into(),
        sub: "1900000109".into(),
    };
    let refund = RefundRequest::new(
        RefundTarget::TransactionId("4200002026010112050000000007".into()),
        "SPR1",
        Fen(1),
        Fen(1800),
    );
    let errors = [
        rig.client
            .partner_jsapi_prepay(&foreign, &jsapi_order(sub_openid()))
            .await
            .map(|_| ())
            .unwrap_err(),
        rig.client
            .partner_native_prepay(&foreign, &native)
            .await
            .map(|_| ())
            .unwrap_err(),
        rig.client
            .partner_query_by_out_trade_no(&foreign, "SPX1")
            .await
            .map(|_| ())
            .unwrap_err(),
        rig.client
            .partner_query_by_transaction_id(&foreign, "42")
            .await
            .map(|_| ())
            .unwrap_err(),
        rig.client
            .partner_close(&foreign, "SPX1")
            .await
            .unwrap_err(),
        rig.client
            .partner_refund(&foreign, &refund)
            .await
            .map(|_| ())
            .unwrap_err(),
        rig.client
            .partner_refund_query(&foreign, "SPR1")
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    for e in errors {
        assert!(!e.outcome_unknown(), "nothing was sent: {e:?}");
        assert_eq!(partner_err(e), mismatch);
    }
    // An empty sub_mchid.
    let mut empty = good.clone();
    empty.sub_mchid = String::new();
    let e = rig.client.partner_close(&empty, "SPX1").await.unwrap_err();
    assert_eq!(partner_err(e), PartnerError::Empty { field: "sub_mchid" });

    assert!(rig.rec.sent().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn verified_answers_about_another_merchant_are_refused() {
    let all = all();
    let rig = Rig::new(&all);
    let sub = sub(&all);

    for (sp, sb, field) in [
        ("1900000100", "1900000201", "sub_mchid"),
        ("1900000101", "1900000200", "sp_mchid"),
    ] {
        rig.reply(signed(&all, 200, &transaction_body(sp, sb)));
        let e = rig
            .client
            .partner_query_by_out_trade_no(&sub, "SPX20260101120500B7")
            .await
            .unwrap_err();
        assert!(e.outcome_unknown());
        assert!(!e.is_definite_refusal());
        match partner_err(e) {
            PartnerError::ForeignAnswer {
                field: f,
                found: Some(found),
                ..
            } => {
                assert_eq!(f, field);
                assert_eq!(found, if field == "sp_mchid" { sp } else { sb });
            }
            other => panic!("{other:?}"),
        }
    }
    // A direct merchant's transaction (mchid, no sp_/sub_ ids) is not read
    // as a partner one: outcome unknown.
    rig.reply(signed(
        &all,
        200,
        r#"{"appid":"wx1a2b3c4d5e6f7a8b","mchid":"1900000200","out_trade_no":"SPX20260101120500B7","trade_state":"SUCCESS"}"#,
    ));
    let e = rig
        .client
        .partner_query_by_transaction_id(&sub, "4200002026010112050000000007")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(e.outcome_unknown());

    // A refund answer naming another sub-merchant.
    let foreign = r#"{"sp_mchid":"1900000100","sub_mchid":"1900000299","refund_id":"50300","out_refund_no":"SPR1","status":"SUCCESS"}"#;
    rig.reply(signed(&all, 200, foreign));
    let e = rig
        .client
        .partner_refund_query(&sub, "SPR1")
        .await
        .unwrap_err();
    assert!(e.outcome_unknown());
    assert!(matches!(
        partner_err(e),
        PartnerError::ForeignAnswer {
            field: "sub_mchid",
            ..
        }
    ));
    rig.reply(signed(&all, 200, foreign));
    let refund = RefundRequest::new(
        RefundTarget::OutTradeNo("SPX20260101120500B7".into()),
        "SPR1",
        Fen(800),
        Fen(1800),
    );
    let e = rig.client.partner_refund(&sub, &refund).await.unwrap_err();
    assert!(matches!(
        e,
        Error::Partner(PartnerError::ForeignAnswer { .. })
    ));
    // An id that is not a string is not ours either.
    let numeric =
        r#"{"sub_mchid":1900000200,"refund_id":"50300","out_refund_no":"SPR1","status":"SUCCESS"}"#;
    rig.reply(signed(&all, 200, numeric));
    let e = rig
        .client
        .partner_refund_query(&sub, "SPR1")
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Partner(PartnerError::ForeignAnswer { .. })
    ));
    assert_eq!(rig.rec.sent().len(), 6);
}

#[tokio::test]
async fn partner_trade_bill_names_the_sub_merchant() {
    use wxpay_core::bill::download::{Compression, TradeBillType};
    let all = all();
    let rig = Rig::new(&all);
    let sub = sub(&all);
    let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let answer = json!({"hash_type":"SHA1","hash_value":"0123456789abcdef0123456789abcdef01234567",
        "download_url":"http://wechat.test/v3/billdownload/file?token=T1"})
    .to_string();
    for (compression, query) in [
        (
            Compression::Gzip,
            "bill_date=2026-01-01&bill_type=ALL&sub_mchid=1900000200&tar_type=GZIP",
        ),
        (
            Compression::Plain,
            "bill_date=2026-01-01&bill_type=ALL&sub_mchid=1900000200",
        ),
    ] {
        rig.reply(signed(&all, 200, &answer));
        let a = rig
            .client
            .apply_partner_trade_bill(&sub, date, TradeBillType::All, compression)
            .await
            .unwrap();
        assert_eq!(a.hash_value(), "0123456789abcdef0123456789abcdef01234567");
        assert_sent(
            &all,
            &rig.last(),
            "GET",
            &format!("/v3/bill/tradebill?{query}"),
            "",
        );
    }
    let mut foreign = sub.clone();
    foreign.sp_mchid = "1900000109".into();
    let e = rig
        .client
        .partner_trade_bill(&foreign, date, TradeBillType::All, Compression::Plain)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Partner(PartnerError::SpMchidMismatch { .. })
    ));
    assert_eq!(rig.rec.sent().len(), 2);
}
