//! The refresh-token grant from the command line: `--refresh-token-env VAR`
//! or `--refresh-token-file FILE`, optionally shared through `--redis`.
//!
//! A server that rotates refresh tokens refuses the old one from then on,
//! so what a refresh hands back must be kept before anyone uses it:
//! - with `--refresh-token-file`, every new token set is written back to
//!   FILE (the library's `on_token` hook: after the token is cached,
//!   before any request uses it), as a new owner-only file renamed over
//!   FILE, in FILE's own format (`alf login --save`'s JSON, or one refresh
//!   token on a line). The saved access token is served while it is valid,
//!   so a second run within its lifetime sends no token request;
//! - with `--redis`, the token set goes through the store (the library's
//!   `StoreGrant`: one refresh at a time across processes, compare-and-swap
//!   when it replaces a token set with a refresh token), and a token set
//!   found there (rotated by another `alf`) is started from instead of the
//!   one given.
//!
//! A FILE that is a symbolic link, not a regular file, another user's, or
//! open to group or others is refused before anything is sent, with the
//! reason, and never replaced.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use tower::BoxError;
use tower_alf::{
    grant::RefreshTokenGrant,
    store::{CacheKey, StoreGrant, StoreStats, TokenStore},
    Token, TokenEndpoint, TokenSource, TokenType,
};

use crate::{
    args::OAuthArgs,
    input,
    login::SaveTarget,
    terminal,
    tokens::{self, usage, Usage},
};

/// How FILE holds its token set, kept when it is written back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// `alf login --save`'s JSON.
    Json,
    /// One refresh token on a line.
    Line,
}

/// `--refresh-token-file FILE`: where the token set is read and kept.
struct TokenSetFile {
    path: PathBuf,
    format: Format,
    /// The fingerprint of the token set last read or written: the token
    /// served from FILE itself is not written again.
    last: Mutex<Option<String>>,
}

const OPTION: &str = "--refresh-token-file";

impl TokenSetFile {
    /// Reads FILE, checked as a file alf may replace: its token set.
    fn open(path: &Path) -> Result<(Self, Token), Usage> {
        let text = input::secret_file(path, OPTION)?;
        // The checks of --save: a regular file, the user's own, private.
        drop(SaveTarget::prepare_for(path, OPTION)?);
        let shown = terminal::escape(&path.display().to_string());
        let (format, token) = if text.trim_start().starts_with('{') {
            (
                Format::Json,
                token_set(&text).map_err(|e| usage(format!("{OPTION} {shown}: {e}")))?,
            )
        } else {
            let line = text.trim();
            if line.is_empty() || line.contains(char::is_whitespace) {
                return Err(usage(format!(
                    "{OPTION} {shown}: neither a token set (JSON, as alf login --save writes \
                     it) nor one refresh token on a line"
                )));
            }
            // A placeholder access token, never served: it has expired.
            let token = Token::bearer("-")
                .map_err(|e| usage(e.to_string()))?
                .with_expires_at(UNIX_EPOCH)
                .with_refresh_token(line);
            (Format::Line, token)
        };
        let file = Self {
            path: path.to_owned(),
            format,
            last: Mutex::new(Some(set_fingerprint(&token))),
        };
        Ok((file, token))
    }

    /// Writes `token`'s set over FILE, unless it is the one there already.
    fn keep(&self, token: &Token) {
        let fingerprint = set_fingerprint(token);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(fingerprint.as_str()) {
            return;
        }
        let written =
            SaveTarget::prepare_for(&self.path, OPTION).and_then(|target| match self.format {
                Format::Json => target.save(token),
                Format::Line => {
                    let line = token
                        .refresh_token()
                        .map(|t| t.secret())
                        .unwrap_or_default();
                    target.write(format!("{line}\n").as_bytes())
                }
            });
        match written {
            Ok(_) => *last = Some(fingerprint),
            // Said even with -q: the next run would need a new sign-in.
            Err(e) => eprintln!(
                "alf: warning: could not keep the new token set: {}; if the server rotated the \
                 refresh token, the next run needs a new sign-in",
                terminal::escape(&e.0)
            ),
        }
    }
}

/// What identifies a token set, without holding it: the fingerprints of
/// its access and refresh tokens.
fn set_fingerprint(token: &Token) -> String {
    format!(
        "{}{}",
        crate::verbose::fingerprint(token.access_token().secret()),
        crate::verbose::fingerprint(token.refresh_token().map_or("", |t| t.secret()))
    )
}

/// A token set from `alf login --save`'s JSON.
fn token_set(text: &str) -> Result<Token, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a token set: {e}"))?;
    let field = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let refresh = field("refresh_token")
        .ok_or("the token set has no refresh_token (sign in again with alf login --save FILE)")?;
    let bearer = field("token_type").is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    // The saved access token is served while valid, if it is a Bearer one
    // (a DPoP one needs its key); else a placeholder that has expired.
    let (access, expires_at) = match (field("access_token"), json.get("expires_at")) {
        (Some(access), Some(at)) if bearer => (access, at.as_u64().unwrap_or(0)),
        (Some(access), None) if bearer => (access, 0),
        _ => ("-", 0),
    };
    let mut token = Token::bearer(access)
        .map_err(|e| format!("its access token: {e}"))?
        .with_expires_at(UNIX_EPOCH + Duration::from_secs(expires_at))
        .with_refresh_token(refresh);
    if let Some(scope) = field("scope") {
        token = token.with_scope(scope);
    }
    if token.token_type() != TokenType::Bearer {
        return Err("not a Bearer token set".to_owned());
    }
    Ok(token)
}

/// The refresh-token source the arguments describe.
pub(crate) async fn source(
    args: &OAuthArgs,
    endpoint: TokenEndpoint,
    params: Vec<(String, String)>,
) -> Result<(TokenSource, Option<StoreStats>), BoxError> {
    let (file, mut start) = match (&args.refresh_token_file, &args.refresh_token_env) {
        (Some(path), _) => {
            let (file, token) = TokenSetFile::open(path)?;
            (Some(Arc::new(file)), token)
        }
        (None, Some(var)) => {
            let refresh = tokens::env_secret(var)?;
            let token = Token::bearer("-")?
                .with_expires_at(UNIX_EPOCH)
                .with_refresh_token(refresh);
            (None, token)
        }
        (None, None) => return Err(usage("a refresh token is required").into()),
    };

    let store = match &args.redis {
        Some(_) => {
            let (store, key) = tokens::redis_store(args, refresh_key(args, &endpoint, &params))?;
            // A token set another alf stored (its refresh token maybe
            // rotated since FILE or VAR was written) is the one to start
            // from.
            match store.get(&key).await {
                Ok(Some(stored)) if stored.refresh_token().is_some() => {
                    if let Ok(token) = stored.to_token() {
                        start = token;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if !terminal::quiet() {
                        eprintln!(
                            "alf: warning: token store: {}; starting from the given refresh token",
                            terminal::escape(&e.to_string())
                        );
                    }
                }
            }
            Some((store, key))
        }
        None => None,
    };

    let mut grant = RefreshTokenGrant::from_token(endpoint, start)?;
    for scope in &args.scopes {
        grant = grant.scope(scope);
    }
    for (name, value) in params {
        grant = grant.param(name, value);
    }
    let (builder, stats) = match store {
        Some((store, key)) => {
            let grant = crate::tokens::with_certificate(args, StoreGrant::new(grant, store, key))?;
            let stats = grant.stats();
            (TokenSource::builder(grant), Some(stats))
        }
        None => (TokenSource::builder(grant), None),
    };
    let builder = match file {
        Some(file) => builder.on_token(move |token| file.keep(token)),
        None => builder,
    };
    Ok((builder.build(), stats))
}

/// The store key of a refresh-token grant: the token URL, the grant, the
/// client id, the scopes and parameters (never a token).
fn refresh_key(
    args: &OAuthArgs,
    endpoint: &TokenEndpoint,
    params: &[(String, String)],
) -> tower_alf::store::CacheKeyBuilder {
    let mut key = CacheKey::builder(endpoint.url().to_string(), "refresh_token")
        .client_id(endpoint.client_auth().client_id());
    for scope in &args.scopes {
        key = key.scope(scope);
    }
    for (name, value) in params {
        key = key.param(name, value);
    }
    key
}
