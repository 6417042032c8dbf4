//! Which RPC protocol a request speaks, from its head.

use http::{HeaderMap, Method, header, request::Parts};

/// The protocol a request speaks, which decides how its rejection is
/// encoded.
///
/// Read from the request head only ([`Protocol::of`]):
///
/// | request | protocol |
/// |---|---|
/// | `content-type: application/grpc-web-text` (or `-text+proto`, …) | [`GrpcWebText`](Self::GrpcWebText) |
/// | `content-type: application/grpc-web` (or `+proto`, `+json`, …) | [`GrpcWeb`](Self::GrpcWeb) |
/// | `content-type: application/grpc` (or `+proto`, …) | [`Grpc`](Self::Grpc) |
/// | `content-type: application/connect+proto` (or `+json`, …) | [`ConnectStreaming`](Self::ConnectStreaming) |
/// | `connect-protocol-version: 1`, or a `GET` whose query has `connect=v1` | [`ConnectUnary`](Self::ConnectUnary) |
/// | anything else | [`Http`](Self::Http) |
///
/// Media types compare case-insensitively. A unary Connect call without
/// `connect-protocol-version` (which Connect clients send, and the
/// [Connect protocol](https://connectrpc.com/docs/protocol/#unary-request)
/// tells them to) cannot be told from a plain JSON request and is answered
/// as HTTP.
///
/// # Example
///
/// ```
/// use http::Request;
/// use portcullis::reject::Protocol;
///
/// let head = |name: &str, value: &str| {
///     Request::post("/acme.v1.Users/Get").header(name, value).body(()).unwrap().into_parts().0
/// };
/// assert_eq!(Protocol::of(&head("content-type", "application/grpc+proto")), Protocol::Grpc);
/// assert_eq!(Protocol::of(&head("content-type", "application/grpc-web+proto")), Protocol::GrpcWeb);
/// assert_eq!(Protocol::of(&head("content-type", "application/grpc-web-text")), Protocol::GrpcWebText);
/// assert_eq!(Protocol::of(&head("content-type", "application/connect+json")), Protocol::ConnectStreaming);
/// assert_eq!(Protocol::of(&head("connect-protocol-version", "1")), Protocol::ConnectUnary);
/// assert_eq!(Protocol::of(&head("content-type", "application/json")), Protocol::Http);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP: RFC 6750 challenges.
    Http,
    /// gRPC over HTTP/2: trailers-only responses.
    Grpc,
    /// gRPC-Web with binary bodies.
    GrpcWeb,
    /// gRPC-Web with base64-encoded bodies (`application/grpc-web-text`).
    GrpcWebText,
    /// A unary Connect call: the HTTP status carries the code, the body is a
    /// JSON error.
    ConnectUnary,
    /// A streaming Connect call: HTTP 200, the error is in the end-of-stream
    /// message.
    ConnectStreaming,
}

impl Protocol {
    /// The protocol of the request described by `request`.
    pub fn of(request: &Parts) -> Self {
        if let Some(protocol) = Self::from_content_type(&request.headers) {
            return protocol;
        }
        if request
            .headers
            .get(CONNECT_PROTOCOL_VERSION)
            .is_some_and(|v| v.as_bytes() == b"1")
            || (request.method == Method::GET && connect_get(request.uri.query()))
        {
            return Self::ConnectUnary;
        }
        Self::Http
    }

    /// The RPC protocol a `content-type` names, if any: enough for
    /// responses, whose content type says which encoding they use.
    pub(crate) fn from_content_type(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers.get(header::CONTENT_TYPE)?.as_bytes();
        if let Some(rest) = strip_prefix_ignore_case(content_type, b"application/grpc-web-text") {
            return subtype_ends(rest).then_some(Self::GrpcWebText);
        }
        if let Some(rest) = strip_prefix_ignore_case(content_type, b"application/grpc-web") {
            return subtype_ends(rest).then_some(Self::GrpcWeb);
        }
        if let Some(rest) = strip_prefix_ignore_case(content_type, b"application/grpc") {
            return subtype_ends(rest).then_some(Self::Grpc);
        }
        if strip_prefix_ignore_case(content_type, b"application/connect+").is_some() {
            return Some(Self::ConnectStreaming);
        }
        None
    }

    /// Whether statuses travel as gRPC trailers (`grpc-status`): gRPC and
    /// gRPC-Web.
    pub(crate) fn has_grpc_status(self) -> bool {
        matches!(self, Self::Grpc | Self::GrpcWeb | Self::GrpcWebText)
    }

    /// A short lowercase name (`http`, `grpc`, `grpc-web`, `grpc-web-text`,
    /// `connect`, `connect-streaming`), for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::GrpcWebText => "grpc-web-text",
            Self::ConnectUnary => "connect",
            Self::ConnectStreaming => "connect-streaming",
        }
    }
}

const CONNECT_PROTOCOL_VERSION: &str = "connect-protocol-version";

/// Whether a request with `content-type` `headers` is native gRPC
/// (`application/grpc`, optionally followed by `+format` or parameters).
///
/// gRPC-Web (`application/grpc-web…`) is not: its responses are encoded
/// differently; see [`Protocol`].
///
/// # Example
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
/// use portcullis::reject::is_grpc;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
/// assert!(is_grpc(&headers));
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc-web+proto"));
/// assert!(!is_grpc(&headers));
/// ```
pub fn is_grpc(headers: &HeaderMap) -> bool {
    Protocol::from_content_type(headers) == Some(Protocol::Grpc)
}

/// `value` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Whether a media subtype ends where `rest` starts: at the end, a
/// `+suffix`, or parameters.
fn subtype_ends(rest: &[u8]) -> bool {
    matches!(rest.first(), None | Some(b'+' | b';' | b' ' | b'\t'))
}

/// Whether a query names the Connect protocol (`connect=v1`), as unary
/// `GET` calls do.
fn connect_get(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair == "connect=v1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: &str, uri: &str, headers: &[(&str, &str)]) -> Protocol {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Protocol::of(&req.body(()).unwrap().into_parts().0)
    }

    #[test]
    fn content_types_name_the_rpc_protocols() {
        for (content_type, protocol) in [
            ("application/grpc", Protocol::Grpc),
            ("application/grpc+proto", Protocol::Grpc),
            ("Application/GRPC;charset=x", Protocol::Grpc),
            ("application/grpc-web", Protocol::GrpcWeb),
            ("application/grpc-web+proto", Protocol::GrpcWeb),
            ("application/grpc-web+json", Protocol::GrpcWeb),
            ("application/grpc-web-text", Protocol::GrpcWebText),
            ("application/grpc-web-text+proto", Protocol::GrpcWebText),
            ("application/connect+proto", Protocol::ConnectStreaming),
            ("application/connect+json", Protocol::ConnectStreaming),
            ("application/grpcx", Protocol::Http),
            ("application/grpc-webby", Protocol::Http),
            ("application/json", Protocol::Http),
            ("text/plain", Protocol::Http),
        ] {
            assert_eq!(
                of("POST", "/", &[("content-type", content_type)]),
                protocol,
                "{content_type}"
            );
        }
    }

    #[test]
    fn connect_unary_calls_are_named_by_version_header_or_get_query() {
        let json = ("content-type", "application/json");
        assert_eq!(
            of("POST", "/a.B/C", &[json, ("connect-protocol-version", "1")]),
            Protocol::ConnectUnary
        );
        assert_eq!(
            of("POST", "/a.B/C", &[json, ("connect-protocol-version", "2")]),
            Protocol::Http
        );
        assert_eq!(
            of("GET", "/a.B/C?message=%7B%7D&encoding=json&connect=v1", &[]),
            Protocol::ConnectUnary
        );
        assert_eq!(of("GET", "/a.B/C?notconnect=v1", &[]), Protocol::Http);
        assert_eq!(of("POST", "/a.B/C?connect=v1", &[]), Protocol::Http);
    }
}
