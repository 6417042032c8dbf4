//! gRPC-Web answers
//! ([gRPC-Web protocol](https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md)).
//!
//! A trailers-only response, as in gRPC: HTTP 200 with `grpc-status` and
//! `grpc-message` in the head. gRPC-Web carries trailers in the body, so the
//! same trailers also go into the body as its only frame: flag byte `0x80`
//! (trailers, uncompressed), a 4-byte big-endian length, and the trailers
//! as an HTTP/1 header block (`grpc-status:16\r\ngrpc-message:…\r\n`). For
//! `application/grpc-web-text` the frame is base64-encoded. A browser client
//! reads the body even when CORS does not expose the `grpc-*` headers.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, header, request::Parts};

use super::{AuthRejection, grpc};

/// The flag byte of an uncompressed trailers frame.
const TRAILERS: u8 = 0x80;

/// A trailers-only gRPC-Web response with the trailers frame in the body,
/// base64-encoded when `text`.
pub(super) fn render(rejection: &AuthRejection, request: &Parts, text: bool) -> Response<Bytes> {
    let (status, message) = grpc::status_message(rejection);
    let mut res = Response::new(trailers_body(&status, &message, text));
    let headers = res.headers_mut();
    // Answer in the media type the client sent (`+proto`, `+json`, `-text`);
    // detection made sure it is a gRPC-Web one.
    let content_type = request.headers.get(header::CONTENT_TYPE).cloned();
    headers.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/grpc-web+proto")),
    );
    grpc::insert_status(headers, rejection);
    res
}

/// The trailers frame as a body (or the last data of one), base64-encoded
/// when `text`.
pub(crate) fn trailers_body(status: &HeaderValue, message: &HeaderValue, text: bool) -> Bytes {
    let frame = trailers_frame(status, message);
    if text {
        Bytes::from(STANDARD.encode(&frame))
    } else {
        frame.freeze()
    }
}

/// `0x80`, the length, then `grpc-status:…\r\ngrpc-message:…\r\n`.
fn trailers_frame(status: &HeaderValue, message: &HeaderValue) -> BytesMut {
    let mut block = BytesMut::new();
    for (name, value) in [(grpc::GRPC_STATUS, status), (grpc::GRPC_MESSAGE, message)] {
        block.put_slice(name.as_str().as_bytes());
        block.put_u8(b':');
        block.put_slice(value.as_bytes());
        block.put_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + block.len());
    frame.put_u8(TRAILERS);
    frame.put_u32(u32::try_from(block.len()).expect("a status and a fixed message are short"));
    frame.put_slice(&block);
    frame
}
