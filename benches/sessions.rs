//! Sessions bench (being written).

fn main() {}
