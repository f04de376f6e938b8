//! Refunds: requests (recorded before they are sent), WeChat's answers,
//! refund notifies and refundquery, all through the refund ledger.

use tracing::{Instrument, field::Empty};

use super::{
    NotifyOutcome, NotifyReply, Order, OrderPatch, Payments, PaymentsError, Refund, RefundState,
    decide::{self, RefundAnswer, RefundRefusal, RefundReport, RefundReportDecision, Source},
    gateway::RefundAccepted,
    inbound::reject,
    payments::now,
};
use crate::{Error, Fen, FieldError, OutTradeNo, RefundStatus, messages::RefundRequest, notify};

/// What a refund request did: the order and the refund, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefundOutcome {
    /// The order after the request.
    pub order: Order,
    /// The refund: `PROCESSING` when WeChat accepted it, `UNKNOWN` when
    /// the answer was ambiguous (refundquery settles it), or as it was
    /// when the same refund was asked for again.
    pub refund: Refund,
}

/// Checks a merchant refund number: 1 to 64 of `A-Z a-z 0-9 _ - | * @`.
fn check_refund_no(out_refund_no: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&out_refund_no.len())
        && out_refund_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "out_refund_no",
            "must be 1 to 64 of A-Z a-z 0-9 _ - | * @",
        ))
    }
}

fn refusal_error(out_trade_no: &OutTradeNo, r: RefundRefusal) -> PaymentsError {
    match r {
        RefundRefusal::NotPaid(state) => PaymentsError::InvalidState {
            out_trade_no: out_trade_no.clone(),
            state,
            operation: "refund",
        },
        RefundRefusal::NumberReused { .. } => {
            FieldError::new("out_refund_no", r.to_string()).into()
        }
        other => FieldError::new("refund_fee", other.to_string()).into(),
    }
}

/// How WeChat's answer to a refund request counts: only a verified,
/// definite refusal frees the amount; anything ambiguous is unknown.
fn classify(answer: &Result<RefundAccepted, Error>) -> RefundAnswer {
    match answer {
        Ok(a) => RefundAnswer::Accepted {
            refund_id: a.refund_id.clone(),
        },
        Err(e) if e.is_definite_refusal() => RefundAnswer::Refused,
        Err(_) => RefundAnswer::Unknown,
    }
}

impl Payments {
    /// Refunds `refund_fee` of a paid order under the merchant refund
    /// number `out_refund_no`, through the refund ledger:
    ///
    /// 1. the refund is recorded `REQUESTED` with its amount reserved, in
    ///    one versioned write that checks it against what is left (every
    ///    refund not closed or refused counts, so several may be in flight
    ///    and their sum never exceeds the amount paid);
    /// 2. it is sent;
    /// 3. the answer is recorded: accepted → `PROCESSING` (the refund
    ///    notify or refundquery settles it); a verified, definite refusal →
    ///    `REFUSED` (the amount is free again; the error is returned);
    ///    anything ambiguous (timeout, transport failure, an answer that
    ///    fails verification, an unknown or retryable code) → `UNKNOWN`,
    ///    settled by refundquery ([`sync_refunds`](Payments::sync_refunds),
    ///    the reconciler), never guessed.
    ///
    /// Asking again for a refund that is recorded with the same number and
    /// amount sends it again while its outcome is unknown (safe: WeChat
    /// refunds one number once) and answers it as it is otherwise. A
    /// refund that cannot be sent at all (no merchant client certificate)
    /// fails before anything is recorded.
    ///
    /// # Errors
    /// [`PaymentsError::Unconfigured`] without the client certificate;
    /// [`PaymentsError::NotFound`]; [`PaymentsError::InvalidState`] for an
    /// unpaid order; [`PaymentsError::Invalid`] for a bad number, a zero
    /// amount, more than is left, or a number used with another amount;
    /// [`PaymentsError::Wechat`] for a definite refusal (recorded
    /// `REFUSED`); store errors. A store error after the refund was
    /// recorded leaves it in the ledger (`REQUESTED`), and the reconciler
    /// sends it: read the order before deciding anything, and ask again
    /// only under the same number (which is always safe).
    pub async fn refund(
        &self,
        out_trade_no: &OutTradeNo,
        out_refund_no: &str,
        refund_fee: Fen,
    ) -> Result<RefundOutcome, PaymentsError> {
        let span = tracing::info_span!(
            "wxpay.refund",
            out_trade_no = %out_trade_no,
            out_refund_no,
            refund_fee = refund_fee.0,
            outcome = Empty
        );
        self.refund_inner(out_trade_no, out_refund_no, refund_fee)
            .instrument(span)
            .await
    }

    async fn refund_inner(
        &self,
        no: &OutTradeNo,
        out_refund_no: &str,
        refund_fee: Fen,
    ) -> Result<RefundOutcome, PaymentsError> {
        check_refund_no(out_refund_no)?;
        let order = self.order(no).await?;
        if !self.gateway(order.api)?.can_refund() {
            return Err(PaymentsError::Unconfigured(
                "the merchant client certificate for refunds (PaymentsBuilder::client with Client::with_identity)",
            ));
        }
        let req = RefundRequest::new(no.clone(), out_refund_no, order.total_fee, refund_fee);
        // Every field rule before anything is recorded.
        req.to_params(None)?;

        let mut verdict = Ok(decide::RefundRequest::Known);
        let (order, _) = self
            .update(no, Some(order), |o| {
                verdict = decide::request_refund(o, out_refund_no, refund_fee, now());
                match &verdict {
                    Ok(decide::RefundRequest::Record { to, patch }) => Some((*to, patch.clone())),
                    // Sent again only from a read the store confirms.
                    Ok(decide::RefundRequest::Resend) => decide::resend(o, out_refund_no, now()),
                    _ => None,
                }
            })
            .await?
            .ok_or_else(|| PaymentsError::NotFound(no.clone()))?;
        match verdict {
            Err(r) => return Err(refusal_error(no, r)),
            Ok(decide::RefundRequest::Known) => {
                tracing::Span::current().record("outcome", "known already");
                return outcome(order, out_refund_no);
            }
            Ok(_) => {}
        }
        self.send_refund(&order, out_refund_no, &req).await
    }

    /// Sends a recorded refund and records WeChat's answer.
    async fn send_refund(
        &self,
        order: &Order,
        out_refund_no: &str,
        req: &RefundRequest,
    ) -> Result<RefundOutcome, PaymentsError> {
        let no = &order.out_trade_no;
        let answer = self.gateway(order.api)?.refund(req).await;
        let class = classify(&answer);
        match (&class, &answer) {
            (RefundAnswer::Unknown, Err(e)) => {
                tracing::warn!(error = %e, "refund outcome unknown; refundquery settles it")
            }
            (RefundAnswer::Refused, Err(e)) => {
                tracing::warn!(error = %e, "refund refused by WeChat; its amount is free again")
            }
            _ => {}
        }
        tracing::Span::current().record("outcome", tracing::field::debug(&class));
        let mut flags = false;
        let (order, changed) = self
            .update(no, None, |o| {
                let decided = decide::refund_answer(o, out_refund_no, &class, now());
                flags = decided
                    .as_ref()
                    .is_some_and(|(_, p)| !p.attention.is_empty());
                decided
            })
            .await?
            .ok_or_else(|| PaymentsError::NotFound(no.clone()))?;
        if changed && flags {
            // WeChat accepted a refund it had refused under the same number.
            tracing::error!(attention = ?order.attention.last(), "refund flagged for attention");
            self.report_attention(&order).await;
        }
        if let (RefundAnswer::Refused, Err(e)) = (class, answer) {
            return Err(e.into());
        }
        outcome(order, out_refund_no)
    }

    /// Asks WeChat about every refund of an order (refundquery) and
    /// records what it says through the ledger: settled refunds, refunds
    /// made elsewhere (recorded `FOUND` and flagged). A refund of this app
    /// whose outcome is unknown and that WeChat does not know is sent again
    /// (same number, same amount). Then runs the `on_refunded` effects due.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::Wechat`]; store errors.
    pub async fn sync_refunds(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        let span = tracing::info_span!("wxpay.sync_refunds", out_trade_no = %out_trade_no);
        async {
            let order = self.order(out_trade_no).await?;
            let reports = self.refund_reports_of(&order).await?;
            let (order, changed) = self
                .apply_refund_reports(out_trade_no, order, &reports)
                .await?;
            let unsent: Vec<Refund> = (order.refunds.iter())
                .filter(|r| matches!(r.state, RefundState::Requested | RefundState::Unknown))
                .filter(|r| !reports.iter().any(|x| x.out_refund_no == r.out_refund_no))
                .cloned()
                .collect();
            for r in &unsent {
                // Only from a read the store confirms (another instance may
                // have settled it since this one read the order).
                let confirmed = self
                    .update(out_trade_no, None, |o| decide::resend(o, &r.out_refund_no, now()))
                    .await?;
                if !matches!(confirmed, Some((_, true))) {
                    continue;
                }
                tracing::warn!(out_refund_no = %r.out_refund_no, "WeChat does not know this refund: sending it again");
                let req = RefundRequest::new(
                    out_trade_no.clone(),
                    &r.out_refund_no,
                    order.total_fee,
                    r.refund_fee,
                );
                if let Err(e) = self.send_refund(&order, &r.out_refund_no, &req).await {
                    tracing::warn!(out_refund_no = %r.out_refund_no, error = %e, "sending the refund again failed");
                }
            }
            if changed || !unsent.is_empty() {
                return self.order(out_trade_no).await;
            }
            // Nothing new: note the check (it also moves the order to the
            // back of the reconciler's queue).
            let at = now();
            let (o, _) = self
                .update(out_trade_no, Some(order), |o| {
                    let patch = OrderPatch {
                        synced_at: Some(Some(at)),
                        ..OrderPatch::default()
                    };
                    Some((o.state, patch))
                })
                .await?
                .ok_or_else(|| PaymentsError::NotFound(out_trade_no.clone()))?;
            Ok(o)
        }
        .instrument(span)
        .await
    }

    /// Asks WeChat about one refund of an order by its number
    /// ([`Gateway::refund_by_number`](super::Gateway::refund_by_number)),
    /// also one the ledger does not have (a refund made in the merchant
    /// platform that a bill names: on v3 there is no other way to learn
    /// it), and records what it says through the ledger as
    /// [`sync_refunds`](Payments::sync_refunds) does. Answers the order.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::Wechat`]; store errors.
    pub async fn sync_refund(
        &self,
        out_trade_no: &OutTradeNo,
        out_refund_no: &str,
    ) -> Result<Order, PaymentsError> {
        let order = self.order(out_trade_no).await?;
        let reports: Vec<RefundReport> = (self.gateway(order.api)?)
            .refund_by_number(&order, out_refund_no)
            .await?
            .into_iter()
            .collect();
        if reports.is_empty() {
            return Ok(order);
        }
        let (order, _) = self
            .apply_refund_reports(out_trade_no, order, &reports)
            .await?;
        Ok(order)
    }

    /// WeChat's refunds of an order as reports, through the order's API
    /// ([`Gateway::refunds`](super::Gateway::refunds)).
    pub(crate) async fn refund_reports_of(
        &self,
        order: &Order,
    ) -> Result<Vec<RefundReport>, PaymentsError> {
        Ok(self.gateway(order.api)?.refunds(order).await?)
    }

    /// Records refund reports on `order` (as read) through the ledger; an
    /// order not yet recorded as paid is synced first (its payment must be
    /// known before its refunds). Reports what needs a person and runs the
    /// `on_refunded` effects due. Answers the order and whether it changed.
    pub(crate) async fn apply_refund_reports(
        &self,
        no: &OutTradeNo,
        order: Order,
        reports: &[RefundReport],
    ) -> Result<(Order, bool), PaymentsError> {
        let mut start = Some(order);
        for synced in [false, true] {
            let mut needs_payment = false;
            // Whether the write that applied (the last decision) adds a case.
            let mut flags = false;
            let (order, changed) = self
                .update(no, start.take(), |o| {
                    needs_payment = false;
                    flags = false;
                    match decide::refund_reports(o, reports, now()) {
                        RefundReportDecision::Apply { to, patch } => {
                            flags = !patch.attention.is_empty();
                            Some((to, patch))
                        }
                        RefundReportDecision::Nothing => None,
                        RefundReportDecision::NeedsPayment => {
                            needs_payment = true;
                            None
                        }
                    }
                })
                .await?
                .ok_or_else(|| PaymentsError::NotFound(no.clone()))?;
            if needs_payment && !synced {
                tracing::warn!(state = %order.state, "refunds reported for an order not recorded as paid: querying it");
                self.sync_inner(no, true).await?;
                continue;
            }
            if needs_payment {
                return Err(PaymentsError::InvalidState {
                    out_trade_no: no.clone(),
                    state: order.state,
                    operation: "record refunds (WeChat reports refunds, orderquery no payment)",
                });
            }
            if changed {
                if flags {
                    tracing::error!(attention = ?order.attention.last(), "refund flagged for attention");
                    self.report_attention(&order).await;
                }
                // `on_refunded` for what settled; `on_paid` when a closed
                // refund made the goods due again.
                self.run_effects(&order).await;
            }
            return Ok((order, changed));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Handles a refund-result notify (raw body): checks the merchant,
    /// decrypts `req_info` (its only authentication), and records the
    /// refund through the ledger by its `out_refund_no`: a refund of this
    /// app settles (`SUCCESS`, `REFUNDCLOSE`, `CHANGE`); one it did not
    /// start is recorded `FOUND` and flagged; a late or duplicate copy of
    /// an applied status changes nothing. Then `on_refunded` runs under its
    /// claim. A store failure answers `FAIL` (WeChat delivers again).
    pub async fn handle_refund_notify(&self, body: &[u8]) -> NotifyReply {
        let span = tracing::info_span!(
            "wxpay.refund_notify",
            out_trade_no = Empty,
            out_refund_no = Empty,
            outcome = Empty
        );
        let reply = self
            .handle_refund_notify_inner(body)
            .instrument(span.clone())
            .await;
        span.record("outcome", tracing::field::debug(&reply.outcome));
        crate::metrics::notify("v2", "refund", &reply.outcome);
        reply
    }

    async fn handle_refund_notify_inner(&self, body: &[u8]) -> NotifyReply {
        if self.inner.gateways.get(super::Api::V2).is_none() {
            tracing::error!("a v2 refund notify arrived, but API v2 is turned off: refused unread");
            return NotifyReply::fail("API v2 not configured", NotifyOutcome::Unavailable);
        }
        let n = match notify::decrypt_refund_notify(body, self.config()) {
            Ok(n) => n,
            Err(e) => return reject(&e),
        };
        let span = tracing::Span::current();
        span.record("out_trade_no", n.out_trade_no.as_str());
        span.record("out_refund_no", n.out_refund_no.as_str());
        let order = match self.inner.store.get(&n.out_trade_no).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                return NotifyReply::unknown_order();
            }
            Err(e) => return NotifyReply::unavailable(&e),
        };
        let report = RefundReport {
            out_refund_no: n.out_refund_no.clone(),
            refund_id: n.refund_id.clone(),
            refund_fee: Some(n.refund_fee),
            status: n.refund_status.clone(),
            source: Source::Notify,
        };
        match self
            .apply_refund_reports(&n.out_trade_no, order, std::slice::from_ref(&report))
            .await
        {
            Ok((after, true)) => NotifyReply::success(NotifyOutcome::Refund {
                out_trade_no: after.out_trade_no.clone(),
                out_refund_no: n.out_refund_no.clone(),
                status: n.refund_status.clone(),
                state: after.state,
            }),
            Ok((_, false)) => {
                if !matches!(n.refund_status, RefundStatus::Processing) {
                    tracing::info!("refund notify with nothing new (applied already)");
                }
                NotifyReply::success(NotifyOutcome::RefundIgnored {
                    out_trade_no: n.out_trade_no.clone(),
                    out_refund_no: n.out_refund_no.clone(),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "refund notify not recorded; WeChat will deliver again");
                NotifyReply::fail("系统繁忙", NotifyOutcome::Unavailable)
            }
        }
    }
}

fn outcome(order: Order, out_refund_no: &str) -> Result<RefundOutcome, PaymentsError> {
    let refund = order.refund(out_refund_no).cloned().ok_or_else(|| {
        PaymentsError::Store(super::StoreError::Corrupt(format!(
            "refund {out_refund_no} is missing from the ledger of order {}",
            order.out_trade_no
        )))
    })?;
    Ok(RefundOutcome { order, refund })
}
