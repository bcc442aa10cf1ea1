use std::fmt;

use super::{
    params::{grant_service, GrantFuture, Params},
    FetchToken,
};
use crate::{
    endpoint::TokenEndpoint,
    error::Error,
    http::{checked_url, PlainHttp},
    secret::AccessToken,
    source::TokenSource,
};

/// The `grant_type` of RFC 8693 §2.1.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token exchange grant (RFC 8693): trades a token (the *subject*, and
/// optionally an *actor*) for another one, for another audience, resource or
/// scope. Delegation chains are built by taking the subject from another
/// [`TokenSource`]: its current token is exchanged each time.
///
/// The server's answer must be a bearer access token: an exchange that
/// issues something else (`token_type` `N_A`, RFC 8693 §2.2.1) is refused,
/// since it could not be sent as a bearer token.
///
/// ```
/// use tower_alf::{
///     grant::{ClientCredentials, SubjectToken, TokenExchange},
///     ClientAuth, TokenEndpoint, TokenSource,
/// };
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://sts.example/token")
///     .client_auth(ClientAuth::basic("gateway", "s3cr3t"))
///     .build()?;
/// let own = TokenSource::new(ClientCredentials::new(endpoint.clone()));
/// // Exchange the gateway's own token for one scoped to the backend.
/// let backend = TokenSource::new(
///     TokenExchange::new(endpoint, SubjectToken::source(own))
///         .audience("https://backend.example")
///         .scope("orders:read"),
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenExchange {
    endpoint: TokenEndpoint,
    subject: SubjectToken,
    actor: Option<SubjectToken>,
    requested_token_type: Option<String>,
    params: Params,
}

/// Where a token to exchange comes from, and its type (RFC 8693 §3).
#[derive(Clone)]
pub struct SubjectToken {
    kind: Kind,
    token_type: String,
}

#[derive(Clone)]
enum Kind {
    Fixed(AccessToken),
    Source(TokenSource),
    File(std::sync::Arc<std::path::PathBuf>),
}

impl SubjectToken {
    /// `urn:ietf:params:oauth:token-type:access_token`
    pub const ACCESS_TOKEN: &'static str = "urn:ietf:params:oauth:token-type:access_token";
    /// `urn:ietf:params:oauth:token-type:refresh_token`
    pub const REFRESH_TOKEN: &'static str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// `urn:ietf:params:oauth:token-type:id_token`
    pub const ID_TOKEN: &'static str = "urn:ietf:params:oauth:token-type:id_token";
    /// `urn:ietf:params:oauth:token-type:jwt`
    pub const JWT: &'static str = "urn:ietf:params:oauth:token-type:jwt";
    /// `urn:ietf:params:oauth:token-type:saml2`
    pub const SAML2: &'static str = "urn:ietf:params:oauth:token-type:saml2";

    /// A fixed token of the given type (one of the constants above, or
    /// any URI the server knows).
    pub fn token(token: impl Into<AccessToken>, token_type: impl Into<String>) -> Self {
        Self {
            kind: Kind::Fixed(token.into()),
            token_type: token_type.into(),
        }
    }

    /// The current access token of `source`, fetched (or refreshed) when
    /// needed, as an `access_token`.
    pub fn source(source: TokenSource) -> Self {
        Self {
            kind: Kind::Source(source),
            token_type: Self::ACCESS_TOKEN.to_owned(),
        }
    }

    /// A token of the given type read from `path` for every fetch:
    /// workload identity federation, where the platform writes a
    /// short-lived JWT to a file and rotates it (a Kubernetes projected
    /// service-account token, a CI job's OIDC token). A rotated file is
    /// sent from the next fetch on, without a restart. The file is read as
    /// [`ClientAuth::client_assertion_file`](crate::ClientAuth::client_assertion_file)
    /// reads its own: a regular file of at most 64 KiB, trimmed, typed
    /// errors that never quote it.
    ///
    /// ```
    /// use tower_alf::grant::SubjectToken;
    ///
    /// let subject = SubjectToken::file("/var/run/secrets/tokens/sts-token", SubjectToken::JWT);
    /// assert_eq!(subject.token_type(), SubjectToken::JWT);
    /// ```
    pub fn file(path: impl Into<std::path::PathBuf>, token_type: impl Into<String>) -> Self {
        Self {
            kind: Kind::File(std::sync::Arc::new(path.into())),
            token_type: token_type.into(),
        }
    }

    /// Sets the token type sent with it (e.g. [`SubjectToken::JWT`] for a
    /// source whose access tokens are JWTs), replacing the one before.
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// The token type.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    async fn value(&self) -> Result<String, Error> {
        match &self.kind {
            Kind::Fixed(token) => Ok(token.secret().to_owned()),
            Kind::Source(source) => Ok(source.token().await?.access_token().secret().to_owned()),
            Kind::File(path) => {
                crate::endpoint::client_auth::read_credential_file(path, "subject token file")
            }
        }
    }
}

impl TokenExchange {
    /// The grant against `endpoint`, exchanging `subject`.
    pub fn new(endpoint: TokenEndpoint, subject: SubjectToken) -> Self {
        Self {
            endpoint,
            subject,
            actor: None,
            requested_token_type: None,
            params: Params::default(),
        }
    }

    /// Sets the acting party (`actor_token`, `actor_token_type`): who acts
    /// on the subject's behalf (delegation, RFC 8693 §1.1). One actor; a
    /// second call replaces the first.
    pub fn actor(mut self, actor: SubjectToken) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Sets the `requested_token_type`, replacing any given before.
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// Sets the `audience` parameter (a logical name of the target
    /// service), replacing any audience given before. RFC 8693 §2.1 allows
    /// several: use [`add_audience`](Self::add_audience) for more than one.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.params.set("audience", audience.into());
        self
    }

    /// Adds an `audience` parameter beside those given before; the request
    /// carries one `audience` per call.
    pub fn add_audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// Adds a `resource` parameter (a target service's URI) beside those
    /// given before (RFC 8693 §2.1 allows several); the request carries one
    /// `resource` per call. It must be an absolute URI without a fragment
    /// (RFC 8693 §2.1); an `http(s)` one also with a port from 1 to 65535 if
    /// any and no `user:password@`. A fetch with one that is not fails with
    /// [`Error::is_config`].
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Adds a scope to those asked for; call again for more. Sent
    /// space-separated, in the order given.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.scope(scope.into());
        self
    }

    /// Adds any other form parameter, beside any of the same name given
    /// before.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.add(name.into(), value.into());
        self
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }
}

impl TokenExchange {
    fn start(&mut self, _request: FetchToken) -> GrantFuture {
        let this = self.clone();
        Box::pin(async move {
            for (name, value) in this.params.params() {
                if name == "resource" {
                    check_resource(value)?;
                }
            }
            let mut own = vec![
                ("subject_token".to_owned(), this.subject.value().await?),
                (
                    "subject_token_type".to_owned(),
                    this.subject.token_type.clone(),
                ),
            ];
            if let Some(actor) = &this.actor {
                own.push(("actor_token".to_owned(), actor.value().await?));
                own.push(("actor_token_type".to_owned(), actor.token_type.clone()));
            }
            if let Some(requested) = &this.requested_token_type {
                own.push(("requested_token_type".to_owned(), requested.clone()));
            }
            let form = this.params.form(GRANT_TYPE, own);
            this.endpoint.request(form).await
        })
    }
}

grant_service!(TokenExchange);

/// RFC 8693 §2.1: an absolute URI, no fragment; an `http(s)` one is held to
/// the crate's URL rule, except that plain `http` is fine for a name.
fn check_resource(resource: &str) -> Result<(), Error> {
    let scheme = resource.split_once(':').map(|(scheme, _)| scheme);
    let valid_scheme = scheme.is_some_and(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !valid_scheme {
        return Err(Error::config("the resource must be an absolute URI"));
    }
    if scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")) {
        checked_url(resource, "resource", PlainHttp::Allowed)?;
    } else if resource.contains('#') {
        return Err(Error::config("the resource must not have a fragment (#…)"));
    }
    Ok(())
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SubjectToken");
        match &self.kind {
            Kind::Fixed(token) => d.field("token", token),
            Kind::Source(source) => d.field("source", source),
            Kind::File(path) => d.field("file", path),
        };
        d.field("token_type", &self.token_type).finish()
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("TokenExchange");
        f.field("endpoint", &self.endpoint)
            .field("subject", &self.subject)
            .field("actor", &self.actor)
            .field("requested_token_type", &self.requested_token_type);
        self.params.debug_fields(&mut f);
        f.finish()
    }
}
