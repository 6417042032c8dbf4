//! Placeholder: the gRPC health example lands with the examples change.
fn main() {}
