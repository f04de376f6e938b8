//! [`MemoryStore`]: the embedded default store.

use std::{
    collections::{HashMap, hash_map},
    hash::BuildHasher,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Claim, Fulfilment, ListFilter, Order, OrderListing, OrderState, OrderStore, RefundState,
    SettledFilter, StoreError, Transition, TransitionOutcome,
};
use crate::OutTradeNo;

/// Lock shards: notifies for different orders on different worker threads
/// rarely wait for each other.
const SHARDS: usize = 16;

type Shard = HashMap<Key, Entry, foldhash::fast::RandomState>;

/// An order number held inline (zero-padded: a number is 1 to 32 non-zero
/// ASCII bytes), so that finding an order reads no second allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key([u8; 32]);

impl Key {
    fn of(no: &OutTradeNo) -> Key {
        let mut key = [0; 32];
        let bytes = no.as_str().as_bytes();
        // `OutTradeNo` holds at most 32 bytes; `min` only keeps this total.
        let n = bytes.len().min(32);
        key[..n].copy_from_slice(&bytes[..n]);
        Key(key)
    }
}

/// One stored order. The fulfilment (and the version its changes bump) is
/// kept beside the shared order, so that claiming and completing it never
/// copy an order someone still holds (the notify that just paid it, running
/// `on_paid`); readers get both written into the order (in place, unless
/// that order is still shared).
#[derive(Debug)]
struct Entry {
    order: Arc<Order>,
    /// The current fulfilment; `order.fulfilment` may lag behind it.
    fulfilment: Fulfilment,
    /// The current version; `order.version` may lag behind it.
    version: u64,
}

impl Entry {
    fn new(order: Order) -> Entry {
        let (fulfilment, version) = (order.fulfilment, order.version);
        Entry {
            order: Arc::new(order),
            fulfilment,
            version,
        }
    }

    /// The order as it is now, as a shared handle.
    fn current(&mut self) -> Arc<Order> {
        if self.order.fulfilment != self.fulfilment || self.order.version != self.version {
            let o = Arc::make_mut(&mut self.order);
            o.fulfilment = self.fulfilment;
            o.version = self.version;
        }
        Arc::clone(&self.order)
    }
}

/// Orders in a process-local map.
///
/// Every operation on one order takes one short-lived lock on the shard
/// that holds it (never held across an `.await`), so transitions and
/// fulfilment claims are atomic within the process. Orders are kept behind
/// `Arc`s: the copies `get` and `transition` hand out are made after the
/// lock is released, [`get_shared`](OrderStore::get_shared) and
/// [`transition_shared`](OrderStore::transition_shared) hand out the
/// store's own, and a transition copies an order under the lock only while
/// someone still holds such a shared handle (fulfilment claims never do).
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
    /// Picks the shard (seeded apart from the shards' own hashers).
    hasher: foldhash::fast::RandomState,
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

    /// The shard that holds `key`, locked.
    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.hasher.hash_one(key) as usize % SHARDS])
    }

    /// Every order (shared handles; one shard locked at a time).
    fn all(&self) -> Vec<Arc<Order>> {
        self.shards
            .iter()
            .flat_map(|s| lock(s).values_mut().map(Entry::current).collect::<Vec<_>>())
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
    (order.entitled() && order.fulfilment.claimable(now))
        || (order.refunds.iter())
            .any(|r| r.state == RefundState::Success && r.effect.claimable(now))
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn insert(&self, order: &Order) -> Result<(), StoreError> {
        let fresh = Entry::new(order.clone());
        let key = Key::of(&order.out_trade_no);
        let mut shard = self.shard(&key);
        match shard.entry(key) {
            hash_map::Entry::Occupied(_) => {
                return Err(StoreError::Duplicate(order.out_trade_no.clone()));
            }
            hash_map::Entry::Vacant(v) => v.insert(fresh),
        };
        Ok(())
    }

    async fn get(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        let key = Key::of(out_trade_no);
        let found = self.shard(&key).get_mut(&key).map(Entry::current);
        Ok(found.map(|o| Order::clone(&o)))
    }

    async fn get_shared(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<Arc<Order>>, StoreError> {
        let key = Key::of(out_trade_no);
        Ok(self.shard(&key).get_mut(&key).map(Entry::current))
    }

    async fn transition(&self, t: &Transition) -> Result<TransitionOutcome, StoreError> {
        // The copy is made after the lock is released.
        Ok(self.transition_shared(t).await?.map(|o| Order::clone(&o)))
    }

    async fn transition_shared(
        &self,
        t: &Transition,
    ) -> Result<TransitionOutcome<Arc<Order>>, StoreError> {
        let key = Key::of(&t.out_trade_no);
        let mut shard = self.shard(&key);
        let Some(entry) = shard.get_mut(&key) else {
            return Ok(TransitionOutcome::NotFound);
        };
        if entry.order.state != t.from || entry.version != t.version {
            return Ok(TransitionOutcome::NotApplied(entry.current()));
        }
        let (fulfilment, version) = (entry.fulfilment, entry.version);
        // In place unless a reader still holds the old version.
        let order = Arc::make_mut(&mut entry.order);
        order.fulfilment = fulfilment;
        order.version = version;
        order.apply(t.to, &t.patch, t.at);
        entry.fulfilment = order.fulfilment;
        entry.version = order.version;
        Ok(TransitionOutcome::Applied(Arc::clone(&entry.order)))
    }

    async fn claim_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let key = Key::of(out_trade_no);
        let mut shard = self.shard(&key);
        let Some(entry) = shard.get_mut(&key) else {
            return Ok(None);
        };
        if entry.order.state != OrderState::Paid || !entry.fulfilment.claimable(now) {
            return Ok(None);
        }
        let until = lease_end(now, lease);
        entry.fulfilment = Fulfilment::Claimed { until };
        entry.version += 1;
        Ok(Some(Claim { until }))
    }

    async fn complete_fulfilment(
        &self,
        out_trade_no: &OutTradeNo,
        claim: Claim,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = Key::of(out_trade_no);
        let mut shard = self.shard(&key);
        let Some(entry) = shard.get_mut(&key) else {
            return Ok(false);
        };
        if entry.fulfilment != (Fulfilment::Claimed { until: claim.until }) {
            return Ok(false);
        }
        entry.fulfilment = Fulfilment::Done { at };
        entry.version += 1;
        Ok(true)
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

    async fn owned_by(&self, owner: &str, limit: usize) -> Result<Vec<Order>, StoreError> {
        let mut found: Vec<Arc<Order>> = (self.all().into_iter())
            .filter(|o| o.owner.as_deref() == Some(owner))
            .collect();
        found.sort_unstable_by(|a, b| {
            (b.created_at, &b.out_trade_no).cmp(&(a.created_at, &a.out_trade_no))
        });
        Ok(found.iter().take(limit).map(|o| Order::clone(o)).collect())
    }

    async fn settled_on(&self, filter: &SettledFilter) -> Result<Vec<Order>, StoreError> {
        let mut found: Vec<Arc<Order>> = (self.all().into_iter())
            .filter(|o| filter.after.as_ref().is_none_or(|a| o.out_trade_no > *a))
            .filter(|o| filter.matches(o))
            .collect();
        found.sort_unstable_by(|a, b| a.out_trade_no.cmp(&b.out_trade_no));
        Ok(found
            .iter()
            .take(filter.limit)
            .map(|o| Order::clone(o))
            .collect())
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
