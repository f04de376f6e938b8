//! The framework-agnostic payment flow: the order state machine, the
//! [`OrderStore`] contract, an in-memory store, and the `Payments` service.

mod memory;
mod order;
mod store;

pub use memory::MemoryStore;

pub use order::{
    Fulfilment, IllegalTransition, Order, OrderPatch, OrderState, PendingRefund, Transition,
};
pub use store::{ListFilter, OrderListing, OrderStore, StoreError, TransitionOutcome};
