//! Client address resolution: socket peer, trusted proxies, canonical keys.

mod support;

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use http::{HeaderValue, Request, request::Parts};
use portcullis::{
    ClientIp, ConfigError, KeyExtractor, PeerAddr,
    client_ip::{ClientIpBuilder, ForwardedHeader},
    reject::{DefaultRenderer, RejectionKind, Renderer},
};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A request from socket peer `peer` carrying `headers` (repeated names
/// become several field lines, in order).
fn request(peer: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::builder();
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if !peer.is_empty() {
        let addr: SocketAddr = peer.parse().unwrap();
        builder = builder.extension(PeerAddr(addr));
    }
    builder.body(()).unwrap().into_parts().0
}

fn proxies() -> ClientIpBuilder {
    ClientIp::builder().trust_proxies(["10.0.0.0/8", "fd00::/8", "192.0.2.1"])
}

fn behind_proxies() -> ClientIp {
    proxies().build().unwrap()
}

/// The same proxies, writing `Forwarded` (RFC 7239).
fn behind_rfc7239_proxies() -> ClientIp {
    proxies()
        .forwarded_header(ForwardedHeader::Forwarded)
        .build()
        .unwrap()
}

#[test]
fn untrusted_peer_is_the_client_whatever_it_claims() {
    // B8: a spoofed X-Forwarded-For or Forwarded from an untrusted peer changes nothing.
    for client_ip in [behind_proxies(), behind_rfc7239_proxies()] {
        for headers in [
            vec![],
            vec![("x-forwarded-for", "203.0.113.9")],
            vec![("x-forwarded-for", "10.0.0.1, 203.0.113.9")],
            vec![("forwarded", "for=203.0.113.9")],
            vec![("x-forwarded-for", "garbage"), ("forwarded", "for=unknown")],
        ] {
            let parts = request("198.51.100.7:1234", &headers);
            assert_eq!(
                client_ip.resolve(&parts),
                Some(ip("198.51.100.7")),
                "{headers:?}"
            );
            assert_eq!(client_ip.extract(&parts).unwrap(), ip("198.51.100.7"));
        }
    }
}

#[test]
fn without_trusted_proxies_headers_are_never_read() {
    // B8
    let parts = request("10.0.0.2:1", &[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(ClientIp::new().resolve(&parts), Some(ip("10.0.0.2")));
}

#[test]
fn trusted_peer_walks_x_forwarded_for_from_the_right() {
    // B8: table of (peer, X-Forwarded-For lines, expected client).
    let client_ip = behind_proxies();
    let table: &[(&str, &[&str], &str)] = &[
        // the proxy appended the address it saw
        ("10.0.0.2:1", &["203.0.113.9"], "203.0.113.9"),
        // trusted hops on the right are skipped
        (
            "10.0.0.2:1",
            &["203.0.113.9, 10.1.1.1, 192.0.2.1"],
            "203.0.113.9",
        ),
        // what the client wrote on the left is never read
        (
            "10.0.0.2:1",
            &["6.6.6.6, 203.0.113.9, 10.1.1.1"],
            "203.0.113.9",
        ),
        ("10.0.0.2:1", &["junk, unknown, 203.0.113.9"], "203.0.113.9"),
        // every hop trusted: the leftmost is the client
        ("10.0.0.2:1", &["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        // ports, brackets, zones and spaces
        ("10.0.0.2:1", &["203.0.113.9:4711"], "203.0.113.9"),
        ("10.0.0.2:1", &["[2001:db8::7]:443"], "2001:db8::7"),
        ("10.0.0.2:1", &["  2001:db8::7 ,10.1.1.1  "], "2001:db8::7"),
        ("10.0.0.2:1", &["fe80::1%eth0"], "fe80::1"),
        // empty list elements carry nothing
        ("10.0.0.2:1", &[",203.0.113.9,, 10.1.1.1,"], "203.0.113.9"),
        // several field lines are one list, in order
        (
            "10.0.0.2:1",
            &["6.6.6.6", "203.0.113.9", "10.1.1.1"],
            "203.0.113.9",
        ),
        (
            "10.0.0.2:1",
            &["203.0.113.9, 10.1.1.1", "10.2.2.2"],
            "203.0.113.9",
        ),
        (
            "10.0.0.2:1",
            &["10.3.3.3", "10.1.1.1", "10.2.2.2"],
            "10.3.3.3",
        ),
        // an IPv6 peer inside a trusted range
        ("[fd00::5]:1", &["203.0.113.9"], "203.0.113.9"),
        // the peer as an IPv4-mapped IPv6 address is still trusted (B9)
        ("[::ffff:10.0.0.2]:1", &["203.0.113.9"], "203.0.113.9"),
    ];
    for (peer, lines, expected) in table {
        let headers: Vec<_> = lines.iter().map(|l| ("x-forwarded-for", *l)).collect();
        let parts = request(peer, &headers);
        assert_eq!(
            client_ip.resolve(&parts),
            Some(ip(expected)),
            "{peer} {lines:?}"
        );
        assert_eq!(
            client_ip.extract(&parts).unwrap(),
            client_ip.key(ip(expected)),
            "{peer} {lines:?}"
        );
    }
}

#[test]
fn the_key_is_the_grouped_resolved_address_for_every_kind_of_peer() {
    // B8, B9: the key path (`extract`) decides exactly as `resolve` then
    // `key` do, for IPv4, IPv6 and IPv4-mapped peers, trusted or not, with a
    // spoofed or a proxy-written header.
    let peers = [
        "198.51.100.7:1",
        "10.0.0.2:1",
        "192.0.2.1:1",
        "[2001:db8:1:2:3:4:5:6]:1",
        "[fd00::5]:1",
        "[::ffff:10.0.0.2]:1",
        "[::ffff:198.51.100.7]:1",
        "[::ffff:192.0.2.1]:1",
    ];
    let headers: [&[(&str, &str)]; 5] = [
        &[],
        &[("x-forwarded-for", "203.0.113.9")],
        &[("x-forwarded-for", "2001:db8:9::1, 10.1.1.1")],
        &[("x-forwarded-for", "unknown")],
        &[("forwarded", "for=203.0.113.9")],
    ];
    let resolvers = [
        ClientIp::new(),
        behind_proxies(),
        behind_rfc7239_proxies(),
        proxies().ipv4_prefix(24).ipv6_prefix(48).build().unwrap(),
    ];
    for client_ip in &resolvers {
        for peer in peers {
            for headers in headers {
                let parts = request(peer, headers);
                let resolved = client_ip.resolve(&parts).unwrap();
                assert_eq!(
                    client_ip.extract(&parts).unwrap(),
                    client_ip.key(resolved),
                    "{client_ip:?} {peer} {headers:?}"
                );
            }
        }
    }
    // A spoofed header from an untrusted peer: the peer's own key.
    let parts = request("198.51.100.7:1", &[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(
        behind_proxies().extract(&parts).unwrap(),
        ip("198.51.100.7")
    );
}

#[test]
fn garbage_in_the_walked_hops_falls_back_to_the_peer() {
    // B8: garbage falls back to the peer, never to a shared or chosen key.
    let client_ip = behind_proxies();
    for lines in [
        &["garbage"][..],
        &["203.0.113.9, garbage"],
        &["203.0.113.9, unknown, 10.1.1.1"],
        &["203.0.113.9", "10.1.1.1:99999"],
        &["1.2.3"],
        &["203.0.113.9, [2001:db8::1"],
        &[""],
        &[" , "],
    ] {
        let headers: Vec<_> = lines.iter().map(|l| ("x-forwarded-for", *l)).collect();
        let parts = request("10.0.0.2:1", &headers);
        assert_eq!(client_ip.resolve(&parts), Some(ip("10.0.0.2")), "{lines:?}");
    }
}

#[test]
fn non_utf8_hops_left_of_the_client_do_not_matter() {
    // B8: bytes the client controls cannot knock the walk over to the peer.
    let client_ip = behind_proxies();
    let mut parts = request("10.0.0.2:1", &[]);
    parts.headers.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").unwrap(),
    );
    assert_eq!(client_ip.resolve(&parts), Some(ip("203.0.113.9")));
}

#[test]
fn forwarded_is_walked_when_configured() {
    // B8: RFC 7239, quoted IPv6 with ports, several elements and lines.
    let client_ip = behind_rfc7239_proxies();
    let table: &[(&[&str], &str)] = &[
        (&["for=203.0.113.9"], "203.0.113.9"),
        (&["for=203.0.113.9;proto=https;by=10.0.0.2"], "203.0.113.9"),
        (&[r#"for="[2001:db8:cafe::17]:4711""#], "2001:db8:cafe::17"),
        (&[r#"for="203.0.113.9:47011", for=10.1.1.1"#], "203.0.113.9"),
        (&["For=6.6.6.6, for=203.0.113.9; proto=http"], "203.0.113.9"),
        (
            &["for=6.6.6.6", "for=203.0.113.9", "for=10.1.1.1"],
            "203.0.113.9",
        ),
        (&["for=10.3.3.3, for=10.1.1.1"], "10.3.3.3"),
        (
            &[r#"for=unknown, for="_gazonk", for=203.0.113.9"#],
            "203.0.113.9",
        ),
    ];
    for (lines, expected) in table {
        let headers: Vec<_> = lines.iter().map(|l| ("forwarded", *l)).collect();
        let parts = request("10.0.0.2:1", &headers);
        assert_eq!(client_ip.resolve(&parts), Some(ip(expected)), "{lines:?}");
    }
}

#[test]
fn unknown_or_obfuscated_forwarded_nodes_fall_back_to_the_peer() {
    // B8: `unknown` and obfuscated identifiers are not addresses.
    let client_ip = behind_rfc7239_proxies();
    for line in [
        "for=unknown",
        r#"for="_gazonk""#,
        "for=203.0.113.9, for=_hidden",
        "proto=https",
        "for=203.0.113.9;for=10.1.1.1",
        r#"for="[2001:db8::1]:4711"#,
        "for",
    ] {
        let parts = request("10.0.0.2:1", &[("forwarded", line)]);
        assert_eq!(client_ip.resolve(&parts), Some(ip("10.0.0.2")), "{line:?}");
    }
}

#[test]
fn the_default_configuration_never_reads_forwarded() {
    // B8: X-Forwarded-For is the default; a header the configuration does not
    // name is never read, even from a trusted proxy.
    let client_ip = behind_proxies();
    for headers in [
        vec![("forwarded", "for=203.0.113.9")],
        vec![("forwarded", "for=203.0.113.9"), ("x-forwarded-for", "")],
        vec![
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-for", "junk"),
        ],
    ] {
        let parts = request("10.0.0.2:1", &headers);
        assert_eq!(
            client_ip.resolve(&parts),
            Some(ip("10.0.0.2")),
            "{headers:?}"
        );
    }
    let parts = request(
        "10.0.0.2:1",
        &[
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    );
    assert_eq!(client_ip.resolve(&parts), Some(ip("203.0.113.9")));
}

#[test]
fn a_forwarded_proxy_ignores_the_x_forwarded_for_a_client_sends() {
    // B8: the trusted proxy writes only `Forwarded` and passes the client's
    // own X-Forwarded-For through; the client can neither pick a fresh key
    // nor name a victim's address, nor become the proxy with an empty header.
    let client_ip = behind_rfc7239_proxies();
    for spoofed in [
        "6.6.6.6",
        "198.51.100.200, 6.6.6.6",
        "10.1.1.1",
        "",
        " , ",
        "junk",
    ] {
        let parts = request(
            "10.0.0.2:1",
            &[
                ("x-forwarded-for", spoofed),
                ("forwarded", "for=203.0.113.9;proto=https"),
            ],
        );
        assert_eq!(
            client_ip.resolve(&parts),
            Some(ip("203.0.113.9")),
            "{spoofed:?}"
        );
        assert_eq!(client_ip.extract(&parts).unwrap(), ip("203.0.113.9"));
    }
    // Without the header it was told to read, the proxy is the client.
    let parts = request("10.0.0.2:1", &[("x-forwarded-for", "6.6.6.6")]);
    assert_eq!(client_ip.resolve(&parts), Some(ip("10.0.0.2")));
}

#[test]
fn a_trusted_proxy_without_the_configured_header_is_the_client_and_logged_once() {
    // B8: fall back to the peer, and tell the operator once, not per request.
    let logs = support::logs::capture();
    // A peer no other test uses, so that its lines can be counted.
    let peer = "10.77.0.1";
    let warnings = || {
        logs.text()
            .lines()
            .filter(|line| line.contains("WARN") && line.contains(&format!("proxy {peer} ")))
            .count()
    };
    let client_ip = behind_proxies();
    for headers in [
        vec![],
        vec![("x-forwarded-for", "unknown")],
        vec![("forwarded", "for=203.0.113.9")],
    ] {
        let parts = request(&format!("{peer}:1"), &headers);
        assert_eq!(client_ip.resolve(&parts), Some(ip(peer)), "{headers:?}");
        assert_eq!(client_ip.clone().extract(&parts).unwrap(), ip(peer));
    }
    assert_eq!(warnings(), 1, "{}", logs.text());
    let line = logs
        .text()
        .lines()
        .find(|line| line.contains(&format!("proxy {peer} ")))
        .unwrap()
        .to_owned();
    assert!(line.contains("x-forwarded-for"), "{line}");
    assert!(line.contains("forwarded_header"), "{line}");
}

#[test]
fn mapped_ipv4_ports_and_zones_make_one_key() {
    // B9: `::ffff:1.2.3.4` is `1.2.3.4`; ports and zones are dropped.
    let client_ip = behind_proxies();
    let mut keys: HashSet<IpAddr> = [
        request("1.2.3.4:1", &[]),
        request("1.2.3.4:65000", &[]),
        request("[::ffff:1.2.3.4]:80", &[]),
        request("10.0.0.2:1", &[("x-forwarded-for", "::ffff:1.2.3.4")]),
        request("10.0.0.2:1", &[("x-forwarded-for", "1.2.3.4:8080")]),
    ]
    .iter()
    .map(|parts| client_ip.extract(parts).unwrap())
    .collect();
    let forwarded = request(
        "10.0.0.2:1",
        &[("forwarded", r#"for="[::ffff:1.2.3.4]:1""#)],
    );
    keys.insert(behind_rfc7239_proxies().extract(&forwarded).unwrap());
    assert_eq!(keys, HashSet::from([ip("1.2.3.4")]));
    assert_eq!(
        client_ip.peer(&request("[::ffff:1.2.3.4]:80", &[])),
        Some(ip("1.2.3.4"))
    );
}

#[test]
fn one_slash_64_is_one_key() {
    // B9: 65,536 addresses in one /64 are one client.
    let client_ip = ClientIp::new();
    let base = u128::from("2001:db8:1:2::".parse::<Ipv6Addr>().unwrap());
    let keys: HashSet<IpAddr> = (0..65_536u128)
        .map(|i| {
            // spread the addresses over the whole interface identifier
            let addr = Ipv6Addr::from(base | (i << 48) | (i * 0x1_0001));
            let parts = request(&format!("[{addr}]:443"), &[]);
            client_ip.extract(&parts).unwrap()
        })
        .collect();
    assert_eq!(keys, HashSet::from([ip("2001:db8:1:2::")]));

    // the neighbouring /64 is another client
    let other = request("[2001:db8:1:3::1]:443", &[]);
    assert_eq!(client_ip.extract(&other).unwrap(), ip("2001:db8:1:3::"));
}

#[test]
fn prefixes_can_be_changed() {
    // B9
    let client_ip = ClientIp::builder()
        .ipv6_prefix(48)
        .ipv4_prefix(24)
        .build()
        .unwrap();
    assert_eq!(client_ip.key(ip("2001:db8:1:2::9")), ip("2001:db8:1::"));
    assert_eq!(client_ip.key(ip("198.51.100.77")), ip("198.51.100.0"));
    assert_eq!(
        ClientIp::new().key(ip("198.51.100.77")),
        ip("198.51.100.77")
    );
    assert_eq!(
        ClientIp::builder()
            .ipv6_prefix(128)
            .build()
            .unwrap()
            .key(ip("2001:db8::9")),
        ip("2001:db8::9")
    );
}

#[test]
fn out_of_range_prefixes_are_refused() {
    for bits in [0, 129, 255] {
        assert!(matches!(
            ClientIp::builder().ipv6_prefix(bits).build(),
            Err(ConfigError::OutOfRange {
                setting: "ipv6_prefix",
                ..
            })
        ));
    }
    for bits in [0, 33] {
        assert!(matches!(
            ClientIp::builder().ipv4_prefix(bits).build(),
            Err(ConfigError::OutOfRange {
                setting: "ipv4_prefix",
                ..
            })
        ));
    }
}

#[test]
fn invalid_cidrs_are_refused() {
    for cidr in [
        "",
        "garbage",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.1.2.3/8",
        "fd00::/129",
        "fd00::1/8",
        "10.0.0.0/8 junk",
        "::ffff:10.1.0.0/104",
    ] {
        assert_eq!(
            ClientIp::builder()
                .trust_proxies([cidr])
                .build()
                .unwrap_err(),
            ConfigError::InvalidCidr(cidr.to_owned()),
            "{cidr:?}"
        );
    }
}

#[test]
fn trusting_more_proxies_adds_to_the_list() {
    let client_ip = ClientIp::builder()
        .trust_proxies(["10.0.0.0/8"])
        .trust_proxies(vec![String::from("::ffff:172.16.0.0/108")])
        .build()
        .unwrap();
    for peer in ["10.0.0.2:1", "172.16.0.9:1", "[::ffff:172.16.0.9]:1"] {
        let parts = request(peer, &[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_ip.resolve(&parts), Some(ip("203.0.113.9")), "{peer}");
    }
    let debug = format!("{client_ip:?}");
    assert!(
        debug.contains("10.0.0.0/8") && debug.contains("::ffff:172.16.0.0/108"),
        "{debug}"
    );
}

#[test]
fn no_socket_peer_is_refused_not_shared() {
    // B10: without connect info there is no key.
    let parts = request("", &[("x-forwarded-for", "203.0.113.9")]);
    let client_ip = behind_proxies();
    assert_eq!(client_ip.peer(&parts), None);
    assert_eq!(client_ip.resolve(&parts), None);
    let rejection = client_ip.extract(&parts).unwrap_err();
    assert_eq!(rejection.kind(), RejectionKind::NoClientAddress);
}

#[test]
fn the_fix_for_a_missing_peer_goes_to_the_log_not_to_clients() {
    // B10: the server's log says how to serve with connect info; HTTP and
    // gRPC clients only learn that the server cannot identify them.
    let logs = support::logs::capture();
    let rejection = ClientIp::new().extract(&request("", &[])).unwrap_err();
    assert_eq!(rejection.kind(), RejectionKind::NoClientAddress);

    let http = request("", &[]);
    let grpc = request("", &[("content-type", "application/grpc")]);
    let http = DefaultRenderer::new().render(&rejection, &http);
    let grpc = DefaultRenderer::new().render(&rejection, &grpc);
    assert_eq!(http.status(), 500);
    assert_eq!(grpc.headers()["grpc-status"], "13");
    let body = std::str::from_utf8(http.body()).unwrap();
    let message = grpc.headers()["grpc-message"].to_str().unwrap();
    for answer in [body, message] {
        assert_eq!(answer, "the server cannot identify the client");
    }

    let logged = logs.text();
    let line = logged
        .lines()
        .find(|line| line.contains("WARN") && line.contains("connect info"))
        .unwrap_or_else(|| panic!("no warning with the fix in {logged}"));
    for fix in ["into_make_service_with_connect_info", "tonic", "PeerAddr"] {
        assert!(line.contains(fix), "{line}");
    }
}

#[cfg(feature = "axum")]
#[test]
fn axum_connect_info_is_the_peer() {
    // B8
    let peer: SocketAddr = "198.51.100.7:1".parse().unwrap();
    let (parts, ()) = Request::builder()
        .extension(axum::extract::ConnectInfo(peer))
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(ClientIp::new().peer(&parts), Some(peer.ip()));
    assert_eq!(ClientIp::new().extract(&parts).unwrap(), peer.ip());
}

#[cfg(feature = "axum")]
#[test]
fn a_peer_addr_the_server_inserts_wins_over_axum_connect_info() {
    // B8: `PeerAddr` comes first, on the key path too.
    let connect_info: SocketAddr = "10.0.0.2:1".parse().unwrap();
    let peer: SocketAddr = "198.51.100.7:1".parse().unwrap();
    let (parts, ()) = Request::builder()
        .extension(axum::extract::ConnectInfo(connect_info))
        .extension(PeerAddr(peer))
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(ClientIp::new().peer(&parts), Some(peer.ip()));
    assert_eq!(ClientIp::new().extract(&parts).unwrap(), peer.ip());
}

#[cfg(feature = "tonic")]
#[test]
fn tonic_connect_info_is_the_peer() {
    // B8
    let peer: SocketAddr = "198.51.100.7:1".parse().unwrap();
    let info = tonic::transport::server::TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(peer),
    };
    let (parts, ()) = Request::builder()
        .extension(info)
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(ClientIp::new().peer(&parts), Some(peer.ip()));
}

#[test]
fn peer_addr_wins_over_framework_connect_info() {
    let peer: SocketAddr = "198.51.100.7:1".parse().unwrap();
    let other: SocketAddr = "203.0.113.1:1".parse().unwrap();
    let builder = Request::builder().extension(PeerAddr(peer));
    #[cfg(feature = "axum")]
    let builder = builder.extension(axum::extract::ConnectInfo(other));
    #[cfg(feature = "tonic")]
    let builder = builder.extension(tonic::transport::server::TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(other),
    });
    let _ = other;
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    assert_eq!(ClientIp::new().peer(&parts), Some(peer.ip()));
}

fn header_line() -> impl Strategy<Value = HeaderValue> {
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // mostly address-like bytes, to reach deep into the parsers
        proptest::collection::vec(
            proptest::sample::select(b"0123456789abcdef:.[]%,;=\" _fForunkw".to_vec()),
            0..64
        ),
    ];
    bytes.prop_filter_map("not a field value", |b| HeaderValue::from_bytes(&b).ok())
}

proptest! {
    #[test]
    fn arbitrary_forwarding_headers_never_panic(
        xff in proptest::collection::vec(header_line(), 0..4),
        fwd in proptest::collection::vec(header_line(), 0..4),
        trusted_peer in any::<bool>(),
        rfc7239 in any::<bool>(),
    ) {
        // R2: any bytes resolve to some address; B8: an untrusted peer is always the client.
        let peer = if trusted_peer { "10.0.0.2:1" } else { "198.51.100.7:1" };
        let mut parts = request(peer, &[]);
        for line in xff {
            parts.headers.append("x-forwarded-for", line);
        }
        for line in fwd {
            parts.headers.append("forwarded", line);
        }
        let client_ip = if rfc7239 { behind_rfc7239_proxies() } else { behind_proxies() };
        let resolved = client_ip.resolve(&parts);
        prop_assert!(resolved.is_some());
        prop_assert!(client_ip.extract(&parts).is_ok());
        if !trusted_peer {
            prop_assert_eq!(resolved, Some(ip("198.51.100.7")));
        }
    }

    #[test]
    fn whatever_the_client_prepends_the_proxy_appended_address_wins(
        prefix in header_line(),
        forwarded in any::<bool>(),
    ) {
        // B8: a trusted proxy appends the address it saw; the client's own
        // bytes lose, and so does the header the proxy does not write.
        let (client_ip, name, other, appended): (_, _, _, &[u8]) = if forwarded {
            (behind_rfc7239_proxies(), "forwarded", "x-forwarded-for", b", for=203.0.113.9")
        } else {
            (behind_proxies(), "x-forwarded-for", "forwarded", b", 203.0.113.9")
        };
        let line = [prefix.as_bytes(), appended].concat();
        let mut parts = request("10.0.0.2:1", &[]);
        parts.headers.insert(name, HeaderValue::from_bytes(&line).unwrap());
        parts.headers.insert(other, prefix);
        prop_assert_eq!(client_ip.resolve(&parts), Some(ip("203.0.113.9")));
    }
}
