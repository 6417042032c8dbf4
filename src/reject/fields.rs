//! The structured `RateLimit` field of the IETF draft
//! ([draft-ietf-httpapi-ratelimit-headers-10](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/)),
//! which the rate limiter sends with every response and the lockout with
//! its refusals.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, request::Parts};

use super::{AuthRejection, RejectionKind, Renderer, retry_after_secs};

/// The structured `RateLimit` field.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `"NAME";r=REMAINING;t=NEXT` (`t` left out when `next` is `None`).
pub(crate) fn service_limit(name: &str, remaining: u32, next: Option<u64>) -> HeaderValue {
    let value = match next {
        Some(next) => format!("{name};r={remaining};t={next}"),
        None => format!("{name};r={remaining}"),
    };
    HeaderValue::try_from(value).expect("the name is a checked structured-field string")
}

/// The lockout's renderer: adds `RateLimit: "lockout";r=0;t=SECONDS` to
/// its 429s (a lockout, or a key with too many requests waiting), `t` equal
/// to `Retry-After`.
///
/// No `RateLimit-Policy` goes with it: the lockout's quota is failed
/// attempts, which none of the draft's quota units (requests, content
/// bytes, concurrent requests) can express.
pub(crate) struct LockoutFields<R: ?Sized>(pub(crate) Arc<R>);

impl<R: Renderer + ?Sized> Renderer for LockoutFields<R> {
    fn render(&self, rejection: &AuthRejection, request: &Parts) -> Response<Bytes> {
        let mut response = self.0.render(rejection, request);
        if let RejectionKind::LockedOut | RejectionKind::RateLimited = rejection.kind() {
            let retry_after = rejection.retry_after().unwrap_or(Duration::ZERO);
            response.headers_mut().insert(
                RATELIMIT,
                service_limit("\"lockout\"", 0, Some(retry_after_secs(retry_after))),
            );
        }
        response
    }
}

/// `s` as an RFC 9651 String (`"…"`, with `"` and `\` escaped), or `None`
/// when it holds a character a String cannot carry.
pub(crate) fn sf_string(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => return None,
        }
    }
    out.push('"');
    Some(out)
}
