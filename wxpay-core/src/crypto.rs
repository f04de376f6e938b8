//! Refund-notify `req_info`: Base64 of AES-256-ECB with PKCS#7 (16-byte
//! blocks); the AES key is the 32 ASCII bytes of lowercase hex MD5(API key).

use aes::{
    Aes256,
    cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use md5::{Digest, Md5};

use crate::ApiKey;

/// Why `req_info` could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// Not standard Base64.
    #[error("req_info is not Base64")]
    Base64,
    /// Not a whole number of 16-byte blocks.
    #[error("ciphertext length {0} is not a positive multiple of 16")]
    Length(usize),
    /// Bad PKCS#7 padding: almost always the wrong API key.
    #[error("bad padding (wrong API key?)")]
    Padding,
    /// The plaintext is not UTF-8.
    #[error("plaintext is not UTF-8")]
    NotUtf8,
}

fn cipher(key: &ApiKey) -> Aes256 {
    let hex = format!("{:x}", Md5::digest(key.expose().as_bytes()));
    Aes256::new(GenericArray::from_slice(hex.as_bytes()))
}

/// Decrypts a refund notify's `req_info` to its `<root>` XML text.
///
/// # Errors
/// A [`DecryptError`]; a wrong key shows up as [`DecryptError::Padding`]
/// (or, rarely, garbage that then fails to parse as XML).
pub fn decrypt_req_info(req_info: &str, key: &ApiKey) -> Result<String, DecryptError> {
    let mut data = STANDARD
        .decode(req_info.trim())
        .map_err(|_| DecryptError::Base64)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(DecryptError::Length(data.len()));
    }
    let c = cipher(key);
    for block in data.chunks_exact_mut(16) {
        c.decrypt_block(GenericArray::from_mut_slice(block));
    }
    let pad = *data.last().expect("non-empty") as usize;
    if pad == 0 || pad > 16 || !data[data.len() - pad..].iter().all(|&b| b as usize == pad) {
        return Err(DecryptError::Padding);
    }
    data.truncate(data.len() - pad);
    String::from_utf8(data).map_err(|_| DecryptError::NotUtf8)
}

/// Encrypts a plaintext as WeChat does (for simulators and test fixtures).
pub fn encrypt_req_info(plaintext: &str, key: &ApiKey) -> String {
    let mut data = plaintext.as_bytes().to_vec();
    let pad = 16 - data.len() % 16;
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let c = cipher(key);
    for block in data.chunks_exact_mut(16) {
        c.encrypt_block(GenericArray::from_mut_slice(block));
    }
    STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        for text in ["", "<root></root>abc", "<root><a>退款</a></root>"] {
            let enc = encrypt_req_info(text, &key);
            assert_eq!(decrypt_req_info(&enc, &key).unwrap(), text);
            // a wrong key must not yield the plaintext
            assert_ne!(
                decrypt_req_info(&enc, &ApiKey::new("another-key"))
                    .ok()
                    .as_deref(),
                Some(text)
            );
        }
        assert_eq!(decrypt_req_info("!!!", &key), Err(DecryptError::Base64));
        assert_eq!(decrypt_req_info("AAAA", &key), Err(DecryptError::Length(3)));
    }
}
