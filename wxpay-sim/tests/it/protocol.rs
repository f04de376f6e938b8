//! Signatures and protocol-level failures.

use crate::common::*;

#[test]
fn independent_signer_matches_spec_vectors() {
    let f = fields(&[
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ]);
    let key = "192006250b4c09247ec02edce69f6a2d";
    assert_eq!(
        spec_sign(&f, key, "MD5"),
        "9A0A8659F005D6984697E2CA0A9CF3B7"
    );
    assert_eq!(
        spec_sign(&f, key, "HMAC-SHA256"),
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    );
}

#[tokio::test]
async fn replies_are_signed_with_the_request_algorithm() {
    let env = Env::start().await;
    for st in [None, Some("MD5"), Some("HMAC-SHA256")] {
        let no = unique("sig");
        // `call` verifies the reply sign with the request's algorithm.
        let reply = create_order(&env, &no, "http://127.0.0.1:9/n", st).await;
        assert_eq!(reply["trade_type"], "JSAPI");
        assert!(reply["prepay_id"].starts_with("wx"));
        assert_eq!(reply["appid"], env.cfg.appid);
        assert_eq!(reply["mch_id"], env.cfg.mch_id);
        let q = env
            .call("/pay/orderquery", {
                let mut f = env.base(st);
                f.insert("out_trade_no".into(), no.clone());
                f
            })
            .await;
        assert_ok(&q);
        assert_eq!(q["trade_state"], "NOTPAY");
    }
}

#[tokio::test]
async fn protocol_failures_are_unsigned_fail_replies() {
    let env = Env::start().await;
    let check = |body: &str, msg: &str| {
        let r = parse(body);
        assert_eq!(r["return_code"], "FAIL", "{body}");
        assert_eq!(r["return_msg"], msg, "{body}");
        assert!(!r.contains_key("sign"));
        assert!(!r.contains_key("result_code"));
    };
    // GET on a POST endpoint
    let got = env
        .http
        .get(env.url("/pay/unifiedorder"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    check(&got.text().await.unwrap(), "请使用post方法");
    let (_, b) = env.post_raw("/pay/orderquery", "").await;
    check(&b, "post数据为空");
    let (_, b) = env
        .post_raw(
            "/pay/orderquery",
            b"<xml><body>\xb3\xe4\xd6\xb5</body></xml>".to_vec(),
        )
        .await;
    check(&b, "编码格式错误，请使用UTF-8编码");
    for bad in [
        "<xml><a>1</b></xml>",
        "not xml",
        "{\"a\":1}",
        "<xml><a>1</a>",
    ] {
        let (_, b) = env.post_raw("/pay/unifiedorder", bad).await;
        check(&b, "XML格式错误");
    }
    // A DTD (XXE) is refused, not expanded.
    let (_, b) = env
        .post_raw(
            "/pay/orderquery",
            r#"<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><a>&x;</a></xml>"#,
        )
        .await;
    check(&b, "XML格式错误");

    // Wrong key.
    let mut f = order_fields(&env, &unique("k"), "http://127.0.0.1:9/n", None);
    f.insert(
        "sign".into(),
        spec_sign(&f, "wrongkeywrongkeywrongkeywrongkey", "MD5"),
    );
    let (_, b) = env.post_raw("/pay/unifiedorder", xml_body(&f)).await;
    check(&b, "签名错误");
    // HMAC sign but no sign_type: the service checks MD5 and refuses.
    let mut f = order_fields(&env, &unique("k"), "http://127.0.0.1:9/n", None);
    f.insert("sign".into(), spec_sign(&f, env.key(), "HMAC-SHA256"));
    let (_, b) = env.post_raw("/pay/unifiedorder", xml_body(&f)).await;
    check(&b, "签名错误");
    // MD5 sign under sign_type=HMAC-SHA256.
    let mut f = order_fields(
        &env,
        &unique("k"),
        "http://127.0.0.1:9/n",
        Some("HMAC-SHA256"),
    );
    f.insert("sign".into(), spec_sign(&f, env.key(), "MD5"));
    let (_, b) = env.post_raw("/pay/unifiedorder", xml_body(&f)).await;
    check(&b, "签名错误");
    // A field changed after signing.
    let mut f = order_fields(&env, &unique("k"), "http://127.0.0.1:9/n", None);
    f.insert("sign".into(), spec_sign(&f, env.key(), "MD5"));
    f.insert("total_fee".into(), "1".into());
    let (_, b) = env.post_raw("/pay/unifiedorder", xml_body(&f)).await;
    check(&b, "签名错误");
    // Unknown algorithm.
    let mut f = env.base(Some("SHA1"));
    f.insert("out_trade_no".into(), "x123456".into());
    f.insert("sign".into(), "A".repeat(32));
    let (_, b) = env.post_raw("/pay/orderquery", xml_body(&f)).await;
    check(&b, "sign_type参数格式错误");
    // Nothing was created by any of this.
    assert!(env.sim.order("x123456").await.is_none());
}

#[tokio::test]
async fn identity_and_field_errors_are_signed_business_failures() {
    let env = Env::start().await;
    let url = "http://127.0.0.1:9/n";
    let with = |edit: &dyn Fn(&mut Fields)| {
        let mut f = order_fields(&env, &unique("f"), url, Some("HMAC-SHA256"));
        edit(&mut f);
        f
    };
    let cases: Vec<(Fields, &str)> = vec![
        (
            with(&|f| {
                f.remove("body");
            }),
            "LACK_PARAMS",
        ),
        (
            with(&|f| {
                f.remove("notify_url");
            }),
            "LACK_PARAMS",
        ),
        (
            with(&|f| {
                f.remove("openid");
            }),
            "LACK_PARAMS",
        ),
        (
            with(&|f| {
                f.insert("trade_type".into(), "NATIVE".into());
                f.remove("openid");
            }),
            "LACK_PARAMS",
        ),
        (
            with(&|f| {
                f.insert("mch_id".into(), "1234567890".into());
            }),
            "MCHID_NOT_EXIST",
        ),
        (
            with(&|f| {
                f.insert("appid".into(), "wx0000000000000000".into());
            }),
            "APPID_MCHID_NOT_MATCH",
        ),
        (
            with(&|f| {
                f.insert("appid".into(), "nope".into());
            }),
            "APPID_NOT_EXIST",
        ),
        (
            with(&|f| {
                f.insert("total_fee".into(), "0.88".into());
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("total_fee".into(), "0".into());
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("out_trade_no".into(), "x".repeat(33));
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("out_trade_no".into(), "订单123".into());
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("body".into(), "游戏".repeat(30));
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("body".into(), "emoji 😀".into());
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("trade_type".into(), "WHATEVER".into());
            }),
            "INVALID_REQUEST",
        ),
        (
            with(&|f| {
                f.insert("time_expire".into(), "2024-01-01".into());
            }),
            "INVALID_REQUEST",
        ),
    ];
    for (f, code) in cases {
        let no = f.get("out_trade_no").cloned().unwrap_or_default();
        let reply = env.call("/pay/unifiedorder", f).await;
        assert_err(&reply, code);
        assert!(!reply.contains_key("prepay_id"));
        assert!(
            env.sim.order(&no).await.is_none(),
            "{code} created an order"
        );
    }
    // orderquery without any order number
    let reply = env.call("/pay/orderquery", env.base(None)).await;
    assert_err(&reply, "LACK_PARAMS");
}

#[tokio::test]
async fn native_orders_need_product_id_and_get_a_code_url() {
    let env = Env::start().await;
    let no = unique("nat");
    let mut f = order_fields(&env, &no, "http://127.0.0.1:9/n", None);
    f.remove("openid");
    f.insert("trade_type".into(), "NATIVE".into());
    f.insert("product_id".into(), "P1".into());
    let reply = env.call("/pay/unifiedorder", f).await;
    assert_ok(&reply);
    assert_eq!(reply["trade_type"], "NATIVE");
    assert!(reply["code_url"].starts_with("weixin://wxpay/bizpayurl?pr="));
    assert!(reply["code_url"].len() <= 64);
    let paid = env.sim.pay(&no).await.unwrap();
    assert!(paid.openid.is_some(), "a NATIVE payer gets an openid");
}
