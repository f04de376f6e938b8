//! # wxpay-sim
//!
//! A local WeChat Pay simulator, API v2 and API v3 on one base URL: the
//! real pay-API paths, signatures, error codes and notify retries, plus
//! `jscode2session`, driven by a small control API, so code that passes
//! against it works against WeChat.
//!
//! ```
//! use wxpay_sim::{SimConfig, Simulator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SimConfig::test().with_time_scale(0.001);
//! let sim = Simulator::start(config.clone()).await?;
//!
//! // The mini-program's wx.login: a single-use code for this user.
//! let code = sim.login("oUser123").await;
//!
//! // The merchant server exchanges it, as it would with api.weixin.qq.com.
//! let url = format!(
//!     "{}/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
//!     sim.base_url(),
//!     config.appid,
//!     config.app_secret.expose(),
//! );
//! let session: serde_json::Value = reqwest::get(&url).await?.json().await?;
//! assert_eq!(session["openid"], "oUser123");
//!
//! // A second exchange of the same code fails, as on WeChat.
//! let again: serde_json::Value = reqwest::get(&url).await?.json().await?;
//! assert_eq!(again["errcode"], 40163);
//!
//! // Unknown orders cannot be paid.
//! assert!(sim.pay("no-such-order").await.is_err());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## What it serves
//!
//! One base URL ([`SimHandle::base_url`]) stands in for both
//! `https://api.mch.weixin.qq.com` and `https://api.weixin.qq.com`:
//!
//! * `POST /pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder`,
//!   `/secapi/pay/refund`, `/pay/refundquery`: XML in, XML out. Requests
//!   are verified with their `sign_type` (MD5 by default, HMAC-SHA256) and
//!   replies signed the same way; `return_code=FAIL` replies carry no sign.
//! * The classic sandbox (spec 3.1): the same endpoints under
//!   `/sandboxnew/` (`/sandboxnew/pay/unifiedorder`, …, the refund at both
//!   `/sandboxnew/secapi/pay/refund` and gopay's `/sandboxnew/pay/refund`),
//!   sharing the one order store, and `POST /sandboxnew/pay/getsignkey`
//!   (`mch_id`, `nonce_str`, an MD5 `sign` with the production key →
//!   unsigned `sandbox_signkey`). The sandbox key handed out is the API key
//!   itself, so an SDK in sandbox mode signs with the key the simulator
//!   checks; the sandbox's MD5-only rule and its canned `total_fee` cases are
//!   not simulated.
//! * `GET /sns/jscode2session`: codes minted by [`SimHandle::login`],
//!   single use (`40163` on reuse, `40029` when unknown or expired).
//! * API v3 (below): `POST /v3/pay/transactions/jsapi` and `/native`,
//!   `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`,
//!   `GET /v3/pay/transactions/id/{id}?mchid=`,
//!   `POST /v3/pay/transactions/out-trade-no/{no}/close` (204),
//!   `POST /v3/refund/domestic/refunds`,
//!   `GET /v3/refund/domestic/refunds/{out_refund_no}`, `GET /v3/certificates`,
//!   and the bills (below): `GET /v3/bill/tradebill`,
//!   `GET /v3/bill/fundflowbill`, `GET /v3/billdownload/file`.
//! * `POST /pay/downloadbill` (also under `/sandboxnew/`): the v2 trade
//!   bill (below).
//!
//! The XML has WeChat's shape, not merely one a parser accepts: String
//! fields in CDATA whatever their value (`time_end`, `transaction_id`, a
//! digit-only `out_trade_no`, `mch_id`), Int fields (`total_fee`,
//! `cash_fee`, `refund_fee_0`, …) bare — or in CDATA too with
//! [`SimConfig::cdata_ints`] — and every value of a refund notify's
//! decrypted `req_info` in CDATA, numbers included, as WeChat writes it.
//! Payment notifies of MD5 orders carry `sign_type=MD5`; those of
//! HMAC-SHA256 orders carry no `sign_type` unless
//! [`SimConfig::hmac_notify_sign_type`] (WeChat sends both shapes).
//!
//! Protocol failures (`return_code=FAIL`, `return_msg`): GET on a POST
//! endpoint (`请使用post方法`), empty body (`post数据为空`), non-UTF-8
//! (`编码格式错误，请使用UTF-8编码`), malformed XML (`XML格式错误`), an
//! unknown `sign_type` (`sign_type参数格式错误`) and a wrong signature
//! (`签名错误`). Everything else is a signed `result_code=FAIL` with the
//! spec's `err_code`: `MCHID_NOT_EXIST`, `APPID_NOT_EXIST`,
//! `APPID_MCHID_NOT_MATCH`, `LACK_PARAMS` (`缺少参数…`), malformed or too
//! long fields (`INVALID_REQUEST` on the order endpoints, `PARAM_ERROR` on
//! the refund endpoints), `ORDERPAID`, `ORDERCLOSED`, `ORDERNOTEXIST`,
//! `INVALID_REQUEST` `201 商户订单号重复` (re-entry with other parameters),
//! `TRADE_STATE_ERROR` (closeorder within 5 minutes of creation),
//! `REFUND_FEE_MISMATCH`, `NOTENOUGH`, `REFUNDNOTEXIST` and `SYSTEMERROR`
//! (fault injection).
//!
//! ## API v3
//!
//! v2 and v3 share one order store and one numbering space: an
//! `out_trade_no` used by either protocol is used for both (v3 answers 403
//! `OUT_TRADE_NO_USED`, v2 `201 商户订单号重复`); either protocol can query
//! the other's orders. Each order remembers the API that created it
//! ([`SimOrder::protocol`]) and its notifies follow it: v3 orders get
//! `TRANSACTION.SUCCESS`, refunds asked for through v3 (and platform
//! refunds of v3 orders) get `REFUND.SUCCESS` / `REFUND.CLOSED` /
//! `REFUND.ABNORMAL` — the JSON envelope with its `resource` encrypted
//! with the APIv3 key (AES-256-GCM, associated data `transaction` /
//! `refund`), signed like answers afresh on every attempt, retried on
//! [`RETRY_SCHEDULE`] until the merchant answers 200 or 204.
//!
//! Every request is checked (spec 2): the `Authorization` header
//! (`WECHATPAY2-SHA256-RSA2048`, five pairs), `mchid`, the merchant
//! certificate serial, a timestamp within 5 minutes of the simulator's
//! clock (not scaled), and the RSA signature over
//! `METHOD\nPATH?QUERY\nTS\nNONCE\nBODY\n` with the raw body. Failures answer
//! 401 `SIGN_ERROR`, unsigned. Everything else is signed (spec 3:
//! `Wechatpay-Timestamp`, `-Nonce`, `-Serial`, `-Signature`,
//! `-Signature-Type`, plus `Request-ID`), errors included, as
//! `{"code","message","detail"?}` with the status of spec 14.3:
//! `PARAM_ERROR` (with `detail.field`, a JSON pointer or the query
//! parameter), `INVALID_REQUEST`, `MCH_NOT_EXISTS`, `APPID_MCHID_NOT_MATCH`,
//! `OUT_TRADE_NO_USED`, `ORDER_CLOSED`, `TRADE_ERROR` (closing a paid
//! order), `ORDER_NOT_EXIST`, `RESOURCE_NOT_EXISTS`, `FREQUENCY_LIMITED`
//! and `SYSTEM_ERROR` (fault injection), `NOT_FOUND`.
//!
//! Which key signs is [`V3Config::verify_mode`] ([`VerifyMode`]): the
//! platform certificate, the WeChat Pay public key, or the migration mix.
//! `GET /v3/certificates` lists the platform certificates encrypted with
//! the APIv3 key (404 `NOT_FOUND` in public-key mode);
//! [`SimHandle::rotate_certificate`] puts a new one in charge. Keys are
//! given in [`V3Config`] or generated at start; [`SimConfig::test`] uses
//! the spec vectors' fixed keys, and [`SimHandle::v3_merchant`] hands out
//! what a merchant needs:
//!
//! ```
//! use wxpay_core::v3::{ResponseValidator, WechatpayHeaders};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test()).await?;
//! let merchant = sim.v3_merchant();
//! let credential = merchant.credential().expect("the simulator knows the test key");
//! let url = "/v3/pay/transactions/out-trade-no/no-such-order?mchid=1900000109";
//! let ts = chrono::Utc::now().timestamp().to_string();
//! let auth = credential.authorization("GET", url, &ts, "nonce123", b"")?;
//! let resp = reqwest::Client::new()
//!     .get(format!("{}{url}", sim.base_url()))
//!     .header("Authorization", auth)
//!     .send()
//!     .await?;
//! let status = resp.status().as_u16();
//! let headers: Vec<(String, String)> = resp
//!     .headers()
//!     .iter()
//!     .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
//!     .collect();
//! let body = resp.bytes().await?;
//! let headers = WechatpayHeaders::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
//! ResponseValidator::new(merchant.certificate_verifier())
//!     .validate(status, &headers, &body, chrono::Utc::now().timestamp())?;
//! assert_eq!(status, 404);
//! assert_eq!(serde_json::from_slice::<serde_json::Value>(&body)?["code"], "ORDER_NOT_EXIST");
//! # Ok(()) }
//! ```
//!
//! ## Bills
//!
//! The trade bill and the fund-flow bill of a Beijing date are built when
//! asked for, from the orders and refunds the simulator holds (so today's
//! bill is there at once; WeChat's appears after 10:00 the next day, and
//! only for the last three months, neither of which is enforced), in
//! WeChat's format (v3 spec 12.4): a header line, back-tick prefixed
//! fields, a summary, CRLF line ends, yuan with two decimals, fees with
//! five. [`SimHandle::bill`] gives the text, faults applied.
//!
//! * Trade bill (`bill_type` `ALL`, the default; `SUCCESS` payments only;
//!   `REFUND` refunds only): one `SUCCESS` row per payment whose `time_end`
//!   is on the date, one `REFUND` row per refund that succeeded on it
//!   (`success_time`); refunds still processing, closed or abnormal do not
//!   appear (WeChat lists a refund under the day it accepted it; with the
//!   default refund delay the two differ only across midnight). `特约商户号`
//!   is `0`, `付款银行` `OTHERS`, `商品名称` the order's `body` / v3
//!   `description`, `商户数据包` its `attach`. Refund rows show `0.00` as
//!   settlement and order amount, the refund as `退款金额` and
//!   `申请退款金额`, `退款类型` `ORIGINAL`, `退款状态` `SUCCESS`, and the fee
//!   given back as a negative `手续费`, as real bills do. The summary is
//!   summed from the rows. `RECHARGE_REFUND` (and v3's personalised
//!   `ALL_SPECIAL`, `SUC_SPECIAL`, `REF_SPECIAL`) have no rows here.
//! * Fees: a payment's fee is its amount times
//!   [`SimConfig::fee_rate_bps`] (`0.60%` unless set; `--fee-rate-bps`),
//!   rounded half up to the fen (29.90 → `0.18000`, 9.90 → `0.06000`). A
//!   refund gives back its share: `round(fee × refunded so far / total) −
//!   round(fee × refunded before / total)` over the order's successful
//!   refunds, oldest first, so a full refund gives back the whole fee and
//!   partial refunds never more (10.00 of 29.90 → `-0.06000`).
//! * Fund-flow bill (`account_type` `BASIC`, the default; `OPERATION` and
//!   `FEES` have no flows here): per payment an income row `交易` and, when
//!   the fee is not zero, an expense row `扣除交易手续费`; per refund an
//!   expense row `退款` of the refund less the fee given back, remarked
//!   `退款总金额…元;含手续费…元`, submitted by `<mch_id>API` (API refunds)
//!   or `<mch_id>` (merchant-platform refunds); `资金流水单号` is the
//!   business number with `F1` / `F2`, `业务凭证号` the `out_trade_no` /
//!   `out_refund_no`; the balance (`账户结余(元)`) runs from 0.00.
//! * v2 `POST /pay/downloadbill`: a signed XML request (`bill_date`
//!   `yyyyMMdd`, `bill_type`, `tar_type=GZIP`) verified like the other
//!   calls; the answer is the bill as plain text or gzip, not XML, not
//!   signed. Failures are unsigned `return_code=FAIL` XML: `No Bill Exist`
//!   (`error_code` `20002`), `Bill Creating`, `invalid bill_type`,
//!   `invalid tar_type`, `data format error` (a bad date), `missing
//!   parameter` (the last four with `error_code` `20001`), `签名错误`,
//!   `SYSTEMERROR` (fault injection) and the protocol failures above.
//! * v3 `GET /v3/bill/tradebill?bill_date=yyyy-MM-dd[&bill_type=][&tar_type=GZIP]`
//!   and `GET /v3/bill/fundflowbill?bill_date=…[&account_type=][&tar_type=GZIP]`
//!   answer, signed, `{"hash_type":"SHA1","hash_value","download_url"}`:
//!   the SHA-1 (lower-case hex) of the bill before compression, and
//!   `<base>/v3/billdownload/file?token=…` (`&tartype=gzip` with GZIP),
//!   `<base>` being `http://` and the request's `Host`. Errors: 400
//!   `NO_STATEMENT_EXIST` (no rows), `STATEMENT_CREATING` (fault),
//!   `PARAM_ERROR` (a missing or bad `bill_date`, `bill_type`,
//!   `account_type`, `tar_type`; `detail.field` names it).
//! * v3 `GET /v3/billdownload/file?token=…`, signed by the merchant like
//!   every v3 request: the file bytes (gzip when asked for) with **no**
//!   `Wechatpay-*` headers. A token lives 5 minutes (scaled by
//!   [`SimConfig::time_scale`], never under 10 real seconds) and may be
//!   used any number of times meanwhile; unknown or expired it is 400
//!   `INVALID_REQUEST` (signed; WeChat's own code for this is not
//!   documented). Tokens are not kept in the state file.
//! * Faults ([`Faults`]): `bill_not_ready`, `bill_unknown_rows` (payments
//!   the merchant never made, on every date asked for),
//!   `bill_amount_changes` (a payment's row shows another settlement
//!   amount), `bill_bad_hash` (the next N v3 applies give a wrong
//!   `hash_value`). `delay_ms`, `system_error_rate` and
//!   `frequency_limited_rate` apply to the bill calls as to every call, the
//!   download included; the answer-signature faults to the signed answers
//!   only.
//!
//! ## Control API (JSON)
//!
//! * `POST /sim/login {"openid": "...", "unionid"?: "..."}` → `{"code"}`
//! * `POST /sim/pay {"out_trade_no" | "prepay_id", "result"?: "SUCCESS" | "PAYERROR"}`
//!   → the order as [`SimOrder`]; a successful payment sends the signed
//!   payment notify on WeChat's retry schedule.
//! * `POST /sim/refund {"out_trade_no", "refund_fee", "out_refund_no"?, "notify_url"?}`
//!   ([`OutsideRefund`]) → the refund as [`SimRefund`]: a refund made on
//!   the merchant platform, outside the app. `404` for an unknown order;
//!   `409` with `err_code` / `err_code_des` when WeChat's refund rules
//!   refuse it (as [`SimError::RefundRefused`]).
//! * `POST /sim/faults` [`Faults`] (400 for a rate outside `0.0..=1.0` or
//!   more than 10 000 `bill_unknown_rows`), `GET /sim/faults`
//! * `POST /sim/rotate-certificate` → [`CertificateRotation`]: a new
//!   platform certificate signs from now on.
//! * `GET /sim/orders/{out_trade_no}` → [`SimOrder`], refunds included
//! * `GET /sim/notifies` → a JSON array of [`NotifyAttempt`]
//! * `GET /sim/cashier/{prepay_id}`: an HTML pay sheet with Pay and Cancel
//!   buttons for clicking through a demo in a browser.
//!
//! ## Restarts
//!
//! With [`SimConfig::state_file`] (`--state FILE`) orders and refunds
//! survive a restart: the file is loaded at start, rewritten atomically
//! when they change (checked every 200 ms) and at shutdown, and an
//! unreadable or corrupt one fails the start with [`SimError::StateFile`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::env::temp_dir().join(format!("wxpay-sim-doc-{}.json", std::process::id()));
//! let config = wxpay_sim::SimConfig::test().with_state_file(&file);
//! let sim = wxpay_sim::Simulator::start(config.clone()).await?;
//! assert!(sim.order("20261123A0001").await.is_none());
//! sim.shutdown().await;
//! let again = wxpay_sim::Simulator::start(config).await?; // same orders as before
//! # again.shutdown().await;
//! # std::fs::remove_file(&file)?;
//! # Ok(()) }
//! ```
//!
//! Refunds are accepted (`PROCESSING`) and become final after
//! [`SimConfig::refund_delay`] (one scaled minute unless set; zero: at once),
//! ending as [`Faults::refund_result`] says (`SUCCESS` unless set); then the
//! encrypted refund notify goes to the refund's `notify_url` or
//! [`SimConfig::refund_notify_url`].
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod api;
mod api_v3;
mod bill;
mod control;
mod keys;
mod model;
mod notify;
mod persist;
mod state;
mod wire;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use wxpay_core::TradeState;

pub use keys::KeyError;
pub use model::{
    BillAmountChange, BillKind, Faults, NotifyAttempt, NotifyKind, OutsideRefund, PayResult,
    Protocol, RefundResult, RefundSource, Secret, SimConfig, SimOrder, SimRefund, V3Config,
    VerifyMode,
};
pub use notify::RETRY_SCHEDULE;
pub use persist::StateFileError;

use state::{OrderRef, Sim};

/// Why a simulator action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listener could not be bound.
    #[error("cannot listen")]
    Bind(#[source] io::Error),
    /// The v3 key material could not be loaded, generated or written.
    #[error("v3 keys")]
    Keys(#[source] KeyError),
    /// The state file ([`SimConfig::state_file`]) cannot be read, is
    /// corrupt, or cannot be written.
    #[error("state file {}", path.display())]
    StateFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        #[source]
        source: StateFileError,
    },
    /// `time_scale` is not a positive finite number.
    #[error("time_scale must be positive and finite, got {0}")]
    TimeScale(f64),
    /// [`SimConfig::fee_rate_bps`] is above 10 000 (100%).
    #[error("fee_rate_bps must be at most 10000, got {0}")]
    FeeRate(u32),
    /// A bill date that is not a `yyyy-MM-dd` calendar date.
    #[error("bill date {0:?} is not yyyy-MM-dd")]
    BillDate(String),
    /// Nothing to bill on that date (v2 `No Bill Exist`, v3
    /// `NO_STATEMENT_EXIST`).
    #[error("no bill for {0}")]
    NoBill(String),
    /// Bills are not ready ([`Faults::bill_not_ready`]; v2 `Bill Creating`,
    /// v3 `STATEMENT_CREATING`).
    #[error("the bill is being generated")]
    BillNotReady,
    /// No order with this `out_trade_no` / `prepay_id`.
    #[error("no order {0:?}")]
    NoSuchOrder(String),
    /// The order is not waiting for payment.
    #[error("order {out_trade_no:?} is {trade_state}, not payable")]
    NotPayable {
        /// The order.
        out_trade_no: String,
        /// Its state.
        trade_state: TradeState,
    },
    /// The prepay session is older than 2 (scaled) hours, or was replaced.
    #[error("prepay_id {0:?} has expired")]
    PrepayExpired(String),
    /// The order's `time_expire` has passed.
    #[error("order {0:?} is past its time_expire")]
    OrderExpired(String),
    /// WeChat refused the refund, as `/secapi/pay/refund` would answer
    /// with `result_code=FAIL`.
    #[error("refund refused: {err_code} ({err_code_des})")]
    RefundRefused {
        /// `err_code`: `ORDERNOTEXIST` (not paid), `NOTENOUGH` (more than
        /// is left), `INVALID_REQUEST` (more than the order, or the
        /// `out_refund_no` was used with another amount or for another
        /// order), `PARAM_ERROR` (a malformed field), `ERROR` (50 refunds
        /// already).
        err_code: String,
        /// `err_code_des`.
        err_code_des: String,
    },
}

/// The v3 merchant material of a running simulator
/// ([`SimHandle::v3_merchant`]): what a merchant server configured against
/// it needs, and the keys to check what it signs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct V3Merchant {
    /// The AppID.
    pub appid: String,
    /// The merchant number.
    pub mchid: String,
    /// The simulator's base URL (the v3 API base).
    pub api_base: String,
    /// The merchant API private key (PEM), when the simulator knows it
    /// (generated or given; not when only the public part was given).
    pub mch_private_key_pem: Option<Secret>,
    /// The merchant API certificate serial.
    pub mch_serial: String,
    /// The merchant API certificate (PEM), when there is one.
    pub mch_cert_pem: Option<String>,
    /// The APIv3 key.
    pub apiv3_key: Secret,
    /// Which key signs answers and notifies.
    pub verify_mode: VerifyMode,
    /// The WeChat Pay public key id (`PUB_KEY_ID_…`).
    pub public_key_id: String,
    /// The WeChat Pay public key (SPKI PEM, `pub_key.pem`).
    pub public_key_pem: String,
    /// The listed platform certificates (PEM), oldest first.
    pub platform_certificates_pem: Vec<String>,
    /// The serial of the platform certificate that signs now.
    pub platform_serial: String,
}

impl V3Merchant {
    /// A request signer for the merchant, when its private key is known.
    pub fn credential(&self) -> Option<wxpay_core::v3::Credential> {
        let pem = self.mch_private_key_pem.as_ref()?;
        keys::credential(&self.mchid, &self.mch_serial, pem.expose())
    }

    /// The APIv3 key, ready to decrypt.
    pub fn api_v3_key(&self) -> wxpay_core::v3::ApiV3Key {
        wxpay_core::v3::ApiV3Key::new(self.apiv3_key.expose()).expect("checked at start")
    }

    /// A verifier holding the public key (public-key mode).
    pub fn public_key_verifier(&self) -> wxpay_core::v3::PublicKeyVerifier {
        wxpay_core::v3::PublicKeyVerifier::new(
            &self.public_key_id,
            wxpay_core::v3::PublicKey::from_pem(&self.public_key_pem).expect("generated SPKI"),
        )
    }

    /// A verifier holding the listed platform certificates.
    pub fn certificate_verifier(&self) -> wxpay_core::v3::CertificateVerifier {
        keys::certificate_verifier(&self.platform_certificates_pem)
    }

    /// Both (the migration window).
    pub fn combined_verifier(&self) -> wxpay_core::v3::CombinedVerifier {
        keys::combined(
            &self.public_key_id,
            &self.public_key_pem,
            &self.platform_certificates_pem,
        )
    }
}

/// What [`SimHandle::rotate_certificate`] did (the JSON answer of
/// `POST /sim/rotate-certificate`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateRotation {
    /// The certificate that signed until now; still listed for
    /// [`V3Config::rotation_grace`].
    pub previous_serial_no: String,
    /// The new certificate, which signs from now on.
    pub serial_no: String,
}

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Starts a simulator on `127.0.0.1:0` (an OS-assigned port).
    ///
    /// # Errors
    /// [`SimError::Bind`] when no port can be bound,
    /// [`SimError::TimeScale`] for a bad `time_scale`,
    /// [`SimError::FeeRate`] for a fee rate above 100%.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator on `addr`.
    ///
    /// # Errors
    /// As [`Simulator::start`].
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(SimError::TimeScale(config.time_scale));
        }
        if config.fee_rate_bps > 10_000 {
            return Err(SimError::FeeRate(config.fee_rate_bps));
        }
        let sim = Arc::new(Sim::new(config)?);
        // Written at once: an unwritable path fails the start, not later.
        sim.save()?;
        let listener = TcpListener::bind(addr).await.map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let _ = sim.base_url.set(format!("http://{addr}"));
        if let Some(dir) = &sim.config.v3.keys_dir {
            sim.v3
                .write_dir(dir, &sim.config, &format!("http://{addr}"))
                .map_err(SimError::Keys)?;
        }
        sim.resume();
        let app = control::router(Arc::clone(&sim));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        tracing::info!(%addr, "wxpay-sim listening");
        Ok(SimHandle {
            addr,
            sim,
            shutdown: Some(tx),
            server: Some(server),
        })
    }
}

/// A running simulator. Dropping it stops the server and every pending
/// notify; [`SimHandle::shutdown`] does the same and waits for the server.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base of both the pay API and the open
    /// API (their paths do not overlap).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.sim.config
    }

    /// A [`wxpay_core::Client`] for [`merchant_config`](SimHandle::merchant_config)
    /// (with `config`'s changes, e.g. notify URLs) that can send refunds:
    /// it carries a throwaway test client certificate (`data/` in this
    /// crate), which the simulator does not check. Hand it to
    /// `PaymentsBuilder::client`.
    ///
    /// # Errors
    /// [`wxpay_core::Error`] when the HTTP client cannot be built.
    pub fn client(
        &self,
        config: wxpay_core::Config,
    ) -> Result<wxpay_core::Client, wxpay_core::Error> {
        let identity = wxpay_core::ClientIdentity::from_pem(
            include_bytes!("../data/test_client_cert.pem"),
            include_bytes!("../data/test_client_key.pem"),
        );
        wxpay_core::Client::with_identity(config, &identity)
    }

    /// A merchant [`wxpay_core::Config`] that talks to this simulator: its
    /// AppID, mch_id, API key and AppSecret, with the pay-API and open-API
    /// bases both pointing here. Add your server's notify URL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test()).await?;
    /// let config = sim.merchant_config().with_notify_url("http://127.0.0.1:8080/pay/notify");
    /// assert_eq!(config.api_base, sim.base_url());
    /// assert_eq!(config.open_api_base, sim.base_url());
    /// # Ok(()) }
    /// ```
    pub fn merchant_config(&self) -> wxpay_core::Config {
        let c = self.config();
        wxpay_core::Config::new(c.appid.clone(), c.mch_id.clone(), c.api_key.clone())
            .with_app_secret(c.app_secret.clone())
            .with_api_base(self.base_url())
            .with_open_api_base(self.base_url())
    }

    /// The v3 merchant material: mchid, appid, merchant private key and
    /// serial, APIv3 key, public key id and PEM, the listed platform
    /// certificates.
    pub fn v3_merchant(&self) -> V3Merchant {
        self.sim.v3.material(&self.sim.config, self.base_url())
    }

    /// Issues a new platform certificate (new RSA-2048 key, new serial),
    /// which signs answers and notifies from now on; the previous one stays
    /// listed in `GET /v3/certificates`, its `expire_time` shortened to
    /// [`V3Config::rotation_grace`] from now (`POST /sim/rotate-certificate`).
    ///
    /// # Errors
    /// [`SimError::Keys`] if key or certificate generation fails.
    pub async fn rotate_certificate(&self) -> Result<CertificateRotation, SimError> {
        self.sim.rotate_certificate().await
    }

    /// Mints a single-use `wx.login` code for `openid`
    /// (`POST /sim/login`).
    pub async fn login(&self, openid: &str) -> String {
        self.sim.login(openid, None)
    }

    /// [`SimHandle::login`] for a user with a `unionid`.
    pub async fn login_with_unionid(&self, openid: &str, unionid: &str) -> String {
        self.sim.login(openid, Some(unionid.to_owned()))
    }

    /// The user pays the order successfully; the payment notify is sent
    /// (`POST /sim/pay`).
    ///
    /// # Errors
    /// [`SimError::NoSuchOrder`], [`SimError::NotPayable`],
    /// [`SimError::PrepayExpired`], [`SimError::OrderExpired`].
    pub async fn pay(&self, out_trade_no: &str) -> Result<SimOrder, SimError> {
        self.pay_with(out_trade_no, PayResult::Success).await
    }

    /// The user pays with the given outcome.
    ///
    /// # Errors
    /// As [`SimHandle::pay`].
    pub async fn pay_with(
        &self,
        out_trade_no: &str,
        result: PayResult,
    ) -> Result<SimOrder, SimError> {
        self.sim
            .pay(OrderRef::OutTradeNo(out_trade_no.to_owned()), result, None)
    }

    /// The user pays through the prepay session (what the pay sheet does).
    ///
    /// # Errors
    /// As [`SimHandle::pay`]; a replaced or old session is
    /// [`SimError::PrepayExpired`].
    pub async fn pay_prepay(
        &self,
        prepay_id: &str,
        result: PayResult,
    ) -> Result<SimOrder, SimError> {
        self.sim
            .pay(OrderRef::PrepayId(prepay_id.to_owned()), result, None)
    }

    /// A refund made on the merchant platform, outside the app
    /// (`POST /sim/refund`). It is `PROCESSING` (or already final with a
    /// zero [`SimConfig::refund_delay`]), shows in refundquery and
    /// [`SimHandle::order`], and sends its refund notify once final, like a
    /// refund asked for through the API. The same `out_refund_no` with the
    /// same amount again is the same refund, notified once.
    ///
    /// # Errors
    /// [`SimError::NoSuchOrder`], or [`SimError::RefundRefused`] with the
    /// `err_code` WeChat would answer.
    pub async fn refund_outside(&self, refund: OutsideRefund) -> Result<SimRefund, SimError> {
        self.sim.refund_outside(refund)
    }

    /// Replaces the fault settings (`POST /sim/faults`).
    pub async fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults);
    }

    /// The current fault settings.
    pub async fn faults(&self) -> Faults {
        self.sim.faults()
    }

    /// The order's state (`GET /sim/orders/{out_trade_no}`).
    pub async fn order(&self, out_trade_no: &str) -> Option<SimOrder> {
        self.sim.order(out_trade_no)
    }

    /// The bill of `date` (`yyyy-MM-dd`, Beijing) as the bill endpoints
    /// serve it before compression, faults applied
    /// ([`Faults::bill_unknown_rows`], [`Faults::bill_amount_changes`],
    /// [`Faults::bill_not_ready`]; [`Faults::bill_bad_hash`] concerns only
    /// the v3 answer and is left alone): the same bytes as v2
    /// `downloadbill` and the v3 download, whose SHA-1 is the v3
    /// `hash_value`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxpay_sim::{BillKind, Faults, SimError};
    ///
    /// let sim = wxpay_sim::Simulator::start(wxpay_sim::SimConfig::test()).await?;
    /// let none = sim.bill("2026-01-01", BillKind::All).await;
    /// assert!(matches!(none, Err(SimError::NoBill(_))));
    /// sim.set_faults(Faults { bill_unknown_rows: 1, ..Faults::default() }).await;
    /// let bill = sim.bill("2026-01-01", BillKind::All).await?;
    /// assert!(bill.contains("`SIMUNKNOWN202601010001,"));
    /// assert!(bill.ends_with("`1,`1.00,`0.00,`0.00,`0.01000,`1.00,`0.00\r\n"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`SimError::BillDate`] when `date` is not `yyyy-MM-dd`,
    /// [`SimError::BillNotReady`] under that fault, [`SimError::NoBill`]
    /// when the bill would have no rows.
    pub async fn bill(&self, date: &str, kind: BillKind) -> Result<String, SimError> {
        let day = bill::parse_date_v3(date).ok_or_else(|| SimError::BillDate(date.to_owned()))?;
        bill::build(&self.sim, day, kind).map_err(|e| match e {
            bill::BillFailure::NotReady => SimError::BillNotReady,
            bill::BillFailure::NoBill => SimError::NoBill(date.to_owned()),
        })
    }

    /// Every notify attempt so far, oldest first (`GET /sim/notifies`).
    pub async fn notifies(&self) -> Vec<NotifyAttempt> {
        self.sim.notifies()
    }

    /// Polls [`SimHandle::notifies`] until `pred` holds for the log or
    /// `timeout` passes; returns the last log seen and whether it held.
    pub async fn wait_for_notifies(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&[NotifyAttempt]) -> bool,
    ) -> (Vec<NotifyAttempt>, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let log = self.sim.notifies();
            if pred(&log) {
                return (log, true);
            }
            if tokio::time::Instant::now() >= deadline {
                return (log, false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the server and every pending notify, waits (briefly) for the
    /// server to finish, and saves the state file, if any.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // What the last requests changed.
        self.sim.save_logged();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.sim.abort_tasks();
        self.sim.save_logged();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
