//! API v3 crypto benchmarks, each library path beside its floor — the bare
//! aws-lc-rs operations it cannot avoid, on the same bytes — in the same
//! group, so that each pair runs back to back:
//!
//! - `v3_sign`: `Credential::authorization` of the vectors' JSAPI prepay
//!   against one bare RSA-2048 PKCS#1 v1.5 SHA-256 signature of its message;
//! - `v3_answer`: `ResponseValidator::validate` of signed 200 answers
//!   against one bare RSA verification of their messages;
//! - `v3_notify`: `NotifyHandler::parse` and `Client::verify_notify` of the
//!   vectors' `TRANSACTION.SUCCESS` notify against one bare RSA verification
//!   plus one bare AES-256-GCM open of its ciphertext;
//! - `v3_checkout`: `Client::jsapi_prepay` over an in-memory transport that
//!   answers a pre-signed 200, plus `Client::pay_params`, against two bare
//!   signatures and one bare verification.
//!
//! Keys and messages: `tests/data/vectors-v3.json` (the testkit carries the
//! same keys). Run:
//! `cargo bench -p wxpay-core --bench v3 --all-features -- --warm-up-time 2 --measurement-time 5`.
//! With `WXPAY_BENCH_PAIRED=1` each group is followed by an interleaved pair
//! check (`paired`): on a loaded machine the criterion runs of a floor
//! and its library path, seconds apart, see different load; the pair check's
//! ratios do not. Figures: BENCHMARKS.md.

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Instant,
};

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey},
    rand::SystemRandom,
    rsa::KeyPair as RsaKeyPair,
    signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use serde_json::Value;
use wxpay_core::{
    BoxError, Fen, HttpRequest, HttpResponse, Transport,
    testkit::v3::{self as kit, Wechat},
    v3::{
        self, ApiV3Key, CertificateVerifier, Client, Credential, MerchantKey, NotifyEvent,
        NotifyHandler, NotifyValidator, PlatformCertificate, PrepayRequest, PublicKey,
        PublicKeyVerifier, ResponseValidator, WechatpayHeaders,
    },
};

/// Whether to run the interleaved pair check after each group
/// (`WXPAY_BENCH_PAIRED=1`).
fn paired_enabled() -> bool {
    std::env::var_os("WXPAY_BENCH_PAIRED").is_some_and(|v| v != "0")
}

/// The pair check: `ROUNDS` rounds, each timing one batch of `floor` and one
/// of `lib` back to back (order alternating), so that both see the same
/// load (and a preempted round spoils one ratio, not the estimate). Prints the median of the per-round ratios (with its quartiles) and
/// the ratio of the two fastest batches.
fn paired(name: &str, floor: &mut dyn FnMut(), lib: &mut dyn FnMut()) {
    const ROUNDS: usize = 201;
    let per_iter = |f: &mut dyn FnMut(), n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    // Warm both up, then batches of ≈ 2 ms of floor: short enough that
    // most rounds run unpreempted on a loaded machine.
    per_iter(floor, 3);
    per_iter(lib, 3);
    let once = per_iter(floor, 10);
    let n = ((0.002 / once) as u32).max(1);
    let (mut ratios, mut floors, mut libs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (f, l) = if round % 2 == 0 {
            let f = per_iter(floor, n);
            (f, per_iter(lib, n))
        } else {
            let l = per_iter(lib, n);
            (per_iter(floor, n), l)
        };
        ratios.push(l / f);
        floors.push(f);
        libs.push(l);
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(f64::total_cmp);
    sort(&mut ratios);
    sort(&mut floors);
    sort(&mut libs);
    let q = |v: &[f64], k: usize| v[k * (v.len() - 1) / 4];
    println!(
        "paired {name}: median ratio {:.3} (quartiles {:.3}–{:.3}), fastest batches {:.3} ({} vs {} per iteration; {ROUNDS} rounds of {n})",
        q(&ratios, 2),
        q(&ratios, 1),
        q(&ratios, 3),
        libs[0] / floors[0],
        fmt_secs(libs[0]),
        fmt_secs(floors[0]),
    );
}

fn fmt_secs(t: f64) -> String {
    if t >= 1e-3 {
        format!("{:.3} ms", t * 1e3)
    } else {
        format!("{:.2} µs", t * 1e6)
    }
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("../tests/data/vectors-v3.json")).expect("vectors are JSON")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key}"))
}

/// The DER inside a one-object PEM text.
fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(b64).expect("PEM body is Base64")
}

/// A vector's `Wechatpay-*` headers, as the validators read them.
fn headers(v: &Value) -> WechatpayHeaders<'_> {
    let h = &v["headers"];
    WechatpayHeaders::from_fn(|name| h[name].as_str())
}

/// A bare aws-lc-rs signer: the floor under every signature.
struct BareSigner {
    pair: RsaKeyPair,
    rng: SystemRandom,
    out: Vec<u8>,
}

impl BareSigner {
    fn new(pem: &str) -> BareSigner {
        let pair = RsaKeyPair::from_pkcs8(&pem_der(pem)).expect("PKCS#8 RSA key");
        let out = vec![0; pair.public_modulus_len()];
        BareSigner {
            pair,
            rng: SystemRandom::new(),
            out,
        }
    }

    fn sign(&mut self, message: &[u8]) -> &[u8] {
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut self.out)
            .expect("RSA signing");
        &self.out
    }
}

fn parsed(pem: &str) -> ParsedPublicKey {
    ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pem_der(pem)).expect("RSA public key")
}

/// Polls a future that must finish at once (nothing here waits: the
/// transport answers from memory, no certificate is downloaded).
fn now<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the future waited on something"),
    }
}

/// The request signature: library vs one bare RSA signature.
fn request_sign(c: &mut Criterion, vec: &Value) {
    let keys = &vec["keys"]["merchant"];
    let r = &vec["request_sign"][0];
    assert_eq!(s(r, "name"), "jsapi-prepay");
    let credential = Credential::new(
        s(keys, "mchid"),
        s(keys, "serial_no"),
        MerchantKey::from_pem(s(keys, "private_key_pem")).unwrap(),
    );
    let (method, url, ts, nonce, body) = (
        s(r, "method"),
        s(r, "canonical_url"),
        s(r, "timestamp"),
        s(r, "nonce_str"),
        s(r, "body").as_bytes(),
    );
    let message = v3::request_message(method, url, ts, nonce, body);
    assert_eq!(message, s(r, "message").as_bytes());
    let mut bare = BareSigner::new(s(keys, "private_key_pem"));
    assert_eq!(STANDARD.encode(bare.sign(&message)), s(r, "signature"));
    assert_eq!(
        credential
            .authorization(method, url, ts, nonce, body)
            .unwrap(),
        s(r, "authorization")
    );

    let mut g = c.benchmark_group("v3_sign");
    g.bench_function("floor_rsa_sign", |b| {
        b.iter(|| bare.sign(black_box(&message)).len())
    });
    g.bench_function("authorization", |b| {
        b.iter(|| {
            credential
                .authorization(method, url, ts, nonce, black_box(body))
                .unwrap()
        })
    });
    g.finish();
    if paired_enabled() {
        paired(
            "v3_sign authorization / floor_rsa_sign",
            &mut || {
                black_box(bare.sign(black_box(&message)));
            },
            &mut || {
                black_box(
                    credential
                        .authorization(method, url, ts, nonce, black_box(body))
                        .unwrap(),
                );
            },
        );
    }
}

/// Answer verification: the jsapi-prepay 200 (platform certificate) and
/// a query 200 (public key), each beside the bare verification of its
/// message.
fn answer_verify(c: &mut Criterion, vec: &Value) {
    let keys = &vec["keys"];
    let prepay = &vec["response_verify"][0];
    let query = &vec["response_verify"][1];
    assert_eq!(s(prepay, "name"), "prepay-200-platform-cert");
    assert_eq!(s(query, "name"), "query-200-public-key");

    let cert = PlatformCertificate::from_pem(s(&keys["platform"], "certificate_pem")).unwrap();
    let by_cert = ResponseValidator::new(CertificateVerifier::with_certificates([cert]));
    let pk = &keys["wechatpay_public_key"];
    let by_key = ResponseValidator::new(PublicKeyVerifier::new(
        s(pk, "key_id"),
        PublicKey::from_pem(s(pk, "public_key_pem")).unwrap(),
    ));

    let platform_spki = pem_der(s(&keys["platform"], "public_key_pem"));
    let unparsed = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &platform_spki);
    let platform = parsed(s(&keys["platform"], "public_key_pem"));
    let wechat_key = parsed(s(pk, "public_key_pem"));

    let case = |v: &Value| {
        let message = s(v, "message").as_bytes().to_vec();
        let signature = STANDARD
            .decode(s(&v["headers"], "Wechatpay-Signature"))
            .unwrap();
        let now = v["now"].as_i64().unwrap();
        let status = u16::try_from(v["status"].as_u64().unwrap()).unwrap();
        (message, signature, now, status)
    };
    let (p_msg, p_sig, p_now, p_status) = case(prepay);
    let (q_msg, q_sig, q_now, q_status) = case(query);
    let (p_head, q_head) = (headers(prepay), headers(query));
    let (p_body, q_body) = (s(prepay, "body").as_bytes(), s(query, "body").as_bytes());
    by_cert.validate(p_status, &p_head, p_body, p_now).unwrap();
    by_key.validate(q_status, &q_head, q_body, q_now).unwrap();
    unparsed.verify(&p_msg, &p_sig).unwrap();
    platform.verify_sig(&p_msg, &p_sig).unwrap();
    wechat_key.verify_sig(&q_msg, &q_sig).unwrap();

    let mut g = c.benchmark_group("v3_answer");
    g.bench_function("prepay/floor_unparsed_verify", |b| {
        b.iter(|| unparsed.verify(black_box(&p_msg), &p_sig).is_ok())
    });
    g.bench_function("prepay/floor_parsed_verify", |b| {
        b.iter(|| platform.verify_sig(black_box(&p_msg), &p_sig).is_ok())
    });
    g.bench_function("prepay/validate_certificate", |b| {
        b.iter(|| {
            by_cert
                .validate(p_status, &p_head, black_box(p_body), p_now)
                .is_ok()
        })
    });
    g.bench_function("query/floor_parsed_verify", |b| {
        b.iter(|| wechat_key.verify_sig(black_box(&q_msg), &q_sig).is_ok())
    });
    g.bench_function("query/validate_public_key", |b| {
        b.iter(|| {
            by_key
                .validate(q_status, &q_head, black_box(q_body), q_now)
                .is_ok()
        })
    });
    g.finish();
    if paired_enabled() {
        paired(
            "v3_answer prepay/validate_certificate / prepay/floor_parsed_verify",
            &mut || assert!(platform.verify_sig(black_box(&p_msg), &p_sig).is_ok()),
            &mut || {
                assert!(
                    by_cert
                        .validate(p_status, &p_head, black_box(p_body), p_now)
                        .is_ok()
                )
            },
        );
        paired(
            "v3_answer prepay/floor_unparsed_verify / prepay/floor_parsed_verify",
            &mut || assert!(platform.verify_sig(black_box(&p_msg), &p_sig).is_ok()),
            &mut || assert!(unparsed.verify(black_box(&p_msg), &p_sig).is_ok()),
        );
        paired(
            "v3_answer query/validate_public_key / query/floor_parsed_verify",
            &mut || assert!(wechat_key.verify_sig(black_box(&q_msg), &q_sig).is_ok()),
            &mut || {
                assert!(
                    by_key
                        .validate(q_status, &q_head, black_box(q_body), q_now)
                        .is_ok()
                )
            },
        );
    }
}

/// The payment notify: verify + decrypt (+ parse) against one bare
/// verification and one bare AES-256-GCM open.
fn notify(c: &mut Criterion, vec: &Value) {
    let keys = &vec["keys"];
    let n = &vec["notify_request"][0];
    assert_eq!(s(n, "name"), "payment-notify-public-key");
    let body = s(n, "body").as_bytes();
    let head = headers(n);
    let now_s = n["now"].as_i64().unwrap();
    let pk = &keys["wechatpay_public_key"];
    let apiv3 = s(keys, "apiv3_key");

    let handler = NotifyHandler::new(
        NotifyValidator::new(PublicKeyVerifier::new(
            s(pk, "key_id"),
            PublicKey::from_pem(s(pk, "public_key_pem")).unwrap(),
        )),
        ApiV3Key::new(apiv3).unwrap(),
    );
    let client = Client::with_transport(kit::client_config(kit::APPID), Canned::unused())
        .unwrap()
        .with_clock(Arc::new(move || now_s));

    // The floor's inputs, decoded once.
    let message = s(n, "message").as_bytes().to_vec();
    let signature = STANDARD
        .decode(s(&n["headers"], "Wechatpay-Signature"))
        .unwrap();
    let key = parsed(s(pk, "public_key_pem"));
    let envelope: Value = serde_json::from_slice(body).unwrap();
    let resource = &envelope["resource"];
    let sealed = STANDARD.decode(s(resource, "ciphertext")).unwrap();
    let aad = s(resource, "associated_data").as_bytes().to_vec();
    let nonce: [u8; 12] = s(resource, "nonce").as_bytes().try_into().unwrap();
    let aes = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, apiv3.as_bytes()).unwrap());
    let mut buf = sealed.clone();
    let floor = |buf: &mut Vec<u8>| {
        key.verify_sig(&message, &signature).expect("verifies");
        buf.copy_from_slice(&sealed);
        aes.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            buf,
        )
        .expect("opens")
        .len()
    };

    let expected = s(n, "decrypted_resource").as_bytes();
    let plain_len = floor(&mut buf);
    assert_eq!(&buf[..plain_len], expected);
    assert_eq!(
        handler.parse(&head, body, now_s).unwrap().resource,
        expected
    );
    let verified = now(client.verify_notify(&head, body)).unwrap();
    assert!(matches!(verified.event, NotifyEvent::Transaction(_)));

    let mut g = c.benchmark_group("v3_notify");
    g.bench_function("floor_verify_and_open", |b| {
        b.iter(|| floor(black_box(&mut buf)))
    });
    g.bench_function("handler_parse", |b| {
        b.iter(|| handler.parse(&head, black_box(body), now_s).unwrap())
    });
    g.bench_function("client_verify_notify", |b| {
        b.iter(|| now(client.verify_notify(&head, black_box(body))).unwrap())
    });
    g.finish();
    if paired_enabled() {
        paired(
            "v3_notify handler_parse / floor_verify_and_open",
            &mut || {
                black_box(floor(black_box(&mut buf)));
            },
            &mut || {
                black_box(handler.parse(&head, black_box(body), now_s).unwrap());
            },
        );
        paired(
            "v3_notify client_verify_notify / floor_verify_and_open",
            &mut || {
                black_box(floor(black_box(&mut buf)));
            },
            &mut || {
                black_box(now(client.verify_notify(&head, black_box(body))).unwrap());
            },
        );
    }
}

/// An in-memory transport: answers every request with one pre-signed
/// answer; optionally keeps the last request (setup only).
#[derive(Clone)]
struct Canned {
    answer: HttpResponse,
    seen: Option<Arc<Mutex<Option<HttpRequest>>>>,
}

impl Canned {
    fn unused() -> Canned {
        Canned {
            answer: HttpResponse::new(500, ""),
            seen: None,
        }
    }
}

impl Transport for Canned {
    fn send(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, BoxError>> + Send {
        if let Some(seen) = &self.seen {
            *seen.lock().unwrap() = Some(req);
        }
        std::future::ready(Ok(self.answer.clone()))
    }
}

/// A checkout's crypto: prepay (sign the request, verify the answer) and
/// `paySign`, against two bare signatures and one bare verification.
fn checkout(c: &mut Criterion, vec: &Value) {
    const T: i64 = 1_767_240_000;
    const NONCE: &str = "C1D6F0B7A2E94C3B8E5F1A2B3C4D5E6F";
    let keys = &vec["keys"];
    let wechat = Wechat::new();
    // WeChat's answer, signed once with the WeChat Pay public key's private
    // part (public-key mode: nothing to download), a second before `T`.
    let prepay_id = "wx011200009f3c5d7e1a2b4c6d8e0f123400";
    let signed = wechat.signed(
        format!(r#"{{"prepay_id":"{prepay_id}"}}"#).into_bytes(),
        T - 1,
        false,
    );
    let mut answer = HttpResponse::new(200, signed.body.clone())
        .with_header("Request-ID", "08F1C2D3E4F5061728394A5B6C7D8E9F-0")
        .with_header("Content-Type", "application/json");
    for (k, v) in &signed.headers {
        answer = answer.with_header(k, v);
    }
    let order = PrepayRequest::jsapi(
        "小张南山店-会员月卡",
        "WXP20260101120000A1",
        Fen(2990),
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    )
    .with_attach("cart=7&src=mp")
    .with_time_expire(chrono::DateTime::parse_from_rfc3339("2026-01-01T12:30:00+08:00").unwrap());
    let client_over = |transport: Canned| {
        Client::with_transport(kit::client_config(kit::APPID), transport)
            .unwrap()
            .with_clock(Arc::new(|| T))
            .with_nonce(Arc::new(|| NONCE.to_owned()))
    };
    let checkout = |client: &Client<Canned>| {
        let prepay = now(client.jsapi_prepay(&order)).expect("verified prepay");
        client.pay_params(&prepay.value.prepay_id).expect("paySign")
    };

    // Once, recording the request: the floor signs the very same bytes.
    let seen = Arc::new(Mutex::new(None));
    let recording = client_over(Canned {
        answer: answer.clone(),
        seen: Some(seen.clone()),
    });
    let params = checkout(&recording);
    let sent = seen.lock().unwrap().take().expect("one request sent");
    let request_message = v3::request_message(
        "POST",
        "/v3/pay/transactions/jsapi",
        &T.to_string(),
        NONCE,
        sent.body.as_deref().unwrap().as_bytes(),
    );
    let pay_message =
        v3::pay_sign_message(kit::APPID, &T.to_string(), NONCE, &params.package).into_bytes();
    let answer_message = v3::response_message(
        signed.header("Wechatpay-Timestamp").unwrap(),
        signed.header("Wechatpay-Nonce").unwrap(),
        &signed.body,
    );
    let answer_signature = STANDARD
        .decode(signed.header("Wechatpay-Signature").unwrap())
        .unwrap();
    let mut bare = BareSigner::new(s(&keys["merchant"], "private_key_pem"));
    let wechat_key = parsed(s(&keys["wechatpay_public_key"], "public_key_pem"));
    let authorization = sent.header("Authorization").unwrap();
    assert!(authorization.ends_with(&format!(
        "signature=\"{}\"",
        STANDARD.encode(bare.sign(&request_message))
    )));
    assert_eq!(params.pay_sign, STANDARD.encode(bare.sign(&pay_message)));
    wechat_key
        .verify_sig(&answer_message, &answer_signature)
        .unwrap();

    let client = client_over(Canned { answer, seen: None });
    let mut g = c.benchmark_group("v3_checkout");
    // ≈ 1.5 ms an iteration: 50 samples fit the 5 s of the documented command.
    g.sample_size(50);
    g.bench_function("floor_2_sign_1_verify", |b| {
        b.iter(|| {
            let a = bare.sign(black_box(&request_message))[0];
            let p = bare.sign(black_box(&pay_message))[0];
            wechat_key
                .verify_sig(black_box(&answer_message), &answer_signature)
                .expect("verifies");
            (a, p)
        })
    });
    g.bench_function("jsapi_prepay_and_pay_params", |b| {
        b.iter(|| checkout(black_box(&client)))
    });
    g.finish();
    if paired_enabled() {
        paired(
            "v3_checkout jsapi_prepay_and_pay_params / floor_2_sign_1_verify",
            &mut || {
                black_box(bare.sign(black_box(&request_message))[0]);
                black_box(bare.sign(black_box(&pay_message))[0]);
                assert!(
                    wechat_key
                        .verify_sig(black_box(&answer_message), &answer_signature)
                        .is_ok()
                );
            },
            &mut || {
                black_box(checkout(black_box(&client)));
            },
        );
    }
}

fn benches(c: &mut Criterion) {
    let vec = vectors();
    request_sign(c, &vec);
    answer_verify(c, &vec);
    notify(c, &vec);
    checkout(c, &vec);
}

criterion_group!(v3_benches, benches);
criterion_main!(v3_benches);
