use std::ops::Range;

use http::{HeaderMap, header::AUTHORIZATION};

use super::{ExtractError, InHeader, syntax::B64TOKEN};

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
    ) -> Result<InHeader<'a>, ExtractError> {
        let field = if headers.len() == headers.keys_len() {
            // No field name is given twice in this request: one lookup.
            headers.get(AUTHORIZATION)
        } else {
            let mut fields = headers.get_all(AUTHORIZATION).iter();
            let field = fields.next();
            if field.is_some() && fields.next().is_some() {
                return Err(ExtractError::Ambiguous);
            }
            field
        };
        let Some(field) = field else {
            return Ok(None);
        };
        Ok(parse(field.as_bytes(), max_len)?.map(|token| (field, token)))
    }
}

/// Parses one `Authorization` field value: where its bearer token is.
///
/// One pass over the bytes on the way to an accepted token; the errors
/// look again to say which one it is.
pub(super) fn parse(value: &[u8], max_len: usize) -> Result<Option<Range<usize>>, ExtractError> {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let len = value.len();
    let scheme_start = value.iter().position(|b| !is_ows(b)).unwrap_or(len);
    let Some(scheme) = value.get(scheme_start..scheme_start + 6) else {
        return Ok(None);
    };
    if !is_bearer(scheme) {
        return Ok(None);
    }
    let after = scheme_start + 6;
    let no_token = ExtractError::Malformed("the bearer scheme has no token");
    match value.get(after) {
        Some(b' ') => {}
        // `Bearer` and optional whitespace.
        None => return Err(no_token),
        Some(b'\t') if value[after..].iter().all(is_ows) => return Err(no_token),
        Some(b'\t') => {
            return Err(ExtractError::Malformed(
                "a tab separates the bearer scheme from the token",
            ));
        }
        // Another scheme, such as `Bearerx`.
        Some(_) => return Ok(None),
    }
    let start = after
        + value[after..]
            .iter()
            .position(|&b| b != b' ')
            .unwrap_or(len - after);
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body_end = start + b64token_body_len(&value[start..]);
    let mut i = body_end;
    while i < len && value[i] == b'=' {
        i += 1;
    }
    let end = i;
    // Then optional whitespace to the end of the field.
    while i < len && is_ows(&value[i]) {
        i += 1;
    }
    if i == len && body_end > start {
        if end - start > max_len {
            return Err(ExtractError::TooLarge { max: max_len });
        }
        return Ok(Some(start..end));
    }
    // Not a token: what lies between the spaces and the trailing whitespace.
    let end = value.iter().rposition(|b| !is_ows(b)).map_or(0, |i| i + 1);
    if end <= start {
        return Err(no_token);
    }
    if end - start > max_len {
        return Err(ExtractError::TooLarge { max: max_len });
    }
    Err(ExtractError::Malformed(
        "the bearer token is not a b64token",
    ))
}

/// How many bytes at the start of `bytes` are `b64token` body characters.
/// Eight at a time without a branch per byte, then one at a time: this runs
/// over every token of every request.
fn b64token_body_len(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut len = 0;
    for chunk in &mut chunks {
        if !chunk
            .iter()
            .fold(true, |all, &b| all & B64TOKEN[usize::from(b)])
        {
            break;
        }
        len += 8;
    }
    len + bytes[len..]
        .iter()
        .position(|&b| !B64TOKEN[usize::from(b)])
        .unwrap_or(bytes.len() - len)
}

/// Whether `scheme` (six bytes) is `bearer` in any casing. A byte with bit
/// 0x20 set equals a lowercase letter only if it is that letter or its
/// uppercase, so setting it in every byte compares without case.
fn is_bearer(scheme: &[u8]) -> bool {
    let [b0, b1, b2, b3, b4, b5] = scheme else {
        return false;
    };
    let head = u32::from_le_bytes([*b0, *b1, *b2, *b3]) | 0x2020_2020;
    let tail = u16::from_le_bytes([*b4, *b5]) | 0x2020;
    head == u32::from_le_bytes(*b"bear") && tail == u16::from_le_bytes(*b"er")
}

#[cfg(test)]
mod tests {
    use super::*;

    // P1, P2, P3, P6
    #[test]
    fn parses_per_rfc_6750() {
        fn ok(v: &str) -> Result<Option<&str>, ExtractError> {
            parse(v.as_bytes(), 8192).map(|range| range.map(|range| &v[range]))
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
        assert_eq!(ok("Bearer abc=="), Ok(Some("abc==")));
        assert_eq!(ok("Bearer a==  \t "), Ok(Some("a==")));
        assert_eq!(ok("Bearer abc= ="), Err(not_b64token()));
        assert_eq!(ok("Bearer abc \t x"), Err(not_b64token()));
        assert_eq!(ok("Bearer \tabc"), Err(not_b64token()));
        assert_eq!(ok("Bearer =="), Err(not_b64token()));
        assert_eq!(ok("Bearer\t abc"), Err(tab()));
        assert_eq!(ok("Bearer\t"), Err(no_token()));
        assert_eq!(ok("Bearer \t "), Err(no_token()));
        assert_eq!(ok("Bearer,abc"), Ok(None));
        assert_eq!(ok("Beare"), Ok(None));
        assert_eq!(ok(" \t "), Ok(None));
        assert_eq!(ok(""), Ok(None));
        // The cap counts the token between the spaces and the trailing
        // whitespace, before its grammar is checked.
        assert_eq!(parse(b"Bearer abcde  ", 5), Ok(Some(7..12)));
        assert_eq!(
            parse(b"Bearer ab cd,", 5),
            Err(ExtractError::TooLarge { max: 5 })
        );
        assert_eq!(parse(b"Bearer ab c", 5), Err(not_b64token()));
    }

    // P2: every casing of the scheme, and nothing else that differs from
    // it only in bit 0x20.
    #[test]
    fn the_scheme_matches_in_every_casing_only() {
        for mask in 0..64u8 {
            let scheme: Vec<u8> = b"bearer"
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if mask >> i & 1 == 1 {
                        b.to_ascii_uppercase()
                    } else {
                        *b
                    }
                })
                .collect();
            assert!(is_bearer(&scheme));
            for i in 0..6 {
                for flipped in [scheme[i] ^ 0x20, scheme[i] ^ 0x80, scheme[i] ^ 0xa0] {
                    let mut other = scheme.clone();
                    other[i] = flipped;
                    if !other.eq_ignore_ascii_case(b"bearer") {
                        assert!(!is_bearer(&other), "{other:?}");
                    }
                }
            }
        }
        assert!(!is_bearer(b"beare"));
        assert!(!is_bearer(b"\x02\x05\x01\x12\x05\x12"));
    }

    fn no_token() -> ExtractError {
        ExtractError::Malformed("the bearer scheme has no token")
    }

    fn tab() -> ExtractError {
        ExtractError::Malformed("a tab separates the bearer scheme from the token")
    }

    fn not_b64token() -> ExtractError {
        ExtractError::Malformed("the bearer token is not a b64token")
    }

    /// The parser as it was written first, one check after another: the
    /// one-pass parser must answer exactly as it does.
    fn reference(value: &[u8], max_len: usize) -> Result<Option<&[u8]>, ExtractError> {
        let value = crate::extract::syntax::trim_ows(value);
        let (scheme, rest) = value.split_at(value.len().min(6));
        if !scheme.eq_ignore_ascii_case(b"bearer")
            || !matches!(rest.first(), None | Some(b' ' | b'\t'))
        {
            return Ok(None);
        }
        let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        if token_start == 0 || token_start == rest.len() {
            return Err(if rest.first() == Some(&b'\t') {
                tab()
            } else {
                no_token()
            });
        }
        let token = &rest[token_start..];
        if token.len() > max_len {
            return Err(ExtractError::TooLarge { max: max_len });
        }
        let body = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
        let valid = body > 0
            && token[..body]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if valid {
            Ok(Some(token))
        } else {
            Err(not_b64token())
        }
    }

    /// Field values near the grammar: schemes, spaces, tabs, token
    /// characters, padding and a few others.
    fn near_bearer() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"Bearer".to_vec()),
            Just(b"bEaReR".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"=".to_vec()),
            "[A-Za-z0-9._~+/-]{1,6}".prop_map(String::into_bytes),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    use proptest::prelude::*;

    proptest! {
        // P1, P3, R2
        #[test]
        fn the_one_pass_parser_answers_as_the_reference(
            value in prop_oneof![near_bearer(), proptest::collection::vec(any::<u8>(), 0..40)],
            max_len in 0usize..12,
        ) {
            let parsed = parse(&value, max_len).map(|range| range.map(|range| &value[range]));
            prop_assert_eq!(parsed, reference(&value, max_len));
        }
    }
}
