use std::{fmt, sync::Arc, time::Duration};

use serde_json::{Map, Value};

use super::{
    params::{grant_service, GrantFuture, Params},
    FetchToken,
};
use crate::{
    endpoint::{request::AttemptParams, TokenEndpoint},
    error::Error,
    jwt::PrivateKey,
};

/// The `grant_type` of RFC 7523 §2.1.
pub(crate) const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The JWT-bearer grant (RFC 7523 §2.1): the client signs a JWT assertion
/// with its private key and trades it for a token. This is how service
/// accounts (Google, Salesforce, Okta, …) obtain tokens; see
/// [`ServiceAccount`](super::ServiceAccount) for Google-style key files.
///
/// A fresh assertion, with a new `jti`, `iat` and `exp`, is signed for every
/// request sent, retries included. The assertion carries `iss`, `sub` (the
/// issuer unless set), `aud` (the token endpoint unless set), `iat`, `exp`,
/// `jti`, any extra claims, and the key's `kid` in its header. Client
/// authentication configured on the endpoint is sent too.
///
/// ```
/// use tower_alf::{grant::JwtBearer, jwt::PrivateKey, ClientAuth, TokenEndpoint, TokenSource};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// # let pem = include_str!("../../tests/fixtures/rsa_pkcs8.pem");
/// let key = PrivateKey::from_pem(pem)?.with_key_id("key-1");
/// // The assertion identifies the client: no other client authentication.
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::anonymous())
///     .build()?;
/// let grant = JwtBearer::new(endpoint, key, "robot@project.example")
///     .subject("alice@example.com")
///     .scope("calendar.readonly")
///     .scope_as_claim(true)
///     .claim("tenant", "acme");
/// let tokens = TokenSource::new(grant);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwtBearer {
    endpoint: TokenEndpoint,
    assertion: Assertion,
    scope_as_claim: bool,
    params: Params,
}

/// What an assertion says; signed once per attempt.
#[derive(Clone)]
struct Assertion {
    key: PrivateKey,
    issuer: String,
    subject: Option<String>,
    audience: Option<String>,
    lifetime: Duration,
    claims: Map<String, Value>,
}

impl JwtBearer {
    /// Lifetime of an assertion: 5 minutes. It is used at once; Google
    /// accepts up to an hour, Okta and Salesforce far less.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

    /// The grant against `endpoint`, signing with `key`, with `issuer` as
    /// the `iss` claim (a service account's e-mail, a client id).
    pub fn new(endpoint: TokenEndpoint, key: PrivateKey, issuer: impl Into<String>) -> Self {
        Self {
            endpoint,
            assertion: Assertion {
                key,
                issuer: issuer.into(),
                subject: None,
                audience: None,
                lifetime: Self::DEFAULT_LIFETIME,
                claims: Map::new(),
            },
            scope_as_claim: false,
            params: Params::default(),
        }
    }

    /// Sets the `sub` claim: whom the token is for (a user to impersonate,
    /// with domain-wide delegation). Defaults to the issuer.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.assertion.subject = Some(subject.into());
        self
    }

    /// Sets the `aud` claim, replacing any given before. Defaults to the
    /// token endpoint URL (RFC 7523 §3); some servers want their issuer
    /// identifier.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion.audience = Some(audience.into());
        self
    }

    /// Adds a scope to those asked for; call again for more. Sent space-separated as the
    /// `scope` form parameter (RFC 7521 §4.1), or as a `scope` claim with
    /// [`JwtBearer::scope_as_claim`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.scope(scope.into());
        self
    }

    /// Sends the scopes as a `scope` claim of the assertion instead of a
    /// form parameter, as Google expects. Defaults to `false`.
    pub fn scope_as_claim(mut self, as_claim: bool) -> Self {
        self.scope_as_claim = as_claim;
        self
    }

    /// How long an assertion is valid (`exp` - `iat`). Defaults to
    /// [`JwtBearer::DEFAULT_LIFETIME`].
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion.lifetime = lifetime;
        self
    }

    /// Sets a claim of the assertion: a second call with the same name
    /// replaces the first, and a standard claim (`aud`, `sub`, …) given here
    /// replaces the computed one.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.assertion.claims.insert(name.into(), value.into());
        self
    }

    /// Adds a form parameter to the token request, beside any of the same
    /// name given before.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.add(name.into(), value.into());
        self
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// The `assertion` the next token request sends: signed here and now,
    /// with fresh `iat`, `exp` and `jti`, exactly as a token request signs
    /// it (to hand to another system, or to look at).
    ///
    /// ```
    /// use tower_alf::{grant::JwtBearer, jwt::PrivateKey, ClientAuth, TokenEndpoint};
    ///
    /// # let pem = include_str!("../../tests/fixtures/p256_sec1.pem");
    /// let endpoint = TokenEndpoint::builder("https://idp.example/token")
    ///     .client_auth(ClientAuth::anonymous())
    ///     .build()?;
    /// let grant = JwtBearer::new(endpoint, PrivateKey::from_pem(pem)?, "robot@example");
    /// assert_eq!(grant.assertion()?.split('.').count(), 3);
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    pub fn assertion(&self) -> Result<String, Error> {
        let mut form = Vec::new();
        self.attempt().add(self.endpoint.url_text(), &mut form)?;
        form.pop()
            .map(|(_, assertion)| assertion)
            .ok_or_else(|| Error::signing("no assertion was signed"))
    }

    fn form(&self) -> Vec<(String, String)> {
        let mut form = vec![("grant_type".to_owned(), JWT_BEARER_GRANT_TYPE.to_owned())];
        self.params.extend_form(&mut form, !self.scope_as_claim);
        form
    }

    fn attempt(&self) -> Arc<Assertion> {
        let mut assertion = self.assertion.clone();
        if let Some(scope) = self.params.scope_value().filter(|_| self.scope_as_claim) {
            assertion.claims.entry("scope").or_insert(scope.into());
        }
        Arc::new(assertion)
    }
}

impl AttemptParams for Assertion {
    fn add(&self, token_url: &str, form: &mut Vec<(String, String)>) -> Result<(), Error> {
        // RFC 7523 §3: the configured audience or token URL, verbatim.
        let audience = self.audience.as_deref().unwrap_or(token_url);
        let subject = self.subject.as_deref().unwrap_or(&self.issuer);
        let mut claims =
            crate::jwt::assertion_claims(&self.issuer, subject, audience, self.lifetime)?;
        claims.extend(self.claims.clone());
        form.push(("assertion".to_owned(), self.key.sign(&claims)?));
        Ok(())
    }
}

impl JwtBearer {
    fn start(&mut self, _request: FetchToken) -> GrantFuture {
        Box::pin(self.endpoint.request_with(self.form(), self.attempt()))
    }
}

grant_service!(JwtBearer);

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("key", &self.key)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for JwtBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("JwtBearer");
        f.field("endpoint", &self.endpoint)
            .field("assertion", &self.assertion);
        self.params.debug_fields(&mut f);
        f.field("scope_as_claim", &self.scope_as_claim).finish()
    }
}
