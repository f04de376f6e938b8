//! Public value types: configuration, fault settings, order snapshots and
//! the notify delivery log.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use wxpay_core::{ApiKey, AppSecret, Fen, RefundStatus, SignType, TradeState};

/// The merchant the simulator plays WeChat for, and its clock.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The mini-program AppID bound to `mch_id`.
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The API v2 key: checks request signatures, signs replies and notifies,
    /// and (through its MD5) encrypts refund notifies.
    pub api_key: ApiKey,
    /// The mini-program AppSecret `jscode2session` checks.
    pub app_secret: AppSecret,
    /// Multiplies every time rule: notify retry delays, the 5-minute
    /// closeorder rule, the 2-hour prepay expiry, the refund processing
    /// ([`SimConfig::refund_delay`]) and the 5-minute login-code lifetime
    /// (which never drops below 10 real seconds, so fast tests do not race
    /// it). `0.001` turns a 15 s retry into 15 ms.
    pub time_scale: f64,
    /// Where refund notifies go when the refund request has no `notify_url`
    /// (the URL "configured in the merchant platform").
    pub refund_notify_url: Option<String>,
    /// How long an accepted refund stays `PROCESSING` before it reaches its
    /// final status ([`Faults::refund_result`]) and its refund notify is
    /// sent. A WeChat-side duration, scaled by [`SimConfig::time_scale`]
    /// like every time rule; default one minute. [`Duration::ZERO`] makes
    /// refunds final as soon as they are accepted, before the refund
    /// answer is sent.
    pub refund_delay: Duration,
    /// API v3: keys, APIv3 key and which key signs answers and notifies.
    pub v3: V3Config,
    /// Whether the payment notify of an HMAC-SHA256 order carries
    /// `sign_type=HMAC-SHA256` (signed with the rest). WeChat sends both
    /// shapes (spec 2.4, 11.2); the default, `false`, leaves it out: that
    /// is the shape logged from real HMAC notifies (WxJava #1585), and the
    /// one a merchant must handle by falling back to the order's algorithm,
    /// so code tested against the default survives both. Turn it on for
    /// SDKs that refuse a notify without `sign_type`. MD5 orders'
    /// notifies always carry `sign_type=MD5`. The signature always covers
    /// exactly the fields sent.
    pub hmac_notify_sign_type: bool,
    /// Whether Int-typed fields (`total_fee`, `cash_fee`, `refund_fee`, …)
    /// of answers and payment notifies are wrapped in CDATA. The default,
    /// `false`, writes them bare as WeChat's answers do (spec 1.2); `true`
    /// wraps them like WeChat does inside the refund notify's `req_info`
    /// (spec 12.4), to check a parser takes both. String-typed values are in
    /// CDATA either way, digits or not (`time_end`, `transaction_id`,
    /// `out_trade_no`, `mch_id`), and `req_info` always wraps everything.
    pub cdata_ints: bool,
    /// Where orders and refunds are kept across restarts: loaded at start
    /// (a missing file is an empty store; an unreadable or corrupt one is
    /// [`crate::SimError::StateFile`]), saved whenever they changed (checked
    /// every 200 ms) and at shutdown, atomically (a temporary file renamed
    /// over it). Login codes, faults and the notify log are not kept;
    /// refunds still `PROCESSING` start their refund delay afresh; payment
    /// notifies not yet delivered are not resent (orderquery finds the
    /// payment). v3 keys are not part of it: give them (or `--keys-dir` with
    /// a seed) so a restarted simulator signs with the same ones.
    pub state_file: Option<PathBuf>,
    /// The fee rate WeChat charges, in basis points (hundredths of a
    /// percent; at most 10 000): the `手续费` and `费率` columns of the bills
    /// ([`crate::SimHandle::bill`]). Default 60, i.e. `0.60%`. A payment's
    /// fee is its amount times the rate, rounded half up to the fen; a
    /// refund gives back its share of its payment's fee.
    pub fee_rate_bps: u32,
}

impl SimConfig {
    /// Fixed test credentials (AppID `wx5f6d3e2c1b0a9f8e`, mch_id
    /// `1900000109`) at real speed. Same as [`Default`].
    pub fn test() -> Self {
        Self {
            appid: "wx5f6d3e2c1b0a9f8e".into(),
            mch_id: "1900000109".into(),
            api_key: ApiKey::new("5imu1at0rApiKey0000000000000000k"),
            app_secret: AppSecret::new("5imu1at0rAppSecret00000000000000"),
            time_scale: 1.0,
            refund_notify_url: None,
            refund_delay: Duration::from_secs(60),
            v3: V3Config::test(),
            hmac_notify_sign_type: false,
            cdata_ints: false,
            state_file: None,
            fee_rate_bps: 60,
        }
    }

    /// Sets [`SimConfig::hmac_notify_sign_type`].
    pub fn with_hmac_notify_sign_type(mut self, include: bool) -> Self {
        self.hmac_notify_sign_type = include;
        self
    }

    /// Sets [`SimConfig::cdata_ints`].
    pub fn with_cdata_ints(mut self, cdata: bool) -> Self {
        self.cdata_ints = cdata;
        self
    }

    /// Sets [`SimConfig::state_file`].
    ///
    /// ```
    /// let c = wxpay_sim::SimConfig::test().with_state_file("sim-state.json");
    /// assert_eq!(c.state_file.unwrap().to_str(), Some("sim-state.json"));
    /// ```
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Sets [`SimConfig::fee_rate_bps`].
    ///
    /// ```
    /// let c = wxpay_sim::SimConfig::test().with_fee_rate_bps(38);
    /// assert_eq!(c.fee_rate_bps, 38); // 0.38%
    /// ```
    pub fn with_fee_rate_bps(mut self, bps: u32) -> Self {
        self.fee_rate_bps = bps;
        self
    }

    pub(crate) fn ints(&self) -> crate::wire::Ints {
        if self.cdata_ints {
            crate::wire::Ints::Cdata
        } else {
            crate::wire::Ints::Bare
        }
    }

    /// Sets [`V3Config::verify_mode`].
    pub fn with_verify_mode(mut self, mode: VerifyMode) -> Self {
        self.v3.verify_mode = mode;
        self
    }

    /// Generates every v3 key at start instead of using the fixed test keys
    /// ([`V3Config::generated`], keeping the APIv3 key and mode).
    pub fn with_generated_v3_keys(mut self) -> Self {
        self.v3 = V3Config {
            apiv3_key: self.v3.apiv3_key.clone(),
            verify_mode: self.v3.verify_mode,
            ..V3Config::generated()
        };
        self
    }

    /// Sets [`V3Config::keys_dir`].
    pub fn with_keys_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.v3.keys_dir = Some(dir.into());
        self
    }

    /// Sets [`V3Config::seed`].
    pub fn with_v3_seed(mut self, seed: u64) -> Self {
        self.v3.seed = Some(seed);
        self
    }

    /// Sets [`SimConfig::time_scale`].
    ///
    /// ```
    /// let c = wxpay_sim::SimConfig::test().with_time_scale(0.001);
    /// assert_eq!(c.time_scale, 0.001);
    /// ```
    pub fn with_time_scale(mut self, time_scale: f64) -> Self {
        self.time_scale = time_scale;
        self
    }

    /// Sets [`SimConfig::refund_notify_url`].
    pub fn with_refund_notify_url(mut self, url: impl Into<String>) -> Self {
        self.refund_notify_url = Some(url.into());
        self
    }

    /// Sets [`SimConfig::refund_delay`].
    ///
    /// ```
    /// use std::{fmt, path::PathBuf, time::Duration};
    /// let c = wxpay_sim::SimConfig::test()
    ///     .with_time_scale(0.001)
    ///     .with_refund_delay(Duration::from_secs(10));
    /// assert_eq!(c.scaled(c.refund_delay), Duration::from_millis(10));
    /// ```
    pub fn with_refund_delay(mut self, delay: Duration) -> Self {
        self.refund_delay = delay;
        self
    }

    /// A real-world duration scaled by [`SimConfig::time_scale`].
    pub fn scaled(&self, real: Duration) -> Duration {
        real.mul_f64(self.time_scale)
    }
}

/// A secret string (private key PEM, APIv3 key): `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which WeChat Pay key signs v3 answers and notifies (spec 3.4, 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Platform-certificate mode: the current platform certificate signs;
    /// `GET /v3/certificates` lists the certificates.
    #[default]
    Cert,
    /// Public-key mode: the WeChat Pay public key (`PUB_KEY_ID_…`) signs;
    /// `GET /v3/certificates` answers 404 `NOT_FOUND`.
    PubKey,
    /// The migration window: an answer is signed with the public key when
    /// the request's `Wechatpay-Serial` header is a `PUB_KEY_ID_…`, with the
    /// certificate otherwise; each notify attempt with one or the other at
    /// random (even odds, seedable with [`V3Config::seed`]).
    Migration,
}

impl std::str::FromStr for VerifyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cert" => Ok(VerifyMode::Cert),
            "pubkey" => Ok(VerifyMode::PubKey),
            "migration" => Ok(VerifyMode::Migration),
            other => Err(format!(
                "unknown verify mode {other:?} (cert, pubkey, migration)"
            )),
        }
    }
}

/// The API v3 side of the simulated merchant and of WeChat. Every key left
/// `None` is generated at start (RSA-2048; certificates self-signed, serials
/// of 40 hex digits).
#[derive(Debug, Clone)]
pub struct V3Config {
    /// The APIv3 key (32 characters): encrypts notify resources and the
    /// certificates of `GET /v3/certificates`.
    pub apiv3_key: Secret,
    /// Which key signs answers and notifies.
    pub verify_mode: VerifyMode,
    /// The merchant API private key (PEM, PKCS#8 or PKCS#1), when the
    /// simulator should know it (it then hands it out in
    /// [`crate::SimHandle::v3_merchant`] and the keys directory). Without
    /// it and without [`V3Config::mch_public_key_pem`], a merchant key pair
    /// is generated.
    pub mch_private_key_pem: Option<Secret>,
    /// What verifies the merchant's requests: its public key (SPKI PEM) or
    /// its API certificate (PEM, whose serial is then the default of
    /// [`V3Config::mch_serial`]).
    pub mch_public_key_pem: Option<String>,
    /// The merchant API certificate serial expected in `Authorization`.
    pub mch_serial: Option<String>,
    /// The platform certificate's private key (PEM).
    pub platform_key_pem: Option<Secret>,
    /// The platform certificate (PEM) for [`V3Config::platform_key_pem`];
    /// generated for it when absent.
    pub platform_cert_pem: Option<String>,
    /// The serial of a generated platform certificate (hex).
    pub platform_serial: Option<String>,
    /// The private part of the WeChat Pay public key (PEM), so that the
    /// simulator can sign with it.
    pub public_key_private_pem: Option<Secret>,
    /// Its id, `PUB_KEY_ID_…`.
    pub public_key_id: Option<String>,
    /// Where to write the key material at start: `wxpay.env` (the
    /// `WXPAY_*` lines of a v3 merchant for this simulator, plus the v2
    /// ones), `apiclient_key.pem`, `apiclient_cert.pem`, `pub_key.pem`, and
    /// the simulator's own `platform_key.pem`, `platform_cert.pem`,
    /// `pub_key_private.pem`.
    pub keys_dir: Option<PathBuf>,
    /// Seeds the migration-mode choice of notify signer (random otherwise).
    pub seed: Option<u64>,
    /// How long a replaced platform certificate stays listed after
    /// [`crate::SimHandle::rotate_certificate`] (its `expire_time` is
    /// shortened to then). A WeChat-side duration, scaled by
    /// [`SimConfig::time_scale`]; default 24 hours.
    pub rotation_grace: Duration,
}

impl V3Config {
    /// The fixed keys of the spec's test vectors (`data/v3_*.pem` in this
    /// crate): merchant serial `3D2C1B0A99887766554433221100FFEEDDCCBBAA`,
    /// platform serial `5A1B2C3D4E5F60718293A4B5C6D7E8F901234567`, public key
    /// `PUB_KEY_ID_0114232134912410000000000000000001`, APIv3 key
    /// `wxpayV3VectorKey0123456789ABCDEF`; certificate mode. Starts instantly.
    pub fn test() -> Self {
        Self {
            apiv3_key: Secret::new("wxpayV3VectorKey0123456789ABCDEF"),
            verify_mode: VerifyMode::Cert,
            mch_private_key_pem: Some(Secret::new(include_str!("../data/v3_merchant_key.pem"))),
            mch_public_key_pem: Some(include_str!("../data/v3_merchant_cert.pem").to_owned()),
            mch_serial: Some("3D2C1B0A99887766554433221100FFEEDDCCBBAA".to_owned()),
            platform_key_pem: Some(Secret::new(include_str!("../data/v3_platform_key.pem"))),
            platform_cert_pem: Some(include_str!("../data/v3_platform_cert.pem").to_owned()),
            platform_serial: None,
            public_key_private_pem: Some(Secret::new(include_str!(
                "../data/v3_pub_key_private.pem"
            ))),
            public_key_id: Some("PUB_KEY_ID_0114232134912410000000000000000001".to_owned()),
            keys_dir: None,
            seed: None,
            rotation_grace: Duration::from_secs(24 * 3600),
        }
    }

    /// Nothing given: every key generated at start, a random APIv3 key,
    /// certificate mode.
    pub fn generated() -> Self {
        Self {
            apiv3_key: Secret::new(crate::state::random_alnum(32)),
            verify_mode: VerifyMode::Cert,
            mch_private_key_pem: None,
            mch_public_key_pem: None,
            mch_serial: None,
            platform_key_pem: None,
            platform_cert_pem: None,
            platform_serial: None,
            public_key_private_pem: None,
            public_key_id: None,
            keys_dir: None,
            seed: None,
            rotation_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// Which API created an order (or asked for a refund); its notifies follow
/// it: XML for v2, signed encrypted JSON for v3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// API v2 (XML).
    #[default]
    V2,
    /// API v3 (JSON).
    V3,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::test()
    }
}

/// Fault injection, set with [`crate::SimHandle::set_faults`] or
/// `POST /sim/faults`. Missing JSON fields take their default (no fault).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Record payment-notify attempts but never send them (as if the
    /// merchant were unreachable). The retry schedule keeps running, so
    /// turning this off lets a later attempt through. Refund notifies have
    /// their own switch, [`Faults::drop_refund_notifies`].
    pub drop_notifies: bool,
    /// [`Faults::drop_notifies`] for refund notifies.
    pub drop_refund_notifies: bool,
    /// Send each notify attempt this many extra times, concurrently.
    pub duplicate_notifies: u32,
    /// Probability (0.0–1.0) that a pay-API call answers
    /// `result_code=FAIL`, `err_code=SYSTEMERROR` without changing state
    /// (`jscode2session` answers `errcode -1`, v3 calls 500 `SYSTEM_ERROR`).
    pub system_error_rate: f64,
    /// Delay before answering every pay-API and `jscode2session` call.
    pub delay_ms: u64,
    /// Probability (0.0–1.0) that a signed pay-API answer (every `/pay/*`
    /// and `/secapi/pay/refund` answer with `return_code=SUCCESS`, and every
    /// signed `/v3/...` answer) is signed with a wrong key, as if it were
    /// corrupted in transit. The call itself
    /// still takes effect: an order is created, a refund accepted.
    pub bad_answer_signature_rate: f64,
    /// How the refunds accepted from now on end, once
    /// [`SimConfig::refund_delay`] has passed. Refunds already accepted keep
    /// the outcome they were accepted with.
    pub refund_result: RefundResult,
    /// Probability (0.0–1.0) that a v3 call answers 429
    /// `FREQUENCY_LIMITED` without changing state.
    pub frequency_limited_rate: f64,
    /// Probability (0.0–1.0) that a v3 notify attempt carries a wrong
    /// signature (a valid signature of another message).
    pub bad_notify_signature_rate: f64,
    /// Probability (0.0–1.0) that a v3 answer or notify attempt carries a
    /// `WECHATPAY/SIGNTEST/` probe signature (spec 3.5).
    pub signature_probe_rate: f64,
    /// Reseeds the generator behind every `*_rate` when these faults are
    /// set: the same requests in the same order then meet the same faults
    /// on every run (a test that sets a rate stays deterministic). `None`:
    /// the generator keeps going (seeded from entropy at start).
    pub seed: Option<u64>,
    /// Bills are not generated yet: v2 `downloadbill` answers
    /// `return_msg=Bill Creating`, the v3 bill applies 400
    /// `STATEMENT_CREATING`, [`crate::SimHandle::bill`]
    /// [`crate::SimError::BillNotReady`].
    pub bill_not_ready: bool,
    /// Adds this many paid orders the merchant never created (at most
    /// 10 000) to the bill of every date asked for: `SUCCESS` rows numbered
    /// `SIMUNKNOWN<yyyyMMdd><nnnn>` (from `0001`), `transaction_id`
    /// `4200<yyyyMMdd>9<n, 15 digits>`, paid `n` seconds after midnight,
    /// for `n` yuan (row `n`, from 1.00), openid
    /// `oSIMUNKNOWNPAYER000000000000`, goods `未知订单`, fee at the configured
    /// rate; counted in the totals, and in the fund-flow bill as income and
    /// fee rows. A date without orders then has a bill too.
    pub bill_unknown_rows: u32,
    /// Payments whose bill rows show another settlement amount than the one
    /// paid (`应结订单金额` of the trade bill and the income row of the
    /// fund-flow bill; the fee and `订单金额` stay those of the real
    /// amount); the totals follow the rows.
    pub bill_amount_changes: Vec<BillAmountChange>,
    /// The next this-many v3 bill applies (`/v3/bill/tradebill`,
    /// `/v3/bill/fundflowbill`) that answer a `download_url` give a wrong
    /// `hash_value` (the SHA-1 of the file with one byte appended); each
    /// such answer counts one down, as `GET /sim/faults` shows. The file
    /// itself is right: a client discards it and applies again.
    pub bill_bad_hash: u32,
}

/// One entry of [`Faults::bill_amount_changes`]: the bill row of the
/// payment `out_trade_no` shows `settlement_fee` instead of the amount paid.
///
/// ```
/// use wxpay_core::Fen;
/// use wxpay_sim::BillAmountChange;
///
/// let c = BillAmountChange::new("order-1", Fen(2991));
/// let json = r#"{"out_trade_no": "order-1", "settlement_fee": 2991}"#;
/// assert_eq!(serde_json::from_str::<BillAmountChange>(json).unwrap(), c);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillAmountChange {
    /// The paid order whose row changes.
    pub out_trade_no: String,
    /// The settlement amount the bill shows, in fen.
    pub settlement_fee: Fen,
}

impl BillAmountChange {
    /// The row of `out_trade_no` shows `settlement_fee`.
    pub fn new(out_trade_no: impl Into<String>, settlement_fee: Fen) -> Self {
        Self {
            out_trade_no: out_trade_no.into(),
            settlement_fee,
        }
    }
}

/// Which bill [`crate::SimHandle::bill`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BillKind {
    /// The trade bill, `bill_type=ALL`: payments and refunds.
    All,
    /// The trade bill, `bill_type=SUCCESS`: payments only.
    Success,
    /// The trade bill, `bill_type=REFUND`: refunds only.
    Refund,
    /// The fund-flow bill of the basic account (`account_type=BASIC`).
    FundFlow,
}

/// The final status of a refund (`Faults::refund_result`, JSON
/// `"SUCCESS"`, `"CHANGE"` or `"REFUNDCLOSE"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RefundResult {
    /// The money reaches the user: `SUCCESS`, with a `success_time`.
    #[default]
    #[serde(rename = "SUCCESS")]
    Success,
    /// Refund abnormal (say the payer's card was cancelled): `CHANGE`, for
    /// the merchant to settle by hand. The amount stays used up.
    #[serde(rename = "CHANGE")]
    Change,
    /// The refund is closed without money moving: `REFUNDCLOSE`. Its amount
    /// can be refunded again, under another `out_refund_no`.
    #[serde(rename = "REFUNDCLOSE")]
    RefundClose,
}

impl RefundResult {
    /// The `refund_status` it ends in.
    pub fn status(self) -> RefundStatus {
        match self {
            RefundResult::Success => RefundStatus::Success,
            RefundResult::Change => RefundStatus::Change,
            RefundResult::RefundClose => RefundStatus::RefundClose,
        }
    }
}

/// Which notify an attempt carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// The payment-result notify (v2: signed XML; v3: `TRANSACTION.SUCCESS`).
    Payment,
    /// The refund-result notify (v2: encrypted `req_info`; v3: `REFUND.*`).
    Refund,
}

/// One delivery attempt of a notify (an entry of `GET /sim/notifies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyAttempt {
    /// The order the notify is about.
    pub out_trade_no: String,
    /// The refund, for refund notifies.
    pub out_refund_no: Option<String>,
    /// Payment or refund.
    pub kind: NotifyKind,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// Whether this was an extra copy sent by `duplicate_notifies`.
    pub duplicate: bool,
    /// Where it was sent.
    pub url: String,
    /// The body that was (or would have been) sent: v2 XML or the v3 JSON
    /// envelope.
    pub body: String,
    /// The notify's format.
    pub protocol: Protocol,
    /// v3: the `Wechatpay-Serial` this attempt was signed with.
    pub serial: Option<String>,
    /// The HTTP status of the reply, if one came.
    pub status: Option<u16>,
    /// The reply body, if one came.
    pub reply: Option<String>,
    /// Why no usable reply came (connection error, timeout, dropped).
    pub error: Option<String>,
    /// Whether the reply ended the retries: the SUCCESS XML (v2), HTTP 200
    /// or 204 (v3).
    pub delivered: bool,
}

/// A snapshot of a refund (part of [`SimOrder`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRefund {
    /// The merchant refund number.
    pub out_refund_no: String,
    /// WeChat's refund number.
    pub refund_id: String,
    /// The amount refunded.
    pub refund_fee: Fen,
    /// `PROCESSING`, then its final status: `SUCCESS`, `CHANGE` or
    /// `REFUNDCLOSE` (see [`Faults::refund_result`]).
    pub refund_status: RefundStatus,
    /// Where the refund notify goes, if anywhere.
    pub notify_url: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss` (Beijing) once the refund succeeded.
    pub success_time: Option<String>,
    /// Who asked for it: the merchant's API call or the merchant platform
    /// ([`crate::SimHandle::refund_outside`]).
    pub refund_request_source: RefundSource,
    /// The notify format: the API that asked for it (a platform refund
    /// follows its order's API).
    pub protocol: Protocol,
}

/// Where a refund was asked for (`refund_request_source` in the refund
/// notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundSource {
    /// `/secapi/pay/refund`.
    #[serde(rename = "API")]
    Api,
    /// The merchant platform, outside the app (`POST /sim/refund`).
    #[serde(rename = "VENDOR_PLATFORM")]
    VendorPlatform,
}

impl RefundSource {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundSource::Api => "API",
            RefundSource::VendorPlatform => "VENDOR_PLATFORM",
        }
    }
}

/// A refund made outside the app, on the merchant platform
/// ([`crate::SimHandle::refund_outside`], and the JSON body of
/// `POST /sim/refund`). WeChat's refund rules apply as for
/// `/secapi/pay/refund`; the order's `total_fee` is known.
///
/// ```
/// use wxpay_core::Fen;
/// use wxpay_sim::OutsideRefund;
///
/// let r = OutsideRefund::new("order-1", Fen(30)).with_out_refund_no("desk-1");
/// let json = r#"{"out_trade_no": "order-1", "refund_fee": 30, "out_refund_no": "desk-1"}"#;
/// assert_eq!(serde_json::from_str::<OutsideRefund>(json).unwrap(), r);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideRefund {
    /// The paid order to refund.
    pub out_trade_no: String,
    /// The amount to refund now: more than zero and at most what is left.
    pub refund_fee: Fen,
    /// The refund number; the same number again is the same refund. When
    /// absent, the new refund's `refund_id` is used.
    #[serde(default)]
    pub out_refund_no: Option<String>,
    /// Where its refund notify goes; when absent,
    /// [`SimConfig::refund_notify_url`].
    #[serde(default)]
    pub notify_url: Option<String>,
}

impl OutsideRefund {
    /// A refund of `refund_fee` from the order, numbered and notified by
    /// default.
    pub fn new(out_trade_no: impl Into<String>, refund_fee: Fen) -> Self {
        Self {
            out_trade_no: out_trade_no.into(),
            refund_fee,
            out_refund_no: None,
            notify_url: None,
        }
    }

    /// Sets [`OutsideRefund::out_refund_no`].
    pub fn with_out_refund_no(mut self, out_refund_no: impl Into<String>) -> Self {
        self.out_refund_no = Some(out_refund_no.into());
        self
    }

    /// Sets [`OutsideRefund::notify_url`].
    pub fn with_notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }
}

/// A snapshot of an order (`GET /sim/orders/{out_trade_no}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrder {
    /// The merchant order number.
    pub out_trade_no: String,
    /// The current prepay session.
    pub prepay_id: String,
    /// `JSAPI`, `NATIVE`, …
    pub trade_type: String,
    /// What orderquery would answer.
    pub trade_state: TradeState,
    /// The order amount.
    pub total_fee: Fen,
    /// The payer (JSAPI: from the order; NATIVE: set when paid).
    pub openid: Option<String>,
    /// NATIVE product id.
    pub product_id: Option<String>,
    /// Merchant data echoed in queries and notifies.
    pub attach: Option<String>,
    /// The goods description (v2 `body`, v3 `description`).
    #[serde(default)]
    pub body: String,
    /// Payment notify URL.
    pub notify_url: String,
    /// The algorithm of the unifiedorder call, used for the notify (v2
    /// orders; `MD5` for v3 ones, which sign with RSA).
    pub sign_type: SignType,
    /// The API that created the order.
    pub protocol: Protocol,
    /// WeChat's order number once paid.
    pub transaction_id: Option<String>,
    /// `yyyyMMddHHmmss` (Beijing) once paid.
    pub time_end: Option<String>,
    /// Refunds, oldest first.
    pub refunds: Vec<SimRefund>,
}

/// What the user does on the pay sheet (`POST /sim/pay`'s `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PayResult {
    /// The payment goes through; the payment notify is sent.
    #[default]
    #[serde(rename = "SUCCESS")]
    Success,
    /// The bank refuses; the order ends in `PAYERROR` and no notify is sent.
    #[serde(rename = "PAYERROR")]
    PayError,
}
