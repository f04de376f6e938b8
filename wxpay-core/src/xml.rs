//! The flat `<xml>` codec.
//!
//! Reading accepts CDATA and escaped text, ignores whitespace between
//! elements, and refuses everything that is not a flat document: DTDs and
//! entity declarations (no expansion, no external entities: CVE-2018-13439),
//! unknown entity references, nested elements, duplicate fields, non-UTF-8,
//! and bodies over the size cap. Writing wraps text in CDATA (splitting
//! `]]>`) and writes plain digits bare, as WeChat does.
//!
//! Documents of exactly the shape WeChat sends (fields of one CDATA section
//! or plain text, whitespace between them) are read in one pass; anything
//! else goes through quick-xml, where every rule above is enforced. The
//! one-pass reader accepts no document the general one refuses.

use std::borrow::Cow;

use quick_xml::events::Event;

use crate::{Params, params::ParamsBuilder};

/// The largest body read by default: 1 MiB (real messages are a few KiB).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// Why a body is not an acceptable v2 XML message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// The body is empty.
    #[error("empty body")]
    Empty,
    /// The body is larger than the cap.
    #[error("body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes received (at least).
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The body is not UTF-8.
    #[error("body is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// A `<!DOCTYPE …>`: DTDs and entity declarations are refused outright.
    #[error("DTDs and entity declarations are not accepted")]
    Doctype,
    /// A reference to an entity other than the five predefined ones.
    #[error("unknown entity reference &{0};")]
    UnknownEntity(String),
    /// A processing instruction other than the XML declaration.
    #[error("processing instructions are not accepted")]
    ProcessingInstruction,
    /// The root element is not the expected one.
    #[error("root element is <{found}>, expected <{expected}>")]
    WrongRoot {
        /// The root we want (`xml`, or `root` for decrypted refund data).
        expected: &'static str,
        /// The root we got.
        found: String,
    },
    /// An element inside a field: v2 messages are flat.
    #[error("nested element <{0}> inside a field")]
    Nested(String),
    /// The same field twice: refused, since the signature and the reader
    /// could otherwise see different values.
    #[error("field <{0}> appears more than once")]
    DuplicateField(String),
    /// Text or elements outside the root, or an unclosed document.
    #[error("malformed document: {0}")]
    Malformed(&'static str),
    /// The XML reader's own error.
    #[error("malformed XML")]
    Syntax(#[source] quick_xml::Error),
}

/// Parses a `<xml>` message with the default size cap.
///
/// # Errors
/// Any [`XmlError`]; the message is never partially returned.
///
/// ```
/// let p = wxpay_core::xml::parse(b"<xml><a><![CDATA[x&y]]></a><b>1 &lt; 2</b><c/></xml>").unwrap();
/// assert_eq!(p.get("a"), Some("x&y"));
/// assert_eq!(p.get("b"), Some("1 < 2"));
/// assert_eq!(p.get("c"), Some(""));
/// ```
pub fn parse(body: &[u8]) -> Result<Params, XmlError> {
    parse_with(body, "xml", DEFAULT_MAX_BYTES)
}

/// Parses a flat document whose root element is `root`, refusing bodies over
/// `max_bytes`.
///
/// # Errors
/// Any [`XmlError`].
pub fn parse_with(body: &[u8], root: &'static str, max_bytes: usize) -> Result<Params, XmlError> {
    if body.len() > max_bytes {
        return Err(XmlError::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(XmlError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    match parse_canonical(text, root) {
        Some(params) => Ok(params),
        None => parse_general(text, root),
    }
}

/// The shape WeChat sends, read in one pass without a general XML
/// tokenizer: `<root>`, then fields `<name>value</name>` whose value is one
/// CDATA section or plain text (no `&`, `<`, `>`, `]` or CR), ASCII
/// whitespace between elements, `</root>`. On anything else — a
/// declaration, comment, DTD, attribute, entity, nested or empty-element
/// tag, duplicate field — it answers `None` and [`parse_general`] decides,
/// refusing what must be refused. It accepts only documents the general
/// reader accepts, with the same fields (a differential test checks this).
fn parse_canonical(text: &str, root: &str) -> Option<Params> {
    let b = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    };
    let expect = |i: usize, what: &[u8]| b[i..].starts_with(what).then_some(i + what.len());
    let mut i = expect(skip_ws(0), b"<")?;
    i = expect(expect(i, root.as_bytes())?, b">")?;
    let mut fields = ParamsBuilder::with_capacity(32, b.len());
    loop {
        i = skip_ws(i);
        if let Some(close) = expect(i, b"</") {
            let end = expect(expect(close, root.as_bytes())?, b">")?;
            if skip_ws(end) != b.len() {
                return None;
            }
            return fields.finish().ok();
        }
        let start = expect(i, b"<")?;
        let len = b[start..]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')))?;
        if len == 0 || !(b[start].is_ascii_alphabetic() || b[start] == b'_') {
            return None;
        }
        let name = &text[start..start + len];
        i = expect(start + len, b">")?;
        fields.start_field(name);
        if let Some(cdata) = expect(i, b"<![CDATA[") {
            // Values are short: a window scan beats a substring searcher's set-up.
            let len = b[cdata..].windows(3).position(|w| w == b"]]>")?;
            fields.push_value(&text[cdata..cdata + len]);
            i = cdata + len + 3;
        } else {
            let len = b[i..].iter().position(|&c| c == b'<')?;
            if b[i..i + len]
                .iter()
                .any(|&c| matches!(c, b'&' | b'>' | b']' | b'\r'))
            {
                return None;
            }
            fields.push_value(&text[i..i + len]);
            i += len;
        }
        i = expect(expect(expect(i, b"</")?, name.as_bytes())?, b">")?;
        fields.end_field();
    }
}

/// Any well-formed flat document, through quick-xml, refusing DTDs,
/// entity declarations, unknown entities, processing instructions, nested
/// elements and duplicate fields.
fn parse_general(text: &str, root: &'static str) -> Result<Params, XmlError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;

    // Every name and value goes straight into one buffer (no allocation per
    // field); fields are sorted once at the end, and WeChat sends them
    // sorted, so that is a linear check.
    let mut fields = ParamsBuilder::with_capacity(32, text.len());
    // depth 0: before/after root; 1: inside root; 2: inside a field
    let mut depth = 0u8;
    let mut seen_root = false;

    loop {
        let event = reader.read_event().map_err(XmlError::Syntax)?;
        match event {
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Start(ref start) | Event::Empty(ref start) if depth == 0 => {
                let name = sub_str(text, start.name().as_ref())?;
                if seen_root {
                    return Err(XmlError::Malformed("content after the root element"));
                }
                if name != root {
                    return Err(XmlError::WrongRoot {
                        expected: root,
                        found: name.into_owned(),
                    });
                }
                seen_root = true;
                if matches!(event, Event::Start(_)) {
                    depth = 1;
                }
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = sub_str(text, start.name().as_ref())?;
                if depth == 2 {
                    return Err(XmlError::Nested(name.into_owned()));
                }
                fields.start_field(&name);
                if matches!(event, Event::Start(_)) {
                    depth = 2;
                } else {
                    fields.end_field();
                }
            }
            Event::End(_) => match depth {
                2 => {
                    if !fields.end_field() {
                        return Err(XmlError::Malformed("unbalanced end"));
                    }
                    depth = 1;
                }
                1 => depth = 0,
                _ => return Err(XmlError::Malformed("unbalanced end")),
            },
            Event::Text(t) => {
                let raw = sub_str(text, &t)?;
                match depth {
                    2 => fields.push_value(&raw),
                    _ if raw.trim().is_empty() => {}
                    _ => return Err(XmlError::Malformed("text outside a field")),
                }
            }
            Event::CData(c) => {
                if depth != 2 {
                    return Err(XmlError::Malformed("CDATA outside a field"));
                }
                fields.push_value(&sub_str(text, &c)?);
            }
            Event::GeneralRef(r) => {
                if depth != 2 {
                    return Err(XmlError::Malformed("entity reference outside a field"));
                }
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => fields.push_value_char(c),
                        _ => return Err(XmlError::Malformed("invalid character reference")),
                    }
                } else {
                    let c = match &*sub_str(text, &r)? {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(XmlError::UnknownEntity(other.to_owned())),
                    };
                    fields.push_value_char(c);
                }
            }
        }
    }
    if !seen_root {
        return Err(XmlError::Malformed("no root element"));
    }
    if depth != 0 {
        return Err(XmlError::Malformed("unclosed element"));
    }
    fields.finish().map_err(XmlError::DuplicateField)
}

/// `raw` as a string. The reader hands out slices of `text` (already
/// checked to be UTF-8), so the common case is a range of `text` found by
/// position: no copy and no second UTF-8 scan. Anything else is validated
/// and copied.
fn sub_str<'a>(text: &'a str, raw: &[u8]) -> Result<Cow<'a, str>, XmlError> {
    let start = (raw.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let borrowed = start
        .checked_add(raw.len())
        .filter(|&end| end <= text.len())
        .and_then(|end| text.get(start..end));
    match borrowed {
        Some(s) => Ok(Cow::Borrowed(s)),
        None => std::str::from_utf8(raw)
            .map(|s| Cow::Owned(s.to_owned()))
            .map_err(XmlError::NotUtf8),
    }
}

/// Writes `params` as a `<xml>` document: empty values are left out, plain
/// digit strings are written bare, everything else in CDATA (a `]]>` inside a
/// value is split across two sections).
///
/// ```
/// let p: wxpay_core::Params = [("total_fee", "88"), ("body", "a]]>b"), ("attach", "")].into_iter().collect();
/// assert_eq!(
///     wxpay_core::xml::to_xml(&p),
///     "<xml><body><![CDATA[a]]]]><![CDATA[>b]]></body><total_fee>88</total_fee></xml>"
/// );
/// ```
pub fn to_xml(params: &Params) -> String {
    to_xml_with_root(params, "xml")
}

/// [`to_xml`] with another root element (`root` for refund-notify payloads).
pub fn to_xml_with_root(params: &Params, root: &str) -> String {
    to_xml_shaped(params, root, |_, v| v.bytes().all(|b| b.is_ascii_digit()))
}

/// The writer behind [`to_xml`]: empty values left out, each value written
/// bare when `bare(name, value)` says so (the caller guarantees it holds no
/// markup), else in CDATA (`]]>` split across two sections). For writers
/// that follow WeChat's per-field shape (e.g. a simulator).
pub fn to_xml_shaped(params: &Params, root: &str, bare: impl Fn(&str, &str) -> bool) -> String {
    let mut out = String::with_capacity(
        64 + params
            .iter()
            .map(|(k, v)| 2 * k.len() + v.len() + 17)
            .sum::<usize>(),
    );
    out.push('<');
    out.push_str(root);
    out.push('>');
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        debug_assert!(is_xml_name(k), "field name {k:?} is not an XML name");
        out.push('<');
        out.push_str(k);
        out.push('>');
        if bare(k, v) {
            out.push_str(v);
        } else {
            out.push_str("<![CDATA[");
            out.push_str(&v.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wechat_style_with_whitespace_and_declaration() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  <total_fee>1</total_fee>\n  <device_info><![CDATA[]]></device_info>\n  <attach> a b </attach>\n  <!-- a comment -->\n  <split><![CDATA[x]]>&amp;<![CDATA[y]]></split>\n  <cjk>腾讯&#x5145;&#20540;</cjk>\n</xml>\n";
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.get("return_code"), Some("SUCCESS"));
        assert_eq!(p.get("total_fee"), Some("1"));
        assert_eq!(p.get("device_info"), Some(""));
        assert_eq!(p.get("attach"), Some(" a b "), "values are not trimmed");
        assert_eq!(p.get("split"), Some("x&y"));
        assert_eq!(p.get("cjk"), Some("腾讯充值"));
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn round_trips_awkward_values() {
        let p: Params = [
            ("a", "]]>"),
            ("b", "<tag>&amp;</tag>"),
            ("c", "x]]>y]]>z"),
            ("d", "007"),
            ("e", "腾讯充值中心-QQ会员充值"),
            ("f", " spaced "),
        ]
        .into_iter()
        .collect();
        assert_eq!(parse(to_xml(&p).as_bytes()).unwrap(), p);
    }

    fn err(body: &[u8]) -> XmlError {
        parse(body).expect_err("must be refused")
    }

    #[test]
    fn refuses_entity_tricks() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><xml><a>&lol2;</a></xml>"#;
        assert!(matches!(err(bomb), XmlError::Doctype));
        let xxe =
            br#"<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>"#;
        assert!(matches!(err(xxe), XmlError::Doctype));
        assert!(
            matches!(err(b"<xml><a>&xxe;</a></xml>"), XmlError::UnknownEntity(e) if e == "xxe")
        );
        assert!(matches!(
            err(b"<?php x ?><xml></xml>"),
            XmlError::ProcessingInstruction
        ));
    }

    #[test]
    fn refuses_malformed_documents() {
        assert!(matches!(err(b""), XmlError::Empty));
        assert!(matches!(err(b"  \n"), XmlError::Empty));
        assert!(matches!(
            err(b"<xml><a>1</a>"),
            XmlError::Malformed(_) | XmlError::Syntax(_)
        ));
        assert!(matches!(err(b"<xml><a>1</b></xml>"), XmlError::Syntax(_)));
        assert!(matches!(
            err(b"<root><a>1</a></root>"),
            XmlError::WrongRoot { .. }
        ));
        assert!(matches!(err(b"<xml><a><b>1</b></a></xml>"), XmlError::Nested(n) if n == "b"));
        assert!(
            matches!(err(b"<xml><a>1</a><a>2</a></xml>"), XmlError::DuplicateField(n) if n == "a")
        );
        assert!(matches!(err(b"<xml>text</xml>"), XmlError::Malformed(_)));
        assert!(matches!(
            err(b"<xml></xml><xml></xml>"),
            XmlError::Malformed(_)
        ));
        assert!(matches!(
            err(b"not xml at all"),
            XmlError::Malformed(_) | XmlError::Syntax(_)
        ));
        assert!(matches!(
            err(b"{\"json\": true}"),
            XmlError::Malformed(_) | XmlError::Syntax(_)
        ));
    }

    #[test]
    fn refuses_non_utf8_and_oversize() {
        assert!(matches!(
            err(b"<xml><a>\xff\xfe</a></xml>"),
            XmlError::NotUtf8(_)
        ));
        // GBK-encoded "充值"
        assert!(matches!(
            err(b"<xml><body>\xb3\xe4\xd6\xb5</body></xml>"),
            XmlError::NotUtf8(_)
        ));
        let big = format!("<xml><a>{}</a></xml>", "x".repeat(DEFAULT_MAX_BYTES));
        assert!(matches!(err(big.as_bytes()), XmlError::TooLarge { .. }));
        assert!(matches!(
            parse_with(b"<xml><a>1</a></xml>", "xml", 10),
            Err(XmlError::TooLarge {
                size: 19,
                limit: 10
            })
        ));
    }

    #[test]
    fn reads_refund_root() {
        let p = parse_with(b"<root><a>1</a></root>", "root", 100).unwrap();
        assert_eq!(p.get("a"), Some("1"));
    }

    /// Documents WeChat-shaped and otherwise, for the differential test.
    const SEEDS: [&str; 7] = [
        "<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><total_fee>1</total_fee><attach><![CDATA[支付测试 & <b>]]></attach><cash_fee>1</cash_fee></xml>",
        "<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  <return_msg><![CDATA[OK]]></return_msg>\n  <empty></empty>\n  <spaced> a b </spaced>\n</xml>\n",
        "<xml><b>2</b><a>1</a><c><![CDATA[]]></c></xml>",
        "<xml><a>1</a><a>2</a></xml>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><xml><a><![CDATA[x]]>&amp;<![CDATA[y]]></a><!-- c --></xml>",
        "<root><out_refund_no><![CDATA[R1]]></out_refund_no><refund_fee>100</refund_fee></root>",
        "<xml><n.a-m_e>v</n.a-m_e><x/></xml>",
    ];

    #[test]
    fn the_canonical_reader_takes_wechat_shaped_documents() {
        for doc in [SEEDS[0], SEEDS[1], SEEDS[2]] {
            let fast = parse_canonical(doc, "xml").expect(doc);
            assert_eq!(
                Ok(&fast),
                parse_general(doc, "xml").as_ref().map_err(|_| ()),
                "{doc}"
            );
        }
        assert!(parse_canonical(SEEDS[5], "root").is_some());
        // Left to the general reader: duplicates, a declaration, entities,
        // comments, empty-element tags, another root.
        for doc in [SEEDS[3], SEEDS[4], SEEDS[6], SEEDS[5]] {
            assert!(parse_canonical(doc, "xml").is_none(), "{doc}");
        }
    }

    #[test]
    fn the_canonical_reader_accepts_nothing_the_general_one_refuses() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        const PIECES: [&str; 26] = [
            "<",
            ">",
            "</",
            "/>",
            "<![CDATA[",
            "]]>",
            "]",
            "&amp;",
            "&",
            "&#x41;",
            "x",
            "xml",
            "a",
            "root",
            " ",
            "\n",
            "\r",
            "\t",
            "<!--",
            "-->",
            "<?xml version=\"1.0\"?>",
            "<!DOCTYPE x [<!ENTITY e \"b\">]>",
            "é",
            "\u{a0}",
            "<a>1</a>",
            "=\"q\"",
        ];
        let mut rng = StdRng::seed_from_u64(20_261_125);
        let (mut fast, mut agreed_refusals) = (0, 0);
        for _ in 0..30_000 {
            let mut doc = SEEDS[rng.gen_range(0..SEEDS.len())].to_owned();
            for _ in 0..rng.gen_range(0..4) {
                let mut at = rng.gen_range(0..=doc.len());
                while !doc.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.gen_range(0..3) {
                    0 => doc.insert_str(at, PIECES[rng.gen_range(0..PIECES.len())]),
                    1 => {
                        let mut end = (at + rng.gen_range(1..6)).min(doc.len());
                        while !doc.is_char_boundary(end) {
                            end += 1;
                        }
                        doc.replace_range(at..end, "");
                    }
                    _ => {
                        let piece = PIECES[rng.gen_range(0..PIECES.len())];
                        let mut end = (at + piece.len()).min(doc.len());
                        while !doc.is_char_boundary(end) {
                            end += 1;
                        }
                        doc.replace_range(at..end, piece);
                    }
                }
            }
            for root in ["xml", "root"] {
                let general = parse_general(&doc, root);
                match parse_canonical(&doc, root) {
                    Some(p) => {
                        fast += 1;
                        match general {
                            Ok(q) => assert_eq!(p, q, "{doc:?}"),
                            Err(e) => panic!(
                                "canonical accepted what the general reader refuses ({e}): {doc:?}"
                            ),
                        }
                    }
                    None if general.is_err() => agreed_refusals += 1,
                    None => {}
                }
            }
        }
        // Both sides of the property were exercised.
        assert!(
            fast > 2_000,
            "the canonical reader accepted only {fast} documents"
        );
        assert!(agreed_refusals > 2_000, "only {agreed_refusals} refusals");
    }
}
