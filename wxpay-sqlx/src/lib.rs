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
//! let paid = Transition::new(order.out_trade_no.clone(), &[OrderState::Created, OrderState::Prepaid],
//!     OrderState::Paid, patch, now)?;
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
//! A lost connection, a closed pool or a timeout surfaces as
//! [`StoreError::Backend`]: the payment flow answers the notify `FAIL` and
//! WeChat retries. A transition is one statement inside one transaction, so
//! it never half-applies.
//!
//! ## Schema
//!
//! The tables are created by [`SqlxStore::migrate`], or on first use of
//! either (turn that off with [`SqlxStore::auto_migrate`] if your own
//! migrations own the schema). The DDL is `CREATE … IF NOT EXISTS`; on
//! PostgreSQL it runs under an advisory lock, so instances starting together
//! do not trip over each other. The files are in the crate's `migrations/`
//! directory (one per backend), and are a fine starting point for your own
//! schema.
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
//! | `total_fee`, `cash_fee`, `refunded_fee`, `pending_refund_fee` | BIGINT fen | money, never floats |
//! | `body`, `trade_type`, `openid`, `product_id`, `attach`, `owner`, `sign_type`, `prepay_id`, `code_url`, `transaction_id`, `time_end`, `bank_type`, `attention` | text | the fields of the same name (`time_end` as WeChat sent it: `yyyyMMddHHmmss`, Beijing) |
//! | `pending_refund_no` | text | [`PendingRefund::out_refund_no`] (both `pending_refund_*` are NULL, or neither) |
//! | `fulfilment` | text | `PENDING`, `CLAIMED` or `DONE` |
//! | `fulfilment_at` | BIGINT ns | the lease end (`CLAIMED`) or completion time (`DONE`); NULL when `PENDING` |
//! | `created_at`, `updated_at`, `prepay_expires_at`, `synced_at` | BIGINT ns | times |
//! | `version` | BIGINT | bumped by every change (so MySQL always reports the row as changed) |
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
//! - `transition`: `UPDATE … SET state = ?, updated_at = ?, version = version + 1, <patched columns>
//!   WHERE out_trade_no = ? AND state IN (…)`, then the row is read back in
//!   the same transaction; one affected row means applied.
//!   Concurrent updates of one row wait for each other's row lock and then
//!   re-check `state`, so exactly one wins under the default isolation levels
//!   (PostgreSQL `READ COMMITTED`, InnoDB `REPEATABLE READ`, SQLite's single
//!   writer). Under `SERIALIZABLE` the losers fail with
//!   [`StoreError::Backend`] instead of answering `NotApplied`.
//! - `claim_fulfilment`: `UPDATE … SET fulfilment = 'CLAIMED', fulfilment_at = <lease end>
//!   WHERE out_trade_no = ? AND (fulfilment = 'PENDING' OR (fulfilment = 'CLAIMED' AND fulfilment_at < <now>))`.
//! - `unfulfilled` lists orders in a paid state (`PAID`, `REFUNDING`,
//!   `REFUNDED`, `PARTIALLY_REFUNDED`) that are pending or whose claim expired.
//! - `owned_by`: `SELECT … WHERE owner = ? ORDER BY created_at DESC, out_trade_no DESC LIMIT ?`.
//!   The owner matches exactly and ties go in byte order on every backend
//!   (MySQL adds `AND CAST(owner AS BINARY) = CAST(? AS BINARY)`, as the
//!   column's collation ignores case; PostgreSQL orders
//!   `out_trade_no COLLATE "C"`).
//! - Sessions: `put_session` is an `INSERT` (a hash that exists fails with
//!   [`StoreError::Backend`]; tokens are 256-bit random values, so it
//!   never does), `get_session` a `SELECT` by `token_hash`, `remove_session` a `DELETE` by
//!   `token_hash`, and `purge_expired_sessions` `DELETE … WHERE expires_at <= ?`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod row;
mod sql;

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    FromRow, MySqlPool, PgPool, SqlitePool,
    mysql::MySqlRow,
    pool::PoolOptions,
    postgres::PgRow,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous},
};
use tokio::sync::OnceCell;
#[cfg(doc)]
use wxpay_core::flow::{OrderState, PaymentsBuilder, PendingRefund};
use wxpay_core::{
    OutTradeNo,
    flow::{
        ListFilter, Order, OrderListing, OrderStore, SessionRecord, SessionStore, StoreError,
        TokenHash, Transition, TransitionOutcome,
    },
};

pub use row::UnstorableValue;
use row::{RawRow, RawSession, instant, state};
use sql::{Dialect, Statements, Val, bind};

/// The default orders table name (without prefix).
pub const TABLE: &str = "wxpay_orders";

/// The default sessions table name (without prefix).
pub const SESSIONS_TABLE: &str = "wxpay_sessions";

/// The database behind a [`SqlxStore`].
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
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool: the same source for
/// every backend, type-checked three times.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pools::Sqlite($pool) => $body,
            Pools::Postgres($pool) => $body,
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
            .field("sessions_table", &self.sessions_table_name())
            .field("auto_migrate", &self.auto_migrate)
            .finish_non_exhaustive()
    }
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
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
            "sqlite" => {
                let opts = Self::sqlite_options(url)?.busy_timeout(cfg.sqlite_busy_timeout);
                Self::sqlite(cfg.options().connect_with(opts).await?)
            }
            "postgres" | "postgresql" => Self::postgres(cfg.options().connect(url).await?),
            "mysql" | "mariadb" => {
                let opts = sqlx::mysql::MySqlConnectOptions::from_str(
                    &url.replacen("mariadb:", "mysql:", 1),
                )?;
                Self::mysql(cfg.options().connect_with(opts).await?)
            }
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
    pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
        Ok(SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(PoolConfig::default().sqlite_busy_timeout))
    }

    /// A store on an existing SQLite pool (see [`sqlite_options`](Self::sqlite_options)).
    pub fn sqlite(pool: SqlitePool) -> SqlxStore {
        Self::new(Pools::Sqlite(pool))
    }

    /// A store on an existing PostgreSQL pool. The table goes to the
    /// connection's `search_path` schema.
    pub fn postgres(pool: PgPool) -> SqlxStore {
        Self::new(Pools::Postgres(pool))
    }

    /// A store on an existing MySQL or MariaDB pool.
    pub fn mysql(pool: MySqlPool) -> SqlxStore {
        Self::new(Pools::MySql(pool))
    }

    fn new(pool: Pools) -> SqlxStore {
        let dialect = match pool {
            Pools::Sqlite(_) => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
            Pools::MySql(_) => Dialect::MySql,
        };
        SqlxStore {
            pool,
            sql: Arc::new(Statements::new(dialect, "")),
            auto_migrate: true,
            migrated: Arc::new(OnceCell::new()),
        }
    }

    /// Uses the tables `<prefix>wxpay_orders` and `<prefix>wxpay_sessions`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = sqlx::SqlitePool::connect_lazy("sqlite::memory:").unwrap();
    /// let store = wxpay_sqlx::SqlxStore::sqlite(pool).with_table_prefix("shop_").unwrap();
    /// assert_eq!(store.table_name(), "shop_wxpay_orders");
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

    /// Creates the tables (orders and sessions) and their indexes if they do
    /// not exist. Safe to run from several instances at once, and again on
    /// every start.
    ///
    /// # Errors
    /// The database's error.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.run_migrations().await?;
        let _ = self.migrated.set(());
        Ok(())
    }

    async fn run_migrations(&self) -> Result<(), sqlx::Error> {
        let ddl = self.sql.schema();
        // Instances starting together would race on PostgreSQL's catalog.
        let lock = (self.sql.dialect == Dialect::Postgres)
            .then_some("SELECT pg_advisory_xact_lock(hashtext('wxpay_sqlx_migrate'))");
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for stmt in lock.iter().copied().chain(ddl.iter().map(String::as_str)) {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            tx.commit().await
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
        R: for<'r> FromRow<'r, SqliteRow>
            + for<'r> FromRow<'r, PgRow>
            + for<'r> FromRow<'r, MySqlRow>,
    {
        self.ready().await?;
        Ok(on_pool!(self, p => {
            let rows = bind(sqlx::query(sql), vals).fetch_all(p).await.map_err(db)?;
            rows.iter().map(R::from_row).collect::<Result<_, _>>().map_err(|e| StoreError::Corrupt(e.to_string()))?
        }))
    }

    async fn fetch(&self, sql: &str, vals: &[Val]) -> Result<Vec<Order>, StoreError> {
        let rows: Vec<RawRow> = self.fetch_raw(sql, vals).await?;
        rows.into_iter().map(RawRow::into_order).collect()
    }

    fn key(no: &OutTradeNo) -> Val {
        Val::Text(Some(no.as_str().to_owned()))
    }
}

fn limit(n: usize) -> Val {
    Val::Int(Some(i64::try_from(n).unwrap_or(i64::MAX)))
}

#[async_trait]
impl OrderStore for SqlxStore {
    async fn insert(&self, order: &Order) -> Result<(), StoreError> {
        let vals = row::order_values(order)?;
        match self.execute(&self.sql.insert, &vals).await {
            Err(StoreError::Backend(e)) => match e.downcast_ref::<sqlx::Error>() {
                Some(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                    Err(StoreError::Duplicate(order.out_trade_no.clone()))
                }
                _ => Err(StoreError::Backend(e)),
            },
            other => other.map(drop),
        }
    }

    async fn get(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        Ok(self
            .fetch(&self.sql.get, &[Self::key(out_trade_no)])
            .await?
            .pop())
    }

    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        self.ready().await?;
        let (cols, patch) = row::patch_values(&t.patch)?;
        let mut vals = vec![state(t.to), instant("updated_at", t.at)?];
        vals.extend(patch);
        vals.push(Self::key(&t.out_trade_no));
        vals.extend(t.from.iter().map(|s| state(*s)));
        // `state IN ()` is not SQL; no `from` matches nothing.
        let cas = (!t.from.is_empty()).then(|| self.sql.transition(&cols, t.from.len()));
        let key = [Self::key(&t.out_trade_no)];
        // The update and the read-back share a transaction: the answer is
        // the row exactly as this change left it.
        let (applied, row) = on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            let mut applied = 0;
            if let Some(cas) = &cas {
                applied = bind(sqlx::query(cas), &vals).execute(&mut *tx).await?.rows_affected();
            }
            let row = bind(sqlx::query(&self.sql.get), &key).fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>((applied, row.as_ref().map(RawRow::from_row).transpose()?))
        }
        .await)
        .map_err(db)?;
        Ok(match row {
            None => TransitionOutcome::NotFound,
            Some(r) if applied > 0 => TransitionOutcome::Applied(r.into_order()?),
            Some(r) => TransitionOutcome::NotApplied(r.into_order()?),
        })
    }

    async fn claim_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let until = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|l| now.checked_add_signed(l))
            .ok_or_else(|| StoreError::backend(UnstorableValue::new("fulfilment_at")))?;
        let vals = [
            instant("fulfilment_at", until)?,
            Self::key(out_trade_no),
            instant("now", now)?,
        ];
        Ok(self.execute(&self.sql.claim, &vals).await? > 0)
    }

    async fn complete_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let vals = [instant("fulfilment_at", at)?, Self::key(out_trade_no)];
        self.execute(&self.sql.complete, &vals).await.map(drop)
    }

    fn listing(&self) -> Option<&dyn OrderListing> {
        Some(self)
    }
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
        let vals = [instant("now", now)?, limit(limit_to)];
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
