//! The framework-agnostic payment flow: the order state machine, the
//! [`OrderStore`] contract, an in-memory store, and the [`Payments`] service
//! that adapters expose (checkout, notifies, status, close, refund, login and
//! sign-in sessions, reconciliation).
//!
//! Apps plug in their storage ([`OrderStore`]), their pricing and
//! authentication ([`Checkout`], or the ready-made [`Catalog`] for a fixed
//! price list and wxpay's sign-in sessions) and their business effects
//! ([`PaymentEvents`]); wxpay gets the money handling right: verified
//! notifies only, amounts checked against the stored order, compare-and-set
//! state changes, `on_paid` exactly once in the normal case (see
//! [`PaymentEvents`] for the precise guarantee), late payments recorded and
//! flagged rather than dropped, and lost notifies recovered by orderquery.

mod admin;
mod catalog;
mod checkout;
mod daily;
pub mod decide;
mod events;
mod fulfil;
pub mod gateway;
mod gateway_v3;
pub mod http;
mod inbound;
mod inbound_v3;
mod limit;
mod memory;
mod order;
mod orders;
mod payments;
mod proxy;
mod reconcile;
mod refunds;
mod sessions;
mod store;

pub use admin::{AdminAuth, AdminToken};
pub use catalog::{Catalog, CatalogItem};
pub use checkout::{
    Checkout, CheckoutOutcome, CheckoutRequest, NoCheckout, OrderDraft, Rejection, RejectionKind,
};
pub use daily::{
    BillFigures, DailyError, DailyOptions, DailyReport, Finding, FindingKind, LocalFigures,
    Resolution,
};
pub use decide::AttentionPolicy;
pub use events::{NoEvents, PaymentEvents};
pub use gateway::{Api, Gateway, RequestPayment, V2Gateway};
pub use gateway_v3::V3Gateway;
pub use inbound::{NotifyOutcome, NotifyRejection, NotifyReply};
pub use limit::RateLimit;
pub use memory::MemoryStore;
pub use order::{
    Attention, AttentionKind, Claim, Fulfilment, IllegalTransition, Order, OrderPatch, OrderState,
    Refund, RefundSource, RefundState, Transition,
};
#[cfg(any(test, feature = "testkit"))]
pub(crate) use payments::now;
pub use payments::{Payments, PaymentsBuilder, PaymentsError, Session};
pub use proxy::TrustedProxies;
pub use reconcile::{DailySchedule, ReconcileReport, Reconciler, ReconcilerHandle};
pub use refunds::RefundOutcome;
pub use sessions::{MemorySessions, SessionRecord, SessionStore, SignIn, TokenHash};
pub use store::{
    ListFilter, OrderListing, OrderStore, SettledFilter, StoreError, TransitionOutcome,
};
