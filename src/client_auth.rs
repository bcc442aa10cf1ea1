//! How the client authenticates to the token endpoint (RFC 6749 §2.3).

use base64::{engine::general_purpose::STANDARD, Engine as _};
use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};

use crate::secret::ClientSecret;

/// Client authentication for token requests.
///
/// `Debug` shows the method and client id, never the secret.
///
/// ```
/// use tower_alf::ClientAuth;
///
/// let auth = ClientAuth::basic("my-client", "s3cr3t");
/// assert_eq!(auth.client_id(), "my-client");
/// assert!(!format!("{auth:?}").contains("s3cr3t"));
/// ```
#[derive(Clone, Debug)]
pub struct ClientAuth {
    client_id: String,
    method: Method,
}

#[derive(Clone, Debug)]
enum Method {
    Basic(ClientSecret),
    Post(ClientSecret),
    None,
}

impl ClientAuth {
    /// `client_secret_basic`: HTTP Basic authentication, the id and secret
    /// each form-urlencoded before the Base64 step, as RFC 6749 §2.3.1 says.
    /// The method every server must support.
    pub fn basic(client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::Basic(secret.into()),
        }
    }

    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    pub fn post(client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::Post(secret.into()),
        }
    }

    /// `none`: a public client, identified by `client_id` in the body only.
    pub fn none(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::None,
        }
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The method's registered name (RFC 7591 §2), e.g. `client_secret_basic`.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Basic(_) => "client_secret_basic",
            Method::Post(_) => "client_secret_post",
            Method::None => "none",
        }
    }

    /// Adds the credentials to a token request's headers and form.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, form: &mut Vec<(String, String)>) {
        match &self.method {
            Method::Basic(secret) => {
                let credentials = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.secret())
                );
                let mut value =
                    HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
                        .expect("base64 is a valid header value");
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            Method::Post(secret) => {
                form.push(("client_id".into(), self.client_id.clone()));
                form.push(("client_secret".into(), secret.secret().to_owned()));
            }
            Method::None => form.push(("client_id".into(), self.client_id.clone())),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749
/// Appendix B): space as `+`, everything but `*-._` and alphanumerics escaped.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(auth: &ClientAuth) -> String {
        let mut headers = HeaderMap::new();
        auth.apply(&mut headers, &mut Vec::new());
        let value = headers[AUTHORIZATION].to_str().unwrap();
        let encoded = value.strip_prefix("Basic ").unwrap();
        String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
    }

    #[test]
    fn basic_form_encodes_before_base64() {
        // The example value of RFC 6749 Appendix B, plus ':' and '+'.
        let auth = ClientAuth::basic("id:1", " %&+£€:");
        assert_eq!(basic_header(&auth), "id%3A1:+%25%26%2B%C2%A3%E2%82%AC%3A");
    }

    #[test]
    fn basic_header_is_sensitive() {
        let mut headers = HeaderMap::new();
        ClientAuth::basic("a", "b").apply(&mut headers, &mut Vec::new());
        assert!(headers[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn post_puts_credentials_in_the_form() {
        let mut headers = HeaderMap::new();
        let mut form = Vec::new();
        ClientAuth::post("a", "b").apply(&mut headers, &mut form);
        assert!(headers.is_empty());
        assert_eq!(
            form,
            [
                ("client_id".into(), "a".into()),
                ("client_secret".into(), "b".into())
            ]
        );
    }
}
