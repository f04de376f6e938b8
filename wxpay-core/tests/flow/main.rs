//! The payment flow end to end: the store contract, `Payments` against an
//! in-process WeChat stub.

mod store;
