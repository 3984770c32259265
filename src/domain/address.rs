//! Which IP addresses a webhook may point at: only globally routable unicast ones.
//!
//! The lists follow the IANA special-purpose address registries (RFC 6890 and successors).
//! Anything that is not plainly public is refused, so a new special range costs us a
//! rejected URL rather than a request into someone's private network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when `ip` is a public unicast address a webhook may be delivered to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// Reads `text` as an IPv4 address only when it is written in canonical dotted decimal: four
/// decimal numbers from 0 to 255 without leading zeros (`8.8.8.8`). URL parsers also read
/// `127.1`, `0x7f.0.0.1`, `2130706433` or `0177.0.0.1`, and do not agree on what they mean
/// (`0254` is octal 172 to some and decimal 254 to others), so those spellings are refused
/// rather than judged. (The standard library's parser is this strict; the round trip through
/// `to_string` keeps it so should that ever change.)
pub fn parse_canonical_v4(text: &str) -> Option<Ipv4Addr> {
    let ip: Ipv4Addr = text.parse().ok()?;
    (ip.to_string() == text).then_some(ip)
}

/// IPv4 ranges that are never a webhook target: (network, prefix length).
const NON_PUBLIC_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT; also some cloud metadata)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata 169.254.169.254)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation TEST-NET-1
    ([192, 31, 196, 0], 24), // AS112
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation TEST-NET-2
    ([203, 0, 113, 0], 24),  // documentation TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, including broadcast 255.255.255.255
];

fn in_v4_net(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

/// True when `ip` is a public unicast IPv4 address.
pub fn is_public_v4(ip: Ipv4Addr) -> bool {
    !NON_PUBLIC_V4
        .iter()
        .any(|&(net, prefix)| in_v4_net(ip, net, prefix))
}

/// IPv6 ranges inside 2000::/3 that are still not public: (network, prefix length).
const NON_PUBLIC_V6_GLOBAL: &[(u128, u8)] = &[
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // IETF protocol assignments (Teredo, ORCHID, benchmarking…)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16), // 6to4: embeds an IPv4 address we would have to trust
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // documentation (RFC 9637)
];

fn in_v6_net(ip: Ipv6Addr, net: u128, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (net & mask)
}

/// True when `ip` is a public unicast IPv6 address.
///
/// Only global unicast (2000::/3) is public. That excludes at once the unspecified and loopback
/// addresses, IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96) forms, NAT64 (64:ff9b::/96,
/// 64:ff9b:1::/48), discard (100::/64), unique local (fc00::/7), link-local (fe80::/10),
/// site-local (fec0::/10) and multicast (ff00::/8).
pub fn is_public_v6(ip: Ipv6Addr) -> bool {
    let global_unicast = in_v6_net(ip, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3);
    global_unicast
        && !NON_PUBLIC_V6_GLOBAL
            .iter()
            .any(|&(net, prefix)| in_v6_net(ip, net, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn refuses_every_non_public_ipv4_range() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!v4(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn accepts_public_ipv4_including_range_neighbours() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(v4(ip), "{ip} must be accepted");
        }
    }

    #[test]
    fn canonical_ipv4_is_four_decimal_numbers_without_leading_zeros() {
        assert_eq!(
            parse_canonical_v4("8.8.8.8"),
            Some(Ipv4Addr::new(8, 8, 8, 8))
        );
        assert_eq!(parse_canonical_v4("0.0.0.0"), Some(Ipv4Addr::UNSPECIFIED));
        for text in [
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0x7f.0.0.1",
            "2130706433",
            "017700000001",
            "0177.0.0.1",
            "169.0254.169.0254",
            "08.8.8.8",
            "8.8.8.8.",
            "8.8.8.256",
            "",
        ] {
            assert_eq!(parse_canonical_v4(text), None, "{text}");
        }
    }

    #[test]
    fn refuses_every_non_public_ipv6_range() {
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must be refused");
        }
    }

    #[test]
    fn accepts_public_ipv6() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860::8888",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} must be accepted");
        }
    }
}
