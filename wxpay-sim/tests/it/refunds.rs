//! Refunds, refundquery and the encrypted refund notify.

use wxpay_sim::NotifyKind;

use crate::common::*;

fn refundquery(env: &Env, key: &str, value: &str) -> Fields {
    let mut f = env.base(None);
    f.insert(key.into(), value.into());
    f
}

#[tokio::test]
async fn refund_rules_and_idempotency() {
    let env = Env::start().await;
    let url = "http://127.0.0.1:9/n";
    let no = unique("r");
    create_order(&env, &no, url, None).await;
    // Unpaid orders cannot be refunded.
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R1", "88", "10", None),
        )
        .await;
    assert_err(&r, "ORDERNOTEXIST");
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, "nosuchorder3", "R1", "88", "10", None),
        )
        .await;
    assert_err(&r, "ORDERNOTEXIST");
    env.sim.pay(&no).await.unwrap();

    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R1", "87", "10", None),
        )
        .await;
    assert_err(&r, "REFUND_FEE_MISMATCH");
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R1", "88", "1.5", None),
        )
        .await;
    assert_err(&r, "PARAM_ERROR");
    let mut missing = refund_req(&env, &no, "R1", "88", "10", None);
    missing.remove("out_refund_no");
    assert_err(
        &env.call("/secapi/pay/refund", missing).await,
        "LACK_PARAMS",
    );

    let first = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R1", "88", "50", None),
        )
        .await;
    assert_ok(&first);
    assert_eq!(first["refund_fee"], "50");
    assert_eq!(first["total_fee"], "88");
    assert_eq!(first["out_refund_no"], "R1");
    // Same number, same amounts: the same refund.
    let again = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R1", "88", "50", None),
        )
        .await;
    assert_ok(&again);
    assert_eq!(again["refund_id"], first["refund_id"]);
    // Same number, other amounts: refused.
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R1", "88", "40", None),
        )
        .await;
    assert_err(&r, "INVALID_REQUEST");
    // More than what is left.
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R2", "88", "39", None),
        )
        .await;
    assert_err(&r, "NOTENOUGH");
    let r2 = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R2", "88", "38", None),
        )
        .await;
    assert_ok(&r2);
    let order = env.sim.order(&no).await.unwrap();
    assert_eq!(order.refunds.len(), 2);
    assert_eq!(order.trade_state.as_str(), "REFUND");
    let q = env
        .call("/pay/orderquery", refundquery(&env, "out_trade_no", &no))
        .await;
    assert_eq!(q["trade_state"], "REFUND");
    // The number belongs to that order only.
    let other = unique("r");
    create_order(&env, &other, url, None).await;
    env.sim.pay(&other).await.unwrap();
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &other, "R1", "88", "50", None),
        )
        .await;
    assert_err(&r, "INVALID_REQUEST");
}

#[tokio::test]
async fn refund_goes_processing_then_success_with_an_encrypted_notify() {
    let env = Env::start().await; // 1 min × 0.001 = 60 ms
    let recv = Receiver::start(vec![FAIL_XML]).await;
    let no = unique("rn");
    create_order(&env, &no, "http://127.0.0.1:9/pay", None).await;
    let paid = env.sim.pay(&no).await.unwrap();
    let r = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "RF-1", "88", "30", Some(&recv.url)),
        )
        .await;
    assert_ok(&r);
    let q = env
        .call(
            "/pay/refundquery",
            refundquery(&env, "out_refund_no", "RF-1"),
        )
        .await;
    assert_ok(&q);
    assert_eq!(q["refund_status_0"], "PROCESSING");
    assert_eq!(q["refund_count"], "1");
    assert!(!q.contains_key("refund_success_time_0"));

    let bodies = recv.wait_for(2).await;
    assert_eq!(bodies.len(), 2, "retried after FAIL");
    let outer = parse(&bodies[1]);
    assert_eq!(outer["return_code"], "SUCCESS");
    assert_eq!(outer["appid"], env.cfg.appid);
    assert_eq!(outer["mch_id"], env.cfg.mch_id);
    assert!(
        !outer.contains_key("sign"),
        "refund notifies are not signed"
    );
    let plain = decrypt(&outer["req_info"], env.key());
    let inner = wxpay_core::xml::parse_with(plain.as_bytes(), "root", 1 << 16)
        .unwrap()
        .into_inner();
    assert_eq!(inner["out_refund_no"], "RF-1");
    assert_eq!(inner["out_trade_no"], no);
    assert_eq!(Some(inner["transaction_id"].clone()), paid.transaction_id);
    assert_eq!(inner["refund_id"], r["refund_id"]);
    assert_eq!(inner["refund_fee"], "30");
    assert_eq!(inner["total_fee"], "88");
    assert_eq!(inner["settlement_refund_fee"], "30");
    assert_eq!(inner["refund_status"], "SUCCESS");
    assert_eq!(inner["refund_request_source"], "API");
    assert!(!inner["refund_recv_accout"].is_empty());
    assert!(!inner["refund_account"].is_empty());
    let t = &inner["success_time"];
    assert!(wxpay_core::types::parse_beijing("success_time", t).is_ok() && t.len() == 19);

    // The receiver has the body before the simulator has logged the attempt
    // (it logs after reading the reply): wait for the log, bounded.
    let (log, _) = env
        .sim
        .wait_for_notifies(std::time::Duration::from_secs(5), |log| {
            log.iter().filter(|a| a.kind == NotifyKind::Refund).count() >= 2
        })
        .await;
    let attempts: Vec<_> = log
        .iter()
        .filter(|a| a.kind == NotifyKind::Refund)
        .collect();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].out_refund_no.as_deref(), Some("RF-1"));
    assert!(attempts[1].delivered);

    for (k, v) in [
        ("out_refund_no", "RF-1"),
        ("refund_id", r["refund_id"].as_str()),
        ("out_trade_no", no.as_str()),
        ("transaction_id", paid.transaction_id.as_deref().unwrap()),
    ] {
        let q = env.call("/pay/refundquery", refundquery(&env, k, v)).await;
        assert_ok(&q);
        assert_eq!(q["refund_status_0"], "SUCCESS", "by {k}");
        assert_eq!(q["refund_fee_0"], "30");
        assert_eq!(q["out_refund_no_0"], "RF-1");
        assert_eq!(q["refund_success_time_0"], *t);
        assert_eq!(q["total_refund_count"], "1");
    }
    let mut q = refundquery(&env, "out_trade_no", &no);
    q.insert("offset".into(), "1".into());
    assert_err(&env.call("/pay/refundquery", q).await, "PARAM_ERROR");
    assert_err(
        &env.call(
            "/pay/refundquery",
            refundquery(&env, "out_refund_no", "NOPE"),
        )
        .await,
        "REFUNDNOTEXIST",
    );
    let unrefunded = unique("ur");
    create_order(&env, &unrefunded, "http://127.0.0.1:9/pay", None).await;
    assert_err(
        &env.call(
            "/pay/refundquery",
            refundquery(&env, "out_trade_no", &unrefunded),
        )
        .await,
        "REFUNDNOTEXIST",
    );
    assert_err(
        &env.call("/pay/refundquery", env.base(None)).await,
        "LACK_PARAMS",
    );
}

#[test]
fn independent_decryptor_reads_the_spec_vector() {
    let r2 = "WBzGpzQuNpcFxIlFjUUD9BZv+lpBMzd2SHiKCkwfALWid5G8ZvfOussfMIHLbKJmcnxPKdb1ZJEqTAp8ysQv+xa1fj+Eorgndx3fNxf3KAYa3LPgsjvZgxaeYyrhV05Kbjkj6ywg27cEyTTaPZFYNg==";
    assert_eq!(
        decrypt(r2, "192006250b4c09247ec02edce69f6a2d"),
        "<root><out_refund_no><![CDATA[R1]]></out_refund_no><refund_status><![CDATA[SUCCESS]]></refund_status></root>"
    );
}
