//! Orders and sessions to column values, and rows back to them.

use chrono::{DateTime, Utc};
use wxpay_core::{
    Fen, OutTradeNo, SignType, TradeType,
    flow::{
        Api, Attention, AttentionKind, Fulfilment, Order, OrderPatch, OrderState, Refund,
        RefundSource, RefundState, SessionRecord, TokenHash,
    },
};

use crate::sql::Val;
use wxpay_core::flow::StoreError;

/// A value this schema cannot hold: an amount above `i64::MAX` fen or a time
/// (of an order or a session) outside 1677–2262 (times are stored as
/// nanoseconds). Reported as [`StoreError::Invalid`] with this error's
/// message, before anything is written.
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

pub(crate) fn unstorable(field: &'static str) -> StoreError {
    StoreError::Invalid(UnstorableValue::new(field).to_string())
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

/// `(fulfilment, fulfilment_at)`, or a refund's `(effect, effect_at)`.
fn fulfilment(field: &'static str, f: Fulfilment) -> Result<[Val; 2], StoreError> {
    let (name, at) = match f {
        Fulfilment::Pending => ("PENDING", None),
        Fulfilment::Claimed { until } => ("CLAIMED", Some(until)),
        Fulfilment::Done { at } => ("DONE", Some(at)),
        Fulfilment::Held => ("HELD", None),
    };
    Ok([Val::Text(Some(name.to_owned())), opt_time(field, at)?])
}

/// Reads `(fulfilment, fulfilment_at)` (or `(effect, effect_at)`).
fn fulfilment_of(name: &str, at: Option<i64>) -> Option<Fulfilment> {
    let t = DateTime::from_timestamp_nanos;
    Some(match (name, at) {
        ("PENDING", _) => Fulfilment::Pending,
        ("CLAIMED", Some(at)) => Fulfilment::Claimed { until: t(at) },
        ("DONE", Some(at)) => Fulfilment::Done { at: t(at) },
        ("HELD", _) => Fulfilment::Held,
        _ => return None,
    })
}

/// The attention cases as stored: JSON, NULL for none.
pub(crate) fn attention(a: &[Attention]) -> Result<Val, StoreError> {
    if a.is_empty() {
        return Ok(Val::Text(None));
    }
    serde_json::to_string(a)
        .map(|s| Val::Text(Some(s)))
        .map_err(|e| StoreError::Invalid(format!("attention: {e}")))
}

/// Reads the attention column: a JSON array, or (written by a version
/// before the refund ledger) a plain-text note, which reads as one `Other`
/// case recorded at `updated_at`.
pub(crate) fn attention_of(text: Option<&str>, updated_at: i64) -> Vec<Attention> {
    match text {
        None => Vec::new(),
        Some(s) => match serde_json::from_str::<Vec<Attention>>(s) {
            Ok(v) if s.trim_start().starts_with('[') => v,
            _ => vec![Attention::new(
                AttentionKind::Other,
                s,
                DateTime::from_timestamp_nanos(updated_at),
            )],
        },
    }
}

/// A refund's [`crate::sql::REFUND_FIELDS`].
pub(crate) fn refund_fields(r: &Refund) -> Result<Vec<Val>, StoreError> {
    let mut v = vec![
        Val::Int(Some(fen("refund_fee", r.refund_fee)?)),
        Val::Text(Some(r.state.as_str().to_owned())),
        text(&r.refund_id),
        Val::Text(Some(r.source.as_str().to_owned())),
    ];
    v.extend(fulfilment("effect_at", r.effect)?);
    v.push(Val::Int(Some(time("refund created_at", r.created_at)?)));
    v.push(Val::Int(Some(time("refund updated_at", r.updated_at)?)));
    debug_assert_eq!(v.len(), crate::sql::REFUND_FIELDS.len());
    Ok(v)
}

/// Every column of refund `r` of order `no` at position `seq`, in
/// [`crate::sql::REFUND_COLUMNS`] order, given its [`refund_fields`].
pub(crate) fn refund_values(r: &Refund, no: &OutTradeNo, seq: usize, fields: &[Val]) -> Vec<Val> {
    let mut v = vec![
        Val::Text(Some(r.out_refund_no.clone())),
        Val::Text(Some(no.as_str().to_owned())),
        Val::Int(Some(i64::try_from(seq).unwrap_or(i64::MAX))),
    ];
    v.extend_from_slice(fields);
    debug_assert_eq!(v.len(), crate::sql::REFUND_COLUMNS.len());
    v
}

/// A lease end or done time as bound in the fulfilment statements.
pub(crate) fn instant(field: &'static str, t: DateTime<Utc>) -> Result<Val, StoreError> {
    Ok(Val::Int(Some(time(field, t)?)))
}

/// A state as bound.
pub(crate) fn state(s: OrderState) -> Val {
    Val::Text(Some(s.as_str().to_owned()))
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
        Val::Text(Some(o.api.as_str().to_owned())),
        text(&o.prepay_id),
        text(&o.code_url),
        opt_time("prepay_expires_at", o.prepay_expires_at)?,
        text(&o.transaction_id),
        text(&o.time_end),
        text(&o.bank_type),
        opt_fen("cash_fee", o.cash_fee)?,
        Val::Int(Some(fen("refunded_fee", o.refunded_fee)?)),
    ];
    v.push(attention(&o.attention)?);
    v.extend(fulfilment("fulfilment_at", o.fulfilment)?);
    v.push(Val::Int(Some(
        i64::try_from(o.version).map_err(|_| unstorable("version"))?,
    )));
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
    texts!(prepay_id, code_url, transaction_id, time_end, bank_type);
    if let Some(t) = p.prepay_expires_at {
        set("prepay_expires_at", opt_time("prepay_expires_at", t)?);
    }
    if let Some(f) = p.cash_fee {
        set("cash_fee", opt_fen("cash_fee", f)?);
    }
    if let Some(f) = p.refunded_fee {
        set("refunded_fee", Val::Int(Some(fen("refunded_fee", f)?)));
    }
    if let Some(f) = p.fulfilment {
        let [name, at] = fulfilment("fulfilment_at", f)?;
        set("fulfilment", name);
        set("fulfilment_at", at);
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
    api: String,
    prepay_id: Option<String>,
    code_url: Option<String>,
    prepay_expires_at: Option<i64>,
    transaction_id: Option<String>,
    time_end: Option<String>,
    bank_type: Option<String>,
    cash_fee: Option<i64>,
    refunded_fee: i64,
    attention: Option<String>,
    fulfilment: String,
    fulfilment_at: Option<i64>,
    version: i64,
    created_at: i64,
    updated_at: i64,
    synced_at: Option<i64>,
}

fn corrupt(no: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("order {no:?}: {what}"))
}

impl RawRow {
    /// The order number.
    pub(crate) fn no(&self) -> &str {
        &self.out_trade_no
    }

    /// Reads the row as an order (without its refunds).
    pub(crate) fn into_order(self) -> Result<Order, StoreError> {
        let no = self.out_trade_no.clone();
        let fen = |field: &str, v: i64| {
            u64::try_from(v)
                .map(Fen)
                .map_err(|_| corrupt(&no, format!("negative {field} {v}")))
        };
        let t = DateTime::from_timestamp_nanos;
        let fulfilment = fulfilment_of(&self.fulfilment, self.fulfilment_at).ok_or_else(|| {
            corrupt(
                &no,
                format!(
                    "fulfilment {:?} at {:?}",
                    self.fulfilment, self.fulfilment_at
                ),
            )
        })?;
        let attention = attention_of(self.attention.as_deref(), self.updated_at);
        let version = u64::try_from(self.version)
            .map_err(|_| corrupt(&no, format!("negative version {}", self.version)))?;
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
            api: Api::parse(&self.api)
                .ok_or_else(|| corrupt(&no, format!("api {:?}", self.api)))?,
            prepay_id: self.prepay_id,
            code_url: self.code_url,
            prepay_expires_at: self.prepay_expires_at.map(t),
            transaction_id: self.transaction_id,
            time_end: self.time_end,
            bank_type: self.bank_type,
            cash_fee: self.cash_fee.map(|f| fen("cash_fee", f)).transpose()?,
            refunded_fee: fen("refunded_fee", self.refunded_fee)?,
            refunds: Vec::new(),
            attention,
            fulfilment,
            version,
            created_at: t(self.created_at),
            updated_at: t(self.updated_at),
            synced_at: self.synced_at.map(t),
        })
    }
}

/// A refund read with its order (`r_<column>`; every column NULL for an
/// order without refunds).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawRefund {
    r_out_refund_no: Option<String>,
    r_refund_fee: Option<i64>,
    r_state: Option<String>,
    r_refund_id: Option<String>,
    r_source: Option<String>,
    r_effect: Option<String>,
    r_effect_at: Option<i64>,
    r_created_at: Option<i64>,
    r_updated_at: Option<i64>,
}

impl RawRefund {
    /// Reads the refund of order `no`, if the row has one.
    pub(crate) fn into_refund(self, no: &str) -> Result<Option<Refund>, StoreError> {
        let Some(out_refund_no) = self.r_out_refund_no else {
            return Ok(None);
        };
        let bad = |what: String| corrupt(no, format!("refund {out_refund_no:?}: {what}"));
        let need = |field: &str, v: Option<i64>| v.ok_or_else(|| bad(format!("no {field}")));
        let fee = need("refund_fee", self.r_refund_fee)?;
        let refund_fee = u64::try_from(fee)
            .map(Fen)
            .map_err(|_| bad(format!("negative refund_fee {fee}")))?;
        let state = (self.r_state.as_deref())
            .and_then(RefundState::parse)
            .ok_or_else(|| bad(format!("state {:?}", self.r_state)))?;
        let source = (self.r_source.as_deref())
            .and_then(RefundSource::parse)
            .ok_or_else(|| bad(format!("source {:?}", self.r_source)))?;
        let effect = (self.r_effect.as_deref())
            .and_then(|e| fulfilment_of(e, self.r_effect_at))
            .ok_or_else(|| {
                bad(format!(
                    "effect {:?} at {:?}",
                    self.r_effect, self.r_effect_at
                ))
            })?;
        let t = DateTime::from_timestamp_nanos;
        Ok(Some(Refund {
            refund_fee,
            state,
            refund_id: self.r_refund_id,
            source,
            effect,
            created_at: t(need("created_at", self.r_created_at)?),
            updated_at: t(need("updated_at", self.r_updated_at)?),
            out_refund_no,
        }))
    }
}

/// One row of an order joined with its refunds.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Joined {
    #[sqlx(flatten)]
    pub(crate) order: RawRow,
    #[sqlx(flatten)]
    pub(crate) refund: RawRefund,
}

/// Orders from their joined rows (each order's rows consecutive, its
/// refunds oldest first), in the rows' order.
pub(crate) fn group(rows: Vec<Joined>) -> Result<Vec<Order>, StoreError> {
    let mut orders: Vec<Order> = Vec::new();
    for Joined { order, refund } in rows {
        let same = orders
            .last()
            .is_some_and(|o| o.out_trade_no.as_str() == order.no());
        if !same {
            orders.push(order.into_order()?);
        }
        if let Some(o) = orders.last_mut()
            && let Some(r) = refund.into_refund(o.out_trade_no.as_str())?
        {
            o.refunds.push(r);
        }
    }
    Ok(orders)
}

/// An order's attention column before the upgrade (see
/// [`crate::sql::Statements::legacy_attention`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LegacyAttention {
    pub(crate) out_trade_no: String,
    pub(crate) attention: Option<String>,
    pub(crate) updated_at: i64,
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
