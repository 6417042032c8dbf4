//! The answers of the endpoint helpers as axum responses (feature `axum`).

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};

use super::{Grant, SessionError, SessionList, SignedOut};

impl IntoResponse for Grant {
    fn into_response(self) -> Response {
        http::Response::<bytes::Bytes>::from(self).map(Body::from)
    }
}

impl IntoResponse for SignedOut {
    fn into_response(self) -> Response {
        http::Response::<bytes::Bytes>::from(self).map(Body::from)
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        http::Response::<bytes::Bytes>::from(self).map(Body::from)
    }
}

impl IntoResponse for SessionList {
    fn into_response(self) -> Response {
        http::Response::<bytes::Bytes>::from(self).map(Body::from)
    }
}
