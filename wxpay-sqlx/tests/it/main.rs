//! wxpay-sqlx against real databases: SQLite always, PostgreSQL when
//! `WXPAY_TEST_POSTGRES_URL` is set, MySQL/MariaDB when `WXPAY_TEST_MYSQL_URL`
//! is set. Every test gets a database (file, schema, database) of its own.

mod fixture;
mod ledger;
mod upgrade;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use fixture::Fixture;
#[cfg(feature = "mysql")]
use fixture::MYSQL_ENV;
#[cfg(feature = "postgres")]
use fixture::POSTGRES_ENV;
use wxpay_core::{
    Fen, OutTradeNo, SessionToken, SignType, TradeType,
    flow::{
        Attention, AttentionKind, Claim, Fulfilment, ListFilter, Order, OrderPatch, OrderState,
        OrderStore, Refund, RefundSource, RefundState, SessionRecord, StoreError, TokenHash,
        Transition, TransitionOutcome,
    },
    testkit::{check_order_store, check_session_store},
};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use wxpay_sqlx::DatabaseKind;
use wxpay_sqlx::SqlxStore;

fn no(s: &str) -> OutTradeNo {
    OutTradeNo::new(s).unwrap()
}

/// A time with nanoseconds, which the store keeps exactly.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::nanoseconds(123_456_789)
}

fn order(n: &str) -> Order {
    Order::new(
        no(n),
        Fen(100),
        "咖啡",
        TradeType::Jsapi,
        SignType::Md5,
        t0(),
    )
}

/// CREATED (version 0, as [`order`] is) → PAID.
fn pay(n: &str, tx: &str) -> Transition {
    Transition {
        out_trade_no: no(n),
        from: OrderState::Created,
        version: 0,
        to: OrderState::Paid,
        patch: OrderPatch {
            transaction_id: Some(Some(tx.to_owned())),
            ..OrderPatch::default()
        },
        at: t0() + chrono::Duration::seconds(1),
    }
}

fn is_backend(r: Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(r, Err(StoreError::Backend(_)))
}

/// The store as a session store. (`SessionStore` is not imported: its `get`
/// would make `OrderStore::get` ambiguous on `SqlxStore`.)
fn sessions(s: &SqlxStore) -> Arc<dyn wxpay_core::flow::SessionStore> {
    Arc::new(s.clone())
}

fn token(t: &str) -> TokenHash {
    TokenHash::of(&SessionToken::new(t))
}

/// A session with nanosecond times, which the store keeps exactly.
fn session(t: &str, unionid: Option<&str>) -> SessionRecord {
    SessionRecord::new(
        token(t),
        format!("o-{t}-用户"),
        unionid.map(str::to_owned),
        t0(),
        t0() + chrono::Duration::days(7) + chrono::Duration::nanoseconds(1),
    )
}

/// Races `n` PREPAID → PAID transitions of one order, alternating between
/// `stores`; answers the outcomes.
async fn race(stores: &[SqlxStore], n: usize, order_no: &str) -> Vec<TransitionOutcome> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let barrier = barrier.clone();
            let t = pay(order_no, &format!("TX{i}"));
            tokio::spawn(async move {
                barrier.wait().await;
                store.transition(&t).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    outcomes
}

fn exactly_one_winner(outcomes: &[TransitionOutcome]) {
    let winners: Vec<&Order> = outcomes
        .iter()
        .filter_map(|o| match o {
            TransitionOutcome::Applied(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "exactly one transition may apply");
    for o in outcomes {
        match o {
            TransitionOutcome::NotApplied(o) => {
                assert_eq!(o.state, OrderState::Paid);
                assert_eq!(o.transaction_id, winners[0].transaction_id);
            }
            TransitionOutcome::Applied(_) => {}
            TransitionOutcome::NotFound => panic!("NotFound for an existing order"),
        }
    }
}

/// Counts `on_paid` runs.
struct CountPaid(Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl wxpay_core::flow::PaymentEvents for CountPaid {
    async fn on_paid(&self, _order: &Order) -> Result<(), wxpay_core::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // long enough for the other instance's notifies to arrive meanwhile
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

macro_rules! backend_tests {
    ($($backend:ident),*) => {$(
        mod $backend {
            use super::*;

            async fn fixture() -> Option<Fixture> {
                Fixture::$backend().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn conformance_kit() {
                let Some(fx) = fixture().await else { return };
                check_order_store(Arc::new(fx.store.clone())).await;
                // Twice on one database: the kit uses fresh numbers.
                check_order_store(Arc::new(fx.store.clone())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn session_conformance_kit() {
                let Some(fx) = fixture().await else { return };
                check_session_store(sessions(&fx.store)).await;
                // Again, and from another instance: the kit uses fresh tokens.
                check_session_store(sessions(&fx.another_instance().await)).await;
            }

            #[tokio::test]
            async fn sessions_roundtrip_across_instances() {
                let Some(fx) = fixture().await else { return };
                let (a, b) = (sessions(&fx.store), sessions(&fx.another_instance().await));
                let full = session("full", Some("union-1"));
                let bare = session("bare", None);
                a.put_session(&full).await.unwrap();
                a.put_session(&bare).await.unwrap();
                assert_eq!(b.get_session(&full.token_hash).await.unwrap().as_ref(), Some(&full));
                assert_eq!(b.get_session(&bare.token_hash).await.unwrap().as_ref(), Some(&bare));
                assert_eq!(b.get_session(&token("absent")).await.unwrap(), None);
                // The same hash twice is refused, not overwritten.
                assert!(is_backend(a.put_session(&session("full", None)).await));
                assert_eq!(a.get_session(&full.token_hash).await.unwrap().as_ref(), Some(&full));
                // The purge bound is inclusive, to the nanosecond.
                let at = full.expires_at;
                assert_eq!(b.purge_expired_sessions(at - chrono::Duration::nanoseconds(1)).await.unwrap(), 0);
                assert_eq!(b.purge_expired_sessions(at).await.unwrap(), 2);
                assert_eq!(a.get_session(&full.token_hash).await.unwrap(), None);
                b.remove_session(&full.token_hash).await.unwrap();
                // Orders and sessions are separate tables.
                assert_eq!(fx.store.get(&no("full")).await.unwrap(), None);
            }

            #[tokio::test]
            async fn every_field_roundtrips_with_nanoseconds() {
                let Some(fx) = fixture().await else { return };
                let s = &fx.store;
                let mut full = order("full");
                full.trade_type = TradeType::Other("FUTURE_TYPE".into());
                full.sign_type = SignType::HmacSha256;
                full.openid = Some("o1".into());
                full.product_id = Some("p1".into());
                full.attach = Some(String::new());
                full.owner = Some("u".into());
                full.prepay_id = Some("wx1".into());
                full.code_url = Some("weixin://x".into());
                full.prepay_expires_at = Some(t0() + chrono::Duration::nanoseconds(1));
                full.transaction_id = Some("42".into());
                full.time_end = Some("20250102110405".into());
                full.bank_type = Some("CMB_DEBIT".into());
                full.cash_fee = Some(Fen(0));
                full.refunded_fee = Fen(i64::MAX as u64);
                full.refunds = vec![Refund {
                    refund_id: Some("503".into()),
                    effect: Fulfilment::Held,
                    ..Refund::new("R", Fen(1), RefundState::Abnormal, RefundSource::Found, t0())
                }];
                full.attention = vec![
                    Attention::new(AttentionKind::RefundAbnormal, "看一下", t0()),
                    Attention::new(AttentionKind::Other, "", t0() + chrono::Duration::nanoseconds(3)),
                ];
                full.version = 7;
                full.fulfilment = Fulfilment::Claimed { until: t0() + chrono::Duration::nanoseconds(7) };
                full.synced_at = Some(t0() - chrono::Duration::days(365 * 40));
                let mut done = order("done");
                done.fulfilment = Fulfilment::Done { at: t0() };
                let minimal = order("minimal");
                for o in [&full, &done, &minimal] {
                    s.insert(o).await.unwrap();
                    assert_eq!(s.get(&o.out_trade_no).await.unwrap().as_ref(), Some(o));
                }
                assert!(matches!(s.insert(&minimal).await, Err(StoreError::Duplicate(n)) if n == minimal.out_trade_no));
                assert_eq!(s.get(&no("absent")).await.unwrap(), None);
            }

            #[tokio::test]
            async fn order_numbers_are_case_sensitive() {
                let Some(fx) = fixture().await else { return };
                fx.store.insert(&order("Abc1")).await.unwrap();
                fx.store.insert(&order("abc1")).await.unwrap();
                assert!(matches!(fx.store.transition(&pay("ABC1", "x")).await.unwrap(), TransitionOutcome::NotFound));
            }

            #[tokio::test]
            async fn compare_and_set() {
                let Some(fx) = fixture().await else { return };
                let s = &fx.store;
                s.insert(&order("cas")).await.unwrap();
                let TransitionOutcome::Applied(paid) = s.transition(&pay("cas", "T1")).await.unwrap() else {
                    panic!("first transition must apply");
                };
                let mut want = order("cas");
                let t = pay("cas", "T1");
                want.apply(t.to, &t.patch, t.at);
                assert_eq!(paid, want);
                assert_eq!(s.transition(&pay("cas", "T2")).await.unwrap(), TransitionOutcome::NotApplied(want));
                assert_eq!(s.transition(&pay("nope", "T3")).await.unwrap(), TransitionOutcome::NotFound);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_transitions_one_applies() {
                let Some(fx) = fixture().await else { return };
                fx.store.insert(&order("race")).await.unwrap();
                exactly_one_winner(&race(std::slice::from_ref(&fx.store), 50, "race").await);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn two_instances_thirty_concurrent_transitions_one_applies() {
                let Some(fx) = fixture().await else { return };
                let other = fx.another_instance().await;
                fx.store.insert(&order("multi")).await.unwrap();
                exactly_one_winner(&race(&[fx.store.clone(), other], 30, "multi").await);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn two_payments_instances_thirty_duplicate_notifies_one_on_paid() {
                let Some(fx) = fixture().await else { return };
                let config = wxpay_core::Config::new(
                    "wx5f6d3e2c1b0a9f8e",
                    "1900000109",
                    wxpay_core::ApiKey::new("multi-instance-test-api-key-0001"),
                );
                let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let instance = |store: SqlxStore| {
                    wxpay_core::flow::Payments::builder(config.clone())
                        .store(Arc::new(store))
                        .events(CountPaid(runs.clone()))
                        .build()
                        .unwrap()
                };
                let (a, b) = (instance(fx.store.clone()), instance(fx.another_instance().await));
                let mut o = order("twoapps");
                o.state = OrderState::Prepaid;
                o.fulfilment = Fulfilment::Pending;
                fx.store.insert(&o).await.unwrap();
                let body = wxpay_core::testkit::signed_payment_notify(&config, &o, "4200000000000000000000000030");
                let tasks: Vec<_> = (0..30)
                    .map(|i| {
                        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
                        let body = body.clone();
                        tokio::spawn(async move { app.handle_notify(body.as_bytes()).await })
                    })
                    .collect();
                for t in tasks {
                    let reply = t.await.unwrap();
                    assert!(reply.is_success(), "{reply:?}");
                }
                assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1, "on_paid runs once");
                let stored = fx.store.get(&o.out_trade_no).await.unwrap().unwrap();
                assert_eq!(stored.state, OrderState::Paid);
                assert!(matches!(stored.fulfilment, Fulfilment::Done { .. }));
            }

            #[tokio::test]
            async fn fulfilment_claims_and_leases() {
                let Some(fx) = fixture().await else { return };
                let (s, other) = (&fx.store, fx.another_instance().await);
                let mut o = order("ful");
                o.state = OrderState::Paid;
                s.insert(&o).await.unwrap();
                let lease = Duration::from_secs(30);
                let now = t0();
                let end = now + chrono::Duration::seconds(30);
                assert_eq!(s.claim_fulfilment(&o.out_trade_no, now, lease).await.unwrap(), Some(Claim { until: end }));
                assert_eq!(other.claim_fulfilment(&o.out_trade_no, now, lease).await.unwrap(), None);
                // The lease ends at now + 30 s; it is free only after that.
                assert_eq!(other.claim_fulfilment(&o.out_trade_no, end, lease).await.unwrap(), None);
                let after = end + chrono::Duration::nanoseconds(1);
                let claim = other.claim_fulfilment(&o.out_trade_no, after, lease).await.unwrap().unwrap();
                assert!(other.complete_fulfilment(&o.out_trade_no, claim, after).await.unwrap());
                let done = s.get(&o.out_trade_no).await.unwrap().unwrap();
                assert_eq!(done.fulfilment, Fulfilment::Done { at: after });
                // Every claim and completion is a change.
                assert_eq!(done.version, o.version + 3);
                assert_eq!(s.claim_fulfilment(&o.out_trade_no, after + chrono::Duration::days(9), lease).await.unwrap(), None);
                assert_eq!(s.claim_fulfilment(&no("absent"), now, lease).await.unwrap(), None);
                assert!(!s.complete_fulfilment(&no("absent"), claim, now).await.unwrap());
            }

            #[tokio::test]
            async fn listing() {
                let Some(fx) = fixture().await else { return };
                let s = &fx.store;
                for (i, state) in [OrderState::Prepaid, OrderState::Paid, OrderState::Prepaid, OrderState::Refunded].into_iter().enumerate() {
                    let mut o = order(&format!("L{i}"));
                    o.state = state;
                    o.updated_at = t0() - chrono::Duration::seconds(i as i64);
                    s.insert(&o).await.unwrap();
                }
                let listing = s.listing().unwrap();
                let names = |v: Vec<Order>| v.into_iter().map(|o| o.out_trade_no.to_string()).collect::<Vec<_>>();
                let filter = ListFilter { states: vec![OrderState::Prepaid, OrderState::Refunded], updated_before: t0(), limit: 10 };
                assert_eq!(names(listing.list(&filter).await.unwrap()), ["L3", "L2", "L0"]);
                let filter = ListFilter { updated_before: t0() - chrono::Duration::seconds(1), limit: 1, ..filter };
                assert_eq!(names(listing.list(&filter).await.unwrap()), ["L3"]);
                assert!(listing.list(&ListFilter { states: vec![], ..filter }).await.unwrap().is_empty());
                // Only PAID orders' own fulfilment (L3 is refunded, without ledger).
                assert_eq!(names(listing.unfulfilled(t0(), 10).await.unwrap()), ["L1"]);
                assert!(listing.unfulfilled(t0(), 0).await.unwrap().is_empty());
                let mut mine = order("L4");
                mine.owner = Some("me".into());
                s.insert(&mine).await.unwrap();
                assert_eq!(names(listing.owned_by("me", 10).await.unwrap()), ["L4"]);
                assert!(listing.owned_by("me", 0).await.unwrap().is_empty());
                // Exactly the owner: not another case, not trailing spaces
                // (which MySQL's default collations ignore).
                assert!(listing.owned_by("Me", 10).await.unwrap().is_empty());
                assert!(listing.owned_by("me ", 10).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn a_new_pool_sees_the_data_after_a_restart() {
                let Some(fx) = fixture().await else { return };
                fx.store.insert(&order("kept")).await.unwrap();
                fx.store.close().await;
                let restarted = fx.another_instance().await;
                assert_eq!(restarted.get(&no("kept")).await.unwrap(), Some(order("kept")));
            }

            #[tokio::test]
            async fn a_lost_connection_is_a_backend_error() {
                let Some(fx) = fixture().await else { return };
                let s = &fx.store;
                s.insert(&order("lost")).await.unwrap();
                s.close().await;
                let n = no("lost");
                assert!(is_backend(s.insert(&order("lost2")).await));
                assert!(is_backend(s.get(&n).await));
                assert!(is_backend(s.transition(&pay("lost", "T")).await));
                assert!(is_backend(s.claim_fulfilment(&n, t0(), Duration::from_secs(1)).await));
                assert!(is_backend(s.complete_fulfilment(&n, Claim { until: t0() }, t0()).await));
                assert!(is_backend(s.listing().unwrap().unfulfilled(t0(), 1).await));
                assert!(is_backend(s.listing().unwrap().owned_by("u", 1).await));
                let ss = sessions(s);
                assert!(is_backend(ss.put_session(&session("lost", None)).await));
                assert!(is_backend(ss.get_session(&token("lost")).await));
                assert!(is_backend(ss.remove_session(&token("lost")).await));
                assert!(is_backend(ss.purge_expired_sessions(t0()).await));
                // Nothing was half-applied.
                let again = fx.another_instance().await;
                assert_eq!(again.get(&n).await.unwrap(), Some(order("lost")));
            }

            #[tokio::test]
            async fn unstorable_values_are_refused_before_writing() {
                let Some(fx) = fixture().await else { return };
                let mut o = order("huge");
                o.total_fee = Fen(u64::MAX);
                match fx.store.insert(&o).await {
                    // UnstorableValue's message.
                    Err(StoreError::Invalid(e)) => assert!(e.contains("`total_fee` is out of the range"), "{e}"),
                    other => panic!("expected an Invalid error, got {other:?}"),
                }
                assert_eq!(fx.store.get(&o.out_trade_no).await.unwrap(), None);
            }

            #[tokio::test]
            async fn a_corrupt_row_is_reported() {
                let Some(fx) = fixture().await else { return };
                fx.store.insert(&order("bad")).await.unwrap();
                fx.raw("UPDATE wxpay_orders SET state = 'BOGUS' WHERE out_trade_no = 'bad'").await;
                assert!(matches!(fx.store.get(&no("bad")).await, Err(StoreError::Corrupt(m)) if m.contains("BOGUS")));
            }

            #[tokio::test]
            async fn migrations_are_idempotent_and_optional() {
                let Some(fx) = fixture().await else { return };
                assert_eq!(fx.store.table_name(), "wxpay_orders");
                assert_eq!(fx.store.sessions_table_name(), "wxpay_sessions");
                let manual = fx.another_instance().await.with_table_prefix("manual_").unwrap().auto_migrate(false);
                assert_eq!(manual.table_name(), "manual_wxpay_orders");
                assert_eq!(manual.sessions_table_name(), "manual_wxpay_sessions");
                // No tables yet, and the store was told not to create them.
                assert!(is_backend(manual.get(&no("x")).await));
                assert!(is_backend(sessions(&manual).get_session(&token("x")).await));
                manual.migrate().await.unwrap();
                manual.migrate().await.unwrap();
                manual.insert(&order("x")).await.unwrap();
                // The default table is a different one.
                assert_eq!(fx.store.get(&no("x")).await.unwrap(), None);
                // Sessions too: they go to `manual_wxpay_sessions`.
                let x = session("x", None);
                sessions(&manual).put_session(&x).await.unwrap();
                assert_eq!(sessions(&fx.store).get_session(&x.token_hash).await.unwrap(), None);
                assert_eq!(sessions(&manual).get_session(&x.token_hash).await.unwrap(), Some(x.clone()));
                fx.raw(&format!("DELETE FROM manual_wxpay_sessions WHERE token_hash = '{}'", x.token_hash.to_hex())).await;
                assert_eq!(sessions(&manual).get_session(&x.token_hash).await.unwrap(), None);
                // A session call is a first use too: it creates both tables.
                let first = fx.another_instance().await.with_table_prefix("first_").unwrap();
                sessions(&first).put_session(&x).await.unwrap();
                fx.raw("DELETE FROM first_wxpay_sessions").await;
                fx.raw("DELETE FROM first_wxpay_orders").await;
                // A new prefix resets the migration state: the store with
                // the default tables migrated, the prefixed ones do not exist.
                let default = fx.another_instance().await;
                default.migrate().await.unwrap();
                let renamed = default.with_table_prefix("renamed_").unwrap();
                assert_eq!(sessions(&renamed).get_session(&x.token_hash).await.unwrap(), None);
                fx.raw("DELETE FROM renamed_wxpay_sessions").await;
                // Concurrent first use by several instances.
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let s = fx.another_instance().await.with_table_prefix("concurrent_").unwrap();
                    tasks.push(tokio::spawn(async move { s.get(&no("y")).await }));
                }
                for t in tasks {
                    assert_eq!(t.await.unwrap().unwrap(), None);
                }
                // The same, when the first use is a session call.
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let s = sessions(&fx.another_instance().await.with_table_prefix("concurrent_s_").unwrap());
                    tasks.push(tokio::spawn(async move { s.get_session(&token("y")).await }));
                }
                for t in tasks {
                    assert_eq!(t.await.unwrap().unwrap(), None);
                }
            }
        }
    )*};
}

#[cfg(feature = "sqlite")]
backend_tests!(sqlite);
#[cfg(feature = "postgres")]
backend_tests!(postgres);
#[cfg(feature = "mysql")]
backend_tests!(mysql);

#[tokio::test]
async fn connect_rejects_an_unknown_scheme() {
    let err = SqlxStore::connect("oracle://x").await.unwrap_err();
    assert!(matches!(err, sqlx::Error::Configuration(_)), "{err}");
}

/// A URL of a backend this build does not compile in: refused, naming
/// the feature to enable (`cargo test -p wxpay-sqlx` runs this with the
/// default features).
#[tokio::test]
async fn connect_to_a_backend_not_compiled_in_names_its_feature() {
    let urls = [
        (
            cfg!(feature = "sqlite"),
            "sqlite://x.db?mode=rwc",
            "`sqlite` feature",
        ),
        (
            cfg!(feature = "postgres"),
            "postgres://u@127.0.0.1:1/db",
            "`postgres` feature",
        ),
        (
            cfg!(feature = "postgres"),
            "postgresql://u@127.0.0.1:1/db",
            "`postgres` feature",
        ),
        (
            cfg!(feature = "mysql"),
            "mysql://u@127.0.0.1:1/db",
            "`mysql` feature",
        ),
        (
            cfg!(feature = "mysql"),
            "mariadb://u@127.0.0.1:1/db",
            "`mysql` feature",
        ),
    ];
    for (_, url, feature) in urls.into_iter().filter(|(compiled, ..)| !compiled) {
        let err = SqlxStore::connect(url).await.unwrap_err();
        assert!(matches!(err, sqlx::Error::Configuration(_)), "{url}: {err}");
        assert!(err.to_string().contains(feature), "{url}: {err}");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_connect_by_url() {
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        println!("SKIPPED: set {POSTGRES_ENV} to run");
        return;
    };
    let store = SqlxStore::connect(&url).await.unwrap();
    assert_eq!(store.kind(), DatabaseKind::Postgres);
    store.close().await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_connect_by_url() {
    let Ok(url) = std::env::var(MYSQL_ENV) else {
        println!("SKIPPED: set {MYSQL_ENV} to run");
        return;
    };
    for url in [url.clone(), url.replacen("mysql:", "mariadb:", 1)] {
        let store = SqlxStore::connect(&url).await.unwrap();
        assert_eq!(store.kind(), DatabaseKind::MySql);
        store.close().await;
    }
}
