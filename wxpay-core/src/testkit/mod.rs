//! Test utilities for your own tests (feature `testkit`).
//!
//! - [`check_order_store`]: the [`OrderStore`] conformance kit. Run it against
//!   your store implementation; it panics with a message naming the broken
//!   duty. [`check_session_store`] does the same for a [`SessionStore`].
//! - Notify fixtures signed like WeChat's, for testing your notify route:
//!   [`signed_payment_notify`], [`payment_notify_params`] + [`sign_notify`]
//!   (to alter fields first), and [`refund_notify`] (encrypted `req_info`).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use wxpay_core::{flow::MemoryStore, testkit::check_order_store};
//! check_order_store(Arc::new(MemoryStore::new())).await;
//! # }
//! ```

pub mod adapter;
pub mod v3;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rand::{Rng, distributions::Alphanumeric};

use crate::{
    Fen, OutTradeNo, SignType, TradeType,
    flow::{
        Api, Attention, AttentionKind, Fulfilment, ListFilter, Order, OrderPatch, OrderState,
        OrderStore, Refund, RefundSource, RefundState, SessionRecord, SessionStore, SettledFilter,
        StoreError, TokenHash, Transition, TransitionOutcome,
    },
};

/// How many tasks race in the concurrency checks.
const RACERS: usize = 50;

/// Runs the whole [`OrderStore`] contract against `store` and panics with a
/// clear message at the first violation.
///
/// Every case uses fresh, random order numbers, so one store (one database)
/// can be checked repeatedly and alongside other data. Timestamps are whole
/// microseconds: a store must keep at least microsecond precision.
///
/// What is checked:
/// - `insert` then `get` (and `get_shared`) returns every field unchanged (all states, every
///   optional field set and unset, each [`Fulfilment`] variant, non-ASCII text);
///   `get` of an unknown number is `None`;
/// - a second `insert` of the same number is [`StoreError::Duplicate`] and
///   leaves the first order as it was;
/// - `transition` applies (answering the order after), does not apply when
///   the state is not in `from` (answering the order as found, storing
///   nothing), and answers `NotFound` for an unknown number;
/// - patch semantics: `None` keeps a field, `Some(None)` clears it,
///   `Some(Some(v))` sets it; `updated_at` becomes the transition's time;
///   `created_at` and `fulfilment` are untouched;
/// - 50 concurrent transitions of one order (spawned tokio
///   tasks): exactly one is applied and every loser sees the winner's result;
/// - concurrent `claim_fulfilment`: exactly one wins; a live lease blocks
///   other claims, an expired one does not; `complete_fulfilment` stores
///   `Done` and nothing can claim it afterwards;
/// - `transition_shared` answers as `transition` does (applied, not
///   applied, not found), and a shared handle (from it or `get_shared`) is
///   a snapshot: claiming, completing or transitioning the order afterwards
///   changes what `get` answers, not the handle;
/// - when [`OrderStore::listing`] is `Some`: `list` filters by state and
///   `updated_before` (inclusive), sorts oldest first and honours `limit`;
///   `unfulfilled` returns paid orders whose fulfilment is pending or whose
///   lease expired, and nothing else; `owned_by` returns exactly the owner's
///   orders, newest first (ties by number, descending), and honours `limit`;
///   `settled_on` (unless the store answers [`StoreError::Unsupported`])
///   returns the orders paid on the Beijing day (`time_end`, both ends of
///   the day) or with a `SUCCESS` refund changed on it, not those of the
///   days around it nor an unsettled refund's, in byte order of the order
///   number, paged by `after` and `limit`.
///
/// # Panics
/// On the first violation of the contract, or on any store error.
pub async fn check_order_store(store: Arc<dyn OrderStore>) {
    let kit = Kit::new();
    kit.roundtrip(&*store).await;
    kit.duplicate(&*store).await;
    kit.compare_and_set(&*store).await;
    kit.stale_refund_settlement(&*store).await;
    kit.patch_semantics(&*store).await;
    kit.concurrent_transitions(store.clone()).await;
    kit.fulfilment(store.clone()).await;
    kit.shared_handles(&*store).await;
    if store.listing().is_some() {
        kit.listing(&*store).await;
        kit.owned_by(&*store).await;
        kit.settled_on(&*store).await;
    }
}

/// Runs the whole [`SessionStore`] contract against `store` and panics with
/// a clear message at the first violation. Every case uses fresh random
/// hashes and openids, so one database can be checked repeatedly.
///
/// What is checked: `put_session` then `get_session` returns every field unchanged (with and
/// without a unionid, non-ASCII text, microsecond timestamps); `get_session` of an
/// unknown hash is `None`; an expired record is still returned by `get_session`;
/// `remove_session` deletes one record and is not an error for an absent one;
/// `purge_expired_sessions(t)` deletes exactly the records with `expires_at <= t`
/// and counts them. Purging is store-wide: the kit's expired records lie
/// decades in the past so that it never purges live data, but run one kit
/// at a time per store (two at once may purge each other's records).
///
/// # Panics
/// On the first violation of the contract, or on any store error.
pub async fn check_session_store(store: Arc<dyn SessionStore>) {
    let case = "sessions";
    let sfail = |what: String| -> ! { panic!("SessionStore conformance [{case}]: {what}") };
    let run = Kit::new().run;
    let hash = |tag: &str| TokenHash::of(&crate::SessionToken::new(format!("{run}-{tag}")));
    let now = micros_now();
    // Expiry times of this run's expired records lie in a window of their
    // own before 1990 (derived from now), so purging them never touches
    // another run's records, nor this run's purge another's.
    let base = Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).unwrap()
        - (now - Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap());
    let rec = |tag: &str, unionid: Option<&str>, expires_at: DateTime<Utc>| {
        SessionRecord::new(
            hash(tag),
            format!("o-{run}-{tag}-用户"),
            unionid.map(str::to_owned),
            now - secs(5),
            expires_at,
        )
    };
    let live = rec("live", Some("u-union"), now + secs(3600));
    let bare = rec("bare", None, now + secs(7200));
    let old = rec("old", None, base + secs(10));
    let edge = rec("edge", None, base + secs(20));
    for r in [&live, &bare, &old, &edge] {
        ok(case, store.put_session(r).await);
    }
    for want in [&live, &bare, &old, &edge] {
        match ok(case, store.get_session(&want.token_hash).await) {
            Some(got) if &got == want => {}
            got => sfail(format!(
                "get after put differs\n  expected: {want:?}\n  got:      {got:?}"
            )),
        }
    }
    if let Some(got) = ok(case, store.get_session(&hash("never")).await) {
        sfail(format!("get of an unknown hash returned {got:?}"));
    }
    ok(case, store.remove_session(&bare.token_hash).await);
    if ok(case, store.get_session(&bare.token_hash).await).is_some() {
        sfail("remove left the record".into());
    }
    ok(case, store.remove_session(&bare.token_hash).await);
    let purged = ok(case, store.purge_expired_sessions(base + secs(20)).await);
    for (r, kept) in [(&live, true), (&old, false), (&edge, false)] {
        if ok(case, store.get_session(&r.token_hash).await).is_some() != kept {
            sfail(format!(
                "purge_expired_sessions(t) must delete exactly the records with expires_at <= t; \
                 {r:?} was {}",
                if kept { "deleted" } else { "kept" }
            ));
        }
    }
    if purged < 2 {
        sfail(format!(
            "purge_expired_sessions deleted (at least) 2 records and answered {purged}"
        ));
    }
    ok(case, store.remove_session(&live.token_hash).await);
}

struct Kit {
    run: String,
}

/// Now, truncated to whole microseconds.
fn micros_now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).expect("now is representable")
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn ok<T>(case: &str, r: Result<T, StoreError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("OrderStore conformance [{case}]: unexpected store error: {e} ({e:?})"),
    }
}

/// The fields in which two orders differ, each as `field: expected … got …`
/// (the whole orders are 900 characters of `Debug` each).
pub fn order_diff(want: &Order, got: &Order) -> String {
    let (Ok(serde_json::Value::Object(w)), Ok(serde_json::Value::Object(g))) =
        (serde_json::to_value(want), serde_json::to_value(got))
    else {
        return format!("expected {want:?}, got {got:?}");
    };
    let diffs: Vec<String> = (w.iter())
        .filter(|(k, v)| g.get(*k) != Some(*v))
        .map(|(k, v)| {
            let other = g
                .get(k)
                .map_or_else(|| "nothing".to_owned(), ToString::to_string);
            format!("{k}: expected {v}, got {other}")
        })
        .collect();
    if diffs.is_empty() {
        "the orders are equal".to_owned()
    } else {
        diffs.join("; ")
    }
}

fn fail(case: &str, what: impl std::fmt::Display) -> ! {
    panic!("OrderStore conformance [{case}]: {what}")
}

impl Kit {
    fn new() -> Kit {
        let run: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(12)
            .map(char::from)
            .collect();
        Kit {
            run: format!("K{run}"),
        }
    }

    fn no(&self, tag: &str) -> OutTradeNo {
        OutTradeNo::new(format!("{}-{tag}", self.run)).expect("kit order numbers are valid")
    }

    fn minimal(&self, tag: &str, state: OrderState, at: DateTime<Utc>) -> Order {
        let mut o = Order::new(
            self.no(tag),
            Fen(1),
            "kit",
            TradeType::Jsapi,
            SignType::Md5,
            at,
        );
        o.state = state;
        o
    }

    fn full(&self, tag: &str, state: OrderState, at: DateTime<Utc>) -> Order {
        Order {
            out_trade_no: self.no(tag),
            state,
            total_fee: Fen(8_800_000_001),
            body: "腾讯-游戏 <&> \"quoted\" 'x'".into(),
            trade_type: TradeType::Native,
            openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
            product_id: Some("P-12".into()),
            attach: Some("深圳分店 & friends".into()),
            owner: Some("user:42".into()),
            sign_type: SignType::HmacSha256,
            // Not the default: a store must keep the API an order was made with.
            api: Api::V3,
            prepay_id: Some("wx201410272009395522657a690389285100".into()),
            code_url: Some("weixin://wxpay/bizpayurl?pr=Mvasgua".into()),
            prepay_expires_at: Some(at + secs(7200)),
            transaction_id: Some("4200000483202001042069747825".into()),
            time_end: Some("20200104183424".into()),
            bank_type: Some("CMB_DEBIT".into()),
            cash_fee: Some(Fen(8_800_000_000)),
            refunded_fee: Fen(17),
            refunds: vec![
                Refund {
                    out_refund_no: format!("{}-{tag}-R-1@x", self.run),
                    refund_fee: Fen(17),
                    state: RefundState::Success,
                    refund_id: Some("50000000382019052709732678859".into()),
                    source: RefundSource::App,
                    effect: Fulfilment::Done { at: at - secs(20) },
                    created_at: at - secs(40),
                    updated_at: at - secs(30),
                },
                Refund {
                    out_refund_no: format!("{}-{tag}-R2", self.run),
                    refund_fee: Fen(3),
                    state: RefundState::Unknown,
                    refund_id: None,
                    source: RefundSource::Found,
                    effect: Fulfilment::Claimed {
                        until: at + secs(30),
                    },
                    created_at: at - secs(30),
                    updated_at: at - secs(30),
                },
            ],
            attention: vec![
                Attention::new(
                    AttentionKind::LatePayment,
                    "payment on a closed order — 请核对",
                    at - secs(60),
                ),
                Attention::new(
                    AttentionKind::RefundFound,
                    "refund R2 of 3 fen",
                    at - secs(30),
                ),
            ],
            fulfilment: Fulfilment::Claimed {
                until: at + secs(30),
            },
            version: 0,
            created_at: at - secs(100),
            updated_at: at - secs(50),
            synced_at: Some(at - secs(10)),
        }
    }

    /// A refund of this run (numbers are unique across orders).
    fn refund(&self, tag: &str, fee: u64, state: RefundState, at: DateTime<Utc>) -> Refund {
        Refund::new(
            format!("{}-{tag}", self.run),
            Fen(fee),
            state,
            RefundSource::App,
            at,
        )
    }

    async fn expect_stored(&self, store: &dyn OrderStore, case: &str, want: &Order) {
        match ok(case, store.get(&want.out_trade_no).await) {
            Some(got) if &got == want => {}
            Some(got) => fail(
                case,
                format!(
                    "stored order {} differs: {}",
                    want.out_trade_no,
                    order_diff(want, &got)
                ),
            ),
            None => fail(case, format!("order {} is missing", want.out_trade_no)),
        }
        match ok(case, store.get_shared(&want.out_trade_no).await) {
            Some(got) if &*got == want => {}
            Some(got) => fail(
                case,
                format!(
                    "get_shared of {} differs from the stored order: {}",
                    want.out_trade_no,
                    order_diff(want, &got)
                ),
            ),
            None => fail(
                case,
                format!("get_shared: order {} is missing", want.out_trade_no),
            ),
        }
    }

    async fn roundtrip(&self, store: &dyn OrderStore) {
        let case = "insert/get roundtrip";
        let now = micros_now();
        let mut orders = Vec::new();
        for (i, state) in OrderState::ALL.into_iter().enumerate() {
            orders.push(self.minimal(&format!("rt-min{i}"), state, now));
            orders.push(self.full(&format!("rt-full{i}"), state, now));
        }
        let mut done = self.full("rt-done", OrderState::Paid, now);
        done.fulfilment = Fulfilment::Done { at: now };
        done.trade_type = TradeType::Jsapi;
        done.sign_type = SignType::Md5;
        orders.push(done);
        let mut zero = self.minimal("rt-zero", OrderState::Paid, now);
        zero.cash_fee = Some(Fen(0));
        zero.attach = Some(String::new());
        orders.push(zero);
        let mut held = self.minimal("rt-held", OrderState::Refunding, now);
        held.fulfilment = Fulfilment::Held;
        for (i, state) in RefundState::ALL.into_iter().enumerate() {
            let mut r = self.refund(
                &format!("rt-held-r{i}"),
                i as u64 + 1,
                state,
                now - secs(9 - i as i64),
            );
            r.effect = [
                Fulfilment::Pending,
                Fulfilment::Held,
                Fulfilment::Done { at: now },
            ][i % 3];
            held.refunds.push(r);
        }
        orders.push(held);

        for o in &orders {
            ok(case, store.insert(o).await);
        }
        for o in &orders {
            self.expect_stored(store, case, o).await;
        }
        if let Some(o) = ok(case, store.get(&self.no("rt-absent")).await) {
            fail(case, format!("get of an unknown number returned {o:?}"));
        }
        if let Some(o) = ok(case, store.get_shared(&self.no("rt-absent")).await) {
            fail(
                case,
                format!("get_shared of an unknown number returned {o:?}"),
            );
        }
    }

    async fn duplicate(&self, store: &dyn OrderStore) {
        let case = "duplicate insert";
        let now = micros_now();
        let first = self.full("dup", OrderState::Prepaid, now);
        ok(case, store.insert(&first).await);
        let mut second = self.minimal("dup", OrderState::Created, now);
        second.total_fee = Fen(999);
        match store.insert(&second).await {
            Err(StoreError::Duplicate(no)) if no == first.out_trade_no => {}
            Err(StoreError::Duplicate(no)) => fail(
                case,
                format!("Duplicate names {no}, expected {}", first.out_trade_no),
            ),
            Err(e) => fail(case, format!("expected StoreError::Duplicate, got {e:?}")),
            Ok(()) => fail(case, "a second insert of the same number succeeded"),
        }
        self.expect_stored(store, case, &first).await;
    }

    /// Runs `t` and checks it answers `Applied(expected)` or, when
    /// `applied` is false, `NotApplied(expected)`, and leaves `expected`
    /// stored.
    async fn expect_outcome(
        &self,
        store: &dyn OrderStore,
        case: &str,
        t: &Transition,
        applied: bool,
        expected: &Order,
        what: &str,
    ) {
        match (applied, ok(case, store.transition(t).await)) {
            (true, TransitionOutcome::Applied(o)) | (false, TransitionOutcome::NotApplied(o))
                if &o == expected => {}
            (_, other) => {
                let want = if applied { "Applied" } else { "NotApplied" };
                let got = match &other {
                    TransitionOutcome::Applied(o) if applied => order_diff(expected, o),
                    TransitionOutcome::NotApplied(o) if !applied => order_diff(expected, o),
                    TransitionOutcome::Applied(_) => "Applied".to_owned(),
                    TransitionOutcome::NotApplied(_) => "NotApplied".to_owned(),
                    TransitionOutcome::NotFound => "NotFound".to_owned(),
                };
                fail(case, format!("{what}: expected {want}; got {got}"))
            }
        }
        self.expect_stored(store, case, expected).await;
    }

    async fn compare_and_set(&self, store: &dyn OrderStore) {
        let case = "transition compare-and-set";
        let now = micros_now();
        let mut expected = self.minimal("cas", OrderState::Created, now);
        ok(case, store.insert(&expected).await);

        // applied
        let patch = OrderPatch {
            prepay_id: Some(Some("wx-prepay-1".into())),
            prepay_expires_at: Some(Some(now + secs(7200))),
            ..OrderPatch::default()
        };
        let t =
            Transition::new(&expected, OrderState::Prepaid, patch, now + secs(1)).expect("legal");
        let stale = expected.clone();
        expected.apply(t.to, &t.patch, t.at);
        self.expect_outcome(store, case, &t, true, &expected, "CREATED → PREPAID")
            .await;

        // not applied: the state is not the one read
        let t = Transition::new(
            &stale,
            OrderState::Closed,
            OrderPatch {
                attention: vec![Attention::new(
                    AttentionKind::Other,
                    "must not be stored",
                    now,
                )],
                ..OrderPatch::default()
            },
            now + secs(2),
        )
        .expect("legal");
        let what = "CREATED → CLOSED on a PREPAID order (the order as found)";
        self.expect_outcome(store, case, &t, false, &expected, what)
            .await;

        // the same state again (a fresh prepay)
        let read = expected.clone();
        let t = Transition::new(
            &read,
            OrderState::Prepaid,
            OrderPatch {
                prepay_id: Some(Some("wx-prepay-2".into())),
                ..OrderPatch::default()
            },
            now + secs(3),
        )
        .expect("legal");
        expected.apply(t.to, &t.patch, t.at);
        self.expect_outcome(store, case, &t, true, &expected, "PREPAID → PREPAID")
            .await;

        // A stale read: same state, older version. It must lose.
        let t = Transition::new(
            &read,
            OrderState::Prepaid,
            OrderPatch {
                prepay_id: Some(Some("wx-prepay-stale".into())),
                ..OrderPatch::default()
            },
            now + secs(4),
        )
        .expect("legal");
        match ok(case, store.transition(&t).await) {
            TransitionOutcome::NotApplied(o) if o == expected => {}
            other => fail(
                case,
                format!(
                    "a transition made from version {} of an order now at version {} (same state):                      expected NotApplied(order as found), got {other:?} (the store ignores the version:                      a stale read wins)",
                    read.version, expected.version
                ),
            ),
        }
        self.expect_stored(store, case, &expected).await;

        // not found
        let mut absent = self.minimal("cas-absent", OrderState::Created, now);
        absent.out_trade_no = self.no("cas-absent");
        let t = Transition::new(&absent, OrderState::Prepaid, OrderPatch::default(), now)
            .expect("legal");
        match ok(case, store.transition(&t).await) {
            TransitionOutcome::NotFound => {}
            other => fail(
                case,
                format!("transition of an unknown number: expected NotFound, got {other:?}"),
            ),
        }
        if ok(case, store.get(&t.out_trade_no).await).is_some() {
            fail(case, "a transition of an unknown number created an order");
        }
    }

    /// Two copies of one refund notify (or a notify and a refundquery): the
    /// copy that read the order before another refund settled must not
    /// overwrite that settlement.
    async fn stale_refund_settlement(&self, store: &dyn OrderStore) {
        let case = "stale read of the refund ledger";
        let now = micros_now();
        let mut order = self.minimal("stale", OrderState::Refunding, now);
        order.total_fee = Fen(100);
        order.transaction_id = Some("4200000000000000000000000077".into());
        order.refunds = vec![
            self.refund("stale-r1", 30, RefundState::Processing, now),
            self.refund("stale-r2", 40, RefundState::Processing, now),
        ];
        ok(case, store.insert(&order).await);
        let settle = |o: &Order, i: usize, at| {
            let mut r = o.refunds[i].clone();
            r.state = RefundState::Success;
            let refunded = o.refunded_fee.0 + r.refund_fee.0;
            let mut refunds = o.refunds.clone();
            refunds[i] = r.clone();
            let open = refunds.iter().any(|r| r.state.is_open());
            let to = if open {
                OrderState::Refunding
            } else {
                OrderState::PartiallyRefunded
            };
            let patch = OrderPatch {
                refunded_fee: Some(Fen(refunded)),
                refunds: vec![r],
                ..OrderPatch::default()
            };
            Transition::new(o, to, patch, at).expect("legal")
        };
        // Both copies read the order first.
        let read_a = ok(case, store.get(&order.out_trade_no).await).expect("stored");
        let read_b = read_a.clone();
        let a = settle(&read_a, 0, now + secs(1));
        let mut expected = read_a.clone();
        expected.apply(a.to, &a.patch, a.at);
        match ok(case, store.transition(&a).await) {
            TransitionOutcome::Applied(o) if o == expected => {}
            other => fail(
                case,
                format!("settling r1: expected Applied({expected:?}), got {other:?}"),
            ),
        }
        // B settles r2 from its stale read: refunded_fee 40 would erase r1's 30.
        let b = settle(&read_b, 1, now + secs(2));
        match ok(case, store.transition(&b).await) {
            TransitionOutcome::NotApplied(o) if o == expected => {}
            other => fail(
                case,
                format!(
                    "a refund settlement made from a stale read (version {}) was not refused: {other:?}                      (the store checks the state only, not the version)",
                    read_b.version
                ),
            ),
        }
        self.expect_stored(store, case, &expected).await;
        // Read again and settle: both refunds count.
        let b = settle(&expected, 1, now + secs(3));
        expected.apply(b.to, &b.patch, b.at);
        match ok(case, store.transition(&b).await) {
            TransitionOutcome::Applied(o) if o == expected && o.refunded_fee == Fen(70) => {}
            other => fail(
                case,
                format!(
                    "settling r2 after a fresh read: expected Applied({expected:?}), got {other:?}"
                ),
            ),
        }
        self.expect_stored(store, case, &expected).await;
    }

    async fn step(
        &self,
        store: &dyn OrderStore,
        case: &str,
        expected: &mut Order,
        to: OrderState,
        patch: OrderPatch,
        at: DateTime<Utc>,
    ) {
        let t = Transition::new(expected, to, patch, at).expect("legal");
        expected.apply(t.to, &t.patch, t.at);
        match ok(case, store.transition(&t).await) {
            TransitionOutcome::Applied(o) if &o == expected => {}
            other => fail(
                case,
                format!(
                    "{:?}\n  expected Applied({expected:?})\n  got {other:?}",
                    t.patch
                ),
            ),
        }
        self.expect_stored(store, case, expected).await;
    }

    async fn patch_semantics(&self, store: &dyn OrderStore) {
        let case = "patch semantics";
        let now = micros_now();
        let mut expected = self.full("patch", OrderState::Prepaid, now);
        ok(case, store.insert(&expected).await);

        // Clear every optional field the patch can clear.
        let clear_all = OrderPatch {
            prepay_id: Some(None),
            code_url: Some(None),
            prepay_expires_at: Some(None),
            transaction_id: Some(None),
            time_end: Some(None),
            bank_type: Some(None),
            cash_fee: Some(None),
            refunded_fee: Some(Fen(0)),
            refunds: Vec::new(),
            attention: Vec::new(),
            fulfilment: Some(Fulfilment::Pending),
            synced_at: Some(None),
        };
        self.step(
            store,
            case,
            &mut expected,
            OrderState::Prepaid,
            clear_all,
            now + secs(1),
        )
        .await;

        // An empty patch keeps everything (only state and updated_at change).
        self.step(
            store,
            case,
            &mut expected,
            OrderState::Prepaid,
            OrderPatch::default(),
            now + secs(2),
        )
        .await;

        // Set every field.
        let set_all = OrderPatch {
            prepay_id: Some(Some("wx-p".into())),
            code_url: Some(Some("weixin://wxpay/bizpayurl?pr=abc".into())),
            prepay_expires_at: Some(Some(now + secs(7200))),
            transaction_id: Some(Some("4200000000000000000000000001".into())),
            time_end: Some(Some("20150806125400".into())),
            bank_type: Some(Some("OTHERS".into())),
            cash_fee: Some(Some(Fen(77))),
            refunded_fee: Some(Fen(0)),
            refunds: Vec::new(),
            attention: vec![
                // recorded already (same kind and detail): not added again
                expected.attention[0].clone(),
                Attention::new(AttentionKind::DoublePayment, "second transaction 42", now),
            ],
            fulfilment: Some(Fulfilment::Held),
            synced_at: Some(Some(now + secs(3))),
        };
        self.step(
            store,
            case,
            &mut expected,
            OrderState::Paid,
            set_all,
            now + secs(3),
        )
        .await;

        // Some fields set, the rest kept; a new refund added, one replaced.
        let mut replaced = expected.refunds[1].clone();
        replaced.state = RefundState::Closed;
        replaced.refund_id = Some("5000-closed".into());
        let refund = OrderPatch {
            refunds: vec![
                self.refund("patch-R1", 10, RefundState::Requested, now),
                replaced,
            ],
            fulfilment: Some(Fulfilment::Done { at: now + secs(4) }),
            ..OrderPatch::default()
        };
        self.step(
            store,
            case,
            &mut expected,
            OrderState::Refunding,
            refund,
            now + secs(4),
        )
        .await;
        let mut settled = self.refund("patch-R1", 10, RefundState::Success, now);
        settled.refund_id = Some("5000-ok".into());
        settled.effect = Fulfilment::Claimed {
            until: now + secs(60),
        };
        let refunded = OrderPatch {
            refunds: vec![settled],
            refunded_fee: Some(Fen(27)),
            ..OrderPatch::default()
        };
        self.step(
            store,
            case,
            &mut expected,
            OrderState::PartiallyRefunded,
            refunded,
            now + secs(5),
        )
        .await;
    }

    async fn concurrent_transitions(&self, store: Arc<dyn OrderStore>) {
        let case = "concurrent transitions";
        let now = micros_now();
        let order = self.minimal("race", OrderState::Prepaid, now);
        ok(case, store.insert(&order).await);
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let store = store.clone();
            let barrier = barrier.clone();
            let t = Transition::new(
                &order,
                OrderState::Paid,
                OrderPatch {
                    transaction_id: Some(Some(format!("TX{i}"))),
                    ..OrderPatch::default()
                },
                now + secs(1),
            )
            .expect("legal");
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.transition(&t).await
            }));
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for task in tasks {
            let outcome = match task.await {
                Ok(r) => ok(case, r),
                Err(e) => fail(case, format!("a racing task panicked: {e}")),
            };
            match outcome {
                TransitionOutcome::Applied(o) => winners.push(o),
                TransitionOutcome::NotApplied(o) => losers.push(o),
                TransitionOutcome::NotFound => fail(case, "an existing order was NotFound"),
            }
        }
        if winners.len() != 1 {
            fail(
                case,
                format!(
                    "{RACERS} concurrent PREPAID → PAID transitions: {} applied, exactly 1 must be \
                     (the transition is not an atomic compare-and-set)",
                    winners.len()
                ),
            );
        }
        let winner = &winners[0];
        if winner.state != OrderState::Paid {
            fail(case, format!("the winner answered state {}", winner.state));
        }
        for l in &losers {
            if l.state != OrderState::Paid || l.transaction_id != winner.transaction_id {
                fail(
                    case,
                    format!(
                        "a losing transition saw {} / {:?}, expected the winner's PAID / {:?}",
                        l.state, l.transaction_id, winner.transaction_id
                    ),
                );
            }
        }
        self.expect_stored(&*store, case, winner).await;
    }

    async fn fulfilment(&self, store: Arc<dyn OrderStore>) {
        let case = "fulfilment claims";
        let now = micros_now();
        let lease = Duration::from_secs(60);
        let order = self.minimal("ful", OrderState::Paid, now);
        let no = order.out_trade_no.clone();
        ok(case, store.insert(&order).await);

        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for _ in 0..RACERS {
            let store = store.clone();
            let barrier = barrier.clone();
            let no = no.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.claim_fulfilment(&no, now, lease).await
            }));
        }
        let mut claims = Vec::new();
        for task in tasks {
            let claimed = match task.await {
                Ok(r) => ok(case, r),
                Err(e) => fail(case, format!("a claiming task panicked: {e}")),
            };
            claims.extend(claimed);
        }
        if claims.len() != 1 {
            fail(
                case,
                format!(
                    "{RACERS} concurrent claims of a pending fulfilment: {} won, exactly 1 must",
                    claims.len()
                ),
            );
        }
        let first = claims[0];
        if first.until != now + secs(60) {
            fail(
                case,
                format!(
                    "the claim's lease ends at {}, expected now + lease",
                    first.until
                ),
            );
        }
        let mut expected = order.clone();
        expected.fulfilment = Fulfilment::Claimed { until: first.until };
        expected.version += 1;
        self.expect_stored(&*store, case, &expected).await;

        // A live lease blocks.
        if let Some(c) = ok(
            case,
            store.claim_fulfilment(&no, now + secs(59), lease).await,
        ) {
            fail(
                case,
                format!("a claim succeeded while another claim's lease was live: {c:?}"),
            );
        }
        // An expired lease does not.
        let later = now + secs(120);
        let Some(second) = ok(case, store.claim_fulfilment(&no, later, lease).await) else {
            fail(
                case,
                "a claim failed although the previous lease had expired",
            )
        };
        expected.fulfilment = Fulfilment::Claimed {
            until: later + secs(60),
        };
        expected.version += 1;
        self.expect_stored(&*store, case, &expected).await;

        // The first worker's lease ran out: it cannot complete.
        if ok(
            case,
            store.complete_fulfilment(&no, first, later + secs(1)).await,
        ) {
            fail(
                case,
                "complete_fulfilment succeeded with a claim that had passed to another worker",
            );
        }
        self.expect_stored(&*store, case, &expected).await;

        // Done is final.
        let done_at = later + secs(1);
        if !ok(case, store.complete_fulfilment(&no, second, done_at).await) {
            fail(
                case,
                "complete_fulfilment failed for the holder of the claim",
            );
        }
        expected.fulfilment = Fulfilment::Done { at: done_at };
        expected.version += 1;
        self.expect_stored(&*store, case, &expected).await;
        if ok(
            case,
            store
                .claim_fulfilment(&no, now + secs(86_400 * 365), lease)
                .await,
        )
        .is_some()
        {
            fail(case, "a claim succeeded on a completed fulfilment");
        }

        // Only a PAID order (paid, nothing refunded or in flight) can be
        // claimed; so can no held fulfilment.
        for (tag, state, fulfilment) in [
            ("ful-refunding", OrderState::Refunding, Fulfilment::Pending),
            ("ful-refunded", OrderState::Refunded, Fulfilment::Pending),
            (
                "ful-partly",
                OrderState::PartiallyRefunded,
                Fulfilment::Pending,
            ),
            ("ful-prepaid", OrderState::Prepaid, Fulfilment::Pending),
            ("ful-held", OrderState::Paid, Fulfilment::Held),
        ] {
            let mut o = self.minimal(tag, state, now);
            o.fulfilment = fulfilment;
            ok(case, store.insert(&o).await);
            if let Some(c) = ok(
                case,
                store.claim_fulfilment(&o.out_trade_no, now, lease).await,
            ) {
                fail(
                    case,
                    format!("a {state} order with fulfilment {fulfilment:?} was claimed: {c:?}"),
                );
            }
            self.expect_stored(&*store, case, &o).await;
        }

        // Unknown orders cannot be claimed.
        if matches!(
            store
                .claim_fulfilment(&self.no("ful-absent"), now, lease)
                .await,
            Ok(Some(_))
        ) {
            fail(case, "a claim of an unknown order succeeded");
        }
    }

    async fn shared_handles(&self, store: &dyn OrderStore) {
        let case = "shared handles";
        let now = micros_now();
        let lease = Duration::from_secs(60);
        let mut expected = self.full("shared", OrderState::Prepaid, now);
        expected.fulfilment = Fulfilment::Pending;
        let no = expected.out_trade_no.clone();
        ok(case, store.insert(&expected).await);
        let before = ok(case, store.get_shared(&no).await);

        let paid = Transition::new(
            &expected,
            OrderState::Paid,
            OrderPatch {
                transaction_id: Some(Some("4200000000000000000000000042".into())),
                ..OrderPatch::default()
            },
            now + secs(1),
        )
        .expect("legal");
        expected.apply(paid.to, &paid.patch, paid.at);
        let handle = match ok(case, store.transition_shared(&paid).await) {
            TransitionOutcome::Applied(o) if *o == expected => o,
            other => fail(
                case,
                format!("PREPAID → PAID: expected Applied({expected:?}), got {other:?}"),
            ),
        };
        if before.as_deref().map(|o| o.state) != Some(OrderState::Prepaid) {
            fail(
                case,
                format!("a get_shared handle changed under a transition: {before:?}"),
            );
        }

        // Claim and complete while the transition's handle is held.
        let Some(claim) = ok(case, store.claim_fulfilment(&no, now, lease).await) else {
            fail(case, "the claim of a pending fulfilment failed")
        };
        expected.fulfilment = Fulfilment::Claimed {
            until: now + secs(60),
        };
        expected.version += 1;
        self.expect_stored(store, case, &expected).await;
        let done_at = now + secs(2);
        ok(case, store.complete_fulfilment(&no, claim, done_at).await);
        expected.fulfilment = Fulfilment::Done { at: done_at };
        expected.version += 1;
        self.expect_stored(store, case, &expected).await;
        if handle.fulfilment != Fulfilment::Pending {
            fail(
                case,
                format!(
                    "a handle from transition_shared changed under a claim: {:?}",
                    handle.fulfilment
                ),
            );
        }

        // Not applied: the order as it is, fulfilment and version included.
        match ok(case, store.transition_shared(&paid).await) {
            TransitionOutcome::NotApplied(o) if *o == expected => {}
            other => fail(
                case,
                format!(
                    "PREPAID → PAID on a PAID order: expected NotApplied({expected:?}), got {other:?}"
                ),
            ),
        }
        let mut absent = self.minimal("shared-absent", OrderState::Prepaid, now);
        absent.out_trade_no = self.no("shared-absent");
        let absent =
            Transition::new(&absent, OrderState::Paid, OrderPatch::default(), now).expect("legal");
        match ok(case, store.transition_shared(&absent).await) {
            TransitionOutcome::NotFound => {}
            other => fail(
                case,
                format!("unknown number: expected NotFound, got {other:?}"),
            ),
        }
    }

    async fn listing(&self, store: &dyn OrderStore) {
        let case = "listing";
        let listing = store.listing().expect("checked by the caller");
        let now = micros_now();
        // Orders of this run get timestamps that are older the later the run
        // starts, so they sort before what earlier runs left in the store.
        let mirror = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap()
            - (now - Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap());
        let at = |s: i64| mirror + secs(s);
        let mk = |tag: &str, state: OrderState, s: i64, fulfilment: Fulfilment| {
            let mut o = self.minimal(tag, state, at(s));
            o.fulfilment = fulfilment;
            o
        };
        let p = Fulfilment::Pending;
        let orders = [
            mk("l1", OrderState::Prepaid, 0, p),
            mk("l2", OrderState::Created, 1, p),
            mk("l3", OrderState::Prepaid, 2, p),
            mk("l4", OrderState::Paid, 1, p),
            mk("l5", OrderState::Prepaid, 3, p),
            mk("u1", OrderState::Paid, 4, p),
            mk(
                "u2",
                OrderState::Paid,
                5,
                Fulfilment::Claimed {
                    until: now - secs(3600),
                },
            ),
            mk(
                "u3",
                OrderState::Paid,
                6,
                Fulfilment::Claimed {
                    until: now + secs(3600),
                },
            ),
            mk("u4", OrderState::Paid, 7, Fulfilment::Done { at: now }),
            mk("u5", OrderState::Closed, 8, p),
            mk("u6", OrderState::Failed, 9, p),
            // refunded or in flight: `on_paid` is not due whatever the fulfilment
            mk("u7", OrderState::Refunding, 10, p),
            mk("u8", OrderState::Refunded, 11, p),
            mk("u9", OrderState::Paid, 12, Fulfilment::Held),
            // a successful refund whose `on_refunded` is due, or not
            {
                let mut o = mk("v1", OrderState::Refunded, 13, Fulfilment::Done { at: now });
                o.refunds
                    .push(self.refund("lst-r1", 1, RefundState::Success, now));
                o
            },
            {
                let mut o = mk("v2", OrderState::PartiallyRefunded, 14, p);
                let mut r = self.refund("lst-r2", 1, RefundState::Success, now);
                r.effect = Fulfilment::Claimed {
                    until: now - secs(1),
                };
                o.refunds.push(r);
                o
            },
            {
                let mut o = mk("v3", OrderState::Refunded, 15, p);
                let mut r = self.refund("lst-r3", 1, RefundState::Success, now);
                r.effect = Fulfilment::Done { at: now };
                o.refunds.push(r);
                let mut live = self.refund("lst-r3b", 1, RefundState::Success, now);
                live.effect = Fulfilment::Claimed {
                    until: now + secs(60),
                };
                o.refunds.push(live);
                o
            },
            {
                let mut o = mk("v4", OrderState::Refunding, 16, p);
                o.refunds
                    .push(self.refund("lst-r4", 1, RefundState::Processing, now));
                o
            },
        ];
        for o in &orders {
            ok(case, store.insert(o).await);
        }
        let ours = |found: &[Order]| -> Vec<String> {
            found
                .iter()
                .filter(|o| o.out_trade_no.as_str().starts_with(&self.run))
                .map(|o| o.out_trade_no.as_str()[self.run.len() + 1..].to_owned())
                .collect()
        };
        let sorted = |found: &[Order]| found.windows(2).all(|w| w[0].updated_at <= w[1].updated_at);

        let filter = ListFilter {
            states: vec![OrderState::Created, OrderState::Prepaid],
            updated_before: at(2),
            limit: 1000,
        };
        let found = ok(case, listing.list(&filter).await);
        if ours(&found) != ["l1", "l2", "l3"] || !sorted(&found) {
            fail(
                case,
                format!(
                    "list(CREATED|PREPAID, updated_before inclusive) returned {:?}, expected [l1, l2, l3] oldest first",
                    ours(&found)
                ),
            );
        }
        for o in &found {
            if !filter.states.contains(&o.state) || o.updated_at > filter.updated_before {
                fail(case, format!("list returned a non-matching order {o:?}"));
            }
        }
        let limited = ok(
            case,
            listing
                .list(&ListFilter {
                    limit: 2,
                    ..filter.clone()
                })
                .await,
        );
        let nos = |found: &[Order]| -> Vec<OutTradeNo> {
            found.iter().map(|o| o.out_trade_no.clone()).collect()
        };
        if nos(&limited) != nos(&found[..found.len().min(2)]) {
            fail(
                case,
                format!(
                    "list with limit 2 returned {:?}, expected the two oldest of {:?}",
                    nos(&limited),
                    nos(&found)
                ),
            );
        }
        for o in &found {
            if o.out_trade_no.as_str().starts_with(&self.run)
                && !orders.iter().any(|want| want == o)
            {
                fail(
                    case,
                    format!("list returned an order that differs from the stored one: {o:?}"),
                );
            }
        }

        let found = ok(case, listing.unfulfilled(now, 1000).await);
        let got: Vec<String> = ours(&found)
            .into_iter()
            .filter(|t| t.starts_with('u') || t.starts_with('l') || t.starts_with('v'))
            .collect();
        if got != ["l4", "u1", "u2", "v1", "v2"] || !sorted(&found) {
            fail(
                case,
                format!(
                    "unfulfilled(now) returned {got:?}, expected [l4, u1, u2, v1, v2]: PAID orders \
                     whose fulfilment is pending or whose lease expired, and orders with a SUCCESS \
                     refund whose effect is, oldest first"
                ),
            );
        }
        for o in &found {
            let paid_due = o.state == OrderState::Paid && o.fulfilment.claimable(now);
            let refund_due = (o.refunds.iter())
                .any(|r| r.state == RefundState::Success && r.effect.claimable(now));
            if !paid_due && !refund_due {
                fail(case, format!("unfulfilled returned {o:?}"));
            }
        }
        let limited = ok(case, listing.unfulfilled(now, 1).await);
        if nos(&limited) != nos(&found[..found.len().min(1)]) {
            fail(
                case,
                format!(
                    "unfulfilled with limit 1 returned {:?}, expected the oldest of {:?}",
                    nos(&limited),
                    nos(&found)
                ),
            );
        }
    }

    async fn owned_by(&self, store: &dyn OrderStore) {
        let case = "owned_by";
        let listing = store.listing().expect("checked by the caller");
        let now = micros_now();
        let owner = format!("owner-{}-用户", self.run);
        let mk = |tag: &str, owner: Option<&str>, created: i64| {
            let mut o = self.full(tag, OrderState::Paid, now);
            o.owner = owner.map(str::to_owned);
            o.created_at = now - secs(100 - created);
            o
        };
        let orders = [
            mk("o1", Some(&owner), 1),
            mk("o3", Some(&owner), 3),
            mk("o2a", Some(&owner), 2),
            mk("o2b", Some(&owner), 2),
            mk("x1", Some("someone else"), 4),
            mk("x2", None, 5),
        ];
        for o in &orders {
            ok(case, store.insert(o).await);
        }
        let tags = |found: &[Order]| -> Vec<String> {
            (found.iter())
                .map(|o| o.out_trade_no.as_str()[self.run.len() + 1..].to_owned())
                .collect()
        };
        let found = ok(case, listing.owned_by(&owner, 100).await);
        if tags(&found) != ["o3", "o2b", "o2a", "o1"] {
            fail(
                case,
                format!(
                    "owned_by returned {:?}, expected [o3, o2b, o2a, o1]: the owner's orders \
                     only, newest created_at first, ties by number descending",
                    tags(&found)
                ),
            );
        }
        for o in &found {
            if !orders.iter().any(|want| want == o) {
                fail(
                    case,
                    format!("owned_by returned an order that differs from the stored one: {o:?}"),
                );
            }
        }
        let limited = ok(case, listing.owned_by(&owner, 2).await);
        if tags(&limited) != ["o3", "o2b"] {
            fail(
                case,
                format!(
                    "owned_by with limit 2 returned {:?}, expected [o3, o2b]",
                    tags(&limited)
                ),
            );
        }
        if let Some(o) = ok(case, listing.owned_by(&format!("{owner}-nobody"), 10).await).first() {
            fail(
                case,
                format!("owned_by of an owner with no orders returned {o:?}"),
            );
        }
    }

    async fn settled_on(&self, store: &dyn OrderStore) {
        let case = "settled_on";
        let listing = store.listing().expect("checked by the caller");
        // A day long past: the kit's other orders are paid on 2020-01-04 and
        // refunded now. Other runs on the same database may have left orders
        // on this day too: every check looks at this run's numbers only,
        // which sort together (they share the run's prefix).
        let day = NaiveDate::from_ymd_opt(2001, 2, 3).expect("a valid date");
        let bj = |d: u32, h: u32, m: u32, s: u32| {
            NaiveDate::from_ymd_opt(2001, 2, d)
                .and_then(|d| d.and_hms_opt(h, m, s))
                .expect("a valid time")
                .and_utc()
                - chrono::Duration::hours(8)
        };
        let now = micros_now();
        let paid = |tag: &str, time_end: &str| {
            let mut o = self.full(tag, OrderState::Paid, now);
            o.time_end = Some(time_end.into());
            o.refunds.clear();
            o.refunded_fee = Fen(0);
            o
        };
        let refunded = |tag: &str, state: RefundState, at: DateTime<Utc>| {
            let mut o = paid(tag, "20010131120000");
            o.state = OrderState::PartiallyRefunded;
            let mut r = self.refund(&format!("{tag}-R"), 5, state, at);
            r.updated_at = at;
            if state == RefundState::Success {
                o.refunded_fee = Fen(5);
            }
            o.refunds.push(r);
            o
        };
        let orders = [
            paid("a-first", "20010203000000"),
            paid("b-last", "20010203235959"),
            paid("c-next", "20010204000000"),
            paid("d-before", "20010202235959"),
            refunded("e-rf-start", RefundState::Success, bj(3, 0, 0, 0)),
            refunded("f-rf-next", RefundState::Success, bj(4, 0, 0, 0)),
            refunded("g-rf-open", RefundState::Processing, bj(3, 12, 0, 0)),
            refunded("h-rf-before", RefundState::Success, bj(2, 23, 59, 59)),
        ];
        for o in &orders {
            ok(case, store.insert(o).await);
        }
        let prefix = format!("{}-", self.run);
        let ours = |found: &[Order]| -> Vec<String> {
            (found.iter())
                .filter_map(|o| o.out_trade_no.as_str().strip_prefix(&prefix))
                .map(str::to_owned)
                .collect()
        };
        let filter = |after: &str, limit: usize| SettledFilter {
            day,
            after: Some(OutTradeNo::new(after).expect("kit order numbers are valid")),
            limit,
        };
        let all = match listing.settled_on(&filter(&self.run, 100)).await {
            Err(StoreError::Unsupported(_)) => return,
            other => ok(case, other),
        };
        let want = ["a-first", "b-last", "e-rf-start"];
        if ours(&all) != want {
            fail(
                case,
                format!(
                    "settled_on returned {:?} of this run, expected {want:?}: orders paid on the \
                     day (both ends) or with a SUCCESS refund changed on it, by number",
                    ours(&all)
                ),
            );
        }
        for o in all
            .iter()
            .filter(|o| o.out_trade_no.as_str().starts_with(&prefix))
        {
            if !orders.iter().any(|want| want == o) {
                fail(
                    case,
                    format!("settled_on returned an order that differs from the stored one: {o:?}"),
                );
            }
        }
        if all
            .windows(2)
            .any(|w| w[0].out_trade_no >= w[1].out_trade_no)
        {
            fail(
                case,
                "settled_on did not answer in byte order of out_trade_no",
            );
        }
        // Paging: this run's numbers sort together, right after the run id.
        let first = ok(case, listing.settled_on(&filter(&self.run, 2)).await);
        if ours(&first) != want[..2] {
            fail(
                case,
                format!(
                    "settled_on with limit 2 returned {:?}, expected {:?}",
                    ours(&first),
                    &want[..2]
                ),
            );
        }
        let next = ok(
            case,
            listing
                .settled_on(&filter(&format!("{prefix}b-last"), 2))
                .await,
        );
        if ours(&next) != want[2..] {
            fail(
                case,
                format!(
                    "settled_on after b-last returned {:?}, expected {:?}",
                    ours(&next),
                    &want[2..]
                ),
            );
        }
    }
}

/// The fields of a successful payment notify for `order`, unsigned: change
/// what you need, then [`sign_notify`].
///
/// `total_fee` and `cash_fee` are the order's amount, `time_end` is now
/// (Beijing), `openid` and `trade_type` are the order's.
pub fn payment_notify_params(
    config: &crate::Config,
    order: &Order,
    transaction_id: &str,
) -> crate::Params {
    let mut p = crate::Params::new();
    p.insert("return_code", "SUCCESS");
    p.insert("return_msg", "OK");
    p.insert("appid", config.appid.as_str());
    p.insert("mch_id", config.mch_id.as_str());
    p.insert("nonce_str", crate::types::nonce_str());
    p.insert("result_code", "SUCCESS");
    p.insert("openid", order.openid.as_deref().unwrap_or("oTestOpenid"));
    p.insert("is_subscribe", "N");
    p.insert("trade_type", order.trade_type.as_str());
    p.insert("bank_type", "OTHERS");
    p.insert("total_fee", order.total_fee.to_string());
    p.insert("fee_type", "CNY");
    p.insert("cash_fee", order.total_fee.to_string());
    p.insert("transaction_id", transaction_id);
    p.insert("out_trade_no", order.out_trade_no.as_str());
    p.insert_opt("attach", order.attach.as_deref());
    p.insert("time_end", crate::types::format_beijing(Utc::now()));
    p
}

/// Signs notify fields with the config's key and `sign_type` (no `sign_type`
/// element is added, as WeChat usually sends none) and returns the XML body.
pub fn sign_notify(
    config: &crate::Config,
    mut params: crate::Params,
    sign_type: SignType,
) -> String {
    params.remove("sign");
    let sign = crate::sign::sign(&params, &config.api_key, sign_type);
    params.insert("sign", sign);
    crate::xml::to_xml(&params)
}

/// A successful payment notify for `order`, signed with the order's sign
/// type, as WeChat would POST it.
///
/// ```
/// use wxpay_core::{ApiKey, Config, Fen, OutTradeNo, SignType, TradeType, flow::Order, testkit};
/// let config = Config::new("wxd930ea5d5a258f4f", "10000100", ApiKey::new("192006250b4c09247ec02edce69f6a2d"));
/// let order = Order::new(OutTradeNo::new("A1").unwrap(), Fen(88), "Shop-VIP", TradeType::Jsapi, SignType::Md5, chrono::Utc::now());
/// let body = testkit::signed_payment_notify(&config, &order, "4200000000000000000000000001");
/// let n = wxpay_core::notify::verify_payment_notify(body.as_bytes(), &config, SignType::Md5).unwrap();
/// assert_eq!(n.total_fee, Fen(88));
/// ```
pub fn signed_payment_notify(
    config: &crate::Config,
    order: &Order,
    transaction_id: &str,
) -> String {
    sign_notify(
        config,
        payment_notify_params(config, order, transaction_id),
        order.sign_type,
    )
}

/// Stores `count` PREPAID JSAPI orders of 998 fen, numbered `{prefix}{i}`,
/// as unifiedorder would have left them, and returns their signed paying
/// notifies in order: the fixture of the notify benchmarks.
///
/// # Errors
/// The store's, e.g. [`StoreError::Duplicate`] for a prefix used before;
/// a prefix that makes an invalid `out_trade_no` comes back as
/// [`StoreError::Backend`] holding the field error.
pub async fn prepaid_with_notifies(
    payments: &crate::flow::Payments,
    prefix: &str,
    count: u64,
) -> Result<Vec<String>, StoreError> {
    let mut bodies = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for i in 0..count {
        let no = OutTradeNo::new(format!("{prefix}{i}"))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let mut order = Order::new(
            no,
            Fen(998),
            "bench",
            TradeType::Jsapi,
            SignType::Md5,
            Utc::now(),
        );
        order.openid = Some("oBenchOpenid".into());
        order.prepay_id = Some("wx_bench_prepay".into());
        order.state = OrderState::Prepaid;
        payments.store().insert(&order).await?;
        let transaction_id = format!("4200{i:024}");
        bodies.push(signed_payment_notify(
            payments.config(),
            &order,
            &transaction_id,
        ));
    }
    Ok(bodies)
}

/// A refund notify for `order`, with `req_info` encrypted under the
/// config's key as WeChat does.
pub fn refund_notify(
    config: &crate::Config,
    order: &Order,
    out_refund_no: &str,
    refund_fee: Fen,
    status: crate::RefundStatus,
) -> String {
    let mut inner = crate::Params::new();
    inner.insert("out_trade_no", order.out_trade_no.as_str());
    inner.insert_opt("transaction_id", order.transaction_id.as_deref());
    inner.insert("out_refund_no", out_refund_no);
    inner.insert(
        "refund_id",
        format!("5000{}", crate::types::nonce_str()[..20].to_owned()),
    );
    inner.insert("total_fee", order.total_fee.to_string());
    inner.insert("refund_fee", refund_fee.to_string());
    inner.insert("settlement_refund_fee", refund_fee.to_string());
    inner.insert("refund_status", status.as_str());
    inner.insert("refund_recv_accout", "支付用户零钱");
    inner.insert("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS");
    inner.insert("refund_request_source", "API");
    if status == crate::RefundStatus::Success {
        inner.insert(
            "success_time",
            Utc::now()
                .with_timezone(&crate::types::beijing())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
        );
    }
    let plain = crate::xml::to_xml_with_root(&inner, "root");
    let mut outer = crate::Params::new();
    outer.insert("return_code", "SUCCESS");
    outer.insert("appid", config.appid.as_str());
    outer.insert("mch_id", config.mch_id.as_str());
    outer.insert("nonce_str", crate::types::nonce_str());
    outer.insert(
        "req_info",
        crate::crypto::encrypt_req_info(&plain, &config.api_key),
    );
    crate::xml::to_xml(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_diff_names_only_the_differing_fields() {
        let kit = Kit::new();
        let want = kit.full("diff", OrderState::Paid, micros_now());
        let mut got = want.clone();
        assert_eq!(order_diff(&want, &got), "the orders are equal");
        got.state = OrderState::Refunded;
        got.version = 9;
        let d = order_diff(&want, &got);
        assert!(
            d.contains(r#"state: expected "PAID", got "REFUNDED""#),
            "{d}"
        );
        assert!(d.contains("version: expected 0, got 9"), "{d}");
        assert!(!d.contains("body") && !d.contains("total_fee"), "{d}");
    }
}
