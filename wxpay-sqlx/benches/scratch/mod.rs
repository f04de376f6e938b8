//! Scratch databases shared by the benches: a temp SQLite file always; a
//! schema (PostgreSQL) or database (MySQL) of its own when
//! `WXPAY_TEST_POSTGRES_URL` / `WXPAY_TEST_MYSQL_URL` is set. Each is
//! created before and dropped after the closure that benches it.

use sqlx::{Connection, Executor};
use tokio::runtime::Runtime;
use wxpay_sqlx::SqlxStore;

/// A unique name for a scratch schema, database or directory.
pub fn name() -> String {
    format!(
        "wxpay_bench_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}

async fn admin(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        c.execute(sql).await.unwrap();
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        c.execute(sql).await.unwrap();
    }
}

/// Runs `bench(backend, store)` on SQLite, then on PostgreSQL and MySQL when
/// their URL is set (saying SKIPPED otherwise), each on a fresh scratch
/// database that is dropped afterwards.
pub fn for_each_backend(rt: &Runtime, bench_name: &str, mut bench: impl FnMut(&str, &SqlxStore)) {
    let dir = std::env::temp_dir().join(name());
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let store = rt.block_on(SqlxStore::connect(&url)).unwrap();
    bench("sqlite", &store);
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);

    for (backend, env) in [
        ("postgres", "WXPAY_TEST_POSTGRES_URL"),
        ("mysql", "WXPAY_TEST_MYSQL_URL"),
    ] {
        let Ok(url) = std::env::var(env) else {
            println!("{bench_name}/{backend}: SKIPPED ({env} not set)");
            continue;
        };
        let scratch = name();
        let (create, drop, store_url) = if backend == "postgres" {
            let sep = if url.contains('?') { '&' } else { '?' };
            (
                format!("CREATE SCHEMA {scratch}"),
                format!("DROP SCHEMA {scratch} CASCADE"),
                format!("{url}{sep}options=-c%20search_path%3D{scratch}"),
            )
        } else {
            let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
            (
                format!("CREATE DATABASE {scratch}"),
                format!("DROP DATABASE {scratch}"),
                format!("{base}/{scratch}"),
            )
        };
        let store = rt.block_on(async {
            admin(&url, &create).await;
            SqlxStore::connect(&store_url).await.unwrap()
        });
        bench(backend, &store);
        rt.block_on(async {
            store.close().await;
            admin(&url, &drop).await;
        });
    }
}
