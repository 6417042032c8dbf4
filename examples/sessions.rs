//! Sessions example (being written).

fn main() {}
