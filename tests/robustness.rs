//! Arbitrary bytes in every place portcullis reads after extraction: the
//! session and device cookies, a login body, the headers that decide
//! cross-origin protection and the protocol of a rejection. None of them
//! panics, and each answers with what its documentation promises (R2).

use http::{HeaderName, HeaderValue, Method, Request, header, request::Parts};
use portcullis::{
    AuthRejection,
    cross_origin::CrossOriginProtection,
    reject::{DefaultRenderer, Protocol, RejectionKind, Renderer},
};
use proptest::prelude::*;

/// Bytes a `HeaderValue` may hold: visible ASCII, space, tab and obs-text.
fn field_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            8 => 0x20u8..0x7f,
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..max,
    )
}

/// Field values shaped like what they imitate (`name=value; …`, quoted
/// strings, URLs), so that the parsers go past their first checks.
fn shaped(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        field_bytes(max),
        "[a-zA-Z0-9_.;=\" %:/\\-]{0,80}".prop_map(String::into_bytes),
        "(refresh|device|session)=[A-Za-z0-9_.\\-]{0,60}(; [a-z]+=[^;]{0,10}){0,3}"
            .prop_map(String::into_bytes),
    ]
}

fn parts(method: Method, headers: &[(HeaderName, &[u8])]) -> Parts {
    let mut request = Request::builder().method(method).uri("/auth/refresh");
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request = request.header(name, value);
        }
    }
    request.body(()).unwrap().into_parts().0
}

#[cfg_attr(not(any(feature = "sessions", feature = "json")), allow(dead_code))]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // R2, C1
    #[test]
    fn cross_origin_protection_never_panics(
        origin in shaped(64),
        host in shaped(64),
        site in field_bytes(24),
        post in any::<bool>(),
    ) {
        let method = if post { Method::POST } else { Method::GET };
        let request = parts(method.clone(), &[
            (header::ORIGIN, &origin),
            (header::HOST, &host),
            (HeaderName::from_static("sec-fetch-site"), &site),
        ]);
        let allowed = CrossOriginProtection::new().allows(&request);
        // Safe methods always pass.
        prop_assert!(allowed || method == Method::POST);
        let trusted = std::str::from_utf8(&origin).unwrap_or("");
        let _ = CrossOriginProtection::builder().trust_origin(trusted).build();
    }

    // R2, P9: whatever the content type says, a rejection is rendered in
    // one of the protocols, with a status a client can read.
    #[test]
    fn rejections_render_for_any_content_type(
        content_type in prop_oneof![
            shaped(48),
            "application/(grpc|grpc-web|grpc-web-text|connect|proto|json)[+a-z;= ]{0,20}"
                .prop_map(String::into_bytes),
        ],
        connect in field_bytes(8),
        accept in field_bytes(24),
    ) {
        let request = parts(Method::POST, &[
            (header::CONTENT_TYPE, &content_type),
            (HeaderName::from_static("connect-protocol-version"), &connect),
            (header::ACCEPT, &accept),
        ]);
        let protocol = Protocol::of(&request);
        let response = DefaultRenderer::new()
            .render(&AuthRejection::new(RejectionKind::Invalid), &request);
        let status = response.status().as_u16();
        match protocol {
            Protocol::Http | Protocol::ConnectUnary => prop_assert_eq!(status, 401),
            _ => prop_assert_eq!(status, 200, "{:?} answers in its own framing", protocol),
        }
    }
}

#[cfg(feature = "sessions")]
mod sessions {
    use std::time::Duration;

    use portcullis::{
        revoke::Revocations,
        session::{AccessTokens, SessionErrorKind, Sessions},
    };

    use super::*;

    fn sessions() -> Sessions {
        Sessions::builder(AccessTokens::generate().unwrap(), &Revocations::new())
            .grace(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // R2, S3: any cookie header, same-origin: refused as a client error,
        // never a panic, never a 5xx.
        #[test]
        fn refresh_and_sign_out_never_panic_on_any_cookie(cookie in shaped(120)) {
            let sessions = sessions();
            let request = parts(Method::POST, &[
                (header::COOKIE, &cookie),
                (HeaderName::from_static("sec-fetch-site"), b"same-origin"),
            ]);
            runtime().block_on(async {
                let refused = sessions.refresh(&request).await.unwrap_err();
                prop_assert!(refused.response().status().is_client_error(), "{:?}", refused.kind());
                let refused = sessions.sign_out(&request).await.unwrap_err();
                prop_assert!(refused.response().status().is_client_error(), "{:?}", refused.kind());
                Ok(())
            })?;
        }

        // R2, S1: any presented string is an unknown token, or a malformed one.
        #[test]
        fn any_refresh_token_string_is_refused_as_unknown(token in any::<String>()) {
            let sessions = sessions();
            runtime().block_on(async {
                let refused = sessions.refresh_with(&token).await.unwrap_err();
                prop_assert!(
                    matches!(refused.kind(), SessionErrorKind::Unknown | SessionErrorKind::Malformed),
                    "{:?}", refused.kind()
                );
                let refused = sessions.sign_out_with(&token).await.unwrap_err();
                prop_assert!(
                    matches!(refused.kind(), SessionErrorKind::Unknown | SessionErrorKind::Malformed),
                    "{:?}", refused.kind()
                );
                Ok(())
            })?;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_token_with_one_byte_changed_is_unknown_and_revokes_nothing() {
        // S1, S2: tampering is not a reuse.
        let sessions = sessions();
        let grant = sessions.sign_in("alice").await.unwrap();
        let token = grant.refresh_token().to_owned();
        for at in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            let refused = sessions.refresh_with(&tampered).await.unwrap_err();
            assert!(
                matches!(
                    refused.kind(),
                    SessionErrorKind::Unknown | SessionErrorKind::Malformed
                ),
                "{at}: {:?}",
                refused.kind()
            );
        }
        // The real one still works: nothing was revoked.
        sessions.refresh_with(&token).await.unwrap();
    }
}

#[cfg(feature = "cookie")]
mod device_cookies {
    use portcullis::lockout::DeviceCookies;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // R2, B15: a device cookie nobody signed is no device, whatever its
        // bytes, for any account name.
        #[test]
        fn unsigned_device_cookies_are_never_trusted(
            cookie in shaped(120),
            account in any::<String>(),
        ) {
            let devices = DeviceCookies::random("device").unwrap();
            let request = parts(Method::POST, &[(header::COOKIE, &cookie)]);
            prop_assert!(devices.device(&request, &account).is_none());
        }

        // B15: a signed cookie is bound to its account.
        #[test]
        fn a_signed_device_cookie_is_trusted_for_its_account_only(
            account in "[a-z]{1,12}",
            other in "[a-z]{1,12}",
        ) {
            let devices = DeviceCookies::random("device").unwrap();
            let set_cookie = devices.issue(&account).unwrap();
            let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
            let request = parts(Method::POST, &[(header::COOKIE, pair.as_bytes())]);
            prop_assert!(devices.device(&request, &account).is_some());
            if other != account {
                prop_assert!(devices.device(&request, &other).is_none());
            }
        }
    }
}

#[cfg(feature = "json")]
mod body_key {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Response, StatusCode};
    use http_body_util::Full;
    use portcullis::body_key::{BodyField, BodyKeyLayer};
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // R2, B13, B18: any body on a login route, form or JSON or
        // anything else, reaches the handler intact and with the key a
        // handler would read from it, or is refused: too large (413), or
        // unreadable (400: another format, invalid, its field twice).
        #[test]
        fn any_login_body_is_handed_on_intact_with_its_key_or_refused(
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..600),
                "username=[a-zA-Z%+&= ]{0,40}(&password=[a-z]{0,10})?".prop_map(String::into_bytes),
                "\\{\"username\": ?(\"[a-zA-Z \\\\\"]{0,20}\"|[0-9]{1,3}|null|\\[\\])(, ?\"[a-z]{1,3}\": ?(-?[0-9]{1,3}(\\.[0-9])?(e[0-9]{1,3})?|\"[a-z\\\\]{0,5}\"|true))?\\}".prop_map(String::into_bytes),
            ],
            content_type in prop_oneof![
                Just(b"application/x-www-form-urlencoded".to_vec()),
                Just(b"application/json".to_vec()),
                shaped(40),
            ],
        ) {
            let layer = BodyKeyLayer::new("username", |_: &http::request::Parts| true).limit(512);
            let svc = layer.layer(service_fn(|request: Request<_>| async move {
                let field = request.extensions().get::<BodyField>().map(|f| f.value().to_owned());
                let body = http_body_util::BodyExt::collect(request.into_body())
                    .await
                    .map(|collected| collected.to_bytes())
                    .unwrap_or_default();
                let answer = format!("{}\n{field:?}", body.len());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
            }));
            let known = [&b"application/x-www-form-urlencoded"[..], b"application/json"]
                .contains(&content_type.as_slice());
            let request = parts(Method::POST, &[(header::CONTENT_TYPE, &content_type)]);
            let request = Request::from_parts(request, Full::new(Bytes::from(body.clone())));
            let response = runtime().block_on(svc.oneshot(request)).unwrap();
            let status = response.status();
            if known && body.len() > 512 {
                prop_assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            }
            if status == StatusCode::OK {
                let answer = runtime()
                    .block_on(http_body_util::BodyExt::collect(response.into_body()))
                    .unwrap()
                    .to_bytes();
                let answer = String::from_utf8_lossy(&answer).into_owned();
                let (length, field) = answer.split_once('\n').unwrap();
                prop_assert_eq!(length, body.len().to_string());
                // B18: what a handler reads is what the layer keyed on.
                let essence = String::from_utf8_lossy(&content_type).to_ascii_lowercase();
                let essence = essence.split(';').next().unwrap_or("").trim().to_owned();
                let read = match essence.as_str() {
                    "application/x-www-form-urlencoded" => Some(
                        form_urlencoded::parse(&body)
                            .find(|(k, _)| k == "username")
                            .map(|(_, v)| v.into_owned()),
                    ),
                    _ => match serde_json::from_slice::<serde_json::Value>(&body) {
                        Ok(serde_json::Value::Object(map)) => {
                            Some(map.get("username").and_then(|v| v.as_str()).map(str::to_owned))
                        }
                        // serde_json refuses what the layer may accept
                        // (`1e400`): nothing to compare with.
                        _ => None,
                    },
                };
                if let Some(read) = read {
                    let expected = read.map(|v| v.trim().to_lowercase());
                    prop_assert_eq!(field, format!("{expected:?}"));
                }
            } else {
                prop_assert!(
                    status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST,
                    "{}", status
                );
            }
        }
    }
}
