-- wxpay-sqlx schema, SQLite. `{table}` is replaced by the orders table's
-- name, `{sessions}` by the sessions table's.
-- Times are INTEGER nanoseconds since the Unix epoch (UTC); money is INTEGER fen.
CREATE TABLE IF NOT EXISTS {table} (
    out_trade_no       TEXT    NOT NULL PRIMARY KEY,
    state              TEXT    NOT NULL,
    total_fee          INTEGER NOT NULL,
    body               TEXT    NOT NULL,
    trade_type         TEXT    NOT NULL,
    openid             TEXT,
    product_id         TEXT,
    attach             TEXT,
    owner              TEXT,
    sign_type          TEXT    NOT NULL,
    prepay_id          TEXT,
    code_url           TEXT,
    prepay_expires_at  INTEGER,
    transaction_id     TEXT,
    time_end           TEXT,
    bank_type          TEXT,
    cash_fee           INTEGER,
    refunded_fee       INTEGER NOT NULL,
    pending_refund_no  TEXT,
    pending_refund_fee INTEGER,
    attention          TEXT,
    fulfilment         TEXT    NOT NULL,
    fulfilment_at      INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    synced_at          INTEGER,
    version            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {table}_state_updated ON {table} (state, updated_at);
CREATE INDEX IF NOT EXISTS {table}_fulfilment_updated ON {table} (fulfilment, updated_at);
-- For OrderListing::owned_by (a user's own orders, newest first).
CREATE INDEX IF NOT EXISTS {table}_owner_created ON {table} (owner, created_at);

-- Sign-in sessions (SessionStore): only the SHA-256 of each bearer token is
-- kept, as 64 lowercase hex characters.
CREATE TABLE IF NOT EXISTS {sessions} (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    openid     TEXT    NOT NULL,
    unionid    TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
-- For SessionStore::purge_expired.
CREATE INDEX IF NOT EXISTS {sessions}_expires ON {sessions} (expires_at);
