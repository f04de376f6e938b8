//! `SimConfig::state_file`: orders and refunds kept across restarts, as
//! JSON, written atomically (a temporary file renamed over the old one).

use std::{
    collections::BTreeMap,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use wxpay_core::{RefundStatus, SignType};

use crate::{
    model::{Protocol, RefundResult, RefundSource},
    state::{Order, OrderState, Refund, State},
};

/// The file format version written (and the only one read).
const VERSION: u32 = 1;

/// How often a changed state is saved.
pub(crate) const SAVE_EVERY: Duration = Duration::from_millis(200);

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    /// It exists but cannot be read.
    #[error("cannot read it")]
    Read(#[source] io::Error),
    /// It is not a simulator state file (corrupt, truncated, not JSON).
    #[error("corrupt: not a wxpay-sim state file")]
    Parse(#[source] serde_json::Error),
    /// It was written by another format version.
    #[error("format version {0}, this simulator reads version {VERSION}")]
    Version(u32),
    /// It cannot be written (or renamed into place).
    #[error("cannot write it")]
    Write(#[source] io::Error),
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    orders: Vec<SavedOrder>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct SavedOrder {
    out_trade_no: String,
    request: BTreeMap<String, String>,
    sign_type: SignType,
    created_at: DateTime<Utc>,
    prepay_id: String,
    /// How long after creation the current prepay session was issued.
    prepay_issued_after_ms: u64,
    /// Every prepay id that leads to this order (replaced ones too).
    prepay_ids: Vec<String>,
    code_url: Option<String>,
    state: OrderState,
    transaction_id: Option<String>,
    time_end: Option<String>,
    payer_openid: Option<String>,
    protocol: Protocol,
    v3_request: Option<serde_json::Value>,
    paid_at: Option<DateTime<Utc>>,
    refunds: Vec<SavedRefund>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct SavedRefund {
    out_refund_no: String,
    refund_id: String,
    total_fee: u64,
    refund_fee: u64,
    status: RefundStatus,
    notify_url: Option<String>,
    success_time: Option<String>,
    refund_account: String,
    outcome: RefundResult,
    source: RefundSource,
    protocol: Protocol,
    created_at: DateTime<Utc>,
    success_at: Option<DateTime<Utc>>,
}

/// The state file of a running simulator.
pub(crate) struct Persister {
    pub(crate) path: PathBuf,
    /// What was last written, so an unchanged state is not rewritten; and
    /// the last error logged, so a failing disk is not logged every tick.
    last: Mutex<(Option<String>, Option<String>)>,
}

impl Persister {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            last: Mutex::new((None, None)),
        }
    }

    /// Reads the orders of the file into `st`; a missing file is an empty
    /// store.
    pub(crate) fn load(&self, st: &mut State) -> Result<(), StateFileError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StateFileError::Read(e)),
        };
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(StateFileError::Parse)?
            .get("version")
            .and_then(serde_json::Value::as_u64);
        match version {
            Some(v) if v != u64::from(VERSION) => {
                return Err(StateFileError::Version(
                    u32::try_from(v).unwrap_or(u32::MAX),
                ));
            }
            _ => {}
        }
        let saved: Saved = serde_json::from_str(&text).map_err(StateFileError::Parse)?;
        for o in saved.orders {
            restore(st, o);
        }
        Ok(())
    }

    /// Writes `st` if it changed since the last write.
    pub(crate) fn save(&self, st: &State) -> Result<(), StateFileError> {
        let json = to_json(st);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0.as_deref() == Some(json.as_str()) {
            return Ok(());
        }
        write_atomically(&self.path, json.as_bytes()).map_err(StateFileError::Write)?;
        last.0 = Some(json);
        Ok(())
    }

    /// [`Persister::save`], logging a failure (once per distinct error).
    pub(crate) fn save_logged(&self, st: &State) {
        let result = self.save(st);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => last.1 = None,
            Err(e) => {
                let msg = format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or_else(String::new, ToString::to_string)
                );
                if last.1.as_deref() != Some(msg.as_str()) {
                    tracing::error!(path = %self.path.display(), error = %msg, "cannot save the state file");
                    last.1 = Some(msg);
                }
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn to_json(st: &State) -> String {
    let mut prepay_ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (prepay_id, no) in &st.prepay_index {
        prepay_ids.entry(no).or_default().push(prepay_id.clone());
    }
    let mut orders: Vec<SavedOrder> = st
        .orders
        .values()
        .map(|o| {
            let mut ids = prepay_ids
                .remove(o.out_trade_no.as_str())
                .unwrap_or_default();
            ids.sort();
            save_order(o, ids)
        })
        .collect();
    orders.sort_by(|a, b| a.out_trade_no.cmp(&b.out_trade_no));
    let saved = Saved {
        version: VERSION,
        orders,
    };
    serde_json::to_string_pretty(&saved).expect("plain data serializes")
}

fn save_order(o: &Order, prepay_ids: Vec<String>) -> SavedOrder {
    let after = o.prepay_issued.saturating_duration_since(o.created);
    SavedOrder {
        out_trade_no: o.out_trade_no.clone(),
        request: o
            .request
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        sign_type: o.sign_type,
        created_at: o.created_at,
        prepay_id: o.prepay_id.clone(),
        prepay_issued_after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        prepay_ids,
        code_url: o.code_url.clone(),
        state: o.state,
        transaction_id: o.transaction_id.clone(),
        time_end: o.time_end.clone(),
        payer_openid: o.payer_openid.clone(),
        protocol: o.protocol,
        v3_request: o.v3_request.clone(),
        paid_at: o.paid_at,
        refunds: o
            .refunds
            .iter()
            .map(|r| SavedRefund {
                out_refund_no: r.out_refund_no.clone(),
                refund_id: r.refund_id.clone(),
                total_fee: r.total_fee,
                refund_fee: r.refund_fee,
                status: r.status.clone(),
                notify_url: r.notify_url.clone(),
                success_time: r.success_time.clone(),
                refund_account: r.refund_account.clone(),
                outcome: r.outcome,
                source: r.source,
                protocol: r.protocol,
                created_at: r.created_at,
                success_at: r.success_at,
            })
            .collect(),
    }
}

/// Puts a saved order back, with its indexes; its clock restarts from the
/// wall-clock creation time (the prepay expiry and closeorder rules go on).
fn restore(st: &mut State, o: SavedOrder) {
    let age = (Utc::now() - o.created_at).to_std().unwrap_or_default();
    let now = Instant::now();
    let created = now.checked_sub(age).unwrap_or(now);
    let prepay_issued = created + Duration::from_millis(o.prepay_issued_after_ms);
    let no = o.out_trade_no.clone();
    for id in o.prepay_ids.iter().chain(std::iter::once(&o.prepay_id)) {
        st.prepay_index.insert(id.clone(), no.clone());
    }
    if let Some(tid) = &o.transaction_id {
        st.transaction_index.insert(tid.clone(), no.clone());
    }
    for r in &o.refunds {
        st.refund_index.insert(r.out_refund_no.clone(), no.clone());
        st.refund_id_index
            .insert(r.refund_id.clone(), r.out_refund_no.clone());
    }
    let order = Order {
        out_trade_no: o.out_trade_no,
        request: o.request.into_iter().collect(),
        sign_type: o.sign_type,
        created,
        prepay_id: o.prepay_id,
        prepay_issued,
        code_url: o.code_url,
        state: o.state,
        transaction_id: o.transaction_id,
        time_end: o.time_end,
        payer_openid: o.payer_openid,
        refunds: o
            .refunds
            .into_iter()
            .map(|r| Refund {
                out_refund_no: r.out_refund_no,
                refund_id: r.refund_id,
                total_fee: r.total_fee,
                refund_fee: r.refund_fee,
                status: r.status,
                notify_url: r.notify_url,
                success_time: r.success_time,
                refund_account: r.refund_account,
                outcome: r.outcome,
                source: r.source,
                protocol: r.protocol,
                created_at: r.created_at,
                success_at: r.success_at,
            })
            .collect(),
        protocol: o.protocol,
        v3_request: o.v3_request,
        created_at: o.created_at,
        paid_at: o.paid_at,
    };
    st.orders.insert(no, order);
}
