//! Orders and sessions to column values, and rows back to them.

use chrono::{DateTime, Utc};
use wxpay_core::{
    Fen, OutTradeNo, SignType, TradeType,
    flow::{Fulfilment, Order, OrderPatch, OrderState, PendingRefund, SessionRecord, TokenHash},
};

use crate::sql::Val;
use wxpay_core::flow::StoreError;

/// A value this schema cannot hold: an amount above `i64::MAX` fen or a time
/// (of an order or a session) outside 1677–2262 (times are stored as
/// nanoseconds). Reported as [`StoreError::Backend`], before anything is
/// written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is out of the range the store's tables can hold")]
#[non_exhaustive]
pub struct UnstorableValue {
    /// The column.
    pub field: &'static str,
}

impl UnstorableValue {
    pub(crate) fn new(field: &'static str) -> Self {
        UnstorableValue { field }
    }
}

fn unstorable(field: &'static str) -> StoreError {
    StoreError::backend(UnstorableValue::new(field))
}

fn fen(field: &'static str, f: Fen) -> Result<i64, StoreError> {
    i64::try_from(f.get()).map_err(|_| unstorable(field))
}

fn time(field: &'static str, t: DateTime<Utc>) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or_else(|| unstorable(field))
}

fn opt_time(field: &'static str, t: Option<DateTime<Utc>>) -> Result<Val, StoreError> {
    Ok(Val::Int(t.map(|t| time(field, t)).transpose()?))
}

fn opt_fen(field: &'static str, f: Option<Fen>) -> Result<Val, StoreError> {
    Ok(Val::Int(f.map(|f| fen(field, f)).transpose()?))
}

fn text(s: &Option<String>) -> Val {
    Val::Text(s.clone())
}

/// `(fulfilment, fulfilment_at)`.
fn fulfilment(f: Fulfilment) -> Result<[Val; 2], StoreError> {
    let (name, at) = match f {
        Fulfilment::Pending => ("PENDING", None),
        Fulfilment::Claimed { until } => ("CLAIMED", Some(until)),
        Fulfilment::Done { at } => ("DONE", Some(at)),
    };
    Ok([
        Val::Text(Some(name.to_owned())),
        opt_time("fulfilment_at", at)?,
    ])
}

/// `(pending_refund_no, pending_refund_fee)`.
fn pending_refund(p: &Option<PendingRefund>) -> Result<[Val; 2], StoreError> {
    Ok([
        Val::Text(p.as_ref().map(|p| p.out_refund_no.clone())),
        opt_fen("pending_refund_fee", p.as_ref().map(|p| p.refund_fee))?,
    ])
}

/// A lease end or done time as bound in the fulfilment statements.
pub(crate) fn instant(field: &'static str, t: DateTime<Utc>) -> Result<Val, StoreError> {
    Ok(Val::Int(Some(time(field, t)?)))
}

/// A state as bound.
pub(crate) fn state(s: OrderState) -> Val {
    Val::Text(Some(s.as_str().to_owned()))
}

/// The states whose orders `unfulfilled` lists, as an SQL list of literals.
pub(crate) fn paid_states_sql() -> String {
    OrderState::ALL
        .into_iter()
        .filter(|s| s.is_paid())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every column of an order, in [`crate::sql::COLUMNS`] order.
pub(crate) fn order_values(o: &Order) -> Result<Vec<Val>, StoreError> {
    let mut v = vec![
        Val::Text(Some(o.out_trade_no.as_str().to_owned())),
        state(o.state),
        Val::Int(Some(fen("total_fee", o.total_fee)?)),
        Val::Text(Some(o.body.clone())),
        Val::Text(Some(o.trade_type.as_str().to_owned())),
        text(&o.openid),
        text(&o.product_id),
        text(&o.attach),
        text(&o.owner),
        Val::Text(Some(o.sign_type.as_str().to_owned())),
        text(&o.prepay_id),
        text(&o.code_url),
        opt_time("prepay_expires_at", o.prepay_expires_at)?,
        text(&o.transaction_id),
        text(&o.time_end),
        text(&o.bank_type),
        opt_fen("cash_fee", o.cash_fee)?,
        Val::Int(Some(fen("refunded_fee", o.refunded_fee)?)),
    ];
    v.extend(pending_refund(&o.pending_refund)?);
    v.push(text(&o.attention));
    v.extend(fulfilment(o.fulfilment)?);
    v.push(Val::Int(Some(time("created_at", o.created_at)?)));
    v.push(Val::Int(Some(time("updated_at", o.updated_at)?)));
    v.push(opt_time("synced_at", o.synced_at)?);
    debug_assert_eq!(v.len(), crate::sql::COLUMNS.len());
    Ok(v)
}

/// The columns a patch sets and their values (see [`Order::apply`]).
pub(crate) fn patch_values(p: &OrderPatch) -> Result<(Vec<&'static str>, Vec<Val>), StoreError> {
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    let mut set = |col: &'static str, v: Val| {
        cols.push(col);
        vals.push(v);
    };
    macro_rules! texts {
        ($($f:ident),*) => {$( if let Some(v) = &p.$f { set(stringify!($f), text(v)); } )*};
    }
    texts!(
        prepay_id,
        code_url,
        transaction_id,
        time_end,
        bank_type,
        attention
    );
    if let Some(t) = p.prepay_expires_at {
        set("prepay_expires_at", opt_time("prepay_expires_at", t)?);
    }
    if let Some(f) = p.cash_fee {
        set("cash_fee", opt_fen("cash_fee", f)?);
    }
    if let Some(f) = p.refunded_fee {
        set("refunded_fee", Val::Int(Some(fen("refunded_fee", f)?)));
    }
    if let Some(r) = &p.pending_refund {
        let [no, fee] = pending_refund(r)?;
        set("pending_refund_no", no);
        set("pending_refund_fee", fee);
    }
    if let Some(t) = p.synced_at {
        set("synced_at", opt_time("synced_at", t)?);
    }
    Ok((cols, vals))
}

/// A stored row, column for column.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawRow {
    out_trade_no: String,
    state: String,
    total_fee: i64,
    body: String,
    trade_type: String,
    openid: Option<String>,
    product_id: Option<String>,
    attach: Option<String>,
    owner: Option<String>,
    sign_type: String,
    prepay_id: Option<String>,
    code_url: Option<String>,
    prepay_expires_at: Option<i64>,
    transaction_id: Option<String>,
    time_end: Option<String>,
    bank_type: Option<String>,
    cash_fee: Option<i64>,
    refunded_fee: i64,
    pending_refund_no: Option<String>,
    pending_refund_fee: Option<i64>,
    attention: Option<String>,
    fulfilment: String,
    fulfilment_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    synced_at: Option<i64>,
}

fn corrupt(no: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("order {no:?}: {what}"))
}

impl RawRow {
    /// Reads the row as an order.
    pub(crate) fn into_order(self) -> Result<Order, StoreError> {
        let no = self.out_trade_no.clone();
        let fen = |field: &str, v: i64| {
            u64::try_from(v)
                .map(Fen)
                .map_err(|_| corrupt(&no, format!("negative {field} {v}")))
        };
        let t = DateTime::from_timestamp_nanos;
        let fulfilment = match (self.fulfilment.as_str(), self.fulfilment_at) {
            ("PENDING", _) => Fulfilment::Pending,
            ("CLAIMED", Some(at)) => Fulfilment::Claimed { until: t(at) },
            ("DONE", Some(at)) => Fulfilment::Done { at: t(at) },
            (f, at) => return Err(corrupt(&no, format!("fulfilment {f:?} at {at:?}"))),
        };
        let pending_refund = match (self.pending_refund_no, self.pending_refund_fee) {
            (None, None) => None,
            (Some(out_refund_no), Some(fee)) => Some(PendingRefund {
                out_refund_no,
                refund_fee: fen("pending_refund_fee", fee)?,
            }),
            _ => return Err(corrupt(&no, "half a pending refund")),
        };
        Ok(Order {
            out_trade_no: OutTradeNo::new(self.out_trade_no).map_err(|e| corrupt(&no, e))?,
            state: OrderState::parse(&self.state)
                .ok_or_else(|| corrupt(&no, format!("state {:?}", self.state)))?,
            total_fee: fen("total_fee", self.total_fee)?,
            body: self.body,
            trade_type: TradeType::parse(&self.trade_type),
            openid: self.openid,
            product_id: self.product_id,
            attach: self.attach,
            owner: self.owner,
            sign_type: self
                .sign_type
                .parse::<SignType>()
                .map_err(|e| corrupt(&no, e))?,
            prepay_id: self.prepay_id,
            code_url: self.code_url,
            prepay_expires_at: self.prepay_expires_at.map(t),
            transaction_id: self.transaction_id,
            time_end: self.time_end,
            bank_type: self.bank_type,
            cash_fee: self.cash_fee.map(|f| fen("cash_fee", f)).transpose()?,
            refunded_fee: fen("refunded_fee", self.refunded_fee)?,
            pending_refund,
            attention: self.attention,
            fulfilment,
            created_at: t(self.created_at),
            updated_at: t(self.updated_at),
            synced_at: self.synced_at.map(t),
        })
    }
}

/// A session's key as bound: lowercase hex.
pub(crate) fn token_hash(h: &TokenHash) -> Val {
    Val::Text(Some(h.to_hex()))
}

/// Every column of a session, in [`crate::sql::SESSION_COLUMNS`] order.
pub(crate) fn session_values(s: &SessionRecord) -> Result<Vec<Val>, StoreError> {
    let v = vec![
        token_hash(&s.token_hash),
        Val::Text(Some(s.openid.clone())),
        text(&s.unionid),
        Val::Int(Some(time("created_at", s.created_at)?)),
        Val::Int(Some(time("expires_at", s.expires_at)?)),
    ];
    debug_assert_eq!(v.len(), crate::sql::SESSION_COLUMNS.len());
    Ok(v)
}

/// A stored session row, column for column.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawSession {
    token_hash: String,
    openid: String,
    unionid: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl RawSession {
    /// Reads the row as a session record.
    pub(crate) fn into_record(self) -> Result<SessionRecord, StoreError> {
        let token_hash = TokenHash::from_hex(&self.token_hash).ok_or_else(|| {
            // The hash is not secret (only the token is), so it may be shown.
            StoreError::Corrupt(format!("session {:?}: not a token hash", self.token_hash))
        })?;
        let t = DateTime::from_timestamp_nanos;
        Ok(SessionRecord::new(
            token_hash,
            self.openid,
            self.unionid,
            t(self.created_at),
            t(self.expires_at),
        ))
    }
}
