//! Payment notifies: contents, signatures, retry until SUCCESS, control API.

use std::time::Duration;

use wxpay_sim::NotifyKind;

use crate::common::*;

fn check_payment_notify(body: &str, env: &Env, no: &str, st: &str) -> Fields {
    let n = parse(body);
    for k in [
        "appid",
        "mch_id",
        "nonce_str",
        "openid",
        "is_subscribe",
        "trade_type",
        "bank_type",
        "total_fee",
        "fee_type",
        "cash_fee",
        "transaction_id",
        "out_trade_no",
        "attach",
        "time_end",
        "result_code",
        "return_code",
        "sign",
    ] {
        assert!(n.contains_key(k), "notify lacks {k}: {n:?}");
    }
    assert_eq!(n["out_trade_no"], no);
    assert_eq!(n["appid"], env.cfg.appid);
    assert_eq!(n["mch_id"], env.cfg.mch_id);
    assert_eq!(n["total_fee"], "88");
    assert_eq!(n["attach"], "shop=12&floor=3");
    assert_eq!(n["result_code"], "SUCCESS");
    match st {
        "HMAC-SHA256" => assert!(!n.contains_key("sign_type"), "HMAC notify names sign_type"),
        _ => assert_eq!(n.get("sign_type").map(String::as_str), Some("MD5")),
    }
    assert_eq!(n["sign"], spec_sign(&n, env.key(), st));
    n
}

#[tokio::test]
async fn notify_is_retried_until_the_success_xml() {
    let env = Env::start().await;
    let recv = Receiver::start(vec![FAIL_XML, "success"]).await;
    let no = unique("n");
    create_order(&env, &no, &recv.url, Some("HMAC-SHA256")).await;
    env.sim.pay(&no).await.unwrap();
    let bodies = recv.wait_for(3).await;
    assert_eq!(bodies.len(), 3, "FAIL, plain 'success', then SUCCESS XML");
    for b in &bodies {
        check_payment_notify(b, &env, &no, "HMAC-SHA256");
    }
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.iter().any(|a| a.delivered))
        .await;
    assert!(ok);
    let mine: Vec<_> = log.iter().filter(|a| a.out_trade_no == no).collect();
    assert_eq!(mine.len(), 3);
    assert_eq!(
        mine.iter()
            .map(|a| (a.attempt, a.delivered))
            .collect::<Vec<_>>(),
        [(1, false), (2, false), (3, true)]
    );
    assert!(
        mine.iter()
            .all(|a| a.kind == NotifyKind::Payment && a.url == recv.url)
    );
    assert_eq!(mine[0].status, Some(200));
    assert_eq!(mine[0].reply.as_deref(), Some(FAIL_XML));
    // No more attempts after the SUCCESS.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.bodies().len(), 3);
}

#[tokio::test]
async fn md5_orders_get_md5_notifies_naming_their_sign_type() {
    let env = Env::start().await;
    let recv = Receiver::start(vec![]).await;
    let no = unique("m");
    create_order(&env, &no, &recv.url, None).await;
    env.sim.pay(&no).await.unwrap();
    let bodies = recv.wait_for(1).await;
    let n = check_payment_notify(&bodies[0], &env, &no, "MD5");
    assert_eq!(n["sign"].len(), 32);
    let order = env.sim.order(&no).await.unwrap();
    assert_eq!(Some(n["transaction_id"].clone()), order.transaction_id);
}

#[tokio::test]
async fn unreachable_notify_url_is_logged_as_failed_attempts() {
    let env = Env::start().await;
    // A port nothing listens on: bind, take the port, close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let no = unique("u");
    create_order(&env, &no, &format!("http://127.0.0.1:{port}/n"), None).await;
    env.sim.pay(&no).await.unwrap();
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.len() >= 2)
        .await;
    assert!(ok);
    assert!(
        log.iter()
            .all(|a| !a.delivered && a.status.is_none() && a.error.is_some())
    );
    assert_eq!(log[0].attempt, 1);
    assert_eq!(log[1].attempt, 2);
}

#[tokio::test]
async fn control_api_speaks_json() {
    let env = Env::start().await;
    let recv = Receiver::start(vec![]).await;
    let no = unique("j");
    let reply = create_order(&env, &no, &recv.url, None).await;
    let order: serde_json::Value = env
        .http
        .get(env.url(&format!("/sim/orders/{no}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["trade_state"], "NOTPAY");
    assert_eq!(order["prepay_id"], reply["prepay_id"].as_str());
    assert_eq!(order["total_fee"], 88);
    assert_eq!(order["sign_type"], "MD5");

    let paid = env
        .http
        .post(env.url("/sim/pay"))
        .json(&serde_json::json!({ "prepay_id": reply["prepay_id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let paid: serde_json::Value = paid.json().await.unwrap();
    assert_eq!(paid["trade_state"], "SUCCESS");
    let again = env
        .http
        .post(env.url("/sim/pay"))
        .json(&serde_json::json!({ "out_trade_no": no }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let missing = env
        .http
        .post(env.url("/sim/pay"))
        .json(&serde_json::json!({ "out_trade_no": "nope", "result": "PAYERROR" }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing = env
        .http
        .get(env.url("/sim/orders/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    recv.wait_for(1).await;
    let log: serde_json::Value = eventually(|| async {
        let log: serde_json::Value = env
            .http
            .get(env.url("/sim/notifies"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (log.as_array().unwrap().len() == 1).then_some(log)
    })
    .await;
    assert_eq!(log[0]["kind"], "payment");
    assert_eq!(log[0]["out_trade_no"], no);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["delivered"], true);
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["url"], recv.url);
}
