//! The refund ledger, the version compare-and-set and fulfilment claims,
//! on every backend (independent of the conformance kit).

use std::time::Duration;

use chrono::{DateTime, Utc};
use wxpay_core::{
    Fen,
    flow::{
        Attention, AttentionKind, Claim, Fulfilment, Order, OrderPatch, OrderState, OrderStore,
        Refund, RefundSource, RefundState, StoreError, Transition, TransitionOutcome,
    },
};

use crate::{fixture::Fixture, no, order, t0};

fn ns(n: i64) -> chrono::Duration {
    chrono::Duration::nanoseconds(n)
}

/// A PAID order (version 0).
fn paid(n: &str) -> Order {
    let mut o = order(n);
    o.state = OrderState::Paid;
    o.transaction_id = Some(format!("42{n}"));
    o
}

/// `t` applied to `from`, as the store must answer it.
fn applied(from: &Order, t: &Transition) -> Order {
    let mut o = from.clone();
    o.apply(t.to, &t.patch, t.at);
    o
}

async fn apply(
    fx: &Fixture,
    from: &Order,
    to: OrderState,
    patch: OrderPatch,
    at: DateTime<Utc>,
) -> Order {
    let t = Transition::new(from, to, patch, at).unwrap();
    let want = applied(from, &t);
    assert_eq!(
        fx.store.transition(&t).await.unwrap(),
        TransitionOutcome::Applied(want.clone())
    );
    assert_eq!(
        fx.store.get(&from.out_trade_no).await.unwrap(),
        Some(want.clone())
    );
    want
}

async fn refund_rows(fx: &Fixture) -> i64 {
    fx.scalar(&format!(
        "SELECT COUNT(*) FROM {}",
        fx.store.refunds_table_name()
    ))
    .await
}

/// A transition made from an older version (same state) is not applied and
/// changes nothing.
pub(crate) async fn a_stale_version_is_not_applied(fx: Fixture) {
    let s = &fx.store;
    let o = paid("stale");
    s.insert(&o).await.unwrap();
    let synced = |secs| OrderPatch {
        synced_at: Some(Some(t0() + chrono::Duration::seconds(secs))),
        ..OrderPatch::default()
    };
    let stale = Transition::new(&o, OrderState::Paid, synced(9), t0() + ns(9)).unwrap();
    let now = apply(&fx, &o, OrderState::Paid, synced(1), t0() + ns(1)).await;
    assert_eq!(now.version, 1);
    // Same state, older version: not applied, answers the order as it is.
    assert_eq!(
        s.transition(&stale).await.unwrap(),
        TransitionOutcome::NotApplied(now.clone())
    );
    // Also with a refund in the patch: nothing of it is written.
    let mut with_refund = stale.clone();
    with_refund.patch.refunds = vec![Refund::new(
        "stale-r",
        Fen(1),
        RefundState::Requested,
        RefundSource::App,
        t0(),
    )];
    with_refund.patch.attention = vec![Attention::new(AttentionKind::Other, "x", t0())];
    with_refund.to = OrderState::Refunding;
    assert_eq!(
        s.transition(&with_refund).await.unwrap(),
        TransitionOutcome::NotApplied(now.clone())
    );
    // A version from the future, and one no column holds.
    for version in [2, u64::MAX] {
        let t = Transition {
            version,
            ..stale.clone()
        };
        assert_eq!(
            s.transition(&t).await.unwrap(),
            TransitionOutcome::NotApplied(now.clone())
        );
    }
    assert_eq!(s.get(&o.out_trade_no).await.unwrap(), Some(now));
    assert_eq!(refund_rows(&fx).await, 0);
}

/// Every refund state, both sources, every effect: through `insert`, the
/// upserts of `transition`, and the listings, in ledger order.
pub(crate) async fn refunds_round_trip_exactly(fx: Fixture) {
    let s = &fx.store;
    let effects = [
        Fulfilment::Pending,
        Fulfilment::Claimed {
            until: t0() + ns(11),
        },
        Fulfilment::Done { at: t0() + ns(12) },
        Fulfilment::Held,
    ];
    let refund = |i: usize, state: RefundState| Refund {
        refund_id: i.is_multiple_of(2).then(|| format!("50300{i}")),
        effect: effects[i % effects.len()],
        updated_at: t0() + ns(100 + i as i64),
        ..Refund::new(
            // Not in number order: the ledger keeps its own.
            format!("RF-{}", 100 - i),
            Fen(1 + i as u64),
            state,
            if i.is_multiple_of(2) {
                RefundSource::App
            } else {
                RefundSource::Found
            },
            t0() + ns(i as i64),
        )
    };
    let all: Vec<Refund> = RefundState::ALL
        .into_iter()
        .enumerate()
        .map(|(i, st)| refund(i, st))
        .collect();
    // Through insert.
    let mut inserted = paid("ins");
    inserted.total_fee = Fen(1000);
    inserted.refunds = all.clone();
    inserted.state = OrderState::Refunding;
    s.insert(&inserted).await.unwrap();
    assert_eq!(
        s.get(&inserted.out_trade_no).await.unwrap(),
        Some(inserted.clone())
    );
    // Through transitions, a few at a time, with upserts (numbers of their own:
    // a refund number is one order's).
    let all: Vec<Refund> = (all.into_iter())
        .map(|r| Refund {
            out_refund_no: format!("L{}", r.out_refund_no),
            ..r
        })
        .collect();
    let mut o = paid("led");
    o.total_fee = Fen(1000);
    s.insert(&o).await.unwrap();
    let first = OrderPatch {
        refunds: all[..3].to_vec(),
        ..OrderPatch::default()
    };
    o = apply(&fx, &o, OrderState::Refunding, first, t0() + ns(1000)).await;
    let mut changed = all[1].clone();
    changed.state = RefundState::Success;
    changed.refund_id = Some("changed".into());
    changed.effect = Fulfilment::Held;
    changed.updated_at = t0() + ns(2000);
    let flag = Attention::new(AttentionKind::RefundFound, "RF-8 ¥0.02", t0() + ns(5));
    let mut rest = vec![changed];
    rest.extend(all[3..].iter().cloned());
    let second = OrderPatch {
        refunds: rest,
        attention: vec![
            flag.clone(),
            Attention {
                at: t0() + ns(6),
                ..flag.clone()
            },
        ],
        refunded_fee: Some(Fen(2)),
        fulfilment: Some(Fulfilment::Held),
        ..OrderPatch::default()
    };
    o = apply(
        &fx,
        &o,
        OrderState::Refunding,
        second.clone(),
        t0() + ns(2000),
    )
    .await;
    assert_eq!(o.refunds.len(), all.len());
    assert_eq!(o.refunds[1].state, RefundState::Success);
    assert_eq!(o.attention, vec![flag.clone()]);
    // The same case again is not recorded twice; a new one is appended.
    let other = Attention::new(AttentionKind::RefundAbnormal, "RF-4", t0() + ns(7));
    let third = OrderPatch {
        attention: vec![flag.clone(), other.clone()],
        ..OrderPatch::default()
    };
    o = apply(&fx, &o, OrderState::Refunding, third, t0() + ns(3000)).await;
    assert_eq!(o.attention, vec![flag, other]);
    assert_eq!(o.version, 3);
    // The listings carry the ledgers.
    let listing = s.listing().unwrap();
    let filter = wxpay_core::flow::ListFilter {
        states: vec![OrderState::Refunding],
        updated_before: t0() + chrono::Duration::days(1),
        limit: 10,
    };
    assert_eq!(
        listing.list(&filter).await.unwrap(),
        vec![inserted.clone(), o.clone()]
    );
    let mut mine = inserted.clone();
    mine.out_trade_no = no("mine");
    mine.owner = Some("u1".into());
    mine.refunds = vec![refund(20, RefundState::Success)];
    s.insert(&mine).await.unwrap();
    let mut bare = order("mine0");
    bare.owner = Some("u1".into());
    bare.created_at = t0() - ns(1);
    s.insert(&bare).await.unwrap();
    assert_eq!(listing.owned_by("u1", 10).await.unwrap(), vec![mine, bare]);
}

/// A refund number of another order fails the whole transition with
/// `Invalid`: nothing is written, the refund stays with its order.
pub(crate) async fn another_orders_refund_is_invalid(fx: Fixture) {
    let s = &fx.store;
    let a = paid("ownA");
    s.insert(&a).await.unwrap();
    let theirs = Refund::new(
        "RX",
        Fen(10),
        RefundState::Processing,
        RefundSource::App,
        t0(),
    );
    let a = apply(
        &fx,
        &a,
        OrderState::Refunding,
        OrderPatch {
            refunds: vec![theirs.clone()],
            ..OrderPatch::default()
        },
        t0() + ns(1),
    )
    .await;
    let b = paid("ownB");
    s.insert(&b).await.unwrap();
    let mut stolen = theirs.clone();
    stolen.state = RefundState::Success;
    let patch = OrderPatch {
        // A fine new refund first: it must not be written either.
        refunds: vec![
            Refund::new(
                "RY",
                Fen(1),
                RefundState::Requested,
                RefundSource::App,
                t0(),
            ),
            stolen,
        ],
        attention: vec![Attention::new(AttentionKind::RefundFound, "RX", t0())],
        refunded_fee: Some(Fen(10)),
        ..OrderPatch::default()
    };
    let t = Transition::new(&b, OrderState::Refunded, patch, t0() + ns(2)).unwrap();
    assert!(
        matches!(s.transition(&t).await, Err(StoreError::Invalid(m)) if m.contains("RX")),
        "must be Invalid"
    );
    assert_eq!(s.get(&b.out_trade_no).await.unwrap(), Some(b.clone()));
    assert_eq!(s.get(&a.out_trade_no).await.unwrap(), Some(a.clone()));
    assert_eq!(refund_rows(&fx).await, 1);
    // An order inserted with it fails too, and is not stored.
    let mut c = paid("ownC");
    c.refunds = vec![theirs];
    assert!(matches!(s.insert(&c).await, Err(StoreError::Invalid(_))));
    assert_eq!(s.get(&c.out_trade_no).await.unwrap(), None);
    // The transition made from b's version still applies without it.
    let t = Transition::new(&b, OrderState::Paid, OrderPatch::default(), t0() + ns(3)).unwrap();
    assert!(
        matches!(s.transition(&t).await.unwrap(), TransitionOutcome::Applied(o) if o.version == 1)
    );
}

/// Completing needs the current claim; only PAID orders can be claimed.
pub(crate) async fn claims_are_held_to_complete(fx: Fixture) {
    let s = &fx.store;
    let o = paid("claim");
    s.insert(&o).await.unwrap();
    let lease = Duration::from_secs(30);
    let first = s
        .claim_fulfilment(&o.out_trade_no, t0(), lease)
        .await
        .unwrap()
        .unwrap();
    let later = first.until + ns(1);
    let second = s
        .claim_fulfilment(&o.out_trade_no, later, lease)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, second);
    // The first worker's lease ran out and was taken: it cannot complete.
    assert!(
        !s.complete_fulfilment(&o.out_trade_no, first, later)
            .await
            .unwrap()
    );
    let got = s.get(&o.out_trade_no).await.unwrap().unwrap();
    assert_eq!(
        (got.fulfilment, got.version),
        (
            Fulfilment::Claimed {
                until: second.until
            },
            2
        )
    );
    assert!(
        s.complete_fulfilment(&o.out_trade_no, second, later)
            .await
            .unwrap()
    );
    assert!(
        !s.complete_fulfilment(&o.out_trade_no, second, later)
            .await
            .unwrap()
    );
    let got = s.get(&o.out_trade_no).await.unwrap().unwrap();
    assert_eq!(
        (got.fulfilment, got.version),
        (Fulfilment::Done { at: later }, 3)
    );
    // A lease past what the store holds lasts until the end of its range.
    let mut long = paid("long");
    long.out_trade_no = no("long");
    s.insert(&long).await.unwrap();
    let forever = s
        .claim_fulfilment(&long.out_trade_no, t0(), Duration::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(forever.until > t0() + chrono::Duration::days(365 * 200));
    assert!(
        s.complete_fulfilment(&long.out_trade_no, forever, t0())
            .await
            .unwrap()
    );
    // Not PAID, or held: no claim, nothing changes.
    for (n, state, fulfilment) in [
        ("refunding", OrderState::Refunding, Fulfilment::Pending),
        ("refunded", OrderState::Refunded, Fulfilment::Pending),
        ("prepaid", OrderState::Prepaid, Fulfilment::Pending),
        ("held", OrderState::Paid, Fulfilment::Held),
    ] {
        let mut o = paid(n);
        o.state = state;
        o.fulfilment = fulfilment;
        s.insert(&o).await.unwrap();
        assert_eq!(
            s.claim_fulfilment(&o.out_trade_no, t0(), lease)
                .await
                .unwrap(),
            None,
            "{n}"
        );
        assert!(
            !s.complete_fulfilment(&o.out_trade_no, Claim { until: t0() }, t0())
                .await
                .unwrap()
        );
        assert_eq!(s.get(&o.out_trade_no).await.unwrap(), Some(o));
    }
}

/// An order for `unfulfilled`: number, state, fulfilment, refunds' state and
/// effect, whether it is listed.
type Case = (
    &'static str,
    OrderState,
    Fulfilment,
    Option<(RefundState, Fulfilment)>,
    bool,
);

/// `unfulfilled`: PAID orders with a claimable fulfilment, and orders with a
/// SUCCESS refund whose effect is claimable; oldest first.
pub(crate) async fn unfulfilled_lists_refund_effects(fx: Fixture) {
    let s = &fx.store;
    let now = t0();
    let mut want = Vec::new();
    let cases: [Case; 9] = [
        ("u-paid", OrderState::Paid, Fulfilment::Pending, None, true),
        (
            "u-expired",
            OrderState::Paid,
            Fulfilment::Claimed { until: now - ns(1) },
            None,
            true,
        ),
        (
            "u-running",
            OrderState::Paid,
            Fulfilment::Claimed { until: now },
            None,
            false,
        ),
        ("u-held", OrderState::Paid, Fulfilment::Held, None, false),
        (
            "u-refund",
            OrderState::Refunded,
            Fulfilment::Done { at: now },
            Some((RefundState::Success, Fulfilment::Pending)),
            true,
        ),
        (
            "u-refund-exp",
            OrderState::PartiallyRefunded,
            Fulfilment::Done { at: now },
            Some((
                RefundState::Success,
                Fulfilment::Claimed { until: now - ns(1) },
            )),
            true,
        ),
        (
            "u-refund-run",
            OrderState::Refunded,
            Fulfilment::Done { at: now },
            Some((RefundState::Success, Fulfilment::Claimed { until: now })),
            false,
        ),
        (
            "u-refund-done",
            OrderState::Refunded,
            Fulfilment::Done { at: now },
            Some((RefundState::Success, Fulfilment::Done { at: now })),
            false,
        ),
        (
            "u-processing",
            OrderState::Refunding,
            Fulfilment::Done { at: now },
            Some((RefundState::Processing, Fulfilment::Pending)),
            false,
        ),
    ];
    for (i, (n, state, fulfilment, refund, listed)) in cases.into_iter().enumerate() {
        let mut o = order(n);
        o.state = state;
        o.fulfilment = fulfilment;
        o.updated_at = now - chrono::Duration::seconds(100 - i as i64);
        if let Some((rs, effect)) = refund {
            // Two refunds, so that the union's order is one row per order.
            o.refunds = vec![
                Refund {
                    effect,
                    ..Refund::new(format!("{n}-1"), Fen(10), rs, RefundSource::App, now)
                },
                Refund {
                    effect,
                    ..Refund::new(format!("{n}-2"), Fen(10), rs, RefundSource::Found, now)
                },
            ];
        }
        s.insert(&o).await.unwrap();
        if listed {
            want.push(o);
        }
    }
    let listing = s.listing().unwrap();
    assert_eq!(listing.unfulfilled(now, 100).await.unwrap(), want);
    assert_eq!(
        listing.unfulfilled(now, 2).await.unwrap(),
        want[..2].to_vec()
    );
}

macro_rules! ledger_tests {
    ($($backend:ident),*) => {$(
        mod $backend {
            use crate::fixture::Fixture;
            #[tokio::test]
            async fn a_stale_version_is_not_applied() {
                let Some(fx) = Fixture::$backend().await else { return };
                super::a_stale_version_is_not_applied(fx).await;
            }
            #[tokio::test]
            async fn refunds_round_trip_exactly() {
                let Some(fx) = Fixture::$backend().await else { return };
                super::refunds_round_trip_exactly(fx).await;
            }
            #[tokio::test]
            async fn another_orders_refund_is_invalid() {
                let Some(fx) = Fixture::$backend().await else { return };
                super::another_orders_refund_is_invalid(fx).await;
            }
            #[tokio::test]
            async fn claims_are_held_to_complete() {
                let Some(fx) = Fixture::$backend().await else { return };
                super::claims_are_held_to_complete(fx).await;
            }
            #[tokio::test]
            async fn unfulfilled_lists_refund_effects() {
                let Some(fx) = Fixture::$backend().await else { return };
                super::unfulfilled_lists_refund_effects(fx).await;
            }
        }
    )*};
}

#[cfg(feature = "sqlite")]
ledger_tests!(sqlite);
#[cfg(feature = "postgres")]
ledger_tests!(postgres);
#[cfg(feature = "mysql")]
ledger_tests!(mysql);
