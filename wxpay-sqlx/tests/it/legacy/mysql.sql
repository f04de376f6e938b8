-- wxpay-sqlx schema, MySQL / MariaDB. `{table}` is replaced by the orders table's
-- name, `{sessions}` by the sessions table's.
-- Times are BIGINT nanoseconds since the Unix epoch (UTC); money is BIGINT fen.
-- Order numbers are case-sensitive, hence the binary collation (sqlx reads
-- binary-collated text as bytes, so the store selects it as CAST(... AS CHAR)).
-- MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB does), so the indexes are
-- declared inside CREATE TABLE. An orders table created before the
-- (owner, created_at) index was added keeps working without it (owned_by then
-- scans); add it by hand if you have one:
--   CREATE INDEX {table}_owner_created ON {table} (owner, created_at);
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
    prepay_id          VARCHAR(128),
    code_url           TEXT,
    prepay_expires_at  BIGINT,
    transaction_id     VARCHAR(128),
    time_end           VARCHAR(32),
    bank_type          VARCHAR(64),
    cash_fee           BIGINT,
    refunded_fee       BIGINT       NOT NULL,
    pending_refund_no  VARCHAR(128),
    pending_refund_fee BIGINT,
    attention          TEXT,
    fulfilment         VARCHAR(16)  NOT NULL,
    fulfilment_at      BIGINT,
    created_at         BIGINT       NOT NULL,
    updated_at         BIGINT       NOT NULL,
    synced_at          BIGINT,
    version            BIGINT       NOT NULL DEFAULT 0,
    INDEX {table}_state_updated (state, updated_at),
    INDEX {table}_fulfilment_updated (fulfilment, updated_at),
    INDEX {table}_owner_created (owner, created_at)
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
