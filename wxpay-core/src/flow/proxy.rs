//! The payer's address behind a reverse proxy: `X-Forwarded-For` /
//! `X-Real-IP` believed only when the peer is a configured proxy.

use std::net::IpAddr;

/// Addresses and networks whose forwarding headers are believed
/// ([`PaymentsBuilder::trusted_proxies`](super::PaymentsBuilder::trusted_proxies)).
///
/// ```
/// use wxpay_core::flow::TrustedProxies;
/// let proxies = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1", "::1"]).unwrap();
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(!proxies.contains("203.0.113.9".parse().unwrap()));
/// assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// From addresses (`10.0.0.1`, `::1`) and CIDR networks
    /// (`10.0.0.0/8`, `fd00::/8`).
    ///
    /// # Errors
    /// The first entry that is neither, quoted.
    pub fn parse<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for e in entries {
            let e = e.as_ref().trim();
            let (addr, bits) = match e.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (e, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{e:?} is not an IP address or network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{e:?}: prefix length must be 0 to {max}"))?,
            };
            nets.push((addr, bits));
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|&(net, bits)| in_net(ip, canonical(net), bits))
    }

    /// The client's address for a request from `peer` with these headers:
    /// the peer itself unless it is a proxy; from a proxy, the rightmost
    /// `X-Forwarded-For` entry that is not a proxy (the left ones are the
    /// client's own claims), else `X-Real-IP`, else the peer.
    pub fn client_ip(
        &self,
        peer: Option<&str>,
        forwarded_for: Option<&str>,
        real_ip: Option<&str>,
    ) -> Option<String> {
        let peer_ip = peer.and_then(|p| p.parse::<IpAddr>().ok());
        match peer_ip {
            Some(p) if self.contains(p) => {}
            _ => return peer.map(str::to_owned),
        }
        if let Some(list) = forwarded_for {
            let mut hops = list.rsplit(',').map(str::trim).filter(|h| !h.is_empty());
            for hop in hops.by_ref() {
                match hop.parse::<IpAddr>() {
                    Ok(ip) if self.contains(ip) => continue,
                    Ok(ip) => return Some(canonical(ip).to_string()),
                    // A malformed hop: nothing left of it can be believed.
                    Err(_) => break,
                }
            }
        }
        if let Some(ip) = real_ip.and_then(|r| r.trim().parse::<IpAddr>().ok()) {
            return Some(canonical(ip).to_string());
        }
        peer.map(str::to_owned)
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap()
    }

    #[test]
    fn a_peer_that_is_no_proxy_is_the_client_whatever_it_claims() {
        let p = proxies();
        assert_eq!(
            p.client_ip(Some("203.0.113.9"), Some("1.2.3.4"), Some("5.6.7.8"))
                .as_deref(),
            Some("203.0.113.9")
        );
    }

    #[test]
    fn from_a_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies();
        // The client claims 1.1.1.1; its real address is 198.51.100.4, seen
        // by the outer proxy 10.0.0.2, which forwarded to 10.0.0.3.
        let xff = "1.1.1.1, 198.51.100.4, 10.0.0.2";
        assert_eq!(
            p.client_ip(Some("10.0.0.3"), Some(xff), None).as_deref(),
            Some("198.51.100.4")
        );
        assert_eq!(
            p.client_ip(Some("::ffff:10.0.0.3"), Some("198.51.100.4"), None)
                .as_deref(),
            Some("198.51.100.4"),
            "IPv4-mapped peers"
        );
        assert_eq!(
            p.client_ip(Some("10.0.0.3"), None, Some(" 198.51.100.5 "))
                .as_deref(),
            Some("198.51.100.5"),
            "X-Real-IP when no X-Forwarded-For"
        );
        assert_eq!(
            p.client_ip(Some("10.0.0.3"), Some("junk, 10.0.0.2"), None)
                .as_deref(),
            Some("10.0.0.3"),
            "a malformed hop ends the walk: the proxy is all that is known"
        );
        assert_eq!(
            p.client_ip(Some("fd00::1"), Some("2001:db8::7"), None)
                .as_deref(),
            Some("2001:db8::7")
        );
    }

    #[test]
    fn networks_match_by_prefix() {
        let p = proxies();
        assert!(p.contains("10.255.255.255".parse().unwrap()));
        assert!(!p.contains("11.0.0.0".parse().unwrap()));
        assert!(p.contains("192.168.1.7".parse().unwrap()));
        assert!(!p.contains("192.168.1.8".parse().unwrap()));
        assert!(
            TrustedProxies::parse(["0.0.0.0/0"])
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(TrustedProxies::parse(["nope"]).is_err());
    }
}
