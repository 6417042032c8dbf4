//! [`DefaultRenderer`]: each protocol's own encoding of a rejection.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{Response, request::Parts};

use super::{AuthRejection, Protocol, Renderer, challenge::Challenges, connect, grpc, grpc_web};

/// The renderer that answers each client in its own protocol
/// ([`Protocol::of`]): RFC 6750 challenges for HTTP, trailers-only
/// statuses for gRPC and gRPC-Web, Connect errors for Connect; see the
/// [module docs](super) for the table.
///
/// Challenge headers are built once, when the renderer is created.
///
/// # Example
///
/// ```
/// use http::{Request, StatusCode};
/// use portcullis::reject::{AuthRejection, DefaultRenderer, RejectionKind, Renderer};
///
/// let renderer = DefaultRenderer::new();
/// let (parts, ()) = Request::post("/grpc.health.v1.Health/Check")
///     .header("content-type", "application/grpc-web+proto")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let res = renderer.render(&AuthRejection::new(RejectionKind::Missing), &parts);
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(res.headers()["grpc-status"], "16");
/// // The trailers frame: flag 0x80, a length, then the trailers.
/// assert_eq!(res.body()[0], 0x80);
/// assert!(res.body().ends_with(b"grpc-message:no credential was presented\r\n"));
/// ```
#[derive(Clone)]
pub struct DefaultRenderer {
    challenges: Arc<Challenges>,
}

impl DefaultRenderer {
    /// A renderer with realm `"api"`.
    pub fn new() -> Self {
        Self::with_realm("api")
    }

    /// Sets the realm announced in `WWW-Authenticate`.
    ///
    /// Characters that cannot appear in a quoted string (control bytes,
    /// non-ASCII) are dropped.
    #[must_use]
    pub fn realm(self, realm: impl AsRef<str>) -> Self {
        Self::with_realm(realm.as_ref())
    }

    fn with_realm(realm: &str) -> Self {
        Self {
            challenges: Arc::new(Challenges::new(realm)),
        }
    }
}

impl Default for DefaultRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DefaultRenderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultRenderer")
            .field("realm", &self.challenges.realm)
            .finish()
    }
}

impl Renderer for DefaultRenderer {
    fn render(&self, rejection: &AuthRejection, request: &Parts) -> Response<Bytes> {
        match Protocol::of(request) {
            Protocol::Grpc => grpc::render(rejection),
            Protocol::GrpcWeb => grpc_web::render(rejection, request, false),
            Protocol::GrpcWebText => grpc_web::render(rejection, request, true),
            Protocol::ConnectUnary => connect::unary(rejection, &self.challenges),
            Protocol::ConnectStreaming => connect::streaming(rejection, request),
            Protocol::Http => self.challenges.render(rejection),
        }
    }
}
