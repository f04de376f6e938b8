-- wxpay-sqlx schema, PostgreSQL. `{table}` is replaced by the orders table's
-- name, `{refunds}` by the refunds table's, `{sessions}` by the sessions table's.
-- Orders written by a version before the refund ledger are upgraded in place
-- by SqlxStore::migrate (and on first use), after these statements: missing
-- columns (`version`, `refund_ledger`, `api`) are added with ALTER TABLE … ADD COLUMN,
-- then every order with refund_ledger = 0 is converted in one transaction:
--   refunded_fee > 0 and no refund rows → one refund '<out_trade_no>-MIGRATED'
--     of refunded_fee, SUCCESS, source APP, effect DONE (on_refunded ran);
--   pending_refund_no set (a REFUNDING order) → one refund of that number and
--     pending_refund_fee, UNKNOWN (refundquery settles it), source APP;
--   a plain-text attention note → [{"kind":"OTHER","detail":<text>,"at":<updated_at>}];
--   then pending_refund_no / pending_refund_fee are set NULL (the columns stay,
--   unused: drop them once no earlier version runs) and refund_ledger = 1.
-- The store inserts orders with refund_ledger = 1.
-- Times are BIGINT nanoseconds since the Unix epoch (UTC); money is BIGINT fen.
CREATE TABLE IF NOT EXISTS {table} (
    out_trade_no       TEXT    NOT NULL PRIMARY KEY,
    state              TEXT    NOT NULL,
    total_fee          BIGINT  NOT NULL,
    body               TEXT    NOT NULL,
    trade_type         TEXT    NOT NULL,
    openid             TEXT,
    product_id         TEXT,
    attach             TEXT,
    owner              TEXT,
    sign_type          TEXT    NOT NULL,
    api                TEXT    NOT NULL DEFAULT 'V2',
    prepay_id          TEXT,
    code_url           TEXT,
    prepay_expires_at  BIGINT,
    transaction_id     TEXT,
    time_end           TEXT,
    bank_type          TEXT,
    cash_fee           BIGINT,
    refunded_fee       BIGINT  NOT NULL,
    attention          TEXT,
    fulfilment         TEXT    NOT NULL,
    fulfilment_at      BIGINT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    synced_at          BIGINT,
    version            BIGINT  NOT NULL DEFAULT 0,
    refund_ledger      SMALLINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {table}_state_updated ON {table} (state, updated_at);
CREATE INDEX IF NOT EXISTS {table}_fulfilment_updated ON {table} (fulfilment, updated_at);
-- For OrderListing::owned_by (a user's own orders, newest first).
CREATE INDEX IF NOT EXISTS {table}_owner_created ON {table} (owner, created_at);
-- For OrderListing::settled_on (the daily reconciliation: a day's payments).
CREATE INDEX IF NOT EXISTS {table}_time_end ON {table} (time_end);

-- The refund ledger: every refund of an order, read back in `seq` order
-- (oldest first). `effect` / `effect_at` are encoded like the orders'
-- `fulfilment` / `fulfilment_at`.
CREATE TABLE IF NOT EXISTS {refunds} (
    out_refund_no TEXT    NOT NULL PRIMARY KEY,
    out_trade_no  TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    refund_fee    BIGINT  NOT NULL,
    state         TEXT    NOT NULL,
    refund_id     TEXT,
    source        TEXT    NOT NULL,
    effect        TEXT    NOT NULL,
    effect_at     BIGINT ,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS {refunds}_order_seq ON {refunds} (out_trade_no, seq);
-- For OrderListing::unfulfilled (SUCCESS refunds whose effect is claimable).
CREATE INDEX IF NOT EXISTS {refunds}_state_effect ON {refunds} (state, effect, effect_at);
-- For OrderListing::settled_on (a day's successful refunds).
CREATE INDEX IF NOT EXISTS {refunds}_state_updated ON {refunds} (state, updated_at);

-- Sign-in sessions (SessionStore): only the SHA-256 of each bearer token is
-- kept, as 64 lowercase hex characters.
CREATE TABLE IF NOT EXISTS {sessions} (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    openid     TEXT    NOT NULL,
    unionid    TEXT,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
-- For SessionStore::purge_expired.
CREATE INDEX IF NOT EXISTS {sessions}_expires ON {sessions} (expires_at);
