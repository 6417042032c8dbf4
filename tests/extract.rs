//! Credential extraction: RFC 6750, RFC 9110 and RFC 6265bis conformance.

use http::{HeaderName, HeaderValue, Request, header, request::Parts};
use portcullis::{
    CredentialSource,
    extract::{Bearer, ExtractError, Extractor, Header, Query, WebSocketProtocol},
};
use proptest::prelude::*;

fn parts(headers: &[(&str, &[u8])]) -> Parts {
    parts_with_uri("/", headers)
}

fn parts_with_uri(uri: &str, headers: &[(&str, &[u8])]) -> Parts {
    let mut req = Request::builder().uri(uri).body(()).unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    req.into_parts().0
}

fn bearer(value: &str) -> Result<Option<String>, ExtractError> {
    Extractor::new(Bearer::new())
        .extract(&parts(&[("authorization", value.as_bytes())]))
        .map(|c| c.map(|c| c.secret().to_owned()))
}

fn api_key() -> Header {
    Header::new(HeaderName::from_static("x-api-key"))
}

// P1
#[test]
fn bearer_tokens_follow_the_b64token_grammar() {
    let valid = [
        "abc",
        "mF_9.B5f-4.1JqM",
        "a~b+c/d",
        "abc=",
        "abc==",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "0123456789",
    ];
    for token in valid {
        assert_eq!(
            bearer(&format!("Bearer {token}")),
            Ok(Some(token.to_owned())),
            "{token}"
        );
    }
    let malformed = [
        "=abc", "a=b", "a b", "a,b", "a;b", "a\"b", "a\\b", "a:b", "a@b", "(ab)", "a%b", "a!b",
        "a*b", "=",
    ];
    for token in malformed {
        assert!(
            matches!(
                bearer(&format!("Bearer {token}")),
                Err(ExtractError::Malformed(_))
            ),
            "{token:?} must be malformed"
        );
    }
}

// P2
#[test]
fn the_scheme_is_case_insensitive_in_every_casing_and_the_token_is_not() {
    let scheme = "bearer";
    for mask in 0u32..64 {
        let casing: String = scheme
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(
            bearer(&format!("{casing} AbC")),
            Ok(Some("AbC".to_owned())),
            "{casing}"
        );
    }
}

// P3
#[test]
fn spaces_separate_scheme_and_token_but_a_tab_is_malformed() {
    assert_eq!(bearer("Bearer    abc"), Ok(Some("abc".into())));
    assert_eq!(bearer(" \tBearer abc\t "), Ok(Some("abc".into())));
    assert!(matches!(
        bearer("Bearer\tabc"),
        Err(ExtractError::Malformed(_))
    ));
    assert!(matches!(
        bearer("Bearer \tabc"),
        Err(ExtractError::Malformed(_))
    ));
    assert!(matches!(bearer("Bearer"), Err(ExtractError::Malformed(_))));
    assert!(matches!(
        bearer("Bearer   "),
        Err(ExtractError::Malformed(_))
    ));
}

// P4
#[test]
fn two_authorization_lines_are_ambiguous_never_first_wins() {
    let p = parts(&[
        ("authorization", b"Bearer a"),
        ("authorization", b"Bearer b"),
    ]);
    assert_eq!(
        Extractor::new(Bearer::new()).extract(&p).unwrap_err(),
        ExtractError::Ambiguous
    );
    let p = parts(&[
        ("authorization", b"Bearer a"),
        ("authorization", b"Bearer a"),
    ]);
    assert_eq!(
        Extractor::new(Bearer::new()).extract(&p).unwrap_err(),
        ExtractError::Ambiguous
    );
}

// P4
#[test]
fn different_credentials_in_two_carriers_are_ambiguous_identical_ones_are_accepted() {
    let extractor = Extractor::new(Bearer::new())
        .or(api_key())
        .or(Query::new("access_token"));
    let p = parts(&[("authorization", b"Bearer one"), ("x-api-key", b"two")]);
    assert_eq!(extractor.extract(&p).unwrap_err(), ExtractError::Ambiguous);
    let p = parts_with_uri("/?access_token=two", &[("authorization", b"Bearer one")]);
    assert_eq!(extractor.extract(&p).unwrap_err(), ExtractError::Ambiguous);

    let p = parts(&[("authorization", b"Bearer same"), ("x-api-key", b"same")]);
    let credential = extractor.extract(&p).unwrap().unwrap();
    assert_eq!(credential.secret(), "same");
    assert_eq!(
        credential.source(),
        &CredentialSource::Bearer,
        "the first source is reported"
    );
}

// P6
#[test]
fn a_foreign_scheme_is_no_credential_for_a_bearer_source() {
    assert_eq!(bearer("Basic dXNlcjpwYXNz"), Ok(None));
    assert_eq!(bearer("Digest username=\"x\""), Ok(None));
    assert_eq!(bearer("Bearerish abc"), Ok(None));
    let p = parts(&[]);
    assert_eq!(
        Extractor::new(Bearer::new())
            .extract(&p)
            .unwrap()
            .map(|c| c.secret().to_owned()),
        None
    );
}

// L4
#[test]
fn non_ascii_and_control_bytes_are_malformed_never_decoded_lossily() {
    let extractor = Extractor::new(Bearer::new()).or(api_key());
    for value in [
        &b"Bearer caf\xc3\xa9"[..],
        b"Bearer ab\x80",
        b"Bearer \xff\xfe",
    ] {
        let p = parts(&[("authorization", value)]);
        assert!(
            matches!(extractor.extract(&p), Err(ExtractError::Malformed(_))),
            "{value:?}"
        );
    }
    for value in [&b"caf\xc3\xa9"[..], b"a\xa0b", b"a b", b"a\tb"] {
        let p = parts(&[("x-api-key", value)]);
        assert!(
            matches!(extractor.extract(&p), Err(ExtractError::Malformed(_))),
            "{value:?}"
        );
    }
}

// R1
#[test]
fn credentials_over_the_cap_are_too_large() {
    let extractor = Extractor::new(Bearer::new()).or(api_key());
    let huge = "a".repeat(8 * 1024 + 1);
    let p = parts(&[("authorization", format!("Bearer {huge}").as_bytes())]);
    assert_eq!(
        extractor.extract(&p).unwrap_err(),
        ExtractError::TooLarge { max: 8192 }
    );
    let exact = "a".repeat(8 * 1024);
    let p = parts(&[("x-api-key", exact.as_bytes())]);
    assert!(extractor.extract(&p).unwrap().is_some());

    let small = Extractor::new(Bearer::new()).max_len(16);
    let p = parts(&[("authorization", b"Bearer 0123456789abcdefg")]);
    assert_eq!(
        small.extract(&p).unwrap_err(),
        ExtractError::TooLarge { max: 16 }
    );
}

#[test]
fn a_custom_header_carries_the_whole_value() {
    let extractor = Extractor::new(api_key());
    let p = parts(&[("x-api-key", b"  pk_live_abc  ")]);
    assert_eq!(
        extractor.extract(&p).unwrap().unwrap().secret(),
        "pk_live_abc"
    );
    let p = parts(&[("x-api-key", b"a"), ("x-api-key", b"b")]);
    assert_eq!(extractor.extract(&p).unwrap_err(), ExtractError::Ambiguous);
    let p = parts(&[("x-api-key", b"")]);
    assert!(matches!(
        extractor.extract(&p),
        Err(ExtractError::Malformed(_))
    ));
}

// P5
#[test]
fn query_tokens_are_form_decoded_and_must_be_b64tokens() {
    let extractor = Extractor::new(Query::new("access_token"));
    let token = |uri: &str| {
        extractor
            .extract(&parts_with_uri(uri, &[]))
            .map(|c| c.map(|c| c.secret().to_owned()))
    };
    assert_eq!(token("/?access_token=abc"), Ok(Some("abc".into())));
    assert_eq!(
        token("/?x=1&access_token=a%2Bb%2F%3D"),
        Ok(Some("a+b/=".into()))
    );
    assert_eq!(token("/?x=1"), Ok(None));
    assert_eq!(token("/"), Ok(None));
    assert!(matches!(
        token("/?access_token=a+b"),
        Err(ExtractError::Malformed(_))
    ));
    assert!(matches!(
        token("/?access_token=a%zz"),
        Err(ExtractError::Malformed(_))
    ));
    assert!(matches!(
        token("/?access_token="),
        Err(ExtractError::Malformed(_))
    ));
    assert!(matches!(
        token("/?access_token=%C3%A9"),
        Err(ExtractError::Malformed(_))
    ));
    assert_eq!(
        token("/?access_token=a&access_token=a"),
        Err(ExtractError::Ambiguous)
    );
    assert_eq!(
        token("/?access_token=a&access%5Ftoken=b"),
        Err(ExtractError::Ambiguous)
    );
}

// P10
#[test]
fn websocket_protocol_tokens_come_from_the_prefixed_entry() {
    let extractor = Extractor::new(WebSocketProtocol::new());
    let p = parts(&[("sec-websocket-protocol", b"chat.v1, bearer.abc123")]);
    let credential = extractor.extract(&p).unwrap().unwrap();
    assert_eq!(credential.secret(), "abc123");
    assert_eq!(credential.source(), &CredentialSource::WebSocketProtocol);

    let p = parts(&[
        ("sec-websocket-protocol", b"chat.v1"),
        ("sec-websocket-protocol", b"bearer.x"),
    ]);
    assert_eq!(extractor.extract(&p).unwrap().unwrap().secret(), "x");
    let p = parts(&[("sec-websocket-protocol", b"bearer.x, bearer.y")]);
    assert_eq!(extractor.extract(&p).unwrap_err(), ExtractError::Ambiguous);
    let p = parts(&[("sec-websocket-protocol", b"bearer.")]);
    assert!(matches!(
        extractor.extract(&p),
        Err(ExtractError::Malformed(_))
    ));
    let p = parts(&[("sec-websocket-protocol", b"chat.v1")]);
    assert!(extractor.extract(&p).unwrap().is_none());

    let custom = Extractor::new(WebSocketProtocol::with_prefix("access_token.").unwrap());
    let p = parts(&[("sec-websocket-protocol", b"access_token.t0k3n")]);
    assert_eq!(custom.extract(&p).unwrap().unwrap().secret(), "t0k3n");
    assert!(WebSocketProtocol::with_prefix("bad prefix").is_err());
}

#[cfg(feature = "cookie")]
mod cookies {
    use super::*;
    use portcullis::extract::Cookie;

    fn cookie(name: &str, headers: &[(&str, &[u8])]) -> Result<Option<String>, ExtractError> {
        Extractor::new(Cookie::new(name))
            .extract(&parts(headers))
            .map(|c| c.map(|c| c.secret().to_owned()))
    }

    // P8
    #[test]
    fn every_cookie_field_line_is_read() {
        let headers: &[(&str, &[u8])] = &[("cookie", b"a=1; b=2"), ("cookie", b"session=tok")];
        assert_eq!(cookie("session", headers), Ok(Some("tok".into())));
    }

    // P8
    #[test]
    fn the_credential_cookie_twice_is_ambiguous_even_across_lines() {
        let same_line: &[(&str, &[u8])] = &[("cookie", b"session=a; session=b")];
        assert_eq!(cookie("session", same_line), Err(ExtractError::Ambiguous));
        let two_lines: &[(&str, &[u8])] = &[("cookie", b"session=a"), ("cookie", b"session=a")];
        assert_eq!(cookie("session", two_lines), Err(ExtractError::Ambiguous));
    }

    // P8
    #[test]
    fn quoted_values_are_unquoted_and_unbalanced_quotes_are_malformed() {
        assert_eq!(
            cookie("session", &[("cookie", b"session=\"abc\"")]),
            Ok(Some("abc".into()))
        );
        assert!(matches!(
            cookie("session", &[("cookie", b"session=\"abc")]),
            Err(ExtractError::Malformed(_))
        ));
        assert!(matches!(
            cookie("session", &[("cookie", b"session=abc\"")]),
            Err(ExtractError::Malformed(_))
        ));
        assert!(matches!(
            cookie("session", &[("cookie", b"session=a b")]),
            Err(ExtractError::Malformed(_))
        ));
    }

    // P8
    #[test]
    fn names_match_case_sensitively_and_prefixed_names_work() {
        assert_eq!(cookie("session", &[("cookie", b"Session=abc")]), Ok(None));
        assert_eq!(
            cookie(
                "__Host-session",
                &[("cookie", b"__host-session=x; __Host-session=abc")]
            ),
            Ok(Some("abc".into()))
        );
    }

    #[test]
    fn other_cookies_may_hold_anything() {
        let headers: &[(&str, &[u8])] = &[("cookie", b"junk=\"\xff; x; =; session=ok")];
        assert_eq!(cookie("session", headers), Ok(Some("ok".into())));
    }

    // P4
    #[test]
    fn a_header_and_a_different_cookie_are_ambiguous() {
        let extractor = Extractor::new(Bearer::new()).or(Cookie::new("session"));
        let p = parts(&[("authorization", b"Bearer one"), ("cookie", b"session=two")]);
        assert_eq!(extractor.extract(&p).unwrap_err(), ExtractError::Ambiguous);
        let p = parts(&[("authorization", b"Bearer one"), ("cookie", b"session=one")]);
        assert_eq!(extractor.extract(&p).unwrap().unwrap().secret(), "one");
    }
}

fn all_sources() -> Extractor {
    let extractor = Extractor::new(Bearer::new())
        .or(api_key())
        .or(Query::new("access_token"))
        .or(WebSocketProtocol::new());
    #[cfg(feature = "cookie")]
    let extractor = extractor.or(portcullis::extract::Cookie::new("session"));
    extractor
}

proptest! {
    // R2, L4
    #[test]
    fn parsers_never_panic_on_arbitrary_header_bytes(
        auth in proptest::collection::vec(any::<u8>(), 0..64),
        cookie in proptest::collection::vec(any::<u8>(), 0..64),
        key in proptest::collection::vec(any::<u8>(), 0..64),
        ws in proptest::collection::vec(any::<u8>(), 0..64),
        query in "[ -~]{0,40}",
    ) {
        let mut req = Request::builder().body(()).unwrap();
        let uri = format!("/p?{}", query.replace(['#', ' '], ""));
        if let Ok(uri) = uri.parse() {
            *req.uri_mut() = uri;
        }
        for (name, value) in [
            (header::AUTHORIZATION, auth),
            (header::COOKIE, cookie),
            (HeaderName::from_static("x-api-key"), key),
            (header::SEC_WEBSOCKET_PROTOCOL, ws),
        ] {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                req.headers_mut().insert(name, value);
            }
        }
        let (parts, ()) = req.into_parts();
        if let Ok(Some(credential)) = all_sources().extract(&parts) {
            prop_assert!(!credential.secret().is_empty());
            prop_assert!(credential.secret().bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
    }

    // P1, R2
    #[test]
    fn any_accepted_bearer_token_is_a_b64token(token in proptest::collection::vec(any::<u8>(), 1..40)) {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&token);
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            let mut req = Request::new(());
            req.headers_mut().insert(header::AUTHORIZATION, value);
            let (parts, ()) = req.into_parts();
            if let Ok(Some(credential)) = Extractor::new(Bearer::new()).extract(&parts) {
                let s = credential.secret().trim_end_matches('=');
                prop_assert!(!s.is_empty());
                prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
            }
        }
    }
}
