//! The examples, built and run as processes and checked with real clients,
//! the way a user runs them: `PORTCULLIS_ADDR=127.0.0.1:0`, read the
//! `listening on http://ADDR` line, send requests, then SIGTERM.
#![cfg(unix)]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, ChildStdout, Command},
    task::JoinHandle,
    time::timeout,
};

/// Guards against a hung child process; never decides an outcome.
const WATCHDOG: Duration = Duration::from_secs(120);

/// The demo credentials of the examples, which must never be printed.
const SECRETS: [&str; 2] = ["alice-token", "bob-token"];

/// Builds example `name` with the features this test was built with and
/// returns the path of its executable.
fn example_binary(name: &str) -> PathBuf {
    let features: Vec<&str> = [
        (cfg!(feature = "axum"), "axum"),
        (cfg!(feature = "cookie"), "cookie"),
        (cfg!(feature = "tonic"), "tonic"),
        (cfg!(feature = "jwt"), "jwt"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "metrics"), "metrics"),
        (cfg!(feature = "test-util"), "test-util"),
        (cfg!(feature = "sessions"), "sessions"),
    ]
    .into_iter()
    .filter_map(|(on, feature)| on.then_some(feature))
    .collect();
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "--example",
            name,
        ])
        .args(["--no-default-features", "--features", &features.join(",")])
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == name
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

/// A running example server.
struct Server {
    child: Child,
    addr: SocketAddr,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<String>,
}

/// The example's command with `PORTCULLIS_ADDR=127.0.0.1:0`, the given
/// variables, and none of the test's own `PORTCULLIS_*` or `RUST_LOG`.
fn example_command(name: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(example_binary(name));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command
        .env("PORTCULLIS_ADDR", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    command
}

impl Server {
    async fn start(name: &str) -> Self {
        Self::start_with(name, &[]).await
    }

    async fn start_with(name: &str, env: &[(&str, &str)]) -> Self {
        let mut child = example_command(name, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        timeout(WATCHDOG, stdout.read_line(&mut line))
            .await
            .expect("the example prints its address")
            .unwrap();
        let addr = line
            .strip_suffix('\n')
            .and_then(|line| line.strip_prefix("listening on http://"))
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// Sends SIGTERM and returns the exit status and everything the process
    /// printed after its address line (stdout) and at all (stderr).
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("the example is still running");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = timeout(WATCHDOG, self.child.wait())
            .await
            .expect("the example exits after SIGTERM")
            .unwrap();
        let mut output = String::new();
        self.stdout.read_to_string(&mut output).await.unwrap();
        output.push_str(&self.stderr.await.unwrap());
        (status, output)
    }
}

fn assert_no_secrets(output: &str) {
    assert_none_of(output, &SECRETS);
}

fn assert_none_of(output: &str, secrets: &[&str]) {
    // L1
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "output contains {secret}:\n{output}"
        );
    }
}

/// Whether `output` holds something shaped like a usable `demo_` API key.
#[cfg(all(feature = "axum", feature = "cookie"))]
fn contains_api_key(output: &str) -> bool {
    output.match_indices("demo_").any(|(at, prefix)| {
        output[at + prefix.len()..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count()
            >= 32
    })
}

/// Sends a request without a body, with the given headers.
async fn send(
    method: http::Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

/// The status, headers and whole body of `response`.
async fn read(response: http::Response<hyper::body::Incoming>) -> (StatusCode, HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// A GET with the given headers; returns status, headers and body.
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    read(send(http::Method::GET, addr, path, headers).await).await
}

/// A form POST (`application/x-www-form-urlencoded`); returns status,
/// headers and body.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn post_form(addr: SocketAddr, path: &str, form: &str) -> (StatusCode, HeaderMap, String) {
    post_form_with(addr, path, form, &[]).await
}

fn challenge(headers: &HeaderMap) -> &str {
    headers["www-authenticate"].to_str().unwrap()
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn the_demo_runs_its_tour_and_exits_successfully() {
    let output = timeout(
        WATCHDOG,
        Command::new(example_binary("demo"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes")
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("all 22 answers were as expected"),
        "{stdout}"
    );
    // The leases section: signing out ends the open stream (V3).
    assert!(stdout.contains("204 No Content"), "{stdout}");
    assert!(stdout.contains("s after sign-out"), "{stdout}");
    assert!(stdout.contains("401 Unauthorized"), "{stdout}");
    // The lockout section: the locked-out client, then the other one.
    assert!(stdout.contains("429 Too Many Requests"), "{stdout}");
    assert!(stdout.contains("127.0.0.2"), "{stdout}");
    // B15: the login section: the attacker is refused, alice signs in.
    assert!(
        stdout.contains("the right password, no device cookie  429"),
        "{stdout}"
    );
    assert!(
        stdout.contains("alice, with her device cookie         200 OK"),
        "{stdout}"
    );
    assert_no_secrets(&stdout);
    assert_no_secrets(&stderr);
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_answers_every_documented_request_and_stops_on_sigterm() {
    let server = Server::start("axum_api").await;
    let addr = server.addr;

    let (status, _, body) = get(addr, "/health", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    let (status, headers, _) = get(addr, "/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&headers), r#"Bearer realm="portcullis""#);

    for (header, value, subject) in [
        ("authorization", "Bearer alice-token", "alice"),
        ("cookie", "session=bob-token", "bob"),
        ("x-api-key", "alice-token", "alice"),
    ] {
        let (status, headers, body) = get(addr, "/me", &[(header, value)]).await;
        assert_eq!(status, StatusCode::OK, "{header}");
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json, serde_json::json!({ "subject": subject }));
    }

    let (status, headers, _) = get(addr, "/me", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&headers).starts_with(r#"Bearer realm="portcullis", error="invalid_token""#),
        "{}",
        challenge(&headers)
    );

    let (status, headers, _) = get(
        addr,
        "/me",
        &[
            ("authorization", "Bearer alice-token"),
            ("cookie", "session=bob-token"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(challenge(&headers).contains(r#"error="invalid_request""#));

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("credential rejected"), "{output}");
    assert_no_secrets(&output);
    // Without PORTCULLIS_API_KEY the key of ci-bot is generated, and only
    // its prefix is shown, with how to get a usable key.
    assert!(
        output.contains("generated demo_… (not shown)")
            && output.contains("set PORTCULLIS_API_KEY to a key you generated"),
        "{output}"
    );
    assert!(!contains_api_key(&output), "{output}");
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_admin_route_needs_the_admin_scope() {
    let server = Server::start("axum_api").await;
    let addr = server.addr;

    let (status, _, body) = get(addr, "/admin", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "subject": "alice", "scope": "admin" })
    );

    for (header, value) in [
        ("authorization", "Bearer bob-token"),
        ("cookie", "session=bob-token"),
    ] {
        let (status, headers, _) = get(addr, "/admin", &[(header, value)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header}");
        // P7
        assert_eq!(
            challenge(&headers),
            r#"Bearer realm="portcullis", error="insufficient_scope", error_description="the access token lacks the required scope", scope="admin""#
        );
    }

    let (status, headers, _) = get(addr, "/admin", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&headers), r#"Bearer realm="portcullis""#);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_no_secrets(&output);
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_login_issues_a_fresh_session_token_and_refuses_wrong_passwords() {
    let server = Server::start("axum_api").await;
    let addr = server.addr;

    let token = login(addr).await;
    assert!(
        token.starts_with("sess_") && token.len() >= 5 + 43,
        "{token}"
    );
    assert_ne!(login(addr).await, token, "every sign-in gets a fresh token");
    // B15: and a device cookie, signed, bound to the account.
    let (_, headers, _) = post_form(addr, "/login", "username=alice&password=wonderland").await;
    let device = headers.get_all("set-cookie").iter().nth(1).unwrap();
    let device = device.to_str().unwrap();
    assert!(
        device.starts_with("device=")
            && device.contains("HttpOnly")
            && device.contains("SameSite=Strict"),
        "{device}"
    );
    // The session token works in every carrier.
    for (header, value) in [
        ("cookie", format!("session={token}")),
        ("authorization", format!("Bearer {token}")),
        ("x-api-key", token.clone()),
    ] {
        let (status, _, body) = get(addr, "/me", &[(header, &value)]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"subject":"alice"}"#),
            "{header}"
        );
    }
    // Alice's session has her admin scope; the demo tokens keep working.
    let (status, _, _) = get(addr, "/admin", &[("cookie", &format!("session={token}"))]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(addr, "/me", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::OK);

    for form in [
        "username=alice&password=wrong",
        "username=bob&password=wonderland",
        "username=&password=",
    ] {
        let (status, headers, _) = post_form(addr, "/login", form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{form}");
        assert!(headers.get("set-cookie").is_none(), "{form}");
    }

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_no_secrets(&output);
    assert_none_of(&output, &["wonderland", &token]);
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_locks_out_a_client_after_max_failures_bad_logins() {
    let server = Server::start_with("axum_api", &[("PORTCULLIS_MAX_FAILURES", "2")]).await;
    let addr = server.addr;

    // B1: a missing credential and a malformed form are not failed attempts.
    let (status, _, _) = get(addr, "/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post_form(addr, "/login", "username=alice").await;
    assert!(
        status.is_client_error() && status != StatusCode::UNAUTHORIZED,
        "{status}"
    );

    // B14: the same wrong password again is not a new guess.
    for guess in ["guess-1", "guess-1", "guess-2"] {
        let form = format!("username=alice&password={guess}");
        let (status, _, _) = post_form(addr, "/login", &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // B3: locked out, even with the right password or a valid token.
    let retry_after =
        |headers: &HeaderMap| -> u64 { headers["retry-after"].to_str().unwrap().parse().unwrap() };
    let (status, headers, _) =
        post_form(addr, "/login", "username=alice&password=wonderland").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("set-cookie").is_none());
    assert!((1..=60).contains(&retry_after(&headers)), "{headers:?}");
    let (status, headers, _) = get(addr, "/me", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&retry_after(&headers)), "{headers:?}");

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("lockout: 2 failed attempts"), "{output}");
    assert_no_secrets(&output);
    assert_none_of(&output, &["wonderland"]);
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_locks_an_account_for_untrusted_clients_but_not_for_a_device_it_signed_in_from() {
    let server = Server::start_with(
        "axum_api",
        &[
            ("PORTCULLIS_MAX_FAILURES", "100"),
            ("PORTCULLIS_ACCOUNT_MAX_FAILURES", "2"),
        ],
    )
    .await;
    let addr = server.addr;

    // Alice signed in once from this browser: it has her device cookie.
    let (status, headers, _) =
        post_form(addr, "/login", "username=alice&password=wonderland").await;
    assert_eq!(status, StatusCode::OK);
    let device = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("device="))
        .unwrap();

    // B13: two distinct wrong passwords for `alice` lock the account for
    // clients without her device cookie, even with the right password…
    for guess in ["a", "b"] {
        let form = format!("username=Alice&password={guess}");
        let (status, _, _) = post_form(addr, "/login", &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, _) =
        post_form(addr, "/login", "username=alice&password=wonderland").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    // …not other accounts, nor signed-in users.
    let (status, _, _) = post_form(addr, "/login", "username=bob&password=x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(addr, "/me", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(status, StatusCode::OK);

    // B15: her browser, with the device cookie, still signs in.
    let (status, _, _) = post_form_with(
        addr,
        "/login",
        "username=alice&password=wonderland",
        &[("cookie", &device)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // C1: a cross-site form post to /login or /logout is refused, uncounted.
    for path in ["/login", "/logout"] {
        let (status, _, _) = post_form_with(
            addr,
            path,
            "username=bob&password=y",
            &[
                ("sec-fetch-site", "cross-site"),
                ("cookie", "session=alice-token"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, headers, _) =
        post_form_with(addr, "/logout", "", &[("cookie", "session=alice-token")]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_no_secrets(&output);
    assert_none_of(&output, &["wonderland"]);
}

/// A form POST with extra headers.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn post_form_with(
    addr: SocketAddr,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    use http_body_util::Full;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    read(client.request(request).await.unwrap()).await
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_rate_limits_each_client_when_configured() {
    let server = Server::start_with(
        "axum_api",
        &[
            ("PORTCULLIS_RATE_PER_SEC", "1"),
            ("PORTCULLIS_RATE_BURST", "2"),
        ],
    )
    .await;
    let addr = server.addr;

    // A burst of 2, then one request a second: the third quick request is
    // refused (three local requests take far less than the second it
    // would take to earn another).
    for _ in 0..2 {
        let (status, _, _) = get(addr, "/health", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, _) = get(addr, "/health", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output.contains("rate limit: 1/s per client, burst 2"),
        "{output}"
    );
}

/// A JWT secret that must never be printed (at least 32 bytes, for HS256).
#[cfg(all(feature = "axum", feature = "cookie"))]
const JWT_SECRET: &str = "jwt-secret-canary-0123456789abcdef-0123";

/// An HS256 JWT over `claims` plus an `exp` ten minutes from now.
#[cfg(all(feature = "axum", feature = "cookie", feature = "jwt"))]
fn mint_jwt(secret: &str, mut claims: serde_json::Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["exp"] = (now + 600).into();
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_accepts_the_api_key_and_jwt_secret_from_the_environment_without_printing_them() {
    let api_key = portcullis::validate::GeneratedKey::new("demo_").unwrap();
    let api_key = api_key.secret();
    let server = Server::start_with(
        "axum_api",
        &[
            ("PORTCULLIS_API_KEY", api_key),
            ("PORTCULLIS_JWT_SECRET", JWT_SECRET),
        ],
    )
    .await;
    let addr = server.addr;

    let subject = |body: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["subject"].clone()
    };

    // The key from the environment is ci-bot's, from any credential source.
    for (header, value) in [
        ("x-api-key", api_key.to_owned()),
        ("authorization", format!("Bearer {api_key}")),
    ] {
        let (status, _, body) = get(addr, "/me", &[(header, &value)]).await;
        assert_eq!(status, StatusCode::OK, "{header}");
        assert_eq!(subject(&body), "ci-bot");
    }
    let (status, headers, _) = get(addr, "/admin", &[("x-api-key", api_key)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge(&headers).ends_with(r#"scope="admin""#));
    // Another key with the prefix goes to the API-key table only, and is refused.
    let other = portcullis::validate::GeneratedKey::new("demo_").unwrap();
    let (status, _, _) = get(addr, "/me", &[("x-api-key", other.secret())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The demo tokens keep working next to the key.
    let (status, _, body) = get(addr, "/me", &[("x-api-key", "bob-token")]).await;
    assert_eq!((status, subject(&body)), (StatusCode::OK, "bob".into()));

    #[cfg(feature = "jwt")]
    let tokens = {
        let claims = |aud: &str, scope: &str| {
            serde_json::json!({
                "sub": "carol", "iss": "portcullis-demo", "aud": aud, "scope": scope,
            })
        };
        let reader = mint_jwt(JWT_SECRET, claims("portcullis-api", "read"));
        let admin = mint_jwt(JWT_SECRET, claims("portcullis-api", "read admin"));
        let wrong_audience = mint_jwt(JWT_SECRET, claims("another-api", "admin"));
        let wrong_secret = mint_jwt(
            "another-secret-of-thirty-two-bytes-or-more",
            claims("portcullis-api", "admin"),
        );
        let bearer = |token: &str| format!("Bearer {token}");

        let (status, _, body) = get(addr, "/me", &[("authorization", &bearer(&reader))]).await;
        assert_eq!((status, subject(&body)), (StatusCode::OK, "carol".into()));
        // JWT scopes come from the `scope` claim.
        let (status, headers, _) =
            get(addr, "/admin", &[("authorization", &bearer(&reader))]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(challenge(&headers).ends_with(r#"scope="admin""#));
        let (status, _, body) = get(addr, "/admin", &[("authorization", &bearer(&admin))]).await;
        assert_eq!((status, subject(&body)), (StatusCode::OK, "carol".into()));

        for token in [&wrong_audience, &wrong_secret] {
            let (status, headers, _) = get(addr, "/me", &[("authorization", &bearer(token))]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(challenge(&headers).contains(r#"error="invalid_token""#));
        }
        [reader, admin, wrong_audience, wrong_secret]
    };
    #[cfg(not(feature = "jwt"))]
    let tokens: [String; 0] = [];

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("from PORTCULLIS_API_KEY"), "{output}");
    if cfg!(feature = "jwt") {
        assert!(
            output.contains("aud=portcullis-api are accepted"),
            "{output}"
        );
    } else {
        assert!(output.contains("this build has no JWT support"), "{output}");
    }
    assert_no_secrets(&output);
    assert_none_of(&output, &[api_key, JWT_SECRET]);
    assert_none_of(
        &output,
        &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_refuses_unusable_settings_with_exit_code_2() {
    // Secrets carry "canary", which must not be echoed; the other settings
    // are named in the message with the value that was refused.
    let mut bad: Vec<(&[(&str, &str)], &str)> = vec![
        (
            &[("PORTCULLIS_API_KEY", "demo_short-canary")],
            "PORTCULLIS_API_KEY must be",
        ),
        (
            &[(
                "PORTCULLIS_API_KEY",
                "nodemo-canary-0123456789abcdef0123456789abcdef",
            )],
            "PORTCULLIS_API_KEY must be",
        ),
        (
            &[("PORTCULLIS_MAX_FAILURES", "0")],
            r#"PORTCULLIS_MAX_FAILURES must be a whole number, at least 1; got "0""#,
        ),
        (
            &[("PORTCULLIS_LOCKOUT_SECS", "1m")],
            r#"PORTCULLIS_LOCKOUT_SECS must be a whole number, at least 1; got "1m""#,
        ),
        (
            &[("PORTCULLIS_CAPACITY", "-5")],
            "PORTCULLIS_CAPACITY must be a whole number",
        ),
        (
            &[("PORTCULLIS_TRUSTED_PROXIES", "10.0.0.0/8, 10.1.2.3/8")],
            r#"PORTCULLIS_TRUSTED_PROXIES: invalid address range "10.1.2.3/8""#,
        ),
        (
            &[("PORTCULLIS_RATE_PER_SEC", "0")],
            "PORTCULLIS_RATE_PER_SEC must be a whole number, at least 1",
        ),
        (
            &[("PORTCULLIS_RATE_BURST", "5")],
            "PORTCULLIS_RATE_BURST is set without PORTCULLIS_RATE_PER_SEC",
        ),
    ];
    if cfg!(feature = "jwt") {
        bad.push((
            &[("PORTCULLIS_JWT_SECRET", "short-canary")],
            "at least 32 bytes",
        ));
    }
    for (env, message) in bad {
        let output = timeout(WATCHDOG, example_command("axum_api", env).output())
            .await
            .expect("the example exits")
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}\n{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(message), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("canary"), "{stderr}");
    }
}

#[tokio::test]
async fn hyper_plain_answers_every_documented_request_and_stops_on_sigterm() {
    let server = Server::start("hyper_plain").await;
    let addr = server.addr;

    let (status, _, body) = get(addr, "/health", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    let (status, headers, _) = get(addr, "/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&headers), r#"Bearer realm="api""#);

    let (status, _, body) = get(addr, "/me", &[("authorization", "Bearer alice-token")]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"subject":"alice"}"#)
    );

    let (status, headers, _) = get(addr, "/me", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&headers).contains(r#"error="invalid_token""#));

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_no_secrets(&output);
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn tonic_health_requires_alice_token_and_stops_on_sigterm() {
    use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let server = Server::start("tonic_health").await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |service: &str, authorization: Option<&'static str>| {
        let mut request = Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", MetadataValue::from_static(value));
        }
        request
    };

    for service in ["", "grpc.health.v1.Health"] {
        let response = client
            .check(check(service, Some("Bearer alice-token")))
            .await
            .unwrap();
        assert_eq!(response.get_ref().status(), ServingStatus::Serving);
    }
    let status = client.check(check("", None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .check(check("", Some("Bearer bob-token")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_no_secrets(status.message());

    // The client's connection is still open: shutdown must not wait for it.
    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_no_secrets(&output);
    drop(client);
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn tonic_health_locks_out_a_client_after_max_failures() {
    use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let server = Server::start_with("tonic_health", &[("PORTCULLIS_MAX_FAILURES", "2")]).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |authorization: Option<&'static str>| {
        let mut request = Request::new(HealthCheckRequest::default());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", MetadataValue::from_static(value));
        }
        request
    };

    // B1: no credential is not a failed attempt.
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // Distinct wrong tokens: a repeated one counts once (B14).
    for token in ["Bearer bob-token", "Bearer wrong-token"] {
        let status = client.check(check(Some(token))).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // B3, P9: locked out, even with the valid token.
    let status = client
        .check(check(Some("Bearer alice-token")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_no_secrets(status.message());

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_no_secrets(&output);
    drop(client);
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn tonic_health_rate_limits_and_refuses_unusable_settings() {
    use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let output = timeout(
        WATCHDOG,
        example_command("tonic_health", &[("PORTCULLIS_MAX_FAILURES", "many")]).output(),
    )
    .await
    .expect("the example exits")
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr
            .contains(r#"PORTCULLIS_MAX_FAILURES must be a whole number, at least 1; got "many""#),
        "{stderr}"
    );

    let server = Server::start_with(
        "tonic_health",
        &[
            ("PORTCULLIS_RATE_PER_SEC", "1"),
            ("PORTCULLIS_RATE_BURST", "2"),
        ],
    )
    .await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = || {
        let mut request = Request::new(HealthCheckRequest::default());
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::from_static("Bearer alice-token"),
        );
        request
    };
    // A burst of 2, then one call a second: the third quick call is refused.
    for _ in 0..2 {
        client.check(check()).await.unwrap();
    }
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    drop(client);
}

/// A loopback address of this run's own, so that the lockout keys a test
/// leaves in a shared redis are new and never lock out a later run or the
/// developer's own requests from 127.0.0.1 (Linux routes all of 127.0.0.0/8
/// to loopback).
#[allow(dead_code)] // used by the Redis tests only
fn unique_loopback() -> std::net::Ipv4Addr {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let [_, b, c, d] = nanos.to_be_bytes();
    std::net::Ipv4Addr::new(127, b | 0x40, c, d.max(2))
}

/// `PORTCULLIS_REDIS_URL`, or a skip notice (a failure in CI).
#[cfg(all(feature = "axum", feature = "redis"))]
fn redis_url() -> Option<String> {
    match std::env::var("PORTCULLIS_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must set PORTCULLIS_REDIS_URL for the Redis tests")
        }
        Err(_) => {
            eprintln!("skipped: set PORTCULLIS_REDIS_URL to run the Redis tests");
            None
        }
    }
}

#[cfg(all(feature = "axum", feature = "redis"))]
#[tokio::test]
async fn replicas_over_a_redis_cluster_locks_a_client_out_of_b_after_max_failures_through_a() {
    // D8, D2: the same run with PORTCULLIS_REDIS_CLUSTER.
    let nodes = match std::env::var("PORTCULLIS_REDIS_CLUSTER") {
        Ok(nodes) => nodes,
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must set PORTCULLIS_REDIS_CLUSTER for the Redis Cluster tests")
        }
        Err(_) => {
            eprintln!("skipped: set PORTCULLIS_REDIS_CLUSTER to run the Redis Cluster tests");
            return;
        }
    };
    let output = timeout(
        WATCHDOG,
        example_command("replicas", &[("PORTCULLIS_REDIS_CLUSTER", &nodes)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("the example finishes")
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("all 7 answers were as expected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("credentials validated: 3 by A, 1 by B"),
        "{stdout}"
    );
}

#[cfg(all(feature = "axum", feature = "redis"))]
#[tokio::test]
async fn replicas_locks_a_client_out_of_b_after_max_failures_through_a() {
    // D2, D3: the lockout recorded through A refuses the client on B.
    let Some(url) = redis_url() else { return };
    let output = timeout(
        WATCHDOG,
        example_command("replicas", &[("PORTCULLIS_REDIS_URL", &url)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("the example finishes")
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("all 7 answers were as expected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("credentials validated: 3 by A, 1 by B"),
        "{stdout}"
    );
    assert!(stdout.contains("429 Too Many Requests"), "{stdout}");
    assert_no_secrets(&stdout);
    assert_no_secrets(&stderr);
}

#[cfg(all(feature = "axum", feature = "redis"))]
#[tokio::test]
async fn replicas_without_a_redis_url_says_how_to_start_one_and_exits_2() {
    let output = timeout(WATCHDOG, example_command("replicas", &[]).output())
        .await
        .expect("the example finishes")
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redis-server --port"), "{stderr}");
    assert!(stderr.contains("PORTCULLIS_REDIS_URL="), "{stderr}");
}

#[cfg(all(feature = "axum", feature = "cookie", feature = "redis"))]
#[tokio::test]
async fn axum_api_instances_sharing_redis_lock_a_client_out_of_both() {
    // D2, D3 through the example: failures on one instance lock the client
    // out of the other.
    use std::net::IpAddr;

    use hyper_util::client::legacy::connect::HttpConnector;

    let Some(url) = redis_url() else { return };
    let env = [
        ("PORTCULLIS_REDIS_URL", url.as_str()),
        ("PORTCULLIS_MAX_FAILURES", "2"),
    ];
    let first = Server::start_with("axum_api", &env).await;
    let second = Server::start_with("axum_api", &env).await;

    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(IpAddr::V4(unique_loopback())));
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let status = |addr: SocketAddr, token: &'static str| {
        let client = client.clone();
        async move {
            let request = Request::get(format!("http://{addr}/me"))
                .header("authorization", format!("Bearer {token}"))
                .body(Empty::new())
                .unwrap();
            let response = client.request(request).await.unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            (response.status(), retry_after)
        }
    };

    for guess in ["guess-1", "guess-2"] {
        let (code, _) = status(first.addr, guess).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }
    let (code, retry_after) = status(second.addr, "alice-token").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some());

    for server in [first, second] {
        let (exit, output) = server.terminate().await;
        assert!(exit.success(), "{exit}\n{output}");
        assert!(output.contains("shared state: redis"), "{output}");
        assert_no_secrets(&output);
    }
}

#[cfg(all(feature = "axum", feature = "cookie", not(feature = "redis")))]
#[tokio::test]
async fn axum_api_warns_that_a_redis_url_needs_the_redis_feature() {
    let server = Server::start_with(
        "axum_api",
        &[("PORTCULLIS_REDIS_URL", "redis://127.0.0.1:1")],
    )
    .await;
    // Serving (and so handling SIGTERM) before it is told to stop.
    let (status, _, _) = get(server.addr, "/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (exit, output) = server.terminate().await;
    assert!(exit.success(), "{exit}\n{output}");
    assert!(
        output.contains("PORTCULLIS_REDIS_URL is set, but this build has no Redis support"),
        "{output}"
    );
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_answers_connect_clients_with_connect_errors() {
    let server = Server::start("axum_api").await;
    let addr = server.addr;
    let connect = ("connect-protocol-version", "1");

    let (status, headers, body) = get(addr, "/me", &[connect]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        r#"{"code":"unauthenticated","message":"no credential was presented"}"#
    );
    let (status, _, body) = get(
        addr,
        "/admin",
        &[connect, ("authorization", "Bearer bob-token")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        r#"{"code":"permission_denied","message":"the access token lacks the required scope"}"#
    );
    let (status, _, _) = get(
        addr,
        "/me",
        &[connect, ("authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
}

#[cfg(all(feature = "axum", feature = "cookie", feature = "metrics"))]
#[tokio::test]
async fn axum_api_serves_its_metrics_on_an_address_of_their_own() {
    let mut server =
        Server::start_with("axum_api", &[("PORTCULLIS_METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics: SocketAddr = timeout(WATCHDOG, async {
        loop {
            let mut line = String::new();
            assert!(server.stdout.read_line(&mut line).await.unwrap() > 0);
            if let Some(addr) = line
                .strip_prefix("metrics on http://")
                .and_then(|rest| rest.trim_end().strip_suffix("/metrics"))
            {
                return addr.parse().unwrap();
            }
        }
    })
    .await
    .expect("the example prints where its metrics are");

    let (status, ..) = get(server.addr, "/me", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, ..) = get(server.addr, "/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, ..) = get(
        server.addr,
        "/me",
        &[("authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = get(metrics, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"portcullis_auth_decisions_total{outcome="invalid",source="bearer"} 1"#,
        r#"portcullis_auth_decisions_total{outcome="missing",source="none"} 1"#,
        r#"portcullis_auth_decisions_total{outcome="authenticated",source="bearer"} 1"#,
    ] {
        assert!(body.contains(line), "{line} is missing from:\n{body}");
    }
    assert!(body.contains("portcullis_validator_seconds"), "{body}");
    // Gauges read at the scrape: the limiter's table and the revocation
    // list's health.
    for line in [
        "portcullis_lockout_tracked 1",
        "portcullis_revocations_in_sync 1",
        "portcullis_revocations_backlog 0",
        r#"portcullis_revocations_state{state="in_sync"} 1"#,
        r#"portcullis_revocations_state{state="refusing"} 0"#,
    ] {
        assert!(body.contains(line), "{line} is missing from:\n{body}");
    }
    // Nothing about a client or a credential in the metrics.
    assert!(
        !body.contains("127.0.0.1") && !body.contains("nope"),
        "{body}"
    );
    // The public listener does not serve them.
    let (status, _, body) = get(server.addr, "/metrics", &[]).await;
    assert_ne!(status, StatusCode::OK, "{body}");
    let (status, output) = server.terminate().await;
    assert!(status.success(), "{output}");
    assert_no_secrets(&output);
}

// Signing out means disconnected (V1, V3): sessions, sign-out, and the
// streams that end with their credential.

/// Signs alice in; returns her session token, from the `session` cookie.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn login(addr: SocketAddr) -> String {
    let (status, headers, body) =
        post_form(addr, "/login", "username=alice&password=wonderland").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"subject":"alice"}"#);
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    let (pair, attributes) = set_cookie.split_once(';').unwrap();
    assert_eq!(attributes, " HttpOnly; SameSite=Lax; Path=/");
    pair.strip_prefix("session=").unwrap().to_owned()
}

/// A POST without a body; returns status, headers and body.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    read(send(http::Method::POST, addr, path, headers).await).await
}

/// Opens `GET /events` and returns its body, after checking it is an SSE
/// stream.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn open_events(addr: SocketAddr, headers: &[(&str, &str)]) -> hyper::body::Incoming {
    let response = send(http::Method::GET, addr, "/events", headers).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response.into_body()
}

/// The next event of an SSE stream (`None` once it ended), within a second.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn next_event(events: &mut hyper::body::Incoming) -> Option<String> {
    let frame = timeout(Duration::from_secs(1), events.frame())
        .await
        .expect("an event every 250 ms")?;
    let data = frame.ok()?.into_data().ok()?;
    Some(String::from_utf8(data.to_vec()).unwrap())
}

/// Waits (up to 5 s) for the stream to end, skipping events already on their
/// way; returns how long that took.
#[cfg(all(feature = "axum", feature = "cookie"))]
async fn ended(events: &mut hyper::body::Incoming) -> Duration {
    let started = std::time::Instant::now();
    timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = events.frame().await {}
    })
    .await
    .expect("the stream ends");
    started.elapsed()
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_logout_revokes_the_credential_in_every_carrier_and_ends_its_stream() {
    // V1, V3
    let server = Server::start("axum_api").await;
    let addr = server.addr;
    let (token, other) = (login(addr).await, login(addr).await);
    let cookie = format!("session={token}");
    let mut events = open_events(addr, &[("cookie", &cookie)]).await;
    let event = next_event(&mut events).await.expect("an event");
    assert!(event.starts_with("event: tick\ndata: "), "{event:?}");
    assert!(event.contains(r#""subject":"alice""#), "{event:?}");
    assert!(next_event(&mut events).await.is_some());

    // Signed out through another carrier than the stream's.
    let (status, headers, _) = post(addr, "/logout", &[("x-api-key", &token)]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let clear = headers["set-cookie"].to_str().unwrap();
    assert!(clear.starts_with("session=;"), "{clear}");
    assert!(clear.contains("Max-Age=0"), "{clear}");
    let after = ended(&mut events).await;
    assert!(after < Duration::from_secs(1), "{after:?}");

    for (header, value) in [
        ("cookie", cookie.clone()),
        ("authorization", format!("Bearer {token}")),
        ("x-api-key", token.clone()),
    ] {
        let (status, headers, _) = get(addr, "/me", &[(header, &value)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}");
        // L3: like any unknown token.
        assert_eq!(
            challenge(&headers),
            r#"Bearer realm="portcullis", error="invalid_token", error_description="the access token is invalid""#
        );
    }
    // The other session of the same user is untouched.
    let (status, _, _) = get(
        addr,
        "/me",
        &[("authorization", &format!("Bearer {other}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Signing out needs a credential.
    let (status, _, _) = post(addr, "/logout", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("secret revoked"), "{output}");
    assert!(
        output.contains("response stream ended with its lease"),
        "{output}"
    );
    assert_none_of(&output, &[&token, &other]);
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_logout_all_signs_the_subject_out_everywhere() {
    // V1: a subject with a cutoff; JWTs issued before now included.
    let server = Server::start_with("axum_api", &[("PORTCULLIS_JWT_SECRET", JWT_SECRET)]).await;
    let addr = server.addr;
    let (laptop, phone) = (login(addr).await, login(addr).await);
    #[cfg(feature = "jwt")]
    let jwt = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        mint_jwt(
            JWT_SECRET,
            serde_json::json!({
                "sub": "alice", "iss": "portcullis-demo", "aud": "portcullis-api", "iat": now - 5,
            }),
        )
    };
    #[cfg(feature = "jwt")]
    let (status, _, _) = get(addr, "/me", &[("authorization", &format!("Bearer {jwt}"))]).await;
    #[cfg(feature = "jwt")]
    assert_eq!(status, StatusCode::OK);
    let mut events = open_events(addr, &[("authorization", &format!("Bearer {phone}"))]).await;
    assert!(next_event(&mut events).await.is_some());

    let (status, _, _) = post(
        addr,
        "/logout?all=1",
        &[("cookie", &format!("session={laptop}"))],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(ended(&mut events).await < Duration::from_secs(1));
    let (status, _, _) = get(
        addr,
        "/me",
        &[("authorization", &format!("Bearer {phone}"))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    #[cfg(feature = "jwt")]
    {
        let (status, _, _) = get(addr, "/me", &[("authorization", &format!("Bearer {jwt}"))]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Bob is not alice; a sign-in after the cutoff works.
    let (status, _, _) = get(addr, "/me", &[("authorization", "Bearer bob-token")]).await;
    assert_eq!(status, StatusCode::OK);
    let again = login(addr).await;
    let (status, _, _) = get(addr, "/me", &[("cookie", &format!("session={again}"))]).await;
    assert_eq!(status, StatusCode::OK);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output.contains("credentials of a subject revoked"),
        "{output}"
    );
    assert_none_of(&output, &[&laptop, &phone, JWT_SECRET]);
}

#[cfg(all(feature = "axum", feature = "cookie", feature = "jwt"))]
#[tokio::test]
async fn axum_api_events_end_within_a_second_of_the_jwt_expiry() {
    // V3
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    let server = Server::start_with("axum_api", &[("PORTCULLIS_JWT_SECRET", JWT_SECRET)]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let exp = now.as_secs() + 2;
    let jwt = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({
            "sub": "carol", "iss": "portcullis-demo", "aud": "portcullis-api", "exp": exp,
        }),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mut events = open_events(server.addr, &[("authorization", &format!("Bearer {jwt}"))]).await;
    assert!(next_event(&mut events).await.is_some());
    ended(&mut events).await;
    let late = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .saturating_sub(Duration::from_secs(exp));
    assert!(late < Duration::from_secs(1), "ended {late:?} after exp");

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_none_of(&output, &[&jwt]);
}

#[cfg(all(feature = "axum", feature = "cookie"))]
#[tokio::test]
async fn axum_api_websocket_selects_chat_echoes_and_closes_with_1008_at_sign_out() {
    // V3, P10: a browser offers `chat` and `bearer.<token>`.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{
        Message, client::IntoClientRequest, protocol::frame::coding::CloseCode,
    };

    let server = Server::start("axum_api").await;
    let addr = server.addr;
    let token = login(addr).await;
    let handshake = |protocols: String| {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    assert!(
        handshake("chat".to_owned()).await.is_err(),
        "no credential: 401"
    );

    let (mut socket, response) = handshake(format!("chat, bearer.{token}")).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );

    let (status, _, _) = post(
        addr,
        "/logout",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let signed_out = std::time::Instant::now();
    let close = timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await.expect("a close frame").unwrap() {
                Message::Close(frame) => return frame.expect("a close code"),
                _ => continue,
            }
        }
    })
    .await
    .expect("closed");
    assert!(signed_out.elapsed() < Duration::from_secs(1));
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "the credential was revoked");

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output.contains("websocket closed with its lease"),
        "{output}"
    );
    assert_none_of(&output, &[&token]);
}

#[cfg(all(
    feature = "axum",
    feature = "cookie",
    feature = "redis",
    feature = "jwt"
))]
#[tokio::test]
async fn axum_api_instances_sharing_redis_sign_out_everywhere_within_a_second() {
    // V2, V3: signed out on one instance, refused and disconnected on the
    // other.
    let Some(url) = redis_url() else { return };
    let env = [
        ("PORTCULLIS_REDIS_URL", url.as_str()),
        ("PORTCULLIS_JWT_SECRET", JWT_SECRET),
    ];
    let first = Server::start_with("axum_api", &env).await;
    let second = Server::start_with("axum_api", &env).await;
    // A subject of this run's own: revocations outlive the run in redis.
    let subject = format!(
        "user-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let jwt = mint_jwt(
        JWT_SECRET,
        serde_json::json!({ "sub": subject, "iss": "portcullis-demo", "aud": "portcullis-api" }),
    );
    let bearer = format!("Bearer {jwt}");
    let mut events = open_events(second.addr, &[("authorization", &bearer)]).await;
    assert!(next_event(&mut events).await.is_some());

    let (status, _, _) = post(first.addr, "/logout", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let signed_out = std::time::Instant::now();
    ended(&mut events).await;
    assert!(signed_out.elapsed() < Duration::from_secs(1));
    // From an address of this run's own: the refusal is a failed attempt,
    // and redis keeps it after the run.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some(std::net::IpAddr::V4(unique_loopback())));
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let request = Request::get(format!("http://{}/me", second.addr))
        .header("authorization", &bearer)
        .body(Empty::new())
        .unwrap();
    let status = client.request(request).await.unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for server in [first, second] {
        let (exit, output) = server.terminate().await;
        assert!(exit.success(), "{exit}\n{output}");
        assert!(
            output.contains("revocations reach every instance through redis"),
            "{output}"
        );
        assert_none_of(&output, &[&jwt]);
    }
}

#[cfg(all(feature = "tonic", feature = "jwt"))]
#[tokio::test]
async fn tonic_health_watch_ends_unauthenticated_within_a_second_of_the_jwt_expiry() {
    // V3, P9
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let secret = "tonic-jwt-secret-canary-0123456789abcdef";
    let server = Server::start_with("tonic_health", &[("PORTCULLIS_JWT_SECRET", secret)]).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let jwt = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({
            "sub": "carol", "iss": "portcullis-demo", "aud": "portcullis-api", "exp": exp,
        }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut request = Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {jwt}")).unwrap(),
    );
    let mut stream = client.watch(request).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some(), "SERVING");
    let status = timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends")
        .expect_err("with a status");
    let late = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .saturating_sub(Duration::from_secs(exp));
    assert!(late < Duration::from_secs(1), "ended {late:?} after exp");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the credential expired");
    // The demo token still works, and its stream stays open.
    let mut request = Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::from_static("Bearer alice-token"),
    );
    let mut demo = client.watch(request).await.unwrap().into_inner();
    assert!(demo.message().await.unwrap().is_some());
    // A graceful shutdown waits for open calls.
    drop(demo);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert_none_of(&output, &[secret, &jwt]);
    drop(client);
}

// Sessions (S1–S4): the `sessions` example, a memos-style server with
// short access tokens and rotated refresh cookies.

/// Signs alice in on the `sessions` example; returns the access token and
/// the refresh cookie (`refresh=…`), after checking the answer's shape.
#[cfg(all(feature = "sessions", feature = "axum"))]
async fn session_login(addr: SocketAddr) -> (String, String) {
    let (status, headers, body) =
        post_form(addr, "/auth/login", "username=alice&password=wonderland").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    session_grant(&headers, &body)
}

/// The access token and refresh cookie of a sign-in or refresh answer.
#[cfg(all(feature = "sessions", feature = "axum"))]
fn session_grant(headers: &HeaderMap, body: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 900);
    assert_eq!(headers["cache-control"], "no-store");
    // S3
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    let (pair, attributes) = set_cookie.split_once(';').unwrap();
    assert!(pair.starts_with("refresh="), "{set_cookie}");
    assert!(
        attributes.starts_with(" HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age="),
        "{set_cookie}"
    );
    (
        json["access_token"].as_str().unwrap().to_owned(),
        pair.to_owned(),
    )
}

/// `POST` to the `sessions` example with the refresh cookie.
#[cfg(all(feature = "sessions", feature = "axum"))]
async fn session_post(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
) -> (StatusCode, HeaderMap, String) {
    post(addr, path, &[("cookie", cookie)]).await
}

#[cfg(all(feature = "sessions", feature = "axum"))]
#[tokio::test]
async fn sessions_rotates_refresh_cookies_and_a_reused_one_revokes_the_session_and_its_stream() {
    // S1, S2, S3, V3
    let server = Server::start_with("sessions", &[("PORTCULLIS_REFRESH_GRACE_SECS", "0")]).await;
    let addr = server.addr;
    let (first, first_cookie) = session_login(addr).await;
    let bearer = |token: &str| format!("Bearer {token}");
    let (status, _, body) = get(addr, "/me", &[("authorization", &bearer(&first))]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"subject":"alice"}"#)
    );
    let mut events = open_events(addr, &[("authorization", &bearer(&first))]).await;
    let event = next_event(&mut events).await.expect("an event");
    assert!(event.starts_with("event: tick\ndata: "), "{event:?}");

    let (status, headers, body) = session_post(addr, "/auth/refresh", &first_cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (second, second_cookie) = session_grant(&headers, &body);
    assert_ne!(second_cookie, first_cookie);
    let (status, _, _) = get(addr, "/me", &[("authorization", &bearer(&second))]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        next_event(&mut events).await.is_some(),
        "the stream is open"
    );

    // The first cookie again: refused, and the session revoked.
    let (status, headers, _) = session_post(addr, "/auth/refresh", &first_cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&headers).contains(r#"error="invalid_token""#));
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = ended(&mut events).await;
    assert!(after < Duration::from_secs(1), "{after:?}");
    let (status, _, _) = session_post(addr, "/auth/refresh", &second_cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for token in [&first, &second] {
        let (status, _, _) = get(addr, "/me", &[("authorization", &bearer(token))]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Five failed attempts: the client is locked out of the endpoints.
    let (status, _, _) = post_form(addr, "/auth/login", "username=alice&password=guess").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) =
        post_form(addr, "/auth/login", "username=alice&password=wonderland").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output.contains("refresh grace window: 0 s; sessions in memory"),
        "{output}"
    );
    assert!(
        output.contains("a used refresh token was presented again: the session is revoked"),
        "{output}"
    );
    let secret = |cookie: &str| cookie.split_once('.').unwrap().1.to_owned();
    assert_none_of(
        &output,
        &[
            &first,
            &second,
            &secret(&first_cookie),
            &secret(&second_cookie),
            "wonderland",
        ],
    );
}

#[cfg(all(feature = "sessions", feature = "axum"))]
#[tokio::test]
async fn sessions_gives_racing_refreshes_one_successor_and_signing_out_ends_the_stream() {
    // S1, S2, V3: the default grace window of 5 s.
    let server = Server::start("sessions").await;
    let addr = server.addr;
    let (token, cookie) = session_login(addr).await;
    let (a, b) = tokio::join!(
        session_post(addr, "/auth/refresh", &cookie),
        session_post(addr, "/auth/refresh", &cookie),
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let (_, a_cookie) = session_grant(&a.1, &a.2);
    let (b_token, b_cookie) = session_grant(&b.1, &b.2);
    assert_eq!(a_cookie, b_cookie, "one successor");

    let mut events = open_events(addr, &[("authorization", &format!("Bearer {b_token}"))]).await;
    assert!(next_event(&mut events).await.is_some());
    let (status, headers, _) = session_post(addr, "/auth/logout", &b_cookie).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        headers["set-cookie"],
        "refresh=; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=0"
    );
    let after = ended(&mut events).await;
    assert!(after < Duration::from_secs(1), "{after:?}");
    for bearer in [&token, &b_token] {
        let (status, _, _) = get(
            addr,
            "/me",
            &[("authorization", &format!("Bearer {bearer}"))],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A cross-site sign-out is refused (C1), not counted.
    let (status, _, _) = post(
        addr,
        "/auth/logout",
        &[("cookie", &b_cookie), ("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("refresh grace window: 5 s"), "{output}");
    assert!(
        output.contains("signed with a random key (not shown)"),
        "{output}"
    );
    assert!(output.contains("signed out"), "{output}");
    assert_none_of(&output, &[&token, &b_token]);
}

/// Signs alice in on the `sessions` example from a browser that calls
/// itself `agent`; returns the access token and the refresh cookie.
#[cfg(all(feature = "sessions", feature = "axum"))]
async fn session_login_as(addr: SocketAddr, agent: &str) -> (String, String) {
    let (status, headers, body) = post_form_with(
        addr,
        "/auth/login",
        "username=alice&password=wonderland",
        &[("user-agent", agent)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    session_grant(&headers, &body)
}

/// The user's sessions as `GET /auth/sessions` lists them, after checking
/// the shape of each.
#[cfg(all(feature = "sessions", feature = "axum"))]
async fn session_list(addr: SocketAddr, token: &str) -> Vec<serde_json::Value> {
    let (status, headers, body) = get(
        addr,
        "/auth/sessions",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    for session in &list {
        assert!(session["id"].is_string(), "{session}");
        assert!(session["created_at"].is_u64(), "{session}");
        assert!(session["last_used_at"].is_u64(), "{session}");
        assert!(
            session["last_used_at"].as_u64() >= session["created_at"].as_u64(),
            "{session}"
        );
        assert!(session["current"].is_boolean(), "{session}");
        assert!(
            session["user_agent"].is_string() || session["user_agent"].is_null(),
            "{session}"
        );
    }
    list
}

#[cfg(all(feature = "sessions", feature = "axum"))]
#[tokio::test]
async fn sessions_lists_the_users_sessions_and_ends_one_or_all_of_them() {
    // S5, S6, S7, V3
    let server = Server::start_with("sessions", &[("PORTCULLIS_MAX_SESSIONS", "3")]).await;
    let addr = server.addr;
    let bearer = |token: &str| format!("Bearer {token}");
    // A cross-site sign-in is refused: no login CSRF.
    let (status, headers, _) = post_form_with(
        addr,
        "/auth/login",
        "username=alice&password=wonderland",
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key("set-cookie"));

    let (phone, phone_cookie) = session_login_as(addr, "Phone/1.0").await;
    let (laptop, laptop_cookie) = session_login_as(addr, "Laptop/2.0").await;
    let list = session_list(addr, &laptop).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let current: Vec<_> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{list:?}");
    assert_eq!(current[0]["user_agent"], "Laptop/2.0");
    let phone_id = list
        .iter()
        .find(|s| s["user_agent"] == "Phone/1.0")
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, _, _) = get(addr, "/auth/sessions", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The laptop ends the phone's session: its stream, access token and
    // refresh cookie end.
    let mut events = open_events(addr, &[("authorization", &bearer(&phone))]).await;
    assert!(next_event(&mut events).await.is_some());
    let delete = |path: String, headers: Vec<(&'static str, String)>| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        read(send(http::Method::DELETE, addr, &path, &headers).await).await
    };
    let auth = ("authorization", bearer(&laptop));
    let (status, _, _) = delete(
        format!("/auth/sessions/{}", "A".repeat(22)),
        vec![auth.clone()],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not one of alice's sessions");
    let (status, _, _) = delete(
        format!("/auth/sessions/{phone_id}"),
        vec![auth.clone(), ("sec-fetch-site", "cross-site".to_owned())],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(next_event(&mut events).await.is_some(), "still open");
    let (status, _, _) = delete(format!("/auth/sessions/{phone_id}"), vec![auth.clone()]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after = ended(&mut events).await;
    assert!(after < Duration::from_secs(1), "{after:?}");
    let (status, _, _) = get(addr, "/me", &[("authorization", &bearer(&phone))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = session_post(addr, "/auth/refresh", &phone_cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = delete(format!("/auth/sessions/{phone_id}"), vec![auth]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "ended already");
    assert_eq!(session_list(addr, &laptop).await.len(), 1);

    // The cap (3): the third new sign-in ends the laptop, the least
    // recently used.
    let mut newest = Vec::new();
    for agent in ["A/1", "B/1", "C/1"] {
        newest.push(session_login_as(addr, agent).await);
    }
    let (status, _, _) = session_post(addr, "/auth/refresh", &laptop_cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let list = session_list(addr, &newest[2].0).await;
    let mut agents: Vec<&str> = list
        .iter()
        .filter_map(|s| s["user_agent"].as_str())
        .collect();
    agents.sort_unstable();
    assert_eq!(agents, ["A/1", "B/1", "C/1"]);

    // Signing out everywhere, with the newest cookie: every other cookie
    // is refused from now on.
    let (status, headers, _) = session_post(addr, "/auth/logout?all=1", &newest[2].1).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = session_post(addr, "/auth/refresh", &newest[0].1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(addr, "/me", &[("authorization", &bearer(&newest[1].0))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("signed out everywhere"), "{output}");
    assert!(output.contains("session ended by its owner"), "{output}");
    let secret = |cookie: &str| cookie.split_once('.').unwrap().1.to_owned();
    assert_none_of(
        &output,
        &[
            &phone,
            &laptop,
            &secret(&phone_cookie),
            &secret(&laptop_cookie),
        ],
    );
}

#[cfg(all(feature = "sessions", feature = "axum"))]
#[tokio::test]
async fn sessions_refuses_unusable_settings_with_exit_code_2() {
    let secret = "short-secret-canary";
    for (env, expected) in [
        (("PORTCULLIS_JWT_SECRET", secret), "at least 32 bytes"),
        (
            ("PORTCULLIS_REFRESH_GRACE_SECS", "soon"),
            "PORTCULLIS_REFRESH_GRACE_SECS",
        ),
        (("PORTCULLIS_MAX_SESSIONS", "0"), "PORTCULLIS_MAX_SESSIONS"),
    ] {
        let output = timeout(WATCHDOG, example_command("sessions", &[env]).output())
            .await
            .expect("the example exits")
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_none_of(&stderr, &[secret]);
    }
}

#[cfg(all(feature = "sessions", feature = "axum", feature = "redis"))]
#[tokio::test]
async fn sessions_instances_sharing_redis_detect_a_reuse_across_instances() {
    // S2, S4: a refresh on one instance, a reuse on the other.
    use std::net::IpAddr;

    use http_body_util::Full;
    use hyper_util::client::legacy::connect::HttpConnector;

    let Some(url) = redis_url() else { return };
    let secret = "sessions-example-secret-0123456789abcdef";
    let env = [
        ("PORTCULLIS_REDIS_URL", url.as_str()),
        ("PORTCULLIS_JWT_SECRET", secret),
        ("PORTCULLIS_REFRESH_GRACE_SECS", "0"),
    ];
    let first = Server::start_with("sessions", &env).await;
    let second = Server::start_with("sessions", &env).await;

    // The lockout, shared in redis, keys on the client address.
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(IpAddr::V4(unique_loopback())));
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let send = |method: &'static str,
                addr: SocketAddr,
                path: &'static str,
                header: Option<(&'static str, String)>,
                body: &'static str| {
        let client = client.clone();
        async move {
            let mut request = Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some((name, value)) = header {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
            read(client.request(request).await.unwrap()).await
        }
    };

    let (status, headers, body) = send(
        "POST",
        first.addr,
        "/auth/login",
        None,
        "username=alice&password=wonderland",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, cookie) = session_grant(&headers, &body);
    let (status, headers, body) = send(
        "POST",
        first.addr,
        "/auth/refresh",
        Some(("cookie", cookie.clone())),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (token, newest) = session_grant(&headers, &body);
    let bearer = Some(("authorization", format!("Bearer {token}")));
    // Instances share the sessions and the signing key.
    let (status, _, _) = send("GET", second.addr, "/me", bearer.clone(), "").await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, _) = send(
        "POST",
        second.addr,
        "/auth/refresh",
        Some(("cookie", cookie)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        "POST",
        first.addr,
        "/auth/refresh",
        Some(("cookie", newest)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The access token is refused on both within a second.
    let revoked = std::time::Instant::now();
    for server in [&first, &second] {
        loop {
            let (status, _, _) = send("GET", server.addr, "/me", bearer.clone(), "").await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            assert!(revoked.elapsed() < Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Signed out everywhere on one instance: a fresh process over the same
    // redis refuses the ended sessions (S5).
    let (status, headers, body) = send(
        "POST",
        first.addr,
        "/auth/login",
        None,
        "username=alice&password=wonderland",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, kept) = session_grant(&headers, &body);
    let (status, headers, body) = send(
        "POST",
        second.addr,
        "/auth/login",
        None,
        "username=alice&password=wonderland",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (other, signing_out) = session_grant(&headers, &body);
    let (status, headers, body) = send(
        "GET",
        first.addr,
        "/auth/sessions",
        Some(("authorization", format!("Bearer {other}"))),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let (status, _, _) = send(
        "POST",
        second.addr,
        "/auth/logout?all=1",
        Some(("cookie", signing_out)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    for server in [first, second] {
        let (exit, output) = server.terminate().await;
        assert!(exit.success(), "{exit}\n{output}");
        assert!(output.contains("sessions shared through redis"), "{output}");
        assert_none_of(&output, &[secret, &token]);
    }
    let fresh = Server::start_with("sessions", &env).await;
    let (status, _, _) = send(
        "POST",
        fresh.addr,
        "/auth/refresh",
        Some(("cookie", kept)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (exit, output) = fresh.terminate().await;
    assert!(exit.success(), "{exit}\n{output}");
}

// The first hour: the `login_sessions` example, a password login with
// sessions behind a trusted proxy.

#[cfg(all(feature = "sessions", feature = "axum"))]
#[tokio::test]
async fn login_sessions_signs_in_counts_failures_locks_an_account_refreshes_and_signs_out() {
    // B8, B13, B14, C1, S1, S3
    let server = Server::start_with(
        "login_sessions",
        &[("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1/32")],
    )
    .await;
    let addr = server.addr;
    let client = |ip: &'static str| [("x-forwarded-for", ip)];
    let login = |form: &'static str, ip: &'static str| async move {
        post_form_with(addr, "/auth/login", form, &client(ip)).await
    };

    // Sign-in: the username is keyed trimmed and lowercased.
    let (status, headers, body) =
        login("username=%20Alice&password=wonderland", "203.0.113.1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (access, cookie) = session_grant(&headers, &body);
    let bearer = format!("Bearer {access}");
    let (status, _, body) = get(addr, "/me", &[("authorization", &bearer)]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"subject":"alice"}"#)
    );
    // Without a token, /me is refused; the login route is public.
    let (status, _, _) = get(addr, "/me", &client("203.0.113.1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A wrong password: 401, counted (on the address and on the account).
    let (status, _, body) = login("username=alice&password=nope", "203.0.113.2").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "wrong username or password");

    // Bob's account: three wrong passwords from three addresses lock it,
    // so his right password from a fourth is refused.
    for (form, ip) in [
        ("username=bob&password=a", "203.0.113.3"),
        ("username=bob&password=b", "203.0.113.4"),
        ("username=BOB&password=c", "203.0.113.5"),
    ] {
        let (status, _, _) = login(form, ip).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, _) = login("username=bob&password=builder", "203.0.113.6").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "300");

    // The proxy's X-Forwarded-For is believed: one address spraying
    // accounts is locked out after five, another address is not.
    for form in [
        "username=carol&password=x",
        "username=dave&password=x",
        "username=erin&password=x",
        "username=frank&password=x",
        "username=grace&password=x",
    ] {
        let (status, _, _) = login(form, "203.0.113.9").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = login("username=alice&password=wonderland", "203.0.113.9").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = login("username=alice&password=wonderland", "203.0.113.10").await;
    assert_eq!(status, StatusCode::OK);

    // Login CSRF: a cross-site post is refused, and not counted.
    let (status, _, _) = post_form_with(
        addr,
        "/auth/login",
        "username=alice&password=wonderland",
        &[
            ("x-forwarded-for", "203.0.113.11"),
            ("sec-fetch-site", "cross-site"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Refresh: a new access token and a new cookie.
    let (status, headers, body) = post(
        addr,
        "/auth/refresh",
        &[("cookie", &cookie), ("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, newest) = session_grant(&headers, &body);
    assert_ne!(newest, cookie);

    // Sign-out ends the session: its cookie no longer refreshes, and the
    // answer names the refresh token.
    let (status, _, _) = post(
        addr,
        "/auth/logout",
        &[("cookie", &newest), ("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, body) = post(
        addr,
        "/auth/refresh",
        &[("cookie", &newest), ("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "the refresh token is invalid");
    assert!(challenge(&headers).contains("the refresh token is invalid"));

    let (status, output) = server.terminate().await;
    assert!(status.success(), "{status}\n{output}");
    // What operators see: each counted failure with its key, accounts
    // without quotes, and the account lockout.
    assert!(
        output.contains("failed attempt counted key=alice failures=1"),
        "{output}"
    );
    assert!(
        output.contains("failed attempt counted key=203.0.113.2 failures=1"),
        "{output}"
    );
    assert!(
        output.contains("key locked out after too many failed attempts key=bob"),
        "{output}"
    );
    assert!(
        output.contains("key locked out after too many failed attempts key=203.0.113.9"),
        "{output}"
    );
    let secret = |cookie: &str| cookie.split_once('.').unwrap().1.to_owned();
    assert_none_of(
        &output,
        &[
            &access,
            &secret(&cookie),
            &secret(&newest),
            "wonderland",
            "builder",
        ],
    );
}
