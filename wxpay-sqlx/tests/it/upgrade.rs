//! Upgrading a database written by the version before the refund ledger
//! (`legacy/*.sql` are that version's migration files, verbatim): orders
//! with `pending_refund_*`, `refunded_fee` and plain-text attention.

use chrono::{DateTime, Utc};
use wxpay_core::{
    Fen, SignType, TradeType,
    flow::{
        Attention, AttentionKind, Fulfilment, Order, OrderPatch, OrderState, OrderStore, Refund,
        RefundSource, RefundState, Transition, TransitionOutcome,
    },
};
use wxpay_sqlx::{DatabaseKind, SqlxStore};

use crate::{fixture::Fixture, no, order, t0};

fn legacy_schema(kind: DatabaseKind) -> String {
    let ddl = match kind {
        DatabaseKind::Sqlite => include_str!("legacy/sqlite.sql"),
        DatabaseKind::Postgres => include_str!("legacy/postgres.sql"),
        _ => include_str!("legacy/mysql.sql"),
    };
    (ddl.lines())
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{table}", "wxpay_orders")
        .replace("{sessions}", "wxpay_sessions")
}

fn text(s: Option<&str>) -> String {
    s.map_or("NULL".into(), |s| format!("'{}'", s.replace('\'', "''")))
}

fn int(i: Option<i64>) -> String {
    i.map_or("NULL".into(), |i| i.to_string())
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap()
}

fn fen(f: Fen) -> i64 {
    i64::try_from(f.get()).unwrap()
}

/// The row the previous version wrote for `o` (its refunds and attention
/// are ignored: `pending` and `attention` are what that version kept).
fn legacy_insert(o: &Order, pending: Option<(&str, u64)>, attention: Option<&str>) -> String {
    let (fulfilment, at) = match o.fulfilment {
        Fulfilment::Pending => ("PENDING", None),
        Fulfilment::Claimed { until } => ("CLAIMED", Some(ns(until))),
        Fulfilment::Done { at } => ("DONE", Some(ns(at))),
        Fulfilment::Held => unreachable!("the previous version had no HELD"),
    };
    let values = [
        text(Some(o.out_trade_no.as_str())),
        text(Some(o.state.as_str())),
        fen(o.total_fee).to_string(),
        text(Some(&o.body)),
        text(Some(o.trade_type.as_str())),
        text(o.openid.as_deref()),
        text(o.product_id.as_deref()),
        text(o.attach.as_deref()),
        text(o.owner.as_deref()),
        text(Some(o.sign_type.as_str())),
        text(o.prepay_id.as_deref()),
        text(o.code_url.as_deref()),
        int(o.prepay_expires_at.map(ns)),
        text(o.transaction_id.as_deref()),
        text(o.time_end.as_deref()),
        text(o.bank_type.as_deref()),
        int(o.cash_fee.map(fen)),
        fen(o.refunded_fee).to_string(),
        text(pending.map(|p| p.0)),
        int(pending.map(|p| i64::try_from(p.1).unwrap())),
        text(attention),
        text(Some(fulfilment)),
        int(at),
        ns(o.created_at).to_string(),
        ns(o.updated_at).to_string(),
        int(o.synced_at.map(ns)),
        o.version.to_string(),
    ];
    format!(
        "INSERT INTO wxpay_orders (out_trade_no, state, total_fee, body, trade_type, openid, \
         product_id, attach, owner, sign_type, prepay_id, code_url, prepay_expires_at, \
         transaction_id, time_end, bank_type, cash_fee, refunded_fee, pending_refund_no, \
         pending_refund_fee, attention, fulfilment, fulfilment_at, created_at, updated_at, \
         synced_at, version) VALUES ({})",
        values.join(", ")
    )
}

/// An order as the upgraded store reads it, the pending refund (number,
/// amount) and the attention text the previous version kept for it.
type Legacy = (Order, Option<(&'static str, u64)>, Option<&'static str>);

/// Orders in every state as the previous version kept them, and each as
/// the upgraded store must read it.
fn legacy_orders() -> Vec<Legacy> {
    let ns = chrono::Duration::nanoseconds;
    let mut out = Vec::new();
    for (i, state) in OrderState::ALL.into_iter().enumerate() {
        let mut o = order(&format!("old-{}", state.as_str().to_lowercase()));
        o.state = state;
        o.version = 3 + i as u64;
        o.updated_at = t0() + ns(1000 + i as i64);
        o.owner = Some("u-old".into());
        o.sign_type = SignType::HmacSha256;
        if state != OrderState::Created {
            o.prepay_id = Some(format!("wx{i}"));
            o.prepay_expires_at = Some(t0() + chrono::Duration::hours(2));
        }
        if state.is_paid() {
            o.transaction_id = Some(format!("4200{i}"));
            o.time_end = Some("20250102110405".into());
            o.bank_type = Some("CMB_DEBIT".into());
            o.cash_fee = Some(o.total_fee);
            o.fulfilment = Fulfilment::Done { at: t0() + ns(7) };
            o.synced_at = Some(t0() + ns(9));
        }
        if state == OrderState::Paid {
            o.fulfilment = Fulfilment::Claimed {
                until: t0() + ns(5),
            };
        }
        let mut pending = None;
        let migrated = |o: &Order| Refund {
            effect: Fulfilment::Done { at: o.updated_at },
            ..Refund::new(
                format!("{}-MIGRATED", o.out_trade_no),
                o.refunded_fee,
                RefundState::Success,
                RefundSource::App,
                o.updated_at,
            )
        };
        match state {
            OrderState::Refunding => {
                pending = Some(("R-old-pending", 30));
                o.refunds = vec![Refund::new(
                    "R-old-pending",
                    Fen(30),
                    RefundState::Unknown,
                    RefundSource::App,
                    o.updated_at,
                )];
            }
            OrderState::Refunded => {
                o.refunded_fee = o.total_fee;
                o.refunds = vec![migrated(&o)];
            }
            OrderState::PartiallyRefunded => {
                o.refunded_fee = Fen(40);
                o.refunds = vec![migrated(&o)];
            }
            _ => {}
        }
        out.push((o, pending, None));
    }
    // Refunded in part, then another refund in flight: both, in that order.
    let mut both = order("old-both");
    both.state = OrderState::Refunding;
    both.transaction_id = Some("4200both".into());
    both.fulfilment = Fulfilment::Done { at: t0() };
    both.refunded_fee = Fen(40);
    both.version = 5;
    both.refunds = vec![
        Refund {
            effect: Fulfilment::Done {
                at: both.updated_at,
            },
            ..Refund::new(
                "old-both-MIGRATED",
                Fen(40),
                RefundState::Success,
                RefundSource::App,
                both.updated_at,
            )
        },
        Refund::new(
            "R-old-both",
            Fen(20),
            RefundState::Unknown,
            RefundSource::App,
            both.updated_at,
        ),
    ];
    out.push((both, Some(("R-old-both", 20)), None));
    // A late payment, flagged in plain text.
    let note = "payment on a closed order — 请核对 'quoted'";
    let mut late = order("old-late");
    late.state = OrderState::Paid;
    late.transaction_id = Some("4200late".into());
    late.updated_at = t0() + ns(77);
    late.trade_type = TradeType::Native;
    late.product_id = Some("p1".into());
    late.attention = vec![Attention::new(AttentionKind::Other, note, late.updated_at)];
    out.push((late, None, Some(note)));
    out
}

async fn all_orders(store: &SqlxStore) -> Vec<Order> {
    let mut v = Vec::new();
    for (o, _, _) in legacy_orders() {
        v.push(store.get(&o.out_trade_no).await.unwrap().unwrap());
    }
    v
}

pub(crate) async fn a_previous_versions_database_is_upgraded_in_place(fx: Fixture) {
    // The previous version's schema and rows; the store has not run yet.
    fx.raw_script(&legacy_schema(fx.kind())).await;
    let orders = legacy_orders();
    for (o, pending, attention) in &orders {
        fx.raw(&legacy_insert(o, *pending, *attention)).await;
    }
    // Several instances start at once on it.
    let mut starts = Vec::new();
    for _ in 0..3 {
        let s = fx.another_instance().await;
        starts.push(tokio::spawn(async move { s.migrate().await }));
    }
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let s = &fx.store;
    for (want, _, _) in &orders {
        assert_eq!(
            s.get(&want.out_trade_no).await.unwrap().as_ref(),
            Some(want),
            "{}",
            want.out_trade_no
        );
        // The ledger sums to what the previous version counted.
        assert_eq!(want.refunded(), want.refunded_fee);
    }
    let refunds = fx.store.refunds_table_name().to_owned();
    assert_eq!(
        fx.scalar(&format!("SELECT COUNT(*) FROM {refunds}")).await,
        5
    );
    let leftover = "SELECT COUNT(*) FROM wxpay_orders WHERE pending_refund_no IS NOT NULL \
                    OR pending_refund_fee IS NOT NULL OR refund_ledger <> 1";
    assert_eq!(fx.scalar(leftover).await, 0);
    // The migrated order works as any other: settle its refund.
    let pending = s.get(&no("old-refunding")).await.unwrap().unwrap();
    let mut settled = pending.refunds[0].clone();
    settled.state = RefundState::Success;
    settled.refund_id = Some("50300000".into());
    settled.updated_at = t0() + chrono::Duration::seconds(60);
    let patch = OrderPatch {
        refunded_fee: Some(Fen(30)),
        refunds: vec![settled],
        ..OrderPatch::default()
    };
    let t = Transition::new(
        &pending,
        OrderState::PartiallyRefunded,
        patch,
        t0() + chrono::Duration::seconds(60),
    )
    .unwrap();
    let mut want = pending.clone();
    want.apply(t.to, &t.patch, t.at);
    assert_eq!(
        s.transition(&t).await.unwrap(),
        TransitionOutcome::Applied(want.clone())
    );
    // And its new effect is listed for the reconciler (with the PAID ones).
    let due = s
        .listing()
        .unwrap()
        .unfulfilled(t0() + chrono::Duration::days(1), 100)
        .await
        .unwrap();
    let due: Vec<&str> = due.iter().map(|o| o.out_trade_no.as_str()).collect();
    assert_eq!(due, ["old-late", "old-paid", "old-refunding"]);
    // Upgrading again (a restart, another instance) changes nothing.
    let before = all_orders(s).await;
    for _ in 0..2 {
        fx.another_instance().await.migrate().await.unwrap();
    }
    assert_eq!(all_orders(s).await, before);
    assert_eq!(
        fx.scalar(&format!("SELECT COUNT(*) FROM {refunds}")).await,
        5
    );
    assert_eq!(s.get(&no("old-refunding")).await.unwrap(), Some(want));
}

macro_rules! upgrade_tests {
    ($($backend:ident),*) => {$(
        mod $backend {
            use crate::fixture::Fixture;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_previous_versions_database_is_upgraded_in_place() {
                let Some(fx) = Fixture::$backend().await else { return };
                super::a_previous_versions_database_is_upgraded_in_place(fx).await;
            }
        }
    )*};
}

#[cfg(feature = "sqlite")]
upgrade_tests!(sqlite);
#[cfg(feature = "postgres")]
upgrade_tests!(postgres);
#[cfg(feature = "mysql")]
upgrade_tests!(mysql);
