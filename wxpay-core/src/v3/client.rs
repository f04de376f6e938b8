//! The API v3 HTTP client: signs each request over the exact bytes sent,
//! verifies every answer (spec 3.3) before reading it, keeps platform
//! certificates fresh (spec 4.2) and turns answers into typed values or
//! errors by the decision procedure of spec 14.4.

use std::{fmt, sync::Arc};

use crate::{
    BoxTransport, HttpMethod, HttpRequest, HttpResponse, ReqwestTransport, Transport,
    client::USER_AGENT, error::Error,
};

use super::{
    certificates::{PlatformCertificate, decrypt_certificates},
    certstore::CertificateStore,
    config::ClientConfig,
    error::{ApiError, ConfigError, Endpoint, UnverifiedAnswer},
    messages::{
        JsapiPrepayResponse, NativePrepayResponse, PrepayRequest, Refund, RefundRequest,
        Transaction, Verified, VerifiedNotify,
    },
    notify::{NotifyError, NotifyHandler},
    paysign::PayParamsV3,
    validate::{NotifyValidator, ResponseValidator, ValidationError, WechatpayHeaders},
    verify::{CertificateVerifier, PUB_KEY_ID_PREFIX, PublicKeyVerifier, Verifier, VerifyError},
};

/// A clock: Unix seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A nonce source (≤ 32 ASCII alphanumerics).
pub type NonceSource = Arc<dyn Fn() -> String + Send + Sync>;

/// The keys answers and notifies are verified with: the public key for
/// `PUB_KEY_ID_…` serials, the certificate store for the others, and
/// optionally certificates just decrypted from a download (spec 4.1).
pub(super) struct KeyRing<'a> {
    public_key: Option<&'a PublicKeyVerifier>,
    store: &'a CertificateStore,
    downloaded: Option<&'a CertificateVerifier>,
}

impl Verifier for KeyRing<'_> {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        if serial.starts_with(PUB_KEY_ID_PREFIX) {
            return match self.public_key {
                Some(k) => k.verify(serial, message, signature),
                None => Err(VerifyError::UnknownSerial {
                    serial: serial.to_owned(),
                }),
            };
        }
        match (self.store.contains(serial), self.downloaded) {
            (false, Some(d)) => d.verify(serial, message, signature),
            _ => self.store.verify(serial, message, signature),
        }
    }
}

/// A verified 2xx answer.
pub(super) struct Answer {
    body: Vec<u8>,
    request_id: Option<String>,
}

impl Answer {
    pub(super) fn parse<T: serde::de::DeserializeOwned>(
        self,
        endpoint: Endpoint,
    ) -> Result<Verified<T>, Error> {
        match serde_json::from_slice(&self.body) {
            Ok(value) => Ok(Verified {
                value,
                raw: self.body,
                request_id: self.request_id,
            }),
            // Verified but unreadable: the outcome is unknown (spec 14.4).
            Err(e) => Err(Error::transport(
                format!("{endpoint} answered a verified body this version cannot read"),
                Some(Box::new(e)),
            )),
        }
    }
}

/// The WeChat Pay API v3 client for one merchant.
///
/// Every answer is verified (spec 3.3); a refused answer is
/// [`Error::Unverified`] (outcome unknown), an error body
/// [`Error::Api`], a 202 [`Error::Pending`], a transport failure or an
/// unsigned 5xx [`Error::Transport`]. In certificate mode the certificates
/// are downloaded before a call when the last download is older than
/// [`ClientConfig::refresh_interval`], and once (at most every
/// [`ClientConfig::refresh_gap`]) when an answer names an unknown serial.
///
/// ```no_run
/// # async fn demo(config: wxpay_core::v3::ClientConfig) -> Result<(), wxpay_core::Error> {
/// use wxpay_core::{Fen, v3::{Client, PrepayRequest}};
/// let client = Client::new(config)?;
/// let order = PrepayRequest::jsapi("shop-VIP", "WXP20260101120000A1", Fen(2990), "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
/// let prepay = client.jsapi_prepay(&order).await?;
/// let params = client.pay_params(&prepay.prepay_id)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client<T: Transport = ReqwestTransport> {
    config: Arc<ClientConfig>,
    store: Arc<CertificateStore>,
    transport: T,
    clock: Clock,
    nonce: NonceSource,
    refresh_lock: Arc<tokio::sync::Mutex<()>>,
}

impl<T: Transport> fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("v3::Client")
            .field("config", &self.config)
            .field("certificates", &self.store.serials())
            .finish_non_exhaustive()
    }
}

impl Client<ReqwestTransport> {
    /// A client on reqwest (no client certificate: v3 never uses one).
    ///
    /// # Errors
    /// [`Error::V3Config`] for a configuration without verification key;
    /// [`Error::Transport`] when the TLS stack cannot start.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let transport = ReqwestTransport::with_timeouts(config.timeout, config.connect_timeout)?;
        Client::with_transport(config, transport)
    }
}

impl<T: Transport> Client<T> {
    /// A client over any transport.
    ///
    /// # Errors
    /// [`Error::V3Config`] for a configuration without verification key.
    pub fn with_transport(config: ClientConfig, transport: T) -> Result<Self, Error> {
        config.validate()?;
        let store = Arc::new(CertificateStore::with_certificates(
            config.certificates.iter().cloned(),
        ));
        Ok(Client {
            config: Arc::new(config),
            store,
            transport,
            clock: Arc::new(|| chrono::Utc::now().timestamp()),
            nonce: Arc::new(crate::types::nonce_str),
            refresh_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Replaces the clock (Unix seconds) used to sign requests, check
    /// answer freshness and schedule refreshes.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the nonce source of request signatures and `paySign`.
    pub fn with_nonce(mut self, nonce: NonceSource) -> Self {
        self.nonce = nonce;
        self
    }

    /// Shares a certificate store (e.g. with another client of the same
    /// merchant); the pinned certificates of the configuration are merged in.
    pub fn with_certificate_store(mut self, store: Arc<CertificateStore>) -> Self {
        let now = (self.clock)();
        store.merge(self.config.certificates.iter().cloned(), now);
        self.store = store;
        self
    }

    /// The same client over its transport boxed.
    pub fn boxed(self) -> Client<BoxTransport> {
        Client {
            config: self.config,
            store: self.store,
            transport: BoxTransport::new(self.transport),
            clock: self.clock,
            nonce: self.nonce,
            refresh_lock: self.refresh_lock,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The certificate store (shared).
    pub fn certificate_store(&self) -> &Arc<CertificateStore> {
        &self.store
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub(super) fn keyring<'a>(
        &'a self,
        downloaded: Option<&'a CertificateVerifier>,
    ) -> KeyRing<'a> {
        KeyRing {
            public_key: self.config.public_key.as_ref(),
            store: &self.store,
            downloaded,
        }
    }

    /// `POST /v3/pay/transactions/jsapi` → `prepay_id` (spec 7). Not
    /// retried: on an unknown outcome re-send the identical request
    /// (re-entry returns the same `prepay_id`).
    ///
    /// # Errors
    /// [`Error::V3Config`] without notify URL; any call [`Error`].
    pub async fn jsapi_prepay(
        &self,
        req: &PrepayRequest,
    ) -> Result<Verified<JsapiPrepayResponse>, Error> {
        let body = self.prepay_body(req)?;
        self.call(
            Endpoint::Prepay,
            HttpMethod::Post,
            "/v3/pay/transactions/jsapi".into(),
            Some(body),
        )
        .await?
        .parse(Endpoint::Prepay)
    }

    /// `POST /v3/pay/transactions/native` → `code_url` (spec 7.4); `payer`
    /// is not sent.
    ///
    /// # Errors
    /// As [`Client::jsapi_prepay`].
    pub async fn native_prepay(
        &self,
        req: &PrepayRequest,
    ) -> Result<Verified<NativePrepayResponse>, Error> {
        let mut req = req.clone();
        req.payer = None;
        let body = self.prepay_body(&req)?;
        self.call(
            Endpoint::Prepay,
            HttpMethod::Post,
            "/v3/pay/transactions/native".into(),
            Some(body),
        )
        .await?
        .parse(Endpoint::Prepay)
    }

    fn prepay_body(&self, req: &PrepayRequest) -> Result<String, Error> {
        let notify_url = self
            .config
            .notify_url
            .as_deref()
            .ok_or(ConfigError::Missing("notify_url"))?;
        Ok(req.to_body(&self.config.appid, self.config.mchid(), notify_url))
    }

    /// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…` (spec 9).
    ///
    /// # Errors
    /// Any call [`Error`]; an unknown order is [`Error::Api`] with
    /// [`ErrCode::OrderNotExist`](crate::ErrCode::OrderNotExist).
    pub async fn query_by_out_trade_no(
        &self,
        out_trade_no: &str,
    ) -> Result<Verified<Transaction>, Error> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            path_escape(out_trade_no),
            path_escape(self.config.mchid())
        );
        self.call(Endpoint::Query, HttpMethod::Get, path, None)
            .await?
            .parse(Endpoint::Query)
    }

    /// `GET /v3/pay/transactions/id/{transaction_id}?mchid=…` (spec 9).
    ///
    /// # Errors
    /// As [`Client::query_by_out_trade_no`].
    pub async fn query_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Verified<Transaction>, Error> {
        let path = format!(
            "/v3/pay/transactions/id/{}?mchid={}",
            path_escape(transaction_id),
            path_escape(self.config.mchid())
        );
        self.call(Endpoint::Query, HttpMethod::Get, path, None)
            .await?
            .parse(Endpoint::Query)
    }

    /// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` with
    /// `{"mchid":…}`; WeChat answers 204 (spec 10).
    ///
    /// **A 204 is not proof**: it has been seen for orders already closed
    /// and for numbers that do not exist, and a payment can race the close.
    /// Query afterwards (or use [`Client::close_and_confirm`]); the query
    /// result wins.
    ///
    /// # Errors
    /// Any call [`Error`]; a verified 200 with a body is accepted too, and
    /// so is a verified `ORDER_CLOSED` (already closed).
    pub async fn close(&self, out_trade_no: &str) -> Result<(), Error> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            path_escape(out_trade_no)
        );
        let body = serde_json::json!({ "mchid": self.config.mchid() }).to_string();
        self.post_close(path, body).await
    }

    /// A close (direct or partner): `POST path` with `body`; a verified
    /// `ORDER_CLOSED` counts as closed.
    pub(super) async fn post_close(&self, path: String, body: String) -> Result<(), Error> {
        match self
            .call(Endpoint::Close, HttpMethod::Post, path, Some(body))
            .await
        {
            Ok(_) => Ok(()),
            // Already closed (spec 14.3): done — if WeChat said so itself.
            Err(Error::Api(a)) if a.verified && a.err_code == crate::ErrCode::OrderClosed => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`Client::close`], then [`Client::query_by_out_trade_no`]: the
    /// order's real state after the close (`CLOSED`, or `SUCCESS` if a
    /// payment won the race).
    ///
    /// # Errors
    /// Any [`Error`] of either call.
    pub async fn close_and_confirm(
        &self,
        out_trade_no: &str,
    ) -> Result<Verified<Transaction>, Error> {
        self.close(out_trade_no).await?;
        self.query_by_out_trade_no(out_trade_no).await
    }

    /// `POST /v3/refund/domestic/refunds` (spec 11), with the configured
    /// refund notify URL (else the payment one). The answer means
    /// *accepted* (usually `PROCESSING`). Not retried: on an unknown outcome
    /// query the refund, and resubmit with the **same** `out_refund_no`.
    ///
    /// # Errors
    /// Any call [`Error`]; "order not found or unpaid" is a definite
    /// [`ErrCode::OrderNotExist`](crate::ErrCode::OrderNotExist).
    pub async fn refund(&self, req: &RefundRequest) -> Result<Verified<Refund>, Error> {
        let notify_url = self
            .config
            .refund_notify_url
            .as_deref()
            .or(self.config.notify_url.as_deref());
        let body = req.to_body(notify_url);
        self.call(
            Endpoint::Refund,
            HttpMethod::Post,
            "/v3/refund/domestic/refunds".into(),
            Some(body),
        )
        .await?
        .parse(Endpoint::Refund)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}` (spec 11.5).
    ///
    /// # Errors
    /// Any call [`Error`]; no such refund is [`Error::Api`] with
    /// [`ErrCode::RefundNotExist`](crate::ErrCode::RefundNotExist).
    pub async fn refund_query(&self, out_refund_no: &str) -> Result<Verified<Refund>, Error> {
        let path = format!("/v3/refund/domestic/refunds/{}", path_escape(out_refund_no));
        self.call(Endpoint::RefundQuery, HttpMethod::Get, path, None)
            .await?
            .parse(Endpoint::RefundQuery)
    }

    /// `wx.requestPayment` parameters for `prepay_id` (spec 8): RSA
    /// `paySign` over `appId\ntimeStamp\nnonceStr\npackage\n` with the
    /// configured appid, the client's clock and nonce source.
    ///
    /// # Errors
    /// [`Error::Signing`] only if the crypto library fails.
    pub fn pay_params(&self, prepay_id: &str) -> Result<PayParamsV3, Error> {
        self.pay_params_for(&self.config.appid, prepay_id)
    }

    /// `paySign` for `prepay_id` with `app_id` on the `appId` line.
    pub(super) fn pay_params_for(
        &self,
        app_id: &str,
        prepay_id: &str,
    ) -> Result<PayParamsV3, Error> {
        Ok(PayParamsV3::sign_with(
            self.config.credential.key(),
            app_id,
            &format!("prepay_id={prepay_id}"),
            &(self.clock)().to_string(),
            &(self.nonce)(),
        )?)
    }

    /// Verifies a notify (headers and **raw** body) with the public key and
    /// the certificate store — refreshing the certificates once on an
    /// unknown serial — then decrypts it with the APIv3 key and reads the
    /// typed resource.
    ///
    /// # Errors
    /// [`NotifyError`]; its [`reply`](NotifyError::reply) is the answer to
    /// give WeChat (401 for a failed verification, so WeChat retries).
    pub async fn verify_notify(
        &self,
        headers: &WechatpayHeaders<'_>,
        body: &[u8],
    ) -> Result<VerifiedNotify, NotifyError> {
        let notification = self.notification(headers, body).await?;
        VerifiedNotify::from_notification(notification).map_err(NotifyError::Resource)
    }

    /// Verifies and decrypts a notify (refreshing the certificates once on
    /// an unknown serial), without reading the resource.
    pub(super) async fn notification(
        &self,
        headers: &WechatpayHeaders<'_>,
        body: &[u8],
    ) -> Result<super::Notification, NotifyError> {
        let parse = |now| {
            NotifyHandler::new(
                NotifyValidator::new(self.keyring(None)),
                self.config.api_v3_key.clone(),
            )
            .parse(headers, body, now)
        };
        let now = (self.clock)();
        let mut result = parse(now);
        if let Err(NotifyError::Validation(ValidationError::UnknownSerial { serial })) = &result
            && self.refresh_for_unknown(serial, now).await
        {
            result = parse((self.clock)());
        }
        result
    }

    /// Downloads `GET /v3/certificates` now (spec 4.1): decrypts each entry
    /// with the APIv3 key, checks each certificate's serial against its
    /// `serial_no`, verifies the answer's own signature (with the
    /// certificates already held when they know its serial, else with the
    /// ones just decrypted — authenticated by the APIv3 key's GCM tag — so
    /// that the first download and a rotation both work), then merges them
    /// into the store (expired ones dropped). Returns the certificates
    /// received.
    ///
    /// # Errors
    /// [`Error::PlatformCertificates`] for an entry that does not decrypt or
    /// whose serial differs; any call [`Error`] (a public-key-only merchant
    /// gets a 404 [`Error::Api`]).
    pub async fn refresh_certificates(&self) -> Result<Vec<PlatformCertificate>, Error> {
        let _guard = self.refresh_lock.lock().await;
        self.download(false).await
    }

    /// The download itself, timed and counted; the caller holds
    /// `refresh_lock`.
    async fn download(&self, forced: bool) -> Result<Vec<PlatformCertificate>, Error> {
        let started = std::time::Instant::now();
        let result = self.download_once(forced).await;
        crate::metrics::upstream("v3", "certificates", started, &result);
        result
    }

    async fn download_once(&self, forced: bool) -> Result<Vec<PlatformCertificate>, Error> {
        let now = (self.clock)();
        self.store.mark_attempt(now, forced);
        let resp = self
            .send_signed(HttpMethod::Get, "/v3/certificates", None)
            .await?;
        let decrypted = if (200..300).contains(&resp.status) {
            Some(decrypt_certificates(&resp.body, &self.config.api_v3_key))
        } else {
            None
        };
        match decrypted {
            Some(Ok(certs)) => {
                let fresh = CertificateVerifier::with_certificates(certs.iter().cloned());
                self.classify(Endpoint::Certificates, &resp, &self.keyring(Some(&fresh)))?;
                let held = self.store.merge(certs.iter().cloned(), (self.clock)());
                self.store.mark_refreshed((self.clock)());
                tracing::debug!(
                    received = certs.len(),
                    held,
                    "platform certificates refreshed"
                );
                Ok(certs)
            }
            Some(Err(e)) => {
                // Report an unsigned, forged or badly signed answer as such;
                // a verified one (or one signed by a certificate we cannot
                // know, since its entries are refused) as a certificate error.
                match self.classify(Endpoint::Certificates, &resp, &self.keyring(None)) {
                    Ok(_) => Err(Error::PlatformCertificates(e)),
                    Err(Error::Unverified(u))
                        if matches!(u.reason, ValidationError::UnknownSerial { .. }) =>
                    {
                        Err(Error::PlatformCertificates(e))
                    }
                    Err(other) => Err(other),
                }
            }
            None => self
                .classify(Endpoint::Certificates, &resp, &self.keyring(None))
                .map(|_| Vec::new()),
        }
    }

    /// Lazily refreshes before a call when due (certificate download on).
    /// A failure is only an error when nothing could verify the answer.
    async fn refresh_if_due(&self) -> Result<(), Error> {
        let c = &self.config;
        if !c.download_certificates {
            return Ok(());
        }
        let (interval, gap) = (secs(c.refresh_interval), secs(c.refresh_gap));
        if !self.store.refresh_due((self.clock)(), interval, gap) {
            return Ok(());
        }
        let _guard = self.refresh_lock.lock().await;
        // Someone else may have refreshed while we waited.
        if !self.store.refresh_due((self.clock)(), interval, gap) {
            return Ok(());
        }
        match self.download(false).await {
            Ok(_) => Ok(()),
            Err(e) if self.store.is_empty() && c.public_key.is_none() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "platform certificate refresh failed; keeping the certificates held");
                Ok(())
            }
        }
    }

    /// One refresh for an unknown certificate serial, rate-limited. `true`
    /// when the store changed since (so verification is worth retrying).
    async fn refresh_for_unknown(&self, serial: &str, now: i64) -> bool {
        if !self.config.download_certificates || serial.starts_with(PUB_KEY_ID_PREFIX) {
            return false;
        }
        let before = self.store.generation();
        let _guard = self.refresh_lock.lock().await;
        if self.store.generation() != before {
            return true;
        }
        if !self
            .store
            .forced_allowed(now, secs(self.config.refresh_gap))
        {
            tracing::debug!(serial, "unknown serial; certificate refresh rate-limited");
            return false;
        }
        match self.download(true).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(serial, error = %e, "certificate refresh for an unknown serial failed");
                false
            }
        }
    }

    pub(super) async fn call(
        &self,
        endpoint: Endpoint,
        method: HttpMethod,
        path: String,
        body: Option<String>,
    ) -> Result<Answer, Error> {
        self.refresh_if_due().await?;
        let started = std::time::Instant::now();
        let result = self.exchange(endpoint, method, &path, body).await;
        crate::metrics::upstream(
            "v3",
            crate::metrics::v3_endpoint(endpoint),
            started,
            &result,
        );
        result
    }

    /// One signed exchange and its classification (a refresh and a second
    /// look when the answer names an unknown serial).
    async fn exchange(
        &self,
        endpoint: Endpoint,
        method: HttpMethod,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, Error> {
        let resp = self.send_signed(method, path, body).await?;
        let first = self.classify(endpoint, &resp, &self.keyring(None));
        if let Err(Error::Unverified(u)) = &first
            && let ValidationError::UnknownSerial { serial } = &u.reason
        {
            let again = if self.refresh_for_unknown(serial, (self.clock)()).await {
                self.classify(endpoint, &resp, &self.keyring(None))
            } else {
                first
            };
            if let Err(Error::Unverified(u)) = &again {
                tracing::warn!(%endpoint, request_id = ?u.request_id, reason = %u.reason, "v3 answer refused");
            }
            return again;
        }
        first
    }

    /// Signs and sends one request; the body is signed and sent as the
    /// same bytes.
    async fn send_signed(
        &self,
        method: HttpMethod,
        path: &str,
        body: Option<String>,
    ) -> Result<HttpResponse, Error> {
        let url = format!("{}{}", self.config.api_base, path);
        let req = self.signed_request(method, path, url, body)?;
        self.transport.send(req).await.map_err(|e| {
            Error::transport(format!("{method} {} failed", strip_query(path)), Some(e))
        })
    }

    /// The request to `url` signed over `canonical_url` (its path and
    /// query, spec 2.2) and `body`, with the headers every v3 call carries.
    pub(super) fn signed_request(
        &self,
        method: HttpMethod,
        canonical_url: &str,
        url: String,
        body: Option<String>,
    ) -> Result<HttpRequest, Error> {
        let timestamp = (self.clock)().to_string();
        let nonce = (self.nonce)();
        let authorization = self.config.credential.authorization(
            method.as_str(),
            canonical_url,
            &timestamp,
            &nonce,
            body.as_deref().unwrap_or("").as_bytes(),
        )?;
        let mut req = match body {
            Some(body) => HttpRequest::post(url, body),
            None => HttpRequest::get(url),
        };
        req.method = method;
        req = req
            .with_header("Authorization", authorization)
            .with_header("Accept", "application/json");
        if req.body.is_some() {
            req = req.with_header("Content-Type", "application/json");
        }
        req = req.with_header("User-Agent", USER_AGENT);
        if let Some(pk) = &self.config.public_key {
            req = req.with_header("Wechatpay-Serial", pk.id());
        }
        Ok(req)
    }

    /// The decision procedure of spec 14.4 on one answer.
    pub(super) fn classify(
        &self,
        endpoint: Endpoint,
        resp: &HttpResponse,
        verifier: &dyn Verifier,
    ) -> Result<Answer, Error> {
        let headers = WechatpayHeaders::from_pairs(
            resp.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let request_id = resp.header("Request-ID").map(str::to_owned);
        let status = resp.status;
        match ResponseValidator::new(verifier).validate(
            status,
            &headers,
            &resp.body,
            (self.clock)(),
        ) {
            Ok(()) => match status {
                202 => Err(Error::Pending { request_id }),
                200..=299 => Ok(Answer {
                    body: resp.body.clone(),
                    request_id,
                }),
                _ => Err(
                    ApiError::from_answer(endpoint, status, &resp.body, request_id, true).into(),
                ),
            },
            Err(ValidationError::Unauthenticated) => {
                Err(ApiError::from_answer(endpoint, status, &resp.body, request_id, false).into())
            }
            Err(e @ ValidationError::Unsigned { .. }) => Err(Error::transport(
                format!("{endpoint} answered unsigned HTTP {status}: outcome unknown"),
                Some(Box::new(e)),
            )),
            Err(reason) => {
                if matches!(reason, ValidationError::UnknownSerial { .. }) {
                    // Usually a rotation: `call` refreshes the certificates
                    // and asks again, and warns only if that did not help.
                    tracing::debug!(%endpoint, status, ?request_id, %reason, "v3 answer signed by an unknown serial");
                } else {
                    tracing::warn!(%endpoint, status, ?request_id, %reason, "v3 answer refused");
                }
                Err(UnverifiedAnswer {
                    status,
                    request_id,
                    reason,
                }
                .into())
            }
        }
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// Percent-encodes a path segment or query value: RFC 3986 unreserved
/// characters stay, everything else (`|`, `*`, `@`, `/`, …) is escaped. What
/// is escaped here is what is signed and sent (spec 2.2).
pub(super) fn path_escape(s: &str) -> String {
    crate::client::percent_escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_path_segments() {
        assert_eq!(path_escape("WXP2026_a-1"), "WXP2026_a-1");
        assert_eq!(path_escape("a|b*c@d/e"), "a%7Cb%2Ac%40d%2Fe");
        assert_eq!(strip_query("/v3/x?mchid=1"), "/v3/x");
    }
}
