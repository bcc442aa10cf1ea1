//! Signing with OAuth 1.0a instead of an OAuth 2 token, and the
//! three-legged dance.

use std::{
    io::{BufRead, Read},
    process::ExitCode,
};

use tower::BoxError;
use tower_alf::oauth1::{ClientCredentials, Flow, OAuth1Layer, RsaKey, TokenCredentials, Verifier};

use crate::{
    args::OAuth1Args,
    input, terminal,
    tokens::{env_secret, usage},
};

/// The consumer's credentials: a secret from the environment, or an RSA key.
fn client(args: &OAuth1Args) -> Result<ClientCredentials, BoxError> {
    let key = args
        .oauth1_consumer_key
        .clone()
        .ok_or_else(|| usage("--oauth1-consumer-key is required"))?;
    match (&args.oauth1_consumer_secret_env, &args.oauth1_private_key) {
        (Some(var), _) => Ok(ClientCredentials::new(key, env_secret(var)?)),
        (None, Some(path)) => {
            let pem = input::secret_file(path, "--oauth1-private-key")?;
            Ok(ClientCredentials::rsa(key, RsaKey::from_pem(&pem)?))
        }
        (None, None) => Err(usage(
            "--oauth1-consumer-secret-env VAR or --oauth1-private-key FILE is required",
        )
        .into()),
    }
}

/// The signing layer the arguments describe.
pub(crate) fn layer(args: &OAuth1Args) -> Result<OAuth1Layer, BoxError> {
    let mut layer = OAuth1Layer::new(client(args)?)
        .method(args.oauth1_method)
        .placement(args.oauth1_placement);
    if let Some(token) = &args.oauth1_token {
        let secret = match &args.oauth1_token_secret_env {
            Some(var) => env_secret(var)?,
            None => String::new(),
        };
        layer = layer.token(TokenCredentials::new(token, secret));
    }
    layer.check()?;
    Ok(layer)
}

/// `alf oauth1 authorize`: temporary credentials, the URL to open, the
/// verifier from stdin, the token credentials on stdout.
pub(crate) async fn authorize(
    args: &OAuth1Args,
    request_token_url: &str,
    authorize_url: &str,
    access_token_url: &str,
    callback: &str,
    print_secret: bool,
) -> Result<ExitCode, BoxError> {
    let flow = Flow::new(client(args)?)
        .method(args.oauth1_method)
        .placement(args.oauth1_placement);
    let temporary = flow.request_token(request_token_url, callback).await?;
    let url = flow.authorization_url(authorize_url, &temporary)?;
    eprintln!(
        "Open this URL, authorize, then paste the verifier or the callback URL:\n{}",
        terminal::escape(&url)
    );

    // One line, as long as a callback URL can sensibly be: stdin may be a
    // device or a file without a newline.
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .take(input::SECRET_CAP + 1)
        .read_until(b'\n', &mut line)?;
    if line.len() as u64 > input::SECRET_CAP {
        return Err(usage(format!(
            "the verifier line on stdin is longer than {} KiB",
            input::SECRET_CAP / 1024
        ))
        .into());
    }
    let line = String::from_utf8(line).map_err(|_| usage("the verifier on stdin is not UTF-8"))?;
    let line = line.trim();
    let verifier = if line.contains("oauth_verifier=") {
        flow.parse_callback(line, &temporary)?
    } else if line.is_empty() {
        return Err(usage("no verifier given").into());
    } else {
        Verifier::new(line)
    };
    let token = flow
        .access_token(access_token_url, &temporary, &verifier)
        .await?;
    let mut out = serde_json::json!({ "oauth_token": token.token() });
    if print_secret {
        out["oauth_token_secret"] = token.secret().into();
    }
    println!("{}", terminal::json_line(&out));
    Ok(ExitCode::SUCCESS)
}
