//! HTTP answers: RFC 6750 `WWW-Authenticate` challenges and RFC 9110
//! statuses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::{AuthRejection, RejectionKind, insert_retry_after};

/// The `Bearer` challenges of one realm, built once.
pub(super) struct Challenges {
    pub(super) realm: String,
    missing: HeaderValue,
    invalid_request: HeaderValue,
    ambiguous: HeaderValue,
    invalid_token: HeaderValue,
    expired: HeaderValue,
    /// `invalid_token` for a refresh token.
    invalid_refresh: HeaderValue,
}

impl Challenges {
    /// The challenges for `realm`; characters a quoted string cannot carry
    /// are dropped.
    pub(super) fn new(realm: &str) -> Self {
        let realm = quoted(realm);
        let challenge = |params: &[(&str, &str)]| {
            let mut value = format!("Bearer realm={realm}");
            for (name, v) in params {
                value.push_str(&format!(", {name}={}", quoted(v)));
            }
            HeaderValue::try_from(value).expect("quoted() keeps only visible ASCII and spaces")
        };
        Self {
            missing: challenge(&[]),
            invalid_request: challenge(&[
                ("error", "invalid_request"),
                ("error_description", RejectionKind::Malformed.message()),
            ]),
            ambiguous: challenge(&[
                ("error", "invalid_request"),
                ("error_description", RejectionKind::Ambiguous.message()),
            ]),
            invalid_token: challenge(&[
                ("error", "invalid_token"),
                ("error_description", RejectionKind::Invalid.message()),
            ]),
            expired: challenge(&[
                ("error", "invalid_token"),
                ("error_description", RejectionKind::Expired.message()),
            ]),
            invalid_refresh: challenge(&[
                ("error", "invalid_token"),
                (
                    "error_description",
                    AuthRejection::new(RejectionKind::Invalid)
                        .refresh_token()
                        .message(),
                ),
            ]),
            realm,
        }
    }

    fn insufficient_scope(&self, scope: &str) -> HeaderValue {
        let value = format!(
            "Bearer realm={}, error=\"insufficient_scope\", error_description={}, scope={}",
            self.realm,
            quoted(RejectionKind::InsufficientScope.message()),
            quoted(scope),
        );
        HeaderValue::try_from(value).expect("quoted() keeps only visible ASCII and spaces")
    }

    /// The `WWW-Authenticate` challenge for `rejection`, if it has one
    /// (RFC 6750 §3: `error` only when a credential was presented).
    pub(super) fn challenge(&self, rejection: &AuthRejection) -> Option<HeaderValue> {
        use RejectionKind as K;
        match rejection.kind() {
            K::Missing => Some(self.missing.clone()),
            K::Malformed => Some(self.invalid_request.clone()),
            K::Ambiguous => Some(self.ambiguous.clone()),
            K::Invalid | K::Revoked if rejection.is_refresh_token() => {
                Some(self.invalid_refresh.clone())
            }
            K::Invalid | K::Revoked => Some(self.invalid_token.clone()),
            K::Expired => Some(self.expired.clone()),
            K::InsufficientScope => {
                Some(self.insufficient_scope(rejection.required_scope().unwrap_or("")))
            }
            _ => None,
        }
    }

    /// The plain HTTP answer: the status, the challenge, `Retry-After` and
    /// a short `text/plain` body.
    pub(super) fn render(&self, rejection: &AuthRejection) -> Response<Bytes> {
        let kind = rejection.kind();
        let mut res = Response::new(Bytes::from_static(rejection.message().as_bytes()));
        *res.status_mut() = status(kind);
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(challenge) = self.challenge(rejection) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        insert_retry_after(headers, rejection);
        res
    }
}

/// The HTTP status of a rejection (RFC 6750 §3.1, RFC 9110, RFC 6585).
pub(super) fn status(kind: RejectionKind) -> StatusCode {
    use RejectionKind as K;
    match kind {
        K::Missing | K::Invalid | K::Revoked | K::Expired => StatusCode::UNAUTHORIZED,
        K::Malformed | K::Ambiguous => StatusCode::BAD_REQUEST,
        K::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        K::InsufficientScope => StatusCode::FORBIDDEN,
        K::LockedOut | K::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        K::NoClientAddress => StatusCode::INTERNAL_SERVER_ERROR,
        K::CrossOrigin | K::Denied => StatusCode::FORBIDDEN,
        K::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        K::MalformedBody => StatusCode::BAD_REQUEST,
    }
}

/// Renders `s` as an RFC 9110 quoted-string, escaping `"` and `\` and
/// dropping bytes a quoted-string cannot carry.
pub(super) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '\t' | '!'..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_escapes_quotes_and_backslashes_and_drops_controls() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("x\r\ny\u{e9}"), r#""xy""#);
    }
}
