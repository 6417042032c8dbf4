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
//!    walking the forwarding header your proxies write from the right,
//!    skipping trusted hops: `X-Forwarded-For` by default, or `Forwarded`
//!    (RFC 7239) when you say so with [`ClientIpBuilder::forwarded_header`]. The
//!    other header is never read, and neither is read when the peer is not
//!    trusted.
//! 3. The address is made canonical (`::ffff:192.0.2.1` is `192.0.2.1`, ports
//!    and zones dropped) and IPv6 addresses are grouped by prefix (/64 by
//!    default), because one subscriber usually holds a whole /64.
//!
//! # Serving with connect info
//!
//! Without a socket peer there is no client address, and the layers answer
//! 500 (`RejectionKind::NoClientAddress`, gRPC `INTERNAL`) rather than count
//! every client in one shared bucket. The client is told only that the server
//! cannot identify it; how to fix the server is logged at `warn`, once. Run
//! the server so that it records the peer:
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
//!   so that [`ClientIp`] reads it. Without the feature a limiter keyed by
//!   [`ClientIp`] refuses every call with `INTERNAL`.
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
//! Anyone can send `X-Forwarded-For` and `Forwarded`. portcullis reads one
//! of them, the one you configure, only when the socket peer is in the
//! trusted list, and then only the part your proxies wrote: the walk starts
//! at the right, where the last trusted proxy appended the address it saw,
//! and stops at the first address that is not a trusted proxy. So a client
//! can:
//!
//! - put anything it likes to the *left* of the address your proxy appends;
//!   it is never read;
//! - send the header your proxy does *not* write (a proxy passes it through
//!   untouched); it is never read either, so it cannot pick a fresh key per
//!   request or name a victim's address;
//! - not choose its own key, not borrow another client's key, and not land
//!   in a shared bucket: a header it sends straight to the server (not via a
//!   trusted proxy) changes nothing, and unparsable hops (`unknown`,
//!   obfuscated identifiers, junk) in the part that is walked make the walk
//!   fall back to the socket peer.
//!
//! What a header cannot protect against is a trusted proxy that forwards a
//! client's header without appending the address it saw: trust only proxies
//! that append (nginx `$proxy_add_x_forwarded_for`, HAProxy
//! `option forwardfor` or `option forwarded`, most load balancers), and
//! configure the header they append to. A request from a trusted proxy
//! without a usable configured header (the proxy's own health checks, or a
//! proxy that writes the other header) counts as the proxy's own; a `warn`
//! event says so once, because if it is not a health check every client
//! behind that proxy shares one key.
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
//! let client_ip = ClientIp::builder().trust_proxies(["10.0.0.0/8"]).build().unwrap();
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

mod builder;
pub(crate) mod cidr;
mod forwarded;
#[cfg(feature = "redis")]
mod space;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use http::request::Parts;

#[cfg(feature = "redis")]
pub(crate) use self::space::key_space;
pub use self::{builder::ClientIpBuilder, forwarded::ForwardedHeader};
use self::{
    cidr::{Trusted, mask_u32, mask_u128},
    forwarded::Walk,
};
use crate::{AuthRejection, KeyExtractor, reject::RejectionKind};

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
/// Cloning is cheap: the trusted ranges are shared, and so is the memory of
/// which configuration problems were already logged.
#[derive(Clone)]
pub struct ClientIp {
    trusted: Arc<Trusted>,
    header: ForwardedHeader,
    v4_prefix: u8,
    v6_prefix: u8,
    v4_mask: u32,
    v6_mask: u128,
    logged: Arc<Logged>,
}

/// Configuration problems already logged at `warn`, so that a deployment
/// problem is reported once, not once per request.
#[derive(Default)]
struct Logged {
    no_peer: AtomicBool,
    fallback: AtomicBool,
}

impl Logged {
    /// `true` the first time only.
    fn first(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::Relaxed)
    }
}

/// How to run a server so that requests carry their socket peer; logged, not
/// sent to clients.
const CONNECT_INFO_HELP: &str = "serve with connect info: axum: \
`router.into_make_service_with_connect_info::<std::net::SocketAddr>()`; \
tonic: enable portcullis' `tonic` feature (tonic's `Server` records the peer); \
plain hyper: insert `portcullis::PeerAddr(peer)` into each request's extensions";

impl ClientIp {
    /// A resolver that trusts no proxy and keys IPv4 by /32 and IPv6 by
    /// /64: the socket peer is the client. Use [`builder`](Self::builder)
    /// behind proxies or to group clients otherwise.
    pub fn new() -> Self {
        Self::with(Trusted::default(), ForwardedHeader::default(), 32, 64)
    }

    /// A resolver with checked settings.
    fn with(trusted: Trusted, header: ForwardedHeader, v4_prefix: u8, v6_prefix: u8) -> Self {
        Self {
            trusted: Arc::new(trusted),
            header,
            v4_prefix,
            v6_prefix,
            v4_mask: mask_u32(v4_prefix),
            v6_mask: mask_u128(v6_prefix),
            logged: Arc::default(),
        }
    }

    /// The socket peer of the request, canonical (`::ffff:192.0.2.1` is
    /// `192.0.2.1`), from [`PeerAddr`], then axum's
    /// `ConnectInfo<SocketAddr>` (feature `axum`), then tonic's
    /// `TcpConnectInfo` (feature `tonic`).
    ///
    /// `None` when the server did not record the peer.
    pub fn peer(&self, parts: &Parts) -> Option<IpAddr> {
        peer_ip(parts)
    }

    /// The client address: the socket peer, or, when the peer is a trusted
    /// proxy, the first untrusted hop of the configured
    /// [forwarding header](ClientIpBuilder::forwarded_header) (every field line, read
    /// from the right).
    ///
    /// If every hop is trusted the leftmost one is the client. When the
    /// header is missing, holds no address, or an unparsable hop (`unknown`,
    /// an obfuscated identifier, junk) comes before the client, the socket
    /// peer is the client, and a `warn` event (once per `ClientIp` and its
    /// clones) says that the proxy does not send what the configuration
    /// expects. The address is canonical but not grouped; see
    /// [`ClientIp::key`].
    ///
    /// `None` only when there is no socket peer.
    pub fn resolve(&self, parts: &Parts) -> Option<IpAddr> {
        peer_ip(parts).map(|peer| self.client(peer, parts))
    }

    /// The client behind the canonical socket peer `peer`: the peer itself
    /// unless it is a trusted proxy.
    #[inline]
    fn client(&self, peer: IpAddr, parts: &Parts) -> IpAddr {
        if self.trusted.contains(peer) {
            self.forwarded_client(peer, parts)
        } else {
            peer
        }
    }

    /// The client behind the IPv4 socket peer `peer` (see
    /// [`ClientIp::client`]).
    #[inline]
    fn v4_client(&self, peer: Ipv4Addr, parts: &Parts) -> IpAddr {
        if self.trusted.contains_v4(peer) {
            self.forwarded_client(IpAddr::V4(peer), parts)
        } else {
            IpAddr::V4(peer)
        }
    }

    /// The client of a request from the trusted proxy `peer`: the walk of
    /// the forwarding header, or the proxy itself when the header has no
    /// usable address (logged). Out of line: most requests do not come
    /// through a trusted proxy, and their path stays short.
    #[inline(never)]
    fn forwarded_client(&self, peer: IpAddr, parts: &Parts) -> IpAddr {
        let problem = match forwarded::walk(self.header, &parts.headers, |addr| {
            self.trusted.contains(addr)
        }) {
            Walk::Client(client) => return client,
            Walk::Missing => "carries no",
            Walk::Unusable => "carries no usable address in its",
        };
        let header = self.header.as_str();
        if Logged::first(&self.logged.fallback) {
            tracing::warn!(
                target: "portcullis::client_ip",
                %peer,
                header,
                "a request from trusted proxy {peer} {problem} {header} header: counting it as \
                 the proxy's own (every client behind that proxy shares one key until this is \
                 fixed); make the proxy append the client address, or choose the header it \
                 writes with ClientIpBuilder::forwarded_header (logged once)"
            );
        } else {
            tracing::debug!(
                target: "portcullis::client_ip",
                %peer,
                header,
                "trusted proxy sent no usable forwarding header; the proxy is the client"
            );
        }
        peer
    }

    /// What decides the keys this one derives: the trusted proxies (in one
    /// order), the forwarding header and the prefixes. Two `ClientIp`s
    /// with the same form derive the same key from every request.
    #[cfg(feature = "redis")]
    pub(crate) fn keys_form(&self) -> String {
        format!(
            "ClientIp {:?} /{} /{} {}",
            self.header,
            self.v4_prefix,
            self.v6_prefix,
            self.trusted.canonical()
        )
    }

    /// The key `addr` counts under: canonical, masked to the configured
    /// prefix (`2001:db8:1:2:3:4:5:6` is `2001:db8:1:2::` with the default
    /// /64).
    pub fn key(&self, addr: IpAddr) -> IpAddr {
        self.group(addr.to_canonical())
    }

    /// The key of a canonical address: masked to the configured prefix.
    #[inline]
    fn group(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & self.v4_mask)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & self.v6_mask)),
        }
    }

    /// The rejection of a request without a socket peer; how to fix the
    /// server is logged once.
    #[cold]
    #[inline(never)]
    fn no_peer(&self) -> AuthRejection {
        if Logged::first(&self.logged.no_peer) {
            tracing::warn!(
                target: "portcullis::client_ip",
                "no client address: requests carry no socket peer, so every request \
                 is refused with 500 (gRPC INTERNAL); {CONNECT_INFO_HELP} (logged once)"
            );
        } else {
            tracing::debug!(target: "portcullis::client_ip", "no client address");
        }
        AuthRejection::new(RejectionKind::NoClientAddress)
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
            .field("trusted_proxies", &self.trusted.display())
            .field("forwarded_header", &self.header)
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
    /// peer: the server was not run with connect info. The client is told
    /// only that the server cannot identify it; how to fix the server goes
    /// to the log, at `warn`, once per `ClientIp` and its clones.
    fn extract(&self, parts: &Parts) -> Result<IpAddr, AuthRejection> {
        // One frame for the common path: the peer, whether it is a trusted
        // proxy, and the prefix, on the address's own bits; the walk of a
        // forwarding header and the logs are out of line.
        let client = match peer_addr(parts) {
            Some(SocketAddr::V4(peer)) => self.v4_client(*peer.ip(), parts),
            Some(SocketAddr::V6(peer)) => match peer.ip().to_ipv4_mapped() {
                Some(v4) => self.v4_client(v4, parts),
                None => {
                    let v6 = *peer.ip();
                    if self.trusted.contains_v6(v6) {
                        self.forwarded_client(IpAddr::V6(v6), parts)
                    } else {
                        IpAddr::V6(v6)
                    }
                }
            },
            None => return Err(self.no_peer()),
        };
        Ok(self.group(client))
    }
}

/// The canonical socket peer of a request (see [`ClientIp::peer`]).
#[inline]
fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    peer_addr(parts).map(|addr| addr.ip().to_canonical())
}

#[inline]
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
