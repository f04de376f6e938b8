//! One fresh database per test: an SQLite file in its own temp dir, a
//! PostgreSQL schema or a MySQL database, dropped when the fixture drops
//! (also when the test panics).

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::str::FromStr;

use sqlx::{Connection, Executor};
#[cfg(feature = "mysql")]
use sqlx::{
    MySqlConnection,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
};
#[cfg(feature = "postgres")]
use sqlx::{
    PgConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use wxpay_sqlx::{PoolConfig, SqlxStore};

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_ENV: &str = "WXPAY_TEST_POSTGRES_URL";
#[cfg(feature = "mysql")]
pub(crate) const MYSQL_ENV: &str = "WXPAY_TEST_MYSQL_URL";

/// A name no other test (or test run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{}_{:x}_{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

enum Place {
    #[cfg(feature = "sqlite")]
    Sqlite { dir: PathBuf, url: String },
    #[cfg(feature = "postgres")]
    Postgres { url: String, schema: String },
    #[cfg(feature = "mysql")]
    MySql { url: String, database: String },
}

/// A store on a fresh database, and the means to open more stores on it.
pub(crate) struct Fixture {
    pub(crate) store: SqlxStore,
    place: Place,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn skipped(env: &str) {
    // Straight to stderr: the test harness captures `println!`, and a skip
    // must be visible in a normal `cargo test` run.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: set {env} to run");
}

impl Fixture {
    #[cfg(feature = "sqlite")]
    pub(crate) async fn sqlite() -> Option<Fixture> {
        let dir = std::env::temp_dir().join(unique("wxpay-sqlx-test-"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("orders.db").display());
        let place = Place::Sqlite { dir, url };
        Some(Fixture {
            store: open(&place).await,
            place,
        })
    }

    #[cfg(feature = "postgres")]
    pub(crate) async fn postgres() -> Option<Fixture> {
        let Ok(url) = std::env::var(POSTGRES_ENV) else {
            skipped(POSTGRES_ENV);
            return None;
        };
        let schema = unique("wxpay_test_");
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let place = Place::Postgres { url, schema };
        Some(Fixture {
            store: open(&place).await,
            place,
        })
    }

    #[cfg(feature = "mysql")]
    pub(crate) async fn mysql() -> Option<Fixture> {
        let Ok(url) = std::env::var(MYSQL_ENV) else {
            skipped(MYSQL_ENV);
            return None;
        };
        let database = unique("wxpay_test_");
        let mut admin = MySqlConnection::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let place = Place::MySql { url, database };
        Some(Fixture {
            store: open(&place).await,
            place,
        })
    }

    /// Another store with its own pool on the same database, as a second
    /// app instance (or the same app after a restart) has.
    pub(crate) async fn another_instance(&self) -> SqlxStore {
        open(&self.place).await
    }

    /// Runs raw SQL on the test database (to corrupt rows and the like).
    pub(crate) async fn raw(&self, sql: &str) {
        match &self.place {
            #[cfg(feature = "sqlite")]
            Place::Sqlite { url, .. } => {
                let mut c = SqliteConnection::connect(url).await.unwrap();
                c.execute(sql).await.unwrap();
            }
            #[cfg(feature = "postgres")]
            Place::Postgres { url, schema } => {
                let mut c = PgConnection::connect_with(&pg_options(url, schema))
                    .await
                    .unwrap();
                c.execute(sql).await.unwrap();
            }
            #[cfg(feature = "mysql")]
            Place::MySql { url, database } => {
                let mut c = MySqlConnection::connect_with(&mysql_options(url, database))
                    .await
                    .unwrap();
                c.execute(sql).await.unwrap();
            }
        }
    }
}

impl Fixture {
    /// Runs each `;`-separated statement of `sql` (no `;` inside values).
    pub(crate) async fn raw_script(&self, sql: &str) {
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            self.raw(stmt).await;
        }
    }

    /// The one BIGINT `sql` selects (a count, say), read on a connection
    /// of its own.
    pub(crate) async fn scalar(&self, sql: &str) -> i64 {
        match &self.place {
            #[cfg(feature = "sqlite")]
            Place::Sqlite { url, .. } => {
                let mut c = SqliteConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
            #[cfg(feature = "postgres")]
            Place::Postgres { url, schema } => {
                let mut c = PgConnection::connect_with(&pg_options(url, schema))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
            #[cfg(feature = "mysql")]
            Place::MySql { url, database } => {
                let mut c = MySqlConnection::connect_with(&mysql_options(url, database))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
        }
    }

    /// The backend.
    pub(crate) fn kind(&self) -> wxpay_sqlx::DatabaseKind {
        self.store.kind()
    }
}

#[cfg(feature = "postgres")]
fn pg_options(url: &str, schema: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema)])
}

#[cfg(feature = "mysql")]
fn mysql_options(url: &str, database: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::from_str(url)
        .unwrap()
        .database(database)
}

async fn open(place: &Place) -> SqlxStore {
    let cfg = PoolConfig::default().max_connections(8);
    match place {
        // Through the URL, as apps do.
        #[cfg(feature = "sqlite")]
        Place::Sqlite { url, .. } => SqlxStore::connect_with(url, cfg).await.unwrap(),
        // Through a pool the app built.
        #[cfg(feature = "postgres")]
        Place::Postgres { url, schema } => {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .connect_with(pg_options(url, schema))
                .await
                .unwrap();
            SqlxStore::postgres(pool)
        }
        #[cfg(feature = "mysql")]
        Place::MySql { url, database } => {
            let pool = MySqlPoolOptions::new()
                .max_connections(8)
                .connect_with(mysql_options(url, database))
                .await
                .unwrap();
            SqlxStore::mysql(pool)
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        match &self.place {
            #[cfg(feature = "sqlite")]
            Place::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            #[cfg(feature = "postgres")]
            Place::Postgres { url, schema } => {
                let (url, sql) = (url.clone(), format!("DROP SCHEMA {schema} CASCADE"));
                cleanup(async move {
                    let mut c = PgConnection::connect(&url).await?;
                    sqlx::query(&sql).execute(&mut c).await.map(drop)
                });
            }
            #[cfg(feature = "mysql")]
            Place::MySql { url, database } => {
                let (url, sql) = (url.clone(), format!("DROP DATABASE {database}"));
                cleanup(async move {
                    let mut c = MySqlConnection::connect(&url).await?;
                    sqlx::query(&sql).execute(&mut c).await.map(drop)
                });
            }
        }
    }
}

/// Runs `work` to completion. Drop runs inside the test's runtime: clean
/// up on a thread (and a runtime) of our own.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn cleanup(work: impl Future<Output = Result<(), sqlx::Error>> + Send + 'static) {
    let cleanup = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(work)
    });
    if let Ok(Err(e)) = cleanup.join() {
        eprintln!("test cleanup failed: {e}");
    }
}
