//! The SQL text, built once per store from one template per statement. The
//! backends differ only in placeholders (`$1` vs `?`), how binary-collated
//! keys are selected on MySQL, how `owned_by` compares and orders text
//! exactly on MySQL and PostgreSQL, and the schema DDL.

use sqlx::{Database, Encode, Type, query::Query};

/// The SQL flavour. Every dialect is always compiled (it is text): only
/// the drivers depend on the backend features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(all(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// Every column of the orders table the store reads and writes, in the
/// order [`crate::row`] writes them on insert. (`refund_ledger` is written
/// as `1` on insert and never read; the legacy `pending_refund_*` columns
/// of upgraded tables are never touched after the upgrade.)
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
    "api",
    "prepay_id",
    "code_url",
    "prepay_expires_at",
    "transaction_id",
    "time_end",
    "bank_type",
    "cash_fee",
    "refunded_fee",
    "attention",
    "fulfilment",
    "fulfilment_at",
    "version",
    "created_at",
    "updated_at",
    "synced_at",
];

/// Every column of the refunds table, in the order [`crate::row`] writes
/// them on insert.
pub(crate) const REFUND_COLUMNS: [&str; 11] = [
    "out_refund_no",
    "out_trade_no",
    "seq",
    "refund_fee",
    "state",
    "refund_id",
    "source",
    "effect",
    "effect_at",
    "created_at",
    "updated_at",
];

/// The refund columns a ledger update sets, in bind order (then
/// `out_refund_no`, `out_trade_no`).
pub(crate) const REFUND_FIELDS: [&str; 8] = [
    "refund_fee",
    "state",
    "refund_id",
    "source",
    "effect",
    "effect_at",
    "created_at",
    "updated_at",
];

/// The refund columns read with an order, each selected as `r_<column>`
/// (NULL for an order without refunds).
const REFUND_READ: [&str; 9] = [
    "out_refund_no",
    "refund_fee",
    "state",
    "refund_id",
    "source",
    "effect",
    "effect_at",
    "created_at",
    "updated_at",
];

/// The columns an upgrade adds to an orders table made by an earlier
/// version when they are missing: name and type per dialect (SQLite,
/// PostgreSQL, MySQL).
pub(crate) const ADDED_COLUMNS: [(&str, [&str; 3]); 3] = [
    (
        "version",
        [
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    (
        "refund_ledger",
        [
            "INTEGER NOT NULL DEFAULT 0",
            "SMALLINT NOT NULL DEFAULT 0",
            "SMALLINT NOT NULL DEFAULT 0",
        ],
    ),
    // Orders of a version before API v3 were all made with v2.
    (
        "api",
        [
            "TEXT NOT NULL DEFAULT 'V2'",
            "TEXT NOT NULL DEFAULT 'V2'",
            "VARCHAR(8) NOT NULL DEFAULT 'V2'",
        ],
    ),
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

/// The select list of an order joined with its refunds: the orders'
/// columns from `o` under their own names, the refunds' from `r` as
/// `r_<column>` (MySQL reads both binary-collated keys as text).
fn joined_list(dialect: Dialect) -> String {
    let cast = |col: String, alias: &str| match dialect {
        Dialect::MySql => format!("CAST({col} AS CHAR) AS {alias}"),
        Dialect::Sqlite | Dialect::Postgres => format!("{col} AS {alias}"),
    };
    let orders = COLUMNS.iter().map(|c| match *c {
        "out_trade_no" => cast(format!("o.{c}"), c),
        _ => format!("o.{c} AS {c}"),
    });
    let refunds = REFUND_READ.iter().map(|c| match *c {
        "out_refund_no" => cast(format!("r.{c}"), &format!("r_{c}")),
        _ => format!("r.{c} AS r_{c}"),
    });
    orders.chain(refunds).collect::<Vec<_>>().join(", ")
}

/// The statements of one store (one dialect, one table prefix).
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) dialect: Dialect,
    /// The orders table, `<prefix>wxpay_orders`.
    pub(crate) table: String,
    /// The refunds table, `<prefix>wxpay_refunds`.
    pub(crate) refunds: String,
    /// The sessions table, `<prefix>wxpay_sessions`.
    pub(crate) sessions: String,
    /// Binds every column of [`COLUMNS`].
    pub(crate) insert: String,
    /// Binds every column of [`REFUND_COLUMNS`].
    pub(crate) refund_insert: String,
    /// Binds every column of [`REFUND_FIELDS`], then `out_refund_no`, `out_trade_no`.
    pub(crate) refund_update: String,
    /// Binds `attention`, `out_trade_no`.
    pub(crate) attention_update: String,
    /// Binds `out_trade_no`; the order joined with its refunds, oldest first.
    pub(crate) get: String,
    /// Binds the lease end, `out_trade_no`, now.
    pub(crate) claim: String,
    /// Binds the done time, `out_trade_no`, the claim's lease end.
    pub(crate) complete: String,
    /// Binds now, now, limit.
    pub(crate) unfulfilled: String,
    /// Binds owner, limit; on MySQL owner, owner, limit (see
    /// [`Statements::owned_by_binds_owner_twice`]).
    pub(crate) owned_by: String,
    /// Binds after, time_end from, time_end to, refunds from, refunds to,
    /// limit.
    pub(crate) settled_on: String,
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

    /// The statements on the tables `<prefix>wxpay_orders`,
    /// `<prefix>wxpay_refunds` and `<prefix>wxpay_sessions`. The prefix is
    /// validated by the caller.
    pub(crate) fn new(dialect: Dialect, prefix: &str) -> Self {
        let table = format!("{prefix}{}", crate::TABLE);
        let refunds = format!("{prefix}{}", crate::REFUNDS_TABLE);
        let sessions = format!("{prefix}{}", crate::SESSIONS_TABLE);
        let (t, r) = (&table, &refunds);
        let ph = || Placeholders::new(dialect);
        // `from` is the orders (a table or a derived table), named `o`.
        let joined = |from: &str, order_by: &str| {
            format!(
                "SELECT {} FROM {from} LEFT JOIN {r} r ON r.out_trade_no = o.out_trade_no \
                 ORDER BY {order_by}",
                joined_list(dialect)
            )
        };
        let insert = {
            let mut p = ph();
            format!(
                "INSERT INTO {t} ({}, refund_ledger) VALUES ({}, 1)",
                COLUMNS.join(", "),
                p.list(COLUMNS.len())
            )
        };
        let refund_insert = {
            let mut p = ph();
            format!(
                "INSERT INTO {r} ({}) VALUES ({})",
                REFUND_COLUMNS.join(", "),
                p.list(REFUND_COLUMNS.len())
            )
        };
        let refund_update = {
            let mut p = ph();
            let set: Vec<String> = (REFUND_FIELDS.iter())
                .map(|c| format!("{c} = {}", p.next()))
                .collect();
            format!(
                "UPDATE {r} SET {} WHERE out_refund_no = {} AND out_trade_no = {}",
                set.join(", "),
                p.next(),
                p.next()
            )
        };
        let attention_update = {
            let mut p = ph();
            format!(
                "UPDATE {t} SET attention = {} WHERE out_trade_no = {}",
                p.next(),
                p.next()
            )
        };
        let get = {
            let no = ph().next();
            format!(
                "SELECT {} FROM {t} o LEFT JOIN {r} r ON r.out_trade_no = o.out_trade_no \
                 WHERE o.out_trade_no = {no} ORDER BY r.seq",
                joined_list(dialect)
            )
        };
        let claim = {
            let mut p = ph();
            let (until, no, now) = (p.next(), p.next(), p.next());
            format!(
                "UPDATE {t} SET fulfilment = 'CLAIMED', fulfilment_at = {until}, \
                 version = version + 1 WHERE out_trade_no = {no} AND state = 'PAID' \
                 AND (fulfilment = 'PENDING' OR (fulfilment = 'CLAIMED' AND fulfilment_at < {now}))"
            )
        };
        let complete = {
            let mut p = ph();
            let (at, no, until) = (p.next(), p.next(), p.next());
            format!(
                "UPDATE {t} SET fulfilment = 'DONE', fulfilment_at = {at}, \
                 version = version + 1 WHERE out_trade_no = {no} \
                 AND fulfilment = 'CLAIMED' AND fulfilment_at = {until}"
            )
        };
        let unfulfilled = {
            let mut p = ph();
            let (now, now2, limit) = (p.next(), p.next(), p.next());
            // Each half of the union can use an index: the orders'
            // (fulfilment, updated_at), the refunds' (state, effect, effect_at).
            joined(
                &format!(
                    "(SELECT * FROM {t} WHERE out_trade_no IN (\
                     SELECT out_trade_no FROM {t} WHERE state = 'PAID' AND (fulfilment = 'PENDING' \
                     OR (fulfilment = 'CLAIMED' AND fulfilment_at < {now})) \
                     UNION SELECT out_trade_no FROM {r} WHERE state = 'SUCCESS' AND (effect = 'PENDING' \
                     OR (effect = 'CLAIMED' AND effect_at < {now2}))) \
                     ORDER BY updated_at, out_trade_no LIMIT {limit}) o"
                ),
                "o.updated_at, o.out_trade_no, r.seq",
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
            let collate = match dialect {
                Dialect::Postgres => r#" COLLATE "C""#,
                Dialect::Sqlite | Dialect::MySql => "",
            };
            joined(
                &format!(
                    "(SELECT * FROM {t} WHERE owner = {owner}{exact} \
                     ORDER BY created_at DESC, out_trade_no{collate} DESC LIMIT {limit}) o",
                    limit = p.next(),
                ),
                &format!("o.created_at DESC, o.out_trade_no{collate} DESC, r.seq"),
            )
        };
        let settled_on = {
            let mut p = ph();
            // Byte order of order numbers, as `OutTradeNo`'s `Ord` (and the
            // keyset paging) has it.
            let collate = match dialect {
                Dialect::Postgres => r#" COLLATE "C""#,
                Dialect::Sqlite | Dialect::MySql => "",
            };
            let (after, te_from, te_to, r_from, r_to, limit) =
                (p.next(), p.next(), p.next(), p.next(), p.next(), p.next());
            joined(
                &format!(
                    "(SELECT * FROM {t} WHERE out_trade_no{collate} > {after} \
                     AND ((time_end >= {te_from} AND time_end < {te_to}) \
                     OR out_trade_no IN (SELECT out_trade_no FROM {r} WHERE state = 'SUCCESS' \
                     AND updated_at >= {r_from} AND updated_at < {r_to})) \
                     ORDER BY out_trade_no{collate} LIMIT {limit}) o"
                ),
                &format!("o.out_trade_no{collate}, r.seq"),
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
            refunds,
            sessions,
            insert,
            refund_insert,
            refund_update,
            attention_update,
            get,
            claim,
            complete,
            unfulfilled,
            owned_by,
            settled_on,
            session_insert,
            session_get,
            session_remove,
            session_purge,
        }
    }

    /// The compare-and-set: binds `state`, `updated_at`, then each of
    /// `set`'s values, then `out_trade_no`, the `from` state, the version.
    pub(crate) fn transition(&self, set: &[&str]) -> String {
        let mut p = Placeholders::new(self.dialect);
        let mut assignments = format!(
            "state = {}, updated_at = {}, version = version + 1",
            p.next(),
            p.next()
        );
        for col in set {
            assignments.push_str(&format!(", {col} = {}", p.next()));
        }
        format!(
            "UPDATE {t} SET {assignments} WHERE out_trade_no = {} AND state = {} AND version = {}",
            p.next(),
            p.next(),
            p.next(),
            t = self.table,
        )
    }

    /// Binds `n_states` states, the `updated_before` bound, the limit.
    pub(crate) fn list(&self, n_states: usize) -> String {
        let mut p = Placeholders::new(self.dialect);
        let states = p.list(n_states);
        let (before, limit) = (p.next(), p.next());
        format!(
            "SELECT {cols} FROM (SELECT * FROM {t} WHERE state IN ({states}) \
             AND updated_at <= {before} ORDER BY updated_at, out_trade_no LIMIT {limit}) o \
             LEFT JOIN {r} r ON r.out_trade_no = o.out_trade_no \
             ORDER BY o.updated_at, o.out_trade_no, r.seq",
            cols = joined_list(self.dialect),
            t = self.table,
            r = self.refunds,
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
                    .replace("{refunds}", &self.refunds)
                    .replace("{sessions}", &self.sessions)
            })
            .collect()
    }

    /// The names of the orders table's columns (one text column).
    pub(crate) fn columns(&self) -> String {
        let t = &self.table;
        match self.dialect {
            Dialect::Sqlite => format!("SELECT name FROM pragma_table_info('{t}')"),
            Dialect::Postgres => format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = lower('{t}')"
            ),
            Dialect::MySql => format!(
                "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = '{t}'"
            ),
        }
    }

    /// `ALTER TABLE … ADD COLUMN` for one of [`ADDED_COLUMNS`].
    pub(crate) fn add_column(&self, name: &str, types: &[&str; 3]) -> String {
        let ty = match self.dialect {
            Dialect::Sqlite => types[0],
            Dialect::Postgres => types[1],
            Dialect::MySql => types[2],
        };
        format!("ALTER TABLE {} ADD COLUMN {name} {ty}", self.table)
    }

    /// The upgrade's data move for orders written before the refund ledger
    /// (`refund_ledger = 0`), in order; `pending` whether the table has the
    /// earlier version's `pending_refund_*` columns. The plain-text
    /// attention notes are rewritten in between (see
    /// [`Statements::legacy_attention`]), before the last statement marks
    /// the rows done.
    pub(crate) fn upgrade(&self, pending: bool) -> (Vec<String>, String) {
        let (t, r) = (&self.table, &self.refunds);
        let migrated_no = match self.dialect {
            Dialect::MySql => "CONCAT(out_trade_no, '-MIGRATED')",
            Dialect::Sqlite | Dialect::Postgres => "out_trade_no || '-MIGRATED'",
        };
        let cols = REFUND_COLUMNS.join(", ");
        // The refunds it made already (one row: their sum, `on_refunded`
        // ran once for them), then the one in flight (its outcome unknown
        // to us: refundquery settles it).
        let mut moves = vec![format!(
            "INSERT INTO {r} ({cols}) SELECT {migrated_no}, out_trade_no, 0, refunded_fee, \
             'SUCCESS', NULL, 'APP', 'DONE', updated_at, updated_at, updated_at FROM {t} o \
             WHERE refund_ledger = 0 AND refunded_fee > 0 \
             AND NOT EXISTS (SELECT 1 FROM {r} x WHERE x.out_trade_no = o.out_trade_no)"
        )];
        if pending {
            moves.push(format!(
                "INSERT INTO {r} ({cols}) SELECT pending_refund_no, out_trade_no, \
                 (SELECT COUNT(*) FROM {r} x WHERE x.out_trade_no = o.out_trade_no), \
                 pending_refund_fee, 'UNKNOWN', NULL, 'APP', 'PENDING', NULL, updated_at, updated_at \
                 FROM {t} o WHERE refund_ledger = 0 AND pending_refund_no IS NOT NULL"
            ));
        }
        let clear = if pending {
            "pending_refund_no = NULL, pending_refund_fee = NULL, "
        } else {
            ""
        };
        let done = format!("UPDATE {t} SET {clear}refund_ledger = 1 WHERE refund_ledger = 0");
        (moves, done)
    }

    /// The attention notes of orders not upgraded yet: `out_trade_no`,
    /// `attention`, `updated_at`.
    pub(crate) fn legacy_attention(&self) -> String {
        let no = match self.dialect {
            Dialect::MySql => "CAST(out_trade_no AS CHAR) AS out_trade_no",
            Dialect::Sqlite | Dialect::Postgres => "out_trade_no",
        };
        format!(
            "SELECT {no}, attention, updated_at FROM {} \
             WHERE refund_ledger = 0 AND attention IS NOT NULL",
            self.table
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_bind_order() {
        let s = Statements::new(Dialect::Postgres, "");
        assert_eq!(
            s.transition(&["prepay_id", "fulfilment"]),
            "UPDATE wxpay_orders SET state = $1, updated_at = $2, version = version + 1, \
             prepay_id = $3, fulfilment = $4 WHERE out_trade_no = $5 AND state = $6 \
             AND version = $7"
        );
        assert!(s.insert.ends_with("$26, 1)"));
        assert!(s.refund_insert.ends_with("$11)"));
        assert!(
            s.refund_update
                .ends_with("WHERE out_refund_no = $9 AND out_trade_no = $10")
        );
        assert!(s.claim.contains("fulfilment_at = $1") && s.claim.contains("< $3"));
        assert!(s.claim.contains("AND state = 'PAID'"));
        assert!(
            s.complete
                .ends_with("AND fulfilment = 'CLAIMED' AND fulfilment_at = $3")
        );
        assert!(s.unfulfilled.contains("effect_at < $2") && s.unfulfilled.contains("LIMIT $3"));
        assert_eq!(
            s.owned_by,
            format!(
                "SELECT {} FROM (SELECT * FROM wxpay_orders WHERE owner = $1 \
                 ORDER BY created_at DESC, out_trade_no COLLATE \"C\" DESC LIMIT $2) o \
                 LEFT JOIN wxpay_refunds r ON r.out_trade_no = o.out_trade_no \
                 ORDER BY o.created_at DESC, o.out_trade_no COLLATE \"C\" DESC, r.seq",
                joined_list(Dialect::Postgres)
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
                "SELECT {} FROM (SELECT * FROM p_wxpay_orders WHERE owner = ? \
                 ORDER BY created_at DESC, out_trade_no DESC LIMIT ?) o \
                 LEFT JOIN p_wxpay_refunds r ON r.out_trade_no = o.out_trade_no \
                 ORDER BY o.created_at DESC, o.out_trade_no DESC, r.seq",
                joined_list(Dialect::Sqlite)
            )
        );
        assert!(!s.owned_by_binds_owner_twice());
        let s = Statements::new(Dialect::MySql, "p_");
        assert!(s.owned_by.contains(
            "WHERE owner = ? AND CAST(owner AS BINARY) = CAST(? AS BINARY) \
             ORDER BY created_at DESC, out_trade_no DESC LIMIT ?) o"
        ));
        assert!(s.owned_by_binds_owner_twice());
        for d in [Dialect::MySql, Dialect::Sqlite] {
            let s = Statements::new(d, "p_");
            assert_eq!(
                s.list(1),
                format!(
                    "SELECT {} FROM (SELECT * FROM p_wxpay_orders WHERE state IN (?) \
                     AND updated_at <= ? ORDER BY updated_at, out_trade_no LIMIT ?) o \
                     LEFT JOIN p_wxpay_refunds r ON r.out_trade_no = o.out_trade_no \
                     ORDER BY o.updated_at, o.out_trade_no, r.seq",
                    joined_list(d)
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
        assert!(s.get.starts_with(
            "SELECT CAST(o.out_trade_no AS CHAR) AS out_trade_no, o.state AS state, "
        ));
        assert!(s.get.contains(
            ", CAST(r.out_refund_no AS CHAR) AS r_out_refund_no, r.refund_fee AS r_refund_fee"
        ));
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
                (s.table.as_str(), s.refunds.as_str(), s.sessions.as_str()),
                ("wxpay_orders", "wxpay_refunds", "wxpay_sessions")
            );
            let s = Statements::new(d, "shop_");
            assert_eq!(
                (s.table.as_str(), s.refunds.as_str(), s.sessions.as_str()),
                (
                    "shop_wxpay_orders",
                    "shop_wxpay_refunds",
                    "shop_wxpay_sessions"
                )
            );
        }
    }

    #[test]
    fn schema_splits_into_statements_with_the_table_names() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let s = Statements::new(d, "x_");
            let ddl = s.schema();
            assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS x_wxpay_orders ("));
            assert!(ddl.iter().all(|s| !s.contains("{table}")
                && !s.contains("{refunds}")
                && !s.contains("{sessions}")
                && !s.contains("--")));
            for col in COLUMNS.into_iter().chain(ADDED_COLUMNS.map(|(c, _)| c)) {
                assert!(
                    ddl[0].contains(&format!("\n    {col} ")),
                    "{d:?} lacks {col}"
                );
            }
            assert!(!ddl[0].contains("pending_refund"), "{d:?}");
            let refunds: Vec<&String> = (ddl.iter())
                .filter(|s| s.starts_with("CREATE TABLE IF NOT EXISTS x_wxpay_refunds ("))
                .collect();
            assert_eq!(refunds.len(), 1, "{d:?}: one refunds table");
            for col in REFUND_COLUMNS {
                assert!(
                    refunds[0].contains(&format!("\n    {col} ")),
                    "{d:?} refunds lack {col}"
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
                (
                    "x_wxpay_refunds",
                    "x_wxpay_refunds_order_seq",
                    "(out_trade_no, seq)",
                ),
                (
                    "x_wxpay_refunds",
                    "x_wxpay_refunds_state_effect",
                    "(state, effect, effect_at)",
                ),
                ("x_wxpay_orders", "x_wxpay_orders_time_end", "(time_end)"),
                (
                    "x_wxpay_refunds",
                    "x_wxpay_refunds_state_updated",
                    "(state, updated_at)",
                ),
            ] {
                let unique = if index.ends_with("order_seq") {
                    "UNIQUE "
                } else {
                    ""
                };
                let want = match d {
                    Dialect::MySql => format!("{unique}INDEX {index} {cols}"),
                    Dialect::Sqlite | Dialect::Postgres => {
                        format!("CREATE {unique}INDEX IF NOT EXISTS {index} ON {table} {cols}")
                    }
                };
                assert!(ddl.iter().any(|s| s.contains(&want)), "{d:?} lacks {want}");
            }
            let n = match d {
                Dialect::MySql => 3,
                Dialect::Sqlite | Dialect::Postgres => 11,
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
            "out_refund_no VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY"
        ));
        assert!(ddl[1].contains(
            "out_trade_no  VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
        ));
        assert!(ddl[2].contains(
            "token_hash CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY"
        ));
    }
}
