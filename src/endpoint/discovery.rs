//! Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0):
//! find the token endpoint and a client authentication method the server
//! supports from its issuer URL.

use std::fmt;

use http::{StatusCode, Uri};
use serde_json::{Map, Value};

use super::{client_auth::ClientAuth, TokenEndpoint, TokenEndpointBuilder};
use crate::{
    error::Error,
    http::{checked_url, url_problem, HttpClient, PlainHttp},
};

/// What an authorization server says about itself (RFC 8414 §2).
///
/// [`ServerMetadata::discover`] fetches it from the issuer:
/// `/.well-known/oauth-authorization-server` (RFC 8414 §3), then
/// `/.well-known/openid-configuration` (OpenID Connect Discovery §4). The
/// `issuer` it states must be the one asked for (RFC 8414 §3.3).
///
/// ```
/// use tower_alf::{discovery::ServerMetadata, ClientAuth};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let metadata = ServerMetadata::from_json("https://idp.example", br#"{
///     "issuer": "https://idp.example",
///     "token_endpoint": "https://idp.example/oauth2/token",
///     "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
///     "token_endpoint_auth_signing_alg_values_supported": ["ES256"]
/// }"#)?;
/// // The first candidate the server supports wins.
/// let auth = metadata.choose_client_auth([
///     ClientAuth::basic("app", "s3cr3t"),
///     ClientAuth::post("app", "s3cr3t"),
/// ])?;
/// assert_eq!(auth.method_name(), "client_secret_post");
/// let endpoint = metadata.token_endpoint_builder().client_auth(auth).build()?;
/// assert_eq!(endpoint.url(), "https://idp.example/oauth2/token");
///
/// // None fits: a clear error naming what the server supports.
/// let e = metadata.choose_client_auth([ClientAuth::basic("app", "s")]).unwrap_err();
/// assert!(e.to_string().contains("client_secret_post, private_key_jwt"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerMetadata {
    issuer: String,
    token_endpoint: String,
    auth_methods: Vec<String>,
    signing_algs: Option<Vec<String>>,
    raw: Map<String, Value>,
}

impl ServerMetadata {
    /// Bounds each metadata request as a token request attempt is bounded:
    /// [`TokenEndpoint::DEFAULT_TIMEOUT`] (10 s).
    const TIMEOUT: std::time::Duration = TokenEndpoint::DEFAULT_TIMEOUT;
    /// Caps a metadata document: 1 MiB.
    const MAX_SIZE: usize = TokenEndpoint::DEFAULT_MAX_RESPONSE_SIZE;

    /// Fetches the metadata of `issuer` with `client`. The issuer must be
    /// an `https` URL (`http` only on a loopback host) with no query, no
    /// fragment, no userinfo and a valid port (RFC 8414 §2); every URL the
    /// document names is held to the same rule (see
    /// [`ServerMetadata::from_json`]).
    pub async fn discover(issuer: &str, client: &HttpClient) -> Result<Self, Error> {
        let issuer = issuer.trim_end_matches('/');
        let uri = checked_issuer(issuer)?;
        let authority = uri.authority().map_or("", |a| a.as_str());
        let scheme = uri.scheme_str().unwrap_or("https");
        let path = uri.path().trim_end_matches('/');
        let candidates = [
            format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let mut last = None;
        for url in candidates {
            let url: Uri = url
                .parse()
                .map_err(|_| Error::config("the issuer gives no valid metadata URL"))?;
            let (status, body) = client
                .get(url.clone(), Self::TIMEOUT, Self::MAX_SIZE)
                .await
                .map_err(Error::of_metadata)?;
            if status.is_success() {
                tracing::debug!(%url, "read authorization server metadata");
                return Self::from_json(issuer, &body).map_err(|e| e.with_status(status));
            }
            last = Some((status, body));
        }
        let (status, body) = last.unwrap_or((StatusCode::NOT_FOUND, Default::default()));
        Err(Error::status(status, None, &body).of_metadata())
    }

    /// Reads a metadata document for `issuer`.
    ///
    /// The document's `issuer` must be the one asked for (RFC 8414 §3.3),
    /// and it and every URL the document names (`token_endpoint`, every
    /// other `*_endpoint`, `jwks_uri`) must pass the crate's URL rule:
    /// `https` (`http` only on a loopback host), a port from 1 to 65535 if
    /// any, no userinfo, no fragment. A document that breaks it is an
    /// [`Error::is_invalid_response`]; no server answered it, so
    /// [`Error::status_code`] is `None` (with [`ServerMetadata::discover`],
    /// the status of the answer).
    pub fn from_json(issuer: &str, json: &[u8]) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::invalid_metadata(reason, json);
        let raw: Map<String, Value> =
            serde_json::from_slice(json).map_err(|_| invalid("not a JSON object"))?;
        let text = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_owned);
        let list = |name: &str| -> Option<Vec<String>> {
            raw.get(name)?.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
        };
        let stated = text("issuer").ok_or_else(|| invalid("no issuer"))?;
        if stated.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(invalid(&format!(
                "the issuer is {stated:?}, not {issuer:?} (RFC 8414 §3.3)"
            )));
        }
        url_problem(
            stated.trim_end_matches('/'),
            "issuer",
            PlainHttp::LoopbackOnly,
        )
        .map_err(|problem| invalid(&problem))?;
        let token_endpoint = text("token_endpoint").ok_or_else(|| invalid("no token_endpoint"))?;
        for (name, value) in &raw {
            if name.ends_with("_endpoint") || name == "jwks_uri" {
                let Some(url) = value.as_str() else {
                    return Err(invalid(&format!("{name} is not a string")));
                };
                url_problem(url, name, PlainHttp::LoopbackOnly)
                    .map_err(|problem| invalid(&problem))?;
            }
        }
        // RFC 8705 §5: the endpoints again, for mutual TLS; the same rule.
        if let Some(aliases) = raw.get("mtls_endpoint_aliases") {
            let aliases = aliases
                .as_object()
                .ok_or_else(|| invalid("mtls_endpoint_aliases is not a JSON object"))?;
            for (name, value) in aliases {
                let what = format!("mtls_endpoint_aliases.{name}");
                let url = value
                    .as_str()
                    .ok_or_else(|| invalid(&format!("{what} is not a string")))?;
                url_problem(url, &what, PlainHttp::LoopbackOnly)
                    .map_err(|problem| invalid(&problem))?;
            }
        }
        Ok(Self {
            issuer: stated,
            token_endpoint,
            // RFC 8414 §2: "If omitted, the default is client_secret_basic".
            auth_methods: list("token_endpoint_auth_methods_supported")
                .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]),
            signing_algs: list("token_endpoint_auth_signing_alg_values_supported"),
            raw,
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// `token_endpoint_auth_methods_supported`; `["client_secret_basic"]`
    /// when the server does not say (RFC 8414 §2).
    pub fn token_endpoint_auth_methods_supported(&self) -> &[String] {
        &self.auth_methods
    }

    /// `token_endpoint_auth_signing_alg_values_supported`, if stated.
    pub fn token_endpoint_auth_signing_alg_values_supported(&self) -> Option<&[String]> {
        self.signing_algs.as_deref()
    }

    /// `device_authorization_endpoint` (RFC 8628 §4), if stated: where a
    /// [`DeviceAuthorization`](crate::grant::DeviceAuthorization) starts.
    pub fn device_authorization_endpoint(&self) -> Option<&str> {
        self.raw
            .get("device_authorization_endpoint")
            .and_then(Value::as_str)
    }

    /// The mutual-TLS alias of an endpoint (RFC 8705 §5
    /// `mtls_endpoint_aliases`): `name` is the endpoint's metadata name
    /// (`token_endpoint`, `device_authorization_endpoint`, …). A server may
    /// serve mutual TLS on other hosts than its plain endpoints; a client
    /// that authenticates with a certificate, or wants tokens bound to it,
    /// uses the alias when there is one.
    pub fn mtls_endpoint_alias(&self, name: &str) -> Option<&str> {
        self.raw.get("mtls_endpoint_aliases")?.get(name)?.as_str()
    }

    /// `tls_client_certificate_bound_access_tokens` (RFC 8705 §3.3):
    /// whether the server binds access tokens to the client's certificate.
    /// `false` when it does not say.
    pub fn tls_client_certificate_bound_access_tokens(&self) -> bool {
        self.raw
            .get("tls_client_certificate_bound_access_tokens")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The token endpoint `auth` sends to: its mutual-TLS alias
    /// ([`mtls_endpoint_alias`](Self::mtls_endpoint_alias)) when `auth` is
    /// `tls_client_auth` or `self_signed_tls_client_auth` and the server
    /// names one, else [`token_endpoint`](Self::token_endpoint).
    pub fn token_endpoint_for(&self, auth: &ClientAuth) -> &str {
        if is_mtls(auth) {
            if let Some(alias) = self.mtls_endpoint_alias("token_endpoint") {
                return alias;
            }
        }
        &self.token_endpoint
    }

    /// A [`TokenEndpointBuilder`] for [`token_endpoint_for`](Self::token_endpoint_for)`(&auth)`,
    /// with `auth` as its client authentication.
    ///
    /// ```
    /// use tower_alf::{discovery::ServerMetadata, ClientAuth};
    ///
    /// # fn run(chain_pem: &str, key_pem: &str) -> Result<(), tower_alf::Error> {
    /// let metadata = ServerMetadata::from_json("https://idp.example", br#"{
    ///     "issuer": "https://idp.example",
    ///     "token_endpoint": "https://idp.example/token",
    ///     "token_endpoint_auth_methods_supported": ["client_secret_basic", "tls_client_auth"],
    ///     "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.example/token"}
    /// }"#)?;
    /// let auth = metadata.choose_client_auth([
    ///     ClientAuth::tls_client_auth("app", chain_pem, key_pem)?,
    ///     ClientAuth::basic("app", "s3cr3t"),
    /// ])?;
    /// let endpoint = metadata.token_endpoint_builder_for(auth).build()?;
    /// assert_eq!(endpoint.url(), "https://mtls.idp.example/token");
    /// # Ok(()) }
    /// ```
    pub fn token_endpoint_builder_for(&self, auth: ClientAuth) -> TokenEndpointBuilder {
        TokenEndpoint::builder(self.token_endpoint_for(&auth)).client_auth(auth)
    }

    /// Any other member of the document (`authorization_endpoint`,
    /// `grant_types_supported`, …).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }

    /// Whether the server supports this client authentication: its method
    /// is listed and, for a JWT method, its algorithm too (when the server
    /// lists algorithms).
    pub fn supports(&self, auth: &ClientAuth) -> bool {
        let method = auth.method_name();
        if !self.auth_methods.iter().any(|m| m == method) {
            return false;
        }
        match (auth.signing_algorithm(), &self.signing_algs) {
            (Some(alg), Some(algs)) => algs.iter().any(|a| a == alg),
            _ => true,
        }
    }

    /// The first of `candidates` (in your order of preference) the server
    /// supports; an error naming the server's methods when none fits.
    pub fn choose_client_auth(
        &self,
        candidates: impl IntoIterator<Item = ClientAuth>,
    ) -> Result<ClientAuth, Error> {
        let mut tried = Vec::new();
        for auth in candidates {
            if self.supports(&auth) {
                return Ok(auth);
            }
            tried.push(match auth.signing_algorithm() {
                Some(alg) => format!("{} ({alg})", auth.method_name()),
                None => auth.method_name().to_owned(),
            });
        }
        let mut message = format!(
            "the server supports none of the client authentication methods offered ({}); \
             it supports {}",
            tried.join(", "),
            self.auth_methods.join(", ")
        );
        if let Some(algs) = &self.signing_algs {
            message.push_str(&format!(" with {}", algs.join(", ")));
        }
        Err(Error::config(message))
    }

    /// A [`TokenEndpointBuilder`] for the token endpoint; give it the client
    /// authentication (from [`ServerMetadata::choose_client_auth`]).
    pub fn token_endpoint_builder(&self) -> TokenEndpointBuilder {
        TokenEndpoint::builder(&self.token_endpoint)
    }
}

/// Whether `auth` authenticates with a client certificate (RFC 8705 §2).
fn is_mtls(auth: &ClientAuth) -> bool {
    matches!(
        auth.method_name(),
        "tls_client_auth" | "self_signed_tls_client_auth"
    )
}

/// The issuer rule: the crate's URL rule, and no query (RFC 8414 §2).
fn checked_issuer(issuer: &str) -> Result<Uri, Error> {
    let uri = checked_url(issuer, "issuer", PlainHttp::LoopbackOnly)?;
    if uri.query().is_some() {
        return Err(Error::config(
            "the issuer must not have a query (RFC 8414 §2)",
        ));
    }
    Ok(uri)
}

impl fmt::Debug for ServerMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetadata")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint)
            .field("auth_methods", &self.auth_methods)
            .field("signing_algs", &self.signing_algs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(json: Value) -> Result<ServerMetadata, Error> {
        ServerMetadata::from_json("https://idp.example", json.to_string().as_bytes())
    }

    #[test]
    fn auth_methods_default_to_client_secret_basic() {
        let m = metadata(serde_json::json!({
            "issuer": "https://idp.example", "token_endpoint": "https://idp.example/t"
        }))
        .unwrap();
        assert_eq!(
            m.token_endpoint_auth_methods_supported(),
            ["client_secret_basic"]
        );
        assert!(m.supports(&ClientAuth::basic("a", "b")));
        assert!(!m.supports(&ClientAuth::post("a", "b")));
    }

    #[test]
    fn a_different_issuer_is_refused() {
        let e = metadata(serde_json::json!({
            "issuer": "https://evil.example", "token_endpoint": "https://evil.example/t"
        }))
        .unwrap_err();
        assert!(e.is_invalid_response());
        assert!(e.to_string().contains("evil.example"));
    }

    #[test]
    fn a_missing_token_endpoint_is_an_error() {
        assert!(metadata(serde_json::json!({"issuer": "https://idp.example"})).is_err());
        assert!(ServerMetadata::from_json("https://idp.example", b"<html>").is_err());
    }

    #[test]
    fn mtls_aliases_are_held_to_the_url_rule() {
        let e = metadata(serde_json::json!({
            "issuer": "https://idp.example", "token_endpoint": "https://idp.example/t",
            "mtls_endpoint_aliases": {"token_endpoint": "http://mtls.idp.example/t"}
        }))
        .unwrap_err();
        assert!(e.is_invalid_response());
        assert!(
            e.to_string()
                .contains("mtls_endpoint_aliases.token_endpoint"),
            "{e}"
        );
        let e = metadata(serde_json::json!({
            "issuer": "https://idp.example", "token_endpoint": "https://idp.example/t",
            "mtls_endpoint_aliases": ["https://mtls.idp.example/t"]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        let m = metadata(serde_json::json!({
            "issuer": "https://idp.example", "token_endpoint": "https://idp.example/t",
            "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.example/t"},
            "tls_client_certificate_bound_access_tokens": true
        }))
        .unwrap();
        assert_eq!(
            m.mtls_endpoint_alias("token_endpoint"),
            Some("https://mtls.idp.example/t")
        );
        assert!(m.tls_client_certificate_bound_access_tokens());
        // Not mutual TLS: the plain endpoint.
        assert_eq!(
            m.token_endpoint_for(&ClientAuth::basic("a", "b")),
            "https://idp.example/t"
        );
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_methods_need_a_listed_algorithm() {
        let m = metadata(serde_json::json!({
            "issuer": "https://idp.example", "token_endpoint": "https://idp.example/t",
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "HS256"],
        }))
        .unwrap();
        let pem = include_str!("../../tests/fixtures/p256_sec1.pem");
        let ec = crate::jwt::PrivateKey::from_pem(pem).unwrap();
        assert!(!m.supports(&ClientAuth::private_key_jwt("a", ec.clone())));
        assert!(m.supports(&ClientAuth::client_secret_jwt("a", "s")));
        let e = m
            .choose_client_auth([ClientAuth::private_key_jwt("a", ec)])
            .unwrap_err();
        assert!(e.to_string().contains("private_key_jwt (ES256)"), "{e}");
        assert!(e.to_string().contains("RS256, HS256"), "{e}");
    }
}
