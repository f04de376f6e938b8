//! Payments out: checkout (unifiedorder), status and sync (orderquery),
//! close (closeorder), and a user's orders.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use tracing::{Instrument, field::Empty};

use super::{
    CheckoutOutcome, CheckoutRequest, Order, OrderDraft, OrderPatch, OrderState, Payments,
    PaymentsError, StoreError,
    fulfil::Recorded,
    gateway::{Closed, Gateway, Prepaid, TradeAnswer},
    payments::{PREPAY_TTL, after, mismatch_error, now},
};
use crate::{
    ErrCode, Error, FieldError, OutTradeNo, TradeState, TradeType, messages::UnifiedOrderRequest,
};

impl Payments {
    /// Checkout: asks the app's [`Checkout`](super::Checkout) what the order is, then
    /// [`create_order`](Payments::create_order).
    ///
    /// # Errors
    /// [`PaymentsError::Rejected`] from the app; otherwise as
    /// [`create_order`](Payments::create_order).
    pub async fn checkout(&self, req: CheckoutRequest) -> Result<CheckoutOutcome, PaymentsError> {
        let started = Instant::now();
        let result = self.checkout_inner(req).await;
        crate::metrics::checkout(started, result.is_ok());
        result
    }

    async fn checkout_inner(
        &self,
        mut req: CheckoutRequest,
    ) -> Result<CheckoutOutcome, PaymentsError> {
        self.fill_user(&mut req).await?;
        let draft = self.inner.checkout.order(&req).await.inspect_err(|r| {
            tracing::info!(kind = ?r.kind, reason = %r.message, "checkout rejected by the app");
        })?;
        self.create_order(draft, req.client_ip.as_deref()).await
    }

    /// Creates (or re-enters) an order from an authoritative draft: stores it
    /// `CREATED`, calls unifiedorder (retrying transport failures and
    /// retryable codes with the same number and fields), stores it `PREPAID`
    /// and returns what the client needs to pay.
    ///
    /// A draft with the number of an existing open order and the same fields
    /// re-enters it: the stored `prepay_id` while it is valid, else a fresh
    /// one for the same order (never a second payment).
    ///
    /// # Errors
    /// [`PaymentsError::Invalid`] for a draft that breaks a field rule (or
    /// differs from the existing order with its number; nothing stored);
    /// [`PaymentsError::InvalidState`] when that order is no longer open;
    /// [`PaymentsError::Wechat`] when unifiedorder failed: for good (the
    /// order is then `FAILED`) or with an unknown outcome (it stays `CREATED`
    /// and the reconciler settles it); store errors.
    pub async fn create_order(
        &self,
        draft: OrderDraft,
        client_ip: Option<&str>,
    ) -> Result<CheckoutOutcome, PaymentsError> {
        let out_trade_no = draft
            .out_trade_no
            .clone()
            .unwrap_or_else(OutTradeNo::generate);
        let span = tracing::info_span!(
            "wxpay.checkout",
            out_trade_no = %out_trade_no,
            total_fee = draft.total_fee.0,
            outcome = Empty
        );
        self.create_order_inner(draft, out_trade_no, client_ip)
            .instrument(span.clone())
            .await
            .inspect(|_| {
                span.record("outcome", "prepaid");
            })
            .inspect_err(|e| {
                span.record("outcome", tracing::field::display(e));
            })
    }

    async fn create_order_inner(
        &self,
        draft: OrderDraft,
        out_trade_no: OutTradeNo,
        client_ip: Option<&str>,
    ) -> Result<CheckoutOutcome, PaymentsError> {
        let config = self.config();
        let gateway = self.default_gateway();
        let request = UnifiedOrderRequest {
            out_trade_no: out_trade_no.clone(),
            body: draft.body.clone(),
            total_fee: draft.total_fee,
            trade_type: draft.trade_type.clone(),
            openid: draft.openid.clone(),
            product_id: draft.product_id.clone(),
            attach: draft.attach.clone(),
            spbill_create_ip: self.payer_ip(draft.client_ip.as_deref().or(client_ip)),
            notify_url: None,
            time_expire: None,
            detail: None,
            sub_merchant: None,
            sub_openid: None,
        };
        // Check every field rule before anything is stored.
        gateway.check(&request)?;

        let now = now();
        let mut order = Order::new(
            out_trade_no.clone(),
            draft.total_fee,
            draft.body.clone(),
            draft.trade_type.clone(),
            config.sign_type,
            now,
        );
        order.openid = draft.openid.clone();
        order.product_id = draft.product_id.clone();
        order.attach = draft.attach.clone();
        order.owner = draft.owner.clone();
        order.api = gateway.api();

        let store = &self.inner.store;
        match store.insert(&order).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                let existing = self.order(&out_trade_no).await?;
                let same = existing.total_fee == order.total_fee
                    && existing.body == order.body
                    && existing.trade_type == order.trade_type
                    && existing.openid == order.openid
                    && existing.product_id == order.product_id
                    && existing.attach == order.attach
                    && existing.owner == order.owner;
                if !same {
                    return Err(FieldError {
                        field: "out_trade_no",
                        problem: "an order with this number exists with other fields".into(),
                    }
                    .into());
                }
                if !existing.state.is_open() {
                    return Err(PaymentsError::InvalidState {
                        out_trade_no,
                        state: existing.state,
                        operation: "check out again",
                    });
                }
                if existing.state == OrderState::Prepaid
                    && existing
                        .prepay_expires_at
                        .is_some_and(|t| t > after(now, Duration::from_secs(60)))
                {
                    tracing::info!("re-entry: the stored prepay_id is still valid");
                    return self.outcome(&existing);
                }
                order = existing;
            }
            Err(e) => return Err(e.into()),
        }

        // An existing order is finished with the API it was created with.
        let gateway = self.gateway(order.api)?;
        let answer = match self.prepay_with_retries(gateway, &request).await {
            Ok(a) => a,
            Err(e) => return Err(self.unifiedorder_failed(&order, e).await),
        };
        let patch = OrderPatch {
            prepay_id: Some(answer.prepay_id.clone()),
            code_url: Some(answer.code_url.clone()),
            prepay_expires_at: Some(Some(after(super::payments::now(), PREPAY_TTL))),
            ..OrderPatch::default()
        };
        let order = match self
            .update(&out_trade_no, Some(order), |o| {
                o.state
                    .is_open()
                    .then(|| (OrderState::Prepaid, patch.clone()))
            })
            .await?
        {
            Some((o, true)) => o,
            Some((o, false)) if o.state.is_paid() => {
                // A notify (or sync) overtook unifiedorder's answer: the
                // client learns it is paid (no pay params to pay again).
                tracing::info!(state = %o.state, "order paid before unifiedorder answered");
                return Ok(CheckoutOutcome {
                    out_trade_no: o.out_trade_no.clone(),
                    total_fee: o.total_fee,
                    trade_type: o.trade_type.clone(),
                    pay_params: None,
                    code_url: None,
                });
            }
            Some((o, false)) => {
                // Closed or failed meanwhile (a close racing this re-entry):
                // the fresh prepay_id is never handed out, so nobody can pay
                // an order that is recorded as ended.
                tracing::warn!(state = %o.state, "order ended while unifiedorder was in flight; its prepay_id is not handed out");
                return Err(PaymentsError::InvalidState {
                    out_trade_no,
                    state: o.state,
                    operation: "check out",
                });
            }
            None => return Err(PaymentsError::NotFound(out_trade_no)),
        };
        self.outcome(&order)
    }

    /// The payer's address as sent to WeChat; `127.0.0.1` when none is
    /// known (v2 requires one), logged once per service so that a missing
    /// `ConnectInfo` or proxy setting does not go unnoticed.
    fn payer_ip(&self, known: Option<&str>) -> String {
        if let Some(ip) = known.filter(|ip| !ip.is_empty()) {
            return ip.to_owned();
        }
        let warned = &self.inner.warned_no_client_ip;
        if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "no client IP known for a checkout: 127.0.0.1 is sent as the payer's address \
                 (axum: serve with into_make_service_with_connect_info; behind a proxy: \
                 PaymentsBuilder::trusted_proxies; or OrderDraft::with_client_ip). Logged once."
            );
        }
        "127.0.0.1".to_owned()
    }

    /// What the client needs to pay `order`: `wx.requestPayment`'s
    /// parameters signed for the order's API.
    fn outcome(&self, order: &Order) -> Result<CheckoutOutcome, PaymentsError> {
        let pay_params = match order
            .prepay_id
            .as_deref()
            .filter(|_| order.trade_type == TradeType::Jsapi)
        {
            Some(p) => Some(self.gateway(order.api)?.request_payment(order, p)?),
            None => None,
        };
        Ok(CheckoutOutcome {
            out_trade_no: order.out_trade_no.clone(),
            total_fee: order.total_fee,
            trade_type: order.trade_type.clone(),
            // wx.requestPayment parameters exist only for JSAPI: a NATIVE
            // order also has a prepay_id, but is paid by scanning code_url.
            pay_params,
            code_url: order.code_url.clone(),
        })
    }

    async fn prepay_with_retries(
        &self,
        gateway: &Arc<dyn Gateway>,
        request: &UnifiedOrderRequest,
    ) -> Result<Prepaid, Error> {
        let s = &self.inner.settings;
        let mut pause = s.retry_backoff;
        let mut attempt = 1;
        loop {
            match gateway.prepay(request).await {
                Err(e) if e.is_retryable() && attempt < s.unifiedorder_attempts => {
                    tracing::warn!(attempt, error = %e, "unifiedorder failed, re-entering with the same fields");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Decides what a failed unifiedorder means for the order.
    async fn unifiedorder_failed(&self, order: &Order, e: Error) -> PaymentsError {
        // Only a verified, definite refusal with a known code fails the
        // order; anything else (an unknown code, an unverifiable answer, a
        // protocol FAIL, a timeout) leaves it CREATED for the reconciler,
        // which asks WeChat.
        let unknown = !e.is_definite_refusal();
        match e.err_code() {
            Some(ErrCode::OrderPaid | ErrCode::OrderClosed | ErrCode::OutTradeNoUsed) => {
                // WeChat knows this number in another state: learn it.
                tracing::warn!(error = %e, "unifiedorder refused the number; querying the order");
                if let Err(se) = self.sync_inner(&order.out_trade_no, true).await {
                    tracing::warn!(error = %se, "orderquery after a refused unifiedorder failed");
                }
            }
            _ if unknown => {
                tracing::warn!(error = %e, "unifiedorder outcome unknown; order left for the reconciler");
            }
            _ => {
                tracing::warn!(error = %e, "unifiedorder refused; order FAILED");
                let failed = self
                    .update(&order.out_trade_no, None, |o| {
                        (o.state == OrderState::Created)
                            .then(|| (OrderState::Failed, OrderPatch::default()))
                    })
                    .await;
                if let Err(se) = failed {
                    tracing::error!(error = %se, "could not record the failed unifiedorder");
                }
            }
        }
        PaymentsError::Wechat(e)
    }

    /// The order, brought up to date first when it awaits payment and was
    /// not checked recently: an orderquery (at most once per sync interval)
    /// recovers a lost notify. WeChat errors are logged and the stored order
    /// is returned. This is what a client polls after `requestPayment:ok`.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`], or a store error.
    pub async fn status(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        let order = self.order(out_trade_no).await?;
        if order.state != OrderState::Prepaid || self.recently_synced(&order) {
            return Ok(order);
        }
        match self.sync_inner(out_trade_no, false).await {
            Ok(o) => Ok(o),
            Err(PaymentsError::Wechat(e)) => {
                tracing::warn!(%out_trade_no, error = %e, "status: orderquery failed, answering the stored order");
                Ok(order)
            }
            Err(e) => Err(e),
        }
    }

    fn recently_synced(&self, order: &Order) -> bool {
        let interval = self.inner.settings.sync_interval;
        if order
            .synced_at
            .is_some_and(|t| after(t, interval) > Utc::now())
        {
            return true;
        }
        let recent = self
            .inner
            .recent_syncs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .get(&order.out_trade_no)
            .is_some_and(|t| t.elapsed() < interval)
    }

    fn note_synced(&self, out_trade_no: &OutTradeNo) {
        let interval = self.inner.settings.sync_interval;
        let mut recent = self
            .inner
            .recent_syncs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() > 10_000 {
            recent.retain(|_, t| t.elapsed() < interval);
        }
        recent.insert(out_trade_no.clone(), Instant::now());
    }

    /// Asks WeChat about an order (orderquery) and applies the answer:
    /// `SUCCESS`/`REFUND` → `PAID` (then fulfilment), `CLOSED`/`REVOKED` →
    /// `CLOSED`, `PAYERROR` → `FAILED`; still unpaid → unchanged (with
    /// `synced_at`). Without `force`, an order synced within the sync
    /// interval is returned as stored. Orders already paid are returned
    /// without a call.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::Wechat`];
    /// [`PaymentsError::AmountMismatch`] (nothing changed); store errors.
    pub async fn sync(
        &self,
        out_trade_no: &OutTradeNo,
        force: bool,
    ) -> Result<Order, PaymentsError> {
        self.sync_inner(out_trade_no, force).await
    }

    pub(crate) async fn sync_inner(
        &self,
        out_trade_no: &OutTradeNo,
        force: bool,
    ) -> Result<Order, PaymentsError> {
        let span = tracing::info_span!(
            "wxpay.sync",
            out_trade_no = %out_trade_no,
            state = Empty,
            outcome = Empty
        );
        let result = self
            .sync_body(out_trade_no, force)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(o) => {
                span.record("state", o.state.as_str());
            }
            Err(e) => {
                span.record("outcome", tracing::field::display(e));
            }
        }
        result
    }

    async fn sync_body(
        &self,
        out_trade_no: &OutTradeNo,
        force: bool,
    ) -> Result<Order, PaymentsError> {
        let order = self.order(out_trade_no).await?;
        if !matches!(
            order.state,
            OrderState::Created | OrderState::Prepaid | OrderState::Closed | OrderState::Failed
        ) {
            return Ok(order);
        }
        if !force && self.recently_synced(&order) {
            tracing::Span::current().record("outcome", "rate-limited");
            return Ok(order);
        }
        self.note_synced(out_trade_no);
        let answer = match self.gateway(order.api)?.query(out_trade_no).await? {
            Some(a) => a,
            None => {
                tracing::Span::current().record("outcome", "unknown to WeChat");
                return Ok(order);
            }
        };
        self.apply_query(order, answer).await
    }

    async fn apply_query(&self, order: Order, q: TradeAnswer) -> Result<Order, PaymentsError> {
        let at = now();
        let no = order.out_trade_no.clone();
        tracing::Span::current().record("outcome", q.trade_state.as_str());
        let open_to = |to: OrderState| {
            move |o: &Order| {
                let patch = OrderPatch {
                    synced_at: Some(Some(at)),
                    ..OrderPatch::default()
                };
                o.state.is_open().then_some((to, patch))
            }
        };
        let updated = match q.trade_state {
            ref s if s.is_paid() => {
                let report = q.report;
                // REFUND: paid, and refunded since (in part or in full). The
                // refunds are learnt first and recorded with the payment in
                // one write, so that the goods are never granted for money
                // that went back.
                let refunds = if q.trade_state == TradeState::Refund {
                    self.refund_reports_of(&order).await?
                } else {
                    Vec::new()
                };
                let recorded = self
                    .record_payment(Arc::new(order), &report, &refunds)
                    .await?;
                self.after_paid(&recorded).await;
                return match recorded {
                    Recorded::Refused { mismatch, .. } => Err(mismatch_error(no, mismatch)),
                    Recorded::NotFound => Err(PaymentsError::NotFound(no)),
                    _ => self.order(&no).await,
                };
            }
            TradeState::Closed | TradeState::Revoked => {
                self.update(&no, Some(order), open_to(OrderState::Closed))
                    .await?
            }
            TradeState::PayError => {
                self.update(&no, Some(order), open_to(OrderState::Failed))
                    .await?
            }
            _ => {
                self.update(&no, Some(order), |o| {
                    (o.state == OrderState::Prepaid).then(|| {
                        let patch = OrderPatch {
                            synced_at: Some(Some(at)),
                            ..OrderPatch::default()
                        };
                        (OrderState::Prepaid, patch)
                    })
                })
                .await?
            }
        };
        updated.map(|(o, _)| o).ok_or(PaymentsError::NotFound(no))
    }

    /// Closes an unpaid order: closeorder, then `CLOSED`. If WeChat says it
    /// was paid meanwhile, the payment is recorded (sync) and the answer is
    /// [`PaymentsError::InvalidState`] with state `PAID`. An order WeChat
    /// never saw is closed locally. Closing a closed order is a no-op.
    ///
    /// WeChat refuses closeorder in the first 5 minutes of an order: within
    /// them the answer is [`PaymentsError::TooEarly`] (HTTP 409 with
    /// `retry_after`) and nothing is sent. That also keeps an order whose
    /// unifiedorder is still in flight (the client's timeout is far shorter)
    /// from being closed locally while WeChat may still take its payment.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`]; [`PaymentsError::TooEarly`];
    /// [`PaymentsError::InvalidState`] for a paid or failed order;
    /// [`PaymentsError::Wechat`]; store errors.
    pub async fn close(&self, out_trade_no: &OutTradeNo) -> Result<Order, PaymentsError> {
        let span =
            tracing::info_span!("wxpay.close", out_trade_no = %out_trade_no, outcome = Empty);
        async {
            let order = self.order(out_trade_no).await?;
            match order.state {
                OrderState::Closed => return Ok(order),
                OrderState::Created | OrderState::Prepaid => {}
                state => {
                    return Err(PaymentsError::InvalidState {
                        out_trade_no: out_trade_no.clone(),
                        state,
                        operation: "close",
                    });
                }
            }
            let allowed = after(order.created_at, self.inner.settings.close_after);
            let at = now();
            if at < allowed {
                let retry_after = (allowed - at).to_std().unwrap_or_default();
                tracing::Span::current().record("outcome", "too early");
                return Err(PaymentsError::TooEarly {
                    out_trade_no: out_trade_no.clone(),
                    operation: "close",
                    retry_after,
                });
            }
            match self.gateway(order.api)?.close(out_trade_no).await? {
                Closed::Closed | Closed::Unknown => {}
                Closed::Paid => {
                    tracing::Span::current().record("outcome", "paid meanwhile");
                    let o = self.sync_inner(out_trade_no, true).await?;
                    return Err(PaymentsError::InvalidState {
                        out_trade_no: out_trade_no.clone(),
                        state: o.state,
                        operation: "close",
                    });
                }
            }
            let (o, _) = self
                .update(out_trade_no, None, |o| {
                    o.state
                        .is_open()
                        .then(|| (OrderState::Closed, OrderPatch::default()))
                })
                .await?
                .ok_or_else(|| PaymentsError::NotFound(out_trade_no.clone()))?;
            tracing::Span::current().record("outcome", o.state.as_str());
            Ok(o)
        }
        .instrument(span)
        .await
    }

    /// One page of an owner's orders ([`OrderDraft::with_owner`]), newest
    /// first (`created_at`, ties by `out_trade_no`): at most `limit` (at
    /// least 1) orders
    /// after the order `before` (the cursor, `None` for the first page), and
    /// the cursor of the next page (`None` on the last). What the
    /// `GET /orders` route serves.
    ///
    /// The owner's orders are read in full and the page cut from them: fine
    /// for the orders of one user; a store with very many per owner would
    /// want a cursor query of its own.
    ///
    /// # Errors
    /// [`PaymentsError::NotFound`] when `before` is not one of the owner's
    /// orders; as [`orders_of`](Payments::orders_of).
    pub async fn orders_page(
        &self,
        owner: &str,
        before: Option<&OutTradeNo>,
        limit: usize,
    ) -> Result<(Vec<Order>, Option<OutTradeNo>), PaymentsError> {
        let limit = limit.max(1);
        let all = self.orders_of(owner, usize::MAX).await?;
        let start = match before {
            None => 0,
            Some(no) => match all.iter().position(|o| &o.out_trade_no == no) {
                Some(i) => i + 1,
                // Not one of the owner's: the same answer as no such order
                // (no oracle for other users' order numbers).
                None => return Err(PaymentsError::NotFound(no.clone())),
            },
        };
        let page: Vec<Order> = all.into_iter().skip(start).take(limit + 1).collect();
        let next = (page.len() > limit).then(|| page[limit - 1].out_trade_no.clone());
        let mut page = page;
        page.truncate(limit);
        Ok((page, next))
    }

    /// The orders of one owner ([`OrderDraft::with_owner`]), newest first,
    /// at most `limit` (see [`orders_page`](Payments::orders_page) for a
    /// paginated listing).
    ///
    /// # Errors
    /// [`PaymentsError::Unconfigured`] for a store without
    /// [`OrderStore::listing`](super::OrderStore::listing); store errors.
    pub async fn orders_of(&self, owner: &str, limit: usize) -> Result<Vec<Order>, PaymentsError> {
        let store = self.store();
        let listing = (store.listing()).ok_or(PaymentsError::Unconfigured(
            "an order store that can list orders",
        ))?;
        Ok(listing.owned_by(owner, limit).await?)
    }
}
