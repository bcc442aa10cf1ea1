//! Building the token source from the arguments, as a library user would.

use std::fmt;

use tower_alf::{
    grant::ClientCredentials,
    store::{EncryptionKey, RedisStore, StoreGrant},
    ClientAuth, TokenEndpoint, TokenSource,
};

use crate::args::{AuthMethod, OAuthArgs};

/// A problem with the arguments, said in one line.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub(crate) fn usage(message: impl Into<String>) -> Usage {
    Usage(message.into())
}

pub(crate) fn source(args: &OAuthArgs) -> Result<TokenSource, tower::BoxError> {
    let token_url = args
        .token_url
        .as_deref()
        .ok_or_else(|| usage("--token-url is required"))?;
    let client_id = args
        .client_id
        .clone()
        .ok_or_else(|| usage("--client-id is required"))?;
    let secret = secret(args)?;
    let auth = match args.auth_method {
        AuthMethod::Basic => ClientAuth::basic(client_id, secret),
        AuthMethod::Post => ClientAuth::post(client_id, secret),
    };
    let mut endpoint = TokenEndpoint::builder(token_url)
        .client_auth(auth)
        .allow_insecure_http(args.allow_insecure_http);
    if let Some(timeout) = args.timeout {
        endpoint = endpoint.timeout(timeout);
    }
    let mut grant = ClientCredentials::new(endpoint.build()?);
    for scope in &args.scopes {
        grant = grant.scope(scope);
    }
    if let Some(audience) = &args.audience {
        grant = grant.audience(audience);
    }
    for resource in &args.resources {
        grant = grant.resource(resource);
    }
    for (name, value) in &args.params {
        grant = grant.param(name, value);
    }
    let Some(url) = &args.redis else {
        return Ok(TokenSource::new(grant));
    };
    let mut key = grant.cache_key();
    if let Some(prefix) = &args.store_key_prefix {
        key = key.namespace(prefix);
    }
    let mut store = RedisStore::builder(url);
    if let Some(var) = &args.store_encryption_key_env {
        let text = std::env::var(var)
            .map_err(|_| usage(format!("the environment variable {var} is not set")))?;
        let key = EncryptionKey::from_base64(&text).map_err(|e| usage(format!("{var}: {e}")))?;
        store = store.encryption_key(key);
    }
    let store = store.build().map_err(|e| usage(format!("--redis: {e}")))?;
    Ok(TokenSource::new(StoreGrant::new(grant, store, key.build())))
}

/// A secret from an environment variable.
pub(crate) fn env_secret(var: &str) -> Result<String, Usage> {
    std::env::var(var).map_err(|_| usage(format!("the environment variable {var} is not set")))
}

/// The client secret, from the environment or a file; never from the
/// command line, where other users of the machine could read it.
fn secret(args: &OAuthArgs) -> Result<String, Usage> {
    if let Some(var) = &args.client_secret_env {
        return env_secret(var);
    }
    if let Some(path) = &args.client_secret_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        return Ok(text.strip_suffix('\r').unwrap_or(text).to_owned());
    }
    Err(usage(
        "a client secret is required: --client-secret-env VAR or --client-secret-file FILE",
    ))
}
