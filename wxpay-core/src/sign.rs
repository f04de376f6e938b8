//! The v2 signature: MD5 or HMAC-SHA256 over the sorted `k=v&…&key=API_KEY` string.
//!
//! The digest is fed piece by piece, so the string that ends in the API key is
//! never built in memory and can never reach a log.

use std::{fmt, str::FromStr};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{ApiKey, Params};

/// The signature algorithm (`sign_type` / `signType` on the wire).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum SignType {
    /// `MD5`, WeChat's default.
    #[default]
    #[serde(rename = "MD5")]
    Md5,
    /// `HMAC-SHA256`, keyed with the API key.
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    /// The exact wire string: `MD5` or `HMAC-SHA256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// Guesses the algorithm from a signature's length (32 hex digits: MD5,
    /// 64: HMAC-SHA256). The last resort of the spec's rule 2.4.
    pub fn from_signature_len(sign: &str) -> Option<SignType> {
        match sign.len() {
            32 => Some(SignType::Md5),
            64 => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `sign_type` that is neither `MD5` nor `HMAC-SHA256`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sign type {0:?} (expected MD5 or HMAC-SHA256)")]
pub struct UnknownSignType(pub String);

impl FromStr for SignType {
    type Err = UnknownSignType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "MD5" => Ok(SignType::Md5),
            "HMAC-SHA256" => Ok(SignType::HmacSha256),
            other => Err(UnknownSignType(other.to_owned())),
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The message has no `sign` field (or an empty one).
    #[error("the message carries no sign")]
    Missing,
    /// The `sign` does not match the one computed with our key.
    #[error("the sign does not match")]
    Mismatch,
    /// The message names a `sign_type` we do not know.
    #[error(transparent)]
    UnknownSignType(#[from] UnknownSignType),
}

/// The canonical string *without* the trailing `&key=…`: every field but
/// `sign` and the empty ones, sorted by name bytes, joined as `k=v&k=v`.
///
/// Safe to log; the key is never part of it.
///
/// ```
/// use wxpay_core::{Params, sign::string_a};
/// let p: Params = [("b", "2"), ("a", "1"), ("sign", "X"), ("c", "")].into_iter().collect();
/// assert_eq!(string_a(&p), "a=1&b=2");
/// ```
pub fn string_a(params: &Params) -> String {
    let mut out = String::new();
    for (k, v) in signed_fields(params) {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn signed_fields(params: &Params) -> impl Iterator<Item = (&str, &str)> {
    params.iter().filter(|(k, v)| *k != "sign" && !v.is_empty())
}

fn feed(params: &Params, key: &ApiKey, mut update: impl FnMut(&[u8])) {
    for (k, v) in signed_fields(params) {
        update(k.as_bytes());
        update(b"=");
        update(v.as_bytes());
        update(b"&");
    }
    update(b"key=");
    update(key.expose().as_bytes());
}

/// Signs `params` (ignoring any `sign` field and empty values) and returns
/// the uppercase hex signature.
///
/// ```
/// use wxpay_core::{ApiKey, Params, SignType, sign::sign};
/// let p: Params = [
///     ("appid", "wxd930ea5d5a258f4f"), ("mch_id", "10000100"), ("device_info", "1000"),
///     ("body", "test"), ("nonce_str", "ibuaiVcKdpRxkhJA"),
/// ].into_iter().collect();
/// let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
/// assert_eq!(sign(&p, &key, SignType::Md5), "9A0A8659F005D6984697E2CA0A9CF3B7");
/// ```
pub fn sign(params: &Params, key: &ApiKey, sign_type: SignType) -> String {
    match sign_type {
        SignType::Md5 => {
            let mut h = Md5::new();
            feed(params, key, |b| h.update(b));
            upper_hex(&h.finalize())
        }
        SignType::HmacSha256 => {
            let mut h = <Hmac<Sha256> as Mac>::new_from_slice(key.expose().as_bytes())
                .expect("HMAC takes a key of any length");
            feed(params, key, |b| h.update(b));
            upper_hex(&h.finalize().into_bytes())
        }
    }
}

/// Checks the `sign` field of `params` against the signature computed with
/// `key` and `sign_type`, in constant time (hex case is ignored).
///
/// # Errors
/// [`SignatureError::Missing`] when there is no non-empty `sign`,
/// [`SignatureError::Mismatch`] when it differs.
pub fn verify(params: &Params, key: &ApiKey, sign_type: SignType) -> Result<(), SignatureError> {
    let received = match params.get("sign") {
        Some(s) if !s.is_empty() => s,
        _ => return Err(SignatureError::Missing),
    };
    let expected = sign(params, key, sign_type);
    if constant_time_eq_ignore_ascii_case(received.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Constant-time comparison (for equal lengths) that ignores ASCII case.
fn constant_time_eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let a: Vec<u8> = a.iter().map(u8::to_ascii_uppercase).collect();
    bool::from(a.as_slice().ct_eq(b))
}

pub(crate) fn upper_hex(bytes: &[u8]) -> String {
    hex(bytes, b"0123456789ABCDEF")
}

pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    hex(bytes, b"0123456789abcdef")
}

fn hex(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digits[(b >> 4) as usize] as char);
        s.push(digits[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().copied().collect()
    }

    #[test]
    fn sorting_is_by_bytes_as_in_the_spec() {
        let names = [
            "coupon_fee_0",
            "coupon_count",
            "coupon_fee",
            "Zeta",
            "appId",
            "appid",
            "a_b",
            "aB",
            "cash_fee_type",
            "cash_fee",
        ];
        let params: Params = names.iter().map(|n| (*n, "1")).collect();
        let joined = string_a(&params);
        let order: Vec<&str> = joined
            .split('&')
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "Zeta",
                "aB",
                "a_b",
                "appId",
                "appid",
                "cash_fee",
                "cash_fee_type",
                "coupon_count",
                "coupon_fee",
                "coupon_fee_0"
            ]
        );
    }

    #[test]
    fn digest_fed_in_chunks_equals_the_digest_of_the_whole_string() {
        // Values of every length around the digests' block and buffer sizes,
        // alone and after other fields, against the digest of the built string.
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        for len in [0, 1, 250, 505, 506, 507, 511, 512, 513, 1023, 1500] {
            for prefix in [&[][..], &[("a", "x"), ("b", "yy")][..]] {
                let mut params = p(prefix);
                params.insert("m", "v".repeat(len));
                params.insert("z", "tail");
                let whole = format!("{}&key={}", string_a(&params), key.expose());
                let md5 = upper_hex(&Md5::digest(whole.as_bytes()));
                assert_eq!(sign(&params, &key, SignType::Md5), md5, "len {len}");
                let mut mac =
                    <Hmac<Sha256> as Mac>::new_from_slice(key.expose().as_bytes()).unwrap();
                mac.update(whole.as_bytes());
                let hmac = upper_hex(&mac.finalize().into_bytes());
                assert_eq!(sign(&params, &key, SignType::HmacSha256), hmac, "len {len}");
            }
        }
    }

    #[test]
    fn zero_is_not_empty() {
        assert_eq!(string_a(&p(&[("a", "0"), ("b", "")])), "a=0");
    }

    #[test]
    fn verify_refuses_missing_wrong_and_accepts_lowercase() {
        let key = ApiKey::new("k");
        let mut params = p(&[("a", "1")]);
        assert_eq!(
            verify(&params, &key, SignType::Md5),
            Err(SignatureError::Missing)
        );
        params.insert("sign", "");
        assert_eq!(
            verify(&params, &key, SignType::Md5),
            Err(SignatureError::Missing)
        );
        let good = sign(&params, &key, SignType::Md5);
        params.insert("sign", good.to_ascii_lowercase());
        assert_eq!(verify(&params, &key, SignType::Md5), Ok(()));
        // the right MD5 is not a valid HMAC signature
        assert_eq!(
            verify(&params, &key, SignType::HmacSha256),
            Err(SignatureError::Mismatch)
        );
        params.insert("sign", good.replace('A', "B").replace('0', "1"));
        assert_eq!(
            verify(&params, &key, SignType::Md5),
            Err(SignatureError::Mismatch)
        );
        // a change to any signed field breaks it
        params.insert("sign", good);
        params.insert("a", "2");
        assert_eq!(
            verify(&params, &key, SignType::Md5),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_type_round_trips() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            assert_eq!(t.as_str().parse::<SignType>(), Ok(t));
        }
        assert!("md5".parse::<SignType>().is_err());
        assert_eq!(
            SignType::from_signature_len(&"A".repeat(64)),
            Some(SignType::HmacSha256)
        );
    }
}
