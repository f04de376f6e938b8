//! Two shop instances (different frameworks, separate pools) sharing one
//! PostgreSQL or MySQL database, as behind a load balancer.

use serde_json::json;
use sqlx::{Connection, Executor};
use wxpay_core::{SignType, flow::OrderState, testkit};

use crate::harness::{Framework, Fulfilments, Merchant, Running};
use wxpay_sim::VerifyMode;

const POSTGRES_ENV: &str = "WXPAY_TEST_POSTGRES_URL";
const MYSQL_ENV: &str = "WXPAY_TEST_MYSQL_URL";

/// A fresh schema (PostgreSQL) or database (MySQL) and a URL into it;
/// dropped by the returned guard.
struct Place {
    admin_url: String,
    drop_sql: String,
    url: String,
}

impl Place {
    async fn new(env: &str) -> Option<Place> {
        let Ok(admin_url) = std::env::var(env) else {
            // stderr directly: libtest captures `println!`, and the skip must show
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: set {env} to run this test");
            return None;
        };
        let name = format!(
            "wxpay_e2e_{}",
            wxpay_core::types::nonce_str().to_lowercase()
        );
        let (create, drop_sql, url) = if env == POSTGRES_ENV {
            let sep = if admin_url.contains('?') { '&' } else { '?' };
            (
                format!("CREATE SCHEMA {name}"),
                format!("DROP SCHEMA {name} CASCADE"),
                format!("{admin_url}{sep}options=-c%20search_path%3D{name}"),
            )
        } else {
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b);
            (
                format!("CREATE DATABASE {name}"),
                format!("DROP DATABASE {name}"),
                format!("{base}/{name}"),
            )
        };
        exec(&admin_url, &create).await;
        Some(Place {
            admin_url,
            drop_sql,
            url,
        })
    }

    async fn cleanup(self) {
        exec(&self.admin_url, &self.drop_sql).await;
    }
}

async fn exec(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    c.execute(sql).await.unwrap();
}

async fn two_shops_share_one_database(env: &str) {
    let Some(place) = Place::new(env).await else {
        return;
    };
    let fulfilments = Fulfilments::default();
    let start =
        |fw| Running::start_counting(fw, SignType::Md5, place.url.clone(), 3, fulfilments.clone());
    let (a, b) = (start(Framework::Axum).await, start(Framework::Actix).await);

    // a session made on A works on B
    let token = a.login("o-alice").await;
    let order = a.order(&token, 1).await;
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let (status, seen) = b.get_json(&format!("/pay/orders/{no}"), Some(&token)).await;
    assert_eq!((status, &seen["state"]), (200, &json!("PREPAID")), "{seen}");

    // WeChat's duplicate notifies land on both instances at once
    let stored = a.stored(&no).await;
    let body = testkit::signed_payment_notify(
        a.shop.payments.config(),
        &stored,
        "4200000000000000000000000077",
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let target = if i % 2 == 0 { &a } else { &b };
        let (http, url, body) = (
            target.http.clone(),
            format!("{}/pay/notify", target.base),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().contains("SUCCESS"));
    }
    assert_eq!(b.stored(&no).await.state, OrderState::Paid);
    assert_eq!(a.vip_days(&token).await, 30, "granted exactly once");
    assert_eq!(b.vip_days(&token).await, 30);
    assert_eq!(
        fulfilments.of(&no),
        1,
        "on_paid ran once across both instances"
    );
    drop((a, b));
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_shops_share_one_database() {
    two_shops_share_one_database(POSTGRES_ENV).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_two_shops_share_one_database() {
    two_shops_share_one_database(MYSQL_ENV).await;
}

/// The refund scenarios on one backend, through every adapter (each in a
/// fresh schema or database).
async fn refunds_on(env: &str) {
    for fw in [Framework::Axum, Framework::Actix, Framework::Tower] {
        for scenario in 0..5 {
            let Some(place) = Place::new(env).await else {
                return;
            };
            let url = place.url.clone();
            let v2 = Merchant::V2(SignType::Md5);
            let v3 = Merchant::V3(VerifyMode::Cert);
            match scenario {
                0 => crate::refunds::admin_refunds_settle_once(fw, v2, url).await,
                1 => crate::refunds::admin_refunds_settle_once(fw, v3, url).await,
                2 => {
                    crate::refunds::corrupted_refund_answer_is_settled_by_refundquery(fw, v2, url)
                        .await
                }
                3 => {
                    crate::refunds::corrupted_refund_answer_is_settled_by_refundquery(fw, v3, url)
                        .await
                }
                _ => crate::refunds::outside_refund_is_found_by_the_reconciler(fw, url).await,
            }
            place.cleanup().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refunds_through_every_adapter() {
    refunds_on(POSTGRES_ENV).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_refunds_through_every_adapter() {
    refunds_on(MYSQL_ENV).await;
}
