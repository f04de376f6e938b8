//! [`Reconciler`]: the background pass that settles what notifies missed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use tracing::Instrument;

use super::{
    DailyError, DailyOptions, DailyReport, ListFilter, OrderState, Payments, PaymentsError,
    payments::{after, now},
};

/// Repairs what notifies alone cannot, on every pass:
/// 1. runs unfinished effects (`on_paid` for `PAID` orders, `on_refunded`
///    for successful refunds) whose claim is free or whose lease ran out
///    (a crash, an error, a timeout);
/// 2. queries open orders that have been quiet for a while (lost payment
///    notifies), and closes unpaid orders past their time to live;
/// 3. settles refunds in flight or of unknown outcome by refundquery
///    (lost refund notifies, ambiguous answers; a refund WeChat does not
///    know is sent again under its number);
/// 4. when asked to ([`refund_watch`](Reconciler::refund_watch)), watches
///    paid orders for refunds made outside the app (the merchant platform)
///    whose notify never came, by refundquery;
/// 5. deletes expired sign-in sessions;
/// 6. when asked to ([`daily`](Reconciler::daily)), reconciles yesterday
///    against WeChat's trade bill once it is out ([`Payments::reconcile_day`]),
///    and tries again later while it is not.
///
/// The order work needs a store with
/// [`OrderStore::listing`](super::OrderStore::listing); without it a pass
/// does nothing.
///
/// Several app instances may run reconcilers at once: every change is a
/// compare-and-set and every fulfilment needs its claim.
///
/// ```no_run
/// # async fn demo(payments: wxpay_core::flow::Payments) {
/// use std::time::Duration;
/// // in the background, every minute:
/// let handle = payments.reconciler(Duration::from_secs(60)).spawn();
/// // or one pass from your own scheduler:
/// let report = payments.reconciler(Duration::from_secs(60)).run_once().await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Reconciler {
    payments: Payments,
    interval: Duration,
    quiet: Duration,
    batch: usize,
    refund_watch: Option<Duration>,
    daily: Option<DailySchedule>,
    daily_state: Arc<Mutex<DailyState>>,
}

/// When the [`Reconciler`] runs the daily reconciliation
/// ([`Reconciler::daily`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DailySchedule {
    /// From what time of day (Beijing) yesterday's bill is asked for.
    /// Default 10:00, when WeChat has made it.
    pub after: NaiveTime,
    /// How long to wait before asking again when the bill is not ready or
    /// the run failed. Default 30 minutes.
    pub retry: Duration,
    /// What the run may do. Default: repair.
    pub options: DailyOptions,
}

impl Default for DailySchedule {
    fn default() -> Self {
        DailySchedule {
            after: NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default(),
            retry: Duration::from_secs(30 * 60),
            options: DailyOptions::default(),
        }
    }
}

impl DailySchedule {
    /// Asks for the bill from this time of day (Beijing).
    pub fn after(mut self, time: NaiveTime) -> Self {
        self.after = time;
        self
    }

    /// Waits this long before asking again.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// What the run may do.
    pub fn options(mut self, options: DailyOptions) -> Self {
        self.options = options;
        self
    }

    /// The day due at `now`, given the last day reconciled and when the
    /// next attempt may be made: yesterday (Beijing) from
    /// [`after`](DailySchedule::after), the day before until then; `None`
    /// when that day is done or the retry time has not come.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        done: Option<NaiveDate>,
        next_try: Option<DateTime<Utc>>,
    ) -> Option<NaiveDate> {
        if next_try.is_some_and(|t| now < t) {
            return None;
        }
        let beijing = (now + chrono::Duration::hours(8)).naive_utc();
        let back = if beijing.time() >= self.after { 1 } else { 2 };
        let day = beijing.date() - chrono::Duration::days(back);
        done.is_none_or(|d| d < day).then_some(day)
    }
}

/// What the daily run remembers between passes (in memory: after a restart
/// the last day is reconciled again, which changes nothing the second time).
#[derive(Debug, Default)]
struct DailyState {
    done: Option<NaiveDate>,
    next_try: Option<DateTime<Utc>>,
}

/// A running [`Reconciler`] ([`Reconciler::spawn`]).
#[derive(Debug)]
pub struct ReconcilerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ReconcilerHandle {
    /// Stops it: the pass in progress (if any) finishes, no new one starts,
    /// and this returns once the task has ended (for a graceful shutdown).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Aborts the task at its next await point, even inside a pass (every
    /// change is a compare-and-set, so a pass cut short leaves nothing
    /// half-done). Prefer [`stop`](ReconcilerHandle::stop).
    pub fn abort(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    /// Whether the task has ended (it only ends when stopped or aborted, or
    /// if a pass panicked).
    pub fn is_finished(&self) -> bool {
        self.task
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }
}

/// What one reconciler pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// `on_paid` runs completed.
    pub fulfilled: usize,
    /// Open orders queried.
    pub synced: usize,
    /// Orders found paid by querying.
    pub paid: usize,
    /// Orders closed (by WeChat's answer or for expiry).
    pub closed: usize,
    /// Orders whose refunds were asked about (refundquery).
    pub refunds_synced: usize,
    /// Expired sign-in sessions deleted.
    pub sessions_purged: u64,
    /// Operations that failed (logged); retried next pass.
    pub errors: usize,
    /// The daily reconciliation this pass ran, if any
    /// ([`Reconciler::daily`]).
    pub daily: Option<Box<DailyReport>>,
}

impl Payments {
    /// A reconciler passing every `interval` (see [`Reconciler`]).
    pub fn reconciler(&self, interval: Duration) -> Reconciler {
        Reconciler {
            payments: self.clone(),
            interval,
            quiet: Duration::from_secs(60),
            batch: 100,
            refund_watch: None,
            daily: None,
            daily_state: Arc::default(),
        }
    }
}

impl Reconciler {
    /// Open orders unchanged for this long are queried. Default 60 s.
    pub fn quiet_after(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// How often each paid order is asked about refunds made outside the
    /// app whose notify never came (step 4 above), or `None` not to watch:
    /// the default, since it costs up to [`batch`](Reconciler::batch)
    /// refundqueries a pass for as long as orders are paid (refunds made in
    /// the merchant platform also send their refund notify, which is
    /// recorded either way). With `Some(every)`, each `PAID` or
    /// `PARTIALLY_REFUNDED` order is asked about once per `every`, the
    /// longest-unchecked first.
    pub fn refund_watch(mut self, every: Option<Duration>) -> Self {
        self.refund_watch = every;
        self
    }

    /// Runs the daily reconciliation ([`Payments::reconcile_day`]) of
    /// yesterday once WeChat's bill is out (see [`DailySchedule`]), or
    /// `None` not to (the default). The report goes to
    /// [`PaymentEvents::on_daily_report`](super::PaymentEvents::on_daily_report)
    /// and into the pass's [`ReconcileReport::daily`]. Several instances
    /// may each run it: repairs are compare-and-set transitions and flags
    /// are recorded once, so the second run finds the day clean.
    pub fn daily(mut self, schedule: Option<DailySchedule>) -> Self {
        self.daily = schedule;
        self
    }

    /// At most this many orders per kind of work per pass. Default 100.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Runs passes on the tokio runtime, one every interval, until the
    /// handle is stopped ([`ReconcilerHandle::stop`]: the pass in progress
    /// finishes first) or aborted. Dropping the handle lets it run on (like
    /// a tokio `JoinHandle`).
    pub fn spawn(self) -> ReconcilerHandle {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // Only a sent stop stops it; a dropped handle (the
                    // sender gone) disables this branch instead.
                    Ok(()) = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                // A pass is never cut short by `stop`: it finishes, then the
                // loop sees the signal.
                match self.run_once().await {
                    Ok(r) => tracing::debug!(?r, "reconciler pass"),
                    Err(e) => tracing::warn!(error = %e, "reconciler pass failed"),
                }
            }
        });
        ReconcilerHandle {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// One pass.
    ///
    /// # Errors
    /// A store error while listing; failures on single orders are logged
    /// and counted in [`ReconcileReport::errors`] instead.
    pub async fn run_once(&self) -> Result<ReconcileReport, PaymentsError> {
        let span = tracing::info_span!("wxpay.reconcile");
        let report = self.pass().instrument(span).await;
        if let Ok(r) = &report {
            crate::metrics::reconciled(r);
        }
        report
    }

    async fn pass(&self) -> Result<ReconcileReport, PaymentsError> {
        let mut report = ReconcileReport::default();
        let p = &self.payments;
        if let Some(sessions) = &p.inner.sessions {
            match sessions.purge_expired_sessions(now()).await {
                Ok(n) => report.sessions_purged = n,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciler: purging expired sessions failed");
                    report.errors += 1;
                }
            }
        }
        let store = p.store().clone();
        let Some(listing) = store.listing() else {
            tracing::warn!("the order store cannot list orders: nothing to reconcile");
            return Ok(report);
        };

        // 1. Unfinished effects (the claims decide who runs them).
        for order in listing.unfulfilled(now(), self.batch).await? {
            report.fulfilled += p.run_effects(&order).await;
        }

        // 2. Quiet open orders: ask WeChat, then close what has expired.
        let t = now();
        let quiet_since = t - chrono::Duration::from_std(self.quiet).unwrap_or_default();
        let open = listing
            .list(&ListFilter {
                states: vec![OrderState::Created, OrderState::Prepaid],
                updated_before: quiet_since,
                limit: self.batch,
            })
            .await?;
        let ttl = p.inner.settings.order_ttl;
        for order in open {
            let no = order.out_trade_no.clone();
            report.synced += 1;
            let order = match p.sync_inner(&no, true).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(out_trade_no = %no, error = %e, "reconciler: orderquery failed");
                    report.errors += 1;
                    continue;
                }
            };
            match order.state {
                s if s.is_paid() => report.paid += 1,
                OrderState::Closed => report.closed += 1,
                OrderState::Created | OrderState::Prepaid => {
                    let since = order.prepay_expires_at.map_or(order.created_at, |e| {
                        // prepay_expires_at is issue + 2 h; the ttl counts from issue.
                        e - chrono::Duration::from_std(super::payments::PREPAY_TTL)
                            .unwrap_or_default()
                    });
                    if after(since, ttl) <= t {
                        match p.close(&no).await {
                            Ok(o) if o.state == OrderState::Closed => report.closed += 1,
                            Ok(_) => {}
                            Err(PaymentsError::InvalidState { state, .. }) if state.is_paid() => {
                                report.paid += 1;
                            }
                            Err(PaymentsError::TooEarly { .. }) => {}
                            Err(e) => {
                                tracing::warn!(out_trade_no = %no, error = %e, "reconciler: close failed");
                                report.errors += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
        }

        // 3. Refunds in flight or of unknown outcome, then 4. paid orders
        // watched for refunds made elsewhere.
        let mut queues = vec![(vec![OrderState::Refunding], self.quiet)];
        if let Some(every) = self.refund_watch {
            queues.push((vec![OrderState::Paid, OrderState::PartiallyRefunded], every));
        }
        for (states, quiet) in queues {
            let t = now();
            let orders = listing
                .list(&ListFilter {
                    states,
                    updated_before: t - chrono::Duration::from_std(quiet).unwrap_or_default(),
                    limit: self.batch,
                })
                .await?;
            for order in orders {
                report.refunds_synced += 1;
                if let Err(e) = p.sync_refunds(&order.out_trade_no).await {
                    tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "reconciler: refundquery failed");
                    report.errors += 1;
                }
            }
        }

        // 6. The daily reconciliation, when due.
        if let Some(schedule) = &self.daily {
            self.run_daily(schedule, &mut report).await;
        }
        Ok(report)
    }

    async fn run_daily(&self, schedule: &DailySchedule, report: &mut ReconcileReport) {
        let t = now();
        let due = {
            let state = self.daily_state.lock().unwrap_or_else(|e| e.into_inner());
            schedule.due(t, state.done, state.next_try)
        };
        let Some(day) = due else { return };
        let outcome = self.payments.reconcile_day(day, schedule.options).await;
        let retry_at = t + chrono::Duration::from_std(schedule.retry).unwrap_or_default();
        let (done, next_try) = match &outcome {
            Ok(_) => (Some(day), None),
            Err(_) => (None, Some(retry_at)),
        };
        {
            let mut state = self.daily_state.lock().unwrap_or_else(|e| e.into_inner());
            if done.is_some() {
                state.done = done;
            }
            state.next_try = next_try;
        }
        match outcome {
            Ok(daily) => {
                if daily.needs_person() {
                    tracing::error!(%day, findings = daily.findings.len(), "daily reconciliation: a person has to look\n{daily}");
                } else {
                    tracing::info!(%day, repaired = daily.repaired(), "daily reconciliation: clean");
                }
                self.payments.inner.events.on_daily_report(&daily).await;
                report.daily = Some(Box::new(daily));
            }
            Err(DailyError::NotReady { .. }) => {
                tracing::info!(%day, "daily reconciliation: the bill is not ready; trying again later");
            }
            Err(e) => {
                tracing::warn!(%day, error = %e, "daily reconciliation failed; trying again later");
                report.errors += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UTC instant given in Beijing time.
    fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, 0))
            .unwrap()
            .and_utc()
            - chrono::Duration::hours(8)
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn yesterday_is_due_from_ten_beijing_time() {
        let s = DailySchedule::default();
        // 09:59 Beijing on the 2nd (01:59 UTC): yesterday's bill is not out,
        // the day before's is.
        assert_eq!(
            s.due(bj(2026, 1, 2, 9, 59), None, None),
            Some(day(2025, 12, 31))
        );
        assert_eq!(
            s.due(bj(2026, 1, 2, 10, 0), None, None),
            Some(day(2026, 1, 1))
        );
        // Beijing's day starts at 16:00 UTC: 23:30 UTC on the 1st is 07:30
        // on the 2nd in Beijing.
        let late_utc = NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(23, 30, 0))
            .unwrap()
            .and_utc();
        assert_eq!(s.due(late_utc, None, None), Some(day(2025, 12, 31)));
    }

    #[test]
    fn a_done_day_is_not_due_again_and_a_retry_waits() {
        let s = DailySchedule::default().after(NaiveTime::from_hms_opt(11, 0, 0).unwrap());
        let t = bj(2026, 1, 2, 12, 0);
        assert_eq!(s.due(t, Some(day(2026, 1, 1)), None), None);
        assert_eq!(
            s.due(t, Some(day(2025, 12, 31)), None),
            Some(day(2026, 1, 1))
        );
        assert_eq!(s.due(t, None, Some(t + chrono::Duration::minutes(1))), None);
        assert_eq!(s.due(t, None, Some(t)), Some(day(2026, 1, 1)));
        // Before 11:00 with this schedule, the day before yesterday.
        assert_eq!(
            s.due(bj(2026, 1, 2, 10, 30), None, None),
            Some(day(2025, 12, 31))
        );
    }
}
