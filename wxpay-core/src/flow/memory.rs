//! [`MemoryStore`]: the embedded default store.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Fulfilment, ListFilter, Order, OrderListing, OrderStore, StoreError, Transition,
    TransitionOutcome,
};
use crate::OutTradeNo;

/// Orders in a process-local map.
///
/// Every operation takes one short-lived lock (never held across an
/// `.await`), so transitions and fulfilment claims are atomic within the
/// process. Orders are lost when the process exits and are not shared
/// between instances: use it for tests, demos and single-instance tools;
/// use a database store (`wxpay-sqlx`) in production.
///
/// ```
/// use std::sync::Arc;
/// use wxpay_core::flow::{MemoryStore, OrderStore};
/// let store: Arc<dyn OrderStore> = Arc::new(MemoryStore::new());
/// assert!(store.listing().is_some());
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    orders: Mutex<HashMap<OutTradeNo, Order>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The number of stored orders.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no order is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every stored order, oldest `created_at` first (for tests and debugging).
    pub fn snapshot(&self) -> Vec<Order> {
        let mut all: Vec<Order> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.out_trade_no).cmp(&(b.created_at, &b.out_trade_no)));
        all
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<OutTradeNo, Order>> {
        // A panic while holding the lock cannot leave an order half-updated
        // (every update replaces whole values), so poisoning is ignored.
        self.orders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn unfulfilled_at(order: &Order, now: DateTime<Utc>) -> bool {
    order.state.is_paid()
        && match order.fulfilment {
            Fulfilment::Pending => true,
            Fulfilment::Claimed { until } => until < now,
            Fulfilment::Done { .. } => false,
        }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn insert(&self, order: &Order) -> Result<(), StoreError> {
        let mut orders = self.lock();
        if orders.contains_key(&order.out_trade_no) {
            return Err(StoreError::Duplicate(order.out_trade_no.clone()));
        }
        orders.insert(order.out_trade_no.clone(), order.clone());
        Ok(())
    }

    async fn get(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        Ok(self.lock().get(out_trade_no).cloned())
    }

    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        let mut orders = self.lock();
        let Some(order) = orders.get_mut(&t.out_trade_no) else {
            return Ok(TransitionOutcome::NotFound);
        };
        if !t.from.contains(&order.state) {
            return Ok(TransitionOutcome::NotApplied(order.clone()));
        }
        order.apply(t.to, &t.patch, t.at);
        Ok(TransitionOutcome::Applied(order.clone()))
    }

    async fn claim_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut orders = self.lock();
        let Some(order) = orders.get_mut(out_trade_no) else {
            return Ok(false);
        };
        let free = match order.fulfilment {
            Fulfilment::Pending => true,
            Fulfilment::Claimed { until } => until < now,
            Fulfilment::Done { .. } => false,
        };
        if free {
            order.fulfilment = Fulfilment::Claimed {
                until: lease_end(now, lease),
            };
        }
        Ok(free)
    }

    async fn complete_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(order) = self.lock().get_mut(out_trade_no) {
            order.fulfilment = Fulfilment::Done { at };
        }
        Ok(())
    }

    fn listing(&self) -> Option<&dyn OrderListing> {
        Some(self)
    }
}

#[async_trait]
impl OrderListing for MemoryStore {
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError> {
        let orders = self.lock();
        Ok(oldest(
            orders.values().filter(|o| {
                filter.states.contains(&o.state) && o.updated_at <= filter.updated_before
            }),
            filter.limit,
        ))
    }

    async fn unfulfilled(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let orders = self.lock();
        Ok(oldest(
            orders.values().filter(|o| unfulfilled_at(o, now)),
            limit,
        ))
    }
}

/// The `limit` least recently updated of `orders`, oldest first. Only
/// those are cloned: a store of a million orders answers the reconciler's
/// "oldest 100" without copying the rest.
fn oldest<'a>(orders: impl Iterator<Item = &'a Order>, limit: usize) -> Vec<Order> {
    let by_age = |a: &&Order, b: &&Order| {
        (a.updated_at, &a.out_trade_no).cmp(&(b.updated_at, &b.out_trade_no))
    };
    let mut found: Vec<&Order> = orders.collect();
    if limit < found.len() {
        found.select_nth_unstable_by(limit, by_age);
        found.truncate(limit);
    }
    found.sort_unstable_by(by_age);
    found.into_iter().cloned().collect()
}
