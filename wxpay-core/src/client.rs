//! The HTTP client: signs requests, verifies every answer before believing it.
//!
//! The transport sits behind the small [`Transport`] trait, so an HTTP-client
//! upgrade is not a breaking change and tests can record the exact request.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{
    ApiKey, Config, ErrCode, OutTradeNo, Params, SignType,
    bill::download::{self, BillDownload, Compression, TradeBillType},
    config::ConfigError,
    error::{BoxError, Error},
    messages::{
        Code2Session, OrderQueryResponse, RefundQueryResponse, RefundRequest, RefundResponse,
        SubMerchant, UnifiedOrderRequest, UnifiedOrderResponse,
    },
    paysign::PayParams,
    sign, xml,
};

/// An HTTP method the clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

impl HttpMethod {
    /// The upper-case method name (`GET`, `POST`), as signed by API v3.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

impl std::fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP request the client wants sent.
///
/// v2 requests are a `GET` without body or a `POST` with an XML body and no
/// extra headers (the transport adds `Content-Type: text/xml`); v3 requests
/// carry their `Authorization`, `Accept`, `Content-Type` and
/// `Wechatpay-Serial` headers in [`headers`](HttpRequest::headers).
///
/// ```
/// use wxpay_core::{HttpMethod, HttpRequest};
/// let req = HttpRequest::post("https://api.mch.weixin.qq.com/v3/pay/transactions/jsapi", "{}")
///     .with_header("Content-Type", "application/json");
/// assert_eq!(req.method, HttpMethod::Post);
/// assert_eq!(req.header("content-type"), Some("application/json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: HttpMethod,
    /// The absolute URL, exactly as it goes on the wire.
    pub url: String,
    /// Request headers to send, in order (the transport adds nothing that
    /// is already here, except its `User-Agent` default when absent).
    pub headers: Vec<(String, String)>,
    /// The body, sent byte for byte (XML for v2, JSON for v3).
    pub body: Option<String>,
    /// Whether the merchant client certificate (mutual TLS) is required
    /// (v2 refunds only; v3 never uses it).
    pub client_cert: bool,
}

impl HttpRequest {
    /// A `GET` without body or headers.
    pub fn get(url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: HttpMethod::Get,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            client_cert: false,
        }
    }

    /// A `POST` with `body`.
    pub fn post(url: impl Into<String>, body: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: HttpMethod::Post,
            url: url.into(),
            headers: Vec::new(),
            body: Some(body.into()),
            client_cert: false,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets whether the merchant client certificate is required.
    pub fn with_client_cert(mut self, client_cert: bool) -> HttpRequest {
        self.client_cert = client_cert;
        self
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The transport's answer.
///
/// ```
/// let res = wxpay_core::HttpResponse::new(204, "").with_header("Request-ID", "08F1-0");
/// assert_eq!(res.header("request-id"), Some("08F1-0"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Answer headers as received (names as the transport gives them).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An answer with `status` and `body`, no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The boxed future of one [`ChunkSource::next_chunk`].
pub type ChunkFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, BoxError>> + Send + 'a>>;

/// Where the chunks of a [`BodyStream`] come from: the transport's body,
/// pulled one chunk at a time. Implement it to stream from another HTTP
/// client, or to serve a generated body in tests.
pub trait ChunkSource: Send + 'static {
    /// The next chunk of the body; `Ok(None)` once the body is complete.
    /// Chunks may have any size (an empty one means nothing).
    fn next_chunk(&mut self) -> ChunkFuture<'_>;
}

/// An answer's body, read chunk by chunk instead of buffered whole (bills
/// run to hundreds of thousands of lines).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wxpay_core::BoxError> {
/// let mut body = wxpay_core::BodyStream::from_chunks([b"ab".to_vec(), b"c".to_vec()]);
/// assert_eq!(body.next_chunk().await?, Some(b"ab".to_vec()));
/// assert_eq!(body.next_chunk().await?, Some(b"c".to_vec()));
/// assert_eq!(body.next_chunk().await?, None);
/// # Ok(()) }
/// ```
pub struct BodyStream(Box<dyn ChunkSource>);

impl BodyStream {
    /// A body pulled from `source`.
    pub fn new(source: impl ChunkSource) -> BodyStream {
        BodyStream(Box::new(source))
    }

    /// A body already held: one chunk (none when empty).
    pub fn from_bytes(body: impl Into<Vec<u8>>) -> BodyStream {
        BodyStream::from_chunks(Some(body.into()).filter(|b| !b.is_empty()))
    }

    /// A body made of these chunks, in order.
    pub fn from_chunks<I>(chunks: I) -> BodyStream
    where
        I: IntoIterator<Item = Vec<u8>>,
        I::IntoIter: Send + 'static,
    {
        struct Chunks<It>(It);
        impl<It: Iterator<Item = Vec<u8>> + Send + 'static> ChunkSource for Chunks<It> {
            fn next_chunk(&mut self) -> ChunkFuture<'_> {
                let next = self.0.next();
                Box::pin(std::future::ready(Ok(next)))
            }
        }
        BodyStream::new(Chunks(chunks.into_iter()))
    }

    /// The next chunk; `Ok(None)` once the body is complete.
    ///
    /// # Errors
    /// The transport's error (connection lost, read timeout, …): the body
    /// is incomplete.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        self.0.next_chunk().await
    }

    /// Reads the rest of the body, refusing one longer than `limit` bytes
    /// (for small answers such as error bodies).
    ///
    /// # Errors
    /// The transport's error, or a body longer than `limit`.
    pub async fn read_to_end(mut self, limit: usize) -> Result<Vec<u8>, BoxError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(format!("answer body longer than {limit} bytes").into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyStream")
    }
}

/// The transport's answer with its body still to be read
/// ([`Transport::send_streaming`]).
#[derive(Debug)]
pub struct StreamingResponse {
    /// HTTP status.
    pub status: u16,
    /// Answer headers as received (names as the transport gives them).
    pub headers: Vec<(String, String)>,
    /// The body, chunk by chunk.
    pub body: BodyStream,
}

impl StreamingResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl From<HttpResponse> for StreamingResponse {
    /// The buffered answer, its body as one chunk.
    fn from(r: HttpResponse) -> StreamingResponse {
        StreamingResponse {
            status: r.status,
            headers: r.headers,
            body: BodyStream::from_bytes(r.body),
        }
    }
}

/// Sends HTTP requests. Implemented by [`ReqwestTransport`]; implement it to
/// use another client or to record requests in tests.
pub trait Transport: Send + Sync + 'static {
    /// Sends one request.
    fn send(&self, req: HttpRequest)
    -> impl Future<Output = Result<HttpResponse, BoxError>> + Send;

    /// Sends one request and returns as soon as the status and headers are
    /// in; the body is read from [`StreamingResponse::body`] (bill
    /// downloads). The default calls [`send`](Transport::send) and gives
    /// its body as one chunk: correct for any transport, but buffered; a
    /// transport that can stream overrides it ([`ReqwestTransport`] does).
    fn send_streaming(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<StreamingResponse, BoxError>> + Send {
        async move { self.send(req).await.map(StreamingResponse::from) }
    }

    /// Whether requests that need the merchant client certificate
    /// (refunds) can be sent at all. Default `true`; a transport that knows
    /// it has none says `false`, so a refund fails before anything is
    /// recorded instead of as a transport failure of unknown outcome.
    fn has_client_identity(&self) -> bool {
        true
    }
}

/// Any [`Transport`], boxed: what [`Payments`](crate::flow::Payments)
/// keeps, so that it takes a client over any transport (reqwest, a test
/// double, a proxy of your own) with no type parameter. One allocation per
/// call to WeChat.
#[derive(Clone)]
pub struct BoxTransport(Arc<dyn DynTransport>);

type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'a>>;

type StreamingFuture<'a> =
    Pin<Box<dyn Future<Output = Result<StreamingResponse, BoxError>> + Send + 'a>>;

trait DynTransport: Send + Sync + 'static {
    fn send_boxed(&self, req: HttpRequest) -> SendFuture<'_>;
    fn send_streaming_boxed(&self, req: HttpRequest) -> StreamingFuture<'_>;
    fn identity(&self) -> bool;
}

impl<T: Transport> DynTransport for T {
    fn send_boxed(&self, req: HttpRequest) -> SendFuture<'_> {
        Box::pin(self.send(req))
    }
    fn send_streaming_boxed(&self, req: HttpRequest) -> StreamingFuture<'_> {
        Box::pin(self.send_streaming(req))
    }
    fn identity(&self) -> bool {
        self.has_client_identity()
    }
}

impl BoxTransport {
    /// Boxes `transport`.
    pub fn new(transport: impl Transport) -> BoxTransport {
        BoxTransport(Arc::new(transport))
    }
}

impl std::fmt::Debug for BoxTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxTransport")
    }
}

impl Transport for BoxTransport {
    fn send(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, BoxError>> + Send {
        self.0.send_boxed(req)
    }

    fn send_streaming(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<StreamingResponse, BoxError>> + Send {
        self.0.send_streaming_boxed(req)
    }

    fn has_client_identity(&self) -> bool {
        self.0.identity()
    }
}

/// The merchant API client certificate (for refunds).
#[derive(Clone)]
pub struct ClientIdentity {
    pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(***)")
    }
}

impl ClientIdentity {
    /// From the environment, for refunds: `WXPAY_CLIENT_CERT_FILE` and
    /// `WXPAY_CLIENT_KEY_FILE` (the PEM pair `apiclient_cert.pem` and
    /// `apiclient_key.pem` from the merchant platform), or
    /// `WXPAY_CLIENT_P12_FILE` (`apiclient_cert.p12`) with
    /// `WXPAY_CLIENT_P12_PASSWORD` (default: `WXPAY_MCH_ID`, WeChat's
    /// convention). `None` when none is set.
    ///
    /// # Errors
    /// [`Error::Certificate`] naming the variable for an unreadable file, a
    /// lone half of the PEM pair, or an unusable PKCS#12.
    pub fn from_env() -> Result<Option<ClientIdentity>, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let read = |k: &'static str, path: String| {
            std::fs::read(&path)
                .map_err(|e| Error::Certificate(format!("{k}={path}: cannot read it: {e}")))
        };
        match (
            var("WXPAY_CLIENT_CERT_FILE"),
            var("WXPAY_CLIENT_KEY_FILE"),
            var("WXPAY_CLIENT_P12_FILE"),
        ) {
            (Some(cert), Some(key), _) => Ok(Some(ClientIdentity::from_pem(
                &read("WXPAY_CLIENT_CERT_FILE", cert)?,
                &read("WXPAY_CLIENT_KEY_FILE", key)?,
            ))),
            (Some(_), None, _) | (None, Some(_), _) => Err(Error::Certificate(
                "set both WXPAY_CLIENT_CERT_FILE and WXPAY_CLIENT_KEY_FILE (or WXPAY_CLIENT_P12_FILE)"
                    .into(),
            )),
            (None, None, Some(p12)) => {
                let password = var("WXPAY_CLIENT_P12_PASSWORD")
                    .or_else(|| var("WXPAY_MCH_ID"))
                    .unwrap_or_default();
                let der = read("WXPAY_CLIENT_P12_FILE", p12)?;
                ClientIdentity::from_pkcs12(&der, &password).map(Some)
            }
            (None, None, None) => Ok(None),
        }
    }

    /// From the PEM pair `apiclient_cert.pem` + `apiclient_key.pem`.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> ClientIdentity {
        let mut pem = key.to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(cert);
        ClientIdentity { pem }
    }

    /// From `apiclient_cert.p12` (PKCS#12); WeChat's password is the `mch_id`.
    ///
    /// # Errors
    /// [`Error::Certificate`] when the archive cannot be opened (the message
    /// never includes the password).
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<ClientIdentity, Error> {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let store = p12_keystore::KeyStore::from_pkcs12(
            der,
            password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| Error::Certificate(format!("cannot open PKCS#12: {e}")))?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or_else(|| Error::Certificate("PKCS#12 holds no private key".into()))?;
        let block = |label: &str, der: &[u8]| {
            let b64 = STANDARD.encode(der);
            let mut s = format!("-----BEGIN {label}-----\n");
            for line in b64.as_bytes().chunks(64) {
                s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                s.push('\n');
            }
            s.push_str(&format!("-----END {label}-----\n"));
            s
        };
        let mut pem = block("PRIVATE KEY", chain.key().as_der());
        if chain.certs().is_empty() {
            return Err(Error::Certificate("PKCS#12 holds no certificate".into()));
        }
        for cert in chain.certs() {
            pem.push_str(&block("CERTIFICATE", cert.as_der()));
        }
        Ok(ClientIdentity {
            pem: pem.into_bytes(),
        })
    }
}

/// The `User-Agent` every request carries: `wxpay-rs/<version>`.
pub const USER_AGENT: &str = concat!("wxpay-rs/", env!("CARGO_PKG_VERSION"));

/// [`Transport`] on reqwest with rustls (no OpenSSL).
///
/// Timeouts: `connect_timeout` bounds the connection; a buffered
/// [`send`](Transport::send) must complete whole within `timeout`. A
/// streamed [`send_streaming`](Transport::send_streaming) (bill downloads,
/// which can run for minutes) has no total limit: instead the answer's
/// headers, and then each read of its body, must come within `timeout`
/// (an idle timeout: a stalled download fails, a slow but moving one
/// does not).
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    plain: reqwest::Client,
    with_cert: Option<reqwest::Client>,
    timeout: Duration,
}

impl ReqwestTransport {
    /// A transport with the config's timeouts and, if given, the client
    /// certificate for `secapi` calls.
    ///
    /// # Errors
    /// [`Error::Certificate`] for an unusable identity, [`Error::Transport`]
    /// when the TLS stack cannot start.
    pub fn new(config: &Config, identity: Option<&ClientIdentity>) -> Result<Self, Error> {
        Self::build(config.timeout, config.connect_timeout, identity)
    }

    /// A transport without client certificate (what API v3 uses) with
    /// these timeouts.
    ///
    /// # Errors
    /// [`Error::Transport`] when the TLS stack cannot start.
    pub fn with_timeouts(timeout: Duration, connect_timeout: Duration) -> Result<Self, Error> {
        Self::build(timeout, connect_timeout, None)
    }

    fn build(
        timeout: Duration,
        connect_timeout: Duration,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, Error> {
        // No client-wide total timeout: `send` sets one per request, and a
        // streamed download has none (the read timeout bounds each wait).
        let builder = || {
            reqwest::Client::builder()
                .read_timeout(timeout)
                .connect_timeout(connect_timeout)
                .user_agent(USER_AGENT)
        };
        let plain = builder()
            .build()
            .map_err(|e| Error::transport("cannot build HTTP client", Some(Box::new(e))))?;
        let with_cert = match identity {
            None => None,
            Some(id) => {
                let identity = reqwest::Identity::from_pem(&id.pem)
                    .map_err(|e| Error::Certificate(format!("unusable certificate: {e}")))?;
                Some(
                    builder()
                        .identity(identity)
                        .build()
                        .map_err(|e| Error::Certificate(format!("unusable certificate: {e}")))?,
                )
            }
        };
        Ok(Self {
            plain,
            with_cert,
            timeout,
        })
    }

    /// The request, ready to send (without a total timeout).
    fn request(&self, req: HttpRequest) -> Result<reqwest::RequestBuilder, BoxError> {
        let client = if req.client_cert {
            self.with_cert
                .as_ref()
                .ok_or("this call needs the merchant client certificate (ClientIdentity)")?
        } else {
            &self.plain
        };
        let mut builder = match req.method {
            HttpMethod::Get => client.get(&req.url),
            HttpMethod::Post => client.post(&req.url),
        };
        let has_content_type = req.header("content-type").is_some();
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = req.body {
            if !has_content_type {
                // v2: XML bodies without headers of their own.
                builder = builder.header("content-type", "text/xml; charset=utf-8");
            }
            builder = builder.body(body);
        }
        Ok(builder)
    }
}

fn response_headers(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// A reqwest body read chunk by chunk.
struct ReqwestChunks(reqwest::Response);

impl ChunkSource for ReqwestChunks {
    fn next_chunk(&mut self) -> ChunkFuture<'_> {
        Box::pin(async move {
            match self.0.chunk().await {
                Ok(chunk) => Ok(chunk.map(|b| b.to_vec())),
                // `without_url`: download URLs carry a token.
                Err(e) => Err(Box::new(e.without_url()) as BoxError),
            }
        })
    }
}

impl Transport for ReqwestTransport {
    fn has_client_identity(&self) -> bool {
        self.with_cert.is_some()
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, BoxError> {
        let builder = self.request(req)?.timeout(self.timeout);
        // `without_url`: jscode2session URLs carry the AppSecret.
        let resp = builder.send().await.map_err(|e| e.without_url())?;
        let status = resp.status().as_u16();
        let headers = response_headers(&resp);
        let body = resp.bytes().await.map_err(|e| e.without_url())?.to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    async fn send_streaming(&self, req: HttpRequest) -> Result<StreamingResponse, BoxError> {
        let resp = self
            .request(req)?
            .send()
            .await
            .map_err(|e| e.without_url())?;
        Ok(StreamingResponse {
            status: resp.status().as_u16(),
            headers: response_headers(&resp),
            body: BodyStream::new(ReqwestChunks(resp)),
        })
    }
}

/// How the client repeats calls the spec says are safe to repeat
/// (orderquery, closeorder, refundquery) after a transport failure or a
/// retryable business code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts (1 = no retry).
    pub attempts: u32,
    /// Pause before the first retry; doubled each time.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// The WeChat Pay v2 client for one merchant.
///
/// ```no_run
/// # async fn demo() -> Result<(), wxpay_core::Error> {
/// use wxpay_core::{ApiKey, Client, Config, Fen, OutTradeNo, messages::UnifiedOrderRequest};
/// let config = Config::new("wx…", "1900000109", ApiKey::new(std::env::var("WXPAY_API_KEY").unwrap()))
///     .with_notify_url("https://shop.example.com/pay/notify");
/// let client = Client::new(config)?;
/// let order = UnifiedOrderRequest::jsapi(OutTradeNo::generate(), "shop-vip", Fen(998), "openid…");
/// let answer = client.unified_order(&order).await?;
/// let pay_params = client.pay_params(answer.prepay_id.as_deref().unwrap());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client<T: Transport = ReqwestTransport> {
    config: Arc<Config>,
    transport: T,
    retry: RetryPolicy,
}

impl Client<ReqwestTransport> {
    /// A client on reqwest, without a client certificate (refunds will fail).
    ///
    /// # Errors
    /// [`Error::Transport`] when the TLS stack cannot start.
    pub fn new(config: Config) -> Result<Self, Error> {
        let transport = ReqwestTransport::new(&config, None)?;
        Ok(Client::with_transport(config, transport))
    }

    /// A client on reqwest with the merchant certificate, for refunds.
    ///
    /// # Errors
    /// [`Error::Certificate`] for an unusable identity.
    pub fn with_identity(config: Config, identity: &ClientIdentity) -> Result<Self, Error> {
        let transport = ReqwestTransport::new(&config, Some(identity))?;
        Ok(Client::with_transport(config, transport))
    }
}

impl<T: Transport> Client<T> {
    /// A client over any transport.
    pub fn with_transport(config: Config, transport: T) -> Self {
        Client {
            config: Arc::new(config),
            transport,
            retry: RetryPolicy::default(),
        }
    }

    /// The same client over its transport boxed ([`BoxTransport`]).
    pub fn boxed(self) -> Client<BoxTransport> {
        Client {
            config: self.config,
            transport: BoxTransport::new(self.transport),
            retry: self.retry,
        }
    }

    /// Sets the retry policy for the idempotent query calls.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Adds the common fields, signs, and builds the XML body.
    fn signed_body(&self, mut params: Params) -> String {
        let c = &self.config;
        params.insert("appid", c.appid.as_str());
        params.insert("mch_id", c.mch_id.as_str());
        params.insert("nonce_str", crate::types::nonce_str());
        params.insert("sign_type", c.sign_type.as_str());
        let signature = sign::sign(&params, &c.api_key, c.sign_type);
        params.insert("sign", signature);
        xml::to_xml(&params)
    }

    /// Sends one signed request and applies the spec's decision procedure
    /// (4.2): transport → `return_code` → signature → `result_code`.
    /// Timed and counted ([`crate::metrics`]).
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn call(
        &self,
        path: &str,
        params: Params,
        client_cert: bool,
    ) -> Result<Params, Error> {
        let started = std::time::Instant::now();
        let result = self.call_once(path, params, client_cert).await;
        crate::metrics::upstream("v2", crate::metrics::v2_endpoint(path), started, &result);
        result
    }

    async fn call_once(
        &self,
        path: &str,
        params: Params,
        client_cert: bool,
    ) -> Result<Params, Error> {
        let url = format!("{}{}", self.config.api_base, path);
        // Partner mode: the answer must be about the sub-merchant asked for.
        let sent_sub: Vec<(&'static str, String)> = ["sub_mch_id", "sub_appid"]
            .into_iter()
            .filter_map(|f| params.non_empty(f).map(|v| (f, v.to_owned())))
            .collect();
        let body = self.signed_body(params);
        let resp = self
            .transport
            .send(HttpRequest::post(url, body).with_client_cert(client_cert))
            .await
            .map_err(|e| Error::transport(format!("POST {path} failed"), Some(e)))?;
        if resp.status != 200 {
            return Err(Error::transport(
                format!("POST {path} answered HTTP {}", resp.status),
                None,
            ));
        }
        let answer = xml::parse(&resp.body)?;
        check_answer(
            answer,
            &self.config.api_key,
            self.config.sign_type,
            &self.config,
            &sent_sub,
        )
    }

    async fn call_idempotent(&self, path: &str, params: Params) -> Result<Params, Error> {
        let mut pause = self.retry.backoff;
        let mut attempt = 1;
        loop {
            match self.call(path, params.clone(), false).await {
                Err(e) if e.is_retryable() && attempt < self.retry.attempts.max(1) => {
                    tracing::debug!(path, attempt, error = %e, "retrying idempotent call");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `POST /pay/unifiedorder`. Not retried here: repeat it yourself with
    /// the *same* request (WeChat accepts identical re-entry).
    ///
    /// # Errors
    /// [`Error::Field`] before sending when a field breaks a rule; any other
    /// [`Error`] from the call.
    pub async fn unified_order(
        &self,
        req: &UnifiedOrderRequest,
    ) -> Result<UnifiedOrderResponse, Error> {
        let params = req.to_params(self.config.notify_url.as_deref())?;
        let answer = self.call("/pay/unifiedorder", params, false).await?;
        Ok(UnifiedOrderResponse::from_params(answer)?)
    }

    /// `POST /pay/orderquery` by `out_trade_no` (retried per [`RetryPolicy`]).
    ///
    /// # Errors
    /// Any [`Error`]; an unknown order is [`ErrCode::OrderNotExist`].
    pub async fn order_query(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<OrderQueryResponse, Error> {
        self.order_query_for(None, out_trade_no).await
    }

    /// [`Client::order_query`] in partner mode: for the sub-merchant
    /// `sub` (`sub_mch_id`, `sub_appid` sent and signed; an answer naming
    /// another sub-merchant is refused).
    ///
    /// # Errors
    /// [`Error::Field`] before sending for an empty or too long
    /// `sub_mch_id` / `sub_appid`, or after for an answer about another
    /// sub-merchant; any [`Error`] of [`Client::order_query`].
    pub async fn partner_order_query(
        &self,
        sub: &SubMerchant,
        out_trade_no: &OutTradeNo,
    ) -> Result<OrderQueryResponse, Error> {
        self.order_query_for(Some(sub), out_trade_no).await
    }

    async fn order_query_for(
        &self,
        sub: Option<&SubMerchant>,
        out_trade_no: &OutTradeNo,
    ) -> Result<OrderQueryResponse, Error> {
        let params = with_sub(sub, [("out_trade_no", out_trade_no.as_str())])?;
        let answer = self.call_idempotent("/pay/orderquery", params).await?;
        Ok(OrderQueryResponse::from_params(answer)?)
    }

    /// `POST /pay/closeorder` (retried per [`RetryPolicy`]). WeChat refuses
    /// it within 5 minutes of the order's creation.
    ///
    /// # Errors
    /// Any [`Error`]; a paid order is [`ErrCode::OrderPaid`].
    pub async fn close_order(&self, out_trade_no: &OutTradeNo) -> Result<(), Error> {
        self.close_order_for(None, out_trade_no).await
    }

    /// [`Client::close_order`] for the sub-merchant `sub` (partner mode).
    ///
    /// # Errors
    /// As [`Client::partner_order_query`] and [`Client::close_order`].
    pub async fn partner_close_order(
        &self,
        sub: &SubMerchant,
        out_trade_no: &OutTradeNo,
    ) -> Result<(), Error> {
        self.close_order_for(Some(sub), out_trade_no).await
    }

    async fn close_order_for(
        &self,
        sub: Option<&SubMerchant>,
        out_trade_no: &OutTradeNo,
    ) -> Result<(), Error> {
        let params = with_sub(sub, [("out_trade_no", out_trade_no.as_str())])?;
        match self.call_idempotent("/pay/closeorder", params).await {
            Ok(_) => Ok(()),
            Err(Error::Business {
                err_code: ErrCode::OrderClosed,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /secapi/pay/refund` (mutual TLS). Not retried here: on failure
    /// repeat it with the same `out_refund_no` and amounts, never a new number.
    ///
    /// # Errors
    /// [`Error::Field`] before sending; any other [`Error`].
    pub async fn refund(&self, req: &RefundRequest) -> Result<RefundResponse, Error> {
        let params = req.to_params(self.config.refund_notify_url.as_deref())?;
        let answer = self.call("/secapi/pay/refund", params, true).await?;
        Ok(RefundResponse::from_params(answer)?)
    }

    /// `POST /pay/refundquery` by `out_refund_no` (retried per [`RetryPolicy`]).
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn refund_query(&self, out_refund_no: &str) -> Result<RefundQueryResponse, Error> {
        self.refund_query_for(None, ("out_refund_no", out_refund_no))
            .await
    }

    /// [`Client::refund_query`] for the sub-merchant `sub` (partner mode).
    ///
    /// # Errors
    /// As [`Client::partner_order_query`] and [`Client::refund_query`].
    pub async fn partner_refund_query(
        &self,
        sub: &SubMerchant,
        out_refund_no: &str,
    ) -> Result<RefundQueryResponse, Error> {
        self.refund_query_for(Some(sub), ("out_refund_no", out_refund_no))
            .await
    }

    /// [`Client::refund_query_by_order`] for the sub-merchant `sub`
    /// (partner mode).
    ///
    /// # Errors
    /// As [`Client::partner_order_query`] and
    /// [`Client::refund_query_by_order`].
    pub async fn partner_refund_query_by_order(
        &self,
        sub: &SubMerchant,
        out_trade_no: &OutTradeNo,
    ) -> Result<RefundQueryResponse, Error> {
        self.refund_query_for(Some(sub), ("out_trade_no", out_trade_no.as_str()))
            .await
    }

    async fn refund_query_for(
        &self,
        sub: Option<&SubMerchant>,
        by: (&str, &str),
    ) -> Result<RefundQueryResponse, Error> {
        let params = with_sub(sub, [by])?;
        let answer = self.call_idempotent("/pay/refundquery", params).await?;
        Ok(RefundQueryResponse::from_params(answer)?)
    }

    /// `POST /pay/refundquery` by `out_trade_no`: every refund of the order
    /// (the first 10 of more; retried per [`RetryPolicy`]).
    ///
    /// # Errors
    /// Any [`Error`] (`REFUNDNOTEXIST` when the order has none).
    pub async fn refund_query_by_order(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<RefundQueryResponse, Error> {
        self.refund_query_for(None, ("out_trade_no", out_trade_no.as_str()))
            .await
    }

    /// `POST /pay/downloadbill`: the trade bill of `date` (Beijing time),
    /// streamed. Signed like every call (`bill_date` = `yyyyMMdd`,
    /// `bill_type`, `tar_type=GZIP` when asked); sent under the configured
    /// `api_base` (so under the sandbox prefix when that is configured).
    ///
    /// The bill itself is neither XML nor signed (and v2 gives no hash):
    /// only the gzip trailer is checked. WeChat answers a failure with XML
    /// `return_code=FAIL`, recognised in the first bytes (`<xml>` after
    /// optional whitespace or BOM, within [`SNIFF_LIMIT`] bytes) before
    /// this returns. Pull the bill with [`BillDownload::next_chunk`]; on
    /// any error there, discard what was read and ask again.
    ///
    /// Not retried here: bills are idempotent, repeat it when
    /// [`Error::is_retryable`] says so.
    ///
    /// # Errors
    /// [`Error::Bill`]: [`BillError::NotReady`] (`Bill Creating`; try later),
    /// [`BillError::NoBill`] (`No Bill Exist`: no trades that day);
    /// [`Error::Protocol`] for the other `return_msg`s (`SYSTEMERROR`,
    /// `CompressGZip Error` and `UnCompressGZip Error` are retryable,
    /// `invalid bill_type`, `SIGN ERROR`, … are not); [`Error::Transport`]
    /// for a failed exchange or a non-200 status; [`Error::Xml`] for an
    /// unreadable XML answer.
    ///
    /// [`SNIFF_LIMIT`]: crate::bill::download::SNIFF_LIMIT
    /// [`BillDownload::next_chunk`]: crate::bill::download::BillDownload::next_chunk
    /// [`BillError::NotReady`]: crate::bill::download::BillError::NotReady
    /// [`BillError::NoBill`]: crate::bill::download::BillError::NoBill
    pub async fn download_bill(
        &self,
        date: chrono::NaiveDate,
        bill_type: TradeBillType,
        compression: Compression,
    ) -> Result<BillDownload, Error> {
        const PATH: &str = "/pay/downloadbill";
        let started = std::time::Instant::now();
        let result = self.download_bill_once(date, bill_type, compression).await;
        crate::metrics::upstream("v2", crate::metrics::v2_endpoint(PATH), started, &result);
        result
    }

    async fn download_bill_once(
        &self,
        date: chrono::NaiveDate,
        bill_type: TradeBillType,
        compression: Compression,
    ) -> Result<BillDownload, Error> {
        let mut params: Params = [
            ("bill_date", date.format("%Y%m%d").to_string()),
            ("bill_type", bill_type.as_str().to_owned()),
        ]
        .into_iter()
        .collect();
        if let Some(tar_type) = compression.tar_type() {
            params.insert("tar_type", tar_type);
        }
        let url = format!("{}/pay/downloadbill", self.config.api_base);
        let mut resp = self
            .transport
            .send_streaming(HttpRequest::post(url, self.signed_body(params)))
            .await
            .map_err(|e| Error::transport("POST /pay/downloadbill failed", Some(e)))?;
        if resp.status != 200 {
            return Err(Error::transport(
                format!("POST /pay/downloadbill answered HTTP {}", resp.status),
                None,
            ));
        }
        match download::sniff_v2(&mut resp.body).await? {
            download::V2Answer::Bill(head) => Ok(BillDownload::with_prefix(resp.body, head, None)),
            download::V2Answer::Xml(body) => Err(download::v2_failure(&xml::parse(&body)?)),
        }
    }

    /// Whether refunds can be sent: the transport has the merchant client
    /// certificate ([`Transport::has_client_identity`]).
    pub fn can_refund(&self) -> bool {
        self.transport.has_client_identity()
    }

    /// `GET /sns/jscode2session`: trades a `wx.login` code for the openid.
    ///
    /// # Errors
    /// [`Error::Config`] without an AppSecret; [`Error::Login`] for WeChat's
    /// errcodes (40029 invalid code, 40163 used code, …); transport errors.
    pub async fn code2session(&self, js_code: &str) -> Result<Code2Session, Error> {
        let started = std::time::Instant::now();
        let result = self.code2session_once(js_code).await;
        crate::metrics::upstream("v2", "code2session", started, &result);
        result
    }

    async fn code2session_once(&self, js_code: &str) -> Result<Code2Session, Error> {
        let c = &self.config;
        let secret = c
            .app_secret
            .as_ref()
            .ok_or(Error::Config(ConfigError::Missing("WXPAY_APP_SECRET")))?;
        let url = format!(
            "{}/sns/jscode2session?appid={}&secret={}&js_code={}&grant_type=authorization_code",
            c.open_api_base,
            percent_escape(&c.appid),
            percent_escape(secret.expose()),
            percent_escape(js_code)
        );
        let resp = self
            .transport
            .send(HttpRequest::get(url))
            .await
            .map_err(|e| Error::transport("GET /sns/jscode2session failed", Some(e)))?;
        if resp.status != 200 {
            return Err(Error::transport(
                format!("GET /sns/jscode2session answered HTTP {}", resp.status),
                None,
            ));
        }
        parse_code2session(&resp.body)
    }

    /// Signs `wx.requestPayment` parameters for a `prepay_id` with the
    /// configured sign type (which unifiedorder used too).
    pub fn pay_params(&self, prepay_id: &str) -> PayParams {
        self.pay_params_signed(prepay_id, self.config.sign_type)
    }

    /// Signs `wx.requestPayment` parameters with `sign_type`: the one the
    /// order's unifiedorder was signed with (WeChat checks that they agree),
    /// which may differ from today's configuration for an older order.
    pub fn pay_params_signed(&self, prepay_id: &str, sign_type: SignType) -> PayParams {
        PayParams::new(
            &self.config.appid,
            prepay_id,
            sign_type,
            &self.config.api_key,
        )
    }
}

/// The request fields `fields`, plus the sub-merchant's in partner mode.
fn with_sub<'a>(
    sub: Option<&SubMerchant>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Params, crate::FieldError> {
    let mut params: Params = fields.into_iter().collect();
    if let Some(sub) = sub {
        sub.insert_into(&mut params)?;
    }
    Ok(params)
}

/// Applies steps 2–4 of the decision procedure to a parsed answer.
fn check_answer(
    answer: Params,
    key: &ApiKey,
    sign_type: SignType,
    config: &Config,
    sent_sub: &[(&'static str, String)],
) -> Result<Params, Error> {
    if answer.get("return_code") != Some("SUCCESS") {
        return Err(Error::Protocol {
            return_msg: answer.get("return_msg").unwrap_or("").to_owned(),
        });
    }
    sign::verify(&answer, key, sign_type).map_err(Error::InvalidSignature)?;
    for (field, ours) in [("appid", &config.appid), ("mch_id", &config.mch_id)] {
        if let Some(theirs) = answer.non_empty(field)
            && theirs != ours
        {
            return Err(crate::FieldError::new(field, "the answer is for another merchant").into());
        }
    }
    for (field, ours) in sent_sub {
        if let Some(theirs) = answer.non_empty(field)
            && theirs != ours
        {
            return Err(
                crate::FieldError::new(field, "the answer is for another sub-merchant").into(),
            );
        }
    }
    if answer.get("result_code") != Some("SUCCESS") {
        return Err(Error::Business {
            err_code: ErrCode::parse(answer.get("err_code").unwrap_or("")),
            err_code_des: answer.get("err_code_des").unwrap_or("").to_owned(),
        });
    }
    Ok(answer)
}

fn parse_code2session(body: &[u8]) -> Result<Code2Session, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        openid: Option<String>,
        session_key: Option<String>,
        unionid: Option<String>,
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| Error::transport("jscode2session answered non-JSON", Some(Box::new(e))))?;
    match a.errcode {
        Some(code) if code != 0 => Err(Error::Login {
            errcode: code,
            errmsg: a.errmsg.unwrap_or_default(),
        }),
        _ => match (a.openid, a.session_key) {
            (Some(openid), Some(key)) if !openid.is_empty() => Ok(Code2Session {
                openid,
                session_key: crate::SessionKey::new(key),
                unionid: a.unionid.filter(|u| !u.is_empty()),
            }),
            _ => Err(crate::FieldError::new("openid", "missing from jscode2session answer").into()),
        },
    }
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved
/// characters stay, every other byte is `%XX`): v2's `jscode2session`
/// query and v3's signed paths.
pub(crate) fn percent_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_query_values() {
        assert_eq!(percent_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_escape("0a1-_.~"), "0a1-_.~");
    }

    #[test]
    fn code2session_answers() {
        let ok =
            parse_code2session(br#"{"openid":"o1","session_key":"sk","unionid":"u1"}"#).unwrap();
        assert_eq!(ok.openid, "o1");
        assert_eq!(ok.unionid.as_deref(), Some("u1"));
        let ok0 = parse_code2session(br#"{"openid":"o1","session_key":"sk","errcode":0}"#).unwrap();
        assert_eq!(ok0.unionid, None);
        match parse_code2session(br#"{"errcode":40163,"errmsg":"code been used, rid: 1"}"#) {
            Err(Error::Login { errcode: 40163, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_code2session(b"<html>"),
            Err(Error::Transport { .. })
        ));
        assert!(matches!(parse_code2session(b"{}"), Err(Error::Field(_))));
        let busy = parse_code2session(br#"{"errcode":-1,"errmsg":"busy"}"#).unwrap_err();
        assert!(busy.is_retryable());
    }
}
