//! Counters and histograms through the [`metrics`](https://docs.rs/metrics/0.24) facade.
//!
//! The library records; the application chooses where the numbers go by
//! installing a recorder (for example `metrics-exporter-prometheus`, as the
//! example shops do with `--metrics-listen`). With no recorder installed
//! every call below is a no-op (the facade's no-op recorder): no
//! allocation, no lock, no atomic. Every label value is a `&'static str`
//! from a short fixed list — never an order number, an openid or an
//! amount — so the series stay few and building them allocates nothing.
//!
//! Call [`describe`] once after installing the recorder to attach the help
//! texts and units below.
//!
//! | metric | type | labels | recorded |
//! |---|---|---|---|
//! | [`wxpay_notify_total`](NOTIFY_TOTAL) | counter | `api` (`v2`, `v3`), `kind` (`payment`, `refund`; v3 also `other` for an event type not handled, `unknown` when refused before the event was known), `outcome` | once per notify, from its [`NotifyOutcome`] |
//! | [`wxpay_checkout_seconds`](CHECKOUT_SECONDS) | histogram (seconds) | `outcome` (`ok`, `error`) | once per [`Payments::checkout`](crate::flow::Payments::checkout), the whole call (the app's decision, the store, unifiedorder and its retries) |
//! | [`wxpay_upstream_seconds`](UPSTREAM_SECONDS) | histogram (seconds) | `api`, `endpoint` | once per HTTP exchange with WeChat (each retry counts), in both clients |
//! | [`wxpay_upstream_errors_total`](UPSTREAM_ERRORS_TOTAL) | counter | `api`, `endpoint`, `code` | once per failed exchange |
//! | [`wxpay_reconciler_actions_total`](RECONCILER_ACTIONS_TOTAL) | counter | `action` (`fulfilled`, `synced`, `paid`, `closed`, `refunds_synced`, `sessions_purged`, `errors`) | after each reconciler pass, by the counts of its [`ReconcileReport`] |
//! | [`wxpay_attention_total`](ATTENTION_TOTAL) | counter | `kind` ([`AttentionKind::as_str`], e.g. `LATE_PAYMENT`) | each time an order is flagged and [`PaymentEvents::on_attention`](crate::flow::PaymentEvents::on_attention) is called |
//!
//! `outcome` of a notify: `paid`, `duplicate`, `payment_failed`, `refund`,
//! `ignored` (a refund notify with nothing new, or a v3 event type not
//! handled), `unavailable` (store failure or API not configured), or
//! `rejected_<reason>` with reason `malformed`, `return_fail`,
//! `bad_signature`, `wrong_merchant`, `unknown_order`, `amount_mismatch`,
//! `currency_mismatch`.
//!
//! `endpoint` (both APIs): `prepay` (unifiedorder, v3 jsapi/native),
//! `query`, `close`, `refund`, `refund_query`, `certificates` (v3),
//! `code2session` (v2 sign-in), `trade_bill` (v2 downloadbill, v3
//! tradebill), `fund_flow_bill` and `bill_download` (v3: the file itself,
//! timed until its headers), `other`.
//!
//! `code` of an upstream error: WeChat's business code for a catalogued
//! [`ErrCode`] (`SYSTEMERROR`, `ORDERPAID`, …; `other` for a code this
//! version does not know), else the failure's class: `transport`, `xml`,
//! `protocol` (v2 `return_code=FAIL`), `bad_signature`, `unverified` (v3),
//! `pending` (v3 `202`), `field`, `login`, `config`, `certificate`,
//! `platform_certificates`, `signing`, and for bills `bill_not_ready`,
//! `no_bill`, `bill_hash_mismatch`, `bill_gzip`, `bill_foreign_download_url`,
//! `bill_unsupported_hash`, `bill_unsupported`, `bill_aborted`.

use std::time::Instant;

use ::metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use crate::{
    ErrCode, Error,
    flow::{AttentionKind, NotifyOutcome, NotifyRejection, Order, ReconcileReport},
    v3::Endpoint,
};

/// Counter: notifies handled, by `api`, `kind` and `outcome`.
pub const NOTIFY_TOTAL: &str = "wxpay_notify_total";
/// Histogram (seconds): whole checkouts, by `outcome`.
pub const CHECKOUT_SECONDS: &str = "wxpay_checkout_seconds";
/// Histogram (seconds): HTTP exchanges with WeChat, by `api` and `endpoint`.
pub const UPSTREAM_SECONDS: &str = "wxpay_upstream_seconds";
/// Counter: failed exchanges with WeChat, by `api`, `endpoint` and `code`.
pub const UPSTREAM_ERRORS_TOTAL: &str = "wxpay_upstream_errors_total";
/// Counter: what reconciler passes did, by `action`.
pub const RECONCILER_ACTIONS_TOTAL: &str = "wxpay_reconciler_actions_total";
/// Counter: orders flagged for attention, by `kind`.
pub const ATTENTION_TOTAL: &str = "wxpay_attention_total";

/// Attaches the help text and unit of every metric above to the installed
/// recorder (a no-op without one). Call it once, after installing the
/// recorder; the metrics are recorded whether or not it was called.
pub fn describe() {
    describe_counter!(
        NOTIFY_TOTAL,
        Unit::Count,
        "WeChat Pay notifies handled, by api, kind and outcome"
    );
    describe_histogram!(
        CHECKOUT_SECONDS,
        Unit::Seconds,
        "Whole checkouts (app decision, store, unifiedorder), by outcome"
    );
    describe_histogram!(
        UPSTREAM_SECONDS,
        Unit::Seconds,
        "HTTP exchanges with WeChat Pay, by api and endpoint"
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        Unit::Count,
        "Failed exchanges with WeChat Pay, by api, endpoint and code"
    );
    describe_counter!(
        RECONCILER_ACTIONS_TOTAL,
        Unit::Count,
        "What reconciler passes did, by action"
    );
    describe_counter!(
        ATTENTION_TOTAL,
        Unit::Count,
        "Orders flagged for a person, by kind"
    );
}

/// The `outcome` label of a notify.
pub(crate) fn outcome_label(outcome: &NotifyOutcome) -> &'static str {
    match outcome {
        NotifyOutcome::Paid { .. } => "paid",
        NotifyOutcome::Duplicate { .. } => "duplicate",
        NotifyOutcome::PaymentFailed { .. } => "payment_failed",
        NotifyOutcome::Refund { .. } => "refund",
        NotifyOutcome::RefundIgnored { .. } | NotifyOutcome::Ignored { .. } => "ignored",
        NotifyOutcome::Unavailable => "unavailable",
        NotifyOutcome::Rejected(r) => match r {
            NotifyRejection::Malformed => "rejected_malformed",
            NotifyRejection::ReturnFail => "rejected_return_fail",
            NotifyRejection::BadSignature => "rejected_bad_signature",
            NotifyRejection::WrongMerchant => "rejected_wrong_merchant",
            NotifyRejection::UnknownOrder => "rejected_unknown_order",
            NotifyRejection::AmountMismatch { .. } => "rejected_amount_mismatch",
            NotifyRejection::CurrencyMismatch { .. } => "rejected_currency_mismatch",
        },
    }
}

/// Counts one handled notify.
pub(crate) fn notify(api: &'static str, kind: &'static str, outcome: &NotifyOutcome) {
    counter!(NOTIFY_TOTAL, "api" => api, "kind" => kind, "outcome" => outcome_label(outcome))
        .increment(1);
}

/// Records one whole checkout.
pub(crate) fn checkout(started: Instant, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    histogram!(CHECKOUT_SECONDS, "outcome" => outcome).record(started.elapsed().as_secs_f64());
}

/// Records one exchange with WeChat: its duration, and its error if any.
pub(crate) fn upstream<T>(
    api: &'static str,
    endpoint: &'static str,
    started: Instant,
    result: &Result<T, Error>,
) {
    histogram!(UPSTREAM_SECONDS, "api" => api, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        counter!(
            UPSTREAM_ERRORS_TOTAL,
            "api" => api,
            "endpoint" => endpoint,
            "code" => error_code(e)
        )
        .increment(1);
    }
}

/// The `endpoint` label of a v2 path.
pub(crate) fn v2_endpoint(path: &str) -> &'static str {
    match path {
        "/pay/unifiedorder" => "prepay",
        "/pay/orderquery" => "query",
        "/pay/closeorder" => "close",
        "/secapi/pay/refund" => "refund",
        "/pay/refundquery" => "refund_query",
        "/pay/downloadbill" => "trade_bill",
        _ => "other",
    }
}

/// The `endpoint` label of a v3 endpoint.
pub(crate) fn v3_endpoint(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Prepay => "prepay",
        Endpoint::Query => "query",
        Endpoint::Close => "close",
        Endpoint::Refund => "refund",
        Endpoint::RefundQuery => "refund_query",
        Endpoint::Certificates => "certificates",
        Endpoint::TradeBill => "trade_bill",
        Endpoint::FundFlowBill => "fund_flow_bill",
        Endpoint::BillDownload => "bill_download",
    }
}

/// The `code` label of an upstream error.
pub(crate) fn error_code(e: &Error) -> &'static str {
    match e {
        Error::Transport { .. } => "transport",
        Error::Xml(_) => "xml",
        Error::Protocol { .. } => "protocol",
        Error::InvalidSignature(_) => "bad_signature",
        Error::Business { err_code, .. } => code_label(err_code),
        Error::Field(_) => "field",
        Error::Login { .. } => "login",
        Error::Config(_) | Error::V3Config(_) => "config",
        Error::Certificate(_) => "certificate",
        Error::Api(a) => code_label(&a.err_code),
        Error::Unverified(_) => "unverified",
        Error::Pending { .. } => "pending",
        Error::PlatformCertificates(_) => "platform_certificates",
        Error::Signing(_) => "signing",
        Error::Bill(b) => b.label(),
        Error::Partner(_) => "partner",
    }
}

/// A catalogued code's wire string; `other` for the rest (their text comes
/// from WeChat, so it is no label).
fn code_label(code: &ErrCode) -> &'static str {
    code.static_str().unwrap_or("other")
}

/// Counts what one reconciler pass did.
pub(crate) fn reconciled(report: &ReconcileReport) {
    let actions: [(&'static str, u64); 7] = [
        ("fulfilled", report.fulfilled as u64),
        ("synced", report.synced as u64),
        ("paid", report.paid as u64),
        ("closed", report.closed as u64),
        ("refunds_synced", report.refunds_synced as u64),
        ("sessions_purged", report.sessions_purged),
        ("errors", report.errors as u64),
    ];
    for (action, n) in actions {
        counter!(RECONCILER_ACTIONS_TOTAL, "action" => action).increment(n);
    }
}

/// Counts one attention report for `order` (its latest case).
pub(crate) fn attention(order: &Order) {
    let kind = order
        .attention
        .last()
        .map_or(AttentionKind::Other, |a| a.kind)
        .as_str();
    counter!(ATTENTION_TOTAL, "kind" => kind).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_fixed_words() {
        let business = |code: &str| Error::Business {
            err_code: ErrCode::parse(code),
            err_code_des: String::new(),
        };
        assert_eq!(error_code(&business("SYSTEMERROR")), "SYSTEMERROR");
        // A code WeChat invents later is no label value of its own.
        assert_eq!(error_code(&business("SOMETHING_NEW_42")), "other");
        assert_eq!(error_code(&Error::transport("x", None)), "transport");
        assert_eq!(v2_endpoint("/secapi/pay/refund"), "refund");
        assert_eq!(v2_endpoint("/pay/unknown"), "other");
        assert_eq!(v3_endpoint(Endpoint::RefundQuery), "refund_query");
        assert_eq!(
            outcome_label(&NotifyOutcome::Rejected(NotifyRejection::AmountMismatch {
                expected: crate::Fen(1),
                received: crate::Fen(2),
            })),
            "rejected_amount_mismatch"
        );
    }
}
