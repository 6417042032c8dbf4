//! A guided tour of portcullis: starts an axum app behind `LockoutLayer` and
//! `AuthLayer` on a free local port, sends it a series of requests with a
//! real HTTP client, prints what came back, and checks every answer.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! 1. **AuthLayer.** A public route, no credential, a good bearer token, a
//!    good session cookie, a malformed `Authorization` header, an unknown
//!    token, and two different credentials at once.
//! 2. **LockoutLayer** (3 failed attempts lock a client out for 30 s). The
//!    unknown token above was the first failure; two more lock the client
//!    out, and from then on it gets `429 Too Many Requests` with
//!    `Retry-After`, even with a valid token, which never reaches the
//!    validator. A second client, from another address, still gets through.
//! 3. **Leases.** The second client opens a Server-Sent Events stream and
//!    signs out (`POST /logout`) with the same token: the stream ends within
//!    a second, and the token is refused from then on.
//! 4. **Login protection.** Alice signs in from her laptop (127.0.0.2) and
//!    gets a device cookie. An attacker guesses her password from three
//!    other addresses: her account is locked for clients without her device
//!    cookie, so even the right password from a fourth address is refused;
//!    Alice, with her device cookie, still signs in.
//!
//! The server listens on 127.0.0.1; the other clients connect from
//! 127.0.0.2 to 127.0.0.6. Linux routes all of 127.0.0.0/8 to the loopback
//! interface; on macOS add the addresses first
//! (`sudo ifconfig lo0 alias 127.0.0.2`, and so on).
//!
//! The tables show each status with the headers a client acts on
//! (`WWW-Authenticate`, `Retry-After`) and the subject the handler saw. The
//! demo exits non-zero, naming the request, if any answer is not the
//! expected one, so running it is a test.

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{self, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    process::ExitCode,
    time::Duration,
};

use axum::{
    Json, Router,
    response::sse::{Event, Sse},
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderName, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use portcullis::{
    AuthLayer, Credential, ValidationError, Validator,
    body_key::BodyKeyLayer,
    extract::{Bearer, Cookie, Extractor, Header},
    integration::axum::Identity,
    lease::Lease,
    lockout::{LockoutLayer, Policy},
    reject::DefaultRenderer,
    revoke::{Revocable, Revocations},
    stack::Stack,
    validate::{CachingValidator, ExpiresAt},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

/// The caller, as the validator knows it.
#[derive(Clone, Debug)]
struct User {
    subject: String,
}

/// Demo tokens do not expire by themselves...
impl ExpiresAt for User {
    fn expires_at(&self) -> Option<tokio::time::Instant> {
        None
    }
}

/// ...and can be revoked by secret or by subject.
impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(&self.subject)
    }
}

/// The demo tokens. A real service would ask its database or identity
/// provider here.
struct DemoTokens(HashMap<&'static str, &'static str>);

impl Validator for DemoTokens {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        match self.0.get(credential.secret()) {
            Some(subject) => Ok(User {
                subject: (*subject).to_owned(),
            }),
            None => Err(ValidationError::invalid()),
        }
    }
}

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";

const CHALLENGE: &str = r#"Bearer realm="demo""#;
const INVALID_REQUEST: &str = r#"Bearer realm="demo", error="invalid_request", error_description="the credential is malformed""#;
const AMBIGUOUS: &str = r#"Bearer realm="demo", error="invalid_request", error_description="the request carries more than one credential""#;
const INVALID_TOKEN: &str = r#"Bearer realm="demo", error="invalid_token", error_description="the access token is invalid""#;

async fn me(Identity(user): Identity<User>) -> Json<Value> {
    Json(json!({ "subject": user.subject }))
}

/// An event every 250 ms until the credential is revoked.
async fn events(
    Identity(user): Identity<User>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, std::convert::Infallible>>> {
    use tokio_stream::StreamExt as _;
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
        Duration::from_millis(250),
    ));
    Sse::new(ticks.map(move |_| Ok(Event::default().data(user.subject.clone()))))
}

/// Signs out: revokes the credential presented, in every carrier.
async fn logout(lease: Lease) -> StatusCode {
    match lease.revoke().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Failed attempts that lock a client out.
const MAX_FAILURES: u32 = 3;
/// How long the first lockout lasts.
const LOCKOUT: Duration = Duration::from_secs(30);

/// The second client's address (the first one connects from 127.0.0.1).
const SECOND_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The app under test: `/health` is public, `/me` needs a credential, and
/// clients with too many failed attempts are locked out.
fn app() -> Router {
    let tokens = DemoTokens(HashMap::from([(ALICE, "alice"), (BOB, "bob")]));
    // Revoked credentials are refused (the cache checks every answer) and
    // end their streams (leases).
    let revocations = Revocations::new();
    let validator = CachingValidator::builder(tokens)
        .revocations(&revocations)
        .build()
        .expect("the demo cache is valid: default capacity and ttl");
    let auth = AuthLayer::new(validator)
        .extractor(
            Extractor::new(Bearer::new())
                .or(Cookie::new("session"))
                .or(Header::new(HeaderName::from_static("x-api-key"))),
        )
        .leases(&revocations)
        .renderer(DefaultRenderer::new().realm("demo"));

    // Keyed by the client's address (the socket peer: the server is run
    // with connect info). It counts the failures `AuthLayer` reports.
    let policy = Policy::builder()
        .max_failures(MAX_FAILURES)
        .lockout(LOCKOUT)
        .build()
        .expect("the demo policy is valid: 3 failures, a 30 s lockout");
    let lockout = LockoutLayer::builder(policy).renderer(DefaultRenderer::new().realm("demo"));

    // Login protection: the account a login is for, from the form, limits
    // clients without a device cookie for it; a device cookie is counted
    // on its own.
    let login = login::Login::new();
    let lockout = login.protect(lockout);

    // `Stack` puts the layers in order: `LockoutLayer` answers a locked-out
    // client before `AuthLayer` (and its validator) runs.
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/me", get(me))
        .route("/events", get(events))
        .route("/logout", post(logout))
        .merge(login.routes())
        .layer(
            Stack::new(
                auth.public(|parts| parts.uri.path() == "/health" || parts.uri.path() == "/login"),
            )
            .lockout(lockout)
            .body_key(BodyKeyLayer::new("username", |parts| {
                parts.uri.path() == "/login"
            })),
        )
}

/// The login form of section 4.
mod login {
    use axum::{Extension, Form, Router, extract::State, response::IntoResponse, routing::post};
    use http::{StatusCode, header};
    use portcullis::{
        ClientIp,
        lockout::{DeviceCookies, Failed, LockoutBuilder, LockoutLayer, Policy, Succeeded},
        reject::DefaultRenderer,
    };
    use serde::Deserialize;

    /// Failed logins that lock an account for clients without its device
    /// cookie.
    pub(super) const ACCOUNT_MAX_FAILURES: u32 = 3;

    #[derive(Clone)]
    pub(super) struct Login {
        devices: DeviceCookies,
    }

    #[derive(Deserialize)]
    struct Credentials {
        username: String,
        password: String,
    }

    impl Login {
        pub(super) fn new() -> Self {
            Self {
                devices: DeviceCookies::random("device").expect("the OS has a random source"),
            }
        }

        pub(super) fn protect(
            &self,
            lockout: LockoutBuilder<ClientIp, DefaultRenderer>,
        ) -> LockoutLayer<ClientIp, DefaultRenderer> {
            let account = Policy::builder()
                .max_failures(ACCOUNT_MAX_FAILURES)
                .build()
                .expect("the demo policy is valid");
            lockout
                .also_key(self.devices.untrusted_key(), account)
                .also_key(self.devices.key(), Policy::default())
                .build()
                .expect("the demo lockout is valid")
        }

        pub(super) fn routes(&self) -> Router {
            Router::new()
                .route("/login", post(login))
                .with_state(self.clone())
        }
    }

    async fn login(State(login): State<Login>, Form(form): Form<Credentials>) -> impl IntoResponse {
        if form.username == "alice" && form.password == "wonderland" {
            let device = login.devices.issue(&form.username).expect("random source");
            // The account's sign-in: the only success the lockout counts.
            Ok((
                [(header::SET_COOKIE, device)],
                Extension(Succeeded),
                StatusCode::OK,
            ))
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                Extension(Failed::guess(&form.username, &form.password)),
            ))
        }
    }
}

/// Which client sends a request.
#[derive(Clone, Copy)]
enum From {
    /// Connects from 127.0.0.1.
    First,
    /// Connects from 127.0.0.2.
    Second,
}

/// One request of the tour and the answer it must get.
struct Step {
    from: From,
    path: &'static str,
    what: &'static str,
    headers: Vec<(HeaderName, String)>,
    status: StatusCode,
    subject: Option<&'static str>,
    www_authenticate: Option<&'static str>,
    /// Whole seconds; a range because the clock runs while the tour does.
    retry_after: Option<RangeInclusive<u64>>,
}

impl Step {
    fn new(path: &'static str, what: &'static str, status: StatusCode) -> Self {
        Self {
            from: From::First,
            path,
            what,
            headers: Vec::new(),
            status,
            subject: None,
            www_authenticate: None,
            retry_after: None,
        }
    }

    fn from(mut self, from: From) -> Self {
        self.from = from;
        self
    }

    /// Expects `Retry-After` of at most `max` seconds (and at least 1).
    fn retry_after(mut self, max: Duration) -> Self {
        self.retry_after = Some(1..=max.as_secs());
        self
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn subject(mut self, subject: &'static str) -> Self {
        self.subject = Some(subject);
        self
    }

    fn challenge(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

/// What came back, reduced to what the table shows.
struct Seen {
    status: StatusCode,
    subject: Option<String>,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn send(client: &HttpClient, base: &str, step: &Step) -> Result<Seen, String> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(format!("{base}{}", step.path));
    for (name, value) in &step.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response =
        client
            .request(request)
            .await
            .map_err(|e| match std::error::Error::source(&e) {
                Some(cause) => format!("request failed: {e}: {cause}"),
                None => format!("request failed: {e}"),
            })?;
    let header = |name: HeaderName| {
        response
            .headers()
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let status = response.status();
    let www_authenticate = header(header::WWW_AUTHENTICATE);
    let retry_after = header(header::RETRY_AFTER);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("cannot read the body: {e}"))?
        .to_bytes();
    let subject = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json.get("subject")?.as_str().map(str::to_owned));
    Ok(Seen {
        status,
        subject,
        www_authenticate,
        retry_after,
    })
}

/// Compares an answer with the expectation; `Err` says what differs.
fn check(step: &Step, seen: &Seen) -> Result<(), String> {
    let mut problems = Vec::new();
    if seen.status != step.status {
        problems.push(format!("status {} (expected {})", seen.status, step.status));
    }
    if seen.subject.as_deref() != step.subject {
        problems.push(format!(
            "subject {:?} (expected {:?})",
            seen.subject, step.subject
        ));
    }
    if seen.www_authenticate.as_deref() != step.www_authenticate {
        problems.push(format!(
            "WWW-Authenticate {:?} (expected {:?})",
            seen.www_authenticate, step.www_authenticate
        ));
    }
    let retry_after = seen
        .retry_after
        .as_deref()
        .map(|value| value.parse::<u64>().ok());
    let retry_after_ok = match (&step.retry_after, retry_after) {
        (None, None) => true,
        (Some(range), Some(Some(secs))) => range.contains(&secs),
        _ => false,
    };
    if !retry_after_ok {
        let expected = match &step.retry_after {
            Some(range) => format!("{} to {} s", range.start(), range.end()),
            None => "none".to_owned(),
        };
        problems.push(format!(
            "Retry-After {:?} (expected {expected})",
            seen.retry_after
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// The first row of every table.
fn heading() -> [String; 7] {
    [
        "client".to_owned(),
        "request".to_owned(),
        String::new(),
        "status".to_owned(),
        "subject".to_owned(),
        "Retry-After".to_owned(),
        "WWW-Authenticate".to_owned(),
    ]
}

/// The width of each column over all `tables`, so they line up.
fn column_widths<const N: usize>(tables: &[Vec<[String; N]>]) -> [usize; N] {
    let mut widths = [0; N];
    for row in tables.iter().flatten() {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

/// Formats rows as left-aligned columns separated by two spaces.
fn table<const N: usize>(rows: &[[String; N]], widths: [usize; N]) -> String {
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo failed: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    let base = format!("http://{addr}");
    println!(
        "portcullis demo: LockoutLayer and AuthLayer in front of an axum app, listening on {base}"
    );

    let cookie = |token: &str| format!("session={token}");
    let auth_steps = vec![
        Step::new("/health", "public route", StatusCode::OK),
        Step::new("/me", "no credential", StatusCode::UNAUTHORIZED).challenge(CHALLENGE),
        Step::new("/me", "good bearer token (alice)", StatusCode::OK)
            .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
            .subject("alice"),
        Step::new("/me", "good session cookie (bob)", StatusCode::OK)
            .header(header::COOKIE, cookie(BOB))
            .subject("bob"),
        Step::new(
            "/me",
            "malformed Authorization header",
            StatusCode::BAD_REQUEST,
        )
        .header(header::AUTHORIZATION, "Bearer not/a,token")
        .challenge(INVALID_REQUEST),
        Step::new(
            "/me",
            "unknown bearer token (failure 1 of 3)",
            StatusCode::UNAUTHORIZED,
        )
        .header(header::AUTHORIZATION, "Bearer no-such-token")
        .challenge(INVALID_TOKEN),
        Step::new(
            "/me",
            "bearer (alice) + cookie (bob)",
            StatusCode::BAD_REQUEST,
        )
        .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
        .header(header::COOKIE, cookie(BOB))
        .challenge(AMBIGUOUS),
    ];
    // Only rejected credentials count: the missing and malformed ones above
    // did not, the unknown token did.
    let lockout_steps = vec![
        Step::new(
            "/me",
            "unknown bearer token (failure 2 of 3)",
            StatusCode::UNAUTHORIZED,
        )
        .header(header::AUTHORIZATION, "Bearer guess-2")
        .challenge(INVALID_TOKEN),
        Step::new(
            "/me",
            "unknown bearer token (failure 3 of 3)",
            StatusCode::UNAUTHORIZED,
        )
        .header(header::AUTHORIZATION, "Bearer guess-3")
        .challenge(INVALID_TOKEN),
        Step::new(
            "/me",
            "unknown bearer token, locked out",
            StatusCode::TOO_MANY_REQUESTS,
        )
        .header(header::AUTHORIZATION, "Bearer guess-4")
        .retry_after(LOCKOUT),
        Step::new(
            "/me",
            "good bearer token (alice), locked out",
            StatusCode::TOO_MANY_REQUESTS,
        )
        .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
        .retry_after(LOCKOUT),
        Step::new(
            "/me",
            "good bearer token (alice), other client",
            StatusCode::OK,
        )
        .from(From::Second)
        .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
        .subject("alice"),
    ];
    let sections = [
        (
            "1. AuthLayer: where the credential comes from, and how refusals look",
            auth_steps,
        ),
        (
            "2. LockoutLayer: 3 failed attempts lock a client out for 30 s",
            lockout_steps,
        ),
    ];

    let first = client_from(Ipv4Addr::LOCALHOST);
    let second = client_from(SECOND_CLIENT);
    let mut failures = Vec::new();
    let mut answers = 0;
    let mut tables = Vec::new();
    for (_, steps) in &sections {
        let mut rows = vec![heading()];
        for step in steps {
            let (client, from) = match step.from {
                From::First => (&first, Ipv4Addr::LOCALHOST),
                From::Second => (&second, SECOND_CLIENT),
            };
            let seen = send(client, &base, step)
                .await
                .map_err(|e| match step.from {
                    From::First => format!("{e} (client {from})"),
                    From::Second => format!(
                        "{e} (client {from}; if that address is not on the loopback \
                         interface, add it, e.g. on macOS: sudo ifconfig lo0 alias {from})"
                    ),
                })?;
            answers += 1;
            if let Err(problem) = check(step, &seen) {
                failures.push(format!(
                    "GET {} ({}, from {from}): {problem}",
                    step.path, step.what
                ));
            }
            let dash = || "-".to_owned();
            rows.push([
                from.to_string(),
                format!("GET {}", step.path),
                step.what.to_owned(),
                status_text(seen.status),
                seen.subject.unwrap_or_else(dash),
                seen.retry_after.unwrap_or_else(dash),
                seen.www_authenticate.unwrap_or_else(dash),
            ]);
        }
        tables.push(rows);
    }
    let (rows, checked, problems) = sign_out(&second, &base).await?;
    answers += checked;
    failures.extend(problems);
    tables.push(rows);
    let titles = sections
        .iter()
        .map(|(title, _)| *title)
        .chain(["3. Leases: signing out ends the open stream within a second"]);
    let widths = column_widths(&tables);
    for (title, rows) in titles.zip(&tables) {
        println!();
        println!("{title}");
        println!();
        print!("{}", table(rows, widths));
    }
    println!();
    let _ = io::stdout().flush();

    let (login_answers, login_failures) = login_tour(&base).await?;
    answers += login_answers;
    failures.extend(login_failures);

    // Idle pooled connections would keep the graceful shutdown waiting.
    drop((first, second));
    let _ = stop.send(());
    server
        .await
        .map_err(|e| format!("server task failed: {e}"))?
        .map_err(|e| format!("server failed: {e}"))?;

    if failures.is_empty() {
        println!("all {answers} answers were as expected");
        Ok(())
    } else {
        Err(format!(
            "{} unexpected answer(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// An HTTP client whose connections leave from `local` (a loopback address
/// of this machine), so the server sees it as that client.
fn client_from(local: Ipv4Addr) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(IpAddr::V4(local)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Section 4: POSTs to `/login` from several addresses; returns the number
/// of answers and what was not as expected.
async fn login_tour(base: &str) -> Result<(usize, Vec<String>), String> {
    use http_body_util::Full;

    let laptop = Ipv4Addr::new(127, 0, 0, 2);
    let steps: [(Ipv4Addr, &str, &str, bool, StatusCode); 6] = [
        (
            laptop,
            "alice signs in, gets a device cookie",
            "wonderland",
            false,
            StatusCode::OK,
        ),
        (
            Ipv4Addr::new(127, 0, 0, 3),
            "attacker guesses (1 of 3)",
            "123456",
            false,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Ipv4Addr::new(127, 0, 0, 4),
            "attacker guesses (2 of 3)",
            "password",
            false,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Ipv4Addr::new(127, 0, 0, 5),
            "attacker guesses (3 of 3)",
            "qwerty",
            false,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Ipv4Addr::new(127, 0, 0, 6),
            "the right password, no device cookie",
            "wonderland",
            false,
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (
            laptop,
            "alice, with her device cookie",
            "wonderland",
            true,
            StatusCode::OK,
        ),
    ];
    let mut device: Option<String> = None;
    let mut failures = Vec::new();
    let mut rows = vec![[
        "client".to_owned(),
        "request".to_owned(),
        String::new(),
        "status".to_owned(),
        "Retry-After".to_owned(),
    ]];
    for (from, what, password, with_device, expected) in steps {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(IpAddr::V4(from)));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let mut request = Request::post(format!("{base}/login"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if with_device && let Some(cookie) = &device {
            request = request.header(header::COOKIE, cookie);
        }
        let body = format!("username=alice&password={password}");
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e} (client {from})"))?;
        let status = response.status();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let set = String::from_utf8_lossy(set.as_bytes()).into_owned();
            device = set.split(';').next().map(str::to_owned);
        }
        let retry_after = response.headers().get(header::RETRY_AFTER).map_or_else(
            || "-".to_owned(),
            |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
        if status != expected {
            failures.push(format!(
                "POST /login ({what}, from {from}): status {status} (expected {expected})"
            ));
        }
        rows.push([
            from.to_string(),
            "POST /login".to_owned(),
            what.to_owned(),
            status_text(status),
            retry_after,
        ]);
    }
    let widths = column_widths(&[rows.clone()]);
    println!(
        "4. Login protection: {} wrong passwords lock an account for clients without its device cookie",
        login::ACCOUNT_MAX_FAILURES
    );
    println!();
    print!("{}", table(&rows, widths));
    println!();
    Ok((rows.len() - 1, failures))
}

/// Section 3: the second client opens `/events` with bob's token, signs out
/// with it, and the stream ends; then the token is refused. Returns the
/// table rows, the number of answers checked, and what was unexpected.
async fn sign_out(
    client: &HttpClient,
    base: &str,
) -> Result<(Vec<[String; 7]>, usize, Vec<String>), String> {
    let from = SECOND_CLIENT.to_string();
    let bearer = format!("Bearer {BOB}");
    let request = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header(header::AUTHORIZATION, &bearer)
            .body(Empty::new())
            .map_err(|e| format!("cannot build the request: {e}"))
    };
    let failed =
        |e: hyper_util::client::legacy::Error| format!("request failed: {e} (client {from})");
    let dash = || "-".to_owned();
    let row = |request: &str, what: &str, status: String| {
        [
            from.clone(),
            request.to_owned(),
            what.to_owned(),
            status,
            dash(),
            dash(),
            dash(),
        ]
    };
    let mut rows = vec![heading()];
    let mut problems = Vec::new();

    let stream = client
        .request(request(Method::GET, "/events")?)
        .await
        .map_err(failed)?;
    let status = stream.status();
    let mut events = stream.into_body();
    let first = events.frame().await.is_some_and(|frame| frame.is_ok());
    if status != StatusCode::OK || !first {
        problems.push(format!(
            "GET /events (bob): status {status}, first event: {first}"
        ));
    }
    rows.push(row(
        "GET /events",
        "open a stream (bob)",
        status_text(status),
    ));

    let signed_out = client
        .request(request(Method::POST, "/logout")?)
        .await
        .map_err(failed)?;
    let at = std::time::Instant::now();
    if signed_out.status() != StatusCode::NO_CONTENT {
        problems.push(format!(
            "POST /logout (bob): status {}",
            signed_out.status()
        ));
    }
    rows.push(row(
        "POST /logout",
        "sign out (bob)",
        status_text(signed_out.status()),
    ));

    // Events already on their way may still arrive; then the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = events.frame().await {}
    })
    .await
    .is_ok();
    let after = at.elapsed();
    if !ended || after >= Duration::from_secs(1) {
        problems.push(format!(
            "GET /events (bob): still open {after:?} after signing out"
        ));
    }
    rows.push(row(
        "GET /events",
        "the open stream",
        format!("ended {:.2} s after sign-out", after.as_secs_f64()),
    ));

    let step = Step::new(
        "/me",
        "bob's token after sign-out",
        StatusCode::UNAUTHORIZED,
    )
    .from(From::Second)
    .header(header::AUTHORIZATION, bearer.clone())
    .challenge(INVALID_TOKEN);
    let seen = send(client, base, &step).await?;
    if let Err(problem) = check(&step, &seen) {
        problems.push(format!("GET /me ({}, from {from}): {problem}", step.what));
    }
    rows.push([
        from.clone(),
        "GET /me".to_owned(),
        step.what.to_owned(),
        status_text(seen.status),
        seen.subject.unwrap_or_else(dash),
        seen.retry_after.unwrap_or_else(dash),
        seen.www_authenticate.unwrap_or_else(dash),
    ]);
    Ok((rows, 4, problems))
}
