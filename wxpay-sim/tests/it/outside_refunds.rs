//! Refunds made on the merchant platform, outside the app (`/sim/refund`,
//! `SimHandle::refund_outside`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wxpay_core::{Fen, RefundStatus};
use wxpay_sim::{Faults, OutsideRefund, RefundResult, RefundSource, SimError};

use crate::common::*;

async fn post_refund(env: &Env, body: Value) -> (u16, Value) {
    let r = env
        .http
        .post(env.url("/sim/refund"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn paid_order(env: &Env, prefix: &str) -> String {
    let no = unique(prefix);
    create_order(env, &no, "http://127.0.0.1:9/pay", None).await;
    env.sim.pay(&no).await.unwrap();
    no
}

#[tokio::test]
async fn outside_refunds_follow_the_refund_rules_and_send_the_refund_notify() {
    let platform = Receiver::start(vec![]).await;
    let per_call = Receiver::start(vec![]).await;
    let cfg = fast_config()
        .with_refund_delay(Duration::ZERO)
        .with_refund_notify_url(&platform.url);
    let env = Env::with(cfg).await;

    let (status, body) =
        post_refund(&env, json!({ "out_trade_no": "nope", "refund_fee": 1 })).await;
    assert_eq!(status, 404, "{body}");
    let unpaid = unique("ou");
    create_order(&env, &unpaid, "http://127.0.0.1:9/pay", None).await;
    let (status, body) =
        post_refund(&env, json!({ "out_trade_no": unpaid, "refund_fee": 1 })).await;
    assert_eq!(
        (status, body["err_code"].as_str()),
        (409, Some("ORDERNOTEXIST"))
    );

    let no = paid_order(&env, "o").await;
    for (bad, code) in [
        (json!({ "refund_fee": 0 }), "PARAM_ERROR"),
        (
            json!({ "refund_fee": 1, "out_refund_no": "a b" }),
            "PARAM_ERROR",
        ),
        (
            json!({ "refund_fee": 1, "notify_url": "ftp://x/n" }),
            "PARAM_ERROR",
        ),
        (json!({ "refund_fee": 89 }), "INVALID_REQUEST"),
    ] {
        let mut bad = bad;
        bad["out_trade_no"] = no.as_str().into();
        let (status, body) = post_refund(&env, bad.clone()).await;
        assert_eq!(
            (status, body["err_code"].as_str()),
            (409, Some(code)),
            "{bad}"
        );
        assert!(!body["err_code_des"].as_str().unwrap().is_empty());
    }

    let desk = json!({ "out_trade_no": no, "refund_fee": 30, "out_refund_no": "DESK-1" });
    let (status, first) = post_refund(&env, desk.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["out_refund_no"], "DESK-1");
    assert_eq!(first["refund_fee"], 30);
    assert_eq!(first["refund_status"], "SUCCESS", "no delay: final at once");
    assert_eq!(first["refund_request_source"], "VENDOR_PLATFORM");
    let refund_id = first["refund_id"].as_str().unwrap().to_owned();
    assert!(refund_id.len() == 29 && refund_id.bytes().all(|b| b.is_ascii_digit()));
    // The same number and amount again: the same refund.
    let (status, again) = post_refund(&env, desk).await;
    assert_eq!((status, &again), (200, &first));
    let (status, body) = post_refund(
        &env,
        json!({ "out_trade_no": no, "refund_fee": 31, "out_refund_no": "DESK-1" }),
    )
    .await;
    assert_eq!(
        (status, body["err_code"].as_str()),
        (409, Some("INVALID_REQUEST"))
    );

    let bodies = platform.wait_for(1).await;
    let inner = refund_notify(&bodies[0], env.key());
    for (k, v) in [
        ("out_trade_no", no.as_str()),
        ("out_refund_no", "DESK-1"),
        ("refund_id", refund_id.as_str()),
        ("refund_fee", "30"),
        ("total_fee", "88"),
        ("refund_status", "SUCCESS"),
        ("refund_request_source", "VENDOR_PLATFORM"),
    ] {
        assert_eq!(inner[k], v, "{k}");
    }
    assert!(inner.contains_key("success_time"));

    // No number given: the refund_id is the number. The notify goes where
    // the call says.
    let (status, second) = post_refund(
        &env,
        json!({ "out_trade_no": no, "refund_fee": 20, "notify_url": per_call.url }),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["out_refund_no"], second["refund_id"]);
    let bodies = per_call.wait_for(1).await;
    assert_eq!(
        refund_notify(&bodies[0], env.key())["out_refund_no"],
        second["out_refund_no"]
    );

    // 38 fen left, for the app's own refunds as for the platform's.
    let api_refund = |fee: &'static str| {
        env.call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "R-API", "88", fee, None),
        )
    };
    assert_err(&api_refund("39").await, "NOTENOUGH");
    let (status, body) = post_refund(&env, json!({ "out_trade_no": no, "refund_fee": 39 })).await;
    assert_eq!(
        (status, body["err_code"].as_str()),
        (409, Some("NOTENOUGH"))
    );
    assert_ok(&api_refund("38").await);

    let mut q = env.base(None);
    q.insert("out_trade_no".into(), no.clone());
    let q = env.call("/pay/refundquery", q).await;
    assert_ok(&q);
    assert_eq!(q["refund_count"], "3");
    assert_eq!(q["total_refund_count"], "3");
    assert_eq!(q["refund_fee"], "88");
    let rows: Vec<[&str; 4]> = (0..3)
        .map(|n| {
            ["out_refund_no", "refund_id", "refund_fee", "refund_status"]
                .map(|k| q[&format!("{k}_{n}")].as_str())
        })
        .collect();
    let second_no = second["out_refund_no"].as_str().unwrap();
    assert_eq!(rows[0], ["DESK-1", refund_id.as_str(), "30", "SUCCESS"]);
    assert_eq!(rows[1], [second_no, second_no, "20", "SUCCESS"]);
    assert_eq!(rows[2][0], "R-API");
    assert_eq!(rows[2][2..], ["38", "SUCCESS"]);

    let order: Value = env
        .http
        .get(env.url(&format!("/sim/orders/{no}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refunds = order["refunds"].as_array().unwrap();
    let summary: Vec<_> = refunds
        .iter()
        .map(|r| {
            (
                r["refund_fee"].as_u64(),
                r["refund_request_source"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some(30), Some("VENDOR_PLATFORM")),
            (Some(20), Some("VENDOR_PLATFORM")),
            (Some(38), Some("API"))
        ]
    );
    assert_eq!(refunds[0], first);
}

#[tokio::test]
async fn outside_refunds_in_process_are_processing_for_the_delay() {
    let recv = Receiver::start(vec![]).await;
    // 100 h × 0.001 = 6 real minutes: nothing becomes final in this test.
    let cfg = fast_config()
        .with_refund_delay(Duration::from_secs(100 * 3600))
        .with_refund_notify_url(&recv.url);
    let env = Env::with(cfg).await;
    let no = paid_order(&env, "op").await;
    let refund = env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(50)).with_out_refund_no("P-1"))
        .await
        .unwrap();
    assert_eq!(refund.refund_status, RefundStatus::Processing);
    assert_eq!(refund.refund_request_source, RefundSource::VendorPlatform);
    assert_eq!(refund.success_time, None);
    let mut q = env.base(None);
    q.insert("out_refund_no".into(), "P-1".into());
    let q = env.call("/pay/refundquery", q).await;
    assert_eq!(q["refund_status_0"], "PROCESSING");
    assert_eq!(q["refund_id_0"], refund.refund_id);

    match env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(39)))
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
}

#[tokio::test]
async fn outside_refunds_end_after_the_delay_as_refund_result_says() {
    let recv = Receiver::start(vec![]).await;
    let delay = Duration::from_secs(300); // × 0.001 = 300 ms
    let cfg = fast_config()
        .with_refund_delay(delay)
        .with_refund_notify_url(&recv.url);
    let env = Env::with(cfg).await;
    let no = paid_order(&env, "oc").await;
    env.sim
        .set_faults(Faults {
            refund_result: RefundResult::RefundClose,
            ..Faults::default()
        })
        .await;
    let accepted = Instant::now();
    let closed = env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(88)))
        .await
        .unwrap();
    let bodies = recv.wait_for(1).await;
    assert!(
        accepted.elapsed() >= env.cfg.scaled(delay),
        "final before the delay"
    );
    let inner = refund_notify(&bodies[0], env.key());
    assert_eq!(inner["out_refund_no"], closed.out_refund_no);
    assert_eq!(inner["refund_status"], "REFUNDCLOSE");
    assert_eq!(inner["refund_request_source"], "VENDOR_PLATFORM");
    let order = env.sim.order(&no).await.unwrap();
    assert_eq!(order.refunds[0].refund_status, RefundStatus::RefundClose);
    // Nothing was refunded: the whole amount can be refunded again.
    env.sim.set_faults(Faults::default()).await;
    let again = env
        .sim
        .refund_outside(OutsideRefund::new(&no, Fen(88)))
        .await
        .unwrap();
    assert_ne!(again.out_refund_no, closed.out_refund_no);
}
