//! Who may use the admin routes (refunds, an order's ledger): the app decides.

use std::fmt;

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use super::CheckoutRequest;

/// The app's say over the admin routes (`GET {prefix}/admin/orders/{no}`,
/// `POST {prefix}/admin/orders/{no}/refund`; see
/// [`http`](super::http)). Without one
/// ([`PaymentsBuilder::admin`](super::PaymentsBuilder::admin)) the routes
/// do not exist (`404`). [`AdminToken`] is a ready-made one.
///
/// ```
/// use async_trait::async_trait;
/// use wxpay_core::flow::{AdminAuth, CheckoutRequest};
///
/// /// Staff sessions of the app's own, e.g. from a header its proxy sets.
/// struct Staff;
/// #[async_trait]
/// impl AdminAuth for Staff {
///     async fn allows(&self, req: &CheckoutRequest) -> bool {
///         req.header("x-staff-id").is_some_and(|id| id == "finance-1")
///     }
/// }
/// ```
#[async_trait]
pub trait AdminAuth: Send + Sync + 'static {
    /// Whether the request (its headers) may use the admin routes. A refusal
    /// is answered `401`.
    async fn allows(&self, req: &CheckoutRequest) -> bool;
}

/// A shared secret for the admin routes: `Authorization: Bearer <token>`,
/// compared in constant time. Its `Debug` prints `***`.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token; an empty one allows nobody.
    pub fn new(token: impl Into<String>) -> AdminToken {
        AdminToken(token.into())
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

#[async_trait]
impl AdminAuth for AdminToken {
    async fn allows(&self, req: &CheckoutRequest) -> bool {
        let Some(given) = req
            .header("authorization")
            .and_then(super::sessions::bearer_str)
        else {
            return false;
        };
        !self.0.is_empty() && bool::from(given.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_is_compared_whole_and_never_printed() {
        let t = AdminToken::new("s3cret-admin");
        let req = |h: &str| CheckoutRequest::new("").with_header("authorization", h);
        assert!(t.allows(&req("Bearer s3cret-admin")).await);
        assert!(t.allows(&req("bearer s3cret-admin")).await);
        assert!(!t.allows(&req("Bearer s3cret-admi")).await);
        assert!(!t.allows(&req("Bearer s3cret-admin2")).await);
        assert!(!t.allows(&req("Basic s3cret-admin")).await);
        assert!(!t.allows(&CheckoutRequest::new("")).await);
        assert!(!AdminToken::new("").allows(&req("Bearer ")).await);
        assert_eq!(format!("{t:?}"), "AdminToken(***)");
    }
}
