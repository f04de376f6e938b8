//! The daily reconciliation: one Beijing day of WeChat's trade bill
//! compared with the store, both ways, and what can be repaired safely
//! repaired through the normal paths ([`Payments::reconcile_day`]).

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Api, Attention, AttentionKind, Order, Payments, PaymentsError, RefundState, SettledFilter,
    StoreError, decide::CURRENCY, payments::now,
};
use crate::{
    Error, Fen, OutTradeNo, RefundStatus,
    bill::{
        amount::{Fee, format_yuan},
        download::BillDownload,
        parse::{BillEvent, BillParser, LineError, TradeRow, TradeTotals},
    },
};

/// How often a bill is fetched again when it arrives corrupt (its SHA-1
/// differs from `hash_value`, broken gzip, a transport failure) before the
/// run gives up.
const DOWNLOAD_ATTEMPTS: usize = 3;

/// At most this many malformed lines are listed one by one; the rest are
/// counted in [`BillFigures::malformed`].
const MALFORMED_LISTED: usize = 100;

/// The store is read this many orders at a time for the local side.
const PAGE: usize = 500;

/// What a daily run may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DailyOptions {
    /// Repair what can be repaired (orderquery / refundquery, then the
    /// usual compare-and-set transitions and effects) and flag the rest on
    /// its order. `false`: a dry run that reports and changes nothing (it
    /// still asks WeChat, read-only, to explain what the bill lacks).
    pub repair: bool,
}

impl Default for DailyOptions {
    fn default() -> Self {
        DailyOptions { repair: true }
    }
}

impl DailyOptions {
    /// A dry run: report only.
    pub fn dry_run() -> DailyOptions {
        DailyOptions { repair: false }
    }
}

/// Why a daily run could not produce a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DailyError {
    /// WeChat has not produced the day's bill yet (it does after 10:00
    /// Beijing time the next day): try again later.
    #[error("the bill of {date} is not ready yet: try again later")]
    NotReady {
        /// The day asked for.
        date: NaiveDate,
    },
    /// The bill could not be fetched (after retrying a corrupt one).
    #[error("the bill of {date} could not be fetched")]
    Bill {
        /// The day asked for.
        date: NaiveDate,
        /// What failed.
        #[source]
        source: Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service has no gateway for the API asked for.
    #[error(transparent)]
    Payments(#[from] PaymentsError),
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum FindingKind {
    /// Paid at WeChat (a bill row), not paid in the store: a payment whose
    /// notify was lost and that no query found yet.
    PaymentNotRecorded,
    /// Paid in the store on this day, absent from the day's bill.
    PaymentNotInBill,
    /// The bill's amount differs from the order's.
    AmountMismatch,
    /// The bill's currency differs from the order's (CNY).
    CurrencyMismatch,
    /// The bill's `transaction_id` differs from the one recorded.
    TransactionMismatch,
    /// A bill row of another mch_id than the service's, or of another
    /// appid for an order the store has (rows of the merchant's other apps
    /// for orders the store does not have are only counted:
    /// [`BillFigures::other_apps`]).
    ForeignMerchant,
    /// A bill row for an order the store does not know.
    UnknownOrder,
    /// A refund in the bill the store has not recorded as successful (made
    /// in the merchant platform, or its notify lost).
    RefundNotRecorded,
    /// A successful refund in the store, changed on this day, absent from
    /// the day's bill.
    RefundNotInBill,
    /// The bill's refund amount differs from the recorded refund's.
    RefundAmountMismatch,
    /// A bill row of a kind the reconciliation does not know (a trade state
    /// other than `SUCCESS` / `REFUND`, a refund row without its number).
    UnexpectedRow,
    /// A line of the bill that could not be read.
    MalformedLine,
    /// The bill's rows do not add up to its totals line (or it has none).
    TotalsMismatch,
    /// The store cannot list a day's orders
    /// ([`OrderListing::settled_on`](super::OrderListing::settled_on)): the
    /// store was not checked against the bill.
    LocalSideUnchecked,
}

/// What became of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Resolution {
    /// Repaired through the normal path (WeChat was queried and the order
    /// moved by the usual compare-and-set): the store agrees with WeChat.
    Repaired,
    /// A query explained it and nothing is wrong (e.g. a payment or refund
    /// WeChat dates on another day, so it is in that day's bill).
    Explained,
    /// Recorded as an attention case on its order
    /// ([`Order::attention`], [`PaymentEvents::on_attention`](super::PaymentEvents::on_attention)):
    /// for a person.
    Flagged,
    /// Nothing to attach it to (no such order, a bill-level problem): the
    /// report itself is the flag; for a person.
    NeedsPerson,
    /// The query that would settle it failed (outcome unknown); the next
    /// run tries again.
    Unresolved,
    /// Flagged on its order in an earlier run, and a person has
    /// acknowledged the case since ([`Payments::acknowledge`]).
    Acknowledged,
    /// A dry run: nothing was attempted.
    ReportOnly,
}

impl Resolution {
    /// Whether a person has to look (flagged, nothing to flag, unresolved,
    /// or a dry run's open case).
    pub fn needs_person(self) -> bool {
        !matches!(
            self,
            Resolution::Repaired | Resolution::Explained | Resolution::Acknowledged
        )
    }
}

/// One difference between the bill and the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// What it is.
    pub kind: FindingKind,
    /// What became of it.
    pub resolution: Resolution,
    /// The order, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// WeChat's order number, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The refund, for refund findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    /// The bill's line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The amount in the bill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_amount: Option<Fen>,
    /// The amount in the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_amount: Option<Fen>,
    /// What was seen and done, in words (numbers and amounts; no secrets).
    pub detail: String,
}

impl Finding {
    fn new(kind: FindingKind, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            resolution: Resolution::NeedsPerson,
            out_trade_no: None,
            transaction_id: None,
            out_refund_no: None,
            line: None,
            bill_amount: None,
            local_amount: None,
            detail: detail.into(),
        }
    }

    fn row(kind: FindingKind, row: &TradeRow, detail: impl Into<String>) -> Finding {
        Finding {
            out_trade_no: Some(row.out_trade_no.clone()),
            transaction_id: Some(row.transaction_id.clone()).filter(|t| !t.is_empty()),
            out_refund_no: row.out_refund_no.clone(),
            line: Some(row.line),
            ..Finding::new(kind, detail)
        }
    }

    fn order(kind: FindingKind, order: &Order, detail: impl Into<String>) -> Finding {
        Finding {
            out_trade_no: Some(order.out_trade_no.as_str().to_owned()),
            transaction_id: order.transaction_id.clone(),
            local_amount: Some(order.total_fee),
            ..Finding::new(kind, detail)
        }
    }
}

/// The bill's side: its rows added up, and its own totals line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BillFigures {
    /// Whether WeChat had a bill for the day (`false`: "no bill", which
    /// WeChat answers for a day without trades).
    pub available: bool,
    /// Decompressed size.
    pub bytes: u64,
    /// SHA-1 of the decompressed bill (lower-case hex).
    pub sha1: String,
    /// Whether the SHA-1 was checked against WeChat's `hash_value` (v3;
    /// v2 bills come with no hash).
    pub hash_checked: bool,
    /// Rows read (payments, refunds and others).
    pub rows: u64,
    /// Payment rows (`SUCCESS`).
    pub payments: u64,
    /// Their order amounts (`订单金额`).
    pub payment_total: Fen,
    /// The settlement amounts of every row (`应结订单金额`).
    pub settlement_total: Fen,
    /// Refund rows (`REFUND`).
    pub refunds: u64,
    /// Their refund amounts (`退款金额`).
    pub refund_total: Fen,
    /// The fees of every row (`手续费`; refunds give theirs back).
    pub fee_total: Fee,
    /// Lines that could not be read.
    pub malformed: u64,
    /// Rows of another app of the same merchant number (another appid)
    /// for orders the store does not have: left alone.
    pub other_apps: u64,
    /// The bill's totals line, as written.
    pub totals: Option<TradeTotals>,
    /// Whether the rows add up to the totals line: count, settlement,
    /// refund and fee totals.
    pub ties_out: bool,
}

/// The store's side: the orders settled on the day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LocalFigures {
    /// Whether the store could list the day's orders.
    pub checked: bool,
    /// Orders paid on the day (`time_end`).
    pub payments: u64,
    /// Their amounts.
    pub payment_total: Fen,
    /// Successful refunds changed on the day.
    pub refunds: u64,
    /// Their amounts.
    pub refund_total: Fen,
}

/// One day reconciled: what the bill says, what the store says, and every
/// difference with what became of it. Serialises to JSON; `Display` is a
/// short summary for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DailyReport {
    /// The day (Beijing time).
    pub date: NaiveDate,
    /// The API the bill was fetched through.
    pub api: Api,
    /// Whether repairs were allowed ([`DailyOptions::repair`]).
    pub repair: bool,
    /// When the run finished.
    pub at: DateTime<Utc>,
    /// The bill's figures.
    pub bill: BillFigures,
    /// The store's figures.
    pub local: LocalFigures,
    /// Bill rows that matched their order exactly.
    pub matched: u64,
    /// Every difference found, in the order found.
    pub findings: Vec<Finding>,
}

impl DailyReport {
    /// Whether the day is clean: nothing found, or only what a query
    /// explained or a person acknowledged.
    pub fn is_clean(&self) -> bool {
        (self.findings.iter()).all(|f| {
            matches!(
                f.resolution,
                Resolution::Explained | Resolution::Acknowledged
            )
        })
    }

    /// Whether a person has to look at something (see
    /// [`Resolution::needs_person`]).
    pub fn needs_person(&self) -> bool {
        self.findings.iter().any(|f| f.resolution.needs_person())
    }

    /// How many findings were repaired.
    pub fn repaired(&self) -> usize {
        (self.findings.iter())
            .filter(|f| f.resolution == Resolution::Repaired)
            .count()
    }
}

impl fmt::Display for DailyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.bill;
        let verdict = if self.is_clean() {
            "clean"
        } else if self.needs_person() {
            "NEEDS ATTENTION"
        } else {
            "repaired"
        };
        writeln!(
            f,
            "wxpay reconciliation of {} ({}): {verdict}",
            self.date,
            self.api.as_str()
        )?;
        if b.available {
            writeln!(
                f,
                "bill: {} rows; {} payments {} yuan; {} refunds {} yuan; settlement {} yuan; fees {} yuan; {}",
                b.rows,
                b.payments,
                format_yuan(b.payment_total),
                b.refunds,
                format_yuan(b.refund_total),
                format_yuan(b.settlement_total),
                b.fee_total,
                if b.ties_out {
                    "ties out to its totals line"
                } else {
                    "does NOT tie out to its totals line"
                },
            )?;
        } else {
            writeln!(f, "bill: none (WeChat has no bill for the day)")?;
        }
        if self.local.checked {
            writeln!(
                f,
                "store: {} payments {} yuan; {} refunds {} yuan; {} bill rows matched",
                self.local.payments,
                format_yuan(self.local.payment_total),
                self.local.refunds,
                format_yuan(self.local.refund_total),
                self.matched,
            )?;
        } else {
            writeln!(
                f,
                "store: not checked against the bill (the store cannot list a day's orders)"
            )?;
        }
        for x in &self.findings {
            let no = (x.out_refund_no.as_deref())
                .or(x.out_trade_no.as_deref())
                .unwrap_or("-");
            writeln!(f, "- {:?} {:?} {no}: {}", x.kind, x.resolution, x.detail)?;
        }
        Ok(())
    }
}

/// What the bill rows of a run left to do once the bill is known to be
/// whole (repairs wait for the hash check).
#[derive(Default)]
struct Pass {
    bill: BillFigures,
    matched: u64,
    findings: Vec<Finding>,
    /// Order numbers of every payment row, and refund numbers of every
    /// refund row: what the local side looks for.
    bill_payments: HashSet<String>,
    bill_refunds: HashSet<String>,
    malformed_listed: usize,
}

impl Payments {
    /// Reconciles one Beijing day against WeChat's trade bill (`ALL`,
    /// fetched through the [default API](Payments::default_api)): every
    /// bill row is matched against the store by `out_trade_no` and
    /// `out_refund_no`, and every order the store has as paid or refunded
    /// on the day ([`OrderListing::settled_on`](super::OrderListing::settled_on))
    /// against the bill.
    ///
    /// With [`DailyOptions::repair`], what the flow can fix safely is fixed
    /// through the normal paths and nothing else: a payment the bill has and
    /// the store lacks (a lost notify) by orderquery, a refund the store
    /// lacks or has unsettled by refundquery, each then recorded by the
    /// usual compare-and-set transitions with their `on_paid` /
    /// `on_refunded`. Bill data is never written into an order. What a query
    /// does not confirm, and every difference in amounts, currency or
    /// numbers, is flagged on its order for a person
    /// ([`AttentionKind::BillMismatch`]). What the bill lacks is asked
    /// about (read-only): a payment WeChat dates on another day is
    /// explained, anything else flagged. A second run over a repaired day
    /// finds it clean and changes nothing: flags are recorded once per case.
    ///
    /// The bill is read as a stream: memory holds one chunk, the findings,
    /// and the order and refund numbers of the bill's rows (for the store
    /// side), not the bill. A bill whose SHA-1 differs from WeChat's
    /// `hash_value` (or whose gzip is broken, or whose download fails) is
    /// discarded and fetched again, up to three times; repairs run only on
    /// a whole bill.
    ///
    /// # Errors
    /// [`DailyError::NotReady`] before WeChat has made the bill (after 10:00
    /// Beijing time the next day); [`DailyError::Bill`] when it cannot be
    /// fetched; a store error. A day without trades is a report with no
    /// bill ([`BillFigures::available`] `false`), not an error.
    pub async fn reconcile_day(
        &self,
        date: NaiveDate,
        options: DailyOptions,
    ) -> Result<DailyReport, DailyError> {
        let api = self.default_api();
        let gateway = self.gateway(api)?.clone();
        let (appid, mch_id) = {
            let (a, m) = gateway.merchant();
            (a.to_owned(), m.to_owned())
        };
        let mut last_error = None;
        let mut pass = None;
        for attempt in 1..=DOWNLOAD_ATTEMPTS {
            match gateway.trade_bill(date).await {
                Ok(download) => match self.read_bill(date, download, &appid, &mch_id).await {
                    Ok(p) => {
                        pass = Some(p);
                        break;
                    }
                    Err(DailyError::Bill { source, .. }) if source.is_retryable() => {
                        tracing::warn!(%date, attempt, error = %source, "bill corrupt or cut short: fetching it again");
                        last_error = Some(source);
                    }
                    Err(e) => return Err(e),
                },
                Err(e) if e.is_bill_not_ready() => return Err(DailyError::NotReady { date }),
                Err(e) if e.is_no_bill() => {
                    pass = Some(Pass::default());
                    break;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(%date, attempt, error = %e, "bill download failed: trying again");
                    last_error = Some(e);
                }
                Err(e) => return Err(DailyError::Bill { date, source: e }),
            }
        }
        let Some(mut pass) = pass else {
            return Err(DailyError::Bill {
                date,
                source: last_error.unwrap_or_else(|| Error::Transport {
                    message: "no attempt made".into(),
                    source: None,
                }),
            });
        };
        self.repair_rows(&mut pass, date, options).await;
        let local = self.check_local(&mut pass, date, options).await?;
        Ok(DailyReport {
            date,
            api,
            repair: options.repair,
            at: now(),
            bill: pass.bill,
            local,
            matched: pass.matched,
            findings: pass.findings,
        })
    }

    /// Streams the bill through the parser, matching each row against the
    /// store as it comes.
    async fn read_bill(
        &self,
        date: NaiveDate,
        mut download: BillDownload,
        appid: &str,
        mch_id: &str,
    ) -> Result<Pass, DailyError> {
        let mut pass = Pass {
            bill: BillFigures {
                available: true,
                ..BillFigures::default()
            },
            ..Pass::default()
        };
        let mut parser = BillParser::new();
        let mut events = Vec::new();
        let failed = |source: Error| DailyError::Bill { date, source };
        // One chunk's events at a time: the store is asked about them
        // before the next chunk is read.
        while let Some(bytes) = download.next_chunk().await.map_err(failed)? {
            parser.push(&bytes, &mut |e| events.push(e));
            for e in events.drain(..) {
                self.bill_event(&mut pass, e, appid, mch_id).await?;
            }
        }
        let _ = parser.finish(&mut |e| events.push(e));
        for e in events.drain(..) {
            self.bill_event(&mut pass, e, appid, mch_id).await?;
        }
        if let Some(d) = download.summary() {
            pass.bill.bytes = d.bytes;
            pass.bill.sha1 = d.sha1.clone();
            pass.bill.hash_checked = d.hash_checked;
        }
        tie_out(&mut pass);
        Ok(pass)
    }

    async fn bill_event(
        &self,
        pass: &mut Pass,
        event: BillEvent,
        appid: &str,
        mch_id: &str,
    ) -> Result<(), DailyError> {
        match event {
            BillEvent::Trade(row) => self.bill_row(pass, row, appid, mch_id).await?,
            BillEvent::TradeTotals(t) => pass.bill.totals = Some(t),
            BillEvent::Malformed(e) => malformed(pass, &e),
            BillEvent::FundFlow(_) | BillEvent::FundFlowTotals(_) => {
                if pass.bill.rows == 0 {
                    pass.findings.push(Finding::new(
                        FindingKind::UnexpectedRow,
                        "a fund-flow bill came where the trade bill was asked for",
                    ));
                }
                pass.bill.rows += 1;
            }
        }
        Ok(())
    }

    async fn bill_row(
        &self,
        pass: &mut Pass,
        row: TradeRow,
        appid: &str,
        mch_id: &str,
    ) -> Result<(), DailyError> {
        let b = &mut pass.bill;
        b.rows += 1;
        b.settlement_total = add(b.settlement_total, row.settlement_fee);
        b.fee_total = Fee(b.fee_total.0.saturating_add(row.fee.0));
        let refund = row.is_refund();
        if refund {
            b.refunds += 1;
            b.refund_total = add(b.refund_total, row.refund_fee);
            if let Some(r) = &row.out_refund_no {
                pass.bill_refunds.insert(r.clone());
            }
        } else if row.trade_state == "SUCCESS" {
            b.payments += 1;
            b.payment_total = add(b.payment_total, order_amount(&row));
            pass.bill_payments.insert(row.out_trade_no.clone());
        }
        if row.mch_id != mch_id {
            pass.findings.push(Finding::row(
                FindingKind::ForeignMerchant,
                &row,
                format!(
                    "line {}: mch_id {} is not this service's",
                    row.line, row.mch_id
                ),
            ));
            return Ok(());
        }
        let order = match OutTradeNo::new(row.out_trade_no.clone()) {
            Ok(no) => self.store().get(&no).await?,
            Err(_) => None,
        };
        if row.appid != appid {
            // One merchant number may serve several apps (another
            // mini-program, an official account): their orders are not
            // this service's business, unless the store has the number.
            match &order {
                None => {
                    pass.bill.other_apps += 1;
                    return Ok(());
                }
                Some(_) => {
                    pass.findings.push(Finding {
                        resolution: Resolution::Flagged,
                        ..Finding::row(
                            FindingKind::ForeignMerchant,
                            &row,
                            format!(
                                "line {}: appid {} is not this service's, but the order is",
                                row.line, row.appid
                            ),
                        )
                    });
                    return Ok(());
                }
            }
        }
        let Some(order) = order else {
            pass.findings.push(Finding {
                bill_amount: Some(if refund {
                    row.refund_fee
                } else {
                    order_amount(&row)
                }),
                ..Finding::row(
                    FindingKind::UnknownOrder,
                    &row,
                    format!(
                        "line {}: {} {} of {} yuan for an order the store does not know",
                        row.line,
                        if refund { "refund" } else { "payment" },
                        row.transaction_id,
                        format_yuan(if refund {
                            row.refund_fee
                        } else {
                            order_amount(&row)
                        })
                    ),
                )
            });
            return Ok(());
        };
        if refund {
            refund_row(pass, &row, &order);
        } else if row.trade_state == "SUCCESS" {
            payment_row(pass, &row, &order);
        } else {
            pass.findings.push(Finding::row(
                FindingKind::UnexpectedRow,
                &row,
                format!("line {}: trade state {}", row.line, row.trade_state),
            ));
        }
        Ok(())
    }

    /// Settles the bill rows' findings: repairs by query, flags the rest.
    async fn repair_rows(&self, pass: &mut Pass, date: NaiveDate, options: DailyOptions) {
        for f in &mut pass.findings {
            if !options.repair {
                if f.resolution == Resolution::Flagged {
                    f.resolution = Resolution::ReportOnly;
                }
                if matches!(
                    f.kind,
                    FindingKind::PaymentNotRecorded | FindingKind::RefundNotRecorded
                ) {
                    f.resolution = Resolution::ReportOnly;
                }
                continue;
            }
            let Some(no) = (f.out_trade_no.clone()).and_then(|n| OutTradeNo::new(n).ok()) else {
                continue;
            };
            match f.kind {
                FindingKind::PaymentNotRecorded => {
                    f.resolution = match self.sync_inner(&no, true).await {
                        Ok(o) if o.state.is_paid() => {
                            f.detail
                                .push_str("; orderquery confirmed the payment and it is recorded");
                            Resolution::Repaired
                        }
                        Ok(o) => {
                            f.detail.push_str(&format!(
                                "; orderquery does not confirm it (order {})",
                                o.state.as_str()
                            ));
                            self.flag_bill(&no, date, f).await
                        }
                        Err(
                            e @ (PaymentsError::AmountMismatch { .. }
                            | PaymentsError::CurrencyMismatch { .. }),
                        ) => {
                            // Recorded as an attention case by the payment path.
                            f.detail.push_str(&format!("; orderquery: {e}"));
                            Resolution::Flagged
                        }
                        Err(e) => {
                            f.detail.push_str(&format!("; orderquery failed: {e}"));
                            Resolution::Unresolved
                        }
                    };
                }
                FindingKind::RefundNotRecorded => {
                    let refund_no = f.out_refund_no.clone().unwrap_or_default();
                    f.resolution = match self.sync_refund(&no, &refund_no).await {
                        Ok(o) => match o.refund(&refund_no) {
                            Some(r) if r.state == RefundState::Success => {
                                f.detail.push_str(&format!(
                                    "; refundquery confirmed it and it is recorded ({})",
                                    r.source.as_str()
                                ));
                                Resolution::Repaired
                            }
                            other => {
                                f.detail.push_str(&format!(
                                    "; refundquery does not confirm it (refund {})",
                                    other.map_or("unknown", |r| r.state.as_str())
                                ));
                                self.flag_bill(&no, date, f).await
                            }
                        },
                        Err(e) => {
                            f.detail.push_str(&format!("; refundquery failed: {e}"));
                            Resolution::Unresolved
                        }
                    };
                }
                _ if f.resolution == Resolution::Flagged => {
                    f.resolution = self.flag_bill(&no, date, f).await;
                }
                _ => {}
            }
        }
    }

    /// The store against the bill: every order settled on the day that the
    /// bill lacks is asked about.
    async fn check_local(
        &self,
        pass: &mut Pass,
        date: NaiveDate,
        options: DailyOptions,
    ) -> Result<LocalFigures, DailyError> {
        let mut local = LocalFigures::default();
        let Some(listing) = self.store().listing() else {
            pass.findings.push(Finding::new(
                FindingKind::LocalSideUnchecked,
                "the store cannot list orders: the store was not checked against the bill",
            ));
            return Ok(local);
        };
        let mut filter = SettledFilter {
            day: date,
            after: None,
            limit: PAGE,
        };
        let (te_from, te_to) = filter.time_end_range();
        let (r_from, r_to) = filter.instant_range();
        loop {
            let page = match listing.settled_on(&filter).await {
                Ok(p) => p,
                Err(StoreError::Unsupported(_)) => {
                    pass.findings.push(Finding::new(
                        FindingKind::LocalSideUnchecked,
                        "the store cannot list a day's orders (OrderListing::settled_on): \
                         the store was not checked against the bill",
                    ));
                    return Ok(local);
                }
                Err(e) => return Err(e.into()),
            };
            local.checked = true;
            let Some(last) = page.last() else { break };
            filter.after = Some(last.out_trade_no.clone());
            let full = page.len() == PAGE;
            for order in page {
                let no = order.out_trade_no.as_str();
                let paid_today = order.state.is_paid()
                    && order
                        .time_end
                        .as_deref()
                        .is_some_and(|t| t >= te_from.as_str() && t < te_to.as_str());
                if paid_today {
                    local.payments += 1;
                    local.payment_total = add(local.payment_total, order.total_fee);
                    if !pass.bill_payments.contains(no) {
                        let f = self.payment_not_in_bill(&order, date, options).await;
                        pass.findings.push(f);
                    }
                }
                for r in order.refunds.iter().filter(|r| {
                    r.state == RefundState::Success && r.updated_at >= r_from && r.updated_at < r_to
                }) {
                    local.refunds += 1;
                    local.refund_total = add(local.refund_total, r.refund_fee);
                    if !pass.bill_refunds.contains(&r.out_refund_no) {
                        let f = self
                            .refund_not_in_bill(
                                &order,
                                &r.out_refund_no,
                                r.refund_fee,
                                date,
                                options,
                            )
                            .await;
                        pass.findings.push(f);
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(local)
    }

    async fn payment_not_in_bill(
        &self,
        order: &Order,
        date: NaiveDate,
        options: DailyOptions,
    ) -> Finding {
        let mut f = Finding::order(
            FindingKind::PaymentNotInBill,
            order,
            format!(
                "paid in the store ({} yuan, {}) but not in the bill",
                format_yuan(order.total_fee),
                order.time_end.as_deref().unwrap_or("-")
            ),
        );
        let answer = match self.gateway(order.api) {
            Ok(g) => g.query(&order.out_trade_no).await,
            Err(e) => return unresolved(f, "cannot ask WeChat", &e),
        };
        let day = date.format("%Y%m%d").to_string();
        match answer {
            Ok(Some(a)) if a.trade_state.is_paid() => {
                let at = a.report.time_end.clone().unwrap_or_default();
                if !at.is_empty() && !at.starts_with(&day) {
                    f.detail.push_str(&format!(
                        "; orderquery: paid at {at}, so in that day's bill"
                    ));
                    f.resolution = Resolution::Explained;
                    return f;
                }
                f.detail.push_str(&format!(
                    "; orderquery confirms the payment ({at}) but the bill lacks it"
                ));
            }
            Ok(Some(a)) => f.detail.push_str(&format!(
                "; orderquery: WeChat has it {} (not paid)",
                a.trade_state.as_str()
            )),
            Ok(None) => f
                .detail
                .push_str("; orderquery: WeChat does not know the order"),
            Err(e) => return unresolved(f, "orderquery failed", &e),
        }
        self.conclude(f, &order.out_trade_no, date, options).await
    }

    async fn refund_not_in_bill(
        &self,
        order: &Order,
        out_refund_no: &str,
        amount: Fen,
        date: NaiveDate,
        options: DailyOptions,
    ) -> Finding {
        let mut f = Finding {
            out_refund_no: Some(out_refund_no.to_owned()),
            local_amount: Some(amount),
            ..Finding::order(
                FindingKind::RefundNotInBill,
                order,
                format!(
                    "refund of {} yuan successful in the store but not in the bill",
                    format_yuan(amount)
                ),
            )
        };
        let report = match self.gateway(order.api) {
            Ok(g) => g.refund_by_number(order, out_refund_no).await,
            Err(e) => return unresolved(f, "cannot ask WeChat", &e),
        };
        match report {
            Ok(report) => match report {
                Some(r)
                    if r.status == RefundStatus::Success
                        && r.refund_fee.is_none_or(|x| x == amount) =>
                {
                    f.detail.push_str(
                        "; refundquery confirms it: WeChat dates it on another day, so it is in that day's bill",
                    );
                    f.resolution = Resolution::Explained;
                    return f;
                }
                Some(r) => f.detail.push_str(&format!(
                    "; refundquery: {} of {}",
                    r.status.as_str(),
                    r.refund_fee.map_or_else(|| "?".to_owned(), format_yuan)
                )),
                None => f
                    .detail
                    .push_str("; refundquery: WeChat does not know the refund"),
            },
            Err(e) => return unresolved(f, "refundquery failed", &e),
        }
        self.conclude(f, &order.out_trade_no, date, options).await
    }

    /// What a query did not explain: flagged on its order (a dry run only
    /// reports it).
    async fn conclude(
        &self,
        mut f: Finding,
        no: &OutTradeNo,
        date: NaiveDate,
        options: DailyOptions,
    ) -> Finding {
        f.resolution = if options.repair {
            self.flag_bill(no, date, &f).await
        } else {
            Resolution::ReportOnly
        };
        f
    }

    /// Records the finding on its order as a [`AttentionKind::BillMismatch`]
    /// case (once: the detail names the day, the kind and the bill's
    /// figures, the same on every run) and reports it.
    async fn flag_bill(&self, no: &OutTradeNo, date: NaiveDate, f: &Finding) -> Resolution {
        let a = Attention::new(
            AttentionKind::BillMismatch,
            format!(
                "bill {date}: {:?}{}{}{}",
                f.kind,
                f.out_refund_no
                    .as_deref()
                    .map_or_else(String::new, |r| format!(" refund {r}")),
                f.bill_amount
                    .map_or_else(String::new, |a| format!(" bill {}", format_yuan(a))),
                f.local_amount
                    .map_or_else(String::new, |a| format!(" store {}", format_yuan(a))),
            ),
            now(),
        );
        let mut acknowledged = false;
        let result = self
            .update(no, None, |o| {
                let seen = o.attention.iter().find(|x| x.same_case(&a));
                acknowledged = seen.is_some_and(|x| x.acknowledged_at.is_some());
                seen.is_none().then(|| {
                    (
                        o.state,
                        super::OrderPatch {
                            attention: vec![a.clone()],
                            ..super::OrderPatch::default()
                        },
                    )
                })
            })
            .await;
        match result {
            Ok(Some((order, changed))) => {
                if changed {
                    self.report_attention(&order).await;
                }
                if acknowledged {
                    Resolution::Acknowledged
                } else {
                    Resolution::Flagged
                }
            }
            Ok(None) => Resolution::NeedsPerson,
            Err(e) => {
                tracing::warn!(out_trade_no = %no, error = %e, "reconciliation: flagging failed");
                Resolution::Unresolved
            }
        }
    }
}

/// A finding a failed query leaves open (for the next run).
fn unresolved(mut f: Finding, what: &str, e: &dyn fmt::Display) -> Finding {
    f.detail.push_str(&format!("; {what}: {e}"));
    f.resolution = Resolution::Unresolved;
    f
}

/// A payment row against its order.
fn payment_row(pass: &mut Pass, row: &TradeRow, order: &Order) {
    let amount = order_amount(row);
    let mut mismatch = false;
    // The order amount must be the order's; the settlement amount too, less
    // coupons (WeChat settles the order amount minus the coupons it does
    // not fund), so with no coupon it is the order's amount exactly.
    let settlement_wrong = row.settlement_fee > order.total_fee
        || (row.coupon_fee == Fen(0) && row.settlement_fee != order.total_fee);
    if amount != order.total_fee || settlement_wrong {
        let (what, shown) = if amount == order.total_fee {
            ("settlement amount", row.settlement_fee)
        } else {
            ("amount", amount)
        };
        mismatch = true;
        pass.findings.push(Finding {
            bill_amount: Some(shown),
            local_amount: Some(order.total_fee),
            resolution: Resolution::Flagged,
            ..Finding::row(
                FindingKind::AmountMismatch,
                row,
                format!(
                    "line {}: the bill has an {what} of {} yuan, the order {} yuan",
                    row.line,
                    format_yuan(shown),
                    format_yuan(order.total_fee)
                ),
            )
        });
    }
    if row.currency != CURRENCY {
        mismatch = true;
        pass.findings.push(Finding {
            resolution: Resolution::Flagged,
            ..Finding::row(
                FindingKind::CurrencyMismatch,
                row,
                format!(
                    "line {}: currency {}, the order is {CURRENCY}",
                    row.line, row.currency
                ),
            )
        });
    }
    if let Some(t) = &order.transaction_id
        && *t != row.transaction_id
    {
        mismatch = true;
        pass.findings.push(Finding {
            resolution: Resolution::Flagged,
            ..Finding::row(
                FindingKind::TransactionMismatch,
                row,
                format!(
                    "line {}: transaction {} in the bill, {t} recorded",
                    row.line, row.transaction_id
                ),
            )
        });
    }
    if !order.state.is_paid() {
        pass.findings.push(Finding {
            bill_amount: Some(amount),
            local_amount: Some(order.total_fee),
            ..Finding::row(
                FindingKind::PaymentNotRecorded,
                row,
                format!(
                    "line {}: paid at WeChat ({}), {} in the store",
                    row.line,
                    row.trade_time,
                    order.state.as_str()
                ),
            )
        });
    } else if !mismatch {
        pass.matched += 1;
    }
}

/// A refund row against its order's ledger.
fn refund_row(pass: &mut Pass, row: &TradeRow, order: &Order) {
    let Some(refund_no) = &row.out_refund_no else {
        pass.findings.push(Finding::row(
            FindingKind::UnexpectedRow,
            row,
            format!("line {}: a refund row without a refund number", row.line),
        ));
        return;
    };
    match order.refund(refund_no) {
        Some(r) if r.state == RefundState::Success => {
            if r.refund_fee == row.refund_fee {
                pass.matched += 1;
            } else {
                pass.findings.push(Finding {
                    bill_amount: Some(row.refund_fee),
                    local_amount: Some(r.refund_fee),
                    resolution: Resolution::Flagged,
                    ..Finding::row(
                        FindingKind::RefundAmountMismatch,
                        row,
                        format!(
                            "line {}: the bill refunds {} yuan, the ledger {} yuan",
                            row.line,
                            format_yuan(row.refund_fee),
                            format_yuan(r.refund_fee)
                        ),
                    )
                });
            }
        }
        other => pass.findings.push(Finding {
            bill_amount: Some(row.refund_fee),
            local_amount: other.map(|r| r.refund_fee),
            ..Finding::row(
                FindingKind::RefundNotRecorded,
                row,
                format!(
                    "line {}: refund of {} yuan at WeChat, {} in the store",
                    row.line,
                    format_yuan(row.refund_fee),
                    other.map_or("unknown", |r| r.state.as_str())
                ),
            )
        }),
    }
}

fn malformed(pass: &mut Pass, e: &LineError) {
    pass.bill.malformed += 1;
    if pass.malformed_listed < MALFORMED_LISTED {
        pass.malformed_listed += 1;
        pass.findings.push(Finding {
            line: Some(e.line),
            ..Finding::new(
                FindingKind::MalformedLine,
                format!("line {}: {}", e.line, e.reason),
            )
        });
    }
}

/// Checks the rows against the totals line.
fn tie_out(pass: &mut Pass) {
    let b = &mut pass.bill;
    let Some(t) = &b.totals else {
        b.ties_out = false;
        pass.findings.push(Finding::new(
            FindingKind::TotalsMismatch,
            "the bill has no totals line",
        ));
        return;
    };
    let mut diffs = Vec::new();
    if t.count != b.rows {
        diffs.push(format!("{} rows, the totals line says {}", b.rows, t.count));
    }
    if t.settlement_total != b.settlement_total {
        diffs.push(format!(
            "settlement {} yuan, the totals line says {}",
            format_yuan(b.settlement_total),
            format_yuan(t.settlement_total)
        ));
    }
    if t.refund_total != b.refund_total {
        diffs.push(format!(
            "refunds {} yuan, the totals line says {}",
            format_yuan(b.refund_total),
            format_yuan(t.refund_total)
        ));
    }
    if t.fee_total != b.fee_total {
        diffs.push(format!(
            "fees {} yuan, the totals line says {}",
            b.fee_total, t.fee_total
        ));
    }
    b.ties_out = diffs.is_empty() && b.malformed == 0;
    if !diffs.is_empty() {
        pass.findings.push(Finding {
            line: Some(t.line),
            ..Finding::new(FindingKind::TotalsMismatch, diffs.join("; "))
        });
    }
}

/// A payment row's order amount: `订单金额`, or, in bills without that
/// column, the settlement amount plus the coupons.
fn order_amount(row: &TradeRow) -> Fen {
    row.total_fee
        .unwrap_or_else(|| add(row.settlement_fee, row.coupon_fee))
}

fn add(a: Fen, b: Fen) -> Fen {
    Fen(a.0.saturating_add(b.0))
}
