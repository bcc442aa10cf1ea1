//! Client, temporary and token credentials (RFC 5849 §1.1), whose `Debug`
//! hides every secret.

use std::{fmt, sync::Arc};

use rsa::{
    pkcs1::DecodeRsaPrivateKey, pkcs1v15::SigningKey, pkcs8::DecodePrivateKey,
    PrivateKey as RsaPrivateKey,
};

use super::Error;

/// The client credentials: the consumer key, and the consumer secret or
/// the RSA private key the client signs with (RFC 5849 §1.1, §3.4).
///
/// The name is RFC 5849's ("client credentials", formerly "consumer key
/// and secret"). Not to be confused with the OAuth 2 grant
/// [`grant::ClientCredentials`](crate::grant::ClientCredentials)
/// (RFC 6749 §4.4), which fetches tokens: this one only holds the key
/// requests are signed with.
///
/// `Debug` shows the key and hides the secret:
///
/// ```
/// use tower_alf::oauth1::ClientCredentials;
///
/// let client = ClientCredentials::new("dpf43f3p2l4k3l03", "kd94hf93k423kf44");
/// assert_eq!(client.key(), "dpf43f3p2l4k3l03");
/// assert!(!format!("{client:?}").contains("kd94hf93k423kf44"));
/// ```
#[doc(alias = "ConsumerCredentials")]
#[doc(alias = "consumer_key")]
#[derive(Clone)]
pub struct ClientCredentials {
    key: String,
    secret: String,
    rsa_key: Option<RsaKey>,
}

impl ClientCredentials {
    /// Credentials for the HMAC methods and `PLAINTEXT`: the consumer key
    /// and the consumer secret.
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            secret: secret.into(),
            rsa_key: None,
        }
    }

    /// Credentials for the RSA methods: the consumer key and the client's
    /// RSA private key. The consumer secret is empty.
    pub fn rsa(key: impl Into<String>, private_key: RsaKey) -> Self {
        Self {
            key: key.into(),
            secret: String::new(),
            rsa_key: Some(private_key),
        }
    }

    /// The consumer key (`oauth_consumer_key`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The consumer secret. Take care where it goes.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The RSA private key, if these are RSA credentials.
    pub fn rsa_key(&self) -> Option<&RsaKey> {
        self.rsa_key.as_ref()
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .field("rsa_key", &self.rsa_key)
            .finish()
    }
}

/// An RSA private key for `RSA-SHA1` and `RSA-SHA256`, read from PEM.
///
/// Cheap to clone. `Debug` prints `RsaKey([redacted])`.
#[derive(Clone)]
pub struct RsaKey {
    inner: Arc<RsaKeyInner>,
}

struct RsaKeyInner {
    sha1: SigningKey<sha1::Sha1>,
    sha256: SigningKey<sha2::Sha256>,
}

impl RsaKey {
    /// Reads a PEM private key: PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`)
    /// or unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// The error says which forms were tried, never what the key holds.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let pem = pem.trim();
        let key = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|_| Error::config("not a valid PKCS#1 RSA private key"))?
        } else if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs8_pem(pem)
                .map_err(|_| Error::config("not a valid PKCS#8 RSA private key"))?
        } else {
            return Err(Error::config(
                "expected a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)",
            ));
        };
        Ok(Self::from_key(key))
    }

    fn from_key(key: RsaPrivateKey) -> Self {
        Self {
            inner: Arc::new(RsaKeyInner {
                sha1: SigningKey::new(key.clone()),
                sha256: SigningKey::new(key),
            }),
        }
    }

    pub(crate) fn sha1(&self) -> &SigningKey<sha1::Sha1> {
        &self.inner.sha1
    }

    pub(crate) fn sha256(&self) -> &SigningKey<sha2::Sha256> {
        &self.inner.sha256
    }
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaKey([redacted])")
    }
}

macro_rules! credentials_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name {
            token: String,
            secret: String,
        }

        impl $name {
            /// Wraps a token identifier and its shared secret.
            pub fn new(token: impl Into<String>, secret: impl Into<String>) -> Self {
                Self {
                    token: token.into(),
                    secret: secret.into(),
                }
            }

            /// The token identifier (`oauth_token`).
            pub fn token(&self) -> &str {
                &self.token
            }

            /// The token shared secret. Take care where it goes.
            pub fn secret(&self) -> &str {
                &self.secret
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("token", &"[redacted]")
                    .field("secret", &"[redacted]")
                    .finish()
            }
        }
    };
}

credentials_type!(
    /// Token credentials (RFC 5849 §2.3): the access token and its secret,
    /// which the client signs its requests with. `Debug` hides both.
    ///
    /// ```
    /// use tower_alf::oauth1::TokenCredentials;
    ///
    /// let token = TokenCredentials::new("nnch734d00sl2jdk", "pfkkdhi9sl3r4s00");
    /// assert_eq!(format!("{token:?}"), r#"TokenCredentials { token: "[redacted]", secret: "[redacted]" }"#);
    /// ```
    TokenCredentials
);

credentials_type!(
    /// Temporary credentials (RFC 5849 §2.1), the "request token": they
    /// sign the request for token credentials, and their identifier goes in
    /// the authorization URL. `Debug` hides both parts.
    TemporaryCredentials
);

/// The verification code (`oauth_verifier`, RFC 5849 §2.2) the provider
/// hands back through the callback once the user has authorized the client.
/// `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier(String);

impl Verifier {
    /// Wraps a verification code, for example one the user typed in after
    /// an out-of-band (`oob`) authorization.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The verification code. Take care where it goes.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier([redacted])")
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_every_secret() {
        let client = ClientCredentials::new("ck", "consumer-secret");
        let token = TokenCredentials::new("access-token", "token-secret");
        let temporary = TemporaryCredentials::new("request-token", "request-secret");
        let verifier = Verifier::new("the-verifier");
        let printed = format!("{client:?} {token:?} {temporary:?} {verifier:?} {verifier}");
        for secret in [
            "consumer-secret",
            "access-token",
            "token-secret",
            "request-token",
            "request-secret",
            "the-verifier",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("ck"));
    }

    #[test]
    fn garbage_is_not_an_rsa_key() {
        for pem in [
            "",
            "hello",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            assert!(RsaKey::from_pem(pem).unwrap_err().is_config(), "{pem}");
        }
    }
}
