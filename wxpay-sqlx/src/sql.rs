//! The SQL text, built once per store from one template per statement. The
//! backends differ only in placeholders (`$1` vs `?`) and the schema DDL.

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

/// The columns to select. MySQL's `out_trade_no` has a binary collation
/// (order numbers are case-sensitive), which sqlx would only read as bytes.
fn select_list(dialect: Dialect) -> String {
    let cols = COLUMNS.join(", ");
    match dialect {
        Dialect::MySql => cols.replacen(
            "out_trade_no",
            "CAST(out_trade_no AS CHAR) AS out_trade_no",
            1,
        ),
        Dialect::Sqlite | Dialect::Postgres => cols,
    }
}

/// The statements of one store (one table, one dialect).
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) dialect: Dialect,
    pub(crate) table: String,
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
}

impl Statements {
    pub(crate) fn new(dialect: Dialect, table: String) -> Self {
        let cols = select_list(dialect);
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
        Statements {
            dialect,
            table,
            insert,
            get,
            claim,
            complete,
            unfulfilled,
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
            cols = select_list(self.dialect),
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
            .map(|s| s.replace("{table}", &self.table))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_bind_order() {
        let s = Statements::new(Dialect::Postgres, "wxpay_orders".into());
        assert_eq!(
            s.transition(&["prepay_id", "attention"], 2),
            "UPDATE wxpay_orders SET state = $1, updated_at = $2, version = version + 1, \
             prepay_id = $3, attention = $4 WHERE out_trade_no = $5 AND state IN ($6, $7)"
        );
        assert!(s.insert.ends_with("$26)"));
        assert!(s.claim.contains("fulfilment_at = $1") && s.claim.contains("< $3"));
    }

    #[test]
    fn mysql_and_sqlite_use_question_marks() {
        for d in [Dialect::MySql, Dialect::Sqlite] {
            let s = Statements::new(d, "p_wxpay_orders".into());
            assert_eq!(
                s.list(1),
                format!(
                    "SELECT {} FROM p_wxpay_orders WHERE state IN (?) AND updated_at <= ? \
                     ORDER BY updated_at, out_trade_no LIMIT ?",
                    select_list(d)
                )
            );
            assert!(!s.insert.contains('$'));
            assert!(
                s.insert
                    .starts_with("INSERT INTO p_wxpay_orders (out_trade_no, state,")
            );
        }
    }

    #[test]
    fn schema_splits_into_statements_with_the_table_name() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let s = Statements::new(d, "x_wxpay_orders".into());
            let ddl = s.schema();
            assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS x_wxpay_orders ("));
            assert!(
                ddl.iter()
                    .all(|s| !s.contains("{table}") && !s.contains("--"))
            );
            for col in COLUMNS {
                assert!(
                    ddl[0].contains(&format!("\n    {col} ")),
                    "{d:?} lacks {col}"
                );
            }
        }
    }
}
