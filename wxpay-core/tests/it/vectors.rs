//! Every vector of `shared/spec/vectors.json`, read as data.

use md5::Digest;
use serde_json::Value;
use wxpay_core::{ApiKey, Params, SignType, crypto, sign};

fn vectors() -> Value {
    crate::support::spec_vectors("vectors.json")
}

fn params_of(v: &Value) -> Params {
    v["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn all_signature_vectors() {
    let all = vectors();
    let list = all["sign"].as_array().unwrap();
    assert_eq!(list.len(), 11);
    for v in list {
        let name = v["name"].as_str().unwrap();
        let key = ApiKey::new(v["key"].as_str().unwrap());
        let sign_type: SignType = v["sign_type"].as_str().unwrap().parse().unwrap();
        let mut params = params_of(v);
        let expected = v["sign"].as_str().unwrap();

        let canonical = format!("{}&key={}", sign::string_a(&params), key.expose());
        assert_eq!(
            canonical,
            v["canonical"].as_str().unwrap(),
            "{name}: canonical"
        );
        assert_eq!(
            sign::sign(&params, &key, sign_type),
            expected,
            "{name}: sign"
        );

        params.insert("sign", expected);
        assert_eq!(
            sign::verify(&params, &key, sign_type),
            Ok(()),
            "{name}: verify"
        );
        let other = match sign_type {
            SignType::Md5 => SignType::HmacSha256,
            SignType::HmacSha256 => SignType::Md5,
        };
        assert!(
            sign::verify(&params, &key, other).is_err(),
            "{name}: other algorithm"
        );
        assert!(
            sign::verify(&params, &ApiKey::new("wrong"), sign_type).is_err(),
            "{name}: other key"
        );
    }
}

#[test]
fn dropping_sign_type_gives_the_buggy_signature() {
    // spec V8: a library that drops sign_type before hashing gets this value.
    let all = vectors();
    let v = all["sign"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "notify-md5-with-sign_type")
        .unwrap();
    let mut params = params_of(v);
    params.remove("sign_type");
    let key = ApiKey::new(v["key"].as_str().unwrap());
    assert_eq!(
        sign::sign(&params, &key, SignType::Md5),
        "3163A833B86872656E9AE91A4E482F6B"
    );
}

#[test]
fn all_refund_decryption_vectors() {
    let all = vectors();
    let list = all["refund_notify_decrypt"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for v in list {
        let name = v["name"].as_str().unwrap();
        let key = ApiKey::new(v["api_key"].as_str().unwrap());
        let md5_hex = format!("{:x}", md5::Md5::digest(key.expose().as_bytes()));
        assert_eq!(md5_hex, v["aes_key"].as_str().unwrap(), "{name}: aes key");
        let plain = crypto::decrypt_req_info(v["req_info"].as_str().unwrap(), &key)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plain, v["plaintext"].as_str().unwrap(), "{name}");
        assert_eq!(
            crypto::encrypt_req_info(&plain, &key),
            v["req_info"].as_str().unwrap(),
            "{name}: encrypt"
        );
        assert!(
            crypto::decrypt_req_info(v["req_info"].as_str().unwrap(), &ApiKey::new("x"))
                .map(|p| p != plain)
                .unwrap_or(true),
            "{name}: a wrong key must not decrypt"
        );
    }
}
