//! Fault injection.

use std::time::{Duration, Instant};

use wxpay_sim::{Faults, NotifyAttempt, NotifyKind};

use crate::common::*;

#[tokio::test]
async fn system_errors_change_nothing() {
    let env = Env::start().await;
    env.sim
        .set_faults(Faults {
            system_error_rate: 1.0,
            ..Faults::default()
        })
        .await;
    let no = unique("se");
    let reply = env
        .call(
            "/pay/unifiedorder",
            order_fields(&env, &no, "http://127.0.0.1:9/n", Some("HMAC-SHA256")),
        )
        .await;
    assert_err(&reply, "SYSTEMERROR");
    assert!(env.sim.order(&no).await.is_none());
    // jscode2session: errcode -1, and the code survives.
    let code = env.sim.login("oSys").await;
    let url = format!(
        "{}?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
        env.url("/sns/jscode2session"),
        env.cfg.appid,
        env.cfg.app_secret.expose()
    );
    let v: serde_json::Value = env
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["errcode"], -1);

    // Over HTTP, back to normal.
    let r = env
        .http
        .post(env.url("/sim/faults"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.sim.faults().await, Faults::default());
    let bad = env
        .http
        .post(env.url("/sim/faults"))
        .json(&serde_json::json!({ "system_error_rate": 2.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    create_order(&env, &no, "http://127.0.0.1:9/n", Some("HMAC-SHA256")).await;
    let v: serde_json::Value = env
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["openid"], "oSys");
}

#[tokio::test]
async fn dropped_notifies_are_logged_and_retried_later() {
    let env = Env::start().await;
    let recv = Receiver::start(vec![]).await;
    let r = env
        .http
        .post(env.url("/sim/faults"))
        .json(&serde_json::json!({ "drop_notifies": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(env.sim.faults().await.drop_notifies);
    let no = unique("d");
    create_order(&env, &no, &recv.url, None).await;
    env.sim.pay(&no).await.unwrap();
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.len() >= 3)
        .await;
    assert!(ok);
    assert!(log.iter().all(|a| !a.delivered && a.status.is_none()));
    assert!(recv.bodies().is_empty(), "dropped notifies were sent");
    // The "network" comes back: a later retry gets through.
    env.sim.set_faults(Faults::default()).await;
    let bodies = recv.wait_for(1).await;
    assert_eq!(bodies.len(), 1);
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.iter().any(|a| a.delivered))
        .await;
    assert!(ok);
    let last = log.iter().find(|a| a.delivered).unwrap();
    assert!(last.attempt >= 4, "delivered on attempt {}", last.attempt);
}

#[tokio::test]
async fn duplicate_notifies_arrive_concurrently() {
    let env = Env::start().await;
    let recv = Receiver::start(vec![]).await;
    env.sim
        .set_faults(Faults {
            duplicate_notifies: 2,
            ..Faults::default()
        })
        .await;
    let no = unique("dup");
    create_order(&env, &no, &recv.url, None).await;
    env.sim.pay(&no).await.unwrap();
    let bodies = recv.wait_for(3).await;
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "copies of one notify"
    );
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| l.len() >= 3)
        .await;
    assert!(ok);
    assert_eq!(log.iter().filter(|a| a.duplicate).count(), 2);
    assert!(log.iter().all(|a| a.attempt == 1));
}

#[tokio::test]
async fn delay_slows_every_answer() {
    let env = Env::start().await;
    env.sim
        .set_faults(Faults {
            delay_ms: 150,
            ..Faults::default()
        })
        .await;
    let started = Instant::now();
    let q = env
        .call("/pay/orderquery", {
            let mut f = env.base(None);
            f.insert("out_trade_no".into(), "nosuchorder9".into());
            f
        })
        .await;
    assert_err(&q, "ORDERNOTEXIST");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn payment_and_refund_notifies_are_dropped_by_separate_switches() {
    let recv = Receiver::start(vec![]).await;
    let env = Env::with(fast_config().with_refund_notify_url(&recv.url)).await;
    let is_refund = |b: &String| parse(b).contains_key("req_info");
    // drop_notifies holds back the payment notify only.
    let (status, _) = env
        .post_json("/sim/faults", serde_json::json!({ "drop_notifies": true }))
        .await;
    assert_eq!(status, 200);
    let no = unique("dr");
    create_order(&env, &no, &recv.url, None).await;
    env.sim.pay(&no).await.unwrap();
    assert_ok(&api_refund(&env, &no, "DR-1", "10").await);
    let bodies = recv.wait_for(1).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        refund_notify(&bodies[0], env.key())["out_refund_no"],
        "DR-1"
    );
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| {
            l.iter()
                .any(|a| a.kind == NotifyKind::Refund && a.delivered)
        })
        .await;
    assert!(ok);
    let payments: Vec<_> = log
        .iter()
        .filter(|a| a.kind == NotifyKind::Payment)
        .collect();
    assert!(!payments.is_empty());
    assert!(payments.iter().all(|a| !a.delivered && a.status.is_none()));

    // drop_refund_notifies holds back refund notifies only: the payment
    // notify's next retry gets through, the new refund's attempts do not.
    env.sim
        .set_faults(Faults {
            drop_refund_notifies: true,
            ..Faults::default()
        })
        .await;
    assert_ok(&api_refund(&env, &no, "DR-2", "20").await);
    let dr2 = |a: &NotifyAttempt| a.out_refund_no.as_deref() == Some("DR-2");
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| {
            l.iter().filter(|a| dr2(a)).count() >= 2
                && l.iter()
                    .any(|a| a.kind == NotifyKind::Payment && a.delivered)
        })
        .await;
    assert!(ok, "{log:#?}");
    assert!(
        log.iter()
            .filter(|a| dr2(a))
            .all(|a| !a.delivered && a.status.is_none() && a.error.is_some())
    );
    let bodies = recv.bodies();
    assert_eq!(bodies.iter().filter(|b| !is_refund(b)).count(), 1);
    assert_eq!(
        bodies.iter().filter(|b| is_refund(b)).count(),
        1,
        "only DR-1"
    );

    // Off again: a later retry of DR-2 gets through.
    env.sim.set_faults(Faults::default()).await;
    let (log, ok) = env
        .sim
        .wait_for_notifies(Duration::from_secs(5), |l| {
            l.iter().any(|a| dr2(a) && a.delivered)
        })
        .await;
    assert!(ok);
    let delivered = log.iter().find(|a| dr2(a) && a.delivered).unwrap();
    assert!(delivered.attempt >= 3, "attempt {}", delivered.attempt);
    let last = recv.wait_for(3).await.pop().unwrap();
    assert_eq!(refund_notify(&last, env.key())["out_refund_no"], "DR-2");
}

/// The reply carries a well-formed sign of the right algorithm that does not
/// verify with the merchant's key.
fn assert_mis_signed(reply: &Fields, key: &str, st: &str) {
    let sign = &reply["sign"];
    assert_eq!(sign.len(), if st == "MD5" { 32 } else { 64 });
    assert_ne!(*sign, spec_sign(reply, key, st), "{reply:?}");
}

#[tokio::test]
async fn mis_signed_answers_still_change_state() {
    let env = Env::start().await;
    let set = |body| async { env.post_json("/sim/faults", body).await.0 };
    assert_eq!(
        set(serde_json::json!({ "bad_answer_signature_rate": 1.5 })).await,
        400
    );
    assert_eq!(
        set(serde_json::json!({ "bad_answer_signature_rate": 1.0 })).await,
        200
    );
    assert_eq!(env.sim.faults().await.bad_answer_signature_rate, 1.0);
    let no = unique("bs");
    let url = "http://127.0.0.1:9/n";
    let r = env
        .call_unverified(
            "/pay/unifiedorder",
            order_fields(&env, &no, url, Some("HMAC-SHA256")),
        )
        .await;
    assert_ok(&r);
    assert_mis_signed(&r, env.key(), "HMAC-SHA256");
    let order = env.sim.order(&no).await.expect("the order was created");
    assert_eq!(order.prepay_id, r["prepay_id"]);

    env.sim.pay(&no).await.unwrap();
    let r = env
        .call_unverified(
            "/secapi/pay/refund",
            refund_req(&env, &no, "BS-1", "88", "8", None),
        )
        .await;
    assert_ok(&r);
    assert_mis_signed(&r, env.key(), "HMAC-SHA256");
    assert_eq!(env.sim.order(&no).await.unwrap().refunds.len(), 1);
    let q = refundquery(&env, "out_trade_no", &no);
    for path in ["/pay/orderquery", "/pay/refundquery"] {
        let r = env.call_unverified(path, q.clone()).await;
        assert_ok(&r);
        assert_mis_signed(&r, env.key(), "MD5");
    }
    // Business failures are signed answers too.
    let r = env
        .call_unverified(
            "/secapi/pay/refund",
            refund_req(&env, &no, "BS-2", "88", "81", None),
        )
        .await;
    assert_err(&r, "NOTENOUGH");
    assert_mis_signed(&r, env.key(), "HMAC-SHA256");

    // At 0.0 every answer verifies again (`call` checks it).
    assert_eq!(set(serde_json::json!({})).await, 200);
    assert_ok(&env.call("/pay/orderquery", q).await);
}

/// The control API reads JSON whatever the `Content-Type` (curl's `-d`
/// sends `application/x-www-form-urlencoded`), and says what is wrong with
/// a body that is not JSON.
#[tokio::test]
async fn the_control_api_takes_json_without_its_content_type() {
    let env = Env::start().await;
    let post = |path: &'static str, body: &'static str, ct: Option<&'static str>| {
        let mut r = env.http.post(env.url(path)).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    for ct in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("application/json"),
    ] {
        let r = post("/sim/login", r#"{"openid":"o-curl"}"#, ct)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{ct:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    }
    let r = post("/sim/faults", r#"{"drop_notifies":true}"#, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(env.sim.faults().await.drop_notifies);
    let r = post("/sim/login", "openid=o-curl", None).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("expected a JSON body"),
        "{v}"
    );
}
