//! wxpay-core protocol integration tests: the spec's vectors, the client
//! against a recording transport and a real HTTP stub, notify handling, and
//! the bill parser.

mod bill_download;
mod bill_gen;
mod bill_parse;
mod client;
mod config_v3;
mod identity;
mod notify;
mod support;
mod v2_partner;
mod v3;
mod v3_client;
mod v3_partner;
mod vectors;
