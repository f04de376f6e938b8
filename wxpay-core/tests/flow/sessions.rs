//! Sign-in sessions and owners' order lists, through `Payments`.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wxpay_core::{
    Fen,
    flow::{http::HttpIn, *},
    testkit::check_session_store,
};

use crate::stub::Stub;

/// Prices from the catalog; the payer is the signed-in user and nobody else.
struct Shop;

#[async_trait]
impl Checkout for Shop {
    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        let openid = req
            .user()
            .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        Ok(OrderDraft::jsapi(openid, "Shop-VIP", Fen(990)).with_owner(openid))
    }
}

struct World {
    _stub: Stub,
    orders: Arc<MemoryStore>,
    sessions: Arc<MemorySessions>,
    payments: Payments,
}

async fn world_with(ttl: Duration) -> World {
    let stub = Stub::start(wxpay_core::SignType::Md5).await;
    let orders = Arc::new(MemoryStore::new());
    let sessions = Arc::new(MemorySessions::new());
    let payments = Payments::builder(stub.config.clone())
        .store(orders.clone())
        .sessions(sessions.clone())
        .session_ttl(ttl)
        .checkout(Shop)
        .build()
        .unwrap();
    World {
        _stub: stub,
        orders,
        sessions,
        payments,
    }
}

async fn world() -> World {
    world_with(Duration::from_secs(3600)).await
}

fn bearer(signed: &SignIn) -> String {
    format!("Bearer {}", signed.token.expose())
}

#[tokio::test]
async fn memory_sessions_keep_the_session_store_contract() {
    check_session_store(Arc::new(MemorySessions::new())).await;
}

#[tokio::test]
async fn sign_in_hands_out_a_token_that_names_the_user() {
    let w = world().await;
    let before = Utc::now();
    let signed = w.payments.sign_in("alice").await.unwrap();
    assert_eq!(signed.session.openid, "o-alice");
    let shown = format!("{signed:?}");
    assert!(!shown.contains(signed.token.expose()), "{shown}");
    assert!(!shown.contains("c2Vzc2lvbmtleQ"), "{shown}");

    let user = w.payments.signed_in(Some(&bearer(&signed))).await.unwrap();
    let user = user.expect("a fresh token works");
    assert_eq!(user.openid, "o-alice");
    assert_eq!(user.unionid.as_deref(), Some("u-1"));
    assert!(user.created_at >= before - chrono::Duration::seconds(1));
    assert_eq!(user.expires_at, signed.expires_at);
    assert_eq!(
        user.expires_at - user.created_at,
        chrono::Duration::hours(1)
    );

    // The store holds the hash of the token, not the token.
    assert_eq!(user.token_hash, TokenHash::of(&signed.token));
    assert!(!format!("{user:?}").contains(signed.token.expose()));

    // A second sign-in is a second token for the same user.
    let again = w.payments.sign_in("alice").await.unwrap();
    assert_ne!(again.token, signed.token);
    let user = w.payments.signed_in(Some(&bearer(&again))).await.unwrap();
    assert_eq!(user.unwrap().openid, "o-alice");
}

#[tokio::test]
async fn only_a_live_bearer_token_signs_in() {
    let w = world().await;
    let signed = w.payments.sign_in("alice").await.unwrap();
    let token = signed.token.expose();
    for header in [
        None,
        Some(String::new()),
        Some(token.to_owned()),           // no scheme
        Some(format!("Basic {token}")),   // another scheme
        Some(format!("Bearer {token}x")), // another token
        Some("Bearer ".to_owned() + &"A".repeat(43)),
    ] {
        let found = w.payments.signed_in(header.as_deref()).await.unwrap();
        assert!(found.is_none(), "{header:?} signed in as {found:?}");
    }
    let lower = format!("bearer {token}");
    assert!(w.payments.signed_in(Some(&lower)).await.unwrap().is_some());
}

#[tokio::test]
async fn expired_tokens_stop_working_and_the_reconciler_purges_them() {
    let w = world_with(Duration::ZERO).await;
    let signed = w.payments.sign_in("alice").await.unwrap();
    let hash = TokenHash::of(&signed.token);
    assert!(
        w.sessions.get_session(&hash).await.unwrap().is_some(),
        "stored"
    );
    let found = w.payments.signed_in(Some(&bearer(&signed))).await.unwrap();
    assert!(found.is_none(), "an expired token works: {found:?}");

    let report = w
        .payments
        .reconciler(Duration::from_secs(60))
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sessions_purged, 1);
    assert!(
        w.sessions.get_session(&hash).await.unwrap().is_none(),
        "purged"
    );
}

#[tokio::test]
async fn sign_out_ends_the_session_at_once() {
    let w = world().await;
    let signed = w.payments.sign_in("alice").await.unwrap();
    let other = w.payments.sign_in("alice").await.unwrap();
    assert!(w.payments.sign_out(Some(&bearer(&signed))).await.unwrap());
    assert!(
        w.payments
            .signed_in(Some(&bearer(&signed)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!w.payments.sign_out(Some(&bearer(&signed))).await.unwrap());
    // other sessions of the same user are untouched
    assert!(
        w.payments
            .signed_in(Some(&bearer(&other)))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn without_a_session_store_sessions_are_a_clear_server_error() {
    let stub = Stub::start(wxpay_core::SignType::Md5).await;
    let payments = Payments::builder(stub.config.clone())
        .checkout(Shop)
        .build()
        .unwrap();
    let e = payments.sign_in("alice").await.unwrap_err();
    assert!(matches!(e, PaymentsError::Unconfigured(_)), "{e:?}");
    assert_eq!(e.http_status(), 500);
    assert!(e.to_string().contains("PaymentsBuilder::sessions"), "{e}");
    assert!(matches!(
        payments.signed_in(Some("Bearer x")).await,
        Err(PaymentsError::Unconfigured(_))
    ));
    // Checkout looks nothing up: the request has no user, the app says 401.
    let req = CheckoutRequest::new("{}").with_header("Authorization", "Bearer x");
    let e = payments.checkout(req).await.unwrap_err();
    assert_eq!(e.http_status(), 401);
}

async fn route(
    w: &World,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = HttpIn::new(method, path, b"{}".to_vec());
    if let Some(auth) = auth {
        req = req.with_header("Authorization", auth);
    }
    let out = http::handle(&w.payments, req).await;
    (out.status, serde_json::from_slice(&out.body).unwrap())
}

#[tokio::test]
async fn the_routes_know_the_signed_in_user() {
    let w = world().await;
    let alice = bearer(&w.payments.sign_in("alice").await.unwrap());
    let bob = bearer(&w.payments.sign_in("bob").await.unwrap());

    let (status, created) = route(&w, "POST", "/orders", Some(&alice)).await;
    assert_eq!(status, 201, "{created}");
    let no = created["out_trade_no"].as_str().unwrap().to_owned();
    let order = w.payments.order(&no.parse().unwrap()).await.unwrap();
    assert_eq!(
        order.openid.as_deref(),
        Some("o-alice"),
        "the payer is the session's user"
    );
    assert_eq!(order.owner.as_deref(), Some("o-alice"));

    let path = format!("/orders/{no}");
    assert_eq!(route(&w, "GET", &path, Some(&alice)).await.0, 200);
    // another user, a bad token and no token do not see it
    assert_eq!(route(&w, "GET", &path, Some(&bob)).await.0, 404);
    assert_eq!(route(&w, "GET", &path, Some("Bearer nope")).await.0, 404);
    assert_eq!(route(&w, "GET", &path, None).await.0, 404);
    assert_eq!(
        route(&w, "POST", &format!("{path}/close"), Some(&bob))
            .await
            .0,
        404
    );

    // without a live session, checkout is refused and nothing is stored
    let stored = w.orders.len();
    for auth in [None, Some("Bearer nope")] {
        let (status, body) = route(&w, "POST", "/orders", auth).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(w.orders.len(), stored);
}

#[tokio::test]
async fn the_sign_in_route_maps_wechat_refusals_and_stores_nothing_for_them() {
    let w = world().await;
    for (code, status, error) in [
        ("err40029", 401, "unauthorized"),
        ("err40163", 401, "unauthorized"),
        ("err45011", 429, "too_many_requests"),
        ("err-1", 502, "upstream_error"),
    ] {
        let body = serde_json::json!({ "code": code }).to_string();
        let out = http::handle(
            &w.payments,
            HttpIn::new("POST", "/sign-in", body.into_bytes()),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            (out.status, v["error"].as_str()),
            (status, Some(error)),
            "{code}: {v}"
        );
    }
    let far = Utc::now() + chrono::Duration::days(3650);
    assert_eq!(
        w.sessions.purge_expired_sessions(far).await.unwrap(),
        0,
        "refused sign-ins keep no session"
    );

    let out = http::handle(
        &w.payments,
        HttpIn::new("POST", "/sign-in", br#"{"code":"alice"}"#.to_vec()),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(
        (out.status, &v["openid"]),
        (200, &serde_json::json!("o-alice")),
        "{v}"
    );
    let bearer = format!("Bearer {}", v["token"].as_str().unwrap());
    let user = w.payments.signed_in(Some(&bearer)).await.unwrap().unwrap();
    assert_eq!(
        user.expires_at.timestamp(),
        v["expires_at"].as_i64().unwrap()
    );
}

/// A session store whose backend is down.
struct Down;

#[async_trait]
impl SessionStore for Down {
    async fn put_session(&self, _: &SessionRecord) -> Result<(), StoreError> {
        Err(StoreError::backend(std::io::Error::other("db down")))
    }
    async fn get_session(&self, _: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        Err(StoreError::backend(std::io::Error::other("db down")))
    }
    async fn remove_session(&self, _: &TokenHash) -> Result<(), StoreError> {
        Err(StoreError::backend(std::io::Error::other("db down")))
    }
    async fn purge_expired_sessions(&self, _: DateTime<Utc>) -> Result<u64, StoreError> {
        Err(StoreError::backend(std::io::Error::other("db down")))
    }
}

#[tokio::test]
async fn a_failing_session_store_is_a_500_and_creates_nothing() {
    let stub = Stub::start(wxpay_core::SignType::Md5).await;
    let orders = Arc::new(MemoryStore::new());
    let payments = Payments::builder(stub.config.clone())
        .store(orders.clone())
        .sessions(Arc::new(Down))
        .checkout(Shop)
        .build()
        .unwrap();
    let e = payments.sign_in("alice").await.unwrap_err();
    assert!(matches!(e, PaymentsError::Store(_)), "{e:?}");
    let req = CheckoutRequest::new("{}").with_header("Authorization", "Bearer x");
    let e = payments.checkout(req).await.unwrap_err();
    assert!(matches!(e, PaymentsError::Store(_)), "{e:?}");
    assert_eq!(e.http_status(), 500);
    assert!(orders.is_empty());
    let report = payments
        .reconciler(Duration::from_secs(60))
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.errors, 1, "the failed purge is counted");
}

#[tokio::test]
async fn orders_of_lists_an_owners_orders_newest_first() {
    let w = world().await;
    let mut alice = Vec::new();
    for _ in 0..3 {
        let req = CheckoutRequest::new("{}").with_user("o-alice");
        alice.push(w.payments.checkout(req).await.unwrap().out_trade_no);
        // created_at differs between orders
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let req = CheckoutRequest::new("{}").with_user("o-bob");
    let bob = w.payments.checkout(req).await.unwrap().out_trade_no;

    let nos =
        |orders: Vec<Order>| -> Vec<_> { orders.into_iter().map(|o| o.out_trade_no).collect() };
    let found = nos(w.payments.orders_of("o-alice", 10).await.unwrap());
    alice.reverse();
    assert_eq!(found, alice);
    assert_eq!(
        nos(w.payments.orders_of("o-alice", 2).await.unwrap()),
        alice[..2]
    );
    assert_eq!(nos(w.payments.orders_of("o-bob", 10).await.unwrap()), [bob]);
    assert!(
        w.payments
            .orders_of("o-carol", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An order store without the listing capability.
struct NoListing(MemoryStore);

#[async_trait]
impl OrderStore for NoListing {
    async fn insert(&self, order: &Order) -> Result<(), StoreError> {
        self.0.insert(order).await
    }
    async fn get(&self, no: &wxpay_core::OutTradeNo) -> Result<Option<Order>, StoreError> {
        self.0.get(no).await
    }
    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        self.0.transition(t).await
    }
    async fn claim_fulfilment(
        &self,
        no: &wxpay_core::OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<wxpay_core::flow::Claim>, StoreError> {
        self.0.claim_fulfilment(no, now, lease).await
    }
    async fn complete_fulfilment(
        &self,
        no: &wxpay_core::OutTradeNo,
        claim: wxpay_core::flow::Claim,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.0.complete_fulfilment(no, claim, at).await
    }
}

#[tokio::test]
async fn orders_of_needs_a_store_that_lists() {
    let stub = Stub::start(wxpay_core::SignType::Md5).await;
    let payments = Payments::builder(stub.config.clone())
        .store(Arc::new(NoListing(MemoryStore::new())))
        .build()
        .unwrap();
    let e = payments.orders_of("o-alice", 10).await.unwrap_err();
    assert!(matches!(e, PaymentsError::Unconfigured(_)), "{e:?}");
}

/// With a sign-in rate limit, a client past its burst gets 429 with
/// `retry_after`, WeChat is not asked, and other clients are not affected.
#[tokio::test]
async fn the_sign_in_route_limits_each_client() {
    let stub = Stub::start(wxpay_core::SignType::Md5).await;
    let payments = Payments::builder(stub.config.clone())
        .sessions(Arc::new(MemorySessions::new()))
        .sign_in_rate_limit(RateLimit {
            burst: 2,
            every: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    let sign_in = |ip: &str, code: &str| {
        let body = serde_json::json!({ "code": code }).to_string();
        http::handle(
            &payments,
            HttpIn::new("POST", "/sign-in", body.into_bytes()).with_client_ip(ip),
        )
    };
    assert_eq!(sign_in("10.0.0.1", "a1").await.status, 200);
    assert_eq!(sign_in("10.0.0.1", "a2").await.status, 200);
    // A code WeChat would refuse (401): refused here first, so WeChat is
    // not asked.
    let refused = sign_in("10.0.0.1", "err40029").await;
    let v: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(
        (refused.status, &v["error"]),
        (429, &serde_json::json!("too_many_requests"))
    );
    assert!(v["retry_after"].as_u64().unwrap() > 3500, "{v}");
    assert_eq!(
        sign_in("10.0.0.2", "b1").await.status,
        200,
        "another client"
    );
    // A malformed body is refused before the limit is counted.
    let junk = http::handle(
        &payments,
        HttpIn::new("POST", "/sign-in", b"nope".to_vec()).with_client_ip("10.0.0.3"),
    )
    .await;
    assert_eq!(junk.status, 400);
    assert_eq!(sign_in("10.0.0.3", "c1").await.status, 200);
    assert_eq!(sign_in("10.0.0.3", "c2").await.status, 200);
}
