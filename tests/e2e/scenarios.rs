//! The scenarios every adapter must pass.

use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::Value;
use sha2::Sha256;
use wxpay_core::{
    Fen, Params, SignType,
    flow::{Order, OrderState},
    testkit, xml,
};
use wxpay_sim::Faults;

use crate::harness::{Framework, Merchant, Running, sqlite_url, temp_db};

const SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// paySign recomputed from the spec's rules, independently of wxpay.
fn check_pay_sign(pay: &Value, key: &str) {
    let field = |k: &str| pay[k].as_str().unwrap_or_else(|| panic!("{k} in {pay}"));
    let string = format!(
        "appId={}&nonceStr={}&package={}&signType={}&timeStamp={}&key={key}",
        field("appId"),
        field("nonceStr"),
        field("package"),
        field("signType"),
        field("timeStamp"),
    );
    let expected = match field("signType") {
        "MD5" => format!("{:X}", Md5::digest(string.as_bytes())),
        "HMAC-SHA256" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(string.as_bytes());
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect()
        }
        other => panic!("signType {other}"),
    };
    assert_eq!(field("paySign"), expected);
}

pub async fn pays_and_fulfils_once(fw: Framework, sign_type: SignType) {
    let app = Running::start(fw, sign_type, temp_db("pay")).await;
    let alice = app.login("o-alice").await;
    let bob = app.login("o-bob").await;

    // a code WeChat does not know, or none: no token; no token: no /me
    let (status, body) = app
        .post_json("/login", None, serde_json::json!({"code": "nope"}))
        .await;
    assert_eq!((status, &body["token"]), (401, &Value::Null), "{body}");
    let (status, _) = app.post_json("/login", None, serde_json::json!({})).await;
    assert_eq!(status, 400);
    for token in [None, Some("not-a-token")] {
        assert_eq!(app.get_json("/me", token).await.0, 401);
    }

    // no token: 401; unknown sku: 400
    let (status, _) = app
        .post_json("/pay/orders", None, serde_json::json!({"sku": "vip-month"}))
        .await;
    assert_eq!(status, 401);
    let (status, body) = app
        .post_json(
            "/pay/orders",
            Some(&alice),
            serde_json::json!({"sku": "gold"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // priced by the shop: 2 × 998, whatever the client said
    let order = app.order(&alice, 2).await;
    assert_eq!(order["total_fee"], 1996);
    assert_eq!(order["trade_type"], "JSAPI");
    let pay = &order["pay_params"];
    assert_eq!(pay["signType"], sign_type.as_str());
    check_pay_sign(pay, app.sim().config().api_key.expose());
    let no = order["out_trade_no"].as_str().unwrap();
    assert_eq!(app.sim().order(no).await.unwrap().total_fee, Fen(1996));

    // only the owner sees it
    let (status, _) = app.get_json(&format!("/pay/orders/{no}"), Some(&bob)).await;
    assert_eq!(status, 404);
    let (status, body) = app
        .get_json(&format!("/pay/orders/{no}"), Some(&alice))
        .await;
    assert_eq!((status, &body["state"]), (200, &Value::from("PREPAID")));

    // the user pays; WeChat's notify arrives
    app.sim().pay(no).await.unwrap();
    let paid = app.wait_state(&alice, no, "PAID").await;
    assert_eq!(paid["total_fee"], 1996);
    assert!(
        paid["transaction_id"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let (delivered, ok) = app
        .sim()
        .wait_for_notifies(Duration::from_secs(5), |log| {
            log.iter().any(|a| a.delivered)
        })
        .await;
    assert!(ok, "{delivered:?}");
    assert_eq!(
        delivered
            .iter()
            .find(|a| a.delivered)
            .unwrap()
            .reply
            .as_deref(),
        Some(SUCCESS)
    );
    assert_eq!(app.vip_days(&alice).await, 60);
    assert_eq!(app.vip_days(&bob).await, 0);
    // the stored order carries the payment and a finished fulfilment
    let stored = app.stored(no).await;
    assert_eq!(stored.sign_type, sign_type);
    assert!(matches!(
        stored.fulfilment,
        wxpay_core::flow::Fulfilment::Done { .. }
    ));
    assert_eq!(app.fulfilments.of(no), 1);
    // the simulator's own retries (it saw SUCCESS, so none) change nothing
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        (app.fulfilments.of(no), app.vip_days(&alice).await),
        (1, 60)
    );
}

fn notify_for(app: &Running, order: &Order) -> Params {
    testkit::payment_notify_params(
        app.shop.payments.config(),
        order,
        "4200000000000000000000000042",
    )
}

pub async fn bad_notifies_change_nothing(fw: Framework) {
    let app = Running::start(fw, SignType::Md5, temp_db("bad")).await;
    let alice = app.login("o-alice").await;
    let no = app.order(&alice, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut before = app.stored(&no).await;
    let config = app.shop.payments.config().clone();

    let mut forged = notify_for(&app, &before);
    let signed = testkit::sign_notify(&config, forged.clone(), SignType::Md5);
    forged = xml::parse(signed.as_bytes()).unwrap();
    forged.insert("total_fee", "1"); // changed after signing
    let mut foreign = notify_for(&app, &before);
    foreign.insert("appid", "wx0000000000000000");
    let mut cheap = notify_for(&app, &before);
    cheap.insert("total_fee", "1");
    cheap.insert("cash_fee", "1");
    let mut unknown = notify_for(&app, &before);
    unknown.insert("out_trade_no", "NO_SUCH_ORDER_1");

    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        ("forged sign", xml::to_xml(&forged).into_bytes()),
        ("foreign appid", testkit::sign_notify(&config, foreign, SignType::Md5).into_bytes()),
        ("wrong amount", testkit::sign_notify(&config, cheap, SignType::Md5).into_bytes()),
        ("unknown order", testkit::sign_notify(&config, unknown, SignType::Md5).into_bytes()),
        ("malformed", b"<xml><return_code>SUCCESS</return_code>".to_vec()),
        (
            "entity bomb",
            br#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><return_code>&c;</return_code></xml>"#.to_vec(),
        ),
        ("not utf-8", b"<xml><body>\xb3\xe4\xd6\xb5</body></xml>".to_vec()),
        ("empty", Vec::new()),
    ];
    let mut big = b"<xml><attach>".to_vec();
    big.resize(2 * 1024 * 1024, b'a');
    big.extend_from_slice(b"</attach></xml>");
    bodies.push(("2 MiB", big));

    for (what, body) in bodies {
        let (status, closes, reply) = app.post_notify(body).await;
        assert!(status == 200 || status == 413, "{what}: HTTP {status}");
        // Unread body left on the connection: the client must not reuse it
        // (the GET below went out on a closing connection before this).
        assert_eq!(closes, what == "2 MiB", "{what}: Connection: close");
        if status == 200 {
            let reply =
                xml::parse(reply.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}: {reply}"));
            assert_eq!(reply.get("return_code"), Some("FAIL"), "{what}");
        }
        let after = app.stored(&no).await;
        if what == "wrong amount" {
            // Verified, but not this order's amount: refused and recorded
            // for a person (once), nothing else changed.
            let kinds: Vec<_> = after.attention.iter().map(|a| a.kind).collect();
            assert_eq!(
                kinds,
                [wxpay_core::flow::AttentionKind::AmountMismatch],
                "{what}"
            );
            before = Order {
                attention: after.attention.clone(),
                version: after.version,
                updated_at: after.updated_at,
                ..before
            };
        }
        assert_eq!(after, before, "{what} changed the order");
    }
    let resp = app
        .http
        .get(format!("{}/pay/notify", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(app.stored(&no).await, before);
    assert_eq!(app.vip_days(&alice).await, 0);
    assert_eq!(app.fulfilments.of(&no), 0);
}

pub async fn concurrent_duplicate_notifies_fulfil_once(fw: Framework) {
    let app = Running::start(fw, SignType::Md5, temp_db("dup")).await;
    let alice = app.login("o-alice").await;
    let no = app.order(&alice, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = app.stored(&no).await;
    let body = testkit::sign_notify(
        app.shop.payments.config(),
        notify_for(&app, &order),
        SignType::Md5,
    );
    let replies = futures_join(20, |_| {
        let http = app.http.clone();
        let url = format!("{}/pay/notify", app.base);
        let body = body.clone();
        async move {
            http.post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    })
    .await;
    assert!(replies.iter().all(|r| r == SUCCESS), "{replies:?}");
    assert_eq!(app.stored(&no).await.state, OrderState::Paid);
    assert_eq!(app.vip_days(&alice).await, 30);
    assert_eq!(
        app.fulfilments.of(&no),
        1,
        "on_paid ran once for 20 notifies"
    );
}

async fn futures_join<F, Fut>(n: usize, f: F) -> Vec<String>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

pub async fn dropped_notifies_are_recovered_by_polling(fw: Framework, merchant: Merchant) {
    let app = Running::start(fw, merchant, temp_db("drop")).await;
    let alice = app.login("o-alice").await;
    let no = app.order(&alice, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim()
        .set_faults(Faults {
            drop_notifies: true,
            ..Faults::default()
        })
        .await;
    app.sim().pay(&no).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(app.sim().notifies().await.iter().all(|a| !a.delivered));
    app.wait_state(&alice, &no, "PAID").await;
    assert_eq!(app.vip_days(&alice).await, 30);
}

pub async fn half_system_errors_still_create_orders(fw: Framework, merchant: Merchant) {
    let app = Running::start_with(fw, merchant, sqlite_url(&temp_db("syserr")), 12).await;
    let alice = app.login("o-alice").await;
    app.sim()
        .set_faults(Faults {
            system_error_rate: 0.5,
            // The same faults on every run (the requests here are sequential).
            seed: Some(20261201),
            ..Faults::default()
        })
        .await;
    for _ in 0..6 {
        let order = app.order(&alice, 1).await;
        let no = order["out_trade_no"].as_str().unwrap();
        assert_eq!(app.stored(no).await.state, OrderState::Prepaid);
        assert!(app.sim().order(no).await.is_some());
    }
}

pub async fn orders_close(fw: Framework, merchant: Merchant) {
    let app = Running::start(fw, merchant, temp_db("close")).await;
    let alice = app.login("o-alice").await;
    let bob = app.login("o-bob").await;
    let no = app.order(&alice, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    // WeChat refuses closing within 5 (scaled: 3 s) minutes: refused
    // before asking, with the time to wait
    let early = app
        .post_json(
            &format!("/pay/orders/{no}/close"),
            Some(&alice),
            Value::Null,
        )
        .await;
    assert_eq!(early.0, 409, "closing too early: {}", early.1);
    assert_eq!(early.1["error"], "too_early", "{}", early.1);
    assert!(
        (1..=3).contains(&early.1["retry_after"].as_u64().unwrap_or(0)),
        "{}",
        early.1
    );
    assert_eq!(app.stored(&no).await.state, OrderState::Prepaid);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, _) = app
        .post_json(&format!("/pay/orders/{no}/close"), Some(&bob), Value::Null)
        .await;
    assert_eq!(status, 404, "only the owner may close");
    let (status, body) = app
        .post_json(
            &format!("/pay/orders/{no}/close"),
            Some(&alice),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "CLOSED");
    assert_eq!(app.stored(&no).await.state, OrderState::Closed);
    assert_eq!(
        app.sim().order(&no).await.unwrap().trade_state,
        wxpay_core::TradeState::Closed
    );
    assert!(
        app.sim().pay(&no).await.is_err(),
        "a closed order cannot be paid"
    );
}

pub async fn restart_loses_nothing(fw: Framework, merchant: Merchant) {
    let db = temp_db("restart");
    let (token, no) = {
        let app = Running::start(fw, merchant, db.clone()).await;
        let alice = app.login("o-alice").await;
        let no = app.order(&alice, 3).await["out_trade_no"]
            .as_str()
            .unwrap()
            .to_owned();
        app.sim().pay(&no).await.unwrap();
        app.wait_state(&alice, &no, "PAID").await;
        assert_eq!(app.vip_days(&alice).await, 90);
        (alice, no)
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let app = Running::start(fw, merchant, db).await;
    let (status, body) = app
        .get_json(&format!("/pay/orders/{no}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "PAID");
    assert_eq!(body["total_fee"], 2994);
    assert_eq!(app.vip_days(&token).await, 90);
}

/// SIGINT/SIGTERM, as the shops' `run` turns them into `shutdown`: the
/// server stops taking connections, answers what it had, and returns.
pub async fn stops_gracefully(fw: Framework) {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let args = crate::shop::Args {
        listen: addr,
        sim: true,
        database_url: sqlite_url(&temp_db("stop")),
        sim_sign_type: SignType::Md5,
        sim_time_scale: 0.01,
        admin_token: None,
        reconcile_every: 30,
        api: wxpay_core::flow::Api::V3,
        sim_verify_mode: wxpay_sim::VerifyMode::Cert,
        header_timeout: 10.0,
        body_timeout: 10.0,
        env_file: None,
        metrics_listen: None,
    };
    let shop = std::sync::Arc::new(crate::shop::Shop::start(&args, addr, |b| b).await.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown: crate::shop::Shutdown = Box::pin(async move {
        let _ = stopped.await;
    });
    let server = {
        let shop = shop.clone();
        std::thread::spawn(move || match fw {
            // actix-web runs on its own system; the others on a runtime here.
            Framework::Actix => actix_web::rt::System::new()
                .block_on(crate::actix_app::serve(shop, listener, shutdown)),
            _ => tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move {
                    match fw {
                        Framework::Axum => crate::axum_app::serve(shop, listener, shutdown).await,
                        _ => crate::tower_app::serve(shop, listener, shutdown).await,
                    }
                }),
        })
    };
    let http = reqwest::Client::new();
    let me = format!("http://{addr}/me");
    assert_eq!(http.get(&me).send().await.unwrap().status(), 401);
    stop.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "{fw:?}: the server did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
        .join()
        .unwrap()
        .expect("serve returns Ok after shutdown");
    assert!(
        reqwest::Client::new().get(&me).send().await.is_err(),
        "{fw:?}: still taking connections"
    );
    shop.stop().await;
}
