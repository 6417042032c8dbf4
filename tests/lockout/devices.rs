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
    app_with(false, false)
}

/// [`app`], with the body key and the device cookies case-sensitive or
/// not; a case-sensitive app also has the account `Alice` (the attacker's
/// own, password `mallory`).
fn app_with(
    layer_case_sensitive: bool,
    devices_case_sensitive: bool,
) -> (App, Tracker<String>, Arc<AtomicUsize>) {
    let devices = DeviceCookies::new("device", KEY)
        .unwrap()
        .case_sensitive(devices_case_sensitive);
    let lockout = builder(max(100))
        .also_key(devices.untrusted_key(), max(3))
        .also_key(devices.key(), max(2))
        .build()
        .unwrap();
    let untrusted = lockout.key_tracker(1).unwrap();
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
                if (user == "alice" && password == "wonderland")
                    || (user == "Alice" && password == "mallory")
                {
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
        .layer(BodyKeyLayer::new("username", |_: &Parts| true).case_sensitive(layer_case_sensitive))
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

// ---------------------------------------------------------------- B21

#[test]
fn b21_device_cookies_are_secure_by_default() {
    // B21: a device cookie sniffed over plain HTTP is a way past the
    // account's lockout.
    let devices = DeviceCookies::new("device", KEY).unwrap();
    let set_cookie = devices.issue("alice").unwrap();
    assert!(
        set_cookie.to_str().unwrap().contains("; Secure"),
        "{set_cookie:?}"
    );
    let plain = devices.clone().secure(false).issue("alice").unwrap();
    assert!(!plain.to_str().unwrap().contains("Secure"), "{plain:?}");
    // A prefix that requires `Secure` keeps it.
    let host = DeviceCookies::new("__Host-device", KEY)
        .unwrap()
        .secure(false);
    let set_cookie = host.issue("alice").unwrap();
    assert!(
        set_cookie.to_str().unwrap().contains("; Secure"),
        "{set_cookie:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn b21_the_untrusted_key_keeps_the_case_the_body_key_keeps() {
    // B21: with case-sensitive usernames, `Alice` and `alice` are two
    // accounts; failures of one never lock the other out.
    let (app, untrusted, _) = app_with(true, true);
    for n in 0..3 {
        let res = app
            .clone()
            .oneshot(login(
                &format!("bot-{n}"),
                format!("username=Alice&password=guess{n}"),
                None,
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(untrusted.check(&key("Alice")).is_err());
    assert!(untrusted.check(&key("alice")).is_ok());
    assert_eq!(untrusted.failures(&key("alice")), 0);
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

/// Signs in as `user` from `client` and returns the device cookie.
async fn device_of(app: &App, client: &str, form: &str) -> String {
    let res = app
        .clone()
        .oneshot(login(client, form.into(), None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    cookie_pair(&res)
}

/// Guesses alice's password with `cookie` from three addresses.
async fn guess_alice_with(app: &App, cookie: &str) {
    for n in 0..3 {
        app.clone()
            .oneshot(login(
                &format!("bot-{n}"),
                format!("username=alice&password=guess{n}"),
                Some(cookie),
            ))
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn b21_a_device_cookie_never_passes_for_an_account_that_differs_only_in_case() {
    // B21: the attacker owns `Alice`; its device cookie must not make it a
    // trusted client of `alice`, or every fresh cookie would buy a fresh
    // budget of guesses at her password.
    for devices_case_sensitive in [false, true] {
        let (app, untrusted, _) = app_with(true, devices_case_sensitive);
        let own = device_of(&app, "mallory", "username=Alice&password=mallory").await;
        guess_alice_with(&app, &own).await;
        assert!(
            untrusted.check(&key("alice")).is_err(),
            "counted on alice's untrusted key (devices case-sensitive: {devices_case_sensitive})"
        );
    }
    // With both case-sensitive, alice's own device is still hers.
    let (app, untrusted, _) = app_with(true, true);
    let hers = device_of(&app, "laptop", "username=alice&password=wonderland").await;
    guess_alice_with(
        &app,
        &device_of(&app, "mallory", "username=Alice&password=mallory").await,
    )
    .await;
    assert!(untrusted.check(&key("alice")).is_err());
    let res = app
        .clone()
        .oneshot(login(
            "laptop",
            "username=alice&password=wonderland".into(),
            Some(&hers),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
