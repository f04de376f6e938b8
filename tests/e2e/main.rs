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

mod daily;
mod harness;
mod refunds;
mod scenarios;
mod server_settings;
mod shared_db;
mod v3;

/// Runs every scenario against one framework.
macro_rules! e2e_suite {
    ($module:ident, $framework:expr) => {
        mod $module {
            use crate::{
                harness::{Framework, Merchant},
                scenarios,
            };
            use wxpay_core::SignType;
            use wxpay_sim::VerifyMode;

            const V2_MD5: Merchant = Merchant::V2(SignType::Md5);
            const V3_CERT: Merchant = Merchant::V3(VerifyMode::Cert);
            const V3_PUBKEY: Merchant = Merchant::V3(VerifyMode::PubKey);
            const V3_MIGRATION: Merchant = Merchant::V3(VerifyMode::Migration);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_md5() {
                scenarios::pays_and_fulfils_once($framework, SignType::Md5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_hmac_sha256() {
                scenarios::pays_and_fulfils_once($framework, SignType::HmacSha256).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_v3_cert() {
                crate::v3::pays_and_fulfils_once($framework, VerifyMode::Cert).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_v3_pubkey() {
                crate::v3::pays_and_fulfils_once($framework, VerifyMode::PubKey).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pays_and_fulfils_once_v3_migration() {
                crate::v3::pays_and_fulfils_once($framework, VerifyMode::Migration).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_v3_notifies_change_nothing() {
                crate::v3::bad_notifies_change_nothing($framework).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_from_the_keys_dir_cert() {
                crate::v3::configured_from_the_keys_dir($framework, VerifyMode::Cert).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_from_the_keys_dir_pubkey() {
                crate::v3::configured_from_the_keys_dir($framework, VerifyMode::PubKey).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_from_the_keys_dir_migration() {
                crate::v3::configured_from_the_keys_dir($framework, VerifyMode::Migration).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_survives_a_certificate_rotation() {
                crate::v3::survives_a_certificate_rotation($framework).await;
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
                scenarios::dropped_notifies_are_recovered_by_polling($framework, V2_MD5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dropped_notifies_are_recovered_by_polling_v3() {
                scenarios::dropped_notifies_are_recovered_by_polling($framework, V3_PUBKEY).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn half_system_errors_still_create_orders() {
                scenarios::half_system_errors_still_create_orders($framework, V2_MD5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn half_system_errors_still_create_orders_v3() {
                scenarios::half_system_errors_still_create_orders($framework, V3_CERT).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn orders_close() {
                scenarios::orders_close($framework, V2_MD5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn orders_close_v3() {
                scenarios::orders_close($framework, V3_MIGRATION).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restart_on_the_same_sqlite_file_loses_nothing() {
                scenarios::restart_loses_nothing($framework, V2_MD5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restart_on_the_same_sqlite_file_loses_nothing_v3() {
                scenarios::restart_loses_nothing($framework, V3_CERT).await;
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
                crate::refunds::admin_refunds_settle_once($framework, V2_MD5, sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn admin_refunds_settle_once_v3() {
                crate::refunds::admin_refunds_settle_once($framework, V3_MIGRATION, sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn corrupted_refund_answer_is_settled_by_refundquery() {
                crate::refunds::corrupted_refund_answer_is_settled_by_refundquery(
                    $framework,
                    V2_MD5,
                    sqlite(),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn corrupted_refund_answer_is_settled_by_refundquery_v3() {
                crate::refunds::corrupted_refund_answer_is_settled_by_refundquery(
                    $framework,
                    V3_PUBKEY,
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

/// The daily reconciliation (the framework does not matter to it: axum).
mod daily_reconciliation {
    use crate::{daily, harness::Merchant};
    use wxpay_core::SignType;
    use wxpay_sim::VerifyMode;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repairs_a_day_then_finds_it_clean_v2() {
        daily::repairs_a_day_then_finds_it_clean(Merchant::V2(SignType::HmacSha256)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repairs_a_day_then_finds_it_clean_v3() {
        daily::repairs_a_day_then_finds_it_clean(Merchant::V3(VerifyMode::PubKey)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bill_faults_are_reported_not_repaired_v2() {
        daily::bill_faults_are_reported_not_repaired(Merchant::V2(SignType::Md5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bill_faults_are_reported_not_repaired_v3() {
        daily::bill_faults_are_reported_not_repaired(Merchant::V3(VerifyMode::Cert)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reconciler_runs_yesterday_once_v2() {
        daily::the_reconciler_runs_yesterday_once(Merchant::V2(SignType::Md5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reconciler_runs_yesterday_once_v3() {
        daily::the_reconciler_runs_yesterday_once(Merchant::V3(VerifyMode::PubKey)).await;
    }

    #[cfg(feature = "cli")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_command_line_repairs_then_prints_a_clean_day() {
        daily::the_command_line_repairs_then_prints_a_clean_day(VerifyMode::Migration).await;
    }
}
