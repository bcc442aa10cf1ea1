//! What every grant shares: its scopes and extra form parameters, the form
//! built from them, and the boxed future its `Service` answers with.

use std::{fmt, future::Future, pin::Pin};

use crate::{error::Error, token::Token};

/// The future a built-in grant answers a [`FetchToken`](super::FetchToken)
/// with.
pub(crate) type GrantFuture = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

/// The scopes and the extra form parameters a grant sends; the grant's own
/// parameters come first in its form, then these.
#[derive(Clone, Default)]
pub(crate) struct Params {
    scopes: Vec<String>,
    params: Vec<(String, String)>,
}

impl Params {
    /// The store key of a token fetched from `endpoint` with `grant_type`
    /// and these parameters: the URL, the grant type, the client id, the
    /// endpoint's sender constraint (a bound token is usable only with its
    /// key or certificate: RFC 9449 §6, RFC 8705 §3), the scopes, and every
    /// parameter but the credentials ([`SECRET_PARAMS`] and `also_secret`),
    /// which the client id already stands for and which stay out of the
    /// key, even hashed.
    pub(crate) fn cache_key(
        &self,
        endpoint: &crate::endpoint::TokenEndpoint,
        grant_type: &str,
        also_secret: Option<&str>,
    ) -> crate::store::CacheKeyBuilder {
        let mut key = crate::store::CacheKey::builder(endpoint.url().to_string(), grant_type)
            .client_id(endpoint.client_auth().client_id());
        if let Some((name, value)) = endpoint.proof_key_param() {
            key = key.param(name, value);
        }
        for scope in self.scopes.iter().flat_map(|s| s.split_whitespace()) {
            key = key.scope(scope);
        }
        for (name, value) in &self.params {
            let secret =
                SECRET_PARAMS.contains(&name.as_str()) || also_secret == Some(name.as_str());
            if !secret {
                key = key.param(name.clone(), value.clone());
            }
        }
        key
    }

    /// Asks for one more scope.
    pub(crate) fn scope(&mut self, scope: String) {
        self.scopes.push(scope);
    }

    /// Adds a parameter beside any of the same name.
    pub(crate) fn add(&mut self, name: String, value: String) {
        self.params.push((name, value));
    }

    /// Sets a parameter, replacing any of the same name.
    pub(crate) fn set(&mut self, name: &str, value: String) {
        self.params.retain(|(n, _)| n != name);
        self.add(name.to_owned(), value);
    }

    /// The scopes, in the order given.
    pub(crate) fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The extra parameters, in the order given.
    pub(crate) fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The `scope` value: the scopes space-separated, in the order given
    /// (RFC 6749 §3.3); `None` without any.
    pub(crate) fn scope_value(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join(" "))
    }

    /// Appends `scope` (unless `with_scope` is false: a grant that sends
    /// its scopes elsewhere) and the extra parameters to `form`.
    pub(crate) fn extend_form(&self, form: &mut Vec<(String, String)>, with_scope: bool) {
        if let Some(scope) = self.scope_value().filter(|_| with_scope) {
            form.push(("scope".to_owned(), scope));
        }
        form.extend(self.params.iter().cloned());
    }

    /// A token request form: `grant_type`, the grant's own parameters,
    /// then `scope` and the extra parameters.
    pub(crate) fn form(
        &self,
        grant_type: &str,
        own: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<(String, String)> {
        let mut form = vec![("grant_type".to_owned(), grant_type.to_owned())];
        form.extend(own);
        self.extend_form(&mut form, true);
        form
    }

    /// Adds `scopes` and the names (never the values) of the extra
    /// parameters to a grant's `Debug`: a parameter may carry a credential.
    pub(crate) fn debug_fields(&self, f: &mut fmt::DebugStruct<'_, '_>) {
        f.field("scopes", &self.scopes).field(
            "params",
            &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        );
    }
}

/// `Service<FetchToken>` for a grant with an inherent
/// `fn start(&mut self, request: FetchToken) -> GrantFuture`: always ready
/// (the source calls a grant at most once at a time).
macro_rules! grant_service {
    ($grant:ty) => {
        impl tower::Service<$crate::grant::FetchToken> for $grant {
            type Response = $crate::token::Token;
            type Error = $crate::error::Error;
            type Future = $crate::grant::params::GrantFuture;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: $crate::grant::FetchToken) -> Self::Future {
                self.start(request)
            }
        }
    };
}
pub(crate) use grant_service;

/// Parameters that carry credentials, left out of the [`CacheKey`].
pub(crate) const SECRET_PARAMS: &[&str] = &["client_secret", "client_assertion", "password"];
