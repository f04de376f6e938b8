//! Bills: v2 `downloadbill`, v3 `tradebill` / `fundflowbill` and the
//! download, built from what the simulator recorded, with the bill faults.
//! The bill text is read here with a few lines of its own (split on `,` and
//! back-ticks), not with the core's parser.

use std::{collections::BTreeMap, io::Read, time::Duration};

use serde_json::{Value, json};
use wxpay_core::Fen;
use wxpay_sim::{BillAmountChange, BillKind, Faults, SimError, SimOrder};

use crate::common::{
    Env, assert_ok, fast_config, order_fields, parse, refund_req, spec_sign, unique, xml_body,
};
use crate::v3::{Client, Resp, cert_verifier, jsapi_body};

// ---------------------------------------------------------------- parsing

/// A bill read back: header names, rows by name, the summary by name.
#[derive(Debug)]
struct Bill {
    header: Vec<String>,
    rows: Vec<BTreeMap<String, String>>,
    summary: BTreeMap<String, String>,
}

impl Bill {
    fn row_of(&self, status: &str, no: &str) -> &BTreeMap<String, String> {
        self.rows
            .iter()
            .find(|r| {
                r["交易状态"] == status
                    && (r["商户订单号"] == no || r.get("商户退款单号").is_some_and(|n| n == no))
            })
            .unwrap_or_else(|| panic!("no {status} row for {no}: {:#?}", self.rows))
    }
}

/// Splits a data line: every field starts with a back-tick, fields are
/// separated by commas.
fn fields(line: &str) -> Vec<String> {
    let rest = line
        .strip_prefix('`')
        .unwrap_or_else(|| panic!("data line without back-tick: {line:?}"));
    rest.split(",`").map(str::to_owned).collect()
}

/// Reads a bill: header, back-ticked rows, summary header, summary line;
/// every line ends with CRLF.
fn read_bill(text: &str) -> Bill {
    assert!(text.ends_with("\r\n"), "no final CRLF: {text:?}");
    let lines: Vec<&str> = text[..text.len() - 2].split("\r\n").collect();
    for l in &lines {
        assert!(
            !l.contains('\n') && !l.contains('\r'),
            "bare line end in {l:?}"
        );
    }
    let header: Vec<String> = lines[0].split(',').map(str::to_owned).collect();
    let mut rows = Vec::new();
    let mut i = 1;
    while lines[i].starts_with('`') {
        let f = fields(lines[i]);
        assert_eq!(f.len(), header.len(), "row {i}: {:?}", lines[i]);
        rows.push(header.iter().cloned().zip(f).collect());
        i += 1;
    }
    let summary_header: Vec<&str> = lines[i].split(',').collect();
    let summary_values = fields(lines[i + 1]);
    assert_eq!(summary_header.len(), summary_values.len());
    assert_eq!(lines.len(), i + 2, "lines after the summary: {text:?}");
    let summary = summary_header
        .iter()
        .map(|s| s.to_string())
        .zip(summary_values)
        .collect();
    Bill {
        header,
        rows,
        summary,
    }
}

/// `29.90` → 2990, `-0.06000` → -6 (five-decimal fees end in `000`).
fn fen(s: &str) -> i64 {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, dec) = s.split_once('.').unwrap_or_else(|| panic!("{s:?}"));
    let dec = match dec.len() {
        2 => dec,
        5 => dec
            .strip_suffix("000")
            .unwrap_or_else(|| panic!("fee below the fen: {s}")),
        _ => panic!("not an amount: {s:?}"),
    };
    let v = int.parse::<i64>().unwrap() * 100 + dec.parse::<i64>().unwrap();
    if neg { -v } else { v }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "not gzip");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn sha1(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The columns of the trade bill (spec 12.4), in order.
const TRADE_COLUMNS: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const FUND_COLUMNS: &str = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号";

/// The summary of a trade bill equals the sums of its rows.
fn assert_trade_totals_tie_out(b: &Bill) {
    let sum = |col: &str| b.rows.iter().map(|r| fen(&r[col])).sum::<i64>();
    assert_eq!(b.summary["总交易单数"], b.rows.len().to_string());
    assert_eq!(fen(&b.summary["应结订单总金额"]), sum("应结订单金额"));
    assert_eq!(fen(&b.summary["退款总金额"]), sum("退款金额"));
    assert_eq!(fen(&b.summary["充值券退款总金额"]), sum("充值券退款金额"));
    assert_eq!(fen(&b.summary["手续费总金额"]), sum("手续费"));
    assert_eq!(fen(&b.summary["订单总金额"]), sum("订单金额"));
    assert_eq!(fen(&b.summary["申请退款总金额"]), sum("申请退款金额"));
    assert!(b.summary["手续费总金额"].split('.').nth(1).unwrap().len() == 5);
    // Time order.
    let times: Vec<&str> = b.rows.iter().map(|r| r["交易时间"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

// ---------------------------------------------------------------- the day

/// `yyyyMMddHHmmss` → (`yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss`).
fn times_of(time_end: &str) -> (String, String) {
    let t = time_end;
    let date = format!("{}-{}-{}", &t[0..4], &t[4..6], &t[6..8]);
    let time = format!("{date} {}:{}:{}", &t[8..10], &t[10..12], &t[12..14]);
    (date, time)
}

/// One row a bill should have, worked out here by hand.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    date: String,
    time: String,
    status: &'static str,
    out_trade_no: String,
    transaction_id: String,
    refund_id: String,
    out_refund_no: String,
    /// 应结订单金额, 退款金额, 手续费 (signed), 订单金额, 申请退款金额 (fen).
    settlement: i64,
    refund: i64,
    fee: i64,
    total: i64,
    asked: i64,
    body: String,
    attach: String,
    openid: String,
}

/// A day's worth: a v2 order of 29.90 and a v3 order of 9.90, both paid
/// through `/sim/pay`, and a 10.00 refund of the first through
/// `/secapi/pay/refund` (final at once). The rows the bills should have,
/// with the fees at 0.60%: 0.18 and 0.06 on the payments; the refund gives
/// back round(0.18 × 10.00 / 29.90) = 0.06.
struct DayFixture {
    env: Env,
    v3: Client,
    a: SimOrder,
    expected: Vec<Expected>,
}

impl DayFixture {
    async fn start() -> DayFixture {
        let env = Env::with(fast_config().with_refund_delay(Duration::ZERO)).await;
        let v3 = Client::new(&env.sim);
        let a_no = unique("BILLA");
        let mut f = order_fields(&env, &a_no, "http://127.0.0.1:9/pay", None);
        f.insert("total_fee".into(), "2990".into());
        f.insert("body".into(), "小张南山店-会员月卡".into());
        f.insert("attach".into(), "cart=7&src=mp".into());
        assert_ok(&env.call("/pay/unifiedorder", f).await);
        let b_no = unique("BILLB");
        let r = v3
            .call(
                "POST",
                "/v3/pay/transactions/jsapi",
                Some(jsapi_body(
                    &env.sim,
                    &b_no,
                    990,
                    "http://127.0.0.1:9/notify",
                )),
            )
            .await;
        assert_eq!(r.status, 200);
        for no in [&a_no, &b_no] {
            let (status, _) = env
                .post_json("/sim/pay", json!({ "out_trade_no": no }))
                .await;
            assert_eq!(status, 200);
        }
        let refund = env
            .call(
                "/secapi/pay/refund",
                refund_req(&env, &a_no, "BILLRA1", "2990", "1000", None),
            )
            .await;
        assert_ok(&refund);
        let a = env.sim.order(&a_no).await.unwrap();
        let b = env.sim.order(&b_no).await.unwrap();
        assert_eq!(
            a.refunds[0].refund_status,
            wxpay_core::RefundStatus::Success
        );
        let pay = |o: &SimOrder, fee: i64| {
            let (date, time) = times_of(o.time_end.as_deref().unwrap());
            Expected {
                date,
                time,
                status: "SUCCESS",
                out_trade_no: o.out_trade_no.clone(),
                transaction_id: o.transaction_id.clone().unwrap(),
                refund_id: "0".into(),
                out_refund_no: "0".into(),
                settlement: o.total_fee.get() as i64,
                refund: 0,
                fee,
                total: o.total_fee.get() as i64,
                asked: 0,
                body: o.body.clone(),
                attach: o.attach.clone().unwrap_or_default(),
                openid: o.openid.clone().unwrap(),
            }
        };
        let r = &a.refunds[0];
        let time = r.success_time.clone().unwrap();
        let refund_row = Expected {
            date: time[..10].to_owned(),
            time,
            status: "REFUND",
            refund_id: r.refund_id.clone(),
            out_refund_no: r.out_refund_no.clone(),
            settlement: 0,
            refund: 1000,
            fee: -6,
            total: 0,
            asked: 1000,
            ..pay(&a, 0)
        };
        let expected = vec![pay(&a, 18), pay(&b, 6), refund_row];
        assert_eq!(expected[0].body, "小张南山店-会员月卡");
        assert_eq!(expected[1].body, "模拟商店-商品");
        DayFixture {
            env,
            v3,
            a,
            expected,
        }
    }

    /// The bill date of the first payment, as the simulator recorded it.
    fn date(&self) -> String {
        self.expected[0].date.clone()
    }

    fn date8(&self) -> String {
        self.date().replace('-', "")
    }

    /// The expected rows of `date` with `status` (`None`: all).
    fn expected(&self, status: Option<&str>) -> Vec<Expected> {
        let d = self.date();
        self.expected
            .iter()
            .filter(|e| e.date == d && status.is_none_or(|s| s == e.status))
            .cloned()
            .collect()
    }

    /// v2 `downloadbill`: status, content type, body bytes.
    async fn v2(&self, extra: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
        self.v2_at("/pay/downloadbill", extra).await
    }

    async fn v2_at(&self, path: &str, extra: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
        let mut f = self.env.base(None);
        f.insert("bill_date".into(), self.date8());
        for (k, v) in extra {
            f.insert((*k).into(), (*v).into());
        }
        let st = f.get("sign_type").cloned().unwrap_or_else(|| "MD5".into());
        let sign = spec_sign(&f, self.env.key(), &st);
        f.insert("sign".into(), sign);
        raw_post(&self.env, path, xml_body(&f)).await
    }

    /// A v3 GET, its signed answer verified.
    async fn v3_get(&self, url: &str) -> Resp {
        let r = self.v3.call("GET", url, None).await;
        r.validate(cert_verifier())
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        r
    }

    /// Applies at `url` and downloads: the answer's JSON and the download.
    async fn v3_bill(&self, url: &str) -> (Value, Resp) {
        let apply = self.v3_get(url).await;
        assert_eq!(
            apply.status,
            200,
            "{}",
            String::from_utf8_lossy(&apply.body)
        );
        let answer = apply.json();
        let download = self.download(&answer).await;
        (answer, download)
    }

    async fn download(&self, answer: &Value) -> Resp {
        let url = answer["download_url"].as_str().unwrap();
        let path = url
            .strip_prefix(&self.env.sim.base_url())
            .unwrap_or_else(|| panic!("download_url {url} is not on the simulator"));
        let d = self.v3.call("GET", path, None).await;
        assert_eq!(d.status, 200, "{}", String::from_utf8_lossy(&d.body));
        d
    }
}

/// Posts an XML body; status, content type and raw bytes.
async fn raw_post(env: &Env, path: &str, body: String) -> (u16, String, Vec<u8>) {
    let r = env
        .http
        .post(env.url(path))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

/// A v2 `downloadbill` failure: `return_code=FAIL` with this message,
/// unsigned.
fn assert_v2_fail(reply: &(u16, String, Vec<u8>), msg: &str) -> BTreeMap<String, String> {
    let text = String::from_utf8(reply.2.clone()).unwrap();
    assert!(text.starts_with("<xml>"), "not XML: {text}");
    let p = parse(&text);
    assert_eq!(p["return_code"], "FAIL", "{p:?}");
    assert_eq!(p["return_msg"], msg, "{p:?}");
    assert!(!p.contains_key("sign"), "{p:?}");
    p
}

fn assert_v3_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (status, Some(code)),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// The trade-bill rows equal `expected` (any order), field by field.
fn assert_trade_rows(bill: &Bill, expected: &[Expected], mch_id: &str, appid: &str) {
    assert_eq!(bill.header.join(","), TRADE_COLUMNS);
    assert_eq!(bill.rows.len(), expected.len(), "{:#?}", bill.rows);
    for e in expected {
        let no = if e.status == "REFUND" {
            &e.out_refund_no
        } else {
            &e.out_trade_no
        };
        let r = bill.row_of(e.status, no);
        let want = [
            ("交易时间", e.time.clone()),
            ("公众账号ID", appid.to_owned()),
            ("商户号", mch_id.to_owned()),
            ("特约商户号", "0".into()),
            ("设备号", String::new()),
            ("微信订单号", e.transaction_id.clone()),
            ("商户订单号", e.out_trade_no.clone()),
            ("用户标识", e.openid.clone()),
            ("交易类型", "JSAPI".into()),
            ("付款银行", "OTHERS".into()),
            ("货币种类", "CNY".into()),
            ("代金券金额", "0.00".into()),
            ("微信退款单号", e.refund_id.clone()),
            ("商户退款单号", e.out_refund_no.clone()),
            ("充值券退款金额", "0.00".into()),
            (
                "退款类型",
                if e.status == "REFUND" { "ORIGINAL" } else { "" }.into(),
            ),
            (
                "退款状态",
                if e.status == "REFUND" { "SUCCESS" } else { "" }.into(),
            ),
            ("商品名称", e.body.clone()),
            ("商户数据包", e.attach.clone()),
            ("费率", "0.60%".into()),
            ("费率备注", String::new()),
        ];
        for (col, v) in want {
            assert_eq!(r[col], v, "{col} of {no}: {r:?}");
        }
        for (col, v) in [
            ("应结订单金额", e.settlement),
            ("退款金额", e.refund),
            ("手续费", e.fee),
            ("订单金额", e.total),
            ("申请退款金额", e.asked),
        ] {
            assert_eq!(fen(&r[col]), v, "{col} of {no}: {r:?}");
        }
        assert_eq!(r["手续费"].split('.').nth(1).unwrap().len(), 5, "{r:?}");
        assert_eq!(r["应结订单金额"].split('.').nth(1).unwrap().len(), 2);
    }
    assert_trade_totals_tie_out(bill);
    let sum = |f: fn(&Expected) -> i64| expected.iter().map(f).sum::<i64>();
    assert_eq!(fen(&bill.summary["应结订单总金额"]), sum(|e| e.settlement));
    assert_eq!(fen(&bill.summary["手续费总金额"]), sum(|e| e.fee));
    assert_eq!(fen(&bill.summary["退款总金额"]), sum(|e| e.refund));
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn v2_and_v3_trade_bills_plain_and_gzip_hold_the_days_rows() {
    let day = DayFixture::start().await;
    let cfg = day.env.sim.config().clone();
    let date = day.date();

    // v2, plain and gzip (MD5 and HMAC-SHA256 requests).
    let (status, ct, plain) = day.v2(&[("bill_type", "ALL")]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(!plain.starts_with(b"<xml>"));
    let (_, _, gz) = day
        .v2(&[("tar_type", "GZIP"), ("sign_type", "HMAC-SHA256")])
        .await;
    assert_eq!(gunzip(&gz), plain, "v2 gzip is the plain bill compressed");

    // v3, plain and gzip.
    let url = format!("/v3/bill/tradebill?bill_date={date}&bill_type=ALL");
    let (answer, download) = day.v3_bill(&url).await;
    assert_eq!(answer["hash_type"], "SHA1");
    assert_eq!(download.body, plain, "v2 and v3 serve the same bill");
    assert_eq!(answer["hash_value"], sha1(&download.body));
    assert!(!answer["download_url"].as_str().unwrap().contains("tartype"));
    // The answer keeps WeChat's field order.
    let text = String::from_utf8(day.v3_get(&url).await.body).unwrap();
    assert!(
        text.starts_with("{\"hash_type\":\"SHA1\",\"hash_value\":\""),
        "{text}"
    );
    // The download is the file, with no Wechatpay-* signature headers.
    for (k, _) in &download.headers {
        assert!(!k.to_ascii_lowercase().starts_with("wechatpay-"), "{k}");
    }
    assert!(download.header("Wechatpay-Signature").is_none());

    let gz_url = format!("/v3/bill/tradebill?bill_date={date}&tar_type=GZIP");
    let (gz_answer, gz_download) = day.v3_bill(&gz_url).await;
    let gz_url_given = gz_answer["download_url"].as_str().unwrap();
    assert!(gz_url_given.ends_with("&tartype=gzip"), "{gz_url_given}");
    let unzipped = gunzip(&gz_download.body);
    assert_eq!(unzipped, plain);
    assert_eq!(gz_answer["hash_value"], sha1(&unzipped));
    assert_ne!(gz_answer["hash_value"], sha1(&gz_download.body));

    // SimHandle::bill gives the same text.
    let text = day.env.sim.bill(&date, BillKind::All).await.unwrap();
    assert_eq!(text.as_bytes(), plain);

    let bill = read_bill(&text);
    assert_trade_rows(&bill, &day.expected(None), &cfg.mch_id, &cfg.appid);
    if day.expected(None).len() == 3 {
        // All on one date (not across midnight): the hand-made totals.
        assert_eq!(
            text.lines().last().unwrap(),
            "`3,`39.80,`10.00,`0.00,`0.18000,`39.80,`10.00"
        );
    }
    // The sandbox path serves it too.
    let (status, _, sandbox) = day.v2_at("/sandboxnew/pay/downloadbill", &[]).await;
    assert_eq!((status, sandbox), (200, plain));
}

#[tokio::test]
async fn the_download_needs_a_signature_and_a_live_token() {
    let day = DayFixture::start().await;
    let date = day.date();
    let apply = day
        .v3_get(&format!("/v3/bill/tradebill?bill_date={date}"))
        .await;
    let answer = apply.json();
    let first = day.download(&answer).await;
    // A token works again while it lives.
    assert_eq!(day.download(&answer).await.body, first.body);

    let url = answer["download_url"].as_str().unwrap();
    let path = url.strip_prefix(&day.env.sim.base_url()).unwrap();
    // Signed for another URL: refused, 401 SIGN_ERROR.
    let credential = day.env.sim.v3_merchant().credential().unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let wrong = credential
        .authorization("GET", &format!("{path}x"), &ts, "nonce-bill-1", b"")
        .unwrap();
    let r = day.v3.send("GET", path, String::new(), &wrong).await;
    assert_v3_error(&r, 401, "SIGN_ERROR");
    // No Authorization at all.
    let r = day.env.http.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // An unknown token: 400 INVALID_REQUEST, signed like every v3 error.
    let r = day
        .v3_get("/v3/billdownload/file?token=NoSuchTokenAtAll0000")
        .await;
    assert_v3_error(&r, 400, "INVALID_REQUEST");
    let r = day.v3_get("/v3/billdownload/file").await;
    assert_v3_error(&r, 400, "INVALID_REQUEST");
}

#[tokio::test]
async fn bill_types_filter_rows() {
    let day = DayFixture::start().await;
    let cfg = day.env.sim.config().clone();
    let date = day.date();

    let (_, _, success) = day.v2(&[("bill_type", "SUCCESS")]).await;
    let bill = read_bill(std::str::from_utf8(&success).unwrap());
    assert!(bill.rows.iter().all(|r| r["交易状态"] == "SUCCESS"));
    assert_trade_rows(
        &bill,
        &day.expected(Some("SUCCESS")),
        &cfg.mch_id,
        &cfg.appid,
    );
    let (_, v3_success) = day
        .v3_bill(&format!(
            "/v3/bill/tradebill?bill_date={date}&bill_type=SUCCESS"
        ))
        .await;
    assert_eq!(v3_success.body, success);

    let refunds = day.expected(Some("REFUND"));
    let (_, _, refund) = day.v2(&[("bill_type", "REFUND")]).await;
    let v3_refund = day
        .v3_get(&format!(
            "/v3/bill/tradebill?bill_date={date}&bill_type=REFUND"
        ))
        .await;
    if refunds.is_empty() {
        // The refund fell on the next day (midnight between pay and refund).
        assert_v2_fail(&(200, String::new(), refund), "No Bill Exist");
        assert_v3_error(&v3_refund, 400, "NO_STATEMENT_EXIST");
    } else {
        let bill = read_bill(std::str::from_utf8(&refund).unwrap());
        assert!(bill.rows.iter().all(|r| r["交易状态"] == "REFUND"));
        assert_trade_rows(&bill, &refunds, &cfg.mch_id, &cfg.appid);
        assert_eq!(day.download(&v3_refund.json()).await.body, refund);
        assert_eq!(
            day.env
                .sim
                .bill(&date, BillKind::Refund)
                .await
                .unwrap()
                .as_bytes(),
            refund
        );
    }

    // Recharge refunds: none here, so no bill.
    let r = day.v2(&[("bill_type", "RECHARGE_REFUND")]).await;
    assert_eq!(assert_v2_fail(&r, "No Bill Exist")["error_code"], "20002");
    let r = day
        .v3_get(&format!(
            "/v3/bill/tradebill?bill_date={date}&bill_type=RECHARGE_REFUND"
        ))
        .await;
    assert_v3_error(&r, 400, "NO_STATEMENT_EXIST");
}

#[tokio::test]
async fn empty_days_and_bad_requests_are_refused() {
    let day = DayFixture::start().await;
    let env = &day.env;
    let date = day.date();
    // A day without orders: no bill.
    let mut f = env.base(None);
    f.insert("bill_date".into(), "20010101".into());
    let sign = spec_sign(&f, env.key(), "MD5");
    f.insert("sign".into(), sign);
    let r = raw_post(env, "/pay/downloadbill", xml_body(&f)).await;
    let p = assert_v2_fail(&r, "No Bill Exist");
    assert_eq!(p["error_code"], "20002");
    let r = day.v3_get("/v3/bill/tradebill?bill_date=2001-01-01").await;
    assert_v3_error(&r, 400, "NO_STATEMENT_EXIST");
    let r = day
        .v3_get("/v3/bill/fundflowbill?bill_date=2001-01-01")
        .await;
    assert_v3_error(&r, 400, "NO_STATEMENT_EXIST");
    assert!(matches!(
        env.sim.bill("2001-01-01", BillKind::All).await,
        Err(SimError::NoBill(d)) if d == "2001-01-01"
    ));

    // Bad dates.
    for bad in ["2026-01-01", "20261301", "2026011", "abcdefgh"] {
        let r = day.v2(&[("bill_date", bad)]).await;
        assert_eq!(
            assert_v2_fail(&r, "data format error")["error_code"],
            "20001"
        );
    }
    for bad in ["20260101", "2026-02-30", "2026-1-1", "2026-01-01x"] {
        let r = day
            .v3_get(&format!("/v3/bill/tradebill?bill_date={bad}"))
            .await;
        assert_v3_error(&r, 400, "PARAM_ERROR");
        assert_eq!(r.json()["detail"]["field"], "bill_date");
        let r = day
            .v3_get(&format!("/v3/bill/fundflowbill?bill_date={bad}"))
            .await;
        assert_v3_error(&r, 400, "PARAM_ERROR");
        assert!(matches!(
            env.sim.bill(bad, BillKind::All).await,
            Err(SimError::BillDate(_))
        ));
    }
    let r = day.v3_get("/v3/bill/tradebill").await;
    assert_v3_error(&r, 400, "PARAM_ERROR");
    assert_eq!(r.json()["detail"]["field"], "bill_date");

    // Bad bill_type / tar_type / account_type.
    let r = day.v2(&[("bill_type", "EVERYTHING")]).await;
    assert_v2_fail(&r, "invalid bill_type");
    let r = day.v2(&[("tar_type", "ZIP")]).await;
    assert_v2_fail(&r, "invalid tar_type");
    for q in ["bill_type=EVERYTHING", "tar_type=ZIP"] {
        let r = day
            .v3_get(&format!("/v3/bill/tradebill?bill_date={date}&{q}"))
            .await;
        assert_v3_error(&r, 400, "PARAM_ERROR");
    }
    let r = day
        .v3_get(&format!(
            "/v3/bill/fundflowbill?bill_date={date}&account_type=SAVINGS"
        ))
        .await;
    assert_v3_error(&r, 400, "PARAM_ERROR");
    assert_eq!(r.json()["detail"]["field"], "account_type");
    for account in ["OPERATION", "FEES"] {
        let r = day
            .v3_get(&format!(
                "/v3/bill/fundflowbill?bill_date={date}&account_type={account}"
            ))
            .await;
        assert_v3_error(&r, 400, "NO_STATEMENT_EXIST");
    }

    // v2 request problems, as the other endpoints answer them.
    let mut f = env.base(None);
    f.insert("bill_date".into(), day.date8());
    f.insert("sign".into(), "0".repeat(32));
    let r = raw_post(env, "/pay/downloadbill", xml_body(&f)).await;
    assert_v2_fail(&r, "签名错误");
    let r = raw_post(env, "/pay/downloadbill", String::new()).await;
    assert_v2_fail(&r, "post数据为空");
    let get = env
        .http
        .get(env.url("/pay/downloadbill"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_v2_fail(&(200, String::new(), get.into_bytes()), "请使用post方法");
    let mut f = env.base(None);
    let sign = spec_sign(&f, env.key(), "MD5");
    f.insert("sign".into(), sign);
    let r = raw_post(env, "/pay/downloadbill", xml_body(&f)).await;
    assert_v2_fail(&r, "missing parameter");
}

#[tokio::test]
async fn bill_not_ready_is_reported_until_turned_off() {
    let day = DayFixture::start().await;
    let env = &day.env;
    let date = day.date();
    let (status, _) = env
        .post_json("/sim/faults", json!({ "bill_not_ready": true }))
        .await;
    assert_eq!(status, 200);
    assert!(env.sim.faults().await.bill_not_ready);
    let r = day.v2(&[]).await;
    assert_v2_fail(&r, "Bill Creating");
    for url in [
        format!("/v3/bill/tradebill?bill_date={date}"),
        format!("/v3/bill/fundflowbill?bill_date={date}"),
        // Also for a day that would have no bill.
        "/v3/bill/tradebill?bill_date=2001-01-01".to_owned(),
    ] {
        assert_v3_error(&day.v3_get(&url).await, 400, "STATEMENT_CREATING");
    }
    assert!(matches!(
        env.sim.bill(&date, BillKind::All).await,
        Err(SimError::BillNotReady)
    ));

    env.sim.set_faults(Faults::default()).await;
    let (status, _, body) = day.v2(&[]).await;
    assert_eq!(status, 200);
    assert!(!body.starts_with(b"<xml>"));
    let (answer, _) = day
        .v3_bill(&format!("/v3/bill/tradebill?bill_date={date}"))
        .await;
    assert_eq!(answer["hash_type"], "SHA1");
}

#[tokio::test]
async fn unknown_rows_appear_in_every_bill_and_the_totals() {
    let day = DayFixture::start().await;
    let env = &day.env;
    let (date, d8) = (day.date(), day.date8());
    let before = read_bill(&env.sim.bill(&date, BillKind::All).await.unwrap());
    let (status, _) = env
        .post_json("/sim/faults", json!({ "bill_unknown_rows": 2 }))
        .await;
    assert_eq!(status, 200);

    let (_, _, v2) = day.v2(&[]).await;
    let text = String::from_utf8(v2).unwrap();
    let bill = read_bill(&text);
    assert_eq!(bill.rows.len(), before.rows.len() + 2);
    for (n, amount) in [(1, 100), (2, 200)] {
        let no = format!("SIMUNKNOWN{d8}000{n}");
        let r = bill.row_of("SUCCESS", &no);
        assert_eq!(r["微信订单号"], format!("4200{d8}9{n:015}"));
        assert_eq!(r["微信订单号"].len(), 28);
        assert_eq!(fen(&r["应结订单金额"]), amount);
        assert_eq!(fen(&r["订单金额"]), amount);
        // 0.60% of 1.00 is 0.6 fen → 0.01; of 2.00, 1.2 fen → 0.01.
        assert_eq!(fen(&r["手续费"]), 1);
        assert!(r["交易时间"].starts_with(&date));
    }
    assert_trade_totals_tie_out(&bill);
    assert_eq!(
        fen(&bill.summary["应结订单总金额"]),
        fen(&before.summary["应结订单总金额"]) + 300
    );
    // The v3 download is the same bill.
    let (_, download) = day
        .v3_bill(&format!("/v3/bill/tradebill?bill_date={date}"))
        .await;
    assert_eq!(download.body, text.as_bytes());
    // They are payments: not in the refund bill, in the fund flow.
    if let Ok(refunds) = env.sim.bill(&date, BillKind::Refund).await {
        assert!(!refunds.contains("SIMUNKNOWN"));
    }
    let flow = read_bill(&env.sim.bill(&date, BillKind::FundFlow).await.unwrap());
    assert!(
        flow.rows
            .iter()
            .any(|r| r["业务凭证号"] == format!("SIMUNKNOWN{d8}0002")
                && r["业务名称"] == "交易"
                && r["收支金额(元)"] == "2.00")
    );
    // A day without orders now has a bill too.
    let other = env.sim.bill("2001-01-01", BillKind::Success).await.unwrap();
    assert!(
        other.ends_with("`2,`3.00,`0.00,`0.00,`0.02000,`3.00,`0.00\r\n"),
        "{other}"
    );

    // Bounded through the control API.
    let (status, _) = env
        .post_json("/sim/faults", json!({ "bill_unknown_rows": 10_001 }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(env.sim.faults().await.bill_unknown_rows, 2);

    env.sim.set_faults(Faults::default()).await;
    let after = env.sim.bill(&date, BillKind::All).await.unwrap();
    assert!(!after.contains("SIMUNKNOWN"));
    assert_eq!(read_bill(&after).rows.len(), before.rows.len());
}

#[tokio::test]
async fn amount_changes_show_in_the_row_and_the_totals() {
    let day = DayFixture::start().await;
    let env = &day.env;
    let date = day.date();
    let a = day.a.out_trade_no.clone();
    let before = read_bill(&env.sim.bill(&date, BillKind::All).await.unwrap());
    let (status, body) = env
        .post_json(
            "/sim/faults",
            json!({ "bill_amount_changes": [{ "out_trade_no": a, "settlement_fee": 2991 }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        env.sim.faults().await.bill_amount_changes,
        vec![BillAmountChange::new(a.clone(), Fen(2991))]
    );

    let (_, _, v2) = day.v2(&[]).await;
    let bill = read_bill(std::str::from_utf8(&v2).unwrap());
    let row = bill.row_of("SUCCESS", &a);
    assert_eq!(row["应结订单金额"], "29.91");
    // What was really paid, and its fee, stay.
    assert_eq!(row["订单金额"], "29.90");
    assert_eq!(row["手续费"], "0.18000");
    assert_trade_totals_tie_out(&bill);
    assert_eq!(
        fen(&bill.summary["应结订单总金额"]),
        fen(&before.summary["应结订单总金额"]) + 1
    );
    assert_eq!(bill.summary["订单总金额"], before.summary["订单总金额"]);
    let (_, download) = day
        .v3_bill(&format!("/v3/bill/tradebill?bill_date={date}"))
        .await;
    assert_eq!(download.body, v2);
    let flow = read_bill(&env.sim.bill(&date, BillKind::FundFlow).await.unwrap());
    let income = flow
        .rows
        .iter()
        .find(|r| r["业务凭证号"] == a && r["业务名称"] == "交易")
        .unwrap();
    assert_eq!(income["收支金额(元)"], "29.91");

    env.sim.set_faults(Faults::default()).await;
    let again = read_bill(&env.sim.bill(&date, BillKind::All).await.unwrap());
    assert_eq!(again.row_of("SUCCESS", &a)["应结订单金额"], "29.90");
}

#[tokio::test]
async fn bad_hashes_are_given_the_next_n_times() {
    let day = DayFixture::start().await;
    let env = &day.env;
    let date = day.date();
    env.sim
        .set_faults(Faults {
            bill_bad_hash: 2,
            ..Faults::default()
        })
        .await;
    let trade = format!("/v3/bill/tradebill?bill_date={date}&tar_type=GZIP");
    let flow = format!("/v3/bill/fundflowbill?bill_date={date}");
    let (answer, d) = day.v3_bill(&trade).await;
    let file = gunzip(&d.body);
    let hash = answer["hash_value"].as_str().unwrap();
    assert_eq!(hash.len(), 40);
    assert_ne!(hash, sha1(&file), "first apply: wrong hash");
    assert_eq!(env.get_json("/sim/faults").await["bill_bad_hash"], 1);
    // A failed apply does not use one up.
    let r = day.v3_get("/v3/bill/tradebill?bill_date=2001-01-01").await;
    assert_v3_error(&r, 400, "NO_STATEMENT_EXIST");
    assert_eq!(env.sim.faults().await.bill_bad_hash, 1);
    let (answer, d) = day.v3_bill(&flow).await;
    assert_ne!(
        answer["hash_value"],
        sha1(&d.body),
        "second apply: wrong hash"
    );
    assert_eq!(env.sim.faults().await.bill_bad_hash, 0);
    // Discard and apply again: right from now on, the same file as before.
    let (answer, d) = day.v3_bill(&trade).await;
    let again = gunzip(&d.body);
    assert_eq!(again, file);
    assert_eq!(answer["hash_value"], sha1(&again));
    let (answer, d) = day.v3_bill(&flow).await;
    assert_eq!(answer["hash_value"], sha1(&d.body));
}

#[tokio::test]
async fn the_fund_flow_bill_runs_its_balance_from_zero() {
    let day = DayFixture::start().await;
    let cfg = day.env.sim.config().clone();
    let date = day.date();
    let (answer, plain) = day
        .v3_bill(&format!(
            "/v3/bill/fundflowbill?bill_date={date}&account_type=BASIC"
        ))
        .await;
    assert_eq!(answer["hash_value"], sha1(&plain.body));
    let (gz_answer, gz) = day
        .v3_bill(&format!(
            "/v3/bill/fundflowbill?bill_date={date}&tar_type=GZIP"
        ))
        .await;
    assert_eq!(gunzip(&gz.body), plain.body);
    assert_eq!(gz_answer["hash_value"], answer["hash_value"]);
    let text = String::from_utf8(plain.body.clone()).unwrap();
    assert_eq!(
        text,
        day.env.sim.bill(&date, BillKind::FundFlow).await.unwrap()
    );
    let flow = read_bill(&text);
    assert_eq!(flow.header.join(","), FUND_COLUMNS);

    // Per payment an income and a fee row, per refund an expense of the
    // refund less the fee given back.
    let mut want: Vec<(String, &str, String, i64)> = Vec::new();
    for e in day.expected(None) {
        if e.status == "SUCCESS" {
            want.push((
                e.transaction_id.clone(),
                "交易",
                e.out_trade_no.clone(),
                e.total,
            ));
            want.push((
                e.transaction_id.clone(),
                "扣除交易手续费",
                e.out_trade_no.clone(),
                e.fee,
            ));
        } else {
            want.push((
                e.refund_id.clone(),
                "退款",
                e.out_refund_no.clone(),
                e.refund + e.fee,
            ));
        }
    }
    assert_eq!(flow.rows.len(), want.len(), "{text}");
    for (id, name, voucher, amount) in &want {
        let r = flow
            .rows
            .iter()
            .find(|r| r["微信支付业务单号"] == *id && r["业务名称"] == *name)
            .unwrap_or_else(|| panic!("no {name} row for {id}: {text}"));
        assert_eq!(r["业务类型"], *name);
        assert_eq!(r["业务凭证号"], *voucher);
        assert_eq!(fen(&r["收支金额(元)"]), *amount);
        assert_eq!(
            r["收支类型"],
            if *name == "交易" {
                "收入"
            } else {
                "支出"
            }
        );
        if *name == "退款" {
            assert_eq!(r["备注"], "退款总金额10.00元;含手续费0.06元");
            assert_eq!(r["资金变更提交申请人"], format!("{}API", cfg.mch_id));
            assert_eq!(r["收支金额(元)"], "9.94");
        } else {
            assert_eq!(r["资金变更提交申请人"], "system");
        }
    }
    // The balance runs from 0.00, row by row.
    let mut balance = 0;
    for r in &flow.rows {
        let amount = fen(&r["收支金额(元)"]);
        balance += if r["收支类型"] == "收入" {
            amount
        } else {
            -amount
        };
        assert_eq!(fen(&r["账户结余(元)"]), balance, "{r:?}");
    }
    let times: Vec<&str> = flow.rows.iter().map(|r| r["记账时间"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // The totals tie out.
    let (incomes, outs): (Vec<_>, Vec<_>) = flow.rows.iter().partition(|r| r["收支类型"] == "收入");
    let sum = |rows: &[&BTreeMap<String, String>]| {
        rows.iter().map(|r| fen(&r["收支金额(元)"])).sum::<i64>()
    };
    assert_eq!(flow.summary["资金流水总笔数"], flow.rows.len().to_string());
    assert_eq!(flow.summary["收入笔数"], incomes.len().to_string());
    assert_eq!(fen(&flow.summary["收入金额"]), sum(&incomes));
    assert_eq!(flow.summary["支出笔数"], outs.len().to_string());
    assert_eq!(fen(&flow.summary["支出金额"]), sum(&outs));
    assert_eq!(sum(&incomes) - sum(&outs), balance);
    if want.len() == 5 {
        // One date: 29.90 + 9.90 − 0.18 − 0.06 − 9.94 = 29.62.
        assert_eq!(balance, 2962);
        assert!(text.ends_with("`5,`2,`39.80,`3,`10.18\r\n"), "{text}");
    }
}

#[tokio::test]
async fn the_fee_rate_is_configurable_and_checked() {
    let err = wxpay_sim::Simulator::start(fast_config().with_fee_rate_bps(10_001))
        .await
        .unwrap_err();
    assert!(matches!(err, SimError::FeeRate(10_001)), "{err:?}");

    // 1.00%: 29.90 → 0.299 yuan → 0.30 (half up); the refund of all of it
    // gives all of it back.
    let env = Env::with(
        fast_config()
            .with_fee_rate_bps(100)
            .with_refund_delay(Duration::ZERO),
    )
    .await;
    let no = unique("FEE");
    let mut f = order_fields(&env, &no, "http://127.0.0.1:9/pay", None);
    f.insert("total_fee".into(), "2990".into());
    assert_ok(&env.call("/pay/unifiedorder", f).await);
    let order = env.sim.pay(&no).await.unwrap();
    let (date, _) = times_of(order.time_end.as_deref().unwrap());
    let (status, refund) = env
        .post_json(
            "/sim/refund",
            json!({ "out_trade_no": no, "refund_fee": 2990, "out_refund_no": "FEER1" }),
        )
        .await;
    assert_eq!(status, 200, "{refund}");
    let bill = read_bill(&env.sim.bill(&date, BillKind::All).await.unwrap());
    let pay = bill.row_of("SUCCESS", &no);
    assert_eq!(
        (pay["手续费"].as_str(), pay["费率"].as_str()),
        ("0.30000", "1.00%")
    );
    if refund["success_time"].as_str().unwrap().starts_with(&date) {
        let back = bill.row_of("REFUND", "FEER1");
        assert_eq!(back["手续费"], "-0.30000");
        assert_eq!(bill.summary["手续费总金额"], "0.00000");
        // A merchant-platform refund is submitted by the merchant number.
        let flow = read_bill(&env.sim.bill(&date, BillKind::FundFlow).await.unwrap());
        let r = flow
            .rows
            .iter()
            .find(|r| r["业务凭证号"] == "FEER1")
            .unwrap();
        assert_eq!(r["收支金额(元)"], "29.60");
        assert_eq!(r["资金变更提交申请人"], env.cfg.mch_id);
        assert_eq!(r["账户结余(元)"], "0.00");
    }
    assert_trade_totals_tie_out(&bill);
}

#[tokio::test]
async fn bills_survive_a_restart_on_the_state_file() {
    let path = std::env::temp_dir().join(format!("{}.json", unique("wxpay-sim-bills")));
    let cfg = fast_config()
        .with_state_file(&path)
        .with_refund_delay(Duration::ZERO);
    let env = Env::with(cfg.clone()).await;
    let no = unique("KEEP");
    let mut f = order_fields(&env, &no, "http://127.0.0.1:9/pay", None);
    f.insert("body".into(), "重启-商品".into());
    assert_ok(&env.call("/pay/unifiedorder", f).await);
    let order = env.sim.pay(&no).await.unwrap();
    let refund = env
        .call(
            "/secapi/pay/refund",
            refund_req(&env, &no, "KEEPR1", "88", "20", None),
        )
        .await;
    assert_ok(&refund);
    let (date, _) = times_of(order.time_end.as_deref().unwrap());
    let (all, flow) = (
        env.sim.bill(&date, BillKind::All).await.unwrap(),
        env.sim.bill(&date, BillKind::FundFlow).await.unwrap(),
    );
    assert!(all.contains("`重启-商品,"), "{all}");
    env.sim.shutdown().await;

    let env = Env::with(cfg).await;
    assert_eq!(env.sim.order(&no).await.unwrap().body, "重启-商品");
    assert_eq!(env.sim.bill(&date, BillKind::All).await.unwrap(), all);
    assert_eq!(env.sim.bill(&date, BillKind::FundFlow).await.unwrap(), flow);
    env.sim.shutdown().await;
    let _ = std::fs::remove_file(&path);
}
