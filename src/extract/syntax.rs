//! Character classes shared by the parsers.

/// Strips optional whitespace (SP / HTAB) from both ends (RFC 9110 §5.6.3).
pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
/// (RFC 6750 §2.1).
pub(super) fn is_b64token(bytes: &[u8]) -> bool {
    let body = bytes.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body > 0
        && bytes[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// `tchar` (RFC 9110 §5.6.2).
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A non-empty `token` (RFC 9110 §5.6.2).
pub(super) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Visible ASCII, `%x21-7E`.
pub(super) fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// The bytes as `&str`, when every byte is visible ASCII.
pub(super) fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(|&b| is_vchar(b)) {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_allows_trailing_padding_only() {
        assert!(is_b64token(b"abc"));
        assert!(is_b64token(b"a+/b-._~=="));
        assert!(!is_b64token(b""));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b"a=b"));
        assert!(!is_b64token(b"a b"));
        assert!(!is_b64token(b"a,b"));
    }

    #[test]
    fn trim_ows_strips_spaces_and_tabs_at_the_ends_only() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
