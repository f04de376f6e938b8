//! `sign_type` in HMAC notifies, WeChat's CDATA shape, the state file and
//! the `sandboxnew/` prefix.

use std::time::Duration;

use wxpay_core::{SignType, notify::parse_notify};
use wxpay_sim::{NotifyAttempt, NotifyKind, SimError, SimHandle, Simulator, StateFileError};

use crate::common::*;
use crate::v3::{Client, cert_verifier, jsapi_body};

const NOWHERE: &str = "http://127.0.0.1:9/pay";

/// The first payment-notify body sent for `no` (the receiver need not exist:
/// every attempt is logged with its body).
async fn payment_notify(sim: &SimHandle, no: &str) -> String {
    first_notify(sim, no, NotifyKind::Payment).await.body
}

async fn first_notify(sim: &SimHandle, no: &str, kind: NotifyKind) -> NotifyAttempt {
    let mine = |a: &NotifyAttempt| a.out_trade_no == no && a.kind == kind;
    let (log, ok) = sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.iter().any(mine))
        .await;
    assert!(ok, "no {kind:?} notify for {no}");
    log.into_iter().find(mine).unwrap()
}

/// A merchant order number of digits only (WeChat still sends it in CDATA).
fn digits_no() -> String {
    let n = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{n}")
}

#[tokio::test]
async fn hmac_notifies_with_and_without_sign_type_both_verify() {
    let mut shapes = Vec::new();
    for include in [false, true] {
        let env = Env::with(fast_config().with_hmac_notify_sign_type(include)).await;
        let no = unique("st");
        create_order(&env, &no, NOWHERE, Some("HMAC-SHA256")).await;
        env.sim.pay(&no).await.unwrap();
        let body = payment_notify(&env.sim, &no).await;
        let n = parse(&body);
        // The signature covers exactly what is sent.
        assert_eq!(n["sign"], spec_sign(&n, env.key(), "HMAC-SHA256"));
        assert_eq!(n["sign"].len(), 64);
        let merchant = env.sim.merchant_config();
        let unverified = parse_notify(body.as_bytes()).unwrap();
        if include {
            assert_eq!(n.get("sign_type").map(String::as_str), Some("HMAC-SHA256"));
            assert_eq!(
                unverified.declared_sign_type().unwrap(),
                Some(SignType::HmacSha256)
            );
            // The notify names its algorithm: a merchant assuming MD5 still verifies.
            let ok = unverified.verify(&merchant, SignType::Md5).unwrap();
            assert_eq!(ok.sign_type, SignType::HmacSha256);
        } else {
            assert!(!n.contains_key("sign_type"), "{body}");
            assert_eq!(unverified.declared_sign_type().unwrap(), None);
            // Only the order's algorithm verifies it.
            assert!(unverified.clone().verify(&merchant, SignType::Md5).is_err());
            let ok = unverified.verify(&merchant, SignType::HmacSha256).unwrap();
            assert_eq!(ok.out_trade_no.as_str(), no);
            assert!(ok.is_paid());
        }
        let mut fields = n.clone();
        for k in [
            "sign",
            "sign_type",
            "nonce_str",
            "out_trade_no",
            "transaction_id",
            "time_end",
        ] {
            fields.remove(k);
        }
        shapes.push(fields);

        // MD5 orders say so in either setting.
        let md5 = unique("st5");
        create_order(&env, &md5, NOWHERE, None).await;
        env.sim.pay(&md5).await.unwrap();
        let m = parse(&payment_notify(&env.sim, &md5).await);
        assert_eq!(m.get("sign_type").map(String::as_str), Some("MD5"));
        assert_eq!(m["sign"], spec_sign(&m, env.key(), "MD5"));
    }
    // Apart from per-order values, the two shapes differ in sign_type only.
    assert_eq!(shapes[0], shapes[1]);
}

#[tokio::test]
async fn xml_is_wechat_shaped_digits_in_cdata_by_type() {
    let recv = Receiver::start(vec![]).await;
    let env = refund_env(Duration::ZERO, &recv).await;
    let no = digits_no();
    create_order(&env, &no, NOWHERE, Some("HMAC-SHA256")).await;
    env.sim.pay(&no).await.unwrap();
    let body = payment_notify(&env.sim, &no).await;
    for want in [
        "<total_fee>88</total_fee>",
        "<cash_fee>88</cash_fee>",
        &format!("<out_trade_no><![CDATA[{no}]]></out_trade_no>"),
        "<mch_id><![CDATA[1900000109]]></mch_id>",
        "<time_end><![CDATA[",
        "<transaction_id><![CDATA[4200",
    ] {
        assert!(body.contains(want), "{want} not in {body}");
    }
    let p = wxpay_core::xml::parse(body.as_bytes()).unwrap();
    assert_eq!(p.get("out_trade_no"), Some(no.as_str()));
    assert_eq!(p.get("time_end").map(str::len), Some(14));
    let n = parse_notify(body.as_bytes())
        .unwrap()
        .verify(&env.sim.merchant_config(), SignType::HmacSha256)
        .unwrap();
    assert_eq!(n.total_fee.get(), 88);
    assert_eq!(n.cash_fee.map(|f| f.get()), Some(88));

    // Answers: orderquery, raw.
    let mut q = env.base(None);
    q.insert("out_trade_no".into(), no.clone());
    let s = spec_sign(&q, env.key(), "MD5");
    q.insert("sign".into(), s);
    let (_, raw) = env.post_raw("/pay/orderquery", xml_body(&q)).await;
    for want in [
        "<total_fee>88</total_fee>",
        "<cash_fee>88</cash_fee>",
        "<time_end><![CDATA[",
        &format!("<out_trade_no><![CDATA[{no}]]></out_trade_no>"),
        "<trade_state><![CDATA[SUCCESS]]></trade_state>",
    ] {
        assert!(raw.contains(want), "{want} not in {raw}");
    }
    assert_reply_signed(&parse(&raw), env.key(), "MD5");

    // The refund notify's req_info: every value in CDATA, numbers too.
    api_refund(&env, &no, "R1", "30").await;
    let attempt = first_notify(&env.sim, &no, NotifyKind::Refund).await;
    let outer = parse(&attempt.body);
    let plain = decrypt(&outer["req_info"], env.key());
    for want in [
        "<refund_fee><![CDATA[30]]></refund_fee>",
        "<total_fee><![CDATA[88]]></total_fee>",
        "<settlement_refund_fee><![CDATA[30]]></settlement_refund_fee>",
    ] {
        assert!(plain.contains(want), "{want} not in {plain}");
    }
    let decrypted = wxpay_core::notify::decrypt_refund_notify(
        attempt.body.as_bytes(),
        &env.sim.merchant_config(),
    )
    .unwrap();
    assert_eq!(decrypted.refund_fee.get(), 30);
}

#[tokio::test]
async fn cdata_ints_wraps_amounts_and_still_parses() {
    let env = Env::with(fast_config().with_cdata_ints(true)).await;
    let no = digits_no();
    create_order(&env, &no, NOWHERE, None).await;
    env.sim.pay(&no).await.unwrap();
    let body = payment_notify(&env.sim, &no).await;
    assert!(
        body.contains("<total_fee><![CDATA[88]]></total_fee>"),
        "{body}"
    );
    assert!(
        body.contains("<cash_fee><![CDATA[88]]></cash_fee>"),
        "{body}"
    );
    assert!(!body.contains("<total_fee>88"), "{body}");
    let n = parse_notify(body.as_bytes())
        .unwrap()
        .verify(&env.sim.merchant_config(), SignType::Md5)
        .unwrap();
    assert_eq!(n.total_fee.get(), 88);
    // Answers too, signed over the decoded values.
    let mut q = env.base(None);
    q.insert("out_trade_no".into(), no);
    let s = spec_sign(&q, env.key(), "MD5");
    q.insert("sign".into(), s);
    let (_, raw) = env.post_raw("/pay/orderquery", xml_body(&q)).await;
    assert!(
        raw.contains("<total_fee><![CDATA[88]]></total_fee>"),
        "{raw}"
    );
    let p = wxpay_core::xml::parse(raw.as_bytes()).unwrap();
    assert_eq!(p.get("total_fee"), Some("88"));
    assert_reply_signed(&parse(&raw), env.key(), "MD5");
}

#[tokio::test]
async fn sandboxnew_prefix_serves_the_same_endpoints_and_the_sandbox_key() {
    let env = Env::start().await;
    // getsignkey: MD5 with the production key, unsigned answer.
    let mut f = fields(&[
        ("mch_id", &env.cfg.mch_id),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
    ]);
    let s = spec_sign(&f, env.key(), "MD5");
    f.insert("sign".into(), s);
    let (status, raw) = env
        .post_raw("/sandboxnew/pay/getsignkey", xml_body(&f))
        .await;
    assert_eq!(status, 200);
    let key = parse(&raw);
    assert_eq!(key["return_code"], "SUCCESS", "{raw}");
    assert_eq!(key["mch_id"], env.cfg.mch_id);
    assert_eq!(key["sandbox_signkey"], env.key());
    assert!(!key.contains_key("sign"));
    f.insert("sign".into(), "0".repeat(32));
    let (_, raw) = env
        .post_raw("/sandboxnew/pay/getsignkey", xml_body(&f))
        .await;
    assert_eq!(parse(&raw)["return_code"], "FAIL");
    assert_eq!(parse(&raw)["return_msg"], "签名错误");

    // The pay API one segment down: same checks, same store.
    let no = unique("sb");
    let reply = env
        .call(
            "/sandboxnew/pay/unifiedorder",
            order_fields(&env, &no, NOWHERE, None),
        )
        .await;
    assert_ok(&reply);
    assert!(env.sim.order(&no).await.is_some());
    env.sim.pay(&no).await.unwrap();
    let mut q = env.base(None);
    q.insert("out_trade_no".into(), no.clone());
    let reply = env.call("/sandboxnew/pay/orderquery", q).await;
    assert_ok(&reply);
    assert_eq!(reply["trade_state"], "SUCCESS");
    let refund = env
        .call(
            "/sandboxnew/secapi/pay/refund",
            refund_req(&env, &no, "SB1", "88", "10", None),
        )
        .await;
    assert_ok(&refund);
    let mut bad = env.base(None);
    bad.insert("out_trade_no".into(), no);
    bad.insert("sign".into(), "0".repeat(32));
    let (_, raw) = env
        .post_raw("/sandboxnew/pay/orderquery", xml_body(&bad))
        .await;
    assert_eq!(parse(&raw)["return_msg"], "签名错误");
}

fn state_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.json", unique(name)))
}

#[tokio::test]
async fn state_file_keeps_orders_and_refunds_across_a_restart() {
    let path = state_path("wxpay-sim-state");
    // Refunds stay PROCESSING for 3.6 real seconds in the first two runs.
    let slow = fast_config()
        .with_state_file(&path)
        .with_refund_delay(Duration::from_secs(3600));

    let env = Env::with(slow.clone()).await;
    let v2 = unique("s2");
    create_order(&env, &v2, NOWHERE, Some("HMAC-SHA256")).await;
    env.sim.pay(&v2).await.unwrap();
    let refund = api_refund(&env, &v2, "SR1", "30").await;
    assert_ok(&refund);
    let v3 = unique("s3");
    let c = Client::new(&env.sim);
    let r = c
        .call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(jsapi_body(&env.sim, &v3, 300, NOWHERE)),
        )
        .await;
    assert_eq!(r.status, 200);
    env.sim.pay(&v3).await.unwrap();
    let (before2, before3) = (
        env.sim.order(&v2).await.unwrap(),
        env.sim.order(&v3).await.unwrap(),
    );
    assert_eq!(before2.refunds[0].refund_status.as_str(), "PROCESSING");
    env.sim.shutdown().await;
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved["version"], 1);

    // A new simulator on the same file.
    let env = Env::with(slow.clone()).await;
    assert_eq!(env.sim.order(&v2).await.unwrap(), before2);
    assert_eq!(env.sim.order(&v3).await.unwrap(), before3);
    let mut q = env.base(Some("HMAC-SHA256"));
    q.insert("out_trade_no".into(), v2.clone());
    let reply = env.call("/pay/orderquery", q).await;
    assert_ok(&reply);
    assert_eq!(reply["trade_state"], "REFUND");
    assert_eq!(reply.get("transaction_id"), before2.transaction_id.as_ref());
    assert_eq!(reply.get("time_end"), before2.time_end.as_ref());
    let mut by_tid = env.base(None);
    by_tid.insert(
        "transaction_id".into(),
        before3.transaction_id.clone().unwrap(),
    );
    let reply = env.call("/pay/orderquery", by_tid).await;
    assert_eq!(reply["out_trade_no"], v3, "transaction_id index restored");
    let reply = env
        .call(
            "/pay/refundquery",
            refundquery(&env, "out_refund_no", "SR1"),
        )
        .await;
    assert_ok(&reply);
    assert_eq!(reply["refund_status_0"], "PROCESSING");
    assert_eq!(reply["refund_fee_0"], "30");
    let c = Client::new(&env.sim);
    for (no, state) in [(&v3, "SUCCESS"), (&v2, "REFUND")] {
        let r = c
            .call(
                "GET",
                &format!("/v3/pay/transactions/out-trade-no/{no}?mchid=1900000109"),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        r.validate(cert_verifier()).unwrap();
        assert_eq!(r.json()["trade_state"], state);
    }
    let r = c
        .call(
            "GET",
            &format!("/v3/pay/transactions/out-trade-no/{v3}?mchid=1900000109"),
            None,
        )
        .await;
    assert_eq!(
        r.json()["transaction_id"],
        before3.transaction_id.as_deref().unwrap()
    );
    // The numbers stay used: paid orders cannot be ordered again.
    let again = env
        .call(
            "/pay/unifiedorder",
            order_fields(&env, &v2, NOWHERE, Some("HMAC-SHA256")),
        )
        .await;
    assert_err(&again, "ORDERPAID");
    env.sim.shutdown().await;

    // A third run without the delay: the PROCESSING refund is settled.
    let env = Env::with(slow.with_refund_delay(Duration::ZERO)).await;
    let order = eventually(|| async {
        let o = env.sim.order(&v2).await?;
        (o.refunds[0].refund_status.as_str() == "SUCCESS").then_some(o)
    })
    .await;
    assert!(order.refunds[0].success_time.is_some());
    env.sim.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn an_unusable_state_file_fails_the_start() {
    let path = state_path("wxpay-sim-corrupt");
    std::fs::write(&path, "{ not json").unwrap();
    let err = Simulator::start(fast_config().with_state_file(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::StateFile { path: p, source: StateFileError::Parse(_) } if *p == path),
        "{err:?}"
    );
    std::fs::write(&path, r#"{"version": 99, "orders": []}"#).unwrap();
    let err = Simulator::start(fast_config().with_state_file(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::StateFile {
                source: StateFileError::Version(99),
                ..
            }
        ),
        "{err:?}"
    );
    let _ = std::fs::remove_file(&path);
    let missing_dir = std::env::temp_dir()
        .join(unique("no-dir"))
        .join("state.json");
    let err = Simulator::start(fast_config().with_state_file(&missing_dir))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::StateFile {
                source: StateFileError::Write(_),
                ..
            }
        ),
        "{err:?}"
    );
}
