//! End to end: each shop example (axum, actix-web, tower/hyper) served on
//! 127.0.0.1:0 against an in-process wxpay-sim, driven over real HTTP like a
//! mini-program and WeChat would.

#[path = "../../examples/shop/mod.rs"]
mod shop;

#[path = "../../examples/actix_shop/app.rs"]
mod actix_app;
#[path = "../../examples/axum_shop/app.rs"]
mod axum_app;
#[path = "../../examples/tower_shop/app.rs"]
mod tower_app;

mod harness;
mod refunds;
mod scenarios;
mod server_settings;
mod shared_db;

/// Runs every scenario against one framework.
macro_rules! e2e_suite {
    ($module:ident, $framework:expr) => {
        mod $module {
            use crate::{harness::Framework, scenarios};
            use wxpay_core::SignType;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_md5() {
                scenarios::pays_and_fulfils_once($framework, SignType::Md5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_hmac_sha256() {
                scenarios::pays_and_fulfils_once($framework, SignType::HmacSha256).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_notifies_change_nothing() {
                scenarios::bad_notifies_change_nothing($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_duplicate_notifies_fulfil_once() {
                scenarios::concurrent_duplicate_notifies_fulfil_once($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dropped_notifies_are_recovered_by_polling() {
                scenarios::dropped_notifies_are_recovered_by_polling($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn half_system_errors_still_create_orders() {
                scenarios::half_system_errors_still_create_orders($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn orders_close() {
                scenarios::orders_close($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restart_on_the_same_sqlite_file_loses_nothing() {
                scenarios::restart_loses_nothing($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stops_gracefully() {
                scenarios::stops_gracefully($framework).await;
            }

            fn sqlite() -> String {
                crate::harness::sqlite_url(&crate::harness::temp_db("refund"))
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn admin_refunds_settle_once() {
                crate::refunds::admin_refunds_settle_once($framework, sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn corrupted_refund_answer_is_settled_by_refundquery() {
                crate::refunds::corrupted_refund_answer_is_settled_by_refundquery(
                    $framework,
                    sqlite(),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn outside_refund_is_found_by_the_reconciler() {
                crate::refunds::outside_refund_is_found_by_the_reconciler($framework, sqlite())
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hmac_shop_refuses_an_md5_notify() {
                crate::refunds::hmac_shop_refuses_an_md5_notify($framework, sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn slow_and_idle_clients_are_cut_off() {
                crate::server_settings::slow_and_idle_clients_are_cut_off($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_body_that_never_comes_is_answered_at_the_deadline() {
                crate::server_settings::a_body_that_never_comes_is_answered_at_the_deadline(
                    $framework,
                )
                .await;
            }

            #[allow(dead_code)]
            const _: Framework = $framework;
        }
    };
}

e2e_suite!(axum, Framework::Axum);
e2e_suite!(tower, Framework::Tower);
e2e_suite!(actix, Framework::Actix);
