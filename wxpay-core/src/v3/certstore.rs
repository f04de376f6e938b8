//! The platform certificate store (spec 4.1, 4.2): the certificates held,
//! behind a lock, shared by the client (answers) and notify verification
//! through an `Arc`. The [`Client`](super::Client) fills it from
//! `GET /v3/certificates`.

use std::{collections::HashMap, sync::RwLock};

use chrono::DateTime;

use super::{
    certificates::PlatformCertificate,
    verify::{Verifier, VerifyError},
};

#[derive(Debug, Default)]
struct State {
    by_serial: HashMap<String, PlatformCertificate>,
    /// Unix seconds of the last successful download.
    refreshed_at: Option<i64>,
    /// Unix seconds of the last download attempt (success or not).
    attempted_at: Option<i64>,
    /// Unix seconds of the last download forced by an unknown serial.
    forced_at: Option<i64>,
    /// Bumped by every successful download.
    generation: u64,
}

/// Platform certificates by serial (upper-case hex, compared
/// case-insensitively). A [`Verifier`]; cheap to share as
/// `Arc<CertificateStore>`.
///
/// ```
/// use wxpay_core::v3::CertificateStore;
/// let store = CertificateStore::new();
/// assert!(store.is_empty());
/// assert_eq!(store.last_refresh(), None);
/// ```
#[derive(Debug, Default)]
pub struct CertificateStore {
    state: RwLock<State>,
}

impl CertificateStore {
    /// An empty store.
    pub fn new() -> CertificateStore {
        CertificateStore::default()
    }

    /// A store holding `certificates` (pinned ones from configuration).
    pub fn with_certificates(
        certificates: impl IntoIterator<Item = PlatformCertificate>,
    ) -> CertificateStore {
        let store = CertificateStore::new();
        {
            let mut s = store.write();
            for c in certificates {
                s.by_serial.insert(c.serial_no().to_ascii_uppercase(), c);
            }
        }
        store
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-written
        // in a harmful way (inserts are atomic), so poisoning is ignored.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// How many certificates are held.
    pub fn len(&self) -> usize {
        self.read().by_serial.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.read().by_serial.is_empty()
    }

    /// Whether a certificate with this serial (any case) is held.
    pub fn contains(&self, serial: &str) -> bool {
        self.read()
            .by_serial
            .contains_key(&serial.to_ascii_uppercase())
    }

    /// The serials held, sorted.
    pub fn serials(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read().by_serial.keys().cloned().collect();
        v.sort();
        v
    }

    /// The certificate with this serial (any case).
    pub fn get(&self, serial: &str) -> Option<PlatformCertificate> {
        self.read()
            .by_serial
            .get(&serial.to_ascii_uppercase())
            .cloned()
    }

    /// Unix seconds of the last successful download, if any.
    pub fn last_refresh(&self) -> Option<i64> {
        self.read().refreshed_at
    }

    /// Adds `certificates` (replacing same serials) and drops every
    /// certificate expired at `now` (Unix seconds), old and new alike: during
    /// a rotation the old and the new one are both kept until the old one
    /// expires. Returns how many are held afterwards.
    pub fn merge(
        &self,
        certificates: impl IntoIterator<Item = PlatformCertificate>,
        now: i64,
    ) -> usize {
        let at = DateTime::from_timestamp(now, 0).unwrap_or_default();
        let mut s = self.write();
        for c in certificates {
            s.by_serial.insert(c.serial_no().to_ascii_uppercase(), c);
        }
        s.by_serial.retain(|_, c| c.not_after() >= at);
        s.by_serial.len()
    }

    pub(crate) fn mark_attempt(&self, now: i64, forced: bool) {
        let mut s = self.write();
        s.attempted_at = Some(now);
        if forced {
            s.forced_at = Some(now);
        }
    }

    pub(crate) fn mark_refreshed(&self, now: i64) {
        let mut s = self.write();
        s.refreshed_at = Some(now);
        s.generation += 1;
    }

    pub(crate) fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Whether a scheduled refresh is due: never downloaded or the last
    /// success is `interval` old, and no attempt in the last `gap` seconds.
    pub(crate) fn refresh_due(&self, now: i64, interval: i64, gap: i64) -> bool {
        let s = self.read();
        let stale = s.refreshed_at.is_none_or(|t| now - t >= interval);
        // Holding no certificate at all, every call fails without one: a
        // failed download is tried again at once, not after the gap.
        let quiet = s.by_serial.is_empty() || s.attempted_at.is_none_or(|t| now - t >= gap);
        stale && quiet
    }

    /// Whether a refresh forced by an unknown serial is allowed now.
    pub(crate) fn forced_allowed(&self, now: i64, gap: i64) -> bool {
        self.read().forced_at.is_none_or(|t| now - t >= gap)
    }
}

impl Verifier for CertificateStore {
    fn verify(&self, serial: &str, message: &[u8], signature: &str) -> Result<(), VerifyError> {
        let s = self.read();
        let cert = s
            .by_serial
            .get(&serial.to_ascii_uppercase())
            .ok_or_else(|| VerifyError::UnknownSerial {
                serial: serial.to_owned(),
            })?;
        if cert.public_key().verifies(message, signature) {
            Ok(())
        } else {
            Err(VerifyError::InvalidSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_first_download_is_tried_again_at_once_but_not_with_keys_held() {
        let store = CertificateStore::new();
        store.mark_attempt(1000, false);
        assert!(
            store.refresh_due(1001, 3600, 60),
            "no certificate held: the next call tries again"
        );
        let keys: serde_json::Value =
            serde_json::from_str(include_str!("../testkit/v3_keys.json")).unwrap();
        let pem = keys["platform"]["certificate_pem"].as_str().unwrap();
        let cert = super::super::PlatformCertificate::from_pem(pem).unwrap();
        let now = cert.not_before().timestamp() + 10;
        store.merge(vec![cert], now);
        store.mark_attempt(now, false);
        assert!(
            !store.refresh_due(now + 1, 0, 60),
            "with a certificate held, a failed refresh waits for the gap"
        );
        assert!(store.refresh_due(now + 60, 0, 60));
    }
}
