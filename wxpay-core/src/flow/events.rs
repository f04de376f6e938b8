//! [`PaymentEvents`]: the app's business effects.

use async_trait::async_trait;

use super::{Order, Refund};
use crate::BoxError;

/// The app's reaction to money moving: grant what was bought, revoke it on
/// refund.
///
/// # The `on_paid` guarantee
/// After an order is recorded `PAID`, wxpay claims its fulfilment in the
/// store (a lease, [`OrderStore::claim_fulfilment`](super::OrderStore::claim_fulfilment)),
/// calls `on_paid`, and on `Ok` marks it done. Therefore:
/// - two runs for one order **never overlap**: a run needs the claim, and a
///   run that outlives most of its lease is cancelled (its future dropped)
///   before the lease ends (this relies on the app instances' clocks agreeing
///   to well within the lease);
/// - in the normal case `on_paid` runs **exactly once**, whichever of the
///   duplicate notifies, status polls or reconciler passes records the payment;
/// - if `on_paid` returns `Err`, is cancelled, or the process dies while it
///   runs (or between recording the payment and completing the fulfilment),
///   it runs **again** after the lease has expired, from the reconciler
///   ([`Payments::reconciler`](super::Payments::reconciler)) or the next
///   duplicate notify. Delivery is then *at least once*.
///
/// So make `on_paid` idempotent by `out_trade_no`: record the grant keyed by
/// `out_trade_no` (a unique key) in the same database transaction that
/// grants, and treat "already granted" as success.
///
/// `on_paid` runs inside the notify request, before WeChat gets its answer,
/// and WeChat waits at most 5 seconds: keep it short (a database write), and
/// hand slow work (mail, shipping calls) to a queue of your own. A slow
/// `on_paid` is not unsafe — WeChat delivers again and the repeat is a
/// duplicate — but it costs retries.
///
/// ```
/// use async_trait::async_trait;
/// use wxpay_core::{BoxError, flow::{Order, PaymentEvents}};
///
/// struct Grants;
///
/// #[async_trait]
/// impl PaymentEvents for Grants {
///     async fn on_paid(&self, order: &Order) -> Result<(), BoxError> {
///         // INSERT INTO grants (out_trade_no, owner, …) ON CONFLICT (out_trade_no) DO NOTHING
///         let _ = (&order.out_trade_no, &order.owner);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait PaymentEvents: Send + Sync + 'static {
    /// The order is paid: deliver the goods. See the guarantee above.
    ///
    /// # Errors
    /// Any error: the fulfilment stays unfinished and is retried after the lease.
    async fn on_paid(&self, order: &Order) -> Result<(), BoxError>;

    /// A refund succeeded (`refund.state` is `SUCCESS`): take back what it
    /// paid for. Runs like `on_paid`, under a claim (a lease kept in the
    /// refund's [`effect`](super::Refund::effect)): once per successful
    /// refund in the normal case, again after the lease if it fails, is
    /// cancelled or the process dies, from the reconciler or the next
    /// notify; never while an `on_paid` run of the order holds its claim
    /// (a grant in progress is taken back after it, never before). So make
    /// it idempotent by `refund.out_refund_no`. Refunds made outside the
    /// app count too. `on_paid` never runs for an order with a refund in
    /// flight or settled. Default: nothing.
    ///
    /// # Errors
    /// Any error: the effect stays unfinished and is retried after the lease.
    async fn on_refunded(&self, order: &Order, refund: &Refund) -> Result<(), BoxError> {
        let _ = (order, refund);
        Ok(())
    }

    /// An order was flagged for a person (a case was added to
    /// [`Order::attention`]): a late payment, a second `transaction_id`, a
    /// verified amount or currency mismatch, a refund this app did not
    /// start, an abnormal refund, a refund settled with another amount.
    /// Called by the instance that recorded the case (the case stays on the
    /// order either way). Default: nothing (the flag and an `error`-level
    /// log line remain).
    async fn on_attention(&self, order: &Order) {
        let _ = order;
    }

    /// A scheduled daily reconciliation finished
    /// ([`Reconciler::daily`](super::Reconciler::daily)): send it to
    /// whoever reads them (finance, an alert when
    /// [`DailyReport::needs_person`](super::DailyReport::needs_person)).
    /// Its flags are already recorded on their orders. Default: nothing
    /// (the reconciler logs the report either way).
    async fn on_daily_report(&self, report: &super::DailyReport) {
        let _ = report;
    }
}

/// The events used when the app configures none: payments are recorded and
/// nothing else happens.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl PaymentEvents for NoEvents {
    async fn on_paid(&self, _order: &Order) -> Result<(), BoxError> {
        Ok(())
    }
}
