//! Trusted proxy ranges: CIDR parsing, membership and prefix masks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ConfigError;

/// Trusted ranges, parsed once into (network, mask) pairs.
#[derive(Clone, Default)]
pub(crate) struct Trusted {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// The ranges as given, for `Debug`.
    display: Vec<String>,
}

impl Trusted {
    /// Adds one range (`10.0.0.0/8`, `fd00::/8`, `192.0.2.1`).
    pub(crate) fn add(&mut self, cidr: &str) -> Result<(), ConfigError> {
        match parse_cidr(cidr).ok_or_else(|| ConfigError::InvalidCidr(cidr.to_owned()))? {
            Cidr::V4(net, mask) => self.v4.push((net, mask)),
            Cidr::V6(net, mask) => self.v6.push((net, mask)),
        }
        self.display.push(cidr.trim().to_owned());
        Ok(())
    }

    /// Whether `addr` (canonical) lies in one of the ranges.
    #[inline]
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => self.contains_v4(v4),
            IpAddr::V6(v6) => self.contains_v6(v6),
        }
    }

    /// Whether `addr` lies in one of the IPv4 ranges.
    #[inline]
    pub(crate) fn contains_v4(&self, addr: Ipv4Addr) -> bool {
        let bits = addr.to_bits();
        self.v4.iter().any(|&(net, mask)| bits & mask == net)
    }

    /// Whether `addr` (not IPv4-mapped) lies in one of the IPv6 ranges.
    #[inline]
    pub(crate) fn contains_v6(&self, addr: Ipv6Addr) -> bool {
        let bits = addr.to_bits();
        self.v6.iter().any(|&(net, mask)| bits & mask == net)
    }

    /// The ranges as they were given.
    pub(crate) fn display(&self) -> &[String] {
        &self.display
    }

    /// The ranges in one order and without repeats: two lists that trust
    /// exactly the same ranges, however given, have the same form.
    #[cfg(feature = "redis")]
    pub(crate) fn canonical(&self) -> String {
        fn sorted<T: Copy + Ord>(ranges: &[T]) -> Vec<T> {
            let mut ranges = ranges.to_vec();
            ranges.sort_unstable();
            ranges.dedup();
            ranges
        }
        format!("{:?} {:?}", sorted(&self.v4), sorted(&self.v6))
    }
}

enum Cidr {
    V4(u32, u32),
    V6(u128, u128),
}

fn parse_cidr(cidr: &str) -> Option<Cidr> {
    let cidr = cidr.trim();
    let (addr, prefix) = match cidr.split_once('/') {
        Some((addr, prefix)) => {
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (addr, Some(prefix.parse::<u8>().ok()?))
        }
        None => (cidr, None),
    };
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => v4_range(u32::from(v4), prefix.unwrap_or(32)),
        IpAddr::V6(v6) => {
            let prefix = prefix.unwrap_or(128);
            match v6.to_ipv4_mapped() {
                // `::ffff:a.b.c.d/n` with n >= 96 is the IPv4 range a.b.c.d/(n-96).
                Some(v4) if prefix >= 96 => v4_range(u32::from(v4), prefix - 96),
                _ => {
                    if prefix > 128 {
                        return None;
                    }
                    let bits = u128::from(v6);
                    let mask = mask_u128(prefix);
                    (bits & !mask == 0).then_some(Cidr::V6(bits, mask))
                }
            }
        }
    }
}

fn v4_range(bits: u32, prefix: u8) -> Option<Cidr> {
    if prefix > 32 {
        return None;
    }
    let mask = mask_u32(prefix);
    (bits & !mask == 0).then_some(Cidr::V4(bits, mask))
}

/// The IPv4 netmask of a `/prefix` (`prefix <= 32`).
pub(super) fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The IPv6 netmask of a `/prefix` (`prefix <= 128`).
pub(super) fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_cover_the_edges() {
        assert_eq!(mask_u32(0), 0);
        assert_eq!(mask_u32(8), 0xff00_0000);
        assert_eq!(mask_u32(32), u32::MAX);
        assert_eq!(mask_u128(0), 0);
        assert_eq!(mask_u128(64), u128::MAX << 64);
        assert_eq!(mask_u128(128), u128::MAX);
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert!(matches!(
            parse_cidr("10.0.0.0/8"),
            Some(Cidr::V4(0x0a00_0000, 0xff00_0000))
        ));
        assert!(matches!(
            parse_cidr(" 192.0.2.1 "),
            Some(Cidr::V4(_, u32::MAX))
        ));
        assert!(matches!(
            parse_cidr("::ffff:10.0.0.0/104"),
            Some(Cidr::V4(0x0a00_0000, 0xff00_0000))
        ));
        assert!(matches!(parse_cidr("fd00::/8"), Some(Cidr::V6(_, _))));
        assert!(matches!(parse_cidr("0.0.0.0/0"), Some(Cidr::V4(0, 0))));
        for junk in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.1.2.3/8",
            "fd00::/129",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
        ] {
            assert!(parse_cidr(junk).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn membership_follows_the_masks() {
        let mut trusted = Trusted::default();
        trusted.add("10.0.0.0/8").unwrap();
        trusted.add("fd00::/8").unwrap();
        assert!(trusted.contains("10.255.0.1".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
        assert!(trusted.contains("fd12::1".parse().unwrap()));
        assert!(!trusted.contains("fe80::1".parse().unwrap()));
        assert_eq!(trusted.display(), ["10.0.0.0/8", "fd00::/8"]);
    }
}
