//! jscode2session and login codes.

use crate::common::*;

async fn exchange(env: &Env, appid: &str, secret: &str, code: &str) -> serde_json::Value {
    let r = env
        .http
        .get(env.url("/sns/jscode2session"))
        .query(&[
            ("appid", appid),
            ("secret", secret),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // JSON, whatever the content type says.
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn codes_are_single_use_and_credentials_checked() {
    let env = Env::start().await;
    let (appid, secret) = (
        env.cfg.appid.clone(),
        env.cfg.app_secret.expose().to_owned(),
    );
    let code = env.sim.login("oUser1").await;
    let other = env.sim.login("oUser2").await;
    assert_ne!(code, other);

    // Wrong credentials do not consume the code.
    let v = exchange(&env, "wx0000000000000000", &secret, &code).await;
    assert_eq!(v["errcode"], 40013);
    let v = exchange(&env, &appid, "wrongsecret", &code).await;
    assert_eq!(v["errcode"], 40125);
    assert!(v["errmsg"].as_str().unwrap().contains("invalid appsecret"));

    let v = exchange(&env, &appid, &secret, &code).await;
    assert!(v.get("errcode").is_none(), "{v}");
    assert_eq!(v["openid"], "oUser1");
    assert_eq!(v["session_key"].as_str().unwrap().len(), 24);
    assert!(v.get("unionid").is_none());

    let v = exchange(&env, &appid, &secret, &code).await;
    assert_eq!(v["errcode"], 40163);
    let v = exchange(&env, &appid, &secret, "never-minted").await;
    assert_eq!(v["errcode"], 40029);

    let v = exchange(&env, &appid, &secret, &other).await;
    assert_eq!(v["openid"], "oUser2");

    let u = env.sim.login_with_unionid("oUser3", "uUnion3").await;
    let v = exchange(&env, &appid, &secret, &u).await;
    assert_eq!(v["unionid"], "uUnion3");
}

#[tokio::test]
async fn login_over_the_control_api() {
    let env = Env::start().await;
    let r: serde_json::Value = env
        .http
        .post(env.url("/sim/login"))
        .json(&serde_json::json!({ "openid": "oHttp" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = r["code"].as_str().unwrap().to_owned();
    let v = exchange(&env, &env.cfg.appid, env.cfg.app_secret.expose(), &code).await;
    assert_eq!(v["openid"], "oHttp");
}
