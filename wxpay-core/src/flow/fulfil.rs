//! Recording verified payments, and the app's effects (`on_paid`,
//! `on_refunded`) run under claims.

use std::{future::Future, sync::Arc, task::Poll, time::Duration};

use tracing::{Instrument, field::Empty};

use super::{
    AttentionPolicy, Claim, Fulfilment, Order, OrderPatch, Payments, PaymentsError, StoreError,
    Transition, TransitionOutcome,
    decide::{self, Mismatch, PaymentDecision, PaymentReport, RefundReport},
    payments::{MAX_RACES, illegal, now, raced},
};
use crate::{BoxError, OutTradeNo};

/// What recording a verified payment did.
#[derive(Debug, Clone)]
pub(crate) enum Recorded {
    /// This call recorded the payment (`late`: the order was CLOSED or
    /// FAILED; `flagged`: attention cases were recorded with it; `claim`:
    /// the fulfilment this call holds).
    Paid {
        order: Arc<Order>,
        late: bool,
        flagged: bool,
        claim: Option<Claim>,
    },
    /// It was recorded already.
    Already(Arc<Order>),
    /// Paid already under another transaction: flagged now.
    Flagged(Arc<Order>),
    /// Refused (amount or currency); `flagged` when this call recorded the case.
    Refused {
        order: Arc<Order>,
        mismatch: Mismatch,
        flagged: bool,
    },
    /// The order vanished.
    NotFound,
}

enum Kind {
    Paid { late: bool, claim: Option<Claim> },
    Flag,
    Refuse(Mismatch),
}

/// Runs an effect within `budget`. An effect that finishes at its first
/// poll (in-memory work) needs no timer; tokio's timers take a driver lock
/// even when unused.
async fn within<F>(budget: Duration, effect: F) -> Result<(), String>
where
    F: Future<Output = Result<(), BoxError>>,
{
    let mut effect = std::pin::pin!(effect);
    let first = std::future::poll_fn(|cx| Poll::Ready(effect.as_mut().poll(cx))).await;
    let outcome = match first {
        Poll::Ready(done) => Ok(done),
        Poll::Pending => tokio::time::timeout(budget, effect).await,
    };
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {budget:?} and was cancelled")),
    }
}

impl Payments {
    /// Records a verified payment report (with the refunds WeChat made of
    /// it, for an orderquery that answered `REFUND`) on `order` as read:
    /// the decision is [`decide::payment`], written as one versioned
    /// transition, decided again on a race.
    pub(crate) async fn record_payment(
        &self,
        mut order: Arc<Order>,
        report: &PaymentReport,
        refunds: &[RefundReport],
    ) -> Result<Recorded, StoreError> {
        let store = &*self.inner.store;
        let s = &self.inner.settings;
        for _ in 0..MAX_RACES {
            let at = now();
            let decision = if refunds.is_empty() {
                decide::payment(&order, report, s.attention, at, s.lease)
            } else {
                decide::payment_with_refunds(&order, report, refunds, s.attention, at, s.lease)
            };
            let (to, patch, kind) = match decision {
                PaymentDecision::Duplicate => return Ok(Recorded::Already(order)),
                PaymentDecision::Record {
                    to,
                    patch,
                    late,
                    claim,
                } => (to, patch, Kind::Paid { late, claim }),
                PaymentDecision::Flag { patch } => (order.state, patch, Kind::Flag),
                PaymentDecision::Refuse {
                    patch: None,
                    mismatch,
                } => {
                    return Ok(Recorded::Refused {
                        order,
                        mismatch,
                        flagged: false,
                    });
                }
                PaymentDecision::Refuse {
                    patch: Some(patch),
                    mismatch,
                } => (order.state, patch, Kind::Refuse(mismatch)),
            };
            let flagged = !patch.attention.is_empty();
            let t = Transition::new(&order, to, patch, at).map_err(illegal)?;
            // Let go of the shared copy first: a store that hands out its own
            // (MemoryStore) then updates the order in place.
            drop(order);
            match store.transition_shared(&t).await? {
                TransitionOutcome::Applied(order) => {
                    return Ok(match kind {
                        Kind::Paid { late, claim } => Recorded::Paid {
                            order,
                            late,
                            flagged,
                            claim,
                        },
                        Kind::Flag => Recorded::Flagged(order),
                        Kind::Refuse(mismatch) => Recorded::Refused {
                            order,
                            mismatch,
                            flagged: true,
                        },
                    });
                }
                TransitionOutcome::NotApplied(o) => order = o,
                TransitionOutcome::NotFound => return Ok(Recorded::NotFound),
            }
        }
        Err(raced(&order.out_trade_no))
    }

    /// Reports an order just flagged for attention: counted
    /// ([`ATTENTION_TOTAL`](crate::metrics::ATTENTION_TOTAL)), then
    /// [`PaymentEvents::on_attention`](super::PaymentEvents::on_attention).
    pub(crate) async fn report_attention(&self, order: &Order) {
        crate::metrics::attention(order);
        self.inner.events.on_attention(order).await;
    }

    /// After a payment was recorded (or found recorded): report what needs
    /// a person, and run the effects that are due.
    pub(crate) async fn after_paid(&self, recorded: &Recorded) {
        match recorded {
            Recorded::Paid {
                order,
                late,
                flagged,
                claim,
            } => {
                if *late {
                    tracing::error!(
                        out_trade_no = %order.out_trade_no,
                        "payment arrived for an order that was closed or had failed: recorded PAID and flagged"
                    );
                }
                if *flagged {
                    self.report_attention(order).await;
                }
                if let Some(claim) = claim {
                    self.run_on_paid(order, *claim).await;
                }
                if *late && self.inner.settings.attention == AttentionPolicy::Refund {
                    self.refund_late(order).await;
                }
                self.run_refund_effects(order).await;
            }
            Recorded::Already(order) => {
                self.run_effects(order).await;
            }
            Recorded::Flagged(order)
            | Recorded::Refused {
                order,
                flagged: true,
                ..
            } => {
                tracing::error!(
                    out_trade_no = %order.out_trade_no,
                    attention = ?order.attention.last(),
                    "order flagged for attention"
                );
                self.report_attention(order).await;
            }
            Recorded::Refused { .. } | Recorded::NotFound => {}
        }
    }

    /// [`AttentionPolicy::Refund`]: refunds a late payment in full.
    async fn refund_late(&self, order: &Order) {
        let no = &order.out_trade_no;
        let out_refund_no = format!("{no}-LATE");
        match self.refund(no, &out_refund_no, order.total_fee).await {
            Ok(r) => {
                tracing::warn!(out_trade_no = %no, state = %r.refund.state, "late payment refunded by policy")
            }
            Err(e) => {
                tracing::error!(out_trade_no = %no, error = %e, "late payment: the policy's refund failed; refund it by hand")
            }
        }
    }

    /// Runs whatever effect of `order` is due: `on_paid` (paid, nothing
    /// refunded, claimable) and `on_refunded` for its successful refunds.
    /// Returns how many ran to completion here.
    pub(crate) async fn run_effects(&self, order: &Order) -> usize {
        let at = now();
        let mut done = 0;
        if decide::paid_effect_due(order, at) && self.fulfil(order).await {
            done += 1;
        }
        done + self.run_refund_effects(order).await
    }

    /// Claims and runs `on_paid` for an order that is due it. Returns
    /// whether it ran to completion here.
    pub(crate) async fn fulfil(&self, order: &Order) -> bool {
        let s = &self.inner.settings;
        match (self.inner.store)
            .claim_fulfilment(&order.out_trade_no, now(), s.lease)
            .await
        {
            Ok(Some(claim)) => self.run_on_paid(order, claim).await,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "could not claim the fulfilment; the reconciler retries");
                false
            }
        }
    }

    /// Runs `on_paid` under `claim` and completes it (only while the claim
    /// is still this one's).
    async fn run_on_paid(&self, order: &Order, claim: Claim) -> bool {
        let span = tracing::info_span!(
            "wxpay.fulfil",
            out_trade_no = %order.out_trade_no,
            outcome = Empty
        );
        async {
            let budget = self.inner.settings.lease.mul_f64(0.8);
            if let Err(e) = within(budget, self.inner.events.on_paid(order)).await {
                tracing::error!(error = %e, "on_paid failed; retried after the lease");
                tracing::Span::current().record("outcome", "on_paid failed");
                return false;
            }
            let store = &self.inner.store;
            match store
                .complete_fulfilment(&order.out_trade_no, claim, now())
                .await
            {
                Ok(true) => {
                    tracing::Span::current().record("outcome", "fulfilled");
                    true
                }
                Ok(false) => {
                    tracing::warn!("on_paid ran but its claim had passed to another worker");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "on_paid ran but completion was not stored; it may run again after the lease");
                    false
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Runs `on_refunded` for each successful refund of `order` that is
    /// due it, each under its own claim (recorded in the ledger), retried
    /// after the lease when it fails. Returns how many completed here.
    pub(crate) async fn run_refund_effects(&self, order: &Order) -> usize {
        let due: Vec<String> = decide::refund_effects_due(order, now())
            .into_iter()
            .map(|r| r.out_refund_no.clone())
            .collect();
        let mut done = 0;
        for out_refund_no in due {
            match self
                .run_refund_effect(&order.out_trade_no, &out_refund_no)
                .await
            {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(out_trade_no = %order.out_trade_no, out_refund_no, error = %e, "on_refunded not run; the reconciler retries")
                }
            }
        }
        done
    }

    async fn run_refund_effect(
        &self,
        no: &OutTradeNo,
        out_refund_no: &str,
    ) -> Result<bool, PaymentsError> {
        let lease = self.inner.settings.lease;
        let at = now();
        let until = super::payments::after(at, lease);
        let set_effect = |o: &Order, effect: Fulfilment| {
            let mut r = o.refund(out_refund_no)?.clone();
            r.effect = effect;
            Some((
                o.state,
                OrderPatch {
                    refunds: vec![r],
                    ..OrderPatch::default()
                },
            ))
        };
        let claimed = self
            .update(no, None, |o| {
                let due = decide::refund_effects_due(o, at)
                    .iter()
                    .any(|r| r.out_refund_no == out_refund_no);
                if due {
                    set_effect(o, Fulfilment::Claimed { until })
                } else {
                    None
                }
            })
            .await?;
        let Some((order, true)) = claimed else {
            return Ok(false);
        };
        let Some(refund) = order.refund(out_refund_no) else {
            return Ok(false);
        };
        let span = tracing::info_span!("wxpay.on_refunded", out_trade_no = %no, out_refund_no);
        let budget = lease.mul_f64(0.8);
        let ran = within(budget, self.inner.events.on_refunded(&order, refund))
            .instrument(span)
            .await;
        if let Err(e) = ran {
            tracing::error!(out_trade_no = %no, out_refund_no, error = %e, "on_refunded failed; retried after the lease");
            return Ok(false);
        }
        let completed = self
            .update(no, None, |o| {
                let mine = o
                    .refund(out_refund_no)
                    .is_some_and(|r| r.effect == Fulfilment::Claimed { until });
                if mine {
                    set_effect(o, Fulfilment::Done { at: now() })
                } else {
                    None
                }
            })
            .await?;
        Ok(matches!(completed, Some((_, true))))
    }

    /// Releases a held fulfilment (a late payment under
    /// [`AttentionPolicy::Hold`]): `on_paid` then runs as for any payment,
    /// if the order is still `PAID`. Returns the order.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::InvalidState`] when
    /// the order is not `PAID` with a held fulfilment; store errors.
    pub async fn release_hold(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        let (order, changed) = self
            .update(out_trade_no, None, |o| {
                (o.entitled() && o.fulfilment == Fulfilment::Held).then(|| {
                    let patch = OrderPatch {
                        fulfilment: Some(Fulfilment::Pending),
                        ..OrderPatch::default()
                    };
                    (o.state, patch)
                })
            })
            .await?
            .ok_or_else(|| PaymentsError::NotFound(out_trade_no.clone()))?;
        if !changed {
            return Err(PaymentsError::InvalidState {
                out_trade_no: out_trade_no.clone(),
                state: order.state,
                operation: "release a held fulfilment",
            });
        }
        self.fulfil(&order).await;
        self.order(out_trade_no).await
    }

    /// Records that a person has dealt with the order's open attention
    /// cases (of `kind`, or all): each gets its
    /// [`acknowledged_at`](super::Attention::acknowledged_at); the cases
    /// stay recorded. Nothing else changes (no state, no effect: release a
    /// held fulfilment with [`release_hold`](Payments::release_hold)). A
    /// case seen again afterwards is not reopened, so the daily
    /// reconciliation ([`Payments::reconcile_day`]) then reports it as
    /// acknowledged rather than for a person. Returns the order and how
    /// many cases were acknowledged (0 when none was open).
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; store errors.
    pub async fn acknowledge(
        &self,
        out_trade_no: &OutTradeNo,
        kind: Option<super::AttentionKind>,
    ) -> Result<(Order, usize), PaymentsError> {
        let at = now();
        let mut count = 0;
        let (order, _) = self
            .update(out_trade_no, None, |o| {
                let open: Vec<super::Attention> = (o.attention.iter())
                    .filter(|a| a.acknowledged_at.is_none() && kind.is_none_or(|k| a.kind == k))
                    .map(|a| super::Attention {
                        acknowledged_at: Some(at),
                        ..a.clone()
                    })
                    .collect();
                count = open.len();
                (!open.is_empty()).then(|| {
                    let patch = OrderPatch {
                        attention: open,
                        ..OrderPatch::default()
                    };
                    (o.state, patch)
                })
            })
            .await?
            .ok_or_else(|| PaymentsError::NotFound(out_trade_no.clone()))?;
        Ok((order, count))
    }
}
