//! Placeholder: the axum gateway example lands in a later commit.

fn main() {}
