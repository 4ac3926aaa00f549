//! Where an origin redirect may lead (SPEC section 2). A hop to another
//! origin (scheme, host or port differ) carries none of the rule's
//! headers, as curl and reqwest drop credentials on such hops; a hop to a
//! loopback, link-local or private address is refused unless the
//! configured origin is itself in such a range (an origin on the public
//! internet must not steer the proxy into the internal network, e.g. the
//! cloud metadata service at 169.254.169.254).

use crate::mirror::OriginTarget;
use std::net::IpAddr;

pub fn same_origin(a: &OriginTarget, b: &OriginTarget) -> bool {
    a.tls == b.tls && a.port == b.port && a.host.eq_ignore_ascii_case(&b.host)
}

/// Addresses no public origin may send us to.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || a == 0 // 0.0.0.0/8, "this network" (0.0.0.0 is local)
                || a >= 240 // 240.0.0.0/4 reserved, and the broadcast address
                // 100.64.0.0/10, carrier-grade NAT
                || (a == 100 && (b & 0xC0) == 64)
                // 198.18.0.0/15, benchmarking networks
                || (a == 198 && (b & 0xFE) == 18)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and
            // NAT64 (64:ff9b::a.b.c.d) addresses reach an IPv4 address.
            if let Some(v4) = v6.to_ipv4() {
                if !v6.is_loopback() && !v6.is_unspecified() {
                    return internal(IpAddr::V4(v4));
                }
            }
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return internal(IpAddr::V4([o[12], o[13], o[14], o[15]].into()));
            }
            let s = seg[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (s & 0xfe00) == 0xfc00 // unique local
                || (s & 0xffc0) == 0xfe80 // link-local
                || (s & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside)
        }
    }
}

/// The policy on resolved addresses: a hop may reach internal addresses
/// only when the configured origin does.
pub fn hop_allowed(configured: &[IpAddr], next: &[IpAddr]) -> bool {
    configured.iter().any(|ip| internal(*ip)) || !next.iter().any(|ip| internal(*ip))
}

async fn resolve(t: &OriginTarget) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = t.host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map(|a| a.map(|s| s.ip()).collect())
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))
}

/// Ok when the hop from the configured origin to `next` may be taken.
pub async fn check_hop(configured: &OriginTarget, next: &OriginTarget) -> Result<(), String> {
    if same_origin(configured, next) {
        return Ok(());
    }
    let (from, to) = (resolve(configured).await?, resolve(next).await?);
    if hop_allowed(&from, &to) {
        Ok(())
    } else {
        Err(format!(
            "origin redirect to {} refused: an internal address",
            next.authority
        ))
    }
}

/// Whether the configured origin is itself in the internal network (then
/// its hops may be too). A name that does not resolve counts as public.
pub async fn is_internal(t: &OriginTarget) -> bool {
    resolve(t)
        .await
        .is_ok_and(|ips| ips.iter().any(|ip| internal(*ip)))
}

/// The fill's resolver for a hop from a public origin to another one:
/// only the name's public addresses are handed to the connector, so the
/// address connected to is one that passed the policy. Checking a name and
/// letting the connector resolve it again would let a name that answers a
/// public address to the check and an internal one to the connect (DNS
/// rebinding) through, and the request would reach the internal address.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !internal(a.ip()))
                .collect();
            if public.is_empty() {
                let why = format!("origin redirect to {host} refused: an internal address");
                return Err(why.into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Ok when the hop from the configured origin to `next` may use `ip`,
/// the address the plain path connects to. Checking the name and then
/// letting the connector resolve it again would let a name that answers a
/// public address to the check and an internal one to the connect (DNS
/// rebinding) through.
pub async fn check_hop_addr(
    configured: &OriginTarget,
    next: &OriginTarget,
    ip: IpAddr,
) -> Result<(), String> {
    if same_origin(configured, next) || hop_allowed(&resolve(configured).await?, &[ip]) {
        return Ok(());
    }
    Err(format!(
        "origin redirect to {} refused: an internal address ({ip})",
        next.authority
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|i| i.parse().unwrap()).collect()
    }

    #[test]
    fn public_origins_cannot_send_us_inside() {
        let public = ips(&["93.184.216.34"]);
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.1.2.3",
            "198.18.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "fec0::1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
        ] {
            assert!(!hop_allowed(&public, &ips(&[inside])), "{inside}");
        }
        assert!(hop_allowed(&public, &ips(&["8.8.8.8", "2606:4700::1"])));
        assert!(hop_allowed(
            &public,
            &ips(&["64:ff9b::808:808", "::ffff:8.8.8.8"])
        ));
        // An internal origin may redirect within the internal network.
        assert!(hop_allowed(&ips(&["127.0.0.1"]), &ips(&["127.0.0.2"])));
        assert!(hop_allowed(&ips(&["10.0.0.5"]), &ips(&["169.254.169.254"])));
    }

    fn t(tls: bool, host: &str, port: u16) -> OriginTarget {
        OriginTarget {
            tls,
            host: host.into(),
            port,
            authority: format!("{host}:{port}"),
            path_and_query: "/".into(),
            url: String::new(),
            trust: Default::default(),
        }
    }

    /// The address connected to decides, whatever the name resolved to
    /// when it was checked: a rebinding name that now points inside is
    /// refused.
    #[tokio::test]
    async fn the_connected_address_decides() {
        let public = t(false, "93.184.216.34", 80);
        let hop = t(false, "rebind.example", 80);
        let meta = "169.254.169.254".parse().unwrap();
        let err = check_hop_addr(&public, &hop, meta).await.unwrap_err();
        assert!(err.contains("internal address (169.254.169.254)"), "{err}");
        let outside = "8.8.8.8".parse().unwrap();
        assert!(check_hop_addr(&public, &hop, outside).await.is_ok());
        // The configured origin itself is never judged.
        let same = t(false, "93.184.216.34", 80);
        assert!(check_hop_addr(&public, &same, meta).await.is_ok());
    }

    /// The hop resolver hands the connector no internal address: a name
    /// with internal addresses only is an error, not a connection.
    #[tokio::test]
    async fn the_hop_resolver_keeps_internal_addresses_out() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = PublicOnly.resolve(name).await.err().expect("refused");
        assert!(
            err.to_string().contains("refused: an internal address"),
            "{err}"
        );
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        assert!(same_origin(&t(false, "o", 80), &t(false, "O", 80)));
        assert!(!same_origin(&t(false, "o", 80), &t(true, "o", 80)));
        assert!(!same_origin(&t(false, "o", 80), &t(false, "p", 80)));
        assert!(!same_origin(&t(false, "o", 80), &t(false, "o", 81)));
    }
}
