//! The axum `Lease` extractor.

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode, header::AUTHORIZATION};
use portcullis::{AuthLayer, Credential, ValidationError, lease::Lease, revoke::Revocations};
use tower::ServiceExt;

use super::User;

async fn expires(lease: Lease) -> String {
    format!("{:?}", lease.expires_at())
}

async fn maybe(lease: Option<Lease>) -> &'static str {
    if lease.is_some() {
        "leased"
    } else {
        "anonymous"
    }
}

async fn validate(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-1" => Ok(User {
            name: "alice",
            until: None,
            issued: None,
        }),
        _ => Err(ValidationError::invalid()),
    }
}

async fn status(app: Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(path);
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn handlers_extract_the_lease_and_anonymous_requests_have_none() {
    let revocations = Revocations::new();
    let app = Router::new()
        .route("/lease", get(expires))
        .route("/maybe", get(maybe))
        .layer(AuthLayer::new(validate).optional().leases(&revocations));
    assert_eq!(
        status(app.clone(), "/lease", Some("alice-1")).await,
        (StatusCode::OK, "None".into())
    );
    assert_eq!(
        status(app.clone(), "/maybe", Some("alice-1")).await.1,
        "leased"
    );
    assert_eq!(status(app.clone(), "/maybe", None).await.1, "anonymous");
    assert_eq!(
        status(app, "/lease", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_route_without_leases_says_so_instead_of_failing_opaquely() {
    let app = Router::new()
        .route("/lease", get(expires))
        .layer(AuthLayer::new(validate));
    let (status, body) = status(app, "/lease", Some("alice-1")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("AuthLayer::leases"), "{body}");
}
