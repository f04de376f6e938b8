//! wxpay
