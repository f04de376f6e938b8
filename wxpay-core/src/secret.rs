//! Secrets: newtypes whose `Debug` and `Display` never print the value.

use std::fmt;

macro_rules! secret_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself. Call this only where the value is sent to
            /// WeChat or fed into a digest; never log what it returns.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(***)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }
    };
}

secret_newtype!(
    /// The merchant's API v2 key (32 characters, set in the merchant platform).
    ///
    /// It signs every request and verifies every response and notify, and its
    /// MD5 is the AES key of refund notifies.
    ///
    /// ```
    /// let key = wxpay_core::ApiKey::new("192006250b4c09247ec02edce69f6a2d");
    /// assert_eq!(format!("{key:?}"), "ApiKey(***)");
    /// assert_eq!(key.to_string(), "***");
    /// ```
    ApiKey
);

secret_newtype!(
    /// The mini-program's AppSecret, used only by `jscode2session`.
    AppSecret
);

secret_newtype!(
    /// A sign-in token from [`Payments::sign_in`](crate::flow::Payments::sign_in):
    /// the bearer token the client sends back. Stores keep only its SHA-256
    /// ([`TokenHash`](crate::flow::TokenHash)).
    SessionToken
);

secret_newtype!(
    /// A WeChat `session_key` from `jscode2session`: it decrypts the user's
    /// data and must stay on the server.
    SessionKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let key = ApiKey::new("supersecretvalue");
        let secret = AppSecret::new("appsecretvalue");
        let session = SessionKey::new("sessionkeyvalue");
        let token = SessionToken::new("tokenvalue");
        for shown in [
            format!("{token:?} {token}"),
            format!("{key:?} {key} {key:#?}"),
            format!("{secret:?} {secret}"),
            format!("{session:?} {session}"),
        ] {
            assert!(!shown.contains("value"), "{shown}");
            assert!(shown.contains("***"));
        }
        assert_eq!(key.expose(), "supersecretvalue");
    }
}
