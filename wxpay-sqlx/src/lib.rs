//! # wxpay-sqlx
//!
//! The reference [`OrderStore`] on [sqlx](https://docs.rs/sqlx): SQLite (the
//! embedded default), PostgreSQL and MySQL/MariaDB. Several app instances may
//! share one database: every transition is one conditional `UPDATE`, so when
//! WeChat's duplicate notifies land on different instances at the same
//! moment, exactly one of them wins.
//!
//! The same store also keeps sign-in sessions (it is a [`SessionStore`]),
//! so that a token issued by one instance works on all of them:
//! `Payments::builder(config).store(store.clone()).sessions(store)`, where
//! [`PaymentsBuilder::sessions`] takes an `Arc<dyn SessionStore>`.
//!
//! ```
//! use std::sync::Arc;
//! use wxpay_core::flow::{Order, OrderPatch, OrderState, OrderStore, Payments, Transition, TransitionOutcome};
//! use wxpay_core::{Fen, OutTradeNo, SignType, TradeType};
//! use wxpay_sqlx::SqlxStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("wxpay-sqlx-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("orders.db");
//! // `mode=rwc` creates the file; WAL and a busy timeout are switched on.
//! let store = SqlxStore::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;
//! store.migrate().await?; // optional: the table is otherwise created on first use
//!
//! let now = chrono::Utc::now();
//! let order = Order::new(OutTradeNo::generate(), Fen(1), "Coffee", TradeType::Jsapi, SignType::Md5, now);
//! store.insert(&order).await?;
//!
//! // What the payment flow does when a notify arrives: compare-and-set.
//! let patch = OrderPatch { transaction_id: Some(Some("4200000001".into())), ..Default::default() };
//! let paid = Transition::new(&order, OrderState::Paid, patch, now)?;
//! assert!(matches!(store.transition(&paid).await?, TransitionOutcome::Applied(o) if o.state == OrderState::Paid));
//! // The duplicate notify changes nothing.
//! assert!(matches!(store.transition(&paid).await?, TransitionOutcome::NotApplied(_)));
//!
//! // Hand it to the payment flow and the web adapters, for orders and for
//! // sign-in sessions.
//! let store = Arc::new(store);
//! assert!(store.listing().is_some());
//! # let config = wxpay_core::Config::new("wx5f6d3e2c1b0a9f8e", "1900000109",
//! #     wxpay_core::ApiKey::new("doc-test-api-key-000000000000001"));
//! let payments = Payments::builder(config)
//!     .store(store.clone())
//!     .sessions(store)
//!     .build()?;
//! # drop(payments); std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! ## Connecting
//!
//! - [`SqlxStore::connect`] / [`SqlxStore::connect_with`] take a URL
//!   (`sqlite:`, `postgres://`, `mysql://` or `mariadb://`) and build the pool.
//! - [`SqlxStore::sqlite`], [`SqlxStore::postgres`], [`SqlxStore::mysql`]
//!   take a pool you built (and share with the rest of your app). For SQLite,
//!   build it from [`SqlxStore::sqlite_options`] to get WAL and a busy timeout,
//!   or concurrent writers may fail with `SQLITE_BUSY`. (`sqlite::memory:` is
//!   one database *per connection*: use a file with pools of more than one.)
//!
//! ## Features
//!
//! Each backend is a feature that compiles its sqlx driver and nothing else:
//!
//! | feature | backend | through the `wxpay` facade |
//! |---|---|---|
//! | `sqlite` (default) | SQLite, bundled (no system library needed) | `sqlx` or `sqlx-sqlite` |
//! | `postgres` | PostgreSQL | `sqlx-postgres` |
//! | `mysql` | MySQL and MariaDB | `sqlx-mysql` |
//!
//! Enable any combination (at least one). A URL whose backend is not
//! compiled in is refused by [`SqlxStore::connect`] with
//! [`sqlx::Error::Configuration`] naming the feature to enable; the
//! constructors taking a pool exist only with their feature.
//!
//! A lost connection, a closed pool or a timeout surfaces as
//! [`StoreError::Backend`]: the payment flow answers the notify `FAIL` and
//! WeChat retries. A transition is one transaction (the order's row, its
//! refunds, the read-back), so it never half-applies. A value the tables
//! cannot hold (an amount above `i64::MAX` fen, a time outside 1677–2262,
//! text too long for a MySQL column, a refund number of another order) is
//! [`StoreError::Invalid`], before or instead of any change.
//!
//! ## Schema
//!
//! The tables are created by [`SqlxStore::migrate`], or on first use of
//! either (turn that off with [`SqlxStore::auto_migrate`] if your own
//! migrations own the schema). The DDL is `CREATE … IF NOT EXISTS`; on
//! PostgreSQL it runs under an advisory lock, on MySQL under a named lock
//! (`GET_LOCK`), on SQLite in a `BEGIN IMMEDIATE` transaction, so instances
//! starting together do not trip over each other. The files are in the
//! crate's `migrations/` directory (one per backend), and are a fine
//! starting point for your own schema.
//!
//! ### Orders
//!
//! The orders table is `wxpay_orders` (or `<prefix>wxpay_orders`, see
//! [`SqlxStore::with_table_prefix`]); join it to your tables on `out_trade_no`
//! or `owner`:
//!
//! | column | type | holds |
//! |---|---|---|
//! | `out_trade_no` | text, primary key (MySQL: `VARCHAR(32)`, `ascii_bin`: case-sensitive) | [`Order::out_trade_no`] |
//! | `state` | text | [`OrderState`] in UPPERCASE: `CREATED`, `PREPAID`, `PAID`, `CLOSED`, `FAILED`, `REFUNDING`, `REFUNDED`, `PARTIALLY_REFUNDED` |
//! | `total_fee`, `cash_fee`, `refunded_fee` | BIGINT fen | money, never floats (`refunded_fee` equals the sum of the `SUCCESS` refunds) |
//! | `body`, `trade_type`, `openid`, `product_id`, `attach`, `owner`, `sign_type`, `api` (`V2` / `V3`), `prepay_id`, `code_url`, `transaction_id`, `time_end`, `bank_type` | text | the fields of the same name (`time_end` as WeChat sent it: `yyyyMMddHHmmss`, Beijing) |
//! | `attention` | text | [`Order::attention`] as a JSON array of [`Attention`] (`[{"kind":"LATE_PAYMENT","detail":"…","at":"2025-01-02T03:04:05.123456789Z"}]`); NULL for none |
//! | `fulfilment` | text | [`Fulfilment`]: `PENDING`, `CLAIMED`, `DONE` or `HELD` |
//! | `fulfilment_at` | BIGINT ns | the lease end (`CLAIMED`) or completion time (`DONE`); NULL when `PENDING` or `HELD` |
//! | `created_at`, `updated_at`, `prepay_expires_at`, `synced_at` | BIGINT ns | times |
//! | `version` | BIGINT | [`Order::version`]: bumped by every change, the compare-and-set's condition (so MySQL always reports the row as changed) |
//! | `refund_ledger` | small int | `1` for every order this version writes; `0` marks a row of an earlier version, which the upgrade converts (see "Upgrading") |
//!
//! **Times** are UTC, stored as BIGINT **nanoseconds** since the Unix epoch,
//! so an order reads back exactly as written (convert with
//! `to_timestamp(updated_at / 1e9)` in PostgreSQL,
//! `FROM_UNIXTIME(updated_at / 1000000000)` in MySQL,
//! `datetime(updated_at / 1000000000, 'unixepoch')` in SQLite). Optional
//! fields are NULL when absent. Indexes: `(state, updated_at)`,
//! `(fulfilment, updated_at)` and `(owner, created_at)`. (On MySQL the
//! indexes are declared in `CREATE TABLE`, so an orders table created by an
//! earlier version lacks the `owner` one; `migrations/mysql.sql` has the
//! statement to add it.)
//!
//! ### Refunds
//!
//! The refunds table is `wxpay_refunds` (or `<prefix>wxpay_refunds`): the
//! ledger, one row per [`Refund`] of an order.
//!
//! | column | type | holds |
//! |---|---|---|
//! | `out_refund_no` | text, primary key (MySQL: `VARCHAR(64)`, `ascii_bin`) | [`Refund::out_refund_no`]: one order's, for good |
//! | `out_trade_no` | text (MySQL: `VARCHAR(32)`, `ascii_bin`) | the order's number |
//! | `seq` | BIGINT | the refund's position in [`Order::refunds`] (0 = oldest); unique per order |
//! | `refund_fee` | BIGINT fen | [`Refund::refund_fee`] |
//! | `state` | text | [`RefundState`] in UPPERCASE: `REQUESTED`, `PROCESSING`, `UNKNOWN`, `SUCCESS`, `CLOSED`, `ABNORMAL`, `REFUSED` |
//! | `refund_id` | text | [`Refund::refund_id`], NULL until known |
//! | `source` | text | [`RefundSource`]: `APP` or `FOUND` |
//! | `effect`, `effect_at` | text, BIGINT ns | [`Refund::effect`], encoded like `fulfilment` / `fulfilment_at` |
//! | `created_at`, `updated_at` | BIGINT ns | times |
//!
//! Indexes: unique `(out_trade_no, seq)` (an order's ledger, in order) and
//! `(state, effect, effect_at)` (the reconciler's `SUCCESS` refunds whose
//! effect is due).
//!
//! ### Upgrading
//!
//! An orders table written by the version before the refund ledger (with
//! `pending_refund_no` / `pending_refund_fee` and a plain-text `attention`)
//! is upgraded in place by `migrate` (and on first use), under the same
//! locks: the refunds table is created; `version`, `refund_ledger` and
//! `api` (default `V2`: every order before API v3 was made with v2) are
//! added where missing (`ALTER TABLE … ADD COLUMN`, after looking in
//! `pragma_table_info` / `information_schema.columns`; the old rows get
//! `refund_ledger = 0`); then, in one transaction, for every order with
//! `refund_ledger = 0`:
//!
//! 1. `refunded_fee > 0` and no refund rows: one refund
//!    `<out_trade_no>-MIGRATED` of `refunded_fee`, `SUCCESS`, source `APP`,
//!    effect `DONE` (that version ran `on_refunded` for it), so that the
//!    ledger sums to `refunded_fee`;
//! 2. `pending_refund_no` set (the order was `REFUNDING`): a refund of that
//!    number and `pending_refund_fee`, `UNKNOWN` (its outcome is not known
//!    to us: refundquery settles it), source `APP`, after the one of step 1;
//! 3. a plain-text `attention` becomes one [`AttentionKind::Other`] case with
//!    that text, recorded at the order's `updated_at`;
//! 4. `pending_refund_no` and `pending_refund_fee` are set NULL and
//!    `refund_ledger` to 1.
//!
//! Times of the new refund rows are the order's `updated_at`. Running it
//! again changes nothing (no row has `refund_ledger = 0`; each start reads
//! the column once). The `pending_refund_*` columns stay, unused: drop them
//! once no instance of the earlier version runs (stop those before
//! upgrading: they do not know the ledger). An attention value that is not
//! a JSON array (written by the earlier version after the upgrade) also
//! reads as one `Other` case.
//!
//! ### Sessions
//!
//! The sessions table is `wxpay_sessions` (or `<prefix>wxpay_sessions`). It
//! keeps the SHA-256 of each bearer token, never the token itself, and never
//! WeChat's `session_key`:
//!
//! | column | type | holds |
//! |---|---|---|
//! | `token_hash` | text, primary key (MySQL: `CHAR(64)`, `ascii_bin`) | [`SessionRecord::token_hash`] as 64 lowercase hex characters ([`TokenHash::to_hex`]) |
//! | `openid` | text, not null | [`SessionRecord::openid`] |
//! | `unionid` | text, NULL when absent | [`SessionRecord::unionid`] |
//! | `created_at`, `expires_at` | BIGINT ns | times, encoded like the orders' |
//!
//! Expired sessions stop working at once and stay until
//! [`SessionStore::purge_expired_sessions`] deletes them (index:
//! `(expires_at)`): the reconciler does so on every pass when the store is
//! the payments' session store.
//!
//! ## How the operations map to SQL
//!
//! Every read of orders (`get`, `list`, `unfulfilled`, `owned_by`, and the
//! read-back of `transition`) is **one statement**: the orders (for the
//! listings a derived table with their `ORDER BY … LIMIT`) `LEFT JOIN` their
//! refunds, ordered by the listing's order and then `seq`; an order without
//! refunds is one row with NULL refund columns. So no order costs a second
//! query, and an order and its ledger are read from one snapshot.
//!
//! - `insert`: one `INSERT` (with `refund_ledger = 1`), and for an order that
//!   comes with refunds their `INSERT`s in the same transaction (a refund
//!   number of another order: [`StoreError::Invalid`]).
//! - `transition`, one transaction: `UPDATE … SET state = ?, updated_at = ?, version = version + 1,
//!   <patched columns, fulfilment and refunded_fee among them> WHERE out_trade_no = ? AND state = ? AND version = ?`;
//!   one affected row means applied. Then the order is read back; if applied,
//!   each refund of the patch is updated (`WHERE out_refund_no = ? AND out_trade_no = ?`)
//!   if the order has it or inserted at the next `seq` (a number that
//!   exists for another order fails the unique key: the transaction rolls
//!   back and the answer is [`StoreError::Invalid`]; a refund never moves
//!   between orders), the attention cases are merged in Rust as
//!   [`Order::apply`] does and written back, and the order is read back
//!   again. Concurrent updates of one row wait for each other's row lock and then
//!   re-check `state` and `version`, so exactly one wins under the default isolation levels
//!   (PostgreSQL `READ COMMITTED`, InnoDB `REPEATABLE READ`, SQLite's single
//!   writer). Under `SERIALIZABLE` the losers fail with
//!   [`StoreError::Backend`] instead of answering `NotApplied`.
//! - `claim_fulfilment`: `UPDATE … SET fulfilment = 'CLAIMED', fulfilment_at = <lease end>, version = version + 1
//!   WHERE out_trade_no = ? AND state = 'PAID' AND (fulfilment = 'PENDING' OR (fulfilment = 'CLAIMED' AND fulfilment_at < <now>))`
//!   (a lease end past 2262 is cut to the last nanosecond the column holds).
//! - `complete_fulfilment`: `UPDATE … SET fulfilment = 'DONE', fulfilment_at = ?, version = version + 1
//!   WHERE out_trade_no = ? AND fulfilment = 'CLAIMED' AND fulfilment_at = <the claim's lease end>`.
//! - `unfulfilled`: the orders whose `out_trade_no` is `IN` the `UNION` of
//!   `PAID` orders whose fulfilment is `PENDING` or `CLAIMED` with
//!   `fulfilment_at < <now>`, and orders with a `SUCCESS` refund whose effect
//!   is likewise, `ORDER BY updated_at, out_trade_no LIMIT ?`.
//! - `list`: `… WHERE state IN (…) AND updated_at <= ? ORDER BY updated_at, out_trade_no LIMIT ?`.
//! - `owned_by`: `… WHERE owner = ? ORDER BY created_at DESC, out_trade_no DESC LIMIT ?`.
//!   The owner matches exactly and ties go in byte order on every backend
//!   (MySQL adds `AND CAST(owner AS BINARY) = CAST(? AS BINARY)`, as the
//!   column's collation ignores case; PostgreSQL orders
//!   `out_trade_no COLLATE "C"`).
//! - `settled_on` (the daily reconciliation): `… WHERE out_trade_no > ? AND ((time_end >= ? AND time_end < ?)
//!   OR out_trade_no IN (SELECT out_trade_no FROM <refunds> WHERE state = 'SUCCESS' AND updated_at >= ? AND updated_at < ?))
//!   ORDER BY out_trade_no LIMIT ?` (byte order: PostgreSQL adds `COLLATE "C"`), served by the
//!   `time_end` and refunds' `(state, updated_at)` indexes.
//! - Sessions: `put_session` is an `INSERT` (a hash that exists fails with
//!   [`StoreError::Backend`]; tokens are 256-bit random values, so it
//!   never does), `get_session` a `SELECT` by `token_hash`, `remove_session` a `DELETE` by
//!   `token_hash`, and `purge_expired_sessions` `DELETE … WHERE expires_at <= ?`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod row;
mod sql;

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "wxpay-sqlx needs at least one backend feature: `sqlite` (the default), `postgres` or `mysql`"
);

#[cfg(any(feature = "sqlite", feature = "mysql"))]
use std::str::FromStr;
use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Connection, FromRow, pool::PoolOptions};
#[cfg(feature = "mysql")]
use sqlx::{MySqlPool, mysql::MySqlRow};
#[cfg(feature = "postgres")]
use sqlx::{PgPool, postgres::PgRow};
#[cfg(feature = "sqlite")]
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous},
};
use tokio::sync::OnceCell;
#[cfg(doc)]
use wxpay_core::flow::{
    AttentionKind, Fulfilment, OrderState, PaymentsBuilder, Refund, RefundSource, RefundState,
};
use wxpay_core::{
    OutTradeNo,
    flow::{
        Attention, Claim, ListFilter, Order, OrderListing, OrderStore, SessionRecord, SessionStore,
        SettledFilter, StoreError, TokenHash, Transition, TransitionOutcome,
    },
};

pub use row::UnstorableValue;
use row::{Joined, LegacyAttention, RawSession, instant, state};
use sql::{Dialect, Statements, Val, bind};

/// The default orders table name (without prefix).
pub const TABLE: &str = "wxpay_orders";

/// The default refunds table name (without prefix): the orders' refund
/// ledgers.
pub const REFUNDS_TABLE: &str = "wxpay_refunds";

/// The default sessions table name (without prefix).
pub const SESSIONS_TABLE: &str = "wxpay_sessions";

/// The database behind a [`SqlxStore`]. Every kind is listed whatever
/// backend features are enabled; a store exists only for the compiled-in
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseKind {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

#[derive(Debug, Clone)]
enum Pools {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    #[cfg(feature = "mysql")]
    MySql(MySqlPool),
}

/// A row type that decodes from the rows of a backend, or any type when
/// that backend is not compiled in (so that [`FromRows`] names only the
/// compiled-in backends).
macro_rules! row_bound {
    ($name:ident, $feature:literal, $row:ty) => {
        #[cfg(feature = $feature)]
        trait $name: for<'r> FromRow<'r, $row> {}
        #[cfg(feature = $feature)]
        impl<T: for<'r> FromRow<'r, $row>> $name for T {}
        #[cfg(not(feature = $feature))]
        trait $name {}
        #[cfg(not(feature = $feature))]
        impl<T> $name for T {}
    };
}
row_bound!(FromSqliteRow, "sqlite", SqliteRow);
row_bound!(FromPgRow, "postgres", PgRow);
row_bound!(FromMySqlRow, "mysql", MySqlRow);

/// A row type every compiled-in backend decodes.
trait FromRows: FromSqliteRow + FromPgRow + FromMySqlRow {}
impl<T: FromSqliteRow + FromPgRow + FromMySqlRow> FromRows for T {}

/// The error for a URL whose backend is not compiled in.
#[allow(dead_code)] // unused when every backend is compiled in
fn not_compiled(scheme: &str, feature: &str) -> sqlx::Error {
    sqlx::Error::Configuration(
        format!(
            "database URL scheme {scheme:?} needs wxpay-sqlx's `{feature}` feature \
             (through the wxpay facade: `sqlx-{feature}`), which this build does not enable"
        )
        .into(),
    )
}

/// Runs `$body` with `$pool` bound to the concrete pool: the same source for
/// every backend, type-checked three times.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            Pools::Postgres($pool) => $body,
            #[cfg(feature = "mysql")]
            Pools::MySql($pool) => $body,
        }
    };
}

/// Pool settings for [`SqlxStore::connect_with`].
///
/// ```
/// use std::time::Duration;
/// let cfg = wxpay_sqlx::PoolConfig::default()
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(3));
/// # let _ = cfg;
/// ```
#[derive(Debug, Clone)]
pub struct PoolConfig {
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    sqlite_busy_timeout: Duration,
}

impl Default for PoolConfig {
    /// 10 connections at most, none kept open idle, a 10 s acquire timeout
    /// (well under WeChat's notify timeout) and a 5 s SQLite busy timeout.
    fn default() -> Self {
        PoolConfig {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolConfig {
    /// The most connections the pool opens.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// The connections the pool keeps open.
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long an operation waits for a connection before it fails with
    /// [`StoreError::Backend`].
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// How long an SQLite writer waits for another writer's lock.
    pub fn sqlite_busy_timeout(mut self, d: Duration) -> Self {
        self.sqlite_busy_timeout = d;
        self
    }

    fn options<DB: sqlx::Database>(&self) -> PoolOptions<DB> {
        PoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
    }
}

/// A table prefix with characters other than ASCII letters, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table prefix {0:?} may only hold ASCII letters, digits and '_'")]
pub struct InvalidTablePrefix(pub String);

/// The [`OrderStore`] (and [`OrderListing`]) and the [`SessionStore`] on an
/// sqlx pool. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct SqlxStore {
    pool: Pools,
    sql: Arc<Statements>,
    auto_migrate: bool,
    migrated: Arc<OnceCell<()>>,
}

impl fmt::Debug for SqlxStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxStore")
            .field("kind", &self.kind())
            .field("table", &self.table_name())
            .field("refunds_table", &self.refunds_table_name())
            .field("sessions_table", &self.sessions_table_name())
            .field("auto_migrate", &self.auto_migrate)
            .finish_non_exhaustive()
    }
}

/// A database error as a store error: a value the database refused to
/// hold (SQLSTATE class 22, "data exception": text too long for its
/// column, a number out of range) is [`StoreError::Invalid`], the rest
/// [`StoreError::Backend`].
fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.code().is_some_and(|c| c.starts_with("22"))
    {
        return StoreError::Invalid(d.message().to_owned());
    }
    StoreError::backend(e)
}

/// Whether `e` is a unique-key violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl SqlxStore {
    /// Connects to the database at `url` with the default [`PoolConfig`].
    ///
    /// The scheme picks the backend: `sqlite:` (add `?mode=rwc` to create
    /// the file), `postgres://` / `postgresql://`, `mysql://` / `mariadb://`.
    ///
    /// # Errors
    /// [`sqlx::Error::Configuration`] for an unknown scheme or a bad URL, or
    /// the error of the first connection.
    pub async fn connect(url: &str) -> Result<SqlxStore, sqlx::Error> {
        Self::connect_with(url, PoolConfig::default()).await
    }

    /// Connects to the database at `url` with the given pool settings (see
    /// [`connect`](Self::connect)).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, cfg: PoolConfig) -> Result<SqlxStore, sqlx::Error> {
        let scheme = url.split(':').next().unwrap_or_default();
        Ok(match scheme.to_ascii_lowercase().as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let opts = Self::sqlite_options(url)?.busy_timeout(cfg.sqlite_busy_timeout);
                Self::sqlite(cfg.options().connect_with(opts).await?)
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Self::postgres(cfg.options().connect(url).await?),
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => {
                let opts = sqlx::mysql::MySqlConnectOptions::from_str(
                    &url.replacen("mariadb:", "mysql:", 1),
                )?;
                Self::mysql(cfg.options().connect_with(opts).await?)
            }
            #[cfg(not(feature = "sqlite"))]
            "sqlite" => return Err(not_compiled(scheme, "sqlite")),
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => return Err(not_compiled(scheme, "postgres")),
            #[cfg(not(feature = "mysql"))]
            "mysql" | "mariadb" => return Err(not_compiled(scheme, "mysql")),
            _ => {
                return Err(sqlx::Error::Configuration(
                    format!("unsupported database URL scheme {scheme:?} (use sqlite:, postgres:// or mysql://)").into(),
                ));
            }
        })
    }

    /// SQLite connect options for `url` as this crate recommends them: WAL
    /// journal, `synchronous = NORMAL`, a 5 s busy timeout. Build your own
    /// pool from them when you share it with the rest of your app.
    ///
    /// # Errors
    /// [`sqlx::Error::Configuration`] for a bad URL.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
        Ok(SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(PoolConfig::default().sqlite_busy_timeout))
    }

    /// A store on an existing SQLite pool (see [`sqlite_options`](Self::sqlite_options)).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(pool: SqlitePool) -> SqlxStore {
        Self::new(Pools::Sqlite(pool))
    }

    /// A store on an existing PostgreSQL pool. The table goes to the
    /// connection's `search_path` schema.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(pool: PgPool) -> SqlxStore {
        Self::new(Pools::Postgres(pool))
    }

    /// A store on an existing MySQL or MariaDB pool.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub fn mysql(pool: MySqlPool) -> SqlxStore {
        Self::new(Pools::MySql(pool))
    }

    fn new(pool: Pools) -> SqlxStore {
        let dialect = match pool {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Pools::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "mysql")]
            Pools::MySql(_) => Dialect::MySql,
        };
        SqlxStore {
            pool,
            sql: Arc::new(Statements::new(dialect, "")),
            auto_migrate: true,
            migrated: Arc::new(OnceCell::new()),
        }
    }

    /// Uses the tables `<prefix>wxpay_orders`, `<prefix>wxpay_refunds` and
    /// `<prefix>wxpay_sessions`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = sqlx::SqlitePool::connect_lazy("sqlite::memory:").unwrap();
    /// let store = wxpay_sqlx::SqlxStore::sqlite(pool).with_table_prefix("shop_").unwrap();
    /// assert_eq!(store.table_name(), "shop_wxpay_orders");
    /// assert_eq!(store.refunds_table_name(), "shop_wxpay_refunds");
    /// assert_eq!(store.sessions_table_name(), "shop_wxpay_sessions");
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`InvalidTablePrefix`] unless the prefix is ASCII letters, digits and `_`.
    pub fn with_table_prefix(mut self, prefix: &str) -> Result<SqlxStore, InvalidTablePrefix> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(InvalidTablePrefix(prefix.to_owned()));
        }
        self.sql = Arc::new(Statements::new(self.sql.dialect, prefix));
        self.migrated = Arc::new(OnceCell::new());
        Ok(self)
    }

    /// Whether the first operation creates the table when needed (the
    /// default). Turn it off when your own migrations own the schema.
    pub fn auto_migrate(mut self, on: bool) -> SqlxStore {
        self.auto_migrate = on;
        self
    }

    /// The orders table's name.
    pub fn table_name(&self) -> &str {
        &self.sql.table
    }

    /// The refunds table's name.
    pub fn refunds_table_name(&self) -> &str {
        &self.sql.refunds
    }

    /// The sessions table's name.
    pub fn sessions_table_name(&self) -> &str {
        &self.sql.sessions
    }

    /// The database kind.
    pub fn kind(&self) -> DatabaseKind {
        match self.sql.dialect {
            Dialect::Sqlite => DatabaseKind::Sqlite,
            Dialect::Postgres => DatabaseKind::Postgres,
            Dialect::MySql => DatabaseKind::MySql,
        }
    }

    /// Closes the pool (and every clone's): later calls fail with
    /// [`StoreError::Backend`].
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// Creates the tables (orders, refunds and sessions) and their indexes
    /// if they do not exist, and upgrades an orders table made by an
    /// earlier version in place (see the crate docs, "Upgrading"). Safe to
    /// run from several instances at once, and again on every start.
    ///
    /// # Errors
    /// The database's error.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.run_migrations().await?;
        let _ = self.migrated.set(());
        Ok(())
    }

    async fn run_migrations(&self) -> Result<(), sqlx::Error> {
        let sql = &self.sql;
        let ddl = sql.schema();
        let dialect = sql.dialect;
        // SQLite: take the write lock first (a deferred transaction that
        // reads and then writes fails at once when another writer went
        // first, busy timeout or not).
        let begin = match dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres | Dialect::MySql => "BEGIN",
        };
        // Instances starting together would race on the catalog and on the
        // data move: PostgreSQL takes a transaction-scoped advisory lock,
        // MySQL (whose DDL commits at once) a named lock on the connection.
        const LOCK: &str = "wxpay_sqlx_migrate";
        on_pool!(self, p => {
            let mut conn = p.acquire().await?;
            if dialect == Dialect::MySql {
                let got: Option<i64> = sqlx::query_scalar(
                    "SELECT GET_LOCK(CONCAT(?, '.', DATABASE()), 60)",
                )
                .bind(LOCK)
                .fetch_one(&mut *conn)
                .await?;
                if got != Some(1) {
                    return Err(sqlx::Error::Protocol(
                        "timed out waiting for another instance's migration".into(),
                    ));
                }
            }
            let result = async {
                let mut tx = conn.begin_with(begin).await?;
                if dialect == Dialect::Postgres {
                    sqlx::query(&format!("SELECT pg_advisory_xact_lock(hashtext('{LOCK}'))"))
                        .execute(&mut *tx)
                        .await?;
                }
                for stmt in &ddl {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                let columns: Vec<String> =
                    sqlx::query_scalar(&sql.columns()).fetch_all(&mut *tx).await?;
                for (name, types) in sql::ADDED_COLUMNS {
                    if !columns.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                        sqlx::query(&sql.add_column(name, &types)).execute(&mut *tx).await?;
                    }
                }
                if dialect == Dialect::MySql {
                    // The DDL committed; the data move is one transaction.
                    tx.commit().await?;
                    tx = conn.begin().await?;
                }
                let pending = columns.iter().any(|c| c.eq_ignore_ascii_case("pending_refund_no"));
                let (moves, done) = sql.upgrade(pending);
                for stmt in &moves {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                let legacy: Vec<LegacyAttention> = sqlx::query_as(&sql.legacy_attention())
                    .fetch_all(&mut *tx)
                    .await?;
                for l in legacy {
                    let cases = row::attention_of(l.attention.as_deref(), l.updated_at);
                    let json = row::attention(&cases)
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                    let key = Val::Text(Some(l.out_trade_no));
                    bind(sqlx::query(&sql.attention_update), &[json, key])
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(&done).execute(&mut *tx).await?;
                tx.commit().await
            }
            .await;
            if dialect == Dialect::MySql {
                let released = sqlx::query("SELECT RELEASE_LOCK(CONCAT(?, '.', DATABASE()))")
                    .bind(LOCK)
                    .execute(&mut *conn)
                    .await;
                if released.is_err() {
                    // Never hand a connection that may hold the lock back to the pool.
                    let _ = conn.close().await;
                    return result;
                }
            }
            result
        })
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.auto_migrate && !self.migrated.initialized() {
            self.migrated
                .get_or_try_init(|| self.run_migrations())
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn execute(&self, sql: &str, vals: &[Val]) -> Result<u64, StoreError> {
        self.ready().await?;
        on_pool!(self, p => bind(sqlx::query(sql), vals).execute(p).await.map(|r| r.rows_affected()))
            .map_err(db)
    }

    /// The rows `sql` selects, column for column.
    async fn fetch_raw<R>(&self, sql: &str, vals: &[Val]) -> Result<Vec<R>, StoreError>
    where
        R: FromRows,
    {
        self.ready().await?;
        Ok(on_pool!(self, p => {
            let rows = bind(sqlx::query(sql), vals).fetch_all(p).await.map_err(db)?;
            rows.iter().map(R::from_row).collect::<Result<_, _>>().map_err(|e| StoreError::Corrupt(e.to_string()))?
        }))
    }

    /// The orders (with their refunds) that a joined statement selects.
    async fn fetch(&self, sql: &str, vals: &[Val]) -> Result<Vec<Order>, StoreError> {
        let rows: Vec<Joined> = self.fetch_raw(sql, vals).await?;
        row::group(rows)
    }

    fn key(no: &OutTradeNo) -> Val {
        Val::Text(Some(no.as_str().to_owned()))
    }
}

fn limit(n: usize) -> Val {
    Val::Int(Some(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// Reads an order with its refunds inside a transaction (`$tx: &mut
/// Transaction`), answering `Result<Option<Order>, StoreError>`.
macro_rules! read_in {
    ($tx:expr, $sql:expr, $key:expr) => {
        async {
            let rows = bind(sqlx::query($sql), $key)
                .fetch_all(&mut **$tx)
                .await
                .map_err(db)?;
            let joined = (rows.iter())
                .map(Joined::from_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok::<_, StoreError>(row::group(joined)?.pop())
        }
    };
}

/// A refund insert's error: a number that exists (it is another order's:
/// this order's refunds are updated, not inserted) cannot be stored.
fn refund_insert_error(no: &str, e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        return StoreError::Invalid(format!(
            "refund {no:?} exists for another order (a refund never moves between orders)"
        ));
    }
    db(e)
}

#[async_trait]
impl OrderStore for SqlxStore {
    async fn insert(&self, order: &Order) -> Result<(), StoreError> {
        let vals = row::order_values(order)?;
        let duplicate = |e: sqlx::Error| {
            if is_unique_violation(&e) {
                StoreError::Duplicate(order.out_trade_no.clone())
            } else {
                db(e)
            }
        };
        if order.refunds.is_empty() {
            self.ready().await?;
            return on_pool!(self, p => bind(sqlx::query(&self.sql.insert), &vals)
                .execute(p)
                .await
                .map(drop))
            .map_err(duplicate);
        }
        // With its ledger: one transaction.
        let mut refunds = Vec::with_capacity(order.refunds.len());
        for (seq, r) in order.refunds.iter().enumerate() {
            let fields = row::refund_fields(r)?;
            refunds.push(row::refund_values(r, &order.out_trade_no, seq, &fields));
        }
        self.ready().await?;
        on_pool!(self, p => async {
            let mut tx = p.begin().await.map_err(db)?;
            bind(sqlx::query(&self.sql.insert), &vals).execute(&mut *tx).await.map_err(duplicate)?;
            for (r, v) in order.refunds.iter().zip(&refunds) {
                bind(sqlx::query(&self.sql.refund_insert), v)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| refund_insert_error(&r.out_refund_no, e))?;
            }
            tx.commit().await.map_err(db)
        }
        .await)
    }

    async fn get(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        Ok(self
            .fetch(&self.sql.get, &[Self::key(out_trade_no)])
            .await?
            .pop())
    }

    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        // A transaction the database aborted for a deadlock or a
        // serialization conflict (SQLSTATE 40001: InnoDB picks a victim
        // among concurrent writers of one order) was rolled back whole:
        // running it again is what the database asks for.
        let mut attempt = 0;
        loop {
            match self.transition_once(t).await {
                Err(e) if attempt < CONFLICT_RETRIES && is_conflict(&e) => {
                    attempt += 1;
                    tracing::debug!(out_trade_no = %t.out_trade_no, attempt, "transition rolled back by a conflict; again");
                }
                other => return other,
            }
        }
    }

    async fn claim_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        // A lease past what the column holds (2262) lasts until then.
        let latest = DateTime::from_timestamp_nanos(i64::MAX);
        let until = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|l| now.checked_add_signed(l))
            .map_or(latest, |u| u.min(latest));
        let vals = [
            instant("fulfilment_at", until)?,
            Self::key(out_trade_no),
            instant("now", now)?,
        ];
        Ok((self.execute(&self.sql.claim, &vals).await? > 0).then_some(Claim { until }))
    }

    async fn complete_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        claim: Claim,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = instant("fulfilment_at", at)?;
        // A lease end the column cannot hold is no stored claim.
        let Ok(until) = instant("until", claim.until) else {
            self.ready().await?;
            return Ok(false);
        };
        let vals = [at, Self::key(out_trade_no), until];
        Ok(self.execute(&self.sql.complete, &vals).await? > 0)
    }

    fn listing(&self) -> Option<&dyn OrderListing> {
        Some(self)
    }
}

impl SqlxStore {
    /// One attempt of [`OrderStore::transition`].
    async fn transition_once(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        self.ready().await?;
        let (cols, patch) = row::patch_values(&t.patch)?;
        let mut vals = vec![state(t.to), instant("updated_at", t.at)?];
        vals.extend(patch);
        vals.push(Self::key(&t.out_trade_no));
        vals.push(state(t.from));
        // A version the column cannot hold is no stored order's: -1 matches nothing.
        vals.push(Val::Int(Some(i64::try_from(t.version).unwrap_or(-1))));
        let cas = self.sql.transition(&cols);
        // Every value is encoded before anything is written.
        let refunds = (t.patch.refunds.iter())
            .map(row::refund_fields)
            .collect::<Result<Vec<_>, _>>()?;
        for a in &t.patch.attention {
            row::attention(std::slice::from_ref(a))?;
        }
        let key = [Self::key(&t.out_trade_no)];
        let sql = &self.sql;
        // The update, the ledger's and the read-back share a transaction:
        // the answer is the order exactly as this change left it.
        on_pool!(self, p => async {
            let mut tx = p.begin().await.map_err(db)?;
            let applied = bind(sqlx::query(&cas), &vals)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected()
                > 0;
            let Some(mut order) = read_in!(&mut tx, &sql.get, &key).await? else {
                tx.commit().await.map_err(db)?;
                return Ok(TransitionOutcome::NotFound);
            };
            if !applied {
                tx.commit().await.map_err(db)?;
                return Ok(TransitionOutcome::NotApplied(order));
            }
            // The row is locked by the update: the refunds and attention
            // read back are the current ones.
            if !refunds.is_empty() || !t.patch.attention.is_empty() {
                let mut known: Vec<&str> =
                    order.refunds.iter().map(|r| r.out_refund_no.as_str()).collect();
                for (r, fields) in t.patch.refunds.iter().zip(&refunds) {
                    if known.contains(&r.out_refund_no.as_str()) {
                        let mut v = fields.clone();
                        v.push(Val::Text(Some(r.out_refund_no.clone())));
                        v.push(Self::key(&t.out_trade_no));
                        bind(sqlx::query(&sql.refund_update), &v)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    } else {
                        let v = row::refund_values(r, &t.out_trade_no, known.len(), fields);
                        bind(sqlx::query(&sql.refund_insert), &v)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| refund_insert_error(&r.out_refund_no, e))?;
                        known.push(&r.out_refund_no);
                    }
                }
                let mut attention = order.attention.clone();
                for a in &t.patch.attention {
                    Attention::merge_into(&mut attention, a);
                }
                if attention != order.attention {
                    let v = [row::attention(&attention)?, Self::key(&t.out_trade_no)];
                    bind(sqlx::query(&sql.attention_update), &v)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                order = read_in!(&mut tx, &sql.get, &key)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("order {} vanished", t.out_trade_no)))?;
            }
            tx.commit().await.map_err(db)?;
            Ok(TransitionOutcome::Applied(order))
        }
        .await)
    }
}

/// How often a transaction rolled back by a deadlock or a serialization
/// conflict is run again.
const CONFLICT_RETRIES: usize = 4;

/// Whether the database rolled the transaction back for a conflict with a
/// concurrent one (SQLSTATE 40001: MySQL's deadlock victim, PostgreSQL's
/// serialization failure): nothing of it was applied.
fn is_conflict(e: &StoreError) -> bool {
    let StoreError::Backend(source) = e else {
        return false;
    };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40001")
}

#[async_trait]
impl OrderListing for SqlxStore {
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError> {
        if filter.states.is_empty() || filter.limit == 0 {
            return Ok(Vec::new());
        }
        let mut vals: Vec<Val> = filter.states.iter().map(|s| state(*s)).collect();
        vals.push(instant("updated_before", filter.updated_before)?);
        vals.push(limit(filter.limit));
        self.fetch(&self.sql.list(filter.states.len()), &vals).await
    }

    async fn unfulfilled(
        &self,
        now: DateTime<Utc>,
        limit_to: usize,
    ) -> Result<Vec<Order>, StoreError> {
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let vals = [instant("now", now)?, instant("now", now)?, limit(limit_to)];
        self.fetch(&self.sql.unfulfilled, &vals).await
    }

    async fn owned_by(&self, owner: &str, limit_to: usize) -> Result<Vec<Order>, StoreError> {
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let owner = Val::Text(Some(owner.to_owned()));
        let mut vals = vec![owner.clone()];
        if self.sql.owned_by_binds_owner_twice() {
            vals.push(owner);
        }
        vals.push(limit(limit_to));
        self.fetch(&self.sql.owned_by, &vals).await
    }

    async fn settled_on(&self, filter: &SettledFilter) -> Result<Vec<Order>, StoreError> {
        if filter.limit == 0 {
            return Ok(Vec::new());
        }
        let (te_from, te_to) = filter.time_end_range();
        let (r_from, r_to) = filter.instant_range();
        let after = filter.after.as_ref().map_or("", OutTradeNo::as_str);
        let vals = vec![
            Val::Text(Some(after.to_owned())),
            Val::Text(Some(te_from)),
            Val::Text(Some(te_to)),
            instant("refunds_from", r_from)?,
            instant("refunds_to", r_to)?,
            limit(filter.limit),
        ];
        self.fetch(&self.sql.settled_on, &vals).await
    }
}

#[async_trait]
impl SessionStore for SqlxStore {
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let vals = row::session_values(session)?;
        self.execute(&self.sql.session_insert, &vals)
            .await
            .map(drop)
    }

    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let rows: Vec<RawSession> = self
            .fetch_raw(&self.sql.session_get, &[row::token_hash(token_hash)])
            .await?;
        rows.into_iter()
            .next()
            .map(RawSession::into_record)
            .transpose()
    }

    async fn remove_session(&self, token_hash: &TokenHash) -> Result<(), StoreError> {
        self.execute(&self.sql.session_remove, &[row::token_hash(token_hash)])
            .await
            .map(drop)
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.execute(&self.sql.session_purge, &[instant("now", now)?])
            .await
    }
}
