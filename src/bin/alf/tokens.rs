//! Building the token source from the arguments, as a library user would.

use std::fmt;

use rustls::RootCertStore;

use tower_alf::{
    discovery::ServerMetadata,
    dpop::DPoPKey,
    grant::{ClientCredentials, RefreshTokenGrant, ServiceAccount},
    jwt::PrivateKey,
    store::{CacheKey, EncryptionKey, RedisStore, StoreGrant, StoreStats},
    ClientAuth, HttpClient, TokenEndpoint, TokenEndpointBuilder, TokenSource,
};

pub(crate) use crate::input::env_secret;
use crate::{
    args::{AuthMethod, OAuthArgs},
    cache::{FileCache, Problem},
    input, terminal,
};

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

pub(crate) async fn source(args: &OAuthArgs) -> Result<TokenSource, tower::BoxError> {
    Ok(source_and_store(args).await?.0)
}

/// The token source, and the counters of its store (`--redis`, or the
/// token cache between runs) when it has one.
pub(crate) async fn source_and_store(
    args: &OAuthArgs,
) -> Result<(TokenSource, Option<StoreStats>), tower::BoxError> {
    if args.redis.is_some() && (args.service_account.is_some() || args.refresh_token_env.is_some())
    {
        return Err(usage("--redis shares client-credentials tokens only").into());
    }
    if args.redis.is_some() && (args.dpop || args.dpop_key.is_some()) {
        return Err(usage("--redis does not share DPoP-bound tokens").into());
    }
    if let Some(path) = &args.service_account {
        let account = ServiceAccount::from_json(&input::secret_file(path, "--service-account")?)?;
        let builder = match &args.token_url {
            Some(url) => TokenEndpoint::builder(url).client_auth(ClientAuth::anonymous()),
            None => account.endpoint_builder(),
        };
        let builder = match &args.client_id {
            Some(_) => builder.client_auth(client_auth(args, args.auth_method)?),
            None => builder,
        };
        let mut grant = account.grant_with(endpoint(args, builder)?);
        for scope in &args.scopes {
            grant = grant.scope(scope);
        }
        for (name, value) in extra_params(args) {
            grant = grant.param(name, value);
        }
        return Ok((TokenSource::new(grant), None));
    }

    let (endpoint, _) = token_endpoint(args, AuthMethod::Basic).await?;

    if let Some(var) = &args.refresh_token_env {
        let refresh_token = env_secret(var)?;
        let mut grant = RefreshTokenGrant::new(endpoint, refresh_token);
        for scope in &args.scopes {
            grant = grant.scope(scope);
        }
        for (name, value) in extra_params(args) {
            grant = grant.param(name, value);
        }
        return Ok((TokenSource::new(grant), None));
    }

    stored(args, client_credentials(args, endpoint))
}

fn client_credentials(args: &OAuthArgs, endpoint: TokenEndpoint) -> ClientCredentials {
    let mut grant = ClientCredentials::new(endpoint);
    for scope in &args.scopes {
        grant = grant.scope(scope);
    }
    for (name, value) in extra_params(args) {
        grant = grant.param(name, value);
    }
    grant
}

/// Whether tokens go through the cache between runs: client-credentials
/// Bearer tokens only (not with --redis, which shares them already, nor
/// DPoP-bound ones), unless --no-cache.
fn caches(args: &OAuthArgs) -> bool {
    !args.no_cache
        && args.redis.is_none()
        && !args.dpop
        && args.dpop_key.is_none()
        && args.service_account.is_none()
        && args.refresh_token_env.is_none()
}

/// The token cache and this grant's key in it, when the arguments use it;
/// a cache file that is not alf's is refused here, a corrupt one warned
/// about (it is replaced after the fetch).
fn cache_for(
    args: &OAuthArgs,
    grant: &ClientCredentials,
) -> Result<Option<(FileCache, CacheKey)>, Usage> {
    if !caches(args) {
        return Ok(None);
    }
    let Some(cache) = FileCache::open()? else {
        return Ok(None);
    };
    let key = grant.cache_key().build();
    match cache.read(&key) {
        Ok(_) => {}
        Err(Problem::Corrupt(reason)) => {
            if !terminal::quiet() {
                eprintln!(
                    "alf: warning: token cache {}: {}; ignored, it will be replaced",
                    terminal::escape(&cache.path(&key).display().to_string()),
                    reason
                );
            }
        }
        Err(Problem::Insecure(reason)) => {
            return Err(usage(format!(
                "token cache {}: {reason}; refused, not read and not replaced (fix or remove \
                 it, or use --no-cache)",
                terminal::escape(&cache.path(&key).display().to_string())
            )))
        }
    }
    Ok(Some((cache, key)))
}

/// `alf token --forget`: removes this grant's token from the cache.
pub(crate) async fn forget(args: &OAuthArgs) -> Result<(), tower::BoxError> {
    if !caches(args) {
        return Err(usage(
            "--forget: these options do not use the token cache (client credentials \
             without --no-cache, --redis or DPoP do)",
        )
        .into());
    }
    let (endpoint, _) = token_endpoint(args, AuthMethod::Basic).await?;
    let grant = client_credentials(args, endpoint);
    let Some(cache) = FileCache::open()? else {
        eprintln!("alf: no cached token (no cache directory)");
        return Ok(());
    };
    let key = grant.cache_key().build();
    let shown = terminal::escape(&cache.path(&key).display().to_string());
    match cache.remove(&key) {
        Ok(true) => eprintln!("alf: forgot the cached token ({shown})"),
        Ok(false) => eprintln!("alf: no cached token"),
        Err(problem) => {
            return Err(usage(format!(
                "token cache {shown}: {problem}; refused, not removed"
            ))
            .into())
        }
    }
    Ok(())
}

/// The client-credentials source, through a Redis store when `--redis` is
/// given, so that several `alf` processes share one token, else through
/// the token cache between runs.
fn stored(
    args: &OAuthArgs,
    grant: ClientCredentials,
) -> Result<(TokenSource, Option<StoreStats>), tower::BoxError> {
    let Some(url) = &args.redis else {
        return Ok(match cache_for(args, &grant)? {
            Some((cache, key)) => {
                let grant = StoreGrant::new(grant, cache, key);
                let stats = grant.stats();
                (TokenSource::new(grant), Some(stats))
            }
            None => (TokenSource::new(grant), None),
        });
    };
    let mut key = grant.cache_key();
    if let Some(prefix) = &args.store_key_prefix {
        key = key.namespace(prefix);
    }
    let mut store = RedisStore::builder(url);
    if let Some(var) = &args.store_encryption_key_env {
        let text = env_secret(var)?;
        let key = EncryptionKey::from_base64(&text).map_err(|e| usage(format!("{var}: {e}")))?;
        store = store.encryption_key(key);
    }
    let store = store.build().map_err(|e| usage(format!("--redis: {e}")))?;
    let grant = StoreGrant::new(grant, store, key.build());
    let stats = grant.stats();
    Ok((TokenSource::new(grant), Some(stats)))
}

/// The token endpoint from `--token-url` or `--issuer` (then with the
/// metadata), with the client authentication the arguments ask for;
/// `default_method` when `--auth-method` is not given with `--token-url`.
pub(crate) async fn token_endpoint(
    args: &OAuthArgs,
    default_method: AuthMethod,
) -> Result<(TokenEndpoint, Option<ServerMetadata>), tower::BoxError> {
    let (builder, metadata) = match (&args.token_url, &args.issuer) {
        (Some(url), _) => {
            let method = args.auth_method.unwrap_or(default_method);
            let builder = TokenEndpoint::builder(url).client_auth(client_auth(args, Some(method))?);
            (builder, None)
        }
        (None, Some(issuer)) => {
            let metadata = ServerMetadata::discover(issuer, &http_client(args)?).await?;
            let candidates = match args.auth_method {
                Some(method) => vec![client_auth(args, Some(method))?],
                None => default_candidates(args)?,
            };
            let auth = metadata.choose_client_auth(candidates)?;
            (
                metadata.token_endpoint_builder().client_auth(auth),
                Some(metadata),
            )
        }
        (None, None) => return Err(usage("--token-url or --issuer is required").into()),
    };
    Ok((endpoint(args, builder)?, metadata))
}

/// The token endpoint of a flow a user signs in to (`alf login`, with or
/// without `--device`): a confidential client when a secret or key was
/// given, else a public one (`none`), unless `--auth-method` says.
pub(crate) async fn user_flow_endpoint(
    args: &OAuthArgs,
) -> Result<(TokenEndpoint, Option<ServerMetadata>), tower::BoxError> {
    let has_credentials = args.client_secret_env.is_some()
        || args.client_secret_file.is_some()
        || args.private_key.is_some();
    let default = if has_credentials {
        AuthMethod::Basic
    } else {
        AuthMethod::None
    };
    token_endpoint(args, default).await
}

/// `--audience`, `--resource` and `--param`, in that order.
fn extra_params(args: &OAuthArgs) -> Vec<(String, String)> {
    let mut params = Vec::new();
    if let Some(audience) = &args.audience {
        params.push(("audience".to_owned(), audience.clone()));
    }
    for resource in &args.resources {
        params.push(("resource".to_owned(), resource.clone()));
    }
    params.extend(args.params.iter().cloned());
    params
}

/// The most a `--cacert` file may hold.
const CACERT_CAP: u64 = 4 * 1024 * 1024;

/// The roots of `--cacert`, when given: every certificate of the PEM file.
pub(crate) fn cacert_roots(args: &OAuthArgs) -> Result<Option<RootCertStore>, Usage> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let Some(path) = &args.cacert else {
        return Ok(None);
    };
    let shown = path.display();
    let failed = |e: &dyn fmt::Display| usage(format!("--cacert {shown}: {e}"));
    let metadata = std::fs::metadata(path).map_err(|e| failed(&e))?;
    if !metadata.is_file() {
        return Err(failed(&"not a regular file"));
    }
    if metadata.len() > CACERT_CAP {
        return Err(failed(&"larger than 4 MiB"));
    }
    let pem = std::fs::read(path).map_err(|e| failed(&e))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| failed(&e))?;
        roots.add(cert).map_err(|e| failed(&e))?;
    }
    if roots.is_empty() {
        return Err(failed(&"no PEM certificate in it"));
    }
    Ok(Some(roots))
}

/// The HTTP client for the token endpoint, discovery and the device
/// authorization request: `--cacert`'s roots, else the default.
pub(crate) fn http_client(args: &OAuthArgs) -> Result<HttpClient, Usage> {
    Ok(match cacert_roots(args)? {
        Some(roots) => HttpClient::with_root_certificates(roots),
        None => HttpClient::default(),
    })
}

fn endpoint(
    args: &OAuthArgs,
    builder: TokenEndpointBuilder,
) -> Result<TokenEndpoint, tower::BoxError> {
    let mut builder = builder.allow_insecure_http(args.allow_insecure_http);
    if args.cacert.is_some() {
        builder = builder.http_client(http_client(args)?);
    }
    if let Some(key) = dpop_key(args)? {
        builder = builder.dpop(key);
    }
    if let Some(timeout) = args.timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder.build()?)
}

fn client_id(args: &OAuthArgs) -> Result<String, Usage> {
    args.client_id
        .clone()
        .ok_or_else(|| usage("--client-id is required"))
}

/// The client authentication `method` asks for (basic when `None`).
fn client_auth(
    args: &OAuthArgs,
    method: Option<AuthMethod>,
) -> Result<ClientAuth, tower::BoxError> {
    let client_id = client_id(args)?;
    Ok(match method.unwrap_or(AuthMethod::Basic) {
        AuthMethod::Basic => ClientAuth::basic(client_id, secret(args)?),
        AuthMethod::BasicRaw => ClientAuth::basic_raw(client_id, secret(args)?),
        AuthMethod::Post => ClientAuth::post(client_id, secret(args)?),
        AuthMethod::Jwt => ClientAuth::client_secret_jwt(client_id, secret(args)?),
        AuthMethod::PrivateKeyJwt => ClientAuth::private_key_jwt(client_id, private_key(args)?),
        AuthMethod::None => ClientAuth::none(client_id),
    })
}

/// With --issuer and no --auth-method: what the client can do, best first.
fn default_candidates(args: &OAuthArgs) -> Result<Vec<ClientAuth>, tower::BoxError> {
    let client_id = client_id(args)?;
    let mut candidates = Vec::new();
    if args.private_key.is_some() {
        candidates.push(ClientAuth::private_key_jwt(&client_id, private_key(args)?));
    }
    if args.client_secret_env.is_some() || args.client_secret_file.is_some() {
        let secret = secret(args)?;
        candidates.push(ClientAuth::basic(&client_id, secret.clone()));
        candidates.push(ClientAuth::post(&client_id, secret.clone()));
        candidates.push(ClientAuth::client_secret_jwt(&client_id, secret));
    }
    if candidates.is_empty() {
        candidates.push(ClientAuth::none(client_id));
    }
    Ok(candidates)
}

/// The `--private-key` file (PEM or JWK), with `--alg` and `--key-id`.
fn private_key(args: &OAuthArgs) -> Result<PrivateKey, tower::BoxError> {
    let path = args
        .private_key
        .as_ref()
        .ok_or_else(|| usage("--auth-method private_key_jwt needs --private-key FILE"))?;
    let text = input::secret_file(path, "--private-key")?;
    let mut key = if text.trim_start().starts_with('{') {
        PrivateKey::from_jwk(&text)?
    } else {
        PrivateKey::from_pem(&text)?
    };
    if let Some(alg) = &args.alg {
        key = key.with_algorithm(alg.parse()?)?;
    }
    if let Some(kid) = &args.key_id {
        key = key.with_key_id(kid);
    }
    Ok(key)
}

/// `--dpop-key FILE` (PEM or JWK), or a fresh ES256 key with `--dpop`.
fn dpop_key(args: &OAuthArgs) -> Result<Option<DPoPKey>, tower::BoxError> {
    if let Some(path) = &args.dpop_key {
        let text = input::secret_file(path, "--dpop-key")?;
        let key = if text.trim_start().starts_with('{') {
            PrivateKey::from_jwk(&text)?
        } else {
            PrivateKey::from_pem(&text)?
        };
        return Ok(Some(DPoPKey::new(key)?));
    }
    Ok(if args.dpop {
        Some(DPoPKey::generate()?)
    } else {
        None
    })
}

/// The client secret, from the environment or a file; never from the
/// command line, where other users of the machine could read it.
fn secret(args: &OAuthArgs) -> Result<String, Usage> {
    if let Some(var) = &args.client_secret_env {
        return env_secret(var);
    }
    if let Some(path) = &args.client_secret_file {
        return input::secret_file_line(path, "--client-secret-file");
    }
    Err(usage(
        "a client secret is required: --client-secret-env VAR or --client-secret-file FILE",
    ))
}
