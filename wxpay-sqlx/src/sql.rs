//! The SQL text, built once per store from one template per statement. The
//! backends differ only in placeholders (`$1` vs `?`), how binary-collated
//! keys are selected on MySQL, how `owned_by` compares and orders text
//! exactly on MySQL and PostgreSQL, and the schema DDL.

use sqlx::{Database, Encode, Type, query::Query};

/// The SQL flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// Every column, in the order [`crate::row`] writes them on insert.
pub(crate) const COLUMNS: [&str; 26] = [
    "out_trade_no",
    "state",
    "total_fee",
    "body",
    "trade_type",
    "openid",
    "product_id",
    "attach",
    "owner",
    "sign_type",
    "prepay_id",
    "code_url",
    "prepay_expires_at",
    "transaction_id",
    "time_end",
    "bank_type",
    "cash_fee",
    "refunded_fee",
    "pending_refund_no",
    "pending_refund_fee",
    "attention",
    "fulfilment",
    "fulfilment_at",
    "created_at",
    "updated_at",
    "synced_at",
];

/// Every column of the sessions table, in the order [`crate::row`] writes
/// them on insert.
pub(crate) const SESSION_COLUMNS: [&str; 5] = [
    "token_hash",
    "openid",
    "unionid",
    "created_at",
    "expires_at",
];

/// A bound value. Every column is a nullable BIGINT or a nullable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Binds values in order, for any of the three backends.
pub(crate) fn bind<'q, DB: Database>(
    mut q: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    vals: &[Val],
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
{
    for v in vals {
        q = match v {
            Val::Int(i) => q.bind(*i),
            Val::Text(s) => q.bind(s.clone()),
        };
    }
    q
}

/// Numbers placeholders in the dialect's style.
struct Placeholders {
    dialect: Dialect,
    n: usize,
}

impl Placeholders {
    fn new(dialect: Dialect) -> Self {
        Placeholders { dialect, n: 0 }
    }

    fn next(&mut self) -> String {
        self.n += 1;
        match self.dialect {
            Dialect::Postgres => format!("${}", self.n),
            Dialect::Sqlite | Dialect::MySql => "?".to_owned(),
        }
    }

    fn list(&mut self, n: usize) -> String {
        (0..n).map(|_| self.next()).collect::<Vec<_>>().join(", ")
    }
}

/// The columns to select, `columns` with its first one, the key, read as
/// text. MySQL's keys (`out_trade_no`, `token_hash`) have a binary collation
/// (order numbers are case-sensitive), which sqlx would only read as bytes.
fn select_list(dialect: Dialect, columns: &[&str]) -> String {
    let cols = columns.join(", ");
    match dialect {
        Dialect::MySql => {
            let key = columns[0];
            cols.replacen(key, &format!("CAST({key} AS CHAR) AS {key}"), 1)
        }
        Dialect::Sqlite | Dialect::Postgres => cols,
    }
}

/// The statements of one store (one dialect, one table prefix).
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) dialect: Dialect,
    /// The orders table, `<prefix>wxpay_orders`.
    pub(crate) table: String,
    /// The sessions table, `<prefix>wxpay_sessions`.
    pub(crate) sessions: String,
    /// Binds every column of [`COLUMNS`].
    pub(crate) insert: String,
    /// Binds `out_trade_no`.
    pub(crate) get: String,
    /// Binds the lease end, `out_trade_no`, now.
    pub(crate) claim: String,
    /// Binds the done time, `out_trade_no`.
    pub(crate) complete: String,
    /// Binds now, limit.
    pub(crate) unfulfilled: String,
    /// Binds owner, limit; on MySQL owner, owner, limit (see
    /// [`Statements::owned_by_binds_owner_twice`]).
    pub(crate) owned_by: String,
    /// Binds every column of [`SESSION_COLUMNS`].
    pub(crate) session_insert: String,
    /// Binds `token_hash`.
    pub(crate) session_get: String,
    /// Binds `token_hash`.
    pub(crate) session_remove: String,
    /// Binds now.
    pub(crate) session_purge: String,
}

impl Statements {
    /// Whether [`owned_by`](Statements::owned_by) binds the owner twice.
    pub(crate) const fn owned_by_binds_owner_twice(&self) -> bool {
        matches!(self.dialect, Dialect::MySql)
    }

    /// The statements on the tables `<prefix>wxpay_orders` and
    /// `<prefix>wxpay_sessions`. The prefix is validated by the caller.
    pub(crate) fn new(dialect: Dialect, prefix: &str) -> Self {
        let table = format!("{prefix}{}", crate::TABLE);
        let sessions = format!("{prefix}{}", crate::SESSIONS_TABLE);
        let cols = select_list(dialect, &COLUMNS);
        let t = &table;
        let ph = || Placeholders::new(dialect);
        let insert = {
            let mut p = ph();
            format!(
                "INSERT INTO {t} ({}) VALUES ({})",
                COLUMNS.join(", "),
                p.list(COLUMNS.len())
            )
        };
        let get = format!(
            "SELECT {cols} FROM {t} WHERE out_trade_no = {}",
            ph().next()
        );
        let claim = {
            let mut p = ph();
            let (until, no, now) = (p.next(), p.next(), p.next());
            format!(
                "UPDATE {t} SET fulfilment = 'CLAIMED', fulfilment_at = {until}, \
                 version = version + 1 WHERE out_trade_no = {no} AND (fulfilment = 'PENDING' \
                 OR (fulfilment = 'CLAIMED' AND fulfilment_at < {now}))"
            )
        };
        let complete = {
            let mut p = ph();
            let (at, no) = (p.next(), p.next());
            format!(
                "UPDATE {t} SET fulfilment = 'DONE', fulfilment_at = {at}, \
                 version = version + 1 WHERE out_trade_no = {no}"
            )
        };
        let unfulfilled = {
            let mut p = ph();
            let (now, limit) = (p.next(), p.next());
            format!(
                "SELECT {cols} FROM {t} WHERE state IN ({paid}) AND (fulfilment = 'PENDING' \
                 OR (fulfilment = 'CLAIMED' AND fulfilment_at < {now})) \
                 ORDER BY updated_at, out_trade_no LIMIT {limit}",
                paid = crate::row::paid_states_sql(),
            )
        };
        let owned_by = {
            let mut p = ph();
            let owner = p.next();
            // The owner matches exactly. MySQL's `owner` has the table's
            // default collation (case-insensitive, trailing spaces ignored):
            // the first comparison can use the index, the second is exact.
            let exact = match dialect {
                Dialect::MySql => {
                    format!(" AND CAST(owner AS BINARY) = CAST({} AS BINARY)", p.next())
                }
                Dialect::Sqlite | Dialect::Postgres => String::new(),
            };
            // Ties go by the order number's bytes, as `OutTradeNo`'s `Ord`
            // has it; PostgreSQL would otherwise use the database's locale.
            let no = match dialect {
                Dialect::Postgres => r#"out_trade_no COLLATE "C""#,
                Dialect::Sqlite | Dialect::MySql => "out_trade_no",
            };
            format!(
                "SELECT {cols} FROM {t} WHERE owner = {owner}{exact} \
                 ORDER BY created_at DESC, {no} DESC LIMIT {limit}",
                limit = p.next(),
            )
        };
        let s = &sessions;
        let session_insert = {
            let mut p = ph();
            format!(
                "INSERT INTO {s} ({}) VALUES ({})",
                SESSION_COLUMNS.join(", "),
                p.list(SESSION_COLUMNS.len())
            )
        };
        let session_get = format!(
            "SELECT {} FROM {s} WHERE token_hash = {}",
            select_list(dialect, &SESSION_COLUMNS),
            ph().next()
        );
        let session_remove = format!("DELETE FROM {s} WHERE token_hash = {}", ph().next());
        let session_purge = format!("DELETE FROM {s} WHERE expires_at <= {}", ph().next());
        Statements {
            dialect,
            table,
            sessions,
            insert,
            get,
            claim,
            complete,
            unfulfilled,
            owned_by,
            session_insert,
            session_get,
            session_remove,
            session_purge,
        }
    }

    /// The compare-and-set: binds `state`, `updated_at`, then each of
    /// `set`'s values, then `out_trade_no`, then `n_from` states.
    pub(crate) fn transition(&self, set: &[&str], n_from: usize) -> String {
        let mut p = Placeholders::new(self.dialect);
        let mut assignments = format!(
            "state = {}, updated_at = {}, version = version + 1",
            p.next(),
            p.next()
        );
        for col in set {
            assignments.push_str(&format!(", {col} = {}", p.next()));
        }
        let no = p.next();
        format!(
            "UPDATE {t} SET {assignments} WHERE out_trade_no = {no} AND state IN ({from})",
            t = self.table,
            from = p.list(n_from),
        )
    }

    /// Binds `n_states` states, the `updated_before` bound, the limit.
    pub(crate) fn list(&self, n_states: usize) -> String {
        let mut p = Placeholders::new(self.dialect);
        let states = p.list(n_states);
        let (before, limit) = (p.next(), p.next());
        format!(
            "SELECT {cols} FROM {t} WHERE state IN ({states}) AND updated_at <= {before} \
             ORDER BY updated_at, out_trade_no LIMIT {limit}",
            cols = select_list(self.dialect, &COLUMNS),
            t = self.table,
        )
    }

    /// The schema DDL, one statement per item.
    pub(crate) fn schema(&self) -> Vec<String> {
        let template = match self.dialect {
            Dialect::Sqlite => include_str!("../migrations/sqlite.sql"),
            Dialect::Postgres => include_str!("../migrations/postgres.sql"),
            Dialect::MySql => include_str!("../migrations/mysql.sql"),
        };
        let without_comments: String = template
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        without_comments
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.replace("{table}", &self.table)
                    .replace("{sessions}", &self.sessions)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_bind_order() {
        let s = Statements::new(Dialect::Postgres, "");
        assert_eq!(
            s.transition(&["prepay_id", "attention"], 2),
            "UPDATE wxpay_orders SET state = $1, updated_at = $2, version = version + 1, \
             prepay_id = $3, attention = $4 WHERE out_trade_no = $5 AND state IN ($6, $7)"
        );
        assert!(s.insert.ends_with("$26)"));
        assert!(s.claim.contains("fulfilment_at = $1") && s.claim.contains("< $3"));
        assert_eq!(
            s.owned_by,
            format!(
                "SELECT {} FROM wxpay_orders WHERE owner = $1 \
                 ORDER BY created_at DESC, out_trade_no COLLATE \"C\" DESC LIMIT $2",
                select_list(Dialect::Postgres, &COLUMNS)
            )
        );
        assert!(!s.owned_by_binds_owner_twice());
        assert_eq!(
            s.session_insert,
            "INSERT INTO wxpay_sessions (token_hash, openid, unionid, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)"
        );
        assert_eq!(
            s.session_get,
            "SELECT token_hash, openid, unionid, created_at, expires_at FROM wxpay_sessions \
             WHERE token_hash = $1"
        );
        assert_eq!(
            s.session_remove,
            "DELETE FROM wxpay_sessions WHERE token_hash = $1"
        );
        assert_eq!(
            s.session_purge,
            "DELETE FROM wxpay_sessions WHERE expires_at <= $1"
        );
    }

    #[test]
    fn mysql_and_sqlite_use_question_marks() {
        let s = Statements::new(Dialect::Sqlite, "p_");
        assert_eq!(
            s.owned_by,
            format!(
                "SELECT {} FROM p_wxpay_orders WHERE owner = ? \
                 ORDER BY created_at DESC, out_trade_no DESC LIMIT ?",
                select_list(Dialect::Sqlite, &COLUMNS)
            )
        );
        assert!(!s.owned_by_binds_owner_twice());
        let s = Statements::new(Dialect::MySql, "p_");
        assert_eq!(
            s.owned_by,
            format!(
                "SELECT {} FROM p_wxpay_orders WHERE owner = ? \
                 AND CAST(owner AS BINARY) = CAST(? AS BINARY) \
                 ORDER BY created_at DESC, out_trade_no DESC LIMIT ?",
                select_list(Dialect::MySql, &COLUMNS)
            )
        );
        assert!(s.owned_by_binds_owner_twice());
        for d in [Dialect::MySql, Dialect::Sqlite] {
            let s = Statements::new(d, "p_");
            assert_eq!(
                s.list(1),
                format!(
                    "SELECT {} FROM p_wxpay_orders WHERE state IN (?) AND updated_at <= ? \
                     ORDER BY updated_at, out_trade_no LIMIT ?",
                    select_list(d, &COLUMNS)
                )
            );
            assert!(!s.insert.contains('$'));
            assert!(
                s.insert
                    .starts_with("INSERT INTO p_wxpay_orders (out_trade_no, state,")
            );
            assert_eq!(
                s.session_insert,
                "INSERT INTO p_wxpay_sessions (token_hash, openid, unionid, created_at, \
                 expires_at) VALUES (?, ?, ?, ?, ?)"
            );
            assert_eq!(
                s.session_get,
                format!(
                    "SELECT {} FROM p_wxpay_sessions WHERE token_hash = ?",
                    select_list(d, &SESSION_COLUMNS)
                )
            );
            assert_eq!(
                s.session_remove,
                "DELETE FROM p_wxpay_sessions WHERE token_hash = ?"
            );
            assert_eq!(
                s.session_purge,
                "DELETE FROM p_wxpay_sessions WHERE expires_at <= ?"
            );
        }
    }

    #[test]
    fn mysql_reads_the_binary_keys_as_text() {
        let s = Statements::new(Dialect::MySql, "");
        assert!(
            s.get
                .starts_with("SELECT CAST(out_trade_no AS CHAR) AS out_trade_no, state, ")
        );
        assert_eq!(
            s.session_get,
            "SELECT CAST(token_hash AS CHAR) AS token_hash, openid, unionid, created_at, \
             expires_at FROM wxpay_sessions WHERE token_hash = ?"
        );
        let sqlite = Statements::new(Dialect::Sqlite, "");
        assert!(sqlite.session_get.starts_with("SELECT token_hash, openid,"));
    }

    #[test]
    fn the_prefix_names_both_tables() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let s = Statements::new(d, "");
            assert_eq!(
                (s.table.as_str(), s.sessions.as_str()),
                ("wxpay_orders", "wxpay_sessions")
            );
            let s = Statements::new(d, "shop_");
            assert_eq!(
                (s.table.as_str(), s.sessions.as_str()),
                ("shop_wxpay_orders", "shop_wxpay_sessions")
            );
        }
    }

    #[test]
    fn schema_splits_into_statements_with_the_table_names() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let s = Statements::new(d, "x_");
            let ddl = s.schema();
            assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS x_wxpay_orders ("));
            assert!(
                ddl.iter().all(|s| !s.contains("{table}")
                    && !s.contains("{sessions}")
                    && !s.contains("--"))
            );
            for col in COLUMNS {
                assert!(
                    ddl[0].contains(&format!("\n    {col} ")),
                    "{d:?} lacks {col}"
                );
            }
            let sessions: Vec<&String> = (ddl.iter())
                .filter(|s| s.starts_with("CREATE TABLE IF NOT EXISTS x_wxpay_sessions ("))
                .collect();
            assert_eq!(sessions.len(), 1, "{d:?}: one sessions table");
            for col in SESSION_COLUMNS {
                assert!(
                    sessions[0].contains(&format!("\n    {col} ")),
                    "{d:?} sessions lack {col}"
                );
            }
            assert!(
                sessions[0].contains("token_hash ") && sessions[0].contains("PRIMARY KEY"),
                "{d:?}"
            );
            // Every index, by name and columns: separate statements except on
            // MySQL, which has no CREATE INDEX IF NOT EXISTS.
            for (table, index, cols) in [
                (
                    "x_wxpay_orders",
                    "x_wxpay_orders_state_updated",
                    "(state, updated_at)",
                ),
                (
                    "x_wxpay_orders",
                    "x_wxpay_orders_fulfilment_updated",
                    "(fulfilment, updated_at)",
                ),
                (
                    "x_wxpay_orders",
                    "x_wxpay_orders_owner_created",
                    "(owner, created_at)",
                ),
                (
                    "x_wxpay_sessions",
                    "x_wxpay_sessions_expires",
                    "(expires_at)",
                ),
            ] {
                let want = match d {
                    Dialect::MySql => format!("INDEX {index} {cols}"),
                    Dialect::Sqlite | Dialect::Postgres => {
                        format!("CREATE INDEX IF NOT EXISTS {index} ON {table} {cols}")
                    }
                };
                assert!(ddl.iter().any(|s| s.contains(&want)), "{d:?} lacks {want}");
            }
            let n = match d {
                Dialect::MySql => 2,
                Dialect::Sqlite | Dialect::Postgres => 6,
            };
            assert_eq!(ddl.len(), n, "{d:?}: {ddl:#?}");
        }
    }

    #[test]
    fn mysql_keys_are_ascii_with_a_binary_collation() {
        let ddl = Statements::new(Dialect::MySql, "").schema();
        assert!(ddl[0].contains(
            "out_trade_no       VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY"
        ));
        assert!(ddl[1].contains(
            "token_hash CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY"
        ));
    }
}
