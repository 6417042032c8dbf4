//! Login protection that an attacker cannot step around (B18, B19, B20).

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use portcullis::{
    AuthLayer, Credential, ValidationError,
    body_key::{Body, BodyField, BodyKeyLayer},
};

use super::*;

type Login =
    BoxCloneService<Request<Full<Bytes>>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;
pub(super) type Optional =
    BoxCloneService<Request<String>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;

/// A login app as the README sets one up, with what its handler saw.
struct App {
    svc: Login,
    account: Tracker<String>,
    /// Passwords the handler checked.
    checks: Arc<AtomicUsize>,
}

/// The credentials a login handler reads, ignoring other fields as serde
/// does by default.
#[derive(serde::Deserialize)]
struct Creds {
    username: String,
    password: String,
}

/// What a login handler parses out of the body, like axum's `Form` and
/// `Json`: `None` when it cannot.
fn creds(content_type: &str, body: &[u8]) -> Option<Creds> {
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).ok()
    } else {
        let mut username = None;
        let mut password = None;
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "username" => username = Some(v.into_owned()),
                "password" => password = Some(v.into_owned()),
                _ => {}
            }
        }
        Some(Creds {
            username: username?,
            password: password?,
        })
    }
}

/// `GET /login` is the login page (200); `POST /login` checks the password:
/// `alice` / `wonderland` signs in, anything else is a failed guess (401
/// with `Failed::guess`).
async fn login_handler(
    req: Request<Body<Full<Bytes>>>,
    checks: Arc<AtomicUsize>,
) -> Result<Response<String>, Infallible> {
    if req.method() == Method::GET {
        return Ok(Response::new("the login page".to_owned()));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let Some(creds) = creds(&content_type, &body) else {
        return Ok(Response::builder().status(422).body(String::new()).unwrap());
    };
    checks.fetch_add(1, Ordering::SeqCst);
    if creds.username == "alice" && creds.password == "wonderland" {
        return Ok(Response::new("welcome".to_owned()));
    }
    let mut res = Response::builder().status(401).body(String::new()).unwrap();
    res.extensions_mut()
        .insert(Failed::guess(&creds.username, &creds.password));
    Ok(res)
}

fn is_login(parts: &Parts) -> bool {
    parts.uri.path() == "/login"
}

/// `BodyKeyLayer` → `LockoutLayer` (per address: 100; per account:
/// `account`) → the login handler.
fn app(account: Policy) -> App {
    let lockout = builder(max(100))
        .also_key(BodyField::key, account)
        .build()
        .unwrap();
    let account = lockout.key_tracker(1).unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&checks);
    let handler = service_fn(move |req| login_handler(req, Arc::clone(&counter)));
    let svc = tower::ServiceBuilder::new()
        .layer(BodyKeyLayer::new("username", is_login))
        .layer(lockout)
        .service(handler);
    App {
        svc: BoxCloneService::new(svc),
        account,
        checks,
    }
}

fn post(client: &str, content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/login")
        .header("x-client", client)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn call(
    app: &App,
    req: Request<Full<Bytes>>,
) -> Response<ResponseBody<ResponseBody<String>>> {
    app.svc.clone().oneshot(req).await.unwrap()
}

// ---------------------------------------------------------------- B18

#[cfg(feature = "json")]
#[tokio::test(start_paused = true)]
async fn b18_a_junk_json_field_never_lets_a_guess_past_the_account_key() {
    // B18: a lone surrogate, invalid UTF-8 or a number out of f64's range
    // in a field the handler ignores made the layer's parser give up, and
    // the request went on without its account key.
    let app = app(max(3));
    let junks: [&[u8]; 4] = [br#""\ud800""#, b"1e400", b"\"\xff\"", br#""\udc00x""#];
    let mut refused = 0;
    for i in 0..12 {
        let mut body =
            format!(r#"{{"username":"alice","password":"guess{i}","junk":"#).into_bytes();
        body.extend_from_slice(junks[i % junks.len()]);
        body.push(b'}');
        // Twelve addresses: only the account key can stop this.
        let res = call(&app, post(&format!("bot-{i}"), "application/json", body)).await;
        match res.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            StatusCode::BAD_REQUEST => {
                assert_eq!(rejection_kind(&res), Some(RejectionKind::MalformedBody));
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        app.checks.load(Ordering::SeqCst) <= 3,
        "{} wrong passwords reached a handler whose account limit is 3",
        app.checks.load(Ordering::SeqCst)
    );
    assert!(refused >= 9);
}

#[cfg(feature = "json")]
#[tokio::test(start_paused = true)]
async fn b18_a_json_body_the_layer_cannot_read_is_refused_with_400_and_not_counted() {
    // B18
    let app = app(max(3));
    let bodies: [&[u8]; 8] = [
        br#"{"username":"bob","username":"alice","password":"x"}"#,
        br#"{"user\u006eame":"bob","username":"alice","password":"x"}"#,
        br#"{"username":"al\ud800ice","password":"x"}"#,
        b"{\"username\":\"al\xffice\",\"password\":\"x\"}",
        br#"["alice","x"]"#,
        br#"{"username":["alice"],"password":"x"}"#,
        br#"{"username":"alice","password":"x"} trailing"#,
        br#"{"username":"alice","password":"x""#,
    ];
    for body in bodies {
        let res = call(&app, post("bot", "application/json", body)).await;
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(rejection_kind(&res), Some(RejectionKind::MalformedBody));
    }
    assert_eq!(app.checks.load(Ordering::SeqCst), 0);
    assert_eq!(app.account.stats().failures, 0);
    // A number out of f64's range elsewhere is fine: the key is read.
    let res = call(
        &app,
        post(
            "bot",
            "application/json",
            &br#"{"n":1e400,"username":"alice","password":"x","nested":{"a":[1,"\u00e9",null]}}"#[..],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.account.failures(&key("alice")), 1);
}

#[tokio::test(start_paused = true)]
async fn b18_a_form_with_a_repeated_or_undecodable_key_field_is_refused_with_400() {
    // B18
    let app = app(max(3));
    for body in [
        "username=bob&username=alice&password=x",
        "user%6Eame=bob&username=alice&password=x",
        "username=al%FFice&password=x",
    ] {
        let res = call(&app, post("bot", FORM, body)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(rejection_kind(&res), Some(RejectionKind::MalformedBody));
    }
    assert_eq!(app.checks.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn b18_a_login_request_in_a_format_the_layer_cannot_read_is_refused() {
    // B18: a handler that reads another format would get guesses past the
    // account key.
    let app = app(max(3));
    for content_type in ["text/plain", "multipart/form-data; boundary=x", ""] {
        let mut req = post("bot", content_type, "username=alice&password=x");
        if content_type.is_empty() {
            req.headers_mut().remove(header::CONTENT_TYPE);
        }
        let res = call(&app, req).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{content_type:?}");
    }
    assert_eq!(app.checks.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn b18_safe_methods_are_never_body_keyed() {
    // B18
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let svc = BodyKeyLayer::new("username", is_login).layer(service_fn(
        move |req: Request<Body<Full<Bytes>>>| {
            log.lock()
                .unwrap()
                .push(BodyField::of(&req.into_parts().0).cloned());
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        },
    ));
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/login")
            .header(header::CONTENT_TYPE, FORM)
            .body(Full::new(Bytes::from_static(b"username=alice")))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{method}");
    }
    assert_eq!(*seen.lock().unwrap(), vec![None; 4]);
}

// ---------------------------------------------------------------- B19

#[tokio::test(start_paused = true)]
async fn b19_a_login_page_naming_the_account_does_not_clear_its_failures() {
    // B19: the README's setup resets the account key on success; a 200 to a
    // request that merely names the account is not her sign-in.
    let app = app(Policy::builder()
        .max_failures(3)
        .reset_on_success(true)
        .build()
        .unwrap());
    for i in 0..12 {
        call(
            &app,
            post(
                &format!("bot-{i}"),
                FORM,
                format!("username=alice&password=guess{i}"),
            ),
        )
        .await;
        let page = Request::get("/login")
            .header("x-client", format!("bot-{i}"))
            .header(header::CONTENT_TYPE, FORM)
            .body(Full::new(Bytes::from_static(b"username=alice")))
            .unwrap();
        assert_eq!(call(&app, page).await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.checks.load(Ordering::SeqCst),
        3,
        "wrong passwords past an account limit of 3"
    );
    assert!(app.account.check(&key("alice")).is_err());
}

// ---------------------------------------------------------------- B20

/// Accepts the attacker's own token, `mallory-token`.
async fn mallory(c: Credential) -> Result<String, ValidationError> {
    match c.secret() {
        "mallory-token" => Ok("mallory".to_owned()),
        _ => Err(ValidationError::invalid()),
    }
}

/// The account in the `x-user` header, when present.
fn by_user(parts: &Parts) -> Result<Option<String>, AuthRejection> {
    Ok(parts
        .headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned))
}

type ByUser = fn(&Parts) -> Result<Option<String>, AuthRejection>;

/// `LockoutLayer` (per address and per `x-user`, 3 each) → `AuthLayer` in
/// optional mode → a login handler that answers every password 401, with
/// the `Failed` marker when `marked`.
fn optional_login(marked: bool) -> (Optional, Tracker<String>, Tracker<String>, Arc<AtomicUsize>) {
    optional_login_with(marked, builder(max(3)))
}

/// The app of [`optional_login_with`], with a validator that answers later
/// (the request waits for it).
fn optional_login_slow() -> (Optional, Tracker<String>, Tracker<String>, Arc<AtomicUsize>) {
    let slow = |c: Credential| async move {
        tokio::task::yield_now().await;
        mallory(c).await
    };
    optional_login_behind(AuthLayer::new(slow), true, builder(max(3)))
}

/// [`optional_login`] with the address key of `lockout` (and where it
/// keeps its state).
pub(super) fn optional_login_with(
    marked: bool,
    lockout: LockoutBuilder<ByClient>,
) -> (Optional, Tracker<String>, Tracker<String>, Arc<AtomicUsize>) {
    optional_login_behind(AuthLayer::new(mallory), marked, lockout)
}

fn optional_login_behind<V>(
    auth: AuthLayer<V>,
    marked: bool,
    lockout: LockoutBuilder<ByClient>,
) -> (Optional, Tracker<String>, Tracker<String>, Arc<AtomicUsize>)
where
    V: portcullis::Validator<Identity = String>,
{
    support::logs::capture();
    let lockout = lockout.also_key(by_user as ByUser, max(3)).build().unwrap();
    let (address, users) = (lockout.tracker().clone(), lockout.key_tracker(1).unwrap());
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&checks);
    let handler = service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut res = Response::builder().status(401).body(String::new()).unwrap();
        if marked {
            let user = req.headers()["x-user"].to_str().unwrap();
            res.extensions_mut().insert(Failed::guess(user, req.body()));
        }
        async move { Ok::<_, Infallible>(res) }
    });
    let svc = tower::ServiceBuilder::new()
        .layer(lockout)
        .layer(auth.optional())
        .service(handler);
    (BoxCloneService::new(svc), address, users, checks)
}

async fn b20_guesses_behind_the_attackers_own_token_count(marked: bool) {
    let app = optional_login(marked);
    b20_guesses_count_on_every_key(app).await;
}

/// Twelve wrong passwords for alice behind mallory's own valid token: three
/// reach the handler, and both keys are locked out.
pub(super) async fn b20_guesses_count_on_every_key(
    (svc, address, users, checks): (Optional, Tracker<String>, Tracker<String>, Arc<AtomicUsize>),
) {
    let mut statuses = Vec::new();
    for i in 0..12 {
        let req = Request::post("/login")
            .header("x-client", "mallory")
            .header("x-user", "alice")
            .header(header::AUTHORIZATION, "Bearer mallory-token")
            .body(format!("guess{i}"))
            .unwrap();
        statuses.push(svc.clone().oneshot(req).await.unwrap().status());
    }
    assert_eq!(checks.load(Ordering::SeqCst), 3, "{statuses:?}");
    assert_eq!(&statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert!(
        statuses[3..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
    // Counted on every key of the decision.
    assert!(address.check(&key("mallory")).is_err());
    assert!(users.check(&key("alice")).is_err());
}

#[tokio::test(start_paused = true)]
async fn b20_a_failed_marker_after_an_early_release_still_counts_on_every_key() {
    // B20
    b20_guesses_behind_the_attackers_own_token_count(true).await;
}

#[tokio::test(start_paused = true)]
async fn b20_a_handlers_401_after_an_early_release_still_counts_on_every_key() {
    // B20
    b20_guesses_behind_the_attackers_own_token_count(false).await;
}

#[tokio::test(start_paused = true)]
async fn b20_a_failure_after_a_release_by_a_slow_validator_still_counts_on_every_key() {
    // B20: the validator answers later, through the waiting path.
    b20_guesses_count_on_every_key(optional_login_slow()).await;
}

#[tokio::test(start_paused = true)]
async fn b20_parallel_sign_in_attempts_with_a_valid_token_stay_bounded() {
    // B20, B6: a request whose body names an account is a sign-in attempt:
    // it keeps its reservations until the handler answers, whatever
    // credential it carries, so 64 parallel guesses reach the handler at
    // most `max_failures` times.
    let gate = Arc::new(Semaphore::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let (g, c) = (Arc::clone(&gate), Arc::clone(&checks));
    let handler = service_fn(move |_req: Request<Body<Full<Bytes>>>| {
        let gate = Arc::clone(&g);
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(Response::builder().status(401).body(String::new()).unwrap())
        }
    });
    let lockout = builder(max(100))
        .also_key(BodyField::key, max(3))
        .build()
        .unwrap();
    let account: Tracker<String> = lockout.key_tracker(1).unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(BodyKeyLayer::new("username", is_login))
        .layer(lockout)
        .layer(AuthLayer::new(mallory).optional())
        .service(handler);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let svc = svc.clone();
            let mut req = post(
                &format!("bot-{i}"),
                FORM,
                format!("username=alice&password={i}"),
            );
            req.headers_mut().insert(
                header::AUTHORIZATION,
                "Bearer mallory-token".parse().unwrap(),
            );
            tokio::spawn(async move { svc.oneshot(req).await.unwrap().status() })
        })
        .collect();
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert_eq!(checks.load(Ordering::SeqCst), 3);
    gate.add_permits(1000);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(checks.load(Ordering::SeqCst), 3);
    assert!(account.check(&key("alice")).is_err());
}

// ---------------------------------------------------------------- B13, B17

#[tokio::test(start_paused = true)]
async fn b13_a_stack_with_a_body_key_reads_the_login_route_only() {
    // B13, B17: the body key needs its route, so the bodies of other
    // requests are never buffered: a JSON API call over the body limit
    // reaches its handler instead of getting 413.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let handler = service_fn(move |req: Request<Body<Full<Bytes>>>| {
        let log = Arc::clone(&log);
        async move {
            let field = BodyField::of(&req.into_parts().0).cloned();
            log.lock().unwrap().push(field);
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let stack = portcullis::stack::Stack::new(AuthLayer::new(mallory).optional())
        .lockout(
            builder(max(3))
                .also_key(BodyField::key, max(3))
                .build()
                .unwrap(),
        )
        .body_key(BodyKeyLayer::new("username", is_login));
    let svc = stack.layer(handler);
    let large = format!(
        r#"{{"username":"alice","data":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let mut api = post("api", "application/json", large);
    *api.uri_mut() = "/api/upload".parse().unwrap();
    assert_eq!(
        svc.clone().oneshot(api).await.unwrap().status(),
        StatusCode::OK
    );
    let res = svc
        .clone()
        .oneshot(post("web", FORM, "username=Alice&password=x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], None);
    assert_eq!(seen[1].as_ref().map(BodyField::value), Some("alice"));
}
