//! Refunds, refundquery and the encrypted refund notify.

use std::time::{Duration, Instant};

use wxpay_core::{Fen, RefundStatus};
use wxpay_sim::{Faults, NotifyKind, OutsideRefund, RefundResult, RefundSource, SimError};

use crate::common::*;

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
    // 1000 s × 0.001 = 1 s of PROCESSING: ample time to see it.
    let env = Env::with(fast_config().with_refund_delay(Duration::from_secs(1000))).await;
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
        .wait_for_notifies(Duration::from_secs(5), |log| {
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

#[tokio::test]
async fn refunds_stay_processing_until_the_delay_has_passed() {
    let recv = Receiver::start(vec![]).await;
    // 100 h × 0.001 = 6 real minutes: nothing becomes final in this test.
    let env = refund_env(Duration::from_secs(100 * 3600), &recv).await;
    let no = paid_order(&env, "rp").await;
    let r = api_refund(&env, &no, "P-1", "40").await;
    assert_ok(&r);
    let outside = env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(8)).with_out_refund_no("P-2"))
        .await
        .unwrap();
    assert_eq!(outside.refund_status, RefundStatus::Processing);
    assert_eq!(outside.refund_request_source, RefundSource::VendorPlatform);
    let q = env
        .call("/pay/refundquery", refundquery(&env, "out_trade_no", &no))
        .await;
    assert_eq!(q["refund_count"], "2");
    assert_eq!(q["refund_fee"], "48");
    assert_eq!(q["refund_status_0"], "PROCESSING");
    assert_eq!(q["refund_status_1"], "PROCESSING");
    assert_eq!(q["refund_id_1"], outside.refund_id);
    assert!(!q.contains_key("refund_success_time_0"));
    let order = env.sim.order(&no).await.unwrap();
    assert_eq!(order.refunds[0].refund_status, RefundStatus::Processing);
    assert_eq!(order.refunds[0].refund_request_source, RefundSource::Api);
    assert_eq!(order.refunds[0].success_time, None);
    assert_eq!(order.refunds[1], outside);
    // Refunds in progress already use up their amounts: 40 fen are left.
    let r = api_refund(&env, &no, "P-3", "41").await;
    assert_err(&r, "NOTENOUGH");
    match env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(41)))
        .await
    {
        Err(SimError::RefundRefused { err_code, .. }) => assert_eq!(err_code, "NOTENOUGH"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        env.sim
            .refund_outside(OutsideRefund::new("nope", Fen(1)))
            .await,
        Err(SimError::NoSuchOrder(_))
    ));
    assert!(
        env.sim
            .notifies()
            .await
            .iter()
            .all(|a| a.kind != NotifyKind::Refund),
        "refund notify before the refund was final"
    );
}

#[tokio::test]
async fn refunds_end_after_the_delay_as_refund_result_said_when_accepted() {
    let recv = Receiver::start(vec![]).await;
    let delay = Duration::from_secs(300); // × 0.001 = 300 ms
    let env = refund_env(delay, &recv).await;
    let no = paid_order(&env, "rr").await;
    let (status, _) = env
        .post_json(
            "/sim/faults",
            serde_json::json!({ "refund_result": "CHANGE" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(env.sim.faults().await.refund_result, RefundResult::Change);
    let accepted = Instant::now();
    let r = api_refund(&env, &no, "F-1", "30").await;
    assert_ok(&r);
    env.sim
        .set_faults(Faults {
            refund_result: RefundResult::RefundClose,
            ..Faults::default()
        })
        .await;
    let closed = env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(58)).with_out_refund_no("F-2"))
        .await
        .unwrap();
    // Refunds accepted from now on succeed; F-1 and F-2 keep their results.
    env.sim.set_faults(Faults::default()).await;
    let bodies = recv.wait_for(2).await;
    assert!(
        accepted.elapsed() >= env.cfg.scaled(delay),
        "final before the delay"
    );
    let mut notified: Vec<_> = bodies.iter().map(|b| refund_notify(b, env.key())).collect();
    notified.sort_by(|a, b| a["out_refund_no"].cmp(&b["out_refund_no"]));
    let [change, close] = &notified[..] else {
        panic!("{notified:?}")
    };
    assert_eq!(change["out_refund_no"], "F-1");
    assert_eq!(change["refund_status"], "CHANGE");
    assert_eq!(change["refund_request_source"], "API");
    assert!(!change.contains_key("success_time"));
    assert_eq!(close["refund_id"], closed.refund_id);
    assert_eq!(close["refund_status"], "REFUNDCLOSE");
    assert_eq!(close["refund_request_source"], "VENDOR_PLATFORM");
    let q = env
        .call("/pay/refundquery", refundquery(&env, "out_trade_no", &no))
        .await;
    assert_eq!(q["refund_status_0"], "CHANGE");
    assert_eq!(q["refund_status_1"], "REFUNDCLOSE");
    assert!(!q.contains_key("refund_success_time_0"));
    assert!(!q.contains_key("refund_success_time_1"));

    // Nothing moved for the closed refund: its 58 fen can be refunded again.
    let r = api_refund(&env, &no, "F-3", "58").await;
    assert_ok(&r);
    let bodies = recv.wait_for(3).await;
    let inner = refund_notify(&bodies[2], env.key());
    assert_eq!(inner["out_refund_no"], "F-3");
    assert_eq!(inner["refund_status"], "SUCCESS");
    let q = env
        .call(
            "/pay/refundquery",
            refundquery(&env, "out_refund_no", "F-3"),
        )
        .await;
    assert_eq!(q["refund_status_0"], "SUCCESS");
    assert_eq!(q["refund_success_time_0"], inner["success_time"]);
}

#[tokio::test]
async fn with_no_delay_refunds_are_final_in_the_answer() {
    let recv = Receiver::start(vec![]).await;
    let env = refund_env(Duration::ZERO, &recv).await;
    let no = paid_order(&env, "rz").await;
    assert_ok(&api_refund(&env, &no, "Z-1", "30").await);
    let q = env
        .call(
            "/pay/refundquery",
            refundquery(&env, "out_refund_no", "Z-1"),
        )
        .await;
    assert_eq!(q["refund_status_0"], "SUCCESS");
    assert!(q.contains_key("refund_success_time_0"));
    // No notify_url in the request: the merchant's configured one.
    let bodies = recv.wait_for(1).await;
    assert_eq!(
        refund_notify(&bodies[0], env.key())["refund_status"],
        "SUCCESS"
    );

    // A closed refund gives its amount back; an abnormal one does not.
    for (result, refund_no, fee) in [
        (RefundResult::RefundClose, "Z-2", "58"),
        (RefundResult::Change, "Z-3", "50"),
    ] {
        env.sim
            .set_faults(Faults {
                refund_result: result,
                ..Faults::default()
            })
            .await;
        assert_ok(&api_refund(&env, &no, refund_no, fee).await);
    }
    assert_err(&api_refund(&env, &no, "Z-4", "9").await, "NOTENOUGH");
    assert_ok(&api_refund(&env, &no, "Z-4", "8").await);
    let q = env
        .call("/pay/refundquery", refundquery(&env, "out_trade_no", &no))
        .await;
    let statuses: Vec<_> = (0..4)
        .map(|n| q[&format!("refund_status_{n}")].as_str())
        .collect();
    assert_eq!(statuses, ["SUCCESS", "REFUNDCLOSE", "CHANGE", "CHANGE"]);
    assert!(!q.contains_key("refund_success_time_1"));
    let notified: std::collections::BTreeMap<_, _> = recv
        .wait_for(4)
        .await
        .iter()
        .map(|b| {
            let inner = refund_notify(b, env.key());
            (
                inner["out_refund_no"].clone(),
                inner["refund_status"].clone(),
            )
        })
        .collect();
    let expected = [
        ("Z-1", "SUCCESS"),
        ("Z-2", "REFUNDCLOSE"),
        ("Z-3", "CHANGE"),
        ("Z-4", "CHANGE"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(notified, expected.into_iter().collect());

    // Only the three final results exist.
    let (status, _) = env
        .post_json(
            "/sim/faults",
            serde_json::json!({ "refund_result": "PROCESSING" }),
        )
        .await;
    assert!((400..500).contains(&status), "{status}");
}

#[test]
fn independent_decryptor_reads_the_spec_vector() {
    let r2 = "WBzGpzQuNpcFxIlFjUUD9BZv+lpBMzd2SHiKCkwfALWid5G8ZvfOussfMIHLbKJmcnxPKdb1ZJEqTAp8ysQv+xa1fj+Eorgndx3fNxf3KAYa3LPgsjvZgxaeYyrhV05Kbjkj6ywg27cEyTTaPZFYNg==";
    assert_eq!(
        decrypt(r2, "192006250b4c09247ec02edce69f6a2d"),
        "<root><out_refund_no><![CDATA[R1]]></out_refund_no><refund_status><![CDATA[SUCCESS]]></refund_status></root>"
    );
}
