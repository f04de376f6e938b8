//! Building and delivering payment and refund notifies, on WeChat's retry
//! schedule.

use std::{sync::Arc, time::Duration};

use wxpay_core::{
    Params, SignType, crypto::encrypt_req_info, sign::sign, types::nonce_str, xml::parse,
};

use crate::{
    keys::Tamper,
    model::{NotifyAttempt, NotifyKind, Protocol, SimConfig},
    state::{Order, Refund, Sim},
    wire,
};

/// The delays before notify retries 1–15 (real time; the simulator scales them): 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h.
pub const RETRY_SCHEDULE: [Duration; 15] = [
    Duration::from_secs(15),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(3 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(6 * 3600),
];

pub(crate) struct NotifyJob {
    pub(crate) kind: NotifyKind,
    pub(crate) out_trade_no: String,
    pub(crate) out_refund_no: Option<String>,
    pub(crate) url: String,
    pub(crate) body: String,
    /// v3 jobs are signed afresh on every attempt (a fresh timestamp, and in
    /// migration mode a fresh choice of key).
    pub(crate) protocol: Protocol,
}

/// The signed payment notify of a freshly paid order. MD5 orders carry
/// `sign_type=MD5`; HMAC orders carry `sign_type=HMAC-SHA256` only with
/// [`SimConfig::hmac_notify_sign_type`] (WeChat sends both shapes). Whatever
/// is sent is signed.
pub(crate) fn payment_job(config: &SimConfig, order: &Order) -> NotifyJob {
    let mut p = Params::new();
    p.insert("return_code", "SUCCESS");
    p.insert("result_code", "SUCCESS");
    p.insert("appid", config.appid.as_str());
    p.insert("mch_id", config.mch_id.as_str());
    p.insert("nonce_str", nonce_str());
    p.insert_opt("device_info", order.field("device_info"));
    p.insert_opt("openid", order.openid());
    p.insert("is_subscribe", "N");
    p.insert("trade_type", order.trade_type());
    p.insert("bank_type", "OTHERS");
    p.insert("total_fee", order.total_fee().to_string());
    p.insert("fee_type", order.field("fee_type").unwrap_or("CNY"));
    p.insert("cash_fee", order.total_fee().to_string());
    p.insert_opt("transaction_id", order.transaction_id.as_deref());
    p.insert("out_trade_no", order.out_trade_no.as_str());
    p.insert_opt("attach", order.field("attach"));
    p.insert_opt("time_end", order.time_end.as_deref());
    if order.sign_type == SignType::Md5 || config.hmac_notify_sign_type {
        p.insert("sign_type", order.sign_type.as_str());
    }
    let s = sign(&p, &config.api_key, order.sign_type);
    p.insert("sign", s);
    NotifyJob {
        kind: NotifyKind::Payment,
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: None,
        url: order.field("notify_url").unwrap_or_default().to_owned(),
        body: wire::to_xml(&p, "xml", config.ints()),
        protocol: Protocol::V2,
    }
}

/// The refund notify: unsigned, the result inside the encrypted `req_info`.
pub(crate) fn refund_job(
    config: &SimConfig,
    out_trade_no: &str,
    transaction_id: &str,
    total_fee: u64,
    refund: &Refund,
    url: String,
) -> NotifyJob {
    let mut inner = Params::new();
    inner.insert("transaction_id", transaction_id);
    inner.insert("out_trade_no", out_trade_no);
    inner.insert("refund_id", refund.refund_id.as_str());
    inner.insert("out_refund_no", refund.out_refund_no.as_str());
    inner.insert("total_fee", total_fee.to_string());
    inner.insert("settlement_total_fee", total_fee.to_string());
    inner.insert("refund_fee", refund.refund_fee.to_string());
    inner.insert("settlement_refund_fee", refund.refund_fee.to_string());
    inner.insert("refund_status", refund.status.as_str());
    inner.insert_opt("success_time", refund.success_time.as_deref());
    inner.insert("refund_recv_accout", "支付用户零钱");
    inner.insert("refund_account", refund.refund_account.as_str());
    inner.insert("refund_request_source", refund.source.as_str());
    // WeChat wraps every value of req_info in CDATA, numbers too.
    let plain = wire::to_xml(&inner, "root", wire::Ints::Cdata);

    let mut outer = Params::new();
    outer.insert("return_code", "SUCCESS");
    outer.insert("appid", config.appid.as_str());
    outer.insert("mch_id", config.mch_id.as_str());
    outer.insert("nonce_str", nonce_str());
    outer.insert("req_info", encrypt_req_info(&plain, &config.api_key));
    NotifyJob {
        kind: NotifyKind::Refund,
        out_trade_no: out_trade_no.to_owned(),
        out_refund_no: Some(refund.out_refund_no.clone()),
        url,
        body: wire::to_xml(&outer, "xml", config.ints()),
        protocol: Protocol::V2,
    }
}

/// Sends the notify, retrying on the (scaled) schedule until a SUCCESS
/// reply or the schedule runs out.
pub(crate) async fn deliver(sim: Arc<Sim>, job: NotifyJob) {
    let job = Arc::new(job);
    let delays =
        std::iter::once(Duration::ZERO).chain(RETRY_SCHEDULE.iter().map(|d| sim.scaled(*d)));
    for (i, delay) in delays.enumerate() {
        tokio::time::sleep(delay).await;
        let attempt = i as u32 + 1;
        let faults = sim.faults();
        let drop = match job.kind {
            NotifyKind::Payment => faults.drop_notifies,
            NotifyKind::Refund => faults.drop_refund_notifies,
        };
        if drop {
            record(
                &sim,
                &job,
                attempt,
                false,
                Outcome {
                    error: Some("dropped by fault injection".into()),
                    ..Outcome::default()
                },
            );
            continue;
        }
        for _ in 0..faults.duplicate_notifies {
            let (sim, job) = (Arc::clone(&sim), Arc::clone(&job));
            let s = Arc::clone(&sim);
            s.spawn(async move {
                let outcome = send(&sim, &job).await;
                record(&sim, &job, attempt, true, outcome);
            });
        }
        let outcome = send(&sim, &job).await;
        let delivered = outcome.delivered;
        record(&sim, &job, attempt, false, outcome);
        if delivered {
            return;
        }
    }
    tracing::warn!(out_trade_no = %job.out_trade_no, kind = ?job.kind, "notify retries exhausted");
}

#[derive(Default)]
struct Outcome {
    status: Option<u16>,
    reply: Option<String>,
    error: Option<String>,
    delivered: bool,
    serial: Option<String>,
}

async fn send(sim: &Sim, job: &NotifyJob) -> Outcome {
    let mut req = sim.http.post(&job.url).body(job.body.clone());
    let mut serial = None;
    match job.protocol {
        Protocol::V2 => req = req.header("content-type", "text/xml; charset=utf-8"),
        Protocol::V3 => {
            let faults = sim.faults();
            let tamper = if sim.roll(faults.signature_probe_rate) {
                Tamper::Probe
            } else if sim.roll(faults.bad_notify_signature_rate) {
                Tamper::Corrupt
            } else {
                Tamper::None
            };
            let signer = sim.v3.notify_signer();
            let signature = sim.v3.sign(signer, job.body.as_bytes(), tamper);
            req = req.header("content-type", "application/json");
            for (name, value) in signature.headers() {
                req = req.header(name, value);
            }
            serial = Some(signature.serial);
        }
    }
    let res = req.send().await;
    let resp = match res {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                error: Some(error_chain(&e)),
                serial,
                ..Outcome::default()
            };
        }
    };
    let status = resp.status().as_u16();
    match resp.text().await {
        Ok(text) => {
            let delivered = match job.protocol {
                // Only the SUCCESS XML counts; "success", JSON or HTML are failures.
                Protocol::V2 => {
                    status == 200
                        && parse(text.as_bytes())
                            .map(|p| p.get("return_code") == Some("SUCCESS"))
                            .unwrap_or(false)
                }
                // v3 decides by the status alone (spec 13.5).
                Protocol::V3 => status == 200 || status == 204,
            };
            Outcome {
                status: Some(status),
                reply: Some(text),
                error: None,
                delivered,
                serial,
            }
        }
        Err(e) => Outcome {
            status: Some(status),
            error: Some(error_chain(&e)),
            serial,
            ..Outcome::default()
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn record(sim: &Sim, job: &NotifyJob, attempt: u32, duplicate: bool, outcome: Outcome) {
    tracing::info!(
        kind = ?job.kind,
        out_trade_no = %job.out_trade_no,
        attempt,
        duplicate,
        url = %job.url,
        status = ?outcome.status,
        delivered = outcome.delivered,
        error = ?outcome.error,
        "notify attempt"
    );
    sim.lock().notifies.push(NotifyAttempt {
        out_trade_no: job.out_trade_no.clone(),
        out_refund_no: job.out_refund_no.clone(),
        kind: job.kind,
        attempt,
        duplicate,
        url: job.url.clone(),
        body: job.body.clone(),
        protocol: job.protocol,
        serial: outcome.serial,
        status: outcome.status,
        reply: outcome.reply,
        error: outcome.error,
        delivered: outcome.delivered,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_sums_to_24h4m() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60));
    }
}
