//! [`ClientIpBuilder`]: trusted proxies, the forwarding header and prefix
//! grouping of a [`ClientIp`].

use std::fmt;

use super::{ClientIp, ForwardedHeader, cidr::Trusted};
use crate::ConfigError;

/// Configures a [`ClientIp`]; see [`ClientIp::builder`].
///
/// Nothing is checked until [`build`](Self::build), which reports the first
/// setting that cannot work.
///
/// # Example
///
/// ```
/// use portcullis::{ClientIp, client_ip::ForwardedHeader};
///
/// // Behind HAProxy (`option forwarded`), grouping IPv6 clients by /56.
/// let clients = ClientIp::builder()
///     .trust_proxies(["10.0.0.0/8", "fd00::/8"])
///     .forwarded_header(ForwardedHeader::Forwarded)
///     .ipv6_prefix(56)
///     .build()?;
/// # let _ = clients;
///
/// assert!(ClientIp::builder().trust_proxies(["10.1.2.3/8"]).build().is_err());
/// assert!(ClientIp::builder().ipv6_prefix(0).build().is_err());
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[must_use]
#[derive(Clone, Default)]
pub struct ClientIpBuilder {
    proxies: Vec<String>,
    header: ForwardedHeader,
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
}

impl ClientIp {
    /// A builder of a resolver: no trusted proxy, `X-Forwarded-For`, IPv4
    /// by /32 and IPv6 by /64 until its methods say otherwise.
    pub fn builder() -> ClientIpBuilder {
        ClientIpBuilder::default()
    }
}

impl ClientIpBuilder {
    /// Adds proxies whose forwarding header is believed, as CIDR ranges
    /// (`10.0.0.0/8`, `fd00::/8`) or single addresses (`192.0.2.1`, `::1`).
    ///
    /// Ranges written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) match the
    /// IPv4 addresses they map. Calling it again adds to the list.
    ///
    /// [`build`](Self::build) refuses anything that is not an address
    /// optionally followed by `/prefix` within the family's bit length, and
    /// ranges with bits set past the prefix (`10.1.2.3/8`): such a typo
    /// would trust a range other than the one meant.
    pub fn trust_proxies<I, S>(mut self, cidrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.proxies
            .extend(cidrs.into_iter().map(|c| c.as_ref().to_owned()));
        self
    }

    /// Chooses the forwarding header trusted proxies write (default
    /// [`ForwardedHeader::XForwardedFor`]). The other header is never read.
    ///
    /// # Security
    ///
    /// Name the header your proxy appends to. A proxy passes headers it does
    /// not write through untouched, so a client controls them completely;
    /// believing one would let it pick a fresh key per request (escaping the
    /// limiters) or name a victim's address (locking the victim out).
    ///
    /// # Example
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    /// use http::Request;
    /// use portcullis::{ClientIp, PeerAddr, client_ip::ForwardedHeader};
    ///
    /// // HAProxy with `option forwarded` in front.
    /// let client_ip = ClientIp::builder()
    ///     .trust_proxies(["10.0.0.0/8"])
    ///     .forwarded_header(ForwardedHeader::Forwarded)
    ///     .build()?;
    ///
    /// let (parts, ()) = Request::builder()
    ///     .header("x-forwarded-for", "203.0.113.66") // the client's own, passed through
    ///     .header("forwarded", "for=198.51.100.7")   // appended by the proxy
    ///     .extension(PeerAddr("10.0.0.2:55000".parse::<SocketAddr>().unwrap()))
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// assert_eq!(client_ip.resolve(&parts), Some("198.51.100.7".parse::<IpAddr>().unwrap()));
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Groups IPv6 clients by this prefix length (default 64): every address
    /// in one `/bits` network counts as one client. [`build`](Self::build)
    /// refuses it unless `1 <= bits <= 128`.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = Some(bits);
        self
    }

    /// Groups IPv4 clients by this prefix length (default 32, one address
    /// per client). [`build`](Self::build) refuses it unless
    /// `1 <= bits <= 32`.
    pub fn ipv4_prefix(mut self, bits: u8) -> Self {
        self.ipv4_prefix = Some(bits);
        self
    }

    /// The resolver.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidCidr`] for a trusted proxy that is not an
    ///   address or a range, or a range with bits set past its prefix;
    /// - [`ConfigError::OutOfRange`] for an IPv4 prefix outside `1..=32` or
    ///   an IPv6 prefix outside `1..=128`.
    pub fn build(self) -> Result<ClientIp, ConfigError> {
        let mut trusted = Trusted::default();
        for cidr in &self.proxies {
            trusted.add(cidr)?;
        }
        let v4 = self.ipv4_prefix.unwrap_or(32);
        if !(1..=32).contains(&v4) {
            return Err(ConfigError::out_of_range(
                "ipv4_prefix",
                "must be between 1 and 32 bits",
            ));
        }
        let v6 = self.ipv6_prefix.unwrap_or(64);
        if !(1..=128).contains(&v6) {
            return Err(ConfigError::out_of_range(
                "ipv6_prefix",
                "must be between 1 and 128 bits",
            ));
        }
        Ok(ClientIp::with(trusted, self.header, v4, v6))
    }
}

impl fmt::Debug for ClientIpBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIpBuilder")
            .field("trusted_proxies", &self.proxies)
            .field("forwarded_header", &self.header)
            .field("ipv4_prefix", &self.ipv4_prefix)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish()
    }
}
