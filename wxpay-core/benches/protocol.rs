//! Protocol benchmarks: signing a realistic unifiedorder request, and
//! verifying a realistic payment notify (parse + signature + typed read).
//!
//! Run: `cargo bench -p wxpay-core --bench protocol`. Figures: BENCHMARKS.md.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use md5::{Digest, Md5};
use wxpay_core::{ApiKey, Config, Params, SignType, notify, sign, xml};

const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// An 11-field unifiedorder request (as the client signs it).
fn order() -> Params {
    [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("sign_type", "MD5"),
        ("body", "腾讯充值中心-QQ会员充值"),
        ("out_trade_no", "20150806125346"),
        ("total_fee", "88"),
        ("spbill_create_ip", "123.12.12.123"),
        ("notify_url", "https://example.com/wxpay/notify"),
        ("trade_type", "JSAPI"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
    ]
    .into_iter()
    .collect()
}

/// A 23-field payment notify body (22 fields + sign).
fn notify_body(key: &ApiKey) -> Vec<u8> {
    let mut p: Params = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("attach", "shop=12&floor=3"),
        ("bank_type", "OTHERS"),
        ("cash_fee", "90"),
        ("coupon_count", "1"),
        ("coupon_fee", "10"),
        ("coupon_fee_0", "10"),
        ("coupon_id_0", "10000"),
        ("coupon_type_0", "CASH"),
        ("fee_type", "CNY"),
        ("is_subscribe", "N"),
        ("mch_id", "10000100"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
        ("out_trade_no", "20150806125346"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("sign_type", "MD5"),
        ("time_end", "20150806125400"),
        ("total_fee", "100"),
        ("trade_type", "JSAPI"),
        ("transaction_id", "4200000000000000000000000001"),
    ]
    .into_iter()
    .collect();
    let s = sign::sign(&p, key, SignType::Md5);
    p.insert("sign", s);
    assert_eq!(p.len(), 23);
    xml::to_xml(&p).into_bytes()
}

fn benches(c: &mut Criterion) {
    let key = ApiKey::new(KEY);
    let params = order();
    let canonical = format!("{}&key={KEY}", sign::string_a(&params));

    c.bench_function("md5_canonical_only", |b| {
        b.iter(|| Md5::digest(black_box(canonical.as_bytes())))
    });
    c.bench_function("sign_md5", |b| {
        b.iter(|| sign::sign(black_box(&params), &key, SignType::Md5))
    });
    c.bench_function("sign_hmac", |b| {
        b.iter(|| sign::sign(black_box(&params), &key, SignType::HmacSha256))
    });

    let config = Config::new("wxd930ea5d5a258f4f", "10000100", key.clone());
    let body = notify_body(&key);
    c.bench_function("raw_events", |b| b.iter(|| raw_events(black_box(&body))));
    c.bench_function("parse_notify_xml", |b| {
        b.iter(|| xml::parse(black_box(&body)).expect("valid XML"))
    });
    c.bench_function("verify_notify", |b| {
        b.iter(|| {
            notify::verify_payment_notify(black_box(&body), &config, SignType::Md5)
                .expect("valid notify")
        })
    });
}

criterion_group!(protocol, benches);
criterion_main!(protocol);

/// The quick-xml tokenizer alone over the same body: the floor under `parse_notify_xml`.
fn raw_events(body: &[u8]) -> usize {
    let text = std::str::from_utf8(body).unwrap();
    let mut r = quick_xml::Reader::from_str(text);
    let mut n = 0;
    loop {
        match r.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            _ => n += 1,
        }
    }
    n
}
