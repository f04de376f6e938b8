//! `wx.requestPayment` parameters for API v3 (spec 8): RSA `paySign`.

use serde::Serialize;

use super::key::{MerchantKey, SigningError};

/// The v3 `signType`: always `RSA` (passed to the runtime, not signed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum PaySignType {
    /// `RSA`.
    #[default]
    #[serde(rename = "RSA")]
    Rsa,
}

/// The message `paySign` covers: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn pay_sign_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n")
}

/// What the mini-program passes to `wx.requestPayment` under v3. Serialises
/// to `{timeStamp, nonceStr, package, signType: "RSA", paySign}`; `appId` is
/// signed but not passed (the runtime knows it), so it is not serialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayParamsV3 {
    /// The AppID used at prepay (partner mode: the `sp_appid` or `sub_appid` used).
    #[serde(skip)]
    pub app_id: String,
    /// `timeStamp`: Unix seconds, as a string (10 digits).
    pub time_stamp: String,
    /// `nonceStr`: random, at most 32 characters.
    pub nonce_str: String,
    /// `package`: `prepay_id=` followed by the prepay id.
    pub package: String,
    /// `signType`: always `RSA`.
    pub sign_type: PaySignType,
    /// `paySign`: Base64 SHA256-RSA signature with the merchant key.
    pub pay_sign: String,
}

impl PayParamsV3 {
    /// Signs the parameters for `prepay_id` now, with a fresh nonce.
    ///
    /// # Errors
    /// [`SigningError`] only if the crypto library fails internally.
    pub fn new(
        key: &MerchantKey,
        app_id: &str,
        prepay_id: &str,
    ) -> Result<PayParamsV3, SigningError> {
        let ts = chrono::Utc::now().timestamp().to_string();
        PayParamsV3::sign_with(
            key,
            app_id,
            &format!("prepay_id={prepay_id}"),
            &ts,
            &crate::types::nonce_str(),
        )
    }

    /// Signs the parameters from explicit values.
    ///
    /// # Errors
    /// [`SigningError`] only if the crypto library fails internally.
    pub fn sign_with(
        key: &MerchantKey,
        app_id: &str,
        package: &str,
        time_stamp: &str,
        nonce_str: &str,
    ) -> Result<PayParamsV3, SigningError> {
        let message = pay_sign_message(app_id, time_stamp, nonce_str, package);
        Ok(PayParamsV3 {
            app_id: app_id.to_owned(),
            time_stamp: time_stamp.to_owned(),
            nonce_str: nonce_str.to_owned(),
            package: package.to_owned(),
            sign_type: PaySignType::Rsa,
            pay_sign: key.sign(message.as_bytes())?,
        })
    }
}
