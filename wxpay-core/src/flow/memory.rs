//! [`MemoryStore`]: the embedded default store.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Fulfilment, ListFilter, Order, OrderListing, OrderStore, StoreError, Transition,
    TransitionOutcome,
};
use crate::OutTradeNo;

/// Lock shards: notifies for different orders on different worker threads
/// rarely wait for each other.
const SHARDS: usize = 16;

type Shard = HashMap<OutTradeNo, Arc<Order>>;

/// Orders in a process-local map.
///
/// Every operation on one order takes one short-lived lock on the shard
/// that holds it (never held across an `.await`), so transitions and
/// fulfilment claims are atomic within the process. Orders are kept behind
/// `Arc`s: the copies `get` and `transition` hand out are made after the
/// lock is released, [`get_shared`](OrderStore::get_shared) hands out the
/// store's own, and an update copies an order under the lock only while
/// someone still holds such a shared handle.
/// Listings lock one shard at a time: they see each order as it was at
/// some moment during the call, like a database read without a snapshot.
///
/// Orders are lost when the process exits and are not shared between
/// instances: use it for tests, demos and single-instance tools; use a
/// database store (`wxpay-sqlx`) in production.
///
/// ```
/// use std::sync::Arc;
/// use wxpay_core::flow::{MemoryStore, OrderStore};
/// let store: Arc<dyn OrderStore> = Arc::new(MemoryStore::new());
/// assert!(store.listing().is_some());
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    shards: [Mutex<Shard>; SHARDS],
    hasher: std::hash::RandomState,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The number of stored orders.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no order is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored order, oldest `created_at` first (for tests and debugging).
    pub fn snapshot(&self) -> Vec<Order> {
        let mut all: Vec<Order> = self.all().iter().map(|o| Order::clone(o)).collect();
        all.sort_by(|a, b| (a.created_at, &a.out_trade_no).cmp(&(b.created_at, &b.out_trade_no)));
        all
    }

    /// The shard that holds `no`, locked.
    fn shard(&self, no: &OutTradeNo) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.hasher.hash_one(no) as usize % SHARDS])
    }

    /// Every order (shared handles; one shard locked at a time).
    fn all(&self) -> Vec<Arc<Order>> {
        self.shards
            .iter()
            .flat_map(|s| lock(s).values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave an order half-updated
    // (updates are plain field assignments), so poisoning is ignored.
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let fresh = Arc::new(order.clone());
        let mut shard = self.shard(&order.out_trade_no);
        if shard.contains_key(&order.out_trade_no) {
            return Err(StoreError::Duplicate(order.out_trade_no.clone()));
        }
        shard.insert(order.out_trade_no.clone(), fresh);
        Ok(())
    }

    async fn get(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        let found = self.shard(out_trade_no).get(out_trade_no).cloned();
        Ok(found.map(|o| Order::clone(&o)))
    }

    async fn get_shared(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<Arc<Order>>, StoreError> {
        Ok(self.shard(out_trade_no).get(out_trade_no).cloned())
    }

    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        let (applied, order) = {
            let mut shard = self.shard(&t.out_trade_no);
            let Some(order) = shard.get_mut(&t.out_trade_no) else {
                return Ok(TransitionOutcome::NotFound);
            };
            let applied = t.from.contains(&order.state);
            if applied {
                // In place unless a reader still holds the old version.
                Arc::make_mut(order).apply(t.to, &t.patch, t.at);
            }
            (applied, Arc::clone(order))
        };
        let order = Order::clone(&order);
        Ok(if applied {
            TransitionOutcome::Applied(order)
        } else {
            TransitionOutcome::NotApplied(order)
        })
    }

    async fn claim_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut shard = self.shard(out_trade_no);
        let Some(order) = shard.get_mut(out_trade_no) else {
            return Ok(false);
        };
        let free = match order.fulfilment {
            Fulfilment::Pending => true,
            Fulfilment::Claimed { until } => until < now,
            Fulfilment::Done { .. } => false,
        };
        if free {
            Arc::make_mut(order).fulfilment = Fulfilment::Claimed {
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
        if let Some(order) = self.shard(out_trade_no).get_mut(out_trade_no) {
            Arc::make_mut(order).fulfilment = Fulfilment::Done { at };
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
        Ok(oldest(
            self.all().into_iter().filter(|o| {
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
        Ok(oldest(
            self.all().into_iter().filter(|o| unfulfilled_at(o, now)),
            limit,
        ))
    }
}

/// The `limit` least recently updated of `orders`, oldest first. Only
/// those are cloned: a store of a million orders answers the reconciler's
/// "oldest 100" without copying the rest.
fn oldest(orders: impl Iterator<Item = Arc<Order>>, limit: usize) -> Vec<Order> {
    let by_age = |a: &Arc<Order>, b: &Arc<Order>| {
        (a.updated_at, &a.out_trade_no).cmp(&(b.updated_at, &b.out_trade_no))
    };
    let mut found: Vec<Arc<Order>> = orders.collect();
    if limit < found.len() {
        found.select_nth_unstable_by(limit, by_age);
        found.truncate(limit);
    }
    found.sort_unstable_by(by_age);
    found.iter().map(|o| Order::clone(o)).collect()
}
