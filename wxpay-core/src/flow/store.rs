//! [`OrderStore`]: the storage contract apps implement against their database.

use std::{error::Error as StdError, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{Claim, Order, OrderState, Transition};
use crate::OutTradeNo;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert` of an `out_trade_no` that exists.
    #[error("order {0} already exists")]
    Duplicate(OutTradeNo),
    /// A stored row could not be read back as an [`Order`].
    #[error("stored order is unreadable: {0}")]
    Corrupt(String),
    /// A value the backend cannot store (an amount or time out of its
    /// range, text too long for a column…). Not retryable: the same call
    /// fails again; nothing was stored.
    #[error("value cannot be stored: {0}")]
    Invalid(String),
    /// The backend failed (connection lost, timeout, …). The operation may
    /// or may not have been applied; a transition never half-applies.
    #[error("order store backend error")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
    /// The store does not implement this optional method (named here).
    #[error("the order store does not support {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl StdError + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Box::new(e))
    }
}

/// What a compare-and-set [`OrderStore::transition`] did. `O` is how the
/// order is carried: owned (`transition`), or shared
/// ([`transition_shared`](OrderStore::transition_shared)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome<O = Order> {
    /// The order was as read (state and version) and now holds the change.
    Applied(O),
    /// The order changed since it was read (another state or version);
    /// nothing changed. Carries the order as it is now.
    NotApplied(O),
    /// No such order.
    NotFound,
}

impl<O> TransitionOutcome<O> {
    /// The same outcome with the order mapped by `f`.
    pub fn map<P>(self, f: impl FnOnce(O) -> P) -> TransitionOutcome<P> {
        match self {
            TransitionOutcome::Applied(o) => TransitionOutcome::Applied(f(o)),
            TransitionOutcome::NotApplied(o) => TransitionOutcome::NotApplied(f(o)),
            TransitionOutcome::NotFound => TransitionOutcome::NotFound,
        }
    }
}

/// Orders as the payment flow stores them.
///
/// Implement this against your own database (see `wxpay-sqlx` for SQLite,
/// PostgreSQL and MySQL, and [`MemoryStore`](super::MemoryStore) for tests).
/// The core validates every transition against the state machine before
/// calling the store; the store's job is to make each call **atomic**.
///
/// # Implementer's duties
/// - [`insert`](OrderStore::insert) fails with [`StoreError::Duplicate`] when
///   the `out_trade_no` exists, and never overwrites.
/// - [`transition`](OrderStore::transition) is a compare-and-set on the
///   **version**: it applies `to` and the patch (see [`Order::apply`]: fields,
///   refunds upserted by `out_refund_no`, attention cases appended once,
///   version + 1) **only if** the stored order still has the state
///   `t.from` and the version `t.version` it was read with, and answers
///   with the order after (applied) or as found (not applied). A store that
///   checks only the state lets a stale read win (two copies of one refund
///   notify, read before and after another refund settled, would overwrite
///   each other). It must be atomic **across processes**: several app
///   instances sharing one database receive duplicate notifies at the same
///   moment, and exactly one may win. In SQL, one conditional
///   `UPDATE … WHERE out_trade_no = ? AND version = ?` whose affected-row
///   count decides (with the refund rows written in the same transaction)
///   does it.
/// - Every change bumps the version: transitions and fulfilment claims and
///   completions alike.
/// - [`claim_fulfilment`](OrderStore::claim_fulfilment) is a compare-and-set
///   as well: it succeeds for exactly one caller, only while the order is
///   `PAID` (paid, no refund in flight or settled) and its fulfilment
///   pending or its lease run out;
///   [`complete_fulfilment`](OrderStore::complete_fulfilment) succeeds only
///   for the holder of the current claim.
/// - Errors are [`StoreError::Backend`] (or [`StoreError::Invalid`] for a
///   value the backend cannot hold); a failed call changes nothing that a
///   later successful call could not see consistently.
/// - Every field round-trips exactly; timestamps with at least microsecond
///   precision (the flow writes whole microseconds).
///
/// Check an implementation with `wxpay_core::testkit::check_order_store`
/// (feature `testkit`).
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Stores a new order.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] for an existing `out_trade_no`, or a backend error.
    async fn insert(&self, order: &Order) -> Result<(), StoreError>;

    /// Loads an order.
    ///
    /// # Errors
    /// A backend or corrupt-row error; a missing order is `Ok(None)`.
    async fn get(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError>;

    /// Loads an order as a shared, read-only handle. The default wraps
    /// [`get`](OrderStore::get); a store that keeps orders in memory can
    /// hand out its own copy instead of cloning it (every notify reads its
    /// order once, and most only read it).
    ///
    /// # Errors
    /// As [`get`](OrderStore::get).
    async fn get_shared(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<Arc<Order>>, StoreError> {
        Ok(self.get(out_trade_no).await?.map(Arc::new))
    }

    /// Atomically moves an order from one of `t.from` to `t.to` with `t.patch`.
    ///
    /// # Errors
    /// A backend error (and then nothing was applied).
    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError>;

    /// [`transition`](OrderStore::transition), answering with a shared,
    /// read-only handle. The default wraps `transition`; a store that keeps
    /// orders in memory can hand out its own copy instead of cloning it
    /// (every paying notify makes one transition).
    ///
    /// # Errors
    /// As [`transition`](OrderStore::transition).
    async fn transition_shared(
        &self,
        t: &Transition,
    ) -> Result<TransitionOutcome<Arc<Order>>, StoreError> {
        Ok(self.transition(t).await?.map(Arc::new))
    }

    /// Claims the right to run the business effect of a paid order: succeeds
    /// only if the order is `PAID` (paid, no refund in flight or settled)
    /// and its fulfilment is `Pending`, or `Claimed` with a lease that ended
    /// before `now`; then sets it to `Claimed { until: now + lease }` and
    /// answers that claim.
    ///
    /// # Errors
    /// A backend error.
    async fn claim_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError>;

    /// Marks the business effect done (`Fulfilment::Done { at }`), only if
    /// the fulfilment is still `Claimed { until: claim.until }` (the
    /// caller's claim: a worker whose lease ran out and was claimed by
    /// another cannot complete). Answers whether it did.
    ///
    /// # Errors
    /// A backend error.
    async fn complete_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        claim: Claim,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The optional listing capability, used by the background reconciler.
    /// Stores that can list return `Some(self)`.
    fn listing(&self) -> Option<&dyn OrderListing> {
        None
    }
}

/// Which orders to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Orders in any of these states.
    pub states: Vec<OrderState>,
    /// Last changed at or before this instant.
    pub updated_before: DateTime<Utc>,
    /// At most this many, oldest first.
    pub limit: usize,
}

/// Which orders [`OrderListing::settled_on`] lists: those of one Beijing
/// day, a page at a time in `out_trade_no` byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledFilter {
    /// The day (Beijing time, UTC+8, as WeChat's bills count days).
    pub day: NaiveDate,
    /// Only orders whose `out_trade_no` sorts after this one (the last of
    /// the previous page); `None` for the first page.
    pub after: Option<OutTradeNo>,
    /// At most this many.
    pub limit: usize,
}

impl SettledFilter {
    /// The `time_end` range of the day: `[yyyyMMdd000000, next day's)`,
    /// as text (`time_end` is WeChat's `yyyyMMddHHmmss`, Beijing, so text
    /// order is time order).
    pub fn time_end_range(&self) -> (String, String) {
        let next = self.day.succ_opt().unwrap_or(self.day);
        (
            self.day.format("%Y%m%d000000").to_string(),
            next.format("%Y%m%d000000").to_string(),
        )
    }

    /// The day as instants: `[00:00, next 00:00)` Beijing time, in UTC.
    pub fn instant_range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() - chrono::Duration::hours(8)
        };
        let next = self.day.succ_opt().unwrap_or(self.day);
        (start(self.day), start(next))
    }

    /// Whether `order` belongs to the day: paid on it (`time_end` in
    /// [`time_end_range`](SettledFilter::time_end_range)), or with a
    /// `SUCCESS` refund last changed on it (in
    /// [`instant_range`](SettledFilter::instant_range)). Ignores `after`.
    pub fn matches(&self, order: &Order) -> bool {
        let (from, to) = self.time_end_range();
        let (rfrom, rto) = self.instant_range();
        order
            .time_end
            .as_deref()
            .is_some_and(|t| t >= from.as_str() && t < to.as_str())
            || order.refunds.iter().any(|r| {
                r.state == super::RefundState::Success
                    && r.updated_at >= rfrom
                    && r.updated_at < rto
            })
    }
}

/// Optional capability: listing orders, for reconciliation (lost notifies,
/// expiry, unfinished fulfilment) and for a user's own orders.
#[async_trait]
pub trait OrderListing: Send + Sync {
    /// Orders matching the filter, oldest `updated_at` first.
    ///
    /// # Errors
    /// A backend error.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError>;

    /// Orders with an effect to run, oldest `updated_at` first: `PAID`
    /// orders whose fulfilment is pending or claimed with a lease that ended
    /// before `now`, and orders with a `SUCCESS` refund whose
    /// [`effect`](super::Refund::effect) is likewise.
    ///
    /// # Errors
    /// A backend error.
    async fn unfulfilled(&self, now: DateTime<Utc>, limit: usize)
    -> Result<Vec<Order>, StoreError>;

    /// The orders whose [`Order::owner`] is `owner`, newest `created_at`
    /// first (ties by `out_trade_no`, descending), at most `limit`.
    ///
    /// # Errors
    /// A backend error.
    async fn owned_by(&self, owner: &str, limit: usize) -> Result<Vec<Order>, StoreError>;

    /// The orders settled on a Beijing day, for the daily reconciliation
    /// against WeChat's bill ([`Payments::reconcile_day`](super::Payments::reconcile_day)):
    /// those [`SettledFilter::matches`] — paid that day (`time_end`), or
    /// with a `SUCCESS` refund whose `updated_at` falls in the day — whose
    /// `out_trade_no` sorts after `filter.after` in byte order, in that
    /// order, at most `filter.limit`.
    ///
    /// Provided: answers [`StoreError::Unsupported`]; the reconciliation
    /// then checks the bill against the store but not the store against
    /// the bill, and says so in its report.
    ///
    /// # Errors
    /// A backend error, or [`StoreError::Unsupported`].
    async fn settled_on(&self, filter: &SettledFilter) -> Result<Vec<Order>, StoreError> {
        let _ = filter;
        Err(StoreError::Unsupported("settled_on"))
    }
}
