//! Every API v3 vector of `shared/spec/vectors-v3.json` (sections
//! `request_sign`, `response_verify`, `aead_resource`, `notify_request`,
//! `pay_sign`, `certificates`), read as data and compared byte for byte.

use serde_json::Value;
use wxpay_core::v3::{
    ApiV3Key, CertificateVerifier, CombinedVerifier, Credential, DecryptError, EncryptedResource,
    MerchantKey, NotifyError, NotifyHandler, NotifyValidator, PayParamsV3, PlatformCertificate,
    PublicKey, PublicKeyVerifier, ResponseValidator, ValidationError, Verifier, WechatpayHeaders,
    decrypt_certificates, pay_sign_message, request_message, response_message,
};

fn vectors() -> Value {
    crate::support::spec_vectors("vectors-v3.json")
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn merchant_key(all: &Value) -> MerchantKey {
    MerchantKey::from_pem(s(&all["keys"]["merchant"], "private_key_pem")).unwrap()
}

fn platform_certificate(all: &Value) -> PlatformCertificate {
    PlatformCertificate::from_pem(s(&all["keys"]["platform"], "certificate_pem")).unwrap()
}

fn public_key_verifier(all: &Value) -> PublicKeyVerifier {
    let k = &all["keys"]["wechatpay_public_key"];
    PublicKeyVerifier::new(
        s(k, "key_id"),
        PublicKey::from_pem(s(k, "public_key_pem")).unwrap(),
    )
}

/// Both key sources on one verifier (the migration setup of spec 3.4).
fn combined(all: &Value) -> CombinedVerifier {
    CombinedVerifier::new(
        public_key_verifier(all),
        CertificateVerifier::with_certificates([platform_certificate(all)]),
    )
}

fn headers(v: &Value) -> WechatpayHeaders<'_> {
    WechatpayHeaders::from_pairs(
        v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap())),
    )
}

fn now(v: &Value) -> i64 {
    v["now"].as_i64().unwrap()
}

#[test]
fn request_sign_vectors() {
    let all = vectors();
    let list = all["request_sign"].as_array().unwrap();
    assert_eq!(list.len(), 7);
    let mut checked = vec![
        list.as_slice(),
        std::slice::from_ref(&all["certificates"]["request"]),
    ];
    let bills: Vec<Value> = all["bills"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b.as_object().unwrap().values())
        .filter(|v| v.get("authorization").is_some())
        .cloned()
        .collect();
    checked.push(&bills);
    let mut n = 0;
    for v in checked.into_iter().flatten() {
        let name = s(v, "name");
        assert_eq!(s(v, "signer"), "merchant", "{name}");
        let body = s(v, "body").as_bytes();
        let (method, url, ts, nonce) = (
            s(v, "method"),
            s(v, "canonical_url"),
            s(v, "timestamp"),
            s(v, "nonce_str"),
        );
        assert!(s(v, "url").ends_with(url), "{name}");
        let message = request_message(method, url, ts, nonce, body);
        assert_eq!(message, s(v, "message").as_bytes(), "{name}: message");
        assert_eq!(
            merchant_key(&all).sign(&message).unwrap(),
            s(v, "signature"),
            "{name}: signature"
        );
        let credential = Credential::new(s(v, "mchid"), s(v, "serial_no"), merchant_key(&all));
        let auth = credential
            .authorization(method, url, ts, nonce, body)
            .unwrap();
        assert_eq!(auth, s(v, "authorization"), "{name}: Authorization");
        assert_eq!(auth, s(&v["request_headers"], "Authorization"), "{name}");
        n += 1;
    }
    // 7 request_sign vectors, the certificate download, 3 bill requests.
    assert_eq!(n, 11);
}

#[test]
fn merchant_key_pkcs1_and_pkcs8_sign_alike() {
    // tests/data/merchant-key-pkcs1.pem is the vectors' merchant key
    // re-encoded with `openssl rsa -traditional` (PKCS#1).
    let all = vectors();
    let pkcs8 = merchant_key(&all);
    let pkcs1 = MerchantKey::from_pem(include_str!("../data/merchant-key-pkcs1.pem")).unwrap();
    assert_eq!(format!("{pkcs1:?}"), "MerchantKey(***)");
    let v = &all["request_sign"][6];
    assert_eq!(s(v, "name"), "official-example-message");
    let message = s(v, "message").as_bytes();
    assert_eq!(
        message,
        b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
    );
    assert_eq!(pkcs1.sign(message).unwrap(), s(v, "signature"));
    assert_eq!(pkcs8.sign(message).unwrap(), s(v, "signature"));
}

fn verdict(e: &ValidationError) -> &'static str {
    match e {
        ValidationError::InvalidSignature => "signature_invalid",
        ValidationError::Stale { .. } => "timestamp_out_of_window",
        ValidationError::UnknownSerial { .. } => "unknown_serial",
        ValidationError::Probe => "signature_probe",
        ValidationError::MissingHeader { .. } => "missing_signature_headers",
        ValidationError::UnsupportedSignatureType { .. } => "unsupported_signature_type",
        other => panic!("no vector verdict for {other:?}"),
    }
}

#[test]
fn response_verify_vectors() {
    let all = vectors();
    let list = all["response_verify"].as_array().unwrap();
    assert_eq!(list.len(), 14);
    let validator = ResponseValidator::new(combined(&all));
    let mut negatives = 0;
    for v in list {
        let name = s(v, "name");
        let h = headers(v);
        let body = s(v, "body").as_bytes();
        if let (Some(ts), Some(nonce)) = (h.timestamp, h.nonce) {
            assert_eq!(
                response_message(ts, nonce, body),
                s(v, "message").as_bytes(),
                "{name}: message"
            );
        }
        let status = v["status"].as_u64().unwrap() as u16;
        let got = validator.validate(status, &h, body, now(v));
        match (s(v, "expected"), got) {
            ("accept", Ok(())) => assert_eq!(s(v, "reason"), "ok", "{name}"),
            ("reject", Err(e)) => {
                assert_eq!(verdict(&e), s(v, "reason"), "{name}: {e:?}");
                negatives += 1;
            }
            (expected, got) => panic!("{name}: expected {expected}, got {got:?}"),
        }
    }
    assert_eq!(negatives, 9);

    // The signed answers of the bill vectors go through the same validator.
    let mut bills = 0;
    for b in all["bills"].as_array().unwrap() {
        if let Some(r) = b.get("apply_response") {
            assert_eq!(s(r, "expected"), "accept");
            assert_eq!(answer(&validator, r), Ok(()), "{}", s(b, "name"));
            bills += 1;
        }
    }
    assert_eq!(bills, 1);
}

/// Runs a `response_verify`-shaped vector through `validator`.
fn answer<V: Verifier>(validator: &ResponseValidator<V>, v: &Value) -> Result<(), ValidationError> {
    validator.validate(
        v["status"].as_u64().unwrap() as u16,
        &headers(v),
        s(v, "body").as_bytes(),
        now(v),
    )
}

#[test]
fn response_verify_details() {
    let all = vectors();
    let by_name = |n: &str| {
        all["response_verify"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == n)
            .unwrap()
            .clone()
    };
    let validator = ResponseValidator::new(combined(&all));
    let check = |v: &Value| answer(&validator, v);

    // The window, both directions: ts = 1767240061.
    let old = by_name("neg-timestamp-301s-old");
    assert_eq!(
        check(&old),
        Err(ValidationError::Stale {
            timestamp: 1767240061,
            now: 1767240362
        })
    );
    let boundary = by_name("neg-timestamp-300s-boundary");
    assert_eq!(
        check(&boundary),
        Err(ValidationError::Stale {
            timestamp: 1767240061,
            now: 1767240361
        })
    );
    let future = by_name("neg-timestamp-301s-future");
    assert_eq!(
        check(&future),
        Err(ValidationError::Stale {
            timestamp: 1767240061,
            now: 1767239760
        })
    );
    // 300 s in the future is as stale as 300 s in the past; 299 s is not.
    let mut ahead = future.clone();
    ahead["now"] = (1767240061 - 300).into();
    assert!(matches!(check(&ahead), Err(ValidationError::Stale { .. })));
    ahead["now"] = (1767240061 - 299).into();
    assert_eq!(check(&ahead), Ok(()));
    // An empty Wechatpay-Signature-Type counts as absent.
    let mut untyped = by_name("query-200-public-key");
    untyped["headers"]["Wechatpay-Signature-Type"] = "".into();
    assert_eq!(check(&untyped), Ok(()));
    untyped["headers"]
        .as_object_mut()
        .unwrap()
        .remove("Wechatpay-Signature-Type");
    assert_eq!(check(&untyped), Ok(()));
    // A configurable window keeps the same rule.
    let wide = ResponseValidator::new(combined(&all)).with_window(302);
    assert_eq!(
        wide.validate(200, &headers(&old), s(&old, "body").as_bytes(), now(&old)),
        Ok(())
    );

    assert_eq!(
        check(&by_name("neg-unknown-serial")),
        Err(ValidationError::UnknownSerial {
            serial: "5A1B2C3D4E5F60718293A4B5C6D7E8F901234568".into()
        })
    );
    assert_eq!(
        check(&by_name("neg-2xx-without-signature")),
        Err(ValidationError::MissingHeader {
            name: "Wechatpay-Timestamp"
        })
    );
    assert_eq!(
        check(&by_name("neg-unsupported-signature-type")),
        Err(ValidationError::UnsupportedSignatureType {
            value: "WECHATPAY2-SM2-WITH-SM3".into()
        })
    );

    // Unsigned non-2xx answers: 401 is our credentials, anything else transport.
    let mut unsigned = by_name("neg-2xx-without-signature");
    unsigned["status"] = 401.into();
    assert_eq!(check(&unsigned), Err(ValidationError::Unauthenticated));
    unsigned["status"] = 502.into();
    assert_eq!(
        check(&unsigned),
        Err(ValidationError::Unsigned { status: 502 })
    );

    // Serials: hex compared case-insensitively, PUB_KEY_ID_ exactly.
    let mut lower = by_name("prepay-200-platform-cert");
    let serial = s(&lower["headers"], "Wechatpay-Serial").to_ascii_lowercase();
    lower["headers"]["Wechatpay-Serial"] = serial.into();
    assert_eq!(check(&lower), Ok(()));
    let mut pk_lower = by_name("query-200-public-key");
    pk_lower["headers"]["Wechatpay-Serial"] =
        "pub_key_id_0114232134912410000000000000000001".into();
    assert!(matches!(
        check(&pk_lower),
        Err(ValidationError::UnknownSerial { .. })
    ));
    // Another public key id is unknown, never looked up among certificates.
    let mut other_id = by_name("query-200-public-key");
    other_id["headers"]["Wechatpay-Serial"] =
        "PUB_KEY_ID_0114232134912410000000000000000002".into();
    assert_eq!(
        check(&other_id),
        Err(ValidationError::UnknownSerial {
            serial: "PUB_KEY_ID_0114232134912410000000000000000002".into()
        })
    );

    // Each single-source verifier only knows its own key.
    let pk_only = ResponseValidator::new(public_key_verifier(&all));
    let cert_only = ResponseValidator::new(CertificateVerifier::with_certificates([
        platform_certificate(&all),
    ]));
    let prepay = by_name("prepay-200-platform-cert");
    let query = by_name("query-200-public-key");
    assert_eq!(answer(&cert_only, &prepay), Ok(()));
    assert!(matches!(
        answer(&pk_only, &prepay),
        Err(ValidationError::UnknownSerial { .. })
    ));
    assert_eq!(answer(&pk_only, &query), Ok(()));
    assert!(matches!(
        answer(&cert_only, &query),
        Err(ValidationError::UnknownSerial { .. })
    ));

    // Malformed Base64 is an invalid signature; a malformed timestamp is typed.
    let mut bad64 = query.clone();
    bad64["headers"]["Wechatpay-Signature"] = "not base64!".into();
    assert_eq!(check(&bad64), Err(ValidationError::InvalidSignature));
    let mut badts = query.clone();
    badts["headers"]["Wechatpay-Timestamp"] = "+1767240061".into();
    assert_eq!(
        check(&badts),
        Err(ValidationError::MalformedTimestamp {
            value: "+1767240061".into()
        })
    );
}

#[test]
fn platform_certificate_fields() {
    let all = vectors();
    let cert = platform_certificate(&all);
    assert_eq!(cert.serial_no(), s(&all["keys"]["platform"], "serial_no"));
    assert!(cert.not_before() < cert.not_after());
    let merchant =
        PlatformCertificate::from_pem(s(&all["keys"]["merchant"], "certificate_pem")).unwrap();
    assert_eq!(
        merchant.serial_no(),
        s(&all["keys"]["merchant"], "serial_no")
    );
}

fn resource_of(v: &Value) -> EncryptedResource {
    EncryptedResource {
        algorithm: s(v, "algorithm").into(),
        ciphertext: s(v, "ciphertext").into(),
        associated_data: s(v, "associated_data").into(),
        nonce: s(v, "nonce").into(),
        original_type: v["original_type"].as_str().map(str::to_owned),
    }
}

#[test]
fn aead_resource_vectors() {
    let all = vectors();
    let list = all["aead_resource"].as_array().unwrap();
    assert_eq!(list.len(), 6);
    let mut negatives = 0;
    for v in list {
        let name = s(v, "name");
        let key = ApiV3Key::new(s(v, "key")).unwrap();
        let resource = resource_of(v);
        match s(v, "expected") {
            "decrypt" => {
                let plain = key.decrypt_resource(&resource).unwrap();
                assert_eq!(plain, s(v, "plaintext").as_bytes(), "{name}");
                assert_eq!(
                    plain.len() as u64,
                    v["ciphertext_bytes"].as_u64().unwrap(),
                    "{name}"
                );
                // Encryption reproduces the ciphertext and tag exactly.
                let sealed = key
                    .encrypt(
                        resource.associated_data.as_bytes(),
                        resource.nonce.as_bytes(),
                        &plain,
                    )
                    .unwrap();
                assert_eq!(sealed, resource.ciphertext, "{name}");
            }
            "auth_fail" => {
                assert_eq!(
                    key.decrypt_resource(&resource),
                    Err(DecryptError::Authentication),
                    "{name}"
                );
                negatives += 1;
            }
            other => panic!("{name}: {other}"),
        }
    }
    assert_eq!(negatives, 2);

    // A wrong APIv3 key and another algorithm are refused too.
    let good = resource_of(&list[0]);
    let wrong = ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEX").unwrap();
    assert_eq!(
        wrong.decrypt_resource(&good),
        Err(DecryptError::Authentication)
    );
    let mut other = good.clone();
    other.algorithm = "AEAD_SM4_GCM".into();
    assert_eq!(
        ApiV3Key::new(s(&list[0], "key"))
            .unwrap()
            .decrypt_resource(&other),
        Err(DecryptError::UnsupportedAlgorithm {
            algorithm: "AEAD_SM4_GCM".into()
        })
    );
    assert_eq!(ApiV3Key::new("short").unwrap_err().len, 5);
}

#[test]
fn notify_request_vectors() {
    let all = vectors();
    let list = all["notify_request"].as_array().unwrap();
    assert_eq!(list.len(), 6);
    let key = ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap();
    // One handler for every vector: public key and certificate at once.
    let handler = NotifyHandler::new(NotifyValidator::new(combined(&all)), key);
    let mut negatives = 0;
    for v in list {
        let name = s(v, "name");
        let h = headers(v);
        let body = s(v, "body").as_bytes();
        assert_eq!(
            response_message(h.timestamp.unwrap(), h.nonce.unwrap(), body),
            s(v, "message").as_bytes(),
            "{name}: message"
        );
        let reply = &v["expected_reply"];
        match (s(v, "expected"), handler.parse(&h, body, now(v))) {
            ("accept", Ok(n)) => {
                assert_eq!(n.resource, s(v, "decrypted_resource").as_bytes(), "{name}");
                let envelope: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(n.id, s(&envelope, "id"));
                assert_eq!(n.event_type, s(&envelope, "event_type"));
                assert_eq!(n.summary, s(&envelope, "summary"));
                assert_eq!(
                    n.original_type.as_deref(),
                    envelope["resource"]["original_type"].as_str()
                );
                assert!((200..300).contains(&reply["status"].as_u64().unwrap()));
            }
            ("reject", Err(e)) => {
                let NotifyError::Validation(ve) = &e else {
                    panic!("{name}: {e:?}");
                };
                assert_eq!(verdict(ve), s(v, "reason"), "{name}");
                assert!(v["decrypted_resource"].is_null());
                let (status, reply_body) = e.reply();
                assert_eq!(
                    u64::from(status),
                    reply["status"].as_u64().unwrap(),
                    "{name}"
                );
                assert_eq!(reply_body, s(reply, "body"), "{name}");
                negatives += 1;
            }
            (expected, got) => panic!("{name}: expected {expected}, got {got:?}"),
        }
    }
    assert_eq!(negatives, 3);

    // A verified notify with the wrong APIv3 key: a decryption error, 5xx.
    let v = &list[0];
    let wrong = NotifyHandler::new(
        NotifyValidator::new(combined(&all)),
        ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEX").unwrap(),
    );
    let e = wrong
        .parse(&headers(v), s(v, "body").as_bytes(), now(v))
        .unwrap_err();
    assert!(matches!(
        e,
        NotifyError::Decrypt(DecryptError::Authentication)
    ));
    assert_eq!(e.reply().0, 500);
    // Notifies require every header.
    let mut h = headers(v);
    h.serial = None;
    assert!(matches!(
        handler.parse(&h, s(v, "body").as_bytes(), now(v)),
        Err(NotifyError::Validation(ValidationError::MissingHeader {
            name: "Wechatpay-Serial"
        }))
    ));
}

#[test]
fn pay_sign_vectors() {
    let all = vectors();
    let list = all["pay_sign"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let key = merchant_key(&all);
    for v in list {
        let name = s(v, "name");
        let (app_id, ts, nonce, package) = (
            s(v, "appId"),
            s(v, "timeStamp"),
            s(v, "nonceStr"),
            s(v, "package"),
        );
        assert_eq!(
            pay_sign_message(app_id, ts, nonce, package),
            s(v, "message"),
            "{name}"
        );
        let p = PayParamsV3::sign_with(&key, app_id, package, ts, nonce).unwrap();
        assert_eq!(p.pay_sign, s(v, "paySign"), "{name}");
        assert_eq!(s(v, "signType"), "RSA");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            v["requestPayment_object"],
            "{name}"
        );
    }
    let fresh = PayParamsV3::new(&key, "wx1a2b3c4d5e6f7a8b", "wx01").unwrap();
    assert_eq!(fresh.package, "prepay_id=wx01");
    assert_eq!(fresh.nonce_str.len(), 32);
}

#[test]
fn certificates_vector() {
    let all = vectors();
    let v = &all["certificates"];
    let key = ApiV3Key::new(s(&all["keys"], "apiv3_key")).unwrap();
    let body = s(v, "body").as_bytes();
    let certs = decrypt_certificates(body, &key).unwrap();
    let expected = v["expected"]["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), expected.len());
    for (got, want) in certs.iter().zip(expected) {
        assert_eq!(got.serial_no(), s(want, "serial_no"));
        assert_eq!(got.pem(), s(want, "certificate_pem"));
    }
    let listed: Value = serde_json::from_slice(body).unwrap();
    let entry = &listed["data"][0];
    let rfc3339 = |f: &str| chrono::DateTime::parse_from_rfc3339(s(entry, f)).unwrap();
    assert!(certs[0].not_before() <= rfc3339("effective_time"));
    assert!(certs[0].not_after() >= rfc3339("expire_time"));
    // The answer itself verifies with the certificate it delivered.
    assert_eq!(s(v, "signed_by"), "platform");
    let validator = ResponseValidator::new(CertificateVerifier::with_certificates(certs));
    assert_eq!(validator.validate(200, &headers(v), body, now(v)), Ok(()));
    assert_eq!(s(&v["expected"], "verify"), "accept");
    // With the wrong APIv3 key nothing is delivered.
    let wrong = ApiV3Key::new("wxpayV3VectorKey0123456789ABCDEX").unwrap();
    assert!(matches!(
        decrypt_certificates(body, &wrong),
        Err(wxpay_core::v3::CertificateError::Decrypt {
            source: DecryptError::Authentication,
            ..
        })
    ));
}
