//! The shape of the XML the simulator writes: WeChat's, not just any
//! document its parsers accept.
//!
//! WeChat's answers and payment notifies wrap every String-typed value in
//! CDATA, digits included (`time_end`, `transaction_id`, a numeric
//! `out_trade_no`, `mch_id`), and write Int-typed fields (`total_fee`,
//! `cash_fee`, …) bare (spec 1.2, the field tables' types). Inside the
//! refund notify's `req_info` every value is in CDATA, numbers too (spec
//! 12.4, R1 and the real R3 sample).

use wxpay_core::Params;

/// The fields the spec types as Int (amounts and counts); `_$n` / `_$n_$m`
/// suffixes (`refund_fee_0`, `coupon_refund_fee_0_1`) are stripped first.
const INT_FIELDS: &[&str] = &[
    "total_fee",
    "cash_fee",
    "settlement_total_fee",
    "coupon_fee",
    "coupon_count",
    "refund_fee",
    "settlement_refund_fee",
    "cash_refund_fee",
    "coupon_refund_fee",
    "coupon_refund_count",
    "refund_count",
    "total_refund_count",
];

/// How Int-typed fields are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ints {
    /// `<total_fee>88</total_fee>`.
    Bare,
    /// `<total_fee><![CDATA[88]]></total_fee>`.
    Cdata,
}

/// Whether WeChat types `name` as Int.
pub(crate) fn is_int_field(name: &str) -> bool {
    let mut base = name;
    while let Some((head, tail)) = base.rsplit_once('_') {
        if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        base = head;
    }
    INT_FIELDS.contains(&base)
}

/// Writes `params` under `root`: empty values left out, Int fields with
/// plain digits as `ints` says, everything else in CDATA (`]]>` split across
/// two sections).
pub(crate) fn to_xml(params: &Params, root: &str, ints: Ints) -> String {
    wxpay_core::xml::to_xml_shaped(params, root, |k, v| {
        ints == Ints::Bare && is_int_field(k) && v.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_fields_by_type_not_by_value() {
        for n in [
            "total_fee",
            "cash_fee",
            "refund_fee_0",
            "coupon_refund_fee_0_1",
            "refund_count",
        ] {
            assert!(is_int_field(n), "{n}");
        }
        for n in [
            "time_end",
            "transaction_id",
            "out_trade_no",
            "mch_id",
            "refund_id_0",
            "fee_type",
            "total_fee_type",
            "_0",
        ] {
            assert!(!is_int_field(n), "{n}");
        }
    }

    #[test]
    fn writes_wechat_shape_and_parses_back() {
        let p: Params = [
            ("total_fee", "88"),
            ("time_end", "20260101120000"),
            ("out_trade_no", "20150806125346"),
            ("body", "a]]>b"),
            ("attach", ""),
        ]
        .into_iter()
        .collect();
        let bare = to_xml(&p, "xml", Ints::Bare);
        assert_eq!(
            bare,
            "<xml><body><![CDATA[a]]]]><![CDATA[>b]]></body>\
<out_trade_no><![CDATA[20150806125346]]></out_trade_no>\
<time_end><![CDATA[20260101120000]]></time_end><total_fee>88</total_fee></xml>"
        );
        let cdata = to_xml(&p, "root", Ints::Cdata);
        assert!(cdata.contains("<total_fee><![CDATA[88]]></total_fee>"));
        for (doc, root) in [(bare, "xml"), (cdata, "root")] {
            let back = wxpay_core::xml::parse_with(doc.as_bytes(), root, 1 << 20).unwrap();
            assert_eq!(back.get("total_fee"), Some("88"));
            assert_eq!(back.get("body"), Some("a]]>b"));
            assert_eq!(back.get("time_end"), Some("20260101120000"));
            assert_eq!(back.get("attach"), None);
        }
    }
}
