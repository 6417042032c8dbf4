//! gRPC answers: trailers-only responses
//! ([gRPC over HTTP/2](https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md#responses)).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, header};

use super::{AuthRejection, RejectionKind, insert_retry_after};

pub(super) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(super) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status code of a rejection.
pub(super) fn code(kind: RejectionKind) -> u16 {
    use RejectionKind as K;
    match kind {
        K::InsufficientScope | K::CrossOrigin | K::Denied => 7, // PERMISSION_DENIED
        K::LockedOut | K::RateLimited | K::BodyTooLarge => 8,   // RESOURCE_EXHAUSTED
        K::MalformedBody => 3,                                  // INVALID_ARGUMENT
        K::NoClientAddress => 13,                               // INTERNAL
        K::Unavailable => 14,                                   // UNAVAILABLE
        _ => 16,                                                // UNAUTHENTICATED
    }
}

/// The `grpc-status` and percent-encoded `grpc-message` of a rejection.
pub(super) fn status_message(rejection: &AuthRejection) -> (HeaderValue, HeaderValue) {
    let message = HeaderValue::try_from(percent_encode(rejection.message()))
        .expect("percent-encoding leaves only visible ASCII");
    (HeaderValue::from(code(rejection.kind())), message)
}

/// Adds the status trailers (sent in the head: trailers-only) and
/// `Retry-After`.
pub(super) fn insert_status(headers: &mut HeaderMap, rejection: &AuthRejection) {
    let (status, message) = status_message(rejection);
    headers.insert(GRPC_STATUS, status);
    headers.insert(GRPC_MESSAGE, message);
    insert_retry_after(headers, rejection);
}

/// A trailers-only gRPC response: HTTP 200, `content-type:
/// application/grpc`, the status in the head and an empty body.
pub(super) fn render(rejection: &AuthRejection) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    insert_status(headers, rejection);
    res
}

/// Percent-encodes a `grpc-message` as the gRPC spec requires: every byte
/// outside `0x20..=0x7E`, and `%` itself.
pub(crate) fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("50% off\n"), "50%25 off%0A");
        assert_eq!(percent_encode("caf\u{e9}"), "caf%C3%A9");
    }
}
