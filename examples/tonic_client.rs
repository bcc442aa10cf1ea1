//! Placeholder: the tonic example lands in the next commit.

fn main() {}
