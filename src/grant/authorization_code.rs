use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use http::Uri;
use sha2::{Digest, Sha256};

use super::params::Params;
use crate::{
    endpoint::TokenEndpoint,
    error::{Error, ErrorCode, OAuthError},
    token::Token,
};

/// The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636 `S256`):
/// a user signs in at the authorization server in a browser, which
/// redirects back with a code; the code is exchanged for a token set whose
/// refresh token feeds a [`RefreshTokenGrant`](super::RefreshTokenGrant).
///
/// Three steps: [`AuthorizationCode::authorize`] builds the URL to open
/// (with a fresh `state` and code challenge); the browser comes back to the
/// redirect URI; [`PendingAuthorization::finish`] checks the callback's
/// `state`, surfaces an `error`, and exchanges the code.
///
/// ```
/// use tower_alf::{grant::AuthorizationCode, ClientAuth, TokenEndpoint};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/token")
///     .client_auth(ClientAuth::none("my-cli"))
///     .build()?;
/// let flow = AuthorizationCode::new(
///     endpoint,
///     "https://idp.example/authorize",
///     "http://127.0.0.1:8400/callback",
/// )
/// .scope("openid")
/// .scope("offline_access");
/// let pending = flow.authorize()?;
/// assert!(pending.url().starts_with("https://idp.example/authorize?response_type=code"));
/// assert!(pending.url().contains("code_challenge_method=S256"));
///
/// // A callback with another state is refused.
/// let e = pending.callback_code("/callback?code=abc&state=forged").unwrap_err();
/// assert!(e.is_authorization());
/// // …then, with the real callback: let token_set = pending.finish(callback).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthorizationCode {
    endpoint: TokenEndpoint,
    authorization_endpoint: String,
    redirect_uri: String,
    params: Params,
}

impl AuthorizationCode {
    /// The flow for the client of `endpoint` (whose client authentication
    /// names the `client_id`), with the server's authorization endpoint and
    /// the client's registered redirect URI.
    pub fn new(
        endpoint: TokenEndpoint,
        authorization_endpoint: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            endpoint,
            authorization_endpoint: authorization_endpoint.into(),
            redirect_uri: redirect_uri.into(),
            params: Params::default(),
        }
    }

    /// Asks for a scope; call again for more (`offline_access` for a
    /// refresh token from OpenID Connect servers).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.scope(scope.into());
        self
    }

    /// Adds a parameter to the authorization URL (`prompt`, `audience`,
    /// `resource`, …).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.add(name.into(), value.into());
        self
    }

    /// Starts one authorization: a new `state` and PKCE verifier, and the
    /// URL to open in the user's browser.
    pub fn authorize(&self) -> Result<PendingAuthorization, Error> {
        let state = random_urlsafe(16)?;
        let verifier = random_urlsafe(32)?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let client_id = self.endpoint.client_auth().client_id();
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let mut extra = Vec::new();
        self.params.extend_form(&mut extra, true);
        query.extend_pairs(&extra);
        let separator = if self.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{separator}{}",
            self.authorization_endpoint,
            query.finish()
        );
        url.parse::<Uri>()
            .map_err(|_| Error::config("the authorization endpoint is not a valid URL"))?;
        Ok(PendingAuthorization {
            endpoint: self.endpoint.clone(),
            url,
            redirect_uri: self.redirect_uri.clone(),
            state,
            verifier,
        })
    }
}

/// One authorization in progress: the URL to open, and what is needed to
/// check the callback and exchange its code. Use it once.
pub struct PendingAuthorization {
    endpoint: TokenEndpoint,
    url: String,
    redirect_uri: String,
    state: String,
    verifier: String,
}

impl PendingAuthorization {
    /// The URL to open in the user's browser.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `state` sent, which the callback must carry back.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Reads the callback (the redirect URI the browser came back to, as a
    /// full URL, a path with its query, or the query alone): its code,
    /// after checking `state`; the server's `error` (RFC 6749 §4.1.2.1)
    /// as an [`Error`] for which [`Error::is_authorization`] is true.
    pub fn callback_code(&self, callback: &str) -> Result<String, Error> {
        let query = match callback.split_once('?') {
            Some((_, query)) => query,
            None => callback,
        };
        let query = query.split('#').next().unwrap_or_default();
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = None;
        let mut uri = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "code" => code = Some(value.into_owned()),
                "state" => state = Some(value.into_owned()),
                "error" => error = Some(value.into_owned()),
                "error_description" => description = Some(value.into_owned()),
                "error_uri" => uri = Some(value.into_owned()),
                _ => {}
            }
        }
        if state.as_deref() != Some(self.state.as_str()) {
            return Err(Error::authorization(
                "the callback's state does not match the request (a forged or stale callback)",
                None,
            ));
        }
        if let Some(error) = error {
            let oauth = OAuthError::new(ErrorCode::from(error.as_str()), description, uri);
            return Err(Error::authorization(
                "the authorization server refused",
                Some(oauth),
            ));
        }
        code.filter(|code| !code.is_empty())
            .ok_or_else(|| Error::authorization("the callback has no code", None))
    }

    /// Exchanges `code` at the token endpoint (RFC 6749 §4.1.3) with the
    /// PKCE verifier: the token set, with its refresh token if one was
    /// issued.
    pub async fn exchange(self, code: &str) -> Result<Token, Error> {
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), self.redirect_uri),
            ("code_verifier".to_owned(), self.verifier),
        ];
        self.endpoint.request(form).await
    }

    /// [`PendingAuthorization::callback_code`], then
    /// [`PendingAuthorization::exchange`].
    pub async fn finish(self, callback: &str) -> Result<Token, Error> {
        let code = self.callback_code(callback)?;
        self.exchange(&code).await
    }
}

/// `bytes` random bytes from the operating system, base64url: a `state` or
/// a PKCE verifier (RFC 7636 §4.1: 32 bytes give 43 characters).
fn random_urlsafe(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|_| Error::runtime("the operating system's random source failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCode")
            .field("endpoint", &self.endpoint)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.params.scopes())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("url", &self.url)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingAuthorization {
        let endpoint = TokenEndpoint::builder("https://idp.example/token")
            .client_auth(crate::endpoint::client_auth::ClientAuth::none("cli"))
            .build()
            .unwrap();
        AuthorizationCode::new(
            endpoint,
            "https://idp.example/auth",
            "http://127.0.0.1:1/cb",
        )
        .scope("openid")
        .authorize()
        .unwrap()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let query = url.split_once('?').unwrap().1;
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn the_url_carries_state_and_an_s256_challenge_of_the_verifier() {
        let p = pending();
        let q = query(p.url());
        let get = |k: &str| q.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("response_type"), "code");
        assert_eq!(get("client_id"), "cli");
        assert_eq!(get("redirect_uri"), "http://127.0.0.1:1/cb");
        assert_eq!(get("state"), p.state());
        assert_eq!(get("scope"), "openid");
        assert_eq!(get("code_challenge_method"), "S256");
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.as_bytes()));
        assert_eq!(get("code_challenge"), expected);
        assert_eq!(p.verifier.len(), 43);
        assert_ne!(pending().state(), p.state());
    }

    #[test]
    fn rfc_7636_appendix_b_challenge() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn the_callback_gives_the_code_when_state_matches() {
        let p = pending();
        let cb = format!("http://127.0.0.1:1/cb?code=c-1&state={}&iss=x", p.state());
        assert_eq!(p.callback_code(&cb).unwrap(), "c-1");
        assert_eq!(
            p.callback_code(&format!("code=c-2&state={}", p.state()))
                .unwrap(),
            "c-2"
        );
    }

    #[test]
    fn a_callback_error_is_surfaced() {
        let p = pending();
        let cb = format!(
            "/cb?error=access_denied&error_description=user+said+no&state={}",
            p.state()
        );
        let e = p.callback_code(&cb).unwrap_err();
        assert!(e.is_authorization());
        let oauth = e.oauth_error().unwrap();
        assert_eq!(oauth.code().as_str(), "access_denied");
        assert_eq!(oauth.description(), Some("user said no"));
        assert!(e.to_string().contains("access_denied: user said no"), "{e}");
    }

    #[test]
    fn a_missing_or_wrong_state_or_code_is_refused() {
        let p = pending();
        for cb in [
            "/cb?code=x",
            "/cb?code=x&state=nope",
            &format!("/cb?state={}", p.state()),
        ] {
            assert!(p.callback_code(cb).unwrap_err().is_authorization(), "{cb}");
        }
    }
}
