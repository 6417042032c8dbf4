//! Forwarding headers: which one is believed, and walking it from the right.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderName};

/// The forwarding header a [`ClientIp`](super::ClientIp) reads when the
/// socket peer is a trusted proxy.
///
/// Name the header your trusted proxies write (append to). The other one is
/// never read: a proxy that writes only `Forwarded` passes a client's own
/// `X-Forwarded-For` through untouched, so believing it would let the client
/// choose its key.
///
/// | proxy | header |
/// |---|---|
/// | nginx `proxy_add_x_forwarded_for`, AWS ALB, Google Cloud LB, Traefik, Envoy (`use_remote_address`) | [`XForwardedFor`](Self::XForwardedFor) (default) |
/// | HAProxy `option forwarded`, proxies and CDNs that speak RFC 7239 only | [`Forwarded`](Self::Forwarded) |
///
/// # Example
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use http::Request;
/// use portcullis::{ClientIp, PeerAddr, client_ip::ForwardedHeader};
///
/// let (parts, ()) = Request::builder()
///     .header("forwarded", "for=198.51.100.7")
///     .extension(PeerAddr("10.0.0.2:55000".parse::<SocketAddr>().unwrap()))
///     .body(())
///     .unwrap()
///     .into_parts();
/// let proxy: IpAddr = "10.0.0.2".parse().unwrap();
/// let client: IpAddr = "198.51.100.7".parse().unwrap();
///
/// // By default only X-Forwarded-For is read: the client is the proxy itself.
/// let default = ClientIp::builder().trust_proxies(["10.0.0.0/8"]).build().unwrap();
/// assert_eq!(default.resolve(&parts), Some(proxy));
///
/// let rfc7239 = ClientIp::builder()
///     .trust_proxies(["10.0.0.0/8"])
///     .forwarded_header(ForwardedHeader::Forwarded)
///     .build()
///     .unwrap();
/// assert_eq!(rfc7239.resolve(&parts), Some(client));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`: a comma-separated list of addresses, each proxy
    /// appending the address it received the request from.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239): the `for=` parameter of each element, each
    /// proxy appending an element. `unknown` and obfuscated identifiers
    /// (`_hidden`) are not addresses.
    Forwarded,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ForwardedHeader {
    /// The header's name, lowercase, for logs.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    fn name(self) -> HeaderName {
        match self {
            Self::XForwardedFor => X_FORWARDED_FOR,
            Self::Forwarded => http::header::FORWARDED,
        }
    }

    fn hop(self, element: &[u8]) -> Option<IpAddr> {
        match self {
            Self::XForwardedFor => xff_hop(element),
            Self::Forwarded => forwarded_hop(element),
        }
    }
}

/// What walking the forwarding header found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    /// The client, canonical.
    Client(IpAddr),
    /// The header is absent, or its lines hold no element.
    Missing,
    /// A hop reached before the client is not an address.
    Unusable,
}

/// Walks the elements of every `header` field line from the right,
/// skipping hops `trusted` accepts. When every hop is trusted the leftmost
/// one is the client.
pub(super) fn walk(
    header: ForwardedHeader,
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> Walk {
    let mut leftmost = None;
    for line in headers.get_all(header.name()).iter().rev() {
        for element in line.as_bytes().rsplit(|&b| b == b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                // Empty list elements carry nothing (RFC 9110 5.6.1).
                continue;
            }
            let Some(addr) = header.hop(element) else {
                return Walk::Unusable;
            };
            let addr = addr.to_canonical();
            if !trusted(addr) {
                return Walk::Client(addr);
            }
            leftmost = Some(addr);
        }
    }
    leftmost.map_or(Walk::Missing, Walk::Client)
}

/// One `X-Forwarded-For` element: a node as in [`parse_node`].
fn xff_hop(element: &[u8]) -> Option<IpAddr> {
    parse_node(std::str::from_utf8(element).ok()?)
}

/// The `for=` node of one `Forwarded` element (RFC 7239). An element
/// without exactly one `for`, with a malformed pair, or whose node is not an
/// address (`unknown`, `_obfuscated`) is unusable.
fn forwarded_hop(element: &[u8]) -> Option<IpAddr> {
    let mut node = None;
    for pair in element.split(|&b| b == b';') {
        let pair = trim_ows(pair);
        if pair.is_empty() {
            continue;
        }
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (trim_ows(&pair[..eq]), trim_ows(&pair[eq + 1..]));
        if name.eq_ignore_ascii_case(b"for") {
            if node.is_some() {
                return None;
            }
            node = Some(value);
        }
    }
    let value = node?;
    let value = match value {
        [b'"', inner @ .., b'"'] => {
            // Addresses need no escapes; a quote or backslash inside is junk.
            if inner.iter().any(|&b| b == b'"' || b == b'\\') {
                return None;
            }
            inner
        }
        _ => value,
    };
    parse_node(std::str::from_utf8(value).ok()?)
}

/// Parses `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80` and zoned IPv6 (`fe80::1%eth0`), dropping port and
/// zone.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        return parse_v6(addr).map(IpAddr::V6);
    }
    match node.bytes().filter(|&b| b == b':').count() {
        0 => node.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        1 => {
            let (addr, port) = node.split_once(':')?;
            if !is_port(port) {
                return None;
            }
            addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
        _ => parse_v6(node).map(IpAddr::V6),
    }
}

fn parse_v6(addr: &str) -> Option<Ipv6Addr> {
    let addr = match addr.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() => addr,
        Some(_) => return None,
        None => addr,
    };
    addr.parse().ok()
}

fn is_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_parse_with_ports_brackets_and_zones() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let fe80: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(parse_node("192.0.2.1"), Some(v4));
        assert_eq!(parse_node("192.0.2.1:8080"), Some(v4));
        assert_eq!(parse_node("2001:db8::1"), Some(v6));
        assert_eq!(parse_node("[2001:db8::1]"), Some(v6));
        assert_eq!(parse_node("[2001:db8::1]:4711"), Some(v6));
        assert_eq!(parse_node("fe80::1%eth0"), Some(fe80));
        assert_eq!(parse_node("[fe80::1%25eth0]:80"), Some(fe80));
        for junk in [
            "",
            "unknown",
            "_hidden",
            "192.0.2.1:",
            "192.0.2.1:x",
            "192.0.2.1:123456",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[192.0.2.1]",
            "fe80::1%",
            "1.2.3",
            "01.2.3.4",
        ] {
            assert_eq!(parse_node(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn forwarded_elements_need_exactly_one_for() {
        let v6: IpAddr = "2001:db8:cafe::17".parse().unwrap();
        assert_eq!(
            forwarded_hop(br#"for="[2001:db8:cafe::17]:4711";proto=https"#),
            Some(v6)
        );
        assert_eq!(
            forwarded_hop(b"proto=https; For=192.0.2.60"),
            "192.0.2.60".parse().ok()
        );
        assert_eq!(forwarded_hop(b"by=192.0.2.1"), None);
        assert_eq!(forwarded_hop(b"for=192.0.2.1;for=192.0.2.2"), None);
        assert_eq!(forwarded_hop(b"for=unknown"), None);
        assert_eq!(forwarded_hop(b"for=\"_gazonk\""), None);
        assert_eq!(forwarded_hop(b"for=\"192.0.2.1"), None);
        assert_eq!(forwarded_hop(b"for"), None);
    }

    #[test]
    fn the_walk_reads_only_the_named_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let nobody = |_| false;
        assert_eq!(
            walk(ForwardedHeader::Forwarded, &headers, nobody),
            Walk::Missing
        );
        headers.insert("forwarded", "for=198.51.100.1".parse().unwrap());
        assert_eq!(
            walk(ForwardedHeader::Forwarded, &headers, nobody),
            Walk::Client("198.51.100.1".parse().unwrap())
        );
        assert_eq!(
            walk(ForwardedHeader::XForwardedFor, &headers, nobody),
            Walk::Client("203.0.113.9".parse().unwrap())
        );
        headers.insert("x-forwarded-for", " , ".parse().unwrap());
        assert_eq!(
            walk(ForwardedHeader::XForwardedFor, &headers, nobody),
            Walk::Missing
        );
        headers.insert("x-forwarded-for", "junk".parse().unwrap());
        assert_eq!(
            walk(ForwardedHeader::XForwardedFor, &headers, nobody),
            Walk::Unusable
        );
    }
}
