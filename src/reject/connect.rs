//! Connect answers ([Connect protocol](https://connectrpc.com/docs/protocol/)).
//!
//! - Unary calls: the HTTP status of the error code
//!   ([error codes](https://connectrpc.com/docs/protocol/#error-codes)),
//!   `content-type: application/json` and the error as the body:
//!   `{"code":"unauthenticated","message":"…"}`. The response is still an
//!   HTTP one, so 401, 400 and 403 keep their `WWW-Authenticate` challenge.
//! - Streaming calls (`application/connect+proto`, `+json`): HTTP 200 in the
//!   request's content type, and one enveloped message, the end of the
//!   stream: flag byte `0x02`, a 4-byte big-endian length, and
//!   `{"error":{"code":…,"message":…}}`
//!   ([EndStreamResponse](https://connectrpc.com/docs/protocol/#error-end-stream)).

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header, request::Parts};

use super::{AuthRejection, RejectionKind, challenge::Challenges, insert_retry_after};

/// The flag byte of an end-of-stream message.
const END_STREAM: u8 = 0x02;

/// The Connect code of a rejection and the HTTP status the protocol pairs
/// with it.
fn code(kind: RejectionKind) -> (&'static str, StatusCode) {
    use RejectionKind as K;
    match kind {
        K::Missing | K::Invalid | K::Revoked | K::Expired => {
            ("unauthenticated", StatusCode::UNAUTHORIZED)
        }
        // The credential is unusable whatever the server's state; the
        // challenge still says `invalid_request`.
        K::Malformed | K::Ambiguous | K::TooLarge => ("invalid_argument", StatusCode::BAD_REQUEST),
        K::InsufficientScope => ("permission_denied", StatusCode::FORBIDDEN),
        K::LockedOut | K::RateLimited => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
        K::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        K::NoClientAddress => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        K::CrossOrigin | K::Denied => ("permission_denied", StatusCode::FORBIDDEN),
        // Connect pairs `resource_exhausted` with 429; the body was too
        // large, so the status says so.
        K::BodyTooLarge => ("resource_exhausted", StatusCode::PAYLOAD_TOO_LARGE),
        K::MalformedBody => ("invalid_argument", StatusCode::BAD_REQUEST),
    }
}

/// `{"code":"…","message":"…"}`.
fn error_json(out: &mut BytesMut, kind: RejectionKind, message: &str) {
    out.put_slice(br#"{"code":""#);
    out.put_slice(code(kind).0.as_bytes());
    out.put_slice(br#"","message":""#);
    json_escape(out, message);
    out.put_slice(br#""}"#);
}

/// A unary Connect error.
pub(super) fn unary(rejection: &AuthRejection, challenges: &Challenges) -> Response<Bytes> {
    let mut body = BytesMut::new();
    error_json(&mut body, rejection.kind(), rejection.message());
    let mut res = Response::new(body.freeze());
    *res.status_mut() = code(rejection.kind()).1;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(challenge) = challenges.challenge(rejection) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    insert_retry_after(headers, rejection);
    res
}

/// A streaming Connect response that is only its end: HTTP 200 and one
/// end-of-stream message holding the error.
pub(super) fn streaming(rejection: &AuthRejection, request: &Parts) -> Response<Bytes> {
    let mut res = Response::new(end_of_stream(rejection.kind(), rejection.message()));
    let headers = res.headers_mut();
    // The client checks that the answer is in its own codec (`+proto` or
    // `+json`); detection made sure this is a Connect streaming type.
    let content_type = request.headers.get(header::CONTENT_TYPE).cloned();
    headers.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/connect+json")),
    );
    insert_retry_after(headers, rejection);
    res
}

/// The end-of-stream message of a Connect stream that ends with `kind`'s
/// error: flag `0x02`, the length, `{"error":{"code":…,"message":…}}`.
pub(crate) fn end_of_stream(kind: RejectionKind, text: &str) -> Bytes {
    let mut message = BytesMut::new();
    message.put_slice(br#"{"error":"#);
    error_json(&mut message, kind, text);
    message.put_u8(b'}');
    let mut body = BytesMut::with_capacity(5 + message.len());
    body.put_u8(END_STREAM);
    body.put_u32(u32::try_from(message.len()).expect("a fixed message is short"));
    body.put_slice(&message);
    body.freeze()
}

/// Appends `s` as the inside of a JSON string (RFC 8259 §7). The crate's
/// messages are fixed ASCII; this keeps any message valid JSON without a
/// JSON library in the core.
fn json_escape(out: &mut BytesMut, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.put_slice(br#"\""#),
            '\\' => out.put_slice(br"\\"),
            c if u32::from(c) < 0x20 => {
                out.put_slice(format!("\\u{:04x}", u32::from(c)).as_bytes())
            }
            c => {
                let mut buf = [0; 4];
                out.put_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = BytesMut::new();
        json_escape(&mut out, "a\"b\\c\nd\u{e9}");
        assert_eq!(&out[..], "a\\\"b\\\\c\\u000ad\u{e9}".as_bytes());
    }
}
