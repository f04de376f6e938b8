//! Refunds end to end: the admin routes, WeChat's answers and notifies
//! (or their absence), refunds made in the merchant platform, and what the
//! user's VIP days say afterwards. Every shop runs its reconciler every
//! second here.

use serde_json::{Value, json};
use wxpay_core::{Fen, SignType, flow::OrderState, testkit};
use wxpay_sim::{Faults, OutsideRefund};

use crate::harness::{ADMIN_TOKEN, Framework, Merchant, Running};

fn refund_path(no: &str) -> String {
    format!("/pay/admin/orders/{no}/refund")
}

/// WeChat's side: the refunds of an order and their sum.
async fn sim_refunds(app: &Running, no: &str) -> (usize, u64) {
    let o = app
        .sim()
        .order(no)
        .await
        .expect("the simulator knows the order");
    let sum = o.refunds.iter().map(|r| r.refund_fee.0).sum();
    (o.refunds.len(), sum)
}

fn states(view: &Value) -> Vec<String> {
    (view["refunds"].as_array().unwrap().iter())
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .collect()
}

/// An admin refunds in two parts; the refund notifies settle them; the
/// VIP days go with the first.
pub async fn admin_refunds_settle_once(fw: Framework, merchant: Merchant, database_url: String) {
    let app = Running::start_reconciling(fw, merchant, database_url).await;
    let alice = app.login("o-alice").await;
    let no = app.paid_order(&alice, 2).await;
    assert_eq!(app.vip_days(&alice).await, 60);

    // The admin routes want the admin token: not none, not a user's, not a wrong one.
    let view = format!("/pay/admin/orders/{no}");
    for token in [None, Some(alice.as_str()), Some("wrong")] {
        assert_eq!(app.get_json(&view, token).await.0, 401, "{token:?}");
        let (status, _) = app.post_json(&refund_path(&no), token, json!({})).await;
        assert_eq!(status, 401, "{token:?}");
    }
    assert_eq!(sim_refunds(&app, &no).await, (0, 0), "nothing was sent");
    let v = app.admin_order(&no).await;
    assert_eq!(
        (
            &v["state"],
            &v["total_fee"],
            &v["refunded_fee"],
            &v["refunds"]
        ),
        (&json!("PAID"), &json!(1996), &json!(0), &json!([])),
        "{v}"
    );

    // Part of it; at once the VIP days stop counting (a refund in flight).
    let (status, r1) = app
        .post_json(
            &refund_path(&no),
            Some(ADMIN_TOKEN),
            json!({ "refund_fee": 998 }),
        )
        .await;
    assert_eq!(status, 200, "{r1}");
    assert_eq!(
        (&r1["out_refund_no"], &r1["refund_fee"], &r1["state"]),
        (
            &json!(format!("{no}-R1")),
            &json!(998),
            &json!("PROCESSING")
        ),
        "{r1}"
    );
    assert_eq!(app.vip_days(&alice).await, 0);
    // More than is left is refused before anything is sent.
    let (status, body) = app
        .post_json(
            &refund_path(&no),
            Some(ADMIN_TOKEN),
            json!({ "refund_fee": 999 }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // The rest, by default.
    let (status, r2) = app
        .post_json(&refund_path(&no), Some(ADMIN_TOKEN), Value::Null)
        .await;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(
        (&r2["refund_fee"], &r2["state"]),
        (&json!(998), &json!("PROCESSING"))
    );

    let v = app
        .wait_admin(&no, "REFUNDED", |v| v["state"] == "REFUNDED")
        .await;
    assert_eq!(v["refunded_fee"], 1996, "{v}");
    assert_eq!(states(&v), ["SUCCESS", "SUCCESS"], "{v}");
    assert!(
        v["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"] == "APP")
    );
    assert_eq!(v["attention"], json!([]), "{v}");
    assert_eq!(
        sim_refunds(&app, &no).await,
        (2, 1996),
        "WeChat refunded once each"
    );
    assert_eq!(app.vip_days(&alice).await, 0);
    // Nothing is left.
    let (status, _) = app
        .post_json(&refund_path(&no), Some(ADMIN_TOKEN), Value::Null)
        .await;
    assert_eq!(status, 400);
    assert_eq!(sim_refunds(&app, &no).await, (2, 1996));
}

/// WeChat's answer to the refund is corrupted in transit (signed with
/// another key) and its refund notify is lost: the refund is UNKNOWN, never
/// guessed, and refundquery settles it; WeChat refunded once.
pub async fn corrupted_refund_answer_is_settled_by_refundquery(
    fw: Framework,
    merchant: Merchant,
    database_url: String,
) {
    let app = Running::start_reconciling(fw, merchant, database_url).await;
    let alice = app.login("o-alice").await;
    let no = app.paid_order(&alice, 1).await;
    app.sim()
        .set_faults(Faults {
            bad_answer_signature_rate: 1.0,
            drop_refund_notifies: true,
            ..Faults::default()
        })
        .await;
    let (status, r) = app
        .post_json(&refund_path(&no), Some(ADMIN_TOKEN), json!({}))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["state"], "UNKNOWN",
        "an unverifiable answer is no answer: {r}"
    );
    assert_eq!(sim_refunds(&app, &no).await, (1, 998), "WeChat did take it");
    // The same request again is the same refund (sent again: WeChat refunds a number once).
    let (status, again) = app
        .post_json(
            &refund_path(&no),
            Some(ADMIN_TOKEN),
            json!({ "refund_fee": 998, "out_refund_no": format!("{no}-R1") }),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(sim_refunds(&app, &no).await, (1, 998));
    // The answers heal; refundquery (the reconciler) settles it.
    app.sim()
        .set_faults(Faults {
            drop_refund_notifies: true,
            ..Faults::default()
        })
        .await;
    let v = app
        .wait_admin(&no, "REFUNDED", |v| v["state"] == "REFUNDED")
        .await;
    assert_eq!(
        (&v["refunded_fee"], states(&v)),
        (&json!(998), vec!["SUCCESS".to_owned()]),
        "{v}"
    );
    assert_eq!(sim_refunds(&app, &no).await, (1, 998), "refunded once");
    assert_eq!(app.vip_days(&alice).await, 0);
}

/// A refund made in the merchant platform whose notify never comes: the
/// reconciler finds it (refundquery), records it as FOUND and flags it,
/// and the VIP days go.
pub async fn outside_refund_is_found_by_the_reconciler(fw: Framework, database_url: String) {
    let app = Running::start_reconciling(fw, SignType::Md5, database_url).await;
    let alice = app.login("o-alice").await;
    let no = app.paid_order(&alice, 1).await;
    let keep = app.paid_order(&alice, 1).await;
    assert_eq!(app.vip_days(&alice).await, 60);
    app.sim()
        .set_faults(Faults {
            drop_refund_notifies: true,
            ..Faults::default()
        })
        .await;
    app.sim()
        .refund_outside(OutsideRefund::new(&no, Fen(998)).with_out_refund_no("DESK-1"))
        .await
        .unwrap();
    let v = app
        .wait_admin(&no, "REFUNDED", |v| v["state"] == "REFUNDED")
        .await;
    let r = &v["refunds"][0];
    assert_eq!(
        (
            &r["out_refund_no"],
            &r["refund_fee"],
            &r["state"],
            &r["source"]
        ),
        (
            &json!("DESK-1"),
            &json!(998),
            &json!("SUCCESS"),
            &json!("FOUND")
        ),
        "{v}"
    );
    assert_eq!(v["attention"][0]["kind"], "REFUND_FOUND", "{v}");
    assert_eq!(
        app.vip_days(&alice).await,
        30,
        "the other order still counts"
    );
    assert_eq!(app.stored(&keep).await.state, OrderState::Paid);
}

/// An HMAC-SHA256 shop takes no notify that says `sign_type=MD5`, even
/// with a valid MD5 signature: the order's algorithm decides.
pub async fn hmac_shop_refuses_an_md5_notify(fw: Framework, database_url: String) {
    let app = Running::start_with(fw, SignType::HmacSha256, database_url, 3).await;
    let alice = app.login("o-alice").await;
    let order = app.order(&alice, 1).await;
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let stored = app.stored(&no).await;
    let config = app.shop.payments.config();
    let mut fields =
        testkit::payment_notify_params(config, &stored, "4200000000000000000000000099");
    fields.insert("sign_type", "MD5");
    let body = testkit::sign_notify(config, fields.clone(), SignType::Md5);
    let (status, _, reply) = app.post_notify(body.into_bytes()).await;
    assert_eq!(status, 200);
    assert!(reply.contains("FAIL"), "{reply}");
    assert_eq!(app.stored(&no).await, stored, "the order is as it was");
    // The same notify signed as the order was is taken.
    fields.insert("sign_type", "HMAC-SHA256");
    let body = testkit::sign_notify(config, fields, SignType::HmacSha256);
    let (_, _, reply) = app.post_notify(body.into_bytes()).await;
    assert!(reply.contains("SUCCESS"), "{reply}");
    assert_eq!(app.stored(&no).await.state, OrderState::Paid);
}
