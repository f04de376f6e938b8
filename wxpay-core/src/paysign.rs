//! The parameters `wx.requestPayment` takes, with `paySign`.

use serde::Serialize;

use crate::{ApiKey, Params, SignType, sign::sign};

/// Everything the mini-program passes to `wx.requestPayment`, serialised
/// with WeChat's camel-case names. `appId` is signed but the mini-program
/// runtime does not need it; it is included for completeness.
///
/// ```
/// use wxpay_core::{ApiKey, SignType, paysign::PayParams};
/// let p = PayParams::sign_with(
///     "wxd678efh567hg6787", "prepay_id=wx2017033010242291fcfe0db70013231072",
///     "1490840662", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", SignType::Md5,
///     &ApiKey::new("qazwsxedcrfvtgbyhnujmikolp111111"),
/// );
/// assert_eq!(p.pay_sign, "22D9B4E54AB1950F51E0649E8810ACD6");
/// let json = serde_json::to_value(&p).unwrap();
/// assert_eq!(json["timeStamp"], "1490840662"); // a string, as the runtime demands
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PayParams {
    /// The mini-program AppID.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds, as a string.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    /// Random string.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// `MD5` or `HMAC-SHA256`, equal to unifiedorder's.
    #[serde(rename = "signType")]
    pub sign_type: SignType,
    /// The signature over the five fields above.
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl PayParams {
    /// Builds and signs the parameters for `prepay_id` now, with a fresh nonce.
    pub fn new(app_id: &str, prepay_id: &str, sign_type: SignType, key: &ApiKey) -> PayParams {
        let ts = chrono::Utc::now().timestamp().to_string();
        PayParams::sign_with(
            app_id,
            &format!("prepay_id={prepay_id}"),
            &ts,
            &crate::types::nonce_str(),
            sign_type,
            key,
        )
    }

    /// Builds and signs the parameters from explicit values.
    pub fn sign_with(
        app_id: &str,
        package: &str,
        time_stamp: &str,
        nonce_str: &str,
        sign_type: SignType,
        key: &ApiKey,
    ) -> PayParams {
        let params = PayParams::signed_fields(app_id, package, time_stamp, nonce_str, sign_type);
        PayParams {
            app_id: app_id.to_owned(),
            time_stamp: time_stamp.to_owned(),
            nonce_str: nonce_str.to_owned(),
            package: package.to_owned(),
            sign_type,
            pay_sign: sign(&params, key, sign_type),
        }
    }

    fn signed_fields(
        app_id: &str,
        package: &str,
        time_stamp: &str,
        nonce_str: &str,
        sign_type: SignType,
    ) -> Params {
        [
            ("appId", app_id),
            ("nonceStr", nonce_str),
            ("package", package),
            ("signType", sign_type.as_str()),
            ("timeStamp", time_stamp),
        ]
        .into_iter()
        .collect()
    }

    /// Whether `pay_sign` is right for the other fields under `key`.
    pub fn verify(&self, key: &ApiKey) -> bool {
        let mut p = PayParams::signed_fields(
            &self.app_id,
            &self.package,
            &self.time_stamp,
            &self.nonce_str,
            self.sign_type,
        );
        p.insert("sign", self.pay_sign.as_str());
        crate::sign::verify(&p, key, self.sign_type).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_13_1_and_fresh_params_verify() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        let p = PayParams::sign_with(
            "wxd930ea5d5a258f4f",
            "prepay_id=wx201411101639507cbf6ffd8b0779950874",
            "1414561699",
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            SignType::Md5,
            &key,
        );
        assert_eq!(p.pay_sign, "F8E88C93A1F064DF21CE68BFD4003830");
        for t in [SignType::Md5, SignType::HmacSha256] {
            let mut fresh = PayParams::new("wx1", "wx123", t, &key);
            assert!(fresh.verify(&key));
            assert_eq!(fresh.time_stamp.len(), 10);
            assert!(!fresh.verify(&ApiKey::new("other")));
            fresh.package = "prepay_id=other".into();
            assert!(!fresh.verify(&key));
        }
    }
}
