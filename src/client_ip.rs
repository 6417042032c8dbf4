//! Which client sent a request: the socket peer, trusted proxies and IPv6
//! prefix grouping.
//!
//! The limiting layers count per client, and on the wire a client is an
//! address. [`ClientIp`] finds that address and turns it into a key:
//!
//! 1. The socket peer comes from the request extensions, which the server
//!    fills per connection: [`PeerAddr`] (plain hyper), axum's
//!    `ConnectInfo<SocketAddr>` (feature `axum`) or tonic's `TcpConnectInfo`
//!    (feature `tonic`).
//! 2. If the peer is one of your trusted proxies, the client is found by
//!    walking `X-Forwarded-For` (or, when there is none, `Forwarded`) from the
//!    right, skipping trusted hops. Otherwise those headers are ignored.
//! 3. The address is made canonical (`::ffff:192.0.2.1` is `192.0.2.1`, ports
//!    and zones dropped) and IPv6 addresses are grouped by prefix (/64 by
//!    default), because one subscriber usually holds a whole /64.
//!
//! # Serving with connect info
//!
//! Without a socket peer there is no client address, and the layers answer
//! 500 (`RejectionKind::NoClientAddress`) rather than count every client in
//! one shared bucket. Run the server so that it records the peer:
//!
//! - **axum**: serve `router.into_make_service_with_connect_info::<SocketAddr>()`
//!   (feature `axum`):
//!
//!   ```no_run
//!   # #[cfg(feature = "axum")]
//!   # async fn serve() -> std::io::Result<()> {
//!   use std::net::SocketAddr;
//!   use axum::{Router, routing::get};
//!
//!   let app = Router::new().route("/", get(|| async { "hi" }));
//!   let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!   axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
//!   # }
//!   ```
//!
//! - **tonic**: `tonic::transport::Server` inserts `TcpConnectInfo` into every
//!   request on its own (also behind TLS); enable portcullis' `tonic` feature
//!   so that [`ClientIp`] reads it.
//! - **plain hyper**: insert [`PeerAddr`] into each request of a connection:
//!
//!   ```no_run
//!   # async fn serve() -> std::io::Result<()> {
//!   use std::convert::Infallible;
//!   use hyper::{Request, Response, body::Incoming, service::service_fn};
//!   use hyper_util::rt::TokioIo;
//!   use portcullis::PeerAddr;
//!
//!   let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!   loop {
//!       let (stream, peer) = listener.accept().await?;
//!       let service = service_fn(move |mut req: Request<Incoming>| async move {
//!           req.extensions_mut().insert(PeerAddr(peer));
//!           // ... hand `req` to the tower stack here ...
//!           Ok::<_, Infallible>(Response::new(String::from("hi")))
//!       });
//!       tokio::spawn(async move {
//!           let _ = hyper::server::conn::http1::Builder::new()
//!               .serve_connection(TokioIo::new(stream), service)
//!               .await;
//!       });
//!   }
//!   # }
//!   ```
//!
//! # Security
//!
//! Anyone can send `X-Forwarded-For` and `Forwarded`. portcullis reads them
//! only when the socket peer is in the trusted list, and then only the part
//! your proxies wrote: the walk starts at the right, where the last trusted
//! proxy appended the address it saw, and stops at the first address that is
//! not a trusted proxy. So a client can:
//!
//! - put anything it likes to the *left* of the address your proxy appends;
//!   it is never read;
//! - not choose its own key, not borrow another client's key, and not land
//!   in a shared bucket: a header it sends straight to the server (not via a
//!   trusted proxy) changes nothing, and unparsable hops (`unknown`,
//!   obfuscated identifiers, junk) in the part that is walked make the walk
//!   fall back to the socket peer.
//!
//! What a header cannot protect against is a trusted proxy that forwards a
//! client's header without appending the address it saw: trust only proxies
//! that append (nginx `$proxy_add_x_forwarded_for`, most load balancers).
//! Grouping IPv6 by prefix means one /64 shares one budget; an attacker with
//! many /64s (a /48 holds 65,536 of them) still has many keys, which the
//! bounded tables of the layers absorb.
//!
//! # Example
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use http::Request;
//! use portcullis::{ClientIp, KeyExtractor, PeerAddr};
//!
//! let client_ip = ClientIp::new().trust_proxies(["10.0.0.0/8"]).unwrap();
//!
//! let req = Request::builder()
//!     .header("x-forwarded-for", "198.51.100.7, 10.1.2.3")
//!     .extension(PeerAddr("10.0.0.2:55000".parse::<SocketAddr>().unwrap()))
//!     .body(())
//!     .unwrap();
//! let (parts, ()) = req.into_parts();
//!
//! let expected: IpAddr = "198.51.100.7".parse().unwrap();
//! assert_eq!(client_ip.resolve(&parts), Some(expected));
//! assert_eq!(client_ip.extract(&parts).unwrap(), expected);
//! ```

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use http::{HeaderMap, HeaderName, request::Parts};

use crate::{AuthRejection, ConfigError, KeyExtractor, reject::RejectionKind};

/// The socket address of the connection a request arrived on.
///
/// Servers built on plain hyper insert it into every request's extensions
/// (see the [module docs](self)); axum's and tonic's own connect-info types
/// are read as well, so their users need not.
///
/// # Example
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use portcullis::{ClientIp, PeerAddr};
///
/// let peer: SocketAddr = "192.0.2.10:40000".parse().unwrap();
/// let (parts, ()) = Request::builder().extension(PeerAddr(peer)).body(()).unwrap().into_parts();
/// assert_eq!(ClientIp::new().peer(&parts), Some(peer.ip()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Resolves the client address of a request and groups it into a key.
///
/// See the [module docs](self) for how the address is found, how to serve
/// with connect info, and what spoofed headers can and cannot do.
///
/// As a [`KeyExtractor`] it yields the canonical address masked to the
/// configured prefix (IPv4 /32 and IPv6 /64 by default), or a
/// [`RejectionKind::NoClientAddress`] rejection when the request carries no
/// socket peer at all.
///
/// Cloning is cheap: the trusted ranges are shared.
#[derive(Clone)]
pub struct ClientIp {
    trusted: Arc<Trusted>,
    v4_prefix: u8,
    v6_prefix: u8,
    v4_mask: u32,
    v6_mask: u128,
}

/// Trusted ranges, parsed once into (network, mask) pairs.
#[derive(Default)]
struct Trusted {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// The ranges as given, for `Debug`.
    display: Vec<String>,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ClientIp {
    /// A resolver that trusts no proxy, keys IPv4 by /32 and IPv6 by /64.
    pub fn new() -> Self {
        Self {
            trusted: Arc::new(Trusted::default()),
            v4_prefix: 32,
            v6_prefix: 64,
            v4_mask: mask_u32(32),
            v6_mask: mask_u128(64),
        }
    }

    /// Adds proxies whose forwarding headers are believed, as CIDR ranges
    /// (`10.0.0.0/8`, `fd00::/8`) or single addresses (`192.0.2.1`, `::1`).
    ///
    /// Ranges written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) match the
    /// IPv4 addresses they map. Calling it again adds to the list.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCidr`] for anything that is not an address
    /// optionally followed by `/prefix` within the family's bit length, and
    /// for ranges with bits set past the prefix (`10.1.2.3/8`): such a typo
    /// would trust a range other than the one meant.
    pub fn trust_proxies<I, S>(self, cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut trusted = Trusted {
            v4: self.trusted.v4.clone(),
            v6: self.trusted.v6.clone(),
            display: self.trusted.display.clone(),
        };
        for cidr in cidrs {
            let cidr = cidr.as_ref();
            match parse_cidr(cidr).ok_or_else(|| ConfigError::InvalidCidr(cidr.to_owned()))? {
                Cidr::V4(net, mask) => trusted.v4.push((net, mask)),
                Cidr::V6(net, mask) => trusted.v6.push((net, mask)),
            }
            trusted.display.push(cidr.trim().to_owned());
        }
        Ok(Self {
            trusted: Arc::new(trusted),
            ..self
        })
    }

    /// Groups IPv6 clients by this prefix length (default 64): every address
    /// in one `/bits` network counts as one client.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] unless `1 <= bits <= 128`.
    pub fn ipv6_prefix(self, bits: u8) -> Result<Self, ConfigError> {
        if !(1..=128).contains(&bits) {
            return Err(ConfigError::out_of_range(
                "ipv6_prefix",
                "must be between 1 and 128 bits",
            ));
        }
        Ok(Self {
            v6_prefix: bits,
            v6_mask: mask_u128(bits),
            ..self
        })
    }

    /// Groups IPv4 clients by this prefix length (default 32, one address
    /// per client).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] unless `1 <= bits <= 32`.
    pub fn ipv4_prefix(self, bits: u8) -> Result<Self, ConfigError> {
        if !(1..=32).contains(&bits) {
            return Err(ConfigError::out_of_range(
                "ipv4_prefix",
                "must be between 1 and 32 bits",
            ));
        }
        Ok(Self {
            v4_prefix: bits,
            v4_mask: mask_u32(bits),
            ..self
        })
    }

    /// The socket peer of the request, canonical (`::ffff:192.0.2.1` is
    /// `192.0.2.1`), from [`PeerAddr`], then axum's
    /// `ConnectInfo<SocketAddr>` (feature `axum`), then tonic's
    /// `TcpConnectInfo` (feature `tonic`).
    ///
    /// `None` when the server did not record the peer.
    pub fn peer(&self, parts: &Parts) -> Option<IpAddr> {
        peer_addr(parts).map(|addr| addr.ip().to_canonical())
    }

    /// The client address: the socket peer, or, when the peer is a trusted
    /// proxy, the first untrusted hop of `X-Forwarded-For` (every field
    /// line, read from the right) or, when that header is absent, of
    /// `Forwarded`.
    ///
    /// If every hop is trusted the leftmost one is the client. An unparsable
    /// hop before the client is found (`unknown`, an obfuscated identifier,
    /// junk) makes the socket peer the client. The address is canonical but
    /// not grouped; see [`ClientIp::key`].
    ///
    /// `None` only when there is no socket peer.
    pub fn resolve(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = self.peer(parts)?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let headers = &parts.headers;
        let walked = if headers.contains_key(&X_FORWARDED_FOR) {
            self.walk(headers, &X_FORWARDED_FOR, xff_hop)
        } else if headers.contains_key(http::header::FORWARDED) {
            self.walk(headers, &http::header::FORWARDED, forwarded_hop)
        } else {
            None
        };
        Some(walked.unwrap_or(peer))
    }

    /// The key `addr` counts under: canonical, masked to the configured
    /// prefix (`2001:db8:1:2:3:4:5:6` is `2001:db8:1:2::` with the default
    /// /64).
    pub fn key(&self, addr: IpAddr) -> IpAddr {
        match addr.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & self.v4_mask)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & self.v6_mask)),
        }
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.trusted
                    .v4
                    .iter()
                    .any(|&(net, mask)| bits & mask == net)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.trusted
                    .v6
                    .iter()
                    .any(|&(net, mask)| bits & mask == net)
            }
        }
    }

    /// Walks the hops of every `name` field line from the right. `Some` is
    /// the client; `None` means there was nothing usable, so the peer is the
    /// client.
    fn walk(
        &self,
        headers: &HeaderMap,
        name: &HeaderName,
        hop: fn(&[u8]) -> Option<IpAddr>,
    ) -> Option<IpAddr> {
        let mut leftmost = None;
        for line in headers.get_all(name).iter().rev() {
            for element in line.as_bytes().rsplit(|&b| b == b',') {
                let element = trim_ows(element);
                if element.is_empty() {
                    // Empty list elements carry nothing (RFC 9110 5.6.1).
                    continue;
                }
                let addr = hop(element)?.to_canonical();
                if !self.is_trusted(addr) {
                    return Some(addr);
                }
                leftmost = Some(addr);
            }
        }
        leftmost
    }
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted_proxies", &self.trusted.display)
            .field("ipv4_prefix", &self.v4_prefix)
            .field("ipv6_prefix", &self.v6_prefix)
            .finish()
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    /// The grouped client address ([`ClientIp::resolve`] then
    /// [`ClientIp::key`]).
    ///
    /// # Errors
    ///
    /// [`RejectionKind::NoClientAddress`] when the request has no socket
    /// peer: the server was not run with connect info.
    fn extract(&self, parts: &Parts) -> Result<IpAddr, AuthRejection> {
        match self.resolve(parts) {
            Some(addr) => Ok(self.key(addr)),
            None => {
                tracing::error!(
                    "no client address: serve with connect info (see portcullis::client_ip)"
                );
                Err(AuthRejection::new(RejectionKind::NoClientAddress))
            }
        }
    }
}

fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    let ext = &parts.extensions;
    if let Some(PeerAddr(addr)) = ext.get::<PeerAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    #[cfg(feature = "tonic")]
    if let Some(info) = ext.get::<tonic::transport::server::TcpConnectInfo>() {
        return info.remote_addr();
    }
    None
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

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
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
}
