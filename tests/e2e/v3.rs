//! API v3 end to end: a shop whose merchant speaks v3 against the
//! simulator's `/v3` API — RSA-signed requests, verified answers, signed
//! and encrypted notifies — in certificate, public-key and migration mode,
//! through a platform-certificate rotation, and every bad notify refused
//! over real HTTP.

use std::time::Duration;

use serde_json::Value;
use wxpay_core::{
    flow::{Api, OrderState},
    testkit::v3::{NotifyRequest, Wechat},
    v3::PlatformCertificate,
};
use wxpay_sim::{Protocol, VerifyMode};

use crate::harness::{Framework, Merchant, Running, temp_db};

impl Running {
    /// Posts a v3 notify (its `Wechatpay-*` headers and raw body) to the
    /// shop's notify route: the status and the body.
    pub async fn post_notify_v3(&self, n: &NotifyRequest) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}/pay/notify", self.base))
            .header("Content-Type", "application/json")
            .body(n.body.clone());
        for (k, v) in &n.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// The `wx.requestPayment` parameters of a v3 order: `signType` RSA, no
/// `appId`, `paySign` verifying with the merchant certificate's key over
/// `appId\ntimeStamp\nnonceStr\npackage\n`.
fn check_rsa_pay_sign(app: &Running, pay: &Value) {
    assert_eq!(pay["signType"], "RSA", "{pay}");
    assert!(pay.get("appId").is_none(), "v3 passes no appId: {pay}");
    let m = app.sim().v3_merchant();
    let cert = PlatformCertificate::from_pem(m.mch_cert_pem.as_deref().expect("merchant cert"))
        .expect("the merchant certificate parses");
    let field = |k: &str| pay[k].as_str().unwrap_or_else(|| panic!("{k} in {pay}"));
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        m.appid,
        field("timeStamp"),
        field("nonceStr"),
        field("package")
    );
    assert!(
        cert.public_key()
            .verifies(message.as_bytes(), field("paySign")),
        "paySign does not verify: {pay}"
    );
}

pub async fn pays_and_fulfils_once(fw: Framework, mode: VerifyMode) {
    let app = Running::start(fw, Merchant::V3(mode), temp_db("pay-v3")).await;
    let alice = app.login("o-alice").await;
    let order = app.order(&alice, 2).await;
    assert_eq!(order["total_fee"], 1996);
    check_rsa_pay_sign(&app, &order["pay_params"]);
    let no = order["out_trade_no"].as_str().unwrap();
    assert_eq!(app.stored(no).await.api, Api::V3);
    let at_wechat = app.sim().order(no).await.unwrap();
    assert_eq!(at_wechat.protocol, Protocol::V3, "created through /v3");

    app.sim().pay(no).await.unwrap();
    app.wait_state(&alice, no, "PAID").await;
    let (log, ok) = app
        .sim()
        .wait_for_notifies(Duration::from_secs(5), |log| {
            log.iter().any(|a| a.delivered)
        })
        .await;
    assert!(ok, "{log:?}");
    let delivered = log.iter().find(|a| a.delivered).unwrap();
    assert_eq!(delivered.protocol, Protocol::V3);
    assert_eq!(delivered.status, Some(204), "{delivered:?}");
    let stored = app.stored(no).await;
    assert_eq!(
        stored.transaction_id.as_deref().map(str::is_empty),
        Some(false)
    );
    assert_eq!(app.fulfilments.of(no), 1);
    assert_eq!(app.vip_days(&alice).await, 60);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        (app.fulfilments.of(no), app.vip_days(&alice).await),
        (1, 60)
    );
}

pub async fn bad_notifies_change_nothing(fw: Framework) {
    let app = Running::start(fw, Merchant::V3(VerifyMode::PubKey), temp_db("bad-v3")).await;
    let alice = app.login("o-alice").await;
    let no = app.order(&alice, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    let wechat = Wechat::for_appid(&app.sim().v3_merchant().appid);
    let now = chrono::Utc::now().timestamp();
    let good = wechat.payment(&no, 998, now);
    let tx = wechat.transaction(&no, 998);
    let key = wechat.api_v3_key();

    let mut forged = good.clone();
    let other = wechat.payment(&no, 1, now);
    forged.set_header(
        "Wechatpay-Signature",
        other.header("Wechatpay-Signature").unwrap(),
    );
    let mut reserialised = good.clone();
    let v: Value = serde_json::from_slice(&good.body).unwrap();
    reserialised.body = serde_json::to_vec_pretty(&v).unwrap();
    let mut probe = good.clone();
    probe.set_header("Wechatpay-Signature", "WECHATPAY/SIGNTEST/AAAA");
    let mut foreign = tx.clone();
    foreign["mchid"] = "1900000999".into();
    let mut unsigned = good.clone();
    unsigned.headers.retain(|(k, _)| k != "Wechatpay-Signature");
    let mut altered = good.clone();
    let at = altered.body.iter().position(|&b| b == b'E').unwrap();
    altered.body[at] = b'F';
    let other_key = wxpay_core::v3::ApiV3Key::new("anotherApiV3Key0123456789ABCDEFG").unwrap();
    let mut envelope: Value = serde_json::from_slice(&good.body).unwrap();
    let ct = envelope["resource"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if ct.ends_with('A') { 'B' } else { 'A' };
    envelope["resource"]["ciphertext"] = format!("{}{flipped}", &ct[..ct.len() - 1]).into();
    let tampered_tag = wechat.signed(envelope.to_string().into_bytes(), now, false);
    let mut wrong_aad: Value = serde_json::from_slice(
        &wechat
            .notify("TRANSACTION.SUCCESS", &tx, key, "refund", now, false)
            .body,
    )
    .unwrap();
    wrong_aad["resource"]["associated_data"] = "transaction".into();
    let wrong_aad = wechat.signed(wrong_aad.to_string().into_bytes(), now, false);
    let mut wrong_serial = good.clone();
    wrong_serial.set_header(
        "Wechatpay-Serial",
        "5A1B2C3D4E5F60718293A4B5C6D7E8F901234567",
    );
    let mut oversize = wechat.signed(vec![b' '; 1100 * 1024], now, false);
    oversize.body.splice(0..1, *b"{");
    let cases = [
        ("body altered by one byte", altered, 401),
        ("tampered GCM tag", tampered_tag, 500),
        ("wrong associated data", wrong_aad, 500),
        (
            "wrong APIv3 key",
            wechat.notify(
                "TRANSACTION.SUCCESS",
                &tx,
                &other_key,
                "transaction",
                now,
                false,
            ),
            500,
        ),
        (
            "not JSON",
            wechat.signed(b"<xml>x</xml>".to_vec(), now, false),
            400,
        ),
        ("over the size limit", oversize, 413),
        ("a serial WeChat does not use", wrong_serial, 401),
        ("forged signature", forged, 401),
        ("re-serialised body", reserialised, 401),
        ("signature probe", probe, 401),
        ("no signature", unsigned, 401),
        (
            "stale",
            wechat.notify(
                "TRANSACTION.SUCCESS",
                &tx,
                key,
                "transaction",
                now - 301,
                false,
            ),
            401,
        ),
        (
            "from the future",
            wechat.notify(
                "TRANSACTION.SUCCESS",
                &tx,
                key,
                "transaction",
                now + 301,
                false,
            ),
            401,
        ),
        (
            "another merchant",
            wechat.notify(
                "TRANSACTION.SUCCESS",
                &foreign,
                key,
                "transaction",
                now,
                false,
            ),
            400,
        ),
        (
            "unknown order",
            wechat.payment("NO-SUCH-ORDER-1", 998, now),
            404,
        ),
    ];
    let before = app.stored(&no).await;
    for (what, n, status) in cases {
        let (got, body) = app.post_notify_v3(&n).await;
        assert_eq!(got, status, "{what}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
        assert_eq!(v["code"], "FAIL", "{what}");
        let after = app.stored(&no).await;
        assert_eq!(
            (after.state, after.version),
            (before.state, before.version),
            "{what}"
        );
    }
    // Another amount, genuinely signed: refused, flagged, not paid.
    let (got, _) = app.post_notify_v3(&wechat.payment(&no, 1, now)).await;
    assert_eq!(got, 400);
    assert_eq!(app.stored(&no).await.state, OrderState::Prepaid);
    assert_eq!(app.fulfilments.of(&no), 0);

    // The genuine one, five times at once: paid once.
    let deliveries = (0..5).map(|_| app.post_notify_v3(&good));
    let replies = futures::future::join_all(deliveries).await;
    assert!(replies.iter().all(|(s, _)| *s == 204), "{replies:?}");
    assert_eq!(app.stored(&no).await.state, OrderState::Paid);
    assert_eq!(app.fulfilments.of(&no), 1);
    assert_eq!(app.vip_days(&alice).await, 30);
}

/// The simulator rotates its platform certificate: the new one signs
/// answers and notifies from then on; the shop, which downloaded the old
/// one, learns the new one on its first unknown serial and keeps working.
pub async fn survives_a_certificate_rotation(fw: Framework) {
    let app = Running::start(fw, Merchant::V3(VerifyMode::Cert), temp_db("rotate")).await;
    let alice = app.login("o-alice").await;
    let first = app.paid_order(&alice, 1).await;
    let rotation = app.sim().rotate_certificate().await.unwrap();
    assert_ne!(rotation.serial_no, rotation.previous_serial_no);

    let second = app.paid_order(&alice, 1).await;
    // The status poll may have learnt the payment first (by a query, also
    // signed with the new certificate): wait for the notify itself.
    let (log, _) = app
        .sim()
        .wait_for_notifies(Duration::from_secs(10), |log| {
            log.iter().any(|a| a.out_trade_no == second && a.delivered)
        })
        .await;
    let signed_by_new = log.iter().any(|a| {
        a.out_trade_no == second
            && a.delivered
            && a.serial.as_deref() == Some(rotation.serial_no.as_str())
    });
    let summary: Vec<_> = (log.iter())
        .map(|a| (&a.out_trade_no, a.delivered, &a.serial, a.status))
        .collect();
    assert!(
        signed_by_new,
        "the second notify, signed with the new certificate, was taken: {summary:?} ({rotation:?})"
    );
    assert_eq!(
        (app.fulfilments.of(&first), app.fulfilments.of(&second)),
        (1, 1)
    );
    assert_eq!(app.vip_days(&alice).await, 60);
}

/// As a user sets it up (README "API v3"): an external simulator generates
/// every key and writes `wxpay.env` to its keys directory; the shop,
/// without `--sim`, is configured from that file alone. It is paid through
/// a signed, encrypted notify, refunds, refuses a notify signed with keys
/// that are not WeChat's, and (certificate mode) survives a rotation.
pub async fn configured_from_the_keys_dir(fw: Framework, mode: VerifyMode) {
    let app = Running::start_reconciling(
        fw,
        Merchant::KeysDir(mode),
        crate::harness::sqlite_url(&temp_db("keys-dir")),
    )
    .await;
    assert!(app.shop.sim.is_none(), "not an embedded simulator");
    let alice = app.login("o-alice").await;
    let no = app.paid_order(&alice, 1).await;
    let (log, ok) = app
        .sim()
        .wait_for_notifies(Duration::from_secs(10), |log| {
            log.iter().any(|a| a.out_trade_no == no && a.delivered)
        })
        .await;
    assert!(ok, "{log:?}");
    assert!(
        log.iter()
            .any(|a| a.out_trade_no == no && a.status == Some(204))
    );
    assert_eq!(app.fulfilments.of(&no), 1, "on_paid ran once");
    assert_eq!(app.vip_days(&alice).await, 30);

    // Signed with keys that are not this WeChat's: refused, nothing changes.
    let open = app.order(&alice, 1).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.stored(&open).await;
    let foreign = Wechat::for_appid(&app.sim().v3_merchant().appid);
    let (status, _) = app
        .post_notify_v3(&foreign.payment(&open, 998, chrono::Utc::now().timestamp()))
        .await;
    assert_eq!(status, 401);
    let after = app.stored(&open).await;
    assert_eq!((after.state, after.version), (before.state, before.version));

    if mode == VerifyMode::Cert {
        let rotation = app.sim().rotate_certificate().await.unwrap();
        let again = app.paid_order(&alice, 1).await;
        let (log, _) = app
            .sim()
            .wait_for_notifies(Duration::from_secs(10), |log| {
                log.iter().any(|a| a.out_trade_no == again && a.delivered)
            })
            .await;
        assert!(
            log.iter().any(|a| a.out_trade_no == again
                && a.delivered
                && a.serial.as_deref() == Some(rotation.serial_no.as_str())),
            "signed by the new certificate and taken"
        );
        assert_eq!(app.vip_days(&alice).await, 60);
    }

    // A refund: accepted through /v3/refund/domestic/refunds, settled by its notify.
    let (status, r) = app
        .post_json(
            &format!("/pay/admin/orders/{no}/refund"),
            Some(crate::harness::ADMIN_TOKEN),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let v = app
        .wait_admin(&no, "REFUNDED", |v| v["state"] == "REFUNDED")
        .await;
    assert_eq!(v["refunded_fee"], 998, "{v}");
}
