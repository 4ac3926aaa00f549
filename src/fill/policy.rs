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
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let s = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (s & 0xfe00) == 0xfc00 // unique local
                || (s & 0xffc0) == 0xfe80 // link-local
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
        ] {
            assert!(!hop_allowed(&public, &ips(&[inside])), "{inside}");
        }
        assert!(hop_allowed(&public, &ips(&["8.8.8.8", "2606:4700::1"])));
        // An internal origin may redirect within the internal network.
        assert!(hop_allowed(&ips(&["127.0.0.1"]), &ips(&["127.0.0.2"])));
        assert!(hop_allowed(&ips(&["10.0.0.5"]), &ips(&["169.254.169.254"])));
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let t = |tls: bool, host: &str, port: u16| OriginTarget {
            tls,
            host: host.into(),
            port,
            authority: format!("{host}:{port}"),
            path_and_query: "/".into(),
            url: String::new(),
            trust: Default::default(),
        };
        assert!(same_origin(&t(false, "o", 80), &t(false, "O", 80)));
        assert!(!same_origin(&t(false, "o", 80), &t(true, "o", 80)));
        assert!(!same_origin(&t(false, "o", 80), &t(false, "p", 80)));
        assert!(!same_origin(&t(false, "o", 80), &t(false, "o", 81)));
    }
}
