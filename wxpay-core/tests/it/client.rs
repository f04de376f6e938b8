//! The client: exact requests sent, every answer verified before belief.

use wxpay_core::{
    Client, ErrCode, Error, Fen, HttpResponse, OutTradeNo, SignType, TradeState,
    messages::{RefundRequest, UnifiedOrderRequest},
    xml,
};

use crate::support::*;

fn order() -> UnifiedOrderRequest {
    UnifiedOrderRequest::jsapi(
        OutTradeNo::new("20150806125346").unwrap(),
        "腾讯充值中心-QQ会员充值",
        Fen(88),
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    )
    .with_client_ip("123.12.12.123")
}

#[tokio::test]
async fn unifiedorder_sends_exactly_the_signed_xml() {
    let rec = Recorder::default();
    rec.reply_xml(signed_answer(&[
        ("prepay_id", "wx201411101639507cbf6ffd8b0779950874"),
        ("trade_type", "JSAPI"),
    ]));
    let client = Client::with_transport(config(), rec.clone());
    let answer = client.unified_order(&order()).await.unwrap();
    assert_eq!(
        answer.prepay_id.as_deref(),
        Some("wx201411101639507cbf6ffd8b0779950874")
    );

    let sent = rec.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, "http://wechat.test/pay/unifiedorder");
    assert!(!sent[0].client_cert);
    let body = sent[0].body.as_deref().unwrap();
    let nonce = xml::parse(body.as_bytes())
        .unwrap()
        .get("nonce_str")
        .unwrap()
        .to_owned();
    assert_eq!(nonce.len(), 32);
    let fields = [
        ("appid", APPID),
        ("body", "腾讯充值中心-QQ会员充值"),
        ("mch_id", MCH_ID),
        ("nonce_str", nonce.as_str()),
        ("notify_url", "https://shop.example.com/pay/notify"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("out_trade_no", "20150806125346"),
        ("sign_type", "MD5"),
        ("spbill_create_ip", "123.12.12.123"),
        ("total_fee", "88"),
        ("trade_type", "JSAPI"),
    ];
    let sign = md5_sign(&fields, KEY);
    let cdata = |k: &str, v: &str| format!("<{k}><![CDATA[{v}]]></{k}>");
    // sorted element order; digit-only values bare, everything else CDATA
    let expected = [
        cdata("appid", APPID),
        cdata("body", "腾讯充值中心-QQ会员充值"),
        "<mch_id>10000100</mch_id>".to_owned(),
        cdata("nonce_str", &nonce),
        cdata("notify_url", "https://shop.example.com/pay/notify"),
        cdata("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        "<out_trade_no>20150806125346</out_trade_no>".to_owned(),
        cdata("sign", &sign),
        cdata("sign_type", "MD5"),
        cdata("spbill_create_ip", "123.12.12.123"),
        "<total_fee>88</total_fee>".to_owned(),
        cdata("trade_type", "JSAPI"),
    ]
    .concat();
    let expected = format!("<xml>{expected}</xml>");
    assert_eq!(body, expected);
}

#[tokio::test]
async fn hmac_merchants_send_sign_type_and_verify_hmac_answers() {
    let rec = Recorder::default();
    let mut answer =
        xml::parse(signed_answer(&[("prepay_id", "wx1"), ("trade_type", "JSAPI")]).as_bytes())
            .unwrap();
    let key = wxpay_core::ApiKey::new(KEY);
    let hmac = wxpay_core::sign::sign(&answer, &key, SignType::HmacSha256);
    answer.insert("sign", hmac);
    rec.reply_xml(xml::to_xml(&answer));
    let client = Client::with_transport(config().with_sign_type(SignType::HmacSha256), rec.clone());
    client.unified_order(&order()).await.unwrap();
    let sent = xml::parse(rec.sent()[0].body.as_deref().unwrap().as_bytes()).unwrap();
    assert_eq!(sent.get("sign_type"), Some("HMAC-SHA256"));
    assert_eq!(sent.get("sign").unwrap().len(), 64);
    assert!(wxpay_core::sign::verify(&sent, &key, SignType::HmacSha256).is_ok());

    // an MD5-signed answer to an HMAC request is refused
    rec.reply_xml(signed_answer(&[("prepay_id", "wx1")]));
    let e = client.unified_order(&order()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidSignature(_)), "{e:?}");
}

#[tokio::test]
async fn answers_are_refused_in_the_spec_order() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());

    // a forged sign
    let forged = signed_answer(&[("prepay_id", "wx1")]).replace("wx1", "wx2");
    rec.reply_xml(forged);
    assert!(matches!(
        client.unified_order(&order()).await,
        Err(Error::InvalidSignature(_))
    ));

    // no sign at all on a SUCCESS envelope
    rec.reply_xml("<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code><prepay_id>x</prepay_id></xml>".into());
    assert!(matches!(
        client.unified_order(&order()).await,
        Err(Error::InvalidSignature(_))
    ));

    // protocol FAIL (unsigned)
    rec.reply_xml("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>".into());
    match client.unified_order(&order()).await {
        Err(Error::Protocol { return_msg }) => assert_eq!(return_msg, "签名失败"),
        other => panic!("{other:?}"),
    }

    // business FAIL, signed
    rec.reply_xml(signed_answer(&[
        ("result_code", "FAIL"),
        ("err_code", "INVALID_REQUEST"),
        ("err_code_des", "201 商户订单号重复"),
    ]));
    match client.unified_order(&order()).await {
        Err(Error::Business {
            err_code,
            err_code_des,
        }) => {
            assert_eq!(err_code, ErrCode::InvalidRequest);
            assert_eq!(err_code_des, "201 商户订单号重复");
        }
        other => panic!("{other:?}"),
    }

    // an answer for another merchant
    let mut other = xml::parse(signed_answer(&[("prepay_id", "wx1")]).as_bytes()).unwrap();
    other.insert("appid", "wx_other");
    let s = md5_sign(&other.iter().collect::<Vec<_>>(), KEY);
    other.insert("sign", s);
    rec.reply_xml(xml::to_xml(&other));
    assert!(
        matches!(client.unified_order(&order()).await, Err(Error::Field(f)) if f.field == "appid")
    );

    // transport: non-200, garbage, failure
    rec.reply(Ok(HttpResponse::new(502, b"bad gateway")));
    let e = client.unified_order(&order()).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }) && e.outcome_unknown() && e.is_retryable());
    rec.reply(Ok(HttpResponse::new(200, b"<html>oops</html>")));
    let e = client.unified_order(&order()).await.unwrap_err();
    assert!(matches!(e, Error::Xml(_)) && e.outcome_unknown());
    rec.reply(Err("connection reset".into()));
    assert!(matches!(
        client.unified_order(&order()).await,
        Err(Error::Transport { .. })
    ));

    // unifiedorder is never retried by the client itself
    assert_eq!(rec.sent().len(), 8);
}

#[tokio::test]
async fn field_rules_are_checked_before_sending() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());
    let mut o = order();
    o.body = "会员🎉".into();
    match client.unified_order(&o).await {
        Err(Error::Field(f)) => assert_eq!(f.field, "body"),
        other => panic!("{other:?}"),
    }
    assert!(rec.sent().is_empty(), "nothing may be sent");
}

#[tokio::test]
async fn orderquery_retries_systemerror_then_reads_the_state() {
    let rec = Recorder::default();
    rec.reply_xml(signed_answer(&[
        ("result_code", "FAIL"),
        ("err_code", "SYSTEMERROR"),
    ]));
    rec.reply(Err("timeout".into()));
    rec.reply_xml(signed_answer(&[
        ("trade_state", "SUCCESS"),
        ("out_trade_no", "20150806125346"),
        ("transaction_id", "4200000000000000000000000001"),
        ("total_fee", "88"),
        ("cash_fee", "88"),
        ("time_end", "20150806125400"),
    ]));
    let client =
        Client::with_transport(config(), rec.clone()).with_retry(wxpay_core::RetryPolicy {
            attempts: 3,
            backoff: std::time::Duration::from_millis(1),
        });
    let q = client
        .order_query(&OutTradeNo::new("20150806125346").unwrap())
        .await
        .unwrap();
    assert_eq!(q.trade_state, TradeState::Success);
    assert_eq!(q.total_fee, Some(Fen(88)));
    assert_eq!(rec.sent().len(), 3);
    // not retried: ORDERNOTEXIST
    rec.reply_xml(signed_answer(&[
        ("result_code", "FAIL"),
        ("err_code", "ORDERNOTEXIST"),
    ]));
    let e = client
        .order_query(&OutTradeNo::new("X").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.err_code(), Some(&ErrCode::OrderNotExist));
    assert_eq!(rec.sent().len(), 4);
}

#[tokio::test]
async fn refund_uses_the_certificate_and_closeorder_accepts_closed() {
    let rec = Recorder::default();
    rec.reply_xml(signed_answer(&[
        ("refund_id", "5000"),
        ("out_refund_no", "R1"),
        ("refund_fee", "10"),
    ]));
    let client = Client::with_transport(config(), rec.clone());
    let r = client
        .refund(&RefundRequest::new(
            OutTradeNo::new("A1").unwrap(),
            "R1",
            Fen(88),
            Fen(10),
        ))
        .await
        .unwrap();
    assert_eq!(r.refund_fee, Some(Fen(10)));
    let sent = rec.sent();
    assert_eq!(sent[0].url, "http://wechat.test/secapi/pay/refund");
    assert!(sent[0].client_cert);

    rec.reply_xml(signed_answer(&[
        ("result_code", "FAIL"),
        ("err_code", "ORDERCLOSED"),
    ]));
    client
        .close_order(&OutTradeNo::new("A1").unwrap())
        .await
        .unwrap();
    rec.reply_xml(signed_answer(&[
        ("result_code", "FAIL"),
        ("err_code", "ORDERPAID"),
    ]));
    let e = client
        .close_order(&OutTradeNo::new("A1").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.err_code(), Some(&ErrCode::OrderPaid));
}

#[tokio::test]
async fn code2session_needs_the_secret_and_never_leaks_it() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());
    assert!(matches!(
        client.code2session("c").await,
        Err(Error::Config(_))
    ));

    let secret = "topsecret-app-secret";
    let cfg = config()
        .with_app_secret(wxpay_core::AppSecret::new(secret))
        .with_open_api_base("http://open.test");
    let client = Client::with_transport(cfg.clone(), rec.clone());
    rec.reply(Ok(HttpResponse::new(
        200,
        br#"{"openid":"o1","session_key":"sk-value"}"#,
    )));
    let s = client.code2session("a code&x").await.unwrap();
    assert_eq!(s.openid, "o1");
    assert!(!format!("{s:?}").contains("sk-value"));
    let url = &rec.sent()[0].url;
    assert_eq!(
        url,
        &format!(
            "http://open.test/sns/jscode2session?appid={APPID}&secret={secret}&js_code=a%20code%26x&grant_type=authorization_code"
        )
    );

    // a real transport failure must not print the URL (it holds the secret)
    let real = Client::new(cfg.with_open_api_base("http://127.0.0.1:9")).unwrap();
    let e = real.code2session("c").await.unwrap_err();
    let shown = format!("{e} {e:?} {:?}", std::error::Error::source(&e));
    assert!(!shown.contains(secret), "{shown}");
}

#[tokio::test]
async fn reqwest_transport_against_a_real_http_stub() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = signed_answer(&[("trade_state", "NOTPAY"), ("out_trade_no", "A1")]);
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = Vec::new();
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break;
                }
            }
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            answer.len(),
            answer
        );
        sock.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8(got).unwrap()
    });
    let client = Client::new(config().with_api_base(format!("http://{addr}"))).unwrap();
    let q = client
        .order_query(&OutTradeNo::new("A1").unwrap())
        .await
        .unwrap();
    assert_eq!(q.trade_state, TradeState::NotPay);
    let request = server.await.unwrap();
    assert!(
        request.starts_with("POST /pay/orderquery HTTP/1.1\r\n"),
        "{request}"
    );
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    let sent = xml::parse(body.as_bytes()).unwrap();
    assert_eq!(sent.get("out_trade_no"), Some("A1"));
    assert!(wxpay_core::sign::verify(&sent, &wxpay_core::ApiKey::new(KEY), SignType::Md5).is_ok());
}
