//! Device cookies (B15).

use bytes::Bytes;
use http_body_util::Full;
use portcullis::{
    body_key::{BodyField, BodyKeyLayer},
    lockout::DeviceCookies,
};

use super::*;

// ---------------------------------------------------------------- B15

type App =
    BoxCloneService<Request<Full<Bytes>>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;

const KEY: &[u8] = b"device cookie key of at least 32 bytes, for tests";

/// A login form: `alice` / `wonderland` signs in and gets a device cookie;
/// anything else is a failed guess. Keys: the address (100), the account
/// for untrusted clients (3), the device (2).
fn app() -> (App, Tracker<String>, Arc<AtomicUsize>) {
    let devices = DeviceCookies::new("device", KEY).unwrap();
    let untrusted = Tracker::new(max(3));
    let lockout = LockoutLayer::keyed(by_client as ByClient, max(100))
        .key_with(devices.untrusted_key(), untrusted.clone())
        .key(devices.key(), max(2));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = service_fn(
        move |req: Request<portcullis::body_key::Body<Full<Bytes>>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let devices = devices.clone();
            async move {
                let user = req
                    .extensions()
                    .get::<BodyField>()
                    .unwrap()
                    .value()
                    .to_owned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let password = String::from_utf8(body.to_vec()).unwrap();
                let password = password.split("password=").nth(1).unwrap_or("").to_owned();
                if user == "alice" && password == "wonderland" {
                    let mut res = Response::new("welcome".to_owned());
                    res.headers_mut()
                        .insert(header::SET_COOKIE, devices.issue(&user).unwrap());
                    Ok::<_, Infallible>(res)
                } else {
                    let mut res = Response::builder().status(401).body(String::new()).unwrap();
                    res.extensions_mut().insert(Failed::guess(&user, &password));
                    Ok(res)
                }
            }
        },
    );
    let svc = tower::ServiceBuilder::new()
        .layer(BodyKeyLayer::new("username"))
        .layer(lockout)
        .service(handler);
    (BoxCloneService::new(svc), untrusted, calls)
}

fn login(client: &str, form: String, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::post("/login")
        .header("x-client", client)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    req.body(Full::new(Bytes::from(form))).unwrap()
}

/// The `name=value` part of a `Set-Cookie`.
fn cookie_pair(res: &Response<ResponseBody<ResponseBody<String>>>) -> String {
    let set = res.headers()[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn b15_the_real_user_signs_in_with_a_device_cookie_while_spraying_locks_the_account_for_others()
 {
    // B15
    let (app, untrusted, _) = app();
    // Alice signed in from her laptop last week.
    let res = app
        .clone()
        .oneshot(login(
            "laptop",
            "username=alice&password=wonderland".into(),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let device = cookie_pair(&res);
    assert!(device.starts_with("device="));

    // An attacker guesses from three addresses: the account is locked for
    // untrusted clients, even with the right password.
    for (n, guess) in ["123456", "password", "qwerty"].iter().enumerate() {
        let res = app
            .clone()
            .oneshot(login(
                &format!("bot-{n}"),
                format!("username=alice&password={guess}"),
                None,
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(untrusted.check(&key("alice")).is_err());
    let res = app
        .clone()
        .oneshot(login(
            "bot-9",
            "username=alice&password=wonderland".into(),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));

    // Alice, with her device cookie, still signs in.
    let res = app
        .clone()
        .oneshot(login(
            "laptop",
            "username=alice&password=wonderland".into(),
            Some(&device),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Her device cookie is hers only: it does not let anyone past the
    // lockout of another account.
    for guess in ["a", "b", "c"] {
        app.clone()
            .oneshot(login(
                "bot-1",
                format!("username=bob&password={guess}"),
                None,
            ))
            .await
            .unwrap();
    }
    let res = app
        .clone()
        .oneshot(login(
            "bot-1",
            "username=bob&password=x".into(),
            Some(&device),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn b15_failures_with_a_device_cookie_count_on_that_device_alone() {
    // B15
    let (app, untrusted, calls) = app();
    let res = app
        .clone()
        .oneshot(login(
            "laptop",
            "username=alice&password=wonderland".into(),
            None,
        ))
        .await
        .unwrap();
    let device = cookie_pair(&res);
    for guess in ["typo1", "typo2"] {
        let res = app
            .clone()
            .oneshot(login(
                "laptop",
                format!("username=alice&password={guess}"),
                Some(&device),
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(untrusted.failures(&key("alice")), 0, "not the account's");
    // The device is locked out (its own policy: 2), untrusted clients are not.
    let before = calls.load(Ordering::SeqCst);
    let res = app
        .clone()
        .oneshot(login(
            "laptop",
            "username=alice&password=wonderland".into(),
            Some(&device),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), before);
    let res = app
        .clone()
        .oneshot(login(
            "phone",
            "username=alice&password=wonderland".into(),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn b15_device_cookies_are_signed_http_only_and_bound_to_the_account() {
    // B15
    let devices = DeviceCookies::new("device", KEY).unwrap();
    let set_cookie = devices.issue("Alice").unwrap();
    let set_cookie = set_cookie.to_str().unwrap();
    assert!(set_cookie.contains("; HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("; SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("; Max-Age=31536000"), "{set_cookie}");
    assert!(
        !set_cookie.to_lowercase().contains("alice"),
        "no account name in the cookie"
    );
    let pair = set_cookie.split(';').next().unwrap();
    let parts_with = |cookie: &str| {
        Request::builder()
            .header(header::COOKIE, cookie)
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    assert!(devices.device(&parts_with(pair), "alice").is_some());
    assert!(devices.device(&parts_with(pair), " ALICE ").is_some());
    assert!(devices.device(&parts_with(pair), "bob").is_none());
    // Another key did not sign it.
    let other = DeviceCookies::new("device", [9u8; 32]).unwrap();
    assert!(other.device(&parts_with(pair), "alice").is_none());
    // Tampered: one character of the tag changed.
    let mut tampered = pair.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(devices.device(&parts_with(&tampered), "alice").is_none());
    assert!(
        devices
            .device(&parts_with("device=garbage"), "alice")
            .is_none()
    );
    assert!(DeviceCookies::new("device", [0u8; 31]).is_err());
    // Two cookies are not a fresh nonce each time by accident.
    assert_ne!(
        devices.issue("alice").unwrap(),
        devices.issue("alice").unwrap()
    );
}
