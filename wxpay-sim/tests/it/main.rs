//! Integration tests for the simulator, signing every request and checking
//! every reply with an independent implementation of spec section 2.

mod bills;
mod common;
mod extras;
mod faults;
mod login;
mod notifies;
mod orders;
mod outside_refunds;
mod protocol;
mod refunds;
mod v3;
