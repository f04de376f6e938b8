-- wxpay-sqlx schema, MySQL / MariaDB. `{table}` is replaced by the orders table's
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
-- Order numbers are case-sensitive, hence the binary collation (sqlx reads
-- binary-collated text as bytes, so the store selects it as CAST(... AS CHAR)).
-- MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB does), so the indexes are
-- declared inside CREATE TABLE. An orders table created before the
-- (owner, created_at) index was added keeps working without it (owned_by then
-- scans); add it by hand if you have one:
--   CREATE INDEX {table}_owner_created ON {table} (owner, created_at);
-- Likewise the indexes of the daily reconciliation (OrderListing::settled_on):
--   CREATE INDEX {table}_time_end ON {table} (time_end);
--   CREATE INDEX {refunds}_state_updated ON {refunds} (state, updated_at);
CREATE TABLE IF NOT EXISTS {table} (
    out_trade_no       VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    state              VARCHAR(32)  NOT NULL,
    total_fee          BIGINT       NOT NULL,
    body               TEXT         NOT NULL,
    trade_type         VARCHAR(32)  NOT NULL,
    openid             VARCHAR(128),
    product_id         VARCHAR(128),
    attach             TEXT,
    owner              VARCHAR(255),
    sign_type          VARCHAR(32)  NOT NULL,
    api                VARCHAR(8)   NOT NULL DEFAULT 'V2',
    prepay_id          VARCHAR(128),
    code_url           TEXT,
    prepay_expires_at  BIGINT,
    transaction_id     VARCHAR(128),
    time_end           VARCHAR(32),
    bank_type          VARCHAR(64),
    cash_fee           BIGINT,
    refunded_fee       BIGINT       NOT NULL,
    attention          TEXT,
    fulfilment         VARCHAR(16)  NOT NULL,
    fulfilment_at      BIGINT,
    created_at         BIGINT       NOT NULL,
    updated_at         BIGINT       NOT NULL,
    synced_at          BIGINT,
    version            BIGINT       NOT NULL DEFAULT 0,
    refund_ledger      SMALLINT     NOT NULL DEFAULT 0,
    INDEX {table}_state_updated (state, updated_at),
    INDEX {table}_fulfilment_updated (fulfilment, updated_at),
    INDEX {table}_owner_created (owner, created_at),
    INDEX {table}_time_end (time_end)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The refund ledger: every refund of an order, read back in `seq` order
-- (oldest first). `effect` / `effect_at` are encoded like the orders'
-- `fulfilment` / `fulfilment_at`.
CREATE TABLE IF NOT EXISTS {refunds} (
    out_refund_no VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    out_trade_no  VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    seq           BIGINT       NOT NULL,
    refund_fee    BIGINT       NOT NULL,
    state         VARCHAR(32)  NOT NULL,
    refund_id     VARCHAR(128),
    source        VARCHAR(16)  NOT NULL,
    effect        VARCHAR(16)  NOT NULL,
    effect_at     BIGINT,
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL,
    UNIQUE INDEX {refunds}_order_seq (out_trade_no, seq),
    INDEX {refunds}_state_effect (state, effect, effect_at),
    INDEX {refunds}_state_updated (state, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Sign-in sessions (SessionStore): only the SHA-256 of each bearer token is
-- kept, as 64 lowercase hex characters (binary collation, read back with
-- CAST(token_hash AS CHAR) like out_trade_no).
CREATE TABLE IF NOT EXISTS {sessions} (
    token_hash CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    openid     VARCHAR(128) NOT NULL,
    unionid    VARCHAR(128),
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    INDEX {sessions}_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
