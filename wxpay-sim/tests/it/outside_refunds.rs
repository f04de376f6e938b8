//! Refunds made on the merchant platform, outside the app, over HTTP
//! (`POST /sim/refund`); `refunds.rs` uses `SimHandle::refund_outside`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

async fn post_refund(env: &Env, body: Value) -> (u16, Value) {
    env.post_json("/sim/refund", body).await
}

#[tokio::test]
async fn outside_refunds_follow_the_refund_rules_and_send_the_refund_notify() {
    let platform = Receiver::start(vec![]).await;
    let per_call = Receiver::start(vec![]).await;
    let env = refund_env(Duration::ZERO, &platform).await;

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
    assert_err(&api_refund(&env, &no, "R-API", "39").await, "NOTENOUGH");
    let (status, body) = post_refund(&env, json!({ "out_trade_no": no, "refund_fee": 39 })).await;
    assert_eq!(
        (status, body["err_code"].as_str()),
        (409, Some("NOTENOUGH"))
    );
    assert_ok(&api_refund(&env, &no, "R-API", "38").await);

    let q = env
        .call("/pay/refundquery", refundquery(&env, "out_trade_no", &no))
        .await;
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

    let order = env.get_json(&format!("/sim/orders/{no}")).await;
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
