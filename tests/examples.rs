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
        (cfg!(feature = "test-util"), "test-util"),
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

impl Server {
    async fn start(name: &str) -> Self {
        let mut child = Command::new(example_binary(name))
            .env("PORTCULLIS_ADDR", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
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
    // L1
    for secret in SECRETS {
        assert!(
            !output.contains(secret),
            "output contains {secret}:\n{output}"
        );
    }
}

/// A GET with the given headers; returns status, headers and body.
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
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
        stdout.contains("all 7 answers were as expected"),
        "{stdout}"
    );
    assert!(stdout.contains("401 Unauthorized"), "{stdout}");
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
