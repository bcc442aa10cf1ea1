//! Building the token source from the arguments, as a library user would.

use std::fmt;

use rustls::RootCertStore;

use tower_alf::{
    discovery::ServerMetadata,
    dpop::DPoPKey,
    grant::{
        ClientCredentials, ServiceAccount, SubjectToken, TokenCommand, TokenExchange, TokenFile,
    },
    jwt::PrivateKey,
    store::{CacheKey, EncryptionKey, RedisStore, StoreGrant, StoreStats},
    ClientAuth, ClientCertificate, HttpClient, TokenEndpoint, TokenEndpointBuilder, TokenSource,
};

pub(crate) use crate::input::env_secret;
use crate::{
    args::{AuthMethod, OAuthArgs},
    cache::{FileCache, Problem},
    input, refresh, terminal,
    verbose::{self, Verbose},
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
    check_grant(args)?;
    // Files the library reads for every fetch: checked now too, so that a
    // bad one is a usage error before anything is sent.
    for (path, option) in [
        (&args.token_file, "--token-file"),
        (&args.subject_token_file, "--subject-token-file"),
        (&args.actor_token_file, "--actor-token-file"),
    ] {
        if let Some(path) = path {
            input::secret_file(path, option)?;
        }
    }
    if let Some(path) = &args.token_file {
        return Ok((TokenSource::new(TokenFile::new(path)), None));
    }
    if let Some((program, rest)) = args.token_command.split_first() {
        let mut command = TokenCommand::new(program).args(rest);
        if let Some(timeout) = args.timeout {
            command = command.timeout(timeout);
        }
        return Ok((TokenSource::new(command), None));
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
    if let Some(path) = &args.assertion_file {
        return Ok((assertion_source(args, path).await?, None));
    }

    let (endpoint, _) = token_endpoint(args, AuthMethod::Basic).await?;

    if let Some(subject) = subject_token(args)? {
        let mut grant = TokenExchange::new(endpoint, subject);
        if let Some(actor) = actor_token(args)? {
            grant = grant.actor(actor);
        }
        if let Some(kind) = &args.requested_token_type {
            grant = grant.requested_token_type(token_type(kind, "--requested-token-type")?);
        }
        if let Some(audience) = &args.audience {
            grant = grant.audience(audience);
        }
        for resource in &args.resources {
            grant = grant.resource(resource);
        }
        for scope in &args.scopes {
            grant = grant.scope(scope);
        }
        for (name, value) in &args.params {
            grant = grant.param(name, value);
        }
        return Ok((TokenSource::new(grant), None));
    }

    if args.refresh_token_env.is_some() || args.refresh_token_file.is_some() {
        return refresh::source(args, endpoint, extra_params(args)).await;
    }

    stored(args, client_credentials(args, endpoint))
}

/// The ways to get a token, by their options: at most one may be given.
fn grants(args: &OAuthArgs) -> Vec<&'static str> {
    let subject = args.subject_token_file.is_some() || args.subject_token_env.is_some();
    [
        (args.token_file.is_some(), "--token-file"),
        (!args.token_command.is_empty(), "--token-command"),
        (args.service_account.is_some(), "--service-account"),
        (args.assertion_file.is_some(), "--assertion-file"),
        (subject, "--subject-token-file/--subject-token-env"),
        (
            args.refresh_token_env.is_some() || args.refresh_token_file.is_some(),
            "--refresh-token-env/--refresh-token-file",
        ),
    ]
    .into_iter()
    .filter_map(|(given, name)| given.then_some(name))
    .collect()
}

/// The flag combinations that cannot work, each said in one line.
fn check_grant(args: &OAuthArgs) -> Result<(), Usage> {
    let given = grants(args);
    if given.len() > 1 {
        return Err(usage(format!(
            "{} exclude each other: each is a way to get tokens, give one",
            given.join(" and ")
        )));
    }
    let subject = args.subject_token_file.is_some() || args.subject_token_env.is_some();
    let actor = args.actor_token_file.is_some() || args.actor_token_env.is_some();
    if (actor || args.actor_token_type.is_some() || args.requested_token_type.is_some()) && !subject
    {
        return Err(usage(
            "--actor-token-*, --requested-token-type: for a token exchange, which needs \
             --subject-token-file or --subject-token-env",
        ));
    }
    if args.subject_token_type.is_some() && !subject {
        return Err(usage(
            "--subject-token-type needs --subject-token-file or --subject-token-env",
        ));
    }
    if args.actor_token_type.is_some() && !actor {
        return Err(usage(
            "--actor-token-type needs --actor-token-file or --actor-token-env",
        ));
    }
    let local = args.token_file.is_some() || !args.token_command.is_empty();
    if local {
        let endpoint_options = [
            (args.token_url.is_some(), "--token-url"),
            (args.issuer.is_some(), "--issuer"),
            (args.client_id.is_some(), "--client-id"),
            (args.redis.is_some(), "--redis"),
            (args.dpop || args.dpop_key.is_some(), "--dpop"),
            (!args.scopes.is_empty(), "--scope"),
        ];
        if let Some((_, option)) = endpoint_options.iter().find(|(given, _)| *given) {
            return Err(usage(format!(
                "{option} is not used with {}: the token comes from there, not from a token \
                 endpoint",
                given[0]
            )));
        }
    }
    if args.redis.is_some()
        && !given.is_empty()
        && given[0] != "--refresh-token-env/--refresh-token-file"
    {
        return Err(usage(format!(
            "--redis shares client-credentials and refresh-token tokens, not those of {}",
            given[0]
        )));
    }
    if args.redis.is_some() && (args.dpop || args.dpop_key.is_some()) {
        return Err(usage("--redis does not share DPoP-bound tokens"));
    }
    Ok(())
}

/// An RFC 8693 token type: a short name, or a URI as it is.
fn token_type(name: &str, option: &str) -> Result<String, Usage> {
    Ok(match name {
        "access_token" => SubjectToken::ACCESS_TOKEN.to_owned(),
        "refresh_token" => SubjectToken::REFRESH_TOKEN.to_owned(),
        "id_token" => SubjectToken::ID_TOKEN.to_owned(),
        "jwt" => SubjectToken::JWT.to_owned(),
        "saml1" => "urn:ietf:params:oauth:token-type:saml1".to_owned(),
        "saml2" => SubjectToken::SAML2.to_owned(),
        uri if uri.contains(':') => uri.to_owned(),
        other => {
            return Err(usage(format!(
                "{option} {}: not a token type (access_token, refresh_token, id_token, jwt, \
                 saml1, saml2, or a URI)",
                terminal::escape(other)
            )))
        }
    })
}

/// `--subject-token-file` (read for every fetch) or `--subject-token-env`.
fn subject_token(args: &OAuthArgs) -> Result<Option<SubjectToken>, Usage> {
    let kind = match &args.subject_token_type {
        Some(name) => token_type(name, "--subject-token-type")?,
        None => SubjectToken::ACCESS_TOKEN.to_owned(),
    };
    Ok(match (&args.subject_token_file, &args.subject_token_env) {
        (Some(path), _) => Some(SubjectToken::file(path, kind)),
        (None, Some(var)) => Some(SubjectToken::token(env_secret(var)?, kind)),
        (None, None) => None,
    })
}

/// `--actor-token-file` (read for every fetch) or `--actor-token-env`.
fn actor_token(args: &OAuthArgs) -> Result<Option<SubjectToken>, Usage> {
    let kind = match &args.actor_token_type {
        Some(name) => token_type(name, "--actor-token-type")?,
        None => SubjectToken::ACCESS_TOKEN.to_owned(),
    };
    Ok(match (&args.actor_token_file, &args.actor_token_env) {
        (Some(path), _) => Some(SubjectToken::file(path, kind)),
        (None, Some(var)) => Some(SubjectToken::token(env_secret(var)?, kind)),
        (None, None) => None,
    })
}

/// The `grant_type` of RFC 7523 §2.1.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// `--assertion-file`: the JWT-bearer grant with an assertion someone else
/// made, read from the file for every fetch (a rotated file is sent from
/// the next fetch on). The client authenticates as the options say, or
/// not at all without `--client-id` (the assertion identifies it).
async fn assertion_source(
    args: &OAuthArgs,
    path: &std::path::Path,
) -> Result<TokenSource, tower::BoxError> {
    let endpoint = match (&args.client_id, &args.token_url) {
        (None, Some(url)) => endpoint(
            args,
            TokenEndpoint::builder(url).client_auth(ClientAuth::anonymous()),
        )?,
        (None, None) if args.issuer.is_none() => {
            return Err(usage("--assertion-file needs --token-url or --issuer").into())
        }
        _ => token_endpoint(args, AuthMethod::Basic).await?.0,
    };
    // The file must be readable now: a usage error at once, not a failed
    // fetch.
    input::secret_file(path, "--assertion-file")?;
    let mut form = vec![("grant_type".to_owned(), JWT_BEARER.to_owned())];
    if !args.scopes.is_empty() {
        form.push(("scope".to_owned(), args.scopes.join(" ")));
    }
    form.extend(extra_params(args));
    let path = path.to_owned();
    let grant = tower_alf::grant::from_fn(move |_request| {
        let (endpoint, mut form, path) = (endpoint.clone(), form.clone(), path.clone());
        async move {
            let assertion = input::secret_file(&path, "--assertion-file")
                .map_err(|e| tower_alf::Error::permanent(e.0))?;
            // Sent as `assertion`, which the library scrubs from errors.
            form.push(("assertion".to_owned(), assertion.trim().to_owned()));
            endpoint.request(form).await
        }
    });
    Ok(TokenSource::new(grant))
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
        && grants(args).is_empty()
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
    if args.redis.is_none() {
        return Ok(match cache_for(args, &grant)? {
            Some((cache, key)) => {
                let grant = with_certificate(args, StoreGrant::new(grant, cache, key))?;
                let stats = grant.stats();
                (TokenSource::new(grant), Some(stats))
            }
            None => (TokenSource::new(grant), None),
        });
    };
    let (store, key) = redis_store(args, grant.cache_key())?;
    let grant = with_certificate(args, StoreGrant::new(grant, store, key))?;
    let stats = grant.stats();
    Ok((TokenSource::new(grant), Some(stats)))
}

/// A store over a grant whose token endpoint presents `--cert`: tokens
/// bound to the certificate (`cnf.x5t#S256`) are bound to it again when
/// read back, instead of being a miss. (The grant's cache key names the
/// certificate already.)
pub(crate) fn with_certificate<G>(
    args: &OAuthArgs,
    grant: StoreGrant<G>,
) -> Result<StoreGrant<G>, Usage> {
    Ok(match client_certificate(args)? {
        Some(certificate) => grant.client_certificate(certificate),
        None => grant,
    })
}

/// The `--redis` store (with `--store-encryption-key-env`) and the key,
/// in `--store-key-prefix`'s namespace.
pub(crate) fn redis_store(
    args: &OAuthArgs,
    mut key: tower_alf::store::CacheKeyBuilder,
) -> Result<(RedisStore, CacheKey), tower::BoxError> {
    let url = args.redis.as_deref().unwrap_or_default();
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
    Ok((store, key.build()))
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
            // A certificate and no other credential: mutual TLS.
            let method = match (args.auth_method, &args.cert) {
                (Some(method), _) => method,
                (None, Some(_)) if !has_credentials(args) => AuthMethod::TlsClientAuth,
                (None, _) => default_method,
            };
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
            // With a client certificate, its tokens are bound to it
            // whatever the method: the mutual-TLS alias (RFC 8705 §5).
            let url = match &args.cert {
                Some(_) => metadata
                    .mtls_endpoint_alias("token_endpoint")
                    .unwrap_or_else(|| metadata.token_endpoint()),
                None => metadata.token_endpoint_for(&auth),
            };
            (
                TokenEndpoint::builder(url).client_auth(auth),
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
    let default = if has_credentials(args) {
        AuthMethod::Basic
    } else {
        AuthMethod::None
    };
    token_endpoint(args, default).await
}

/// Whether a client secret, a private key or a client assertion was given.
fn has_credentials(args: &OAuthArgs) -> bool {
    args.client_secret_env.is_some()
        || args.client_secret_file.is_some()
        || args.private_key.is_some()
        || args.client_assertion_file.is_some()
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

/// The client certificate of `--cert`, when given: its key from `--key`,
/// else from the same file (as curl). Both are read through the capped
/// reader; an error names the files and the problem, never the key.
pub(crate) fn client_certificate(args: &OAuthArgs) -> Result<Option<ClientCertificate>, Usage> {
    use rustls::pki_types::{pem, pem::PemObject, CertificateDer, PrivateKeyDer};
    let Some(cert_path) = &args.cert else {
        if args.key.is_some() {
            return Err(usage(
                "--key needs --cert FILE: the client certificate the key belongs to",
            ));
        }
        return Ok(None);
    };
    // Both files are read (and checked as files) before their contents.
    let chain = input::secret_file(cert_path, "--cert")?;
    let key = match &args.key {
        Some(key_path) => Some((input::secret_file(key_path, "--key")?, key_path)),
        None => None,
    };
    let cert_shown = cert_path.display();
    if CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .is_none()
    {
        return Err(usage(format!(
            "--cert {cert_shown}: no PEM certificate in it"
        )));
    }
    let (key, files) = match key {
        Some((key, key_path)) => (
            key,
            format!("--cert {cert_shown} with --key {}", key_path.display()),
        ),
        None => {
            if let Err(pem::Error::NoItemsFound) = PrivateKeyDer::from_pem_slice(chain.as_bytes()) {
                return Err(usage(format!(
                    "--cert {cert_shown}: no private key in it; give it with --key FILE"
                )));
            }
            (chain.clone(), format!("--cert {cert_shown}"))
        }
    };
    ClientCertificate::from_pem(&chain, &key)
        .map(Some)
        .map_err(|e| usage(format!("{files}: {e}")))
}

/// `--cert`, which `what` needs.
fn required_certificate(args: &OAuthArgs, what: &str) -> Result<ClientCertificate, Usage> {
    client_certificate(args)?.ok_or_else(|| {
        usage(format!(
            "--auth-method {what} needs --cert FILE (and --key FILE)"
        ))
    })
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
/// authorization request: `--cacert`'s roots, else the default, presenting
/// `--cert` when given; with `-v`, the same stack printing each exchange.
pub(crate) fn http_client(args: &OAuthArgs) -> Result<HttpClient, tower::BoxError> {
    let certificate = client_certificate(args)?;
    if verbose::on() {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https_connector(args)?);
        let client = HttpClient::new(Verbose::new(client, "authorization server", true));
        // The connector presents the certificate (https_connector).
        return Ok(match certificate {
            Some(certificate) => client.presenting(certificate),
            None => client,
        });
    }
    Ok(match (cacert_roots(args)?, certificate) {
        (roots, Some(certificate)) => {
            let mut builder = HttpClient::builder().client_certificate(certificate);
            if let Some(roots) = roots {
                builder = builder.root_certificates(roots);
            }
            builder.build()?
        }
        (Some(roots), None) => HttpClient::with_root_certificates(roots),
        (None, None) => HttpClient::default(),
    })
}

/// hyper-rustls over hyper-util's connector (the ring provider, HTTP/1.1
/// and HTTP/2), trusting `--cacert`'s roots, else the webpki roots, and
/// presenting `--cert` when given: the library's default stack, for the
/// request and for `-v`.
pub(crate) fn https_connector(
    args: &OAuthArgs,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    tower::BoxError,
> {
    let provider = rustls::crypto::ring::default_provider();
    let builder = match (cacert_roots(args)?, client_certificate(args)?) {
        (roots, Some(certificate)) => {
            let roots = roots.unwrap_or_else(|| RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(certificate.tls_config(roots)?)
        }
        (Some(roots), None) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ),
        (None, None) => {
            hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider)?
        }
    };
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

fn endpoint(
    args: &OAuthArgs,
    builder: TokenEndpointBuilder,
) -> Result<TokenEndpoint, tower::BoxError> {
    let mut builder = builder.allow_insecure_http(args.allow_insecure_http);
    if args.cacert.is_some() || args.cert.is_some() || verbose::on() {
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
    if let Some(path) = &args.client_assertion_file {
        // Read again for every attempt by the library; checked now too.
        input::secret_file(path, "--client-assertion-file")?;
        return Ok(ClientAuth::client_assertion_file(client_id, path));
    }
    Ok(match method.unwrap_or(AuthMethod::Basic) {
        AuthMethod::Basic => ClientAuth::basic(client_id, secret(args)?),
        AuthMethod::BasicRaw => ClientAuth::basic_raw(client_id, secret(args)?),
        AuthMethod::Post => ClientAuth::post(client_id, secret(args)?),
        AuthMethod::Jwt => ClientAuth::client_secret_jwt(client_id, secret(args)?),
        AuthMethod::PrivateKeyJwt => ClientAuth::private_key_jwt(client_id, private_key(args)?),
        AuthMethod::None => ClientAuth::none(client_id),
        AuthMethod::TlsClientAuth => ClientAuth::tls_client_auth_with(
            client_id,
            required_certificate(args, "tls_client_auth")?,
        ),
        AuthMethod::SelfSignedTlsClientAuth => ClientAuth::self_signed_tls_client_auth_with(
            client_id,
            required_certificate(args, "self_signed_tls_client_auth")?,
        ),
    })
}

/// With --issuer and no --auth-method: what the client can do, best first.
fn default_candidates(args: &OAuthArgs) -> Result<Vec<ClientAuth>, tower::BoxError> {
    let client_id = client_id(args)?;
    if args.client_assertion_file.is_some() {
        return Ok(vec![client_auth(args, None)?]);
    }
    let mut candidates = Vec::new();
    if args.private_key.is_some() {
        candidates.push(ClientAuth::private_key_jwt(&client_id, private_key(args)?));
    }
    if let Some(certificate) = client_certificate(args)? {
        candidates.push(ClientAuth::tls_client_auth_with(
            &client_id,
            certificate.clone(),
        ));
        candidates.push(ClientAuth::self_signed_tls_client_auth_with(
            &client_id,
            certificate,
        ));
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
