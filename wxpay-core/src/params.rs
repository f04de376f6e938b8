//! [`Params`]: the flat name → value map every v2 message is.

use std::collections::BTreeMap;

/// A v2 message: every field by name, sorted by name bytes (the order the
/// signature needs). Received messages keep every field, known or not,
/// because the signature covers them all.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name` if present and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Sets `name` to `value`, returning the old value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(name.into(), value.into())
    }

    /// Sets `name` only when `value` is `Some`.
    pub fn insert_opt(&mut self, name: &str, value: Option<impl Into<String>>) {
        if let Some(v) = value {
            self.insert(name, v);
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fields in signature order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The underlying map.
    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0
    }
}

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

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for Params {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}
