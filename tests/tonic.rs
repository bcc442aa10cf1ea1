//! Placeholder: the tonic tests land in the next commit.
