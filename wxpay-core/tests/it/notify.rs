//! Payment and refund notifies.

use wxpay_core::{
    ApiKey, Fen, NotifyError, Params, RefundStatus, SignType, SignatureError, crypto,
    notify::{self, PaymentResult},
    xml,
};

use crate::support::*;

fn v8_params() -> Params {
    [
        ("appid", APPID),
        ("attach", "shop=12&floor=3"),
        ("bank_type", "OTHERS"),
        ("cash_fee", "90"),
        ("coupon_count", "1"),
        ("coupon_fee", "10"),
        ("coupon_fee_0", "10"),
        ("coupon_id_0", "10000"),
        ("coupon_type_0", "CASH"),
        ("fee_type", "CNY"),
        ("is_subscribe", "N"),
        ("mch_id", MCH_ID),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("out_trade_no", "20150806125346"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("sign_type", "MD5"),
        ("time_end", "20150806125400"),
        ("total_fee", "100"),
        ("trade_type", "JSAPI"),
        ("transaction_id", "4200000000000000000000000001"),
        ("sign", "F37D1E4C20F984D10CD4ECA8714F5E41"),
    ]
    .into_iter()
    .collect()
}

#[test]
fn verifies_the_spec_notify_v8_even_with_an_hmac_fallback() {
    let body = xml::to_xml(&v8_params());
    // sign_type in the notify wins over the fallback
    let n =
        notify::verify_payment_notify(body.as_bytes(), &config(), SignType::HmacSha256).unwrap();
    assert_eq!(n.result, PaymentResult::Success);
    assert_eq!(n.total_fee, Fen(100));
    assert_eq!(n.cash_fee, Some(Fen(90)));
    assert_eq!(n.attach.as_deref(), Some("shop=12&floor=3"));
    assert_eq!(n.coupons.len(), 1);
    assert_eq!(n.sign_type, SignType::Md5);
    assert_eq!(n.out_trade_no.as_str(), "20150806125346");
}

#[test]
fn hmac_notify_without_sign_type_uses_the_fallback_v9() {
    let mut p = v8_params();
    p.remove("sign_type");
    p.insert(
        "sign",
        "F75D7205AB4DD13141451183C76E00B78681379B44284A23348DE884487246FE",
    );
    let body = xml::to_xml(&p);
    let n =
        notify::verify_payment_notify(body.as_bytes(), &config(), SignType::HmacSha256).unwrap();
    assert_eq!(n.sign_type, SignType::HmacSha256);
    // the official SDK's MD5 assumption fails on it
    let e = notify::verify_payment_notify(body.as_bytes(), &config(), SignType::Md5).unwrap_err();
    assert!(matches!(
        e,
        NotifyError::Signature(SignatureError::Mismatch)
    ));
}

fn refused(p: &Params) -> NotifyError {
    notify::verify_payment_notify(xml::to_xml(p).as_bytes(), &config(), SignType::Md5)
        .expect_err("must be refused")
}

#[test]
fn forged_foreign_and_broken_notifies_are_refused() {
    let mut forged = v8_params();
    forged.insert("total_fee", "1");
    assert!(matches!(
        refused(&forged),
        NotifyError::Signature(SignatureError::Mismatch)
    ));

    let mut unsigned = v8_params();
    unsigned.remove("sign");
    assert!(matches!(
        refused(&unsigned),
        NotifyError::Signature(SignatureError::Missing)
    ));

    let mut weird = v8_params();
    weird.insert("sign_type", "SHA1");
    assert!(matches!(refused(&weird), NotifyError::UnknownSignType(_)));

    // correctly signed, but for another app / merchant
    let key = ApiKey::new(KEY);
    for (field, expect_app) in [("appid", true), ("mch_id", false)] {
        let mut foreign = v8_params();
        foreign.insert(field, "someone_else");
        let s = wxpay_core::sign::sign(&foreign, &key, SignType::Md5);
        foreign.insert("sign", s);
        match refused(&foreign) {
            NotifyError::WrongAppId { .. } if expect_app => {}
            NotifyError::WrongMchId { .. } if !expect_app => {}
            other => panic!("{field}: {other:?}"),
        }
    }

    // signed but missing a required field
    let mut partial = v8_params();
    partial.remove("transaction_id");
    let s = wxpay_core::sign::sign(&partial, &key, SignType::Md5);
    partial.insert("sign", s);
    assert!(matches!(refused(&partial), NotifyError::Field(f) if f.field == "transaction_id"));

    // signed but with a non-numeric amount
    let mut typed = v8_params();
    typed.insert("total_fee", "1.00");
    let s = wxpay_core::sign::sign(&typed, &key, SignType::Md5);
    typed.insert("sign", s);
    assert!(matches!(refused(&typed), NotifyError::Field(f) if f.field == "total_fee"));

    let fail: Params = [("return_code", "FAIL"), ("return_msg", "x")]
        .into_iter()
        .collect();
    assert!(matches!(refused(&fail), NotifyError::ReturnFail { .. }));

    for body in [
        &b""[..],
        b"<xml><a>",
        b"\xff\xfe<xml/>",
        br#"<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>"#,
    ] {
        let e = notify::verify_payment_notify(body, &config(), SignType::Md5).unwrap_err();
        assert!(matches!(e, NotifyError::Xml(_)), "{e:?}");
        assert_eq!(e.reply_message(), "参数格式校验错误");
    }
}

#[test]
fn fail_results_are_reported_not_refused() {
    let mut p = v8_params();
    p.insert("result_code", "FAIL");
    p.insert("err_code", "NOTENOUGH");
    p.remove("transaction_id");
    let s = wxpay_core::sign::sign(&p, &ApiKey::new(KEY), SignType::Md5);
    p.insert("sign", s);
    let n = notify::verify_payment_notify(xml::to_xml(&p).as_bytes(), &config(), SignType::Md5)
        .unwrap();
    assert!(!n.is_paid());
    assert!(
        matches!(n.result, PaymentResult::Fail { err_code: Some(ref c), .. } if c == "NOTENOUGH")
    );
}

#[test]
fn reply_bodies_are_exact() {
    assert_eq!(
        notify::reply_success(),
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    );
    let fail = notify::reply_fail("a]]>b");
    let p = xml::parse(fail.as_bytes()).unwrap();
    assert_eq!(p.get("return_code"), Some("FAIL"));
    assert_eq!(p.get("return_msg"), Some("a]]>b"));
}

fn refund_body(req_info: &str, appid: &str) -> String {
    let p: Params = [
        ("return_code", "SUCCESS"),
        ("appid", appid),
        ("mch_id", MCH_ID),
        ("nonce_str", "n1"),
        ("req_info", req_info),
    ]
    .into_iter()
    .collect();
    xml::to_xml(&p)
}

#[test]
fn refund_notify_decrypts_and_checks_the_merchant() {
    let key = ApiKey::new(KEY);
    let plain = "<root><out_refund_no><![CDATA[R20150806125346]]></out_refund_no><out_trade_no><![CDATA[20150806125346]]></out_trade_no><refund_fee><![CDATA[88]]></refund_fee><refund_id><![CDATA[50000000000000000000000000001]]></refund_id><refund_status><![CDATA[SUCCESS]]></refund_status><success_time><![CDATA[2015-08-06 13:00:00]]></success_time><total_fee><![CDATA[88]]></total_fee></root>";
    let req_info = crypto::encrypt_req_info(plain, &key);
    let n =
        notify::decrypt_refund_notify(refund_body(&req_info, APPID).as_bytes(), &config()).unwrap();
    assert_eq!(n.refund_status, RefundStatus::Success);
    assert_eq!(n.refund_fee, Fen(88));
    assert_eq!(n.out_refund_no, "R20150806125346");

    let e = notify::decrypt_refund_notify(refund_body(&req_info, "wx_other").as_bytes(), &config())
        .unwrap_err();
    assert!(matches!(e, NotifyError::WrongAppId { .. }));

    let other_key = crypto::encrypt_req_info(plain, &ApiKey::new("not-our-key"));
    let e = notify::decrypt_refund_notify(refund_body(&other_key, APPID).as_bytes(), &config())
        .unwrap_err();
    assert!(
        matches!(e, NotifyError::Decrypt(_) | NotifyError::Xml(_)),
        "{e:?}"
    );

    let junk = crypto::encrypt_req_info("<root><nested><a/></nested></root>", &key);
    let e =
        notify::decrypt_refund_notify(refund_body(&junk, APPID).as_bytes(), &config()).unwrap_err();
    assert!(matches!(e, NotifyError::Xml(_)), "{e:?}");
}
