//! unifiedorder re-entry, orderquery states, closeorder and expiry rules.

use std::time::Duration;

use wxpay_sim::{PayResult, SimConfig, SimError};

use crate::common::*;

fn query(env: &Env, key: &str, value: &str, st: Option<&str>) -> Fields {
    let mut f = env.base(st);
    f.insert(key.into(), value.into());
    f
}

fn close(env: &Env, no: &str) -> Fields {
    query(env, "out_trade_no", no, None)
}

#[tokio::test]
async fn reentry_same_params_same_prepay_id_else_refused() {
    let env = Env::start().await;
    let no = unique("re");
    let url = "http://127.0.0.1:9/n";
    let first = create_order(&env, &no, url, Some("HMAC-SHA256")).await;
    // A retry with a fresh nonce is the same request.
    let again = create_order(&env, &no, url, Some("HMAC-SHA256")).await;
    assert_eq!(first["prepay_id"], again["prepay_id"]);
    // Different parameters: refused, order unchanged.
    let mut f = order_fields(&env, &no, url, Some("HMAC-SHA256"));
    f.insert("total_fee".into(), "89".into());
    let reply = env.call("/pay/unifiedorder", f).await;
    assert_err(&reply, "INVALID_REQUEST");
    assert_eq!(reply["err_code_des"], "201 商户订单号重复");
    assert_eq!(env.sim.order(&no).await.unwrap().total_fee.0, 88);
    // Paid: ORDERPAID.
    env.sim.pay(&no).await.unwrap();
    let reply = env
        .call(
            "/pay/unifiedorder",
            order_fields(&env, &no, url, Some("HMAC-SHA256")),
        )
        .await;
    assert_err(&reply, "ORDERPAID");
}

#[tokio::test]
async fn orderquery_reports_every_state() {
    let env = Env::start().await;
    let url = "http://127.0.0.1:9/n";
    let no = unique("q");
    create_order(&env, &no, url, None).await;
    let q = env
        .call("/pay/orderquery", query(&env, "out_trade_no", &no, None))
        .await;
    assert_ok(&q);
    assert_eq!(q["trade_state"], "NOTPAY");
    assert_eq!(q["out_trade_no"], no);
    assert!(!q.contains_key("transaction_id"));

    let paid = env.sim.pay(&no).await.unwrap();
    let tid = paid.transaction_id.clone().unwrap();
    assert_eq!(tid.len(), 28);
    for (k, v) in [
        ("out_trade_no", no.as_str()),
        ("transaction_id", tid.as_str()),
    ] {
        let q = env
            .call("/pay/orderquery", query(&env, k, v, Some("HMAC-SHA256")))
            .await;
        assert_ok(&q);
        assert_eq!(q["trade_state"], "SUCCESS");
        assert_eq!(q["transaction_id"], tid);
        assert_eq!(q["out_trade_no"], no);
        assert_eq!(q["total_fee"], "88");
        assert_eq!(q["cash_fee"], "88");
        assert_eq!(q["trade_type"], "JSAPI");
        assert_eq!(q["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
        assert_eq!(q["attach"], "shop=12&floor=3");
        assert_eq!(q["bank_type"], "OTHERS");
        assert_eq!(q["time_end"].len(), 14);
        assert_eq!(Some(q["time_end"].clone()), paid.time_end);
    }
    // Paying twice is refused.
    assert!(matches!(
        env.sim.pay(&no).await,
        Err(SimError::NotPayable { .. })
    ));

    let failed = unique("pe");
    create_order(&env, &failed, url, None).await;
    env.sim
        .pay_with(&failed, PayResult::PayError)
        .await
        .unwrap();
    let q = env
        .call(
            "/pay/orderquery",
            query(&env, "out_trade_no", &failed, None),
        )
        .await;
    assert_eq!(q["trade_state"], "PAYERROR");
    assert!(
        env.sim
            .notifies()
            .await
            .iter()
            .all(|n| n.out_trade_no != failed)
    );

    let q = env
        .call(
            "/pay/orderquery",
            query(&env, "out_trade_no", "nosuchorder1", None),
        )
        .await;
    assert_err(&q, "ORDERNOTEXIST");
    let q = env
        .call(
            "/pay/orderquery",
            query(&env, "transaction_id", "4200000000000000000000000000", None),
        )
        .await;
    assert_err(&q, "ORDERNOTEXIST");
}

#[tokio::test]
async fn closeorder_waits_five_scaled_minutes_and_respects_state() {
    let env = Env::start().await; // 5 min × 0.001 = 300 ms
    let url = "http://127.0.0.1:9/n";
    let no = unique("c");
    create_order(&env, &no, url, None).await;
    let r = env.call("/pay/closeorder", close(&env, &no)).await;
    assert_err(&r, "TRADE_STATE_ERROR");
    assert_eq!(
        env.sim.order(&no).await.unwrap().trade_state.as_str(),
        "NOTPAY"
    );
    let r = eventually(|| async {
        let r = env.call("/pay/closeorder", close(&env, &no)).await;
        (r["result_code"] == "SUCCESS").then_some(r)
    })
    .await;
    assert_ok(&r);
    let q = env
        .call("/pay/orderquery", query(&env, "out_trade_no", &no, None))
        .await;
    assert_eq!(q["trade_state"], "CLOSED");
    assert_err(
        &env.call("/pay/closeorder", close(&env, &no)).await,
        "ORDERCLOSED",
    );
    let reply = env
        .call("/pay/unifiedorder", order_fields(&env, &no, url, None))
        .await;
    assert_err(&reply, "ORDERCLOSED");
    assert!(env.sim.pay(&no).await.is_err());

    let paid = unique("cp");
    create_order(&env, &paid, url, None).await;
    env.sim.pay(&paid).await.unwrap();
    assert_err(
        &env.call("/pay/closeorder", close(&env, &paid)).await,
        "ORDERPAID",
    );
    assert_err(
        &env.call("/pay/closeorder", close(&env, "nosuchorder2"))
            .await,
        "ORDERNOTEXIST",
    );
    let r = env.call("/pay/closeorder", env.base(None)).await;
    assert_err(&r, "LACK_PARAMS");
}

#[tokio::test]
async fn prepay_ids_expire_after_two_scaled_hours() {
    // 2 h × 0.00001 = 72 ms
    let env = Env::with(SimConfig::test().with_time_scale(0.00001)).await;
    let url = "http://127.0.0.1:9/n";
    let no = unique("exp");
    let first = create_order(&env, &no, url, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        env.sim.pay(&no).await,
        Err(SimError::PrepayExpired(_))
    ));
    // Re-entry with the same parameters gives a fresh session.
    let second = create_order(&env, &no, url, None).await;
    assert_ne!(first["prepay_id"], second["prepay_id"]);
    assert!(matches!(
        env.sim
            .pay_prepay(&first["prepay_id"], PayResult::Success)
            .await,
        Err(SimError::PrepayExpired(_))
    ));
    env.sim
        .pay_prepay(&second["prepay_id"], PayResult::Success)
        .await
        .unwrap();
}

#[tokio::test]
async fn cashier_page_pays_through_plain_forms() {
    let env = Env::start().await;
    let no = unique("cash");
    let reply = create_order(&env, &no, "http://127.0.0.1:9/n", None).await;
    let prepay = &reply["prepay_id"];
    let page = env
        .http
        .get(env.url(&format!("/sim/cashier/{prepay}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"/sim/cashier/{prepay}/pay\"")),
        "{html}"
    );
    assert!(html.contains(&format!("action=\"/sim/cashier/{prepay}/cancel\"")));
    assert!(html.contains("¥0.88"));
    assert!(html.contains("腾讯-游戏"));
    let cancel = env
        .http
        .post(env.url(&format!("/sim/cashier/{prepay}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    assert_eq!(
        env.sim.order(&no).await.unwrap().trade_state.as_str(),
        "NOTPAY"
    );
    let pay = env
        .http
        .post(env.url(&format!("/sim/cashier/{prepay}/pay")))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 200);
    assert_eq!(
        env.sim.order(&no).await.unwrap().trade_state.as_str(),
        "SUCCESS"
    );
    let missing = env
        .http
        .get(env.url("/sim/cashier/wxnothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
