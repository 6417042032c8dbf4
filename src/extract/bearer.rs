use http::{HeaderMap, header::AUTHORIZATION};

use super::{
    ExtractError,
    syntax::{is_b64token, trim_ows},
};

/// `Authorization: Bearer <token>` (RFC 6750 §2.1).
///
/// - The scheme is case-insensitive, the token case-sensitive.
/// - One or more spaces separate them; a tab there is malformed, optional
///   whitespace at either end of the field is ignored.
/// - The token must be a `b64token`; anything else is malformed (400).
/// - Another scheme (`Basic …`) is not a bearer credential: the source
///   reports none.
/// - Two `Authorization` field lines are ambiguous, whatever they hold.
///
/// # Example
///
/// ```
/// use http::{Request, header::AUTHORIZATION};
/// use portcullis::extract::{Bearer, Extractor};
///
/// let extractor = Extractor::new(Bearer::new());
/// let (parts, ()) = Request::builder()
///     .header(AUTHORIZATION, "bEaReR   abc.def")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "abc.def");
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Bearer {}

impl Bearer {
    /// The `Authorization: Bearer` source.
    pub fn new() -> Self {
        Self {}
    }

    pub(super) fn find<'a>(
        &self,
        headers: &'a HeaderMap,
        max_len: usize,
    ) -> Result<Option<&'a str>, ExtractError> {
        let mut fields = headers.get_all(AUTHORIZATION).iter();
        let Some(field) = fields.next() else {
            return Ok(None);
        };
        if fields.next().is_some() {
            return Err(ExtractError::Ambiguous);
        }
        parse(field.as_bytes(), max_len)
    }
}

/// Parses one `Authorization` field value.
pub(super) fn parse(value: &[u8], max_len: usize) -> Result<Option<&str>, ExtractError> {
    let value = trim_ows(value);
    let scheme_end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let rest = &value[scheme_end..];
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if token_start == 0 || token_start == rest.len() {
        return Err(ExtractError::Malformed(if rest.first() == Some(&b'\t') {
            "a tab separates the bearer scheme from the token"
        } else {
            "the bearer scheme has no token"
        }));
    }
    let token = &rest[token_start..];
    if token.len() > max_len {
        return Err(ExtractError::TooLarge { max: max_len });
    }
    if !is_b64token(token) {
        return Err(ExtractError::Malformed(
            "the bearer token is not a b64token",
        ));
    }
    // b64token is ASCII, so this never fails.
    Ok(std::str::from_utf8(token).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    // P1, P2, P3, P6
    #[test]
    fn parses_per_rfc_6750() {
        fn ok(v: &str) -> Result<Option<&str>, ExtractError> {
            parse(v.as_bytes(), 8192)
        }
        assert_eq!(ok("Bearer abc"), Ok(Some("abc")));
        assert_eq!(ok("bearer abc"), Ok(Some("abc")));
        assert_eq!(ok("BEARER abc=="), Ok(Some("abc==")));
        assert_eq!(ok("Bearer   abc"), Ok(Some("abc")));
        assert_eq!(ok("  Bearer abc \t"), Ok(Some("abc")));
        assert_eq!(ok("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(ok("Bearerabc"), Ok(None));
        assert!(ok("Bearer\tabc").is_err());
        assert!(ok("Bearer").is_err());
        assert!(ok("Bearer ").is_err());
        assert!(ok("Bearer a b").is_err());
        assert!(ok("Bearer a,b").is_err());
        assert!(ok("Bearer =abc").is_err());
        assert!(ok("Bearer ab=c").is_err());
        assert_eq!(
            parse(b"Bearer abcdef", 5),
            Err(ExtractError::TooLarge { max: 5 })
        );
    }
}
