//! A guided tour of portcullis: starts an axum app behind `AuthLayer` on a
//! free local port, sends it a series of requests with a real HTTP client,
//! prints what came back, and checks every answer.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The requests: a public route, no credential, a good bearer token, a good
//! session cookie, a malformed `Authorization` header, an unknown token, and
//! two different credentials at once. The table shows each status with the
//! headers a client acts on (`WWW-Authenticate`, `Retry-After`) and the
//! subject the handler saw. The demo exits non-zero, naming the request, if
//! any answer is not the expected one, so running it is a test.

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{self, Write as _},
    net::SocketAddr,
    process::ExitCode,
};

use axum::{Json, Router, routing::get};
use bytes::Bytes;
use http::{HeaderName, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use portcullis::{
    AuthLayer, Credential, ValidationError, Validator,
    extract::{Bearer, Cookie, Extractor, Header},
    integration::axum::Identity,
    reject::DefaultRenderer,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

/// The caller, as the validator knows it.
#[derive(Clone, Debug)]
struct User {
    subject: String,
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

/// The app under test: `/health` is public, `/me` needs a credential.
fn app() -> Router {
    let tokens = DemoTokens(HashMap::from([(ALICE, "alice"), (BOB, "bob")]));
    let auth = AuthLayer::new(tokens)
        .extractor(
            Extractor::new(Bearer::new())
                .or(Cookie::new("session"))
                .or(Header::new(HeaderName::from_static("x-api-key"))),
        )
        .public(|parts| parts.uri.path() == "/health")
        .renderer(DefaultRenderer::new().realm("demo"));

    // ===== LOCKOUT (to come) ================================================
    // `LockoutLayer` goes here, outside `AuthLayer`:
    //     .layer(auth).layer(LockoutLayer::new(..))
    // See the matching section in `main`.
    // ========================================================================
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/me", get(me))
        .layer(auth)
}

/// One request of the tour and the answer it must get.
struct Step {
    path: &'static str,
    what: &'static str,
    headers: Vec<(HeaderName, String)>,
    status: StatusCode,
    subject: Option<&'static str>,
    www_authenticate: Option<&'static str>,
    retry_after: Option<&'static str>,
}

impl Step {
    fn new(path: &'static str, what: &'static str, status: StatusCode) -> Self {
        Self {
            path,
            what,
            headers: Vec::new(),
            status,
            subject: None,
            www_authenticate: None,
            retry_after: None,
        }
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
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
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
    if seen.retry_after.as_deref() != step.retry_after {
        problems.push(format!(
            "Retry-After {:?} (expected {:?})",
            seen.retry_after, step.retry_after
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

/// Formats rows as left-aligned columns separated by two spaces.
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
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
    println!("portcullis demo: AuthLayer in front of an axum app, listening on {base}");
    println!();

    let cookie = |token: &str| format!("session={token}");
    let steps = [
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
        Step::new("/me", "unknown bearer token", StatusCode::UNAUTHORIZED)
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

    // ===== LOCKOUT (to come) ================================================
    // With `LockoutLayer` in `app()`, this section will send wrong tokens from
    // one client until it gets 429 with `Retry-After`, then show that a valid
    // credential from that client is still refused (429) while a second
    // client (another loopback address) gets through (200).
    // ========================================================================

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut rows = vec![[
        "request".to_owned(),
        String::new(),
        "status".to_owned(),
        "subject".to_owned(),
        "Retry-After".to_owned(),
        "WWW-Authenticate".to_owned(),
    ]];
    let mut failures = Vec::new();
    for step in &steps {
        let seen = send(&client, &base, step).await?;
        if let Err(problem) = check(step, &seen) {
            failures.push(format!("GET {} ({}): {problem}", step.path, step.what));
        }
        let dash = || "-".to_owned();
        rows.push([
            format!("GET {}", step.path),
            step.what.to_owned(),
            status_text(seen.status),
            seen.subject.unwrap_or_else(dash),
            seen.retry_after.unwrap_or_else(dash),
            seen.www_authenticate.unwrap_or_else(dash),
        ]);
    }
    print!("{}", table(&rows));
    println!();
    let _ = io::stdout().flush();

    // Idle pooled connections would keep the graceful shutdown waiting.
    drop(client);
    let _ = stop.send(());
    server
        .await
        .map_err(|e| format!("server task failed: {e}"))?
        .map_err(|e| format!("server failed: {e}"))?;

    if failures.is_empty() {
        println!("all {} answers were as expected", steps.len());
        Ok(())
    } else {
        Err(format!(
            "{} unexpected answer(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}
