//! [`Params`]: the flat name → value map every v2 message is.
//!
//! A received notify has 20–40 fields and is read a handful of times, then
//! dropped; a request is built, signed and serialised once. So a `Params`
//! keeps every name and value in **one** string buffer and a sorted list of
//! ranges into it: parsing a message costs two allocations instead of two
//! per field, lookups are a binary search, and iteration is in signature
//! order for free.

use std::{cmp::Ordering, collections::BTreeMap, ops::Range};

/// A v2 message: every field by name, sorted by name bytes (the order the
/// signature needs). Received messages keep every field, known or not,
/// because the signature covers them all.
#[derive(Clone, Default)]
pub struct Params {
    /// Names and values, back to back; ranges in `fields` point into it.
    buf: String,
    /// Sorted by name, names unique.
    fields: Vec<Field>,
    /// Bytes of `buf` no field points to any more (replaced or removed).
    garbage: usize,
}

#[derive(Clone, Copy)]
struct Field {
    /// The name's first 8 bytes, big-endian, zero-padded: when two keys
    /// differ they order the names as the names themselves do, so most
    /// comparisons in a lookup are one integer comparison.
    key: u64,
    name: (usize, usize),
    value: (usize, usize),
}

fn key_of(name: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    let n = name.len().min(8);
    k[..n].copy_from_slice(&name[..n]);
    u64::from_be_bytes(k)
}

impl Field {
    fn name(self) -> Range<usize> {
        self.name.0..self.name.1
    }

    fn value(self) -> Range<usize> {
        self.value.0..self.value.1
    }

    fn len(self) -> usize {
        (self.name.1 - self.name.0) + (self.value.1 - self.value.0)
    }
}

impl Params {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.find(name).ok()?;
        Some(&self.buf[self.fields[i].value()])
    }

    /// The value of `name` if present and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Sets `name` to `value`, returning the old value.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (name, value) = (name.as_ref(), value.as_ref());
        match self.find(name) {
            Ok(i) => {
                let old = self.fields[i];
                let previous = self.buf[old.value()].to_owned();
                self.fields[i].value = self.push(value);
                self.garbage += old.value.1 - old.value.0;
                self.compact_if_wasteful();
                Some(previous)
            }
            Err(i) => {
                let field = self.push_field(name, value);
                self.fields.insert(i, field);
                None
            }
        }
    }

    /// Sets `name` only when `value` is `Some`.
    pub fn insert_opt(&mut self, name: &str, value: Option<impl AsRef<str>>) {
        if let Some(v) = value {
            self.insert(name, v);
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.find(name).ok()?;
        let field = self.fields.remove(i);
        let value = self.buf[field.value()].to_owned();
        self.garbage += field.len();
        self.compact_if_wasteful();
        Some(value)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Fields in signature order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|f| self.entry(f))
    }

    /// The fields whose names start with `prefix`, in order (a range of
    /// the sorted fields, found by binary search).
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        let start = self.find(prefix).unwrap_or_else(|i| i);
        self.fields[start..]
            .iter()
            .map(|f| self.entry(f))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// The fields as an owned map.
    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        let (buf, name) = (self.buf.as_bytes(), name.as_bytes());
        let key = key_of(name);
        self.fields
            .binary_search_by(|f| f.key.cmp(&key).then_with(|| buf[f.name()].cmp(name)))
    }

    fn entry(&self, f: &Field) -> (&str, &str) {
        (&self.buf[f.name()], &self.buf[f.value()])
    }

    /// Appends `name` and `value` to the buffer; the caller places the field.
    fn push_field(&mut self, name: &str, value: &str) -> Field {
        Field {
            key: key_of(name.as_bytes()),
            name: self.push(name),
            value: self.push(value),
        }
    }

    fn push(&mut self, s: &str) -> (usize, usize) {
        let start = self.buf.len();
        self.buf.push_str(s);
        (start, self.buf.len())
    }

    /// Rewrites the buffer once more of it is dead than alive, so that a
    /// long-lived `Params` updated in a loop does not grow without bound.
    fn compact_if_wasteful(&mut self) {
        if self.garbage < 256 || self.garbage < self.buf.len() / 2 {
            return;
        }
        let mut fresh = Params {
            buf: String::with_capacity(self.buf.len() - self.garbage),
            fields: Vec::with_capacity(self.fields.len()),
            garbage: 0,
        };
        for (k, v) in self.iter() {
            let field = fresh.push_field(k, v);
            fresh.fields.push(field);
        }
        *self = fresh;
    }
}

/// Builds a [`Params`] from fields in any order without a per-field
/// allocation: each name and value is written straight into the shared
/// buffer, and the fields are sorted (and checked for duplicates) once at
/// the end. The XML reader uses it.
#[derive(Default)]
pub(crate) struct ParamsBuilder {
    params: Params,
    /// Start of the field being written: its name, then its value.
    open: Option<(usize, usize, usize)>,
}

impl ParamsBuilder {
    /// Room for about `fields` fields of `bytes` bytes in all.
    pub(crate) fn with_capacity(fields: usize, bytes: usize) -> ParamsBuilder {
        ParamsBuilder {
            params: Params {
                buf: String::with_capacity(bytes),
                fields: Vec::with_capacity(fields),
                garbage: 0,
            },
            open: None,
        }
    }

    /// Starts a field named `name`; its value is what [`push_value`]
    /// appends until [`end_field`].
    ///
    /// [`push_value`]: ParamsBuilder::push_value
    /// [`end_field`]: ParamsBuilder::end_field
    pub(crate) fn start_field(&mut self, name: &str) {
        let (start, end) = self.params.push(name);
        self.open = Some((start, end, end));
    }

    /// Appends to the value of the open field.
    pub(crate) fn push_value(&mut self, piece: &str) {
        self.params.buf.push_str(piece);
    }

    /// Appends one character to the value of the open field.
    pub(crate) fn push_value_char(&mut self, c: char) {
        self.params.buf.push(c);
    }

    /// Closes the open field; `false` if none was open.
    pub(crate) fn end_field(&mut self) -> bool {
        let Some((name_start, name_end, value_start)) = self.open.take() else {
            return false;
        };
        self.params.fields.push(Field {
            key: key_of(&self.params.buf.as_bytes()[name_start..name_end]),
            name: (name_start, name_end),
            value: (value_start, self.params.buf.len()),
        });
        true
    }

    /// Sorts the fields by name; `Err(name)` if a name occurs twice.
    pub(crate) fn finish(self) -> Result<Params, String> {
        let mut params = self.params;
        let Params { buf, fields, .. } = &mut params;
        let by_name = |x: &Field, y: &Field| {
            let bytes = buf.as_bytes();
            x.key
                .cmp(&y.key)
                .then_with(|| bytes[x.name()].cmp(&bytes[y.name()]))
        };
        // WeChat sends its fields sorted and unique: then this one pass is
        // all; otherwise sort, and equal names end up side by side.
        if !fields.is_sorted_by(|x, y| by_name(x, y) == Ordering::Less) {
            fields.sort_unstable_by(by_name);
            if let Some(w) = fields
                .windows(2)
                .find(|w| by_name(&w[0], &w[1]) == Ordering::Equal)
            {
                return Err(buf[w[0].name()].to_owned());
            }
        }
        Ok(params)
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Params {}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Field values of WeChat messages are not secrets (the key never is a
        // field), but `session_key`-like fields could be: redact by name.
        let mut m = f.debug_map();
        for (k, v) in self.iter() {
            if k.contains("key") || k.contains("secret") {
                m.entry(&k, &"***");
            } else {
                m.entry(&k, &v);
            }
        }
        m.finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Params {
    /// Later duplicates replace earlier ones, as with a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut params = Params::new();
        params.extend(iter);
        params
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Params {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl From<BTreeMap<String, String>> for Params {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut p = Params::new();
        let mut model = BTreeMap::new();
        // A deterministic mix of inserts, replacements and removals.
        // Short names, names sharing their first 8 bytes, a NUL byte.
        let names = [
            "total_fee",
            "appid",
            "b",
            "a",
            "nonce_str",
            "sign",
            "zz",
            "mch_id",
            "coupon_fee",
            "coupon_fee_0",
            "coupon_fee_10",
            "coupon_id",
            "a\0",
            "a\0\0b",
        ];
        for step in 0..2_000usize {
            let name = names[(step * 7 + step / 3) % names.len()];
            let value = format!("v{step}-{}", "x".repeat(step % 13));
            if step % 5 == 4 {
                assert_eq!(p.remove(name), model.remove(name), "step {step}");
            } else {
                assert_eq!(
                    p.insert(name, &value),
                    model.insert(name.to_owned(), value),
                    "step {step}"
                );
            }
            assert_eq!(p.len(), model.len());
            assert!(
                p.iter()
                    .eq(model.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            );
            for n in names {
                assert_eq!(p.get(n), model.get(n).map(String::as_str));
                assert_eq!(p.contains(n), model.contains_key(n));
            }
        }
        // Replacing in a loop does not grow the buffer without bound.
        assert!(p.buf.len() < 4096, "buffer grew to {}", p.buf.len());
        assert_eq!(p.clone().into_inner(), model);
        assert_eq!(Params::from(model.clone()), p);
    }

    #[test]
    fn builder_sorts_and_refuses_duplicates() {
        let mut b = ParamsBuilder::with_capacity(4, 64);
        let fields = [
            ("b", &["2"][..]),
            ("coupon_fee_1", &["5"][..]),
            ("a", &["1", "&", "x"][..]),
            ("coupon_fee", &[][..]),
        ];
        for (k, pieces) in fields {
            b.start_field(k);
            for piece in pieces {
                b.push_value(piece);
            }
            assert!(b.end_field());
        }
        assert!(!b.end_field(), "no field is open");
        let p = b.finish().unwrap();
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [
                ("a", "1&x"),
                ("b", "2"),
                ("coupon_fee", ""),
                ("coupon_fee_1", "5")
            ]
        );

        let mut b = ParamsBuilder::default();
        for k in ["coupon_fee_1", "y", "coupon_fee_1"] {
            b.start_field(k);
            b.push_value_char('1');
            b.end_field();
        }
        assert_eq!(b.finish().unwrap_err(), "coupon_fee_1");
    }

    #[test]
    fn equality_is_by_content_not_layout() {
        let mut a = Params::new();
        a.insert("k", "old");
        a.insert("k", "new");
        let b: Params = [("k", "new")].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, Params::new());
    }
}
