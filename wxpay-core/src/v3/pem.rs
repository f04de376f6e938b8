//! A small, strict PEM decoder (RFC 7468 text encoding).

use base64::{Engine, engine::general_purpose::STANDARD};

/// Why a PEM text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// No `-----BEGIN …-----` line.
    #[error("no PEM BEGIN line")]
    NoBegin,
    /// The block has no matching `-----END …-----` line.
    #[error("PEM block {label:?} has no matching END line")]
    NoEnd {
        /// The label of the BEGIN line.
        label: String,
    },
    /// The block's label is not one this key type accepts.
    #[error("unexpected PEM label {found:?}")]
    UnexpectedLabel {
        /// The label found.
        found: String,
    },
    /// The body between the lines is not Base64.
    #[error("PEM body is not Base64")]
    Base64(#[source] base64::DecodeError),
}

/// The first PEM block of `text`: its label and its DER bytes.
pub(crate) fn decode(text: &str) -> Result<(String, Vec<u8>), PemError> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let start = text.find(BEGIN).ok_or(PemError::NoBegin)? + BEGIN.len();
    let rest = &text[start..];
    let label_end = rest.find(DASHES).ok_or(PemError::NoBegin)?;
    let label = &rest[..label_end];
    let body_start = label_end + DASHES.len();
    let end_line = format!("-----END {label}-----");
    let body_len = rest[body_start..]
        .find(&end_line)
        .ok_or_else(|| PemError::NoEnd {
            label: label.to_owned(),
        })?;
    let body: String = rest[body_start..body_start + body_len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(body).map_err(PemError::Base64)?;
    Ok((label.to_owned(), der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_label_and_body() {
        let (label, der) =
            decode("junk\n-----BEGIN TEST-----\nAAEC\nAw==\n-----END TEST-----\n").unwrap();
        assert_eq!(label, "TEST");
        assert_eq!(der, [0, 1, 2, 3]);
    }

    #[test]
    fn refuses_broken_blocks() {
        assert_eq!(decode("nothing"), Err(PemError::NoBegin));
        assert_eq!(
            decode("-----BEGIN A-----\nAAEC\n-----END B-----"),
            Err(PemError::NoEnd { label: "A".into() })
        );
        assert!(matches!(
            decode("-----BEGIN A-----\n!!!\n-----END A-----"),
            Err(PemError::Base64(_))
        ));
    }
}
