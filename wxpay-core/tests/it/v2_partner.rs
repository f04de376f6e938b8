//! v2 service-provider (partner) fields: `sub_mch_id`, `sub_appid`,
//! `sub_openid` sent and signed like every other field on unifiedorder,
//! orderquery, closeorder, refund and refundquery; refused before sending
//! when they break a rule; answers about another sub-merchant refused;
//! parsed from answers and notifies. Without them, requests carry exactly
//! the direct merchant's fields.

use wxpay_core::{
    Client, Error, Fen, NotifyError, OutTradeNo, Params, RefundStatus, SignType, crypto,
    messages::{RefundRequest, SubMerchant, UnifiedOrderRequest},
    notify, xml,
};

use crate::support::*;

const SUB_MCH_ID: &str = "1900000200";
const SUB_APPID: &str = "wx0a1b2c3d4e5f6a7b";
const SUB_OPENID: &str = "oQw7P5LmN2kR8sT4vX6yZ1aB3cD0";

fn no() -> OutTradeNo {
    OutTradeNo::new("SPX20260101120500B7").unwrap()
}

fn sub() -> SubMerchant {
    SubMerchant::new(SUB_MCH_ID).with_sub_appid(SUB_APPID)
}

fn order(openid: &str) -> UnifiedOrderRequest {
    UnifiedOrderRequest::jsapi(no(), "服务商测试门店-咖啡", Fen(1800), openid)
        .with_client_ip("123.12.12.123")
}

/// The `i`-th request's fields.
fn sent(rec: &Recorder, i: usize) -> Params {
    xml::parse(rec.sent()[i].body.as_deref().unwrap().as_bytes()).unwrap()
}

/// The request carries exactly the common fields plus `business`, and its
/// `sign` is the MD5 computed independently over all of them.
fn assert_signed_set(p: &Params, business: &[(&str, &str)]) {
    let nonce = p.get("nonce_str").unwrap().to_owned();
    let mut expected: Vec<(&str, &str)> = vec![
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", &nonce),
        ("sign_type", "MD5"),
    ];
    expected.extend_from_slice(business);
    expected.sort();
    let got: Vec<(&str, &str)> = p.iter().filter(|(k, _)| *k != "sign").collect();
    assert_eq!(got, expected);
    assert_eq!(p.get("sign"), Some(md5_sign(&expected, KEY).as_str()));
}

const DIRECT_ORDER: [(&str, &str); 8] = [
    ("body", "服务商测试门店-咖啡"),
    ("notify_url", "https://shop.example.com/pay/notify"),
    ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
    ("out_trade_no", "SPX20260101120500B7"),
    ("spbill_create_ip", "123.12.12.123"),
    ("total_fee", "1800"),
    ("trade_type", "JSAPI"),
    ("attach", "t=4"),
];

#[tokio::test]
async fn unifiedorder_with_and_without_the_sub_fields() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());

    // Direct: exactly the direct fields, no sub_* at all.
    rec.reply_xml(signed_answer(&[
        ("prepay_id", "wx1"),
        ("trade_type", "JSAPI"),
    ]));
    let direct = order("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").with_attach("t=4");
    let a = client.unified_order(&direct).await.unwrap();
    assert_eq!((a.sub_mch_id, a.sub_appid), (None, None));
    assert_signed_set(&sent(&rec, 0), &DIRECT_ORDER);

    // Partner, payer under the provider's appid: openid + sub_mch_id.
    rec.reply_xml(signed_answer(&[
        ("prepay_id", "wx2"),
        ("trade_type", "JSAPI"),
        ("sub_mch_id", SUB_MCH_ID),
    ]));
    let partner = direct
        .clone()
        .with_sub_merchant(SubMerchant::new(SUB_MCH_ID));
    let a = client.unified_order(&partner).await.unwrap();
    assert_eq!(a.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    let mut fields = DIRECT_ORDER.to_vec();
    fields.push(("sub_mch_id", SUB_MCH_ID));
    assert_signed_set(&sent(&rec, 1), &fields);

    // Partner, payer under sub_appid: sub_openid replaces openid.
    rec.reply_xml(signed_answer(&[
        ("prepay_id", "wx3"),
        ("trade_type", "JSAPI"),
        ("sub_mch_id", SUB_MCH_ID),
        ("sub_appid", SUB_APPID),
    ]));
    let partner = direct
        .clone()
        .with_sub_merchant(sub())
        .with_sub_openid(SUB_OPENID);
    let a = client.unified_order(&partner).await.unwrap();
    assert_eq!(a.prepay_id.as_deref(), Some("wx3"));
    assert_eq!(a.sub_appid.as_deref(), Some(SUB_APPID));
    let mut fields: Vec<_> = DIRECT_ORDER
        .iter()
        .copied()
        .filter(|(k, _)| *k != "openid")
        .collect();
    fields.extend([
        ("sub_appid", SUB_APPID),
        ("sub_mch_id", SUB_MCH_ID),
        ("sub_openid", SUB_OPENID),
    ]);
    assert_signed_set(&sent(&rec, 2), &fields);
}

#[tokio::test]
async fn partner_rules_are_refused_before_sending() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());
    let field = |e: Error| match e {
        Error::Field(f) => f.field,
        other => panic!("expected Error::Field, got {other:?}"),
    };

    // sub_openid without sub_appid.
    let o = order("")
        .with_sub_merchant(SubMerchant::new(SUB_MCH_ID))
        .with_sub_openid(SUB_OPENID);
    assert_eq!(
        field(client.unified_order(&o).await.unwrap_err()),
        "sub_appid"
    );
    // sub_openid without a sub-merchant.
    let o = order("").with_sub_openid(SUB_OPENID);
    assert_eq!(
        field(client.unified_order(&o).await.unwrap_err()),
        "sub_mch_id"
    );
    // Both openid and sub_openid.
    let mut o = order("")
        .with_sub_merchant(sub())
        .with_sub_openid(SUB_OPENID);
    o.openid = Some("oSp1".into());
    assert_eq!(
        field(client.unified_order(&o).await.unwrap_err()),
        "sub_openid"
    );
    // Neither (JSAPI): openid is still required.
    let o = order("").with_sub_merchant(sub());
    assert_eq!(field(client.unified_order(&o).await.unwrap_err()), "openid");
    // An empty sub_openid, an empty sub_mch_id, an empty sub_appid.
    let o = order("").with_sub_merchant(sub()).with_sub_openid("");
    assert_eq!(
        field(client.unified_order(&o).await.unwrap_err()),
        "sub_openid"
    );
    let o = order("o1").with_sub_merchant(SubMerchant::new(""));
    assert_eq!(
        field(client.unified_order(&o).await.unwrap_err()),
        "sub_mch_id"
    );
    let bad = SubMerchant::new(SUB_MCH_ID).with_sub_appid(" ");
    assert_eq!(
        field(client.partner_order_query(&bad, &no()).await.unwrap_err()),
        "sub_appid"
    );
    let long = SubMerchant::new("1".repeat(33));
    assert_eq!(
        field(client.partner_close_order(&long, &no()).await.unwrap_err()),
        "sub_mch_id"
    );
    let refund = RefundRequest::new(no(), "SPR1", Fen(1800), Fen(800))
        .with_sub_merchant(SubMerchant::new(""));
    assert_eq!(
        field(client.refund(&refund).await.unwrap_err()),
        "sub_mch_id"
    );
    assert!(rec.sent().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn partner_queries_close_and_refund_send_the_sub_fields() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());
    let echo = [("sub_mch_id", SUB_MCH_ID), ("sub_appid", SUB_APPID)];
    let with_echo = |extra: &[(&'static str, &'static str)]| {
        let mut v = extra.to_vec();
        v.extend(echo);
        signed_answer(&v)
    };
    let sub_fields = [("sub_appid", SUB_APPID), ("sub_mch_id", SUB_MCH_ID)];

    rec.reply_xml(with_echo(&[
        ("trade_state", "SUCCESS"),
        ("out_trade_no", "SPX20260101120500B7"),
        ("sub_openid", SUB_OPENID),
        ("total_fee", "1800"),
    ]));
    let q = client.partner_order_query(&sub(), &no()).await.unwrap();
    assert_eq!(q.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    assert_eq!(q.sub_appid.as_deref(), Some(SUB_APPID));
    assert_eq!(q.sub_openid.as_deref(), Some(SUB_OPENID));
    assert_eq!(q.total_fee, Some(Fen(1800)));
    let mut f = vec![("out_trade_no", "SPX20260101120500B7")];
    f.extend(sub_fields);
    assert_signed_set(&sent(&rec, 0), &f);
    assert_eq!(rec.sent()[0].url, "http://wechat.test/pay/orderquery");

    rec.reply_xml(with_echo(&[]));
    client.partner_close_order(&sub(), &no()).await.unwrap();
    assert_signed_set(&sent(&rec, 1), &f);
    assert_eq!(rec.sent()[1].url, "http://wechat.test/pay/closeorder");

    rec.reply_xml(with_echo(&[
        ("refund_id", "50300"),
        ("out_refund_no", "SPR1"),
        ("refund_fee", "800"),
    ]));
    let refund = RefundRequest::new(no(), "SPR1", Fen(1800), Fen(800)).with_sub_merchant(sub());
    let r = client.refund(&refund).await.unwrap();
    assert_eq!(r.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    let mut rf = vec![
        ("out_trade_no", "SPX20260101120500B7"),
        ("out_refund_no", "SPR1"),
        ("total_fee", "1800"),
        ("refund_fee", "800"),
    ];
    rf.extend(sub_fields);
    assert_signed_set(&sent(&rec, 2), &rf);
    assert_eq!(rec.sent()[2].url, "http://wechat.test/secapi/pay/refund");
    assert!(rec.sent()[2].client_cert);

    rec.reply_xml(with_echo(&[
        ("out_trade_no", "SPX20260101120500B7"),
        ("out_refund_no_0", "SPR1"),
        ("refund_status_0", "SUCCESS"),
    ]));
    let rq = client.partner_refund_query(&sub(), "SPR1").await.unwrap();
    assert_eq!(rq.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    assert_eq!(rq.refunds[0].status, RefundStatus::Success);
    let mut qf = vec![("out_refund_no", "SPR1")];
    qf.extend(sub_fields);
    assert_signed_set(&sent(&rec, 3), &qf);

    rec.reply_xml(with_echo(&[("out_refund_no_0", "SPR1")]));
    client
        .partner_refund_query_by_order(&sub(), &no())
        .await
        .unwrap();
    assert_signed_set(&sent(&rec, 4), &f);
    assert_eq!(rec.sent()[4].url, "http://wechat.test/pay/refundquery");

    // The direct calls send no sub field.
    rec.reply_xml(signed_answer(&[("trade_state", "NOTPAY")]));
    client.order_query(&no()).await.unwrap();
    assert_signed_set(&sent(&rec, 5), &[("out_trade_no", "SPX20260101120500B7")]);
}

#[tokio::test]
async fn answers_about_another_sub_merchant_are_refused() {
    let rec = Recorder::default();
    let client = Client::with_transport(config(), rec.clone());
    for (field, value) in [("sub_mch_id", "1900000201"), ("sub_appid", "wxother")] {
        let mut fields = vec![("trade_state", "SUCCESS"), ("sub_mch_id", SUB_MCH_ID)];
        fields.retain(|(k, _)| *k != field);
        fields.push((field, value));
        rec.reply_xml(signed_answer(&fields));
        match client.partner_order_query(&sub(), &no()).await {
            Err(Error::Field(f)) => assert_eq!(f.field, field),
            other => panic!("{other:?}"),
        }
    }
    // An answer without the echo is accepted (v2 answers need not echo).
    rec.reply_xml(signed_answer(&[("trade_state", "SUCCESS")]));
    client.partner_order_query(&sub(), &no()).await.unwrap();
    // A direct call is not checked against sub fields it did not send.
    rec.reply_xml(signed_answer(&[
        ("trade_state", "SUCCESS"),
        ("sub_mch_id", "1900000201"),
    ]));
    client.order_query(&no()).await.unwrap();
    assert_eq!(rec.sent().len(), 4, "a refused answer is not retried");
}

#[test]
fn payment_notify_with_sub_fields_is_parsed() {
    let fields = [
        ("appid", APPID),
        ("bank_type", "OTHERS"),
        ("cash_fee", "1800"),
        ("mch_id", MCH_ID),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ("out_trade_no", "SPX20260101120500B7"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("sub_appid", SUB_APPID),
        ("sub_mch_id", SUB_MCH_ID),
        ("sub_openid", SUB_OPENID),
        ("time_end", "20260101120602"),
        ("total_fee", "1800"),
        ("trade_type", "JSAPI"),
        ("transaction_id", "4200002026010112050000000007"),
    ];
    let mut p: Params = fields.into_iter().collect();
    p.insert("sign", md5_sign(&fields, KEY));
    let body = xml::to_xml(&p);
    let n = notify::verify_payment_notify(body.as_bytes(), &config(), SignType::Md5).unwrap();
    assert!(n.is_paid());
    assert_eq!(n.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    assert_eq!(n.sub_appid.as_deref(), Some(SUB_APPID));
    assert_eq!(n.sub_openid.as_deref(), Some(SUB_OPENID));
    assert_eq!(n.openid, None);
    assert_eq!(n.total_fee, Fen(1800));

    // The sub fields are signed: changing one breaks the signature.
    let forged = body.replace(SUB_MCH_ID, "1900000201");
    assert!(matches!(
        notify::verify_payment_notify(forged.as_bytes(), &config(), SignType::Md5),
        Err(NotifyError::Signature(_))
    ));
}

fn refund_notify(inner_sub: Option<&str>, outer_sub: Option<&str>) -> String {
    let key = wxpay_core::ApiKey::new(KEY);
    let mut inner: Params = [
        ("out_trade_no", "SPX20260101120500B7"),
        ("out_refund_no", "SPR1"),
        ("refund_id", "50300"),
        ("refund_fee", "800"),
        ("total_fee", "1800"),
        ("refund_status", "SUCCESS"),
    ]
    .into_iter()
    .collect();
    inner.insert_opt("sub_mch_id", inner_sub);
    let plain = xml::to_xml_with_root(&inner, "root");
    let mut outer: Params = [
        ("return_code", "SUCCESS"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "n1"),
    ]
    .into_iter()
    .collect();
    outer.insert_opt("sub_mch_id", outer_sub);
    outer.insert_opt("sub_appid", outer_sub.map(|_| SUB_APPID));
    outer.insert("req_info", crypto::encrypt_req_info(&plain, &key));
    xml::to_xml(&outer)
}

#[test]
fn refund_notify_with_sub_fields_is_parsed() {
    let n =
        notify::decrypt_refund_notify(refund_notify(None, Some(SUB_MCH_ID)).as_bytes(), &config())
            .unwrap();
    assert_eq!(n.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    assert_eq!(n.sub_appid.as_deref(), Some(SUB_APPID));
    assert_eq!(n.refund_fee, Fen(800));
    // The decrypted (authenticated) value is taken without an outer one…
    let n =
        notify::decrypt_refund_notify(refund_notify(Some(SUB_MCH_ID), None).as_bytes(), &config())
            .unwrap();
    assert_eq!(n.sub_mch_id.as_deref(), Some(SUB_MCH_ID));
    // …and an outer value that disagrees with it is refused.
    let e = notify::decrypt_refund_notify(
        refund_notify(Some(SUB_MCH_ID), Some("1900000201")).as_bytes(),
        &config(),
    )
    .unwrap_err();
    assert!(
        matches!(e, NotifyError::Field(ref f) if f.field == "sub_mch_id"),
        "{e:?}"
    );
    // A direct merchant's refund notify has none.
    let n = notify::decrypt_refund_notify(refund_notify(None, None).as_bytes(), &config()).unwrap();
    assert_eq!((n.sub_mch_id, n.sub_appid), (None, None));
}
