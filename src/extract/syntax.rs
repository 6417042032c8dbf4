//! Character classes shared by the parsers.

use std::ops::Range;

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
    body > 0 && bytes[..body].iter().all(|&b| B64TOKEN[usize::from(b)])
}

/// The `b64token` body characters (all but the `=` padding), as a table:
/// this check runs on every request, and a lookup is several times cheaper
/// than a chain of ranges.
pub(super) static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

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

/// Where `part`, a subslice of `whole`, lies in it. Computed from the
/// addresses, so the parsers that split a field need not count; a `part`
/// from elsewhere gives a range that reads as nothing, never a panic.
pub(super) fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr().addr().wrapping_sub(whole.as_ptr().addr());
    start..start.saturating_add(part.len())
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
    fn range_in_finds_a_subslice() {
        let whole = b"a=1; b=22";
        assert_eq!(range_in(whole, &whole[7..]), 7..9);
        assert_eq!(range_in(whole, &whole[..0]), 0..0);
    }

    #[test]
    fn trim_ows_strips_spaces_and_tabs_at_the_ends_only() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
