//! Redacting newtypes for credentials.

use std::fmt;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Debug` and `Display` print `[redacted]`; read the value with
        #[doc = concat!("[`", stringify!($name), "::secret`].")]
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Wraps a value as a [`", stringify!($name), "`].")]
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret value. Take care where it goes.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

secret_type!(
    /// An OAuth 2 access token.
    AccessToken
);
secret_type!(
    /// An OAuth 2 refresh token.
    RefreshToken
);
secret_type!(
    /// A client secret, as registered with the authorization server.
    ClientSecret
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let s = ClientSecret::new("hunter2");
        assert_eq!(format!("{s:?}"), "ClientSecret([redacted])");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(s.secret(), "hunter2");
        let t = AccessToken::from("tok-123");
        assert!(!format!("{t:?} {t}").contains("tok-123"));
        let r = RefreshToken::from(String::from("rt-9"));
        assert!(!format!("{r:?} {r}").contains("rt-9"));
    }
}
