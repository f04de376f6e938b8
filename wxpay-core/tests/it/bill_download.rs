//! Bill downloads: the `bills` vectors reproduced through `v3::Client`
//! byte for byte (apply request, verified answer, download request, the
//! file's SHA-1), and both clients over a fake transport that serves
//! answers in small chunks (plain and gzip bills, truncated gzip, hash
//! mismatch, bill errors, foreign `download_url`s, v2 XML failures split
//! anywhere), plus bounded memory on a generated 50 MB body and a gzip
//! bomb. Injected clock and nonce; no network, no wall-clock.

use std::{
    collections::VecDeque,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
};

use aws_lc_rs::digest;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::NaiveDate;
use serde_json::{Value, json};
use wxpay_core::{
    BodyStream, BoxError, BoxTransport, ChunkFuture, ChunkSource, Client as V2Client, Error,
    HttpMethod, HttpRequest, HttpResponse, Params, SignType, StreamingResponse, Transport,
    bill::download::{
        AccountType, BillDecoder, BillDownload, BillError, Compression, MAX_CHUNK, SNIFF_LIMIT,
        TradeBillType,
    },
    flow::{Gateway, V2Gateway, V3Gateway},
    v3::{
        ApiV3Key, Client, ClientConfig, Credential, MerchantKey, PublicKey, PublicKeyVerifier,
        response_message,
    },
    xml,
};

use crate::support::{self, KEY, Recorder, md5_sign};

const APPID: &str = "wx1a2b3c4d5e6f7a8b";
const T: i64 = 1767330000;
const BASE: &str = "https://api.mch.weixin.qq.com";

fn all() -> Value {
    support::spec_vectors("vectors-v3.json")
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
}

fn sha1_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A synthetic trade bill of `rows` rows (CRLF, back-ticked fields).
fn bill_text(rows: usize) -> Vec<u8> {
    let mut t = "交易时间,公众账号ID,商户号,商户订单号,应结订单金额\r\n".to_owned();
    for i in 0..rows {
        t.push_str(&format!(
            "`2026-01-01 12:{:02}:{:02},`{APPID},`1900000109,`WXP{i:08},`{}.{:02}\r\n",
            i / 60 % 60,
            i % 60,
            i % 500,
            i % 100
        ));
    }
    t.push_str("总交易单数,应结订单总金额\r\n`0,`0.00\r\n");
    t.into_bytes()
}

// ---------------------------------------------------------------------------
// The fake transport: canned answers served in chunks of a fixed size.

enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `PATTERN` repeated, made chunk by chunk (never held whole).
    Generated(u64),
}

/// What the generated body repeats: bill-like lines.
const PATTERN: &[u8] = "`2026-01-01 12:01:30,`wx1a2b3c4d5e6f7a8b,`1900000109,`4200002026010112000000000001,`小张南山店-咖啡,`9.90\r\n".as_bytes();

fn pattern_at(offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut at = (offset % PATTERN.len() as u64) as usize;
    while out.len() < len {
        let n = (PATTERN.len() - at).min(len - out.len());
        out.extend_from_slice(&PATTERN[at..at + n]);
        at = 0;
    }
    out
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    chunk: usize,
    /// The transport fails after serving this many bytes.
    fail_after: Option<u64>,
    /// The clock is set to this when the answer is delivered.
    clock_after: Option<i64>,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(body.into()),
            chunk: usize::MAX,
            fail_after: None,
            clock_after: None,
        }
    }

    fn from_response(r: HttpResponse) -> Reply {
        Reply {
            headers: r.headers,
            ..Reply::new(r.status, r.body)
        }
    }

    fn chunked(mut self, chunk: usize) -> Reply {
        self.chunk = chunk;
        self
    }
}

#[derive(Clone, Default)]
struct Chunky {
    sent: Arc<Mutex<Vec<HttpRequest>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    streamed: Arc<AtomicUsize>,
    clock: Arc<AtomicI64>,
}

impl Chunky {
    fn reply(&self, r: Reply) -> &Chunky {
        self.replies.lock().unwrap().push_back(r);
        self
    }

    fn sent(&self) -> Vec<HttpRequest> {
        self.sent.lock().unwrap().clone()
    }

    fn next(&self, req: HttpRequest) -> Result<Reply, BoxError> {
        self.sent.lock().unwrap().push(req);
        let r = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .ok_or("no canned reply")?;
        if let Some(t) = r.clock_after {
            self.clock.store(t, Ordering::SeqCst);
        }
        Ok(r)
    }
}

struct Served {
    body: Body,
    at: u64,
    chunk: usize,
    fail_after: Option<u64>,
}

impl ChunkSource for Served {
    fn next_chunk(&mut self) -> ChunkFuture<'_> {
        let len = match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::Generated(n) => *n,
        };
        let result = if self.fail_after.is_some_and(|n| self.at >= n) {
            Err("connection reset".into())
        } else if self.at >= len {
            Ok(None)
        } else {
            let n = (self.chunk as u64).min(len - self.at) as usize;
            let chunk = match &self.body {
                Body::Bytes(b) => b[self.at as usize..self.at as usize + n].to_vec(),
                Body::Generated(_) => pattern_at(self.at, n),
            };
            self.at += n as u64;
            Ok(Some(chunk))
        };
        Box::pin(std::future::ready(result))
    }
}

impl Transport for Chunky {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, BoxError> {
        let r = self.next(req)?;
        let Body::Bytes(body) = r.body else {
            panic!("a generated body is only streamed")
        };
        Ok(HttpResponse {
            status: r.status,
            headers: r.headers,
            body,
        })
    }

    async fn send_streaming(&self, req: HttpRequest) -> Result<StreamingResponse, BoxError> {
        self.streamed.fetch_add(1, Ordering::SeqCst);
        let r = self.next(req)?;
        Ok(StreamingResponse {
            status: r.status,
            headers: r.headers,
            body: BodyStream::new(Served {
                body: r.body,
                at: 0,
                chunk: r.chunk,
                fail_after: r.fail_after,
            }),
        })
    }
}

// ---------------------------------------------------------------------------
// v3 rig: the vectors' merchant key, WeChat Pay public key; settable clock
// and nonce.

fn v3_config(all: &Value) -> ClientConfig {
    let m = &all["keys"]["merchant"];
    let credential = Credential::new(
        s(m, "mchid"),
        s(m, "serial_no"),
        MerchantKey::from_pem(s(m, "private_key_pem")).unwrap(),
    );
    let pk = &all["keys"]["wechatpay_public_key"];
    ClientConfig::new(
        APPID,
        credential,
        ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap(),
    )
    .with_public_key(PublicKeyVerifier::new(
        s(pk, "key_id"),
        PublicKey::from_pem(s(pk, "public_key_pem")).unwrap(),
    ))
}

struct Rig {
    client: Client<Chunky>,
    fake: Chunky,
    nonce: Arc<Mutex<String>>,
    all: Value,
}

impl Rig {
    fn new() -> Rig {
        let all = all();
        let fake = Chunky::default();
        fake.clock.store(T, Ordering::SeqCst);
        let nonce = Arc::new(Mutex::new("N0NCE".to_owned()));
        let (c, n) = (fake.clock.clone(), nonce.clone());
        let client = Client::with_transport(v3_config(&all), fake.clone())
            .unwrap()
            .with_clock(Arc::new(move || c.load(Ordering::SeqCst)))
            .with_nonce(Arc::new(move || n.lock().unwrap().clone()));
        Rig {
            client,
            fake,
            nonce,
            all,
        }
    }

    fn at(&self, now: i64, nonce: &str) -> &Rig {
        self.fake.clock.store(now, Ordering::SeqCst);
        *self.nonce.lock().unwrap() = nonce.to_owned();
        self
    }

    fn reply(&self, r: Reply) -> &Rig {
        self.fake.reply(r);
        self
    }

    /// An answer signed with the WeChat Pay public key's private half.
    fn signed(&self, status: u16, body: &str) -> Reply {
        let pk = &self.all["keys"]["wechatpay_public_key"];
        let key = MerchantKey::from_pem(s(pk, "private_key_pem")).unwrap();
        let ts = self.fake.clock.load(Ordering::SeqCst).to_string();
        let nonce = "0123456789abcdef0123456789abcdef";
        let signature = key
            .sign(&response_message(&ts, nonce, body.as_bytes()))
            .unwrap();
        Reply::from_response(
            HttpResponse::new(status, body)
                .with_header("Request-ID", "REQ-BILL-1")
                .with_header("Wechatpay-Timestamp", ts)
                .with_header("Wechatpay-Nonce", nonce)
                .with_header("Wechatpay-Signature", signature)
                .with_header("Wechatpay-Serial", s(pk, "key_id"))
                .with_header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048"),
        )
    }

    /// A signed apply answer.
    fn applied(&self, hash: &str, download_url: &str) -> Reply {
        let body = json!({"hash_type": "SHA1", "hash_value": hash, "download_url": download_url});
        self.signed(200, &body.to_string())
    }
}

/// Every chunk of `d`, checking the bound; the error that ended it, if any.
async fn drain(d: &mut BillDownload) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    loop {
        match d.next_chunk().await {
            Ok(Some(chunk)) => {
                assert!(!chunk.is_empty() && chunk.len() <= MAX_CHUNK);
                out.extend(chunk);
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn assert_signed_get(req: &HttpRequest, url: &str, authorization: &str) {
    assert_eq!(req.method, HttpMethod::Get);
    assert_eq!(req.url, url);
    assert_eq!(req.body, None);
    assert_eq!(req.header("Authorization"), Some(authorization));
    assert_eq!(req.header("Accept"), Some("application/json"));
    assert!(req.header("User-Agent").unwrap().starts_with("wxpay-rs/"));
    assert!(!req.client_cert);
}

// ---------------------------------------------------------------------------
// The `bills` vectors.

#[tokio::test]
async fn trade_bill_vector_byte_for_byte() {
    let rig = Rig::new();
    let v = rig.all["bills"][0].clone();
    assert_eq!(s(&v, "name"), "trade-bill-all-gzip");
    let (apply, answer, download) = (
        &v["apply_request"],
        &v["apply_response"],
        &v["download_request"],
    );

    // The apply request, signed at the vector's time with its nonce; its
    // answer verified at the vector's `now`.
    rig.at(
        s(apply, "timestamp").parse().unwrap(),
        s(apply, "nonce_str"),
    );
    let mut reply = Reply::new(200, s(answer, "body"));
    for (k, val) in answer["headers"].as_object().unwrap() {
        reply
            .headers
            .push((k.clone(), val.as_str().unwrap().to_owned()));
    }
    reply.clock_after = Some(answer["now"].as_i64().unwrap());
    rig.reply(reply);
    let application = rig
        .client
        .apply_trade_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap();
    let sent = rig.fake.sent();
    assert_signed_get(&sent[0], s(apply, "url"), s(apply, "authorization"));
    for (k, val) in apply["request_headers"].as_object().unwrap() {
        assert_eq!(sent[0].header(k), val.as_str(), "header {k}");
    }
    let body: Value = serde_json::from_str(s(answer, "body")).unwrap();
    assert_eq!(application.hash_type(), "SHA1");
    assert_eq!(application.hash_value(), s(&body, "hash_value"));
    assert_eq!(application.hash_value(), s(&v, "sha1_of_file"));
    assert_eq!(application.download_url(), s(&body, "download_url"));
    assert_eq!(application.download_url(), s(download, "url"));
    assert_eq!(
        application.request_id(),
        Some("08E0E1E2E3E4E5E6E7E8E9EAEBECEDEE-0")
    );
    // The token stays out of Debug.
    assert!(!format!("{application:?}").contains("Tk1mY3Rh"));

    // The download request, signed over path + query as returned; the file
    // (gzip, no Wechatpay headers) served 7 bytes at a time.
    let gz = STANDARD.decode(s(&v, "gzip_base64")).unwrap();
    rig.at(
        s(download, "timestamp").parse().unwrap(),
        s(download, "nonce_str"),
    );
    rig.reply(Reply::new(200, gz.clone()).chunked(7));
    let mut d = rig.client.download_bill_file(&application).await.unwrap();
    let sent = rig.fake.sent();
    assert_eq!(sent.len(), 2);
    assert_signed_get(&sent[1], s(download, "url"), s(download, "authorization"));
    for (k, val) in download["request_headers"].as_object().unwrap() {
        assert_eq!(sent[1].header(k), val.as_str(), "header {k}");
    }
    assert_eq!(rig.fake.streamed.load(Ordering::SeqCst), 1, "streamed");
    let (bill, end) = drain(&mut d).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!(bill, s(&v, "file_text").as_bytes());
    assert_eq!(bill.len() as u64, v["file_bytes"].as_u64().unwrap());
    let summary = d.summary().unwrap();
    assert_eq!(summary.sha1, s(&v, "sha1_of_file"));
    assert_eq!(sha1_hex(&bill), s(&v, "sha1_of_file"));
    assert!(summary.gzip && summary.hash_checked);
    assert_eq!(summary.bytes, 1108);
    assert_eq!(v["expected"]["hash_matches_decompressed"], true);

    // The SHA-1 of the gzip bytes is not the hash.
    assert_eq!(sha1_hex(&gz), s(&v, "sha1_of_gzip_bytes"));
    assert_ne!(s(&v, "sha1_of_gzip_bytes"), application.hash_value());
    assert_eq!(v["expected"]["hash_matches_gzip_bytes"], false);
    let mut decoder = BillDecoder::new();
    assert_eq!(decoder.push(&gz).unwrap(), bill);
    assert!(matches!(
        decoder.finish(Some(s(&v, "sha1_of_gzip_bytes"))),
        Err(BillError::HashMismatch { .. })
    ));

    // The negative file: its hash differs, so it is refused.
    let negative = &v["negative"];
    assert_eq!(s(negative, "expected"), "hash_mismatch");
    let mut decoder = BillDecoder::new();
    decoder.push(s(negative, "file_text").as_bytes()).unwrap();
    match decoder.finish(Some(application.hash_value())) {
        Err(BillError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, s(&v, "sha1_of_file"));
            assert_eq!(actual, s(negative, "sha1_of_file"));
        }
        other => panic!("{other:?}"),
    }
    // … and through the client: every chunk comes, then the mismatch.
    rig.reply(Reply::new(200, gzip(s(negative, "file_text").as_bytes())).chunked(64));
    let mut d = rig.client.download_bill_file(&application).await.unwrap();
    let (bill, end) = drain(&mut d).await;
    assert_eq!(bill, s(negative, "file_text").as_bytes());
    let e = end.expect("a mismatch");
    assert!(
        matches!(&e, Error::Bill(BillError::HashMismatch { actual, .. }) if actual == s(negative, "sha1_of_file")),
        "{e:?}"
    );
    assert!(e.is_retryable());
    assert!(d.summary().is_none());
    assert!(matches!(
        d.next_chunk().await,
        Err(Error::Bill(BillError::Aborted))
    ));

    // The answer really is verified: one changed byte and it is refused.
    rig.at(
        s(apply, "timestamp").parse().unwrap(),
        s(apply, "nonce_str"),
    );
    let mut forged = Reply::new(200, s(answer, "body").replace("9e1118", "9e1119"));
    for (k, val) in answer["headers"].as_object().unwrap() {
        forged
            .headers
            .push((k.clone(), val.as_str().unwrap().to_owned()));
    }
    rig.reply(forged);
    let e = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unverified(_)), "{e:?}");
    assert_eq!(
        rig.fake.sent().len(),
        4,
        "nothing downloaded after a refused answer"
    );
}

#[tokio::test]
async fn fund_flow_bill_vector() {
    let rig = Rig::new();
    let v = rig.all["bills"][1].clone();
    assert_eq!(s(&v, "name"), "fund-flow-bill-basic");
    let apply = &v["apply_request"];
    let file = s(&v, "file_text").as_bytes();
    assert_eq!(sha1_hex(file), s(&v, "sha1_of_file"));
    assert_eq!(file.len() as u64, v["file_bytes"].as_u64().unwrap());

    rig.at(
        s(apply, "timestamp").parse().unwrap(),
        s(apply, "nonce_str"),
    );
    rig.reply(rig.applied(
        s(&v, "sha1_of_file"),
        "https://api.mch.weixin.qq.com/v3/billdownload/file?token=FUNDFLOW",
    ))
    .reply(Reply::new(200, file).chunked(64));
    let mut d = rig
        .client
        .fund_flow_bill(date(), AccountType::Basic, Compression::Plain)
        .await
        .unwrap();
    let sent = rig.fake.sent();
    assert_signed_get(&sent[0], s(apply, "url"), s(apply, "authorization"));
    assert_eq!(
        sent[1].url,
        "https://api.mch.weixin.qq.com/v3/billdownload/file?token=FUNDFLOW"
    );
    let (bill, end) = drain(&mut d).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!(bill, file);
    let summary = d.into_summary().unwrap();
    assert_eq!(summary.sha1, s(&v, "sha1_of_file"));
    assert!(!summary.gzip && summary.hash_checked);
}

// ---------------------------------------------------------------------------
// v3 over the chunked fake.

#[tokio::test]
async fn v3_plain_and_gzip_bills_stream_in_small_chunks() {
    let text = bill_text(3000);
    assert!(text.len() > 2 * MAX_CHUNK);
    let hash = sha1_hex(&text);
    let gz = gzip(&text);
    for chunk in [1, 7, 64] {
        for (compression, body) in [(Compression::Plain, &text), (Compression::Gzip, &gz)] {
            let rig = Rig::new();
            rig.reply(rig.applied(&hash, &format!("{BASE}/v3/billdownload/file?token=T")))
                .reply(Reply::new(200, body.clone()).chunked(chunk));
            let mut d = rig
                .client
                .trade_bill(date(), TradeBillType::Success, compression)
                .await
                .unwrap();
            let url = &rig.fake.sent()[0].url;
            let tar = if compression == Compression::Gzip {
                "&tar_type=GZIP"
            } else {
                ""
            };
            assert_eq!(
                url,
                &format!("{BASE}/v3/bill/tradebill?bill_date=2026-01-01&bill_type=SUCCESS{tar}")
            );
            let mut got = Vec::new();
            let mut chunks = 0;
            while let Some(c) = d.next_chunk().await.unwrap() {
                assert!(c.len() <= MAX_CHUNK);
                assert!(d.buffered() <= chunk.max(10), "{}", d.buffered());
                got.extend(c);
                chunks += 1;
            }
            assert_eq!(got, text, "chunk {chunk} {compression:?}");
            let summary = d.summary().unwrap();
            assert_eq!(summary.sha1, hash);
            assert_eq!(summary.gzip, compression == Compression::Gzip);
            assert_eq!(summary.bytes, text.len() as u64);
            assert!(chunks >= 3, "{chunks}");
            assert_eq!(d.next_chunk().await.unwrap(), None, "stays finished");
        }
    }
}

#[tokio::test]
async fn gzip_is_recognised_by_its_magic_not_by_what_was_asked() {
    let text = bill_text(10);
    let rig = Rig::new();
    rig.reply(rig.applied(
        &sha1_hex(&text),
        &format!("{BASE}/v3/billdownload/file?token=T"),
    ))
    .reply(Reply::new(200, gzip(&text)).chunked(5));
    let d = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    let (bill, summary) = d.read_to_end(1 << 20).await.unwrap();
    assert_eq!(bill, text);
    assert!(summary.gzip);
}

#[tokio::test]
async fn truncated_gzip_and_broken_bodies_are_errors() {
    let text = bill_text(200);
    let gz = gzip(&text);
    let url = format!("{BASE}/v3/billdownload/file?token=T");
    for cut in [5, 20, gz.len() / 2, gz.len() - 4] {
        let rig = Rig::new();
        rig.reply(rig.applied(&sha1_hex(&text), &url))
            .reply(Reply::new(200, gz[..cut].to_vec()).chunked(7));
        let mut d = rig
            .client
            .trade_bill(date(), TradeBillType::All, Compression::Gzip)
            .await
            .unwrap();
        let (_, end) = drain(&mut d).await;
        let e = end.expect("truncated");
        assert!(
            matches!(e, Error::Bill(BillError::Gzip(_))),
            "cut {cut}: {e:?}"
        );
        assert!(e.is_retryable() && !e.outcome_unknown());
        assert!(matches!(
            d.next_chunk().await,
            Err(Error::Bill(BillError::Aborted))
        ));
    }

    // The connection breaks mid-body: a transport error, never a clean end.
    let rig = Rig::new();
    let mut broken = Reply::new(200, text.clone()).chunked(64);
    broken.fail_after = Some(640);
    rig.reply(rig.applied(&sha1_hex(&text), &url)).reply(broken);
    let mut d = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    let (bill, end) = drain(&mut d).await;
    assert_eq!(bill, text[..640]);
    assert!(matches!(end, Some(Error::Transport { .. })), "{end:?}");
}

#[tokio::test]
async fn a_hash_mismatch_ends_the_download_with_an_error() {
    let text = bill_text(50);
    let rig = Rig::new();
    let wrong = sha1_hex(b"another bill");
    rig.reply(rig.applied(
        &wrong.to_uppercase(),
        &format!("{BASE}/v3/billdownload/file?token=T"),
    ))
    .reply(Reply::new(200, gzip(&text)).chunked(64));
    let mut d = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap();
    assert_eq!(d.expected_sha1(), Some(wrong.to_uppercase().as_str()));
    let (bill, end) = drain(&mut d).await;
    assert_eq!(bill, text, "every byte came; only the end says no");
    match end {
        Some(Error::Bill(BillError::HashMismatch { expected, actual })) => {
            assert_eq!(expected, wrong.to_uppercase());
            assert_eq!(actual, sha1_hex(&text));
        }
        other => panic!("{other:?}"),
    }

    // The same hash in upper case matches (compared case-insensitively).
    let rig = Rig::new();
    rig.reply(rig.applied(
        &sha1_hex(&text).to_uppercase(),
        &format!("{BASE}/v3/billdownload/file?token=T"),
    ))
    .reply(Reply::new(200, text.clone()).chunked(64));
    let d = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    assert!(d.read_to_end(1 << 20).await.is_ok());
}

#[tokio::test]
async fn statement_creating_and_no_statement_exist() {
    let err = |code: &str| json!({"code": code, "message": "m"}).to_string();
    for status in [400, 404] {
        let rig = Rig::new();
        rig.reply(rig.signed(status, &err("STATEMENT_CREATING")));
        let e = rig
            .client
            .trade_bill(date(), TradeBillType::All, Compression::Gzip)
            .await
            .unwrap_err();
        assert!(e.is_bill_not_ready() && !e.is_no_bill(), "{e:?}");
        assert!(matches!(&e, Error::Bill(BillError::NotReady { detail }) if detail == "m"));
        assert!(e.is_retryable());
        assert_eq!(rig.fake.sent().len(), 1, "nothing to download");
    }

    let rig = Rig::new();
    rig.reply(rig.signed(400, &err("NO_STATEMENT_EXIST")));
    let e = rig
        .client
        .fund_flow_bill(date(), AccountType::Fees, Compression::Gzip)
        .await
        .unwrap_err();
    assert!(e.is_no_bill() && !e.is_bill_not_ready(), "{e:?}");
    assert!(!e.is_retryable());
    let sent = rig.fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].url,
        format!("{BASE}/v3/bill/fundflowbill?bill_date=2026-01-01&account_type=FEES&tar_type=GZIP")
    );

    // Other codes stay verified API errors.
    let rig = Rig::new();
    rig.reply(rig.signed(400, &err("PARAM_ERROR")));
    let e = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap_err();
    match &e {
        Error::Api(a) => assert!(a.verified && a.code == "PARAM_ERROR" && a.status == 400),
        other => panic!("{other:?}"),
    }

    // An unsigned "no bill" is not believed: outcome unknown.
    let rig = Rig::new();
    rig.reply(Reply::new(400, err("NO_STATEMENT_EXIST")));
    let e = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Transport { .. }) && !e.is_no_bill(),
        "{e:?}"
    );

    // A hash other than SHA1 is refused before anything is downloaded.
    let rig = Rig::new();
    let body = json!({"hash_type": "SM3", "hash_value": "ab", "download_url": format!("{BASE}/x")});
    rig.reply(rig.signed(200, &body.to_string()));
    let e = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Bill(BillError::UnsupportedHash { hash_type }) if hash_type == "SM3"),
        "{e:?}"
    );
    assert_eq!(rig.fake.sent().len(), 1);
}

#[tokio::test]
async fn a_foreign_download_url_is_refused_and_nothing_is_sent_to_it() {
    for url in [
        "https://evil.example/v3/billdownload/file?token=T",
        "http://api.mch.weixin.qq.com/v3/billdownload/file?token=T",
        "https://api2.mch.weixin.qq.com/v3/billdownload/file?token=T",
        "https://api.mch.weixin.qq.com:8443/v3/billdownload/file?token=T",
        "https://api.mch.weixin.qq.com@evil.example/v3/billdownload/file?token=T",
        "/v3/billdownload/file?token=T",
    ] {
        let rig = Rig::new();
        rig.reply(rig.applied(&sha1_hex(b""), url))
            .reply(Reply::new(200, "must not be fetched"));
        let e = rig
            .client
            .trade_bill(date(), TradeBillType::All, Compression::Gzip)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Bill(BillError::ForeignDownloadUrl)),
            "{url}: {e:?}"
        );
        assert!(!e.is_retryable());
        assert!(!e.to_string().contains("token"), "{e}");
        let sent = rig.fake.sent();
        assert_eq!(sent.len(), 1, "{url}: only the application was sent");
        assert!(sent[0].url.contains("/v3/bill/tradebill"));
        assert_eq!(rig.fake.streamed.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn the_download_answer_is_not_verified_and_its_errors_are_typed() {
    let text = bill_text(5);
    let url = format!("{BASE}/v3/billdownload/file?token=T");

    // Bogus Wechatpay headers on the file: ignored (the hash decides).
    let rig = Rig::new();
    let mut file = Reply::new(200, text.clone()).chunked(7);
    file.headers = vec![
        ("Wechatpay-Signature".into(), "not-a-signature".into()),
        ("Wechatpay-Timestamp".into(), "1".into()),
    ];
    rig.reply(rig.applied(&sha1_hex(&text), &url)).reply(file);
    let d = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    assert_eq!(d.read_to_end(1 << 20).await.unwrap().0, text);

    // An unsigned v3 error body (an expired token, say): an unverified API error.
    let rig = Rig::new();
    rig.reply(rig.applied(&sha1_hex(&text), &url))
        .reply(Reply::new(
            400,
            json!({"code": "INVALID_REQUEST", "message": "token expired"}).to_string(),
        ));
    let e = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap_err();
    match &e {
        Error::Api(a) => {
            assert_eq!(
                (a.status, a.code.as_str(), a.verified),
                (400, "INVALID_REQUEST", false)
            );
            assert_eq!(a.message, "token expired");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_definite_refusal());

    // A signed error answer is verified like any other.
    let rig = Rig::new();
    rig.reply(rig.applied(&sha1_hex(&text), &url));
    let signed_error = rig.signed(
        404,
        &json!({"code": "RESOURCE_NOT_EXISTS", "message": "x"}).to_string(),
    );
    rig.reply(signed_error);
    match rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap_err()
    {
        Error::Api(a) => assert!(a.verified && a.status == 404),
        other => panic!("{other:?}"),
    }

    // A proxy's 502 page: a transport error.
    let rig = Rig::new();
    rig.reply(rig.applied(&sha1_hex(&text), &url))
        .reply(Reply::new(502, "<html>bad gateway</html>"));
    let e = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Transport { .. }) && e.is_retryable(),
        "{e:?}"
    );
}

#[tokio::test]
async fn box_transport_forwards_streaming() {
    let fake = Chunky::default();
    fake.reply(Reply::new(200, b"0123456789".to_vec()).chunked(3));
    let boxed = BoxTransport::new(fake.clone());
    let mut resp = boxed
        .send_streaming(HttpRequest::get("http://wechat.test/x"))
        .await
        .unwrap();
    let mut sizes = Vec::new();
    while let Some(c) = resp.body.next_chunk().await.unwrap() {
        sizes.push(c.len());
    }
    assert_eq!(
        sizes,
        [3, 3, 3, 1],
        "the fake's own chunks, not one buffered body"
    );
    assert_eq!(fake.streamed.load(Ordering::SeqCst), 1);

    // The default of a transport that only buffers: one chunk.
    let rec = Recorder::default();
    rec.reply(Ok(HttpResponse::new(200, "0123456789")));
    let mut resp = rec
        .send_streaming(HttpRequest::get("http://wechat.test/x"))
        .await
        .unwrap();
    assert_eq!(
        resp.body.next_chunk().await.unwrap(),
        Some(b"0123456789".to_vec())
    );
    assert_eq!(resp.body.next_chunk().await.unwrap(), None);
}

// ---------------------------------------------------------------------------
// v2 `downloadbill`.

fn v2_client<T: Transport>(transport: T) -> V2Client<T> {
    V2Client::with_transport(support::config(), transport)
}

/// The fields of the request sent, checked: exactly these, correctly signed.
fn assert_v2_request(req: &HttpRequest, tar_type: Option<&str>, sign_type: SignType) -> Params {
    assert_eq!(req.method, HttpMethod::Post);
    assert!(!req.client_cert);
    let body = req.body.as_deref().unwrap();
    let p = xml::parse(body.as_bytes()).unwrap();
    let mut names: Vec<&str> = p.iter().map(|(k, _)| k).collect();
    names.sort_unstable();
    let mut expected = vec![
        "appid",
        "bill_date",
        "bill_type",
        "mch_id",
        "nonce_str",
        "sign",
        "sign_type",
    ];
    if tar_type.is_some() {
        expected.push("tar_type");
    }
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(p.get("appid"), Some(support::APPID));
    assert_eq!(p.get("mch_id"), Some(support::MCH_ID));
    assert_eq!(p.get("bill_date"), Some("20260101"));
    assert_eq!(p.get("tar_type"), tar_type);
    assert_eq!(p.get("sign_type"), Some(sign_type.as_str()));
    assert_eq!(p.get("nonce_str").unwrap().len(), 32);
    if sign_type == SignType::Md5 {
        let pairs: Vec<(&str, &str)> = p.iter().collect();
        assert_eq!(p.get("sign"), Some(md5_sign(&pairs, KEY).as_str()));
    }
    assert!(wxpay_core::sign::verify(&p, &wxpay_core::ApiKey::new(KEY), sign_type).is_ok());
    p
}

#[tokio::test]
async fn v2_sends_exactly_the_signed_request() {
    // Plain: through a buffering transport (the default send_streaming).
    let text = bill_text(20);
    let rec = Recorder::default();
    rec.reply(Ok(HttpResponse::new(200, text.clone())));
    let d = v2_client(rec.clone())
        .download_bill(date(), TradeBillType::Refund, Compression::Plain)
        .await
        .unwrap();
    let (bill, summary) = d.read_to_end(1 << 20).await.unwrap();
    assert_eq!(bill, text);
    assert!(!summary.hash_checked && !summary.gzip);
    assert_eq!(summary.sha1, sha1_hex(&text));
    let sent = rec.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, "http://wechat.test/pay/downloadbill");
    let p = assert_v2_request(&sent[0], None, SignType::Md5);
    assert_eq!(p.get("bill_type"), Some("REFUND"));
    // The exact XML: sorted, digits bare, the rest CDATA.
    let cdata = |k: &str, v: &str| format!("<{k}><![CDATA[{v}]]></{k}>");
    let expected = format!(
        "<xml>{}<bill_date>20260101</bill_date>{}<mch_id>{}</mch_id>{}{}{}</xml>",
        cdata("appid", support::APPID),
        cdata("bill_type", "REFUND"),
        support::MCH_ID,
        cdata("nonce_str", p.get("nonce_str").unwrap()),
        cdata("sign", p.get("sign").unwrap()),
        cdata("sign_type", "MD5"),
    );
    assert_eq!(sent[0].body.as_deref(), Some(expected.as_str()));

    // Gzip, HMAC-SHA256, under the sandbox prefix, streamed in 7-byte chunks.
    let fake = Chunky::default();
    fake.reply(Reply::new(200, gzip(&text)).chunked(7));
    let config = support::config()
        .with_sign_type(SignType::HmacSha256)
        .with_api_base("http://wechat.test/sandboxnew");
    let d = V2Client::with_transport(config, fake.clone())
        .download_bill(date(), TradeBillType::All, Compression::Gzip)
        .await
        .unwrap();
    let (bill, summary) = d.read_to_end(1 << 20).await.unwrap();
    assert_eq!(bill, text);
    assert!(summary.gzip && !summary.hash_checked);
    let sent = fake.sent();
    assert_eq!(
        sent[0].url,
        "http://wechat.test/sandboxnew/pay/downloadbill"
    );
    let p = assert_v2_request(&sent[0], Some("GZIP"), SignType::HmacSha256);
    assert_eq!(p.get("bill_type"), Some("ALL"));
    assert_eq!(p.get("sign").unwrap().len(), 64);
    assert_eq!(fake.streamed.load(Ordering::SeqCst), 1);
}

fn fail_xml(return_msg: &str) -> Vec<u8> {
    format!(
        "\u{feff}\r\n  <xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[{return_msg}]]></return_msg><error_code>20002</error_code></xml>"
    )
    .into_bytes()
}

#[tokio::test]
async fn v2_xml_failures_however_the_answer_is_split() {
    for chunk in [1, 3, 7, 64, usize::MAX] {
        for (msg, check) in [
            ("Bill Creating", "not_ready"),
            ("No Bill Exist", "no_bill"),
            ("NO Bill Exist", "no_bill"),
            ("invalid bill_type", "protocol"),
            ("SYSTEMERROR", "retryable"),
            ("UnCompressGZip Error", "retryable"),
        ] {
            let fake = Chunky::default();
            fake.reply(Reply::new(200, fail_xml(msg)).chunked(chunk));
            let e = v2_client(fake.clone())
                .download_bill(date(), TradeBillType::All, Compression::Gzip)
                .await
                .unwrap_err();
            let ok = match check {
                "not_ready" => e.is_bill_not_ready() && e.is_retryable(),
                "no_bill" => e.is_no_bill() && !e.is_retryable(),
                "protocol" => {
                    matches!(&e, Error::Protocol { return_msg } if return_msg == msg)
                        && !e.is_retryable()
                }
                _ => {
                    matches!(&e, Error::Protocol { return_msg } if return_msg == msg)
                        && e.is_retryable()
                }
            };
            assert!(ok, "{msg} in chunks of {chunk}: {e:?}");
        }
    }
}

#[tokio::test]
async fn v2_bills_that_only_look_like_xml_at_first_are_kept_whole() {
    // A BOM, whitespace, then "<x" that turns out not to be "<xml>": a bill,
    // every byte kept (BOM included: the bytes are what they are).
    let mut text = b"\xEF\xBB\xBF \r\n<xm".to_vec();
    text.extend(bill_text(30));
    for chunk in [1, 2, 5] {
        let fake = Chunky::default();
        fake.reply(Reply::new(200, text.clone()).chunked(chunk));
        let d = v2_client(fake)
            .download_bill(date(), TradeBillType::All, Compression::Plain)
            .await
            .unwrap();
        assert_eq!(d.read_to_end(1 << 20).await.unwrap().0, text);
    }
    // Whitespace beyond the sniff limit: decided as a bill, not held longer.
    let mut spaces = vec![b' '; SNIFF_LIMIT + 10];
    spaces.extend(b"<xml>not an error after all");
    let fake = Chunky::default();
    fake.reply(Reply::new(200, spaces.clone()).chunked(100));
    let d = v2_client(fake)
        .download_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    assert!(d.buffered() <= SNIFF_LIMIT + 100);
    assert_eq!(d.read_to_end(1 << 20).await.unwrap().0, spaces);
    // A tiny body is a (tiny) bill.
    let rec = Recorder::default();
    rec.reply(Ok(HttpResponse::new(200, "<x")));
    let d = v2_client(rec)
        .download_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    assert_eq!(d.read_to_end(10).await.unwrap().0, b"<x");
    // Not 200: a transport error.
    let rec = Recorder::default();
    rec.reply(Ok(HttpResponse::new(503, "busy")));
    let e = v2_client(rec)
        .download_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------
// Memory.

#[tokio::test]
async fn fifty_megabytes_stream_through_in_bounded_pieces() {
    const LEN: u64 = 50 * 1024 * 1024;
    // Larger than MAX_CHUNK: the pipeline splits it.
    const TRANSPORT_CHUNK: usize = 100_000;
    // The expected hash, computed chunk by chunk like the body is made.
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut at = 0;
    while at < LEN {
        let n = (1 << 20).min(LEN - at) as usize;
        ctx.update(&pattern_at(at, n));
        at += n as u64;
    }
    let hash: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let rig = Rig::new();
    rig.reply(rig.applied(&hash, &format!("{BASE}/v3/billdownload/file?token=T")));
    let mut file = Reply::new(200, Vec::new()).chunked(TRANSPORT_CHUNK);
    file.body = Body::Generated(LEN);
    rig.reply(file);
    let mut d = rig
        .client
        .trade_bill(date(), TradeBillType::All, Compression::Plain)
        .await
        .unwrap();
    let (mut total, mut largest, mut most_buffered) = (0u64, 0, 0);
    while let Some(chunk) = d.next_chunk().await.unwrap() {
        assert!(chunk.len() <= MAX_CHUNK);
        assert!(chunk == pattern_at(total, chunk.len()), "bytes at {total}");
        largest = largest.max(chunk.len());
        most_buffered = most_buffered.max(d.buffered());
        total += chunk.len() as u64;
        assert_eq!(d.bytes(), total);
    }
    assert_eq!(total, LEN);
    assert_eq!(largest, MAX_CHUNK);
    assert!(most_buffered <= TRANSPORT_CHUNK, "{most_buffered}");
    let summary = d.summary().unwrap();
    assert_eq!((summary.bytes, summary.sha1.as_str()), (LEN, hash.as_str()));
}

#[tokio::test]
async fn a_gzip_bomb_comes_out_in_bounded_chunks() {
    let zeros = vec![0u8; 1 << 20];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 4 * 1024, "{}", bomb.len());
    // Served in one piece: the decoder, not the transport, bounds the output.
    let mut d = BillDownload::from_body(
        BodyStream::from_bytes(bomb.clone()),
        Some(&sha1_hex(&zeros)),
    );
    let (mut total, mut chunks) = (0, 0);
    while let Some(chunk) = d.next_chunk().await.unwrap() {
        assert!(chunk.len() <= MAX_CHUNK, "{}", chunk.len());
        assert!(chunk.iter().all(|&b| b == 0));
        assert!(d.buffered() <= bomb.len());
        total += chunk.len();
        chunks += 1;
    }
    assert_eq!(total, zeros.len());
    assert!(chunks >= zeros.len() / MAX_CHUNK, "{chunks}");
    assert!(d.summary().unwrap().gzip);
}

// ---------------------------------------------------------------------------
// The gateway seam.

#[tokio::test]
async fn gateways_download_the_all_bill_gzipped() {
    let text = bill_text(3);
    let fake = Chunky::default();
    fake.reply(Reply::new(200, gzip(&text)).chunked(64));
    let gateway = V2Gateway::new(v2_client(fake.clone()).boxed());
    let d = gateway.trade_bill(date()).await.unwrap();
    assert_eq!(d.read_to_end(1 << 20).await.unwrap().0, text);
    let p = assert_v2_request(&fake.sent()[0], Some("GZIP"), SignType::Md5);
    assert_eq!(p.get("bill_type"), Some("ALL"));

    let rig = Rig::new();
    rig.reply(rig.applied(
        &sha1_hex(&text),
        &format!("{BASE}/v3/billdownload/file?token=T"),
    ))
    .reply(Reply::new(200, gzip(&text)).chunked(64));
    let gateway = V3Gateway::new(rig.client.clone().boxed());
    let d = gateway.trade_bill(date()).await.unwrap();
    let (bill, summary) = d.read_to_end(1 << 20).await.unwrap();
    assert_eq!(bill, text);
    assert!(summary.hash_checked);
    assert_eq!(
        rig.fake.sent()[0].url,
        format!("{BASE}/v3/bill/tradebill?bill_date=2026-01-01&bill_type=ALL&tar_type=GZIP")
    );
}

/// A gateway that implements only what the trait requires.
struct Bare;

#[wxpay_core::async_trait]
impl Gateway for Bare {
    fn api(&self) -> wxpay_core::flow::Api {
        wxpay_core::flow::Api::V2
    }
    fn merchant(&self) -> (&str, &str) {
        ("wx", "1")
    }
    fn check(
        &self,
        _: &wxpay_core::messages::UnifiedOrderRequest,
    ) -> Result<(), wxpay_core::FieldError> {
        Ok(())
    }
    async fn prepay(
        &self,
        _: &wxpay_core::messages::UnifiedOrderRequest,
    ) -> Result<wxpay_core::flow::gateway::Prepaid, Error> {
        unreachable!("not called")
    }
    fn request_payment(
        &self,
        _: &wxpay_core::flow::Order,
        _: &str,
    ) -> Result<wxpay_core::flow::RequestPayment, Error> {
        unreachable!("not called")
    }
    async fn query(
        &self,
        _: &wxpay_core::OutTradeNo,
    ) -> Result<Option<wxpay_core::flow::gateway::TradeAnswer>, Error> {
        unreachable!("not called")
    }
    async fn close(
        &self,
        _: &wxpay_core::OutTradeNo,
    ) -> Result<wxpay_core::flow::gateway::Closed, Error> {
        unreachable!("not called")
    }
    fn can_refund(&self) -> bool {
        false
    }
    async fn refund(
        &self,
        _: &wxpay_core::messages::RefundRequest,
    ) -> Result<wxpay_core::flow::gateway::RefundAccepted, Error> {
        unreachable!("not called")
    }
    async fn refunds(
        &self,
        _: &wxpay_core::flow::Order,
    ) -> Result<Vec<wxpay_core::flow::decide::RefundReport>, Error> {
        unreachable!("not called")
    }
}

#[tokio::test]
async fn a_gateway_without_bills_says_so() {
    let e = Bare.trade_bill(date()).await.unwrap_err();
    assert!(matches!(e, Error::Bill(BillError::Unsupported)), "{e:?}");
    assert!(!e.is_retryable() && !e.is_no_bill() && !e.is_bill_not_ready());
}

#[tokio::test]
async fn reqwest_transport_streams_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first_seen, wait_first) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "request cut short");
            got.extend_from_slice(&buf[..n]);
        }
        sock.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nfirst\r\n",
        )
        .await
        .unwrap();
        sock.flush().await.unwrap();
        // The rest only once the client has the first chunk in hand: a
        // transport that buffered the body would never get here.
        wait_first.await.unwrap();
        sock.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        String::from_utf8(got).unwrap()
    });
    let transport = wxpay_core::ReqwestTransport::with_timeouts(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let mut resp = transport
        .send_streaming(
            HttpRequest::get(format!("http://{addr}/v3/billdownload/file?token=T"))
                .with_header("Authorization", "WECHATPAY2-SHA256-RSA2048 x"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body.next_chunk().await.unwrap(),
        Some(b"first".to_vec())
    );
    first_seen.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(c) = resp.body.next_chunk().await.unwrap() {
        rest.extend(c);
    }
    assert_eq!(rest, b"second");
    let request = server.await.unwrap();
    assert!(
        request.starts_with("GET /v3/billdownload/file?token=T HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: wechatpay2-sha256-rsa2048 x")
    );
}
