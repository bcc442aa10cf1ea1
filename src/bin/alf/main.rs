//! `alf`: curl with automatic OAuth tokens, and a small load generator for
//! APIs behind OAuth. It uses `tower-alf` exactly as a library user would: a
//! `TokenSource` and a `BearerAuthLayer` over hyper-util's client.

mod args;
mod cache;
mod connections;
mod device;
mod input;
mod load;
mod login;
mod oauth1;
mod refresh;
mod terminal;
mod tokens;
mod verbose;

use std::{error::Error as StdError, process::ExitCode};

use clap::{CommandFactory, FromArgMatches};
use tower::BoxError;

use crate::{
    args::{Cli, Command, OAuth1Command, OAuthArgs},
    tokens::Usage,
};

/// The exit code of `alf token --decode` for a token that is not a JWT.
const EXIT_NOT_JWT: u8 = 5;

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Some((options, subcommand)) = args::unused_options(&matches) {
        eprintln!(
            "alf: {} {} not used by {subcommand}",
            options.join(", "),
            if options.len() == 1 { "is" } else { "are" }
        );
        return ExitCode::from(2);
    }
    // --cert and --key: checked before anything is sent (a key without a
    // certificate, a key that is not the certificate's).
    let certificate = match tokens::client_certificate(&cli.oauth) {
        Ok(certificate) => certificate,
        Err(e) => {
            eprintln!("alf: {}", terminal::escape(&e.0));
            return ExitCode::from(2);
        }
    };
    terminal::set_quiet(cli.quiet);
    verbose::set(cli.verbose);
    if let (true, Some(certificate)) = (verbose::on(), &certificate) {
        // The certificate's hash, which a bound token's cnf names: public.
        eprintln!(
            "* client certificate (--cert): x5t#S256 {}",
            certificate.thumbprint()
        );
    }
    terminal::install_warnings();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("alf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Some(Command::Token { forget: true, .. }) => {
                tokens::forget(&cli.oauth).await.map(|()| ExitCode::SUCCESS)
            }
            Some(Command::Token {
                print_token,
                decode,
                ..
            }) => token(&cli.oauth, *print_token, *decode).await,
            Some(Command::Login {
                save,
                print_token,
                device: true,
                device_url,
                qr,
                ..
            }) => {
                device::run(
                    &cli.oauth,
                    device_url.as_deref(),
                    save.as_deref(),
                    *print_token,
                    *qr,
                )
                .await
            }
            Some(Command::Login {
                authorization_url,
                port,
                save,
                print_token,
                ..
            }) => {
                login::run(
                    &cli.oauth,
                    authorization_url.as_deref(),
                    *port,
                    save.as_deref(),
                    *print_token,
                )
                .await
            }
            Some(Command::OAuth1(OAuth1Command::Authorize {
                request_token_url,
                authorize_url,
                access_token_url,
                callback,
                print_secret,
            })) => {
                oauth1::authorize(
                    &cli.oauth1,
                    request_token_url,
                    authorize_url,
                    access_token_url,
                    callback,
                    *print_secret,
                )
                .await
            }
            None => load::run(&cli).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // Server text is in there (an error_description, a reason).
            eprintln!("alf: {}", terminal::escape(&describe(&*e)));
            if e.is::<Usage>()
                || e.downcast_ref::<tower_alf::oauth1::Error>()
                    .is_some_and(|e| e.is_config())
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command line clap refuses: its first line, as one line (help and
/// the version are printed as clap prints them).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    eprintln!("alf: {} (see alf --help)", terminal::escape(line));
    ExitCode::from(2)
}

/// `alf token`: the token's metadata as JSON; the token itself only when
/// asked; with `--decode`, the JWT's header and claims.
async fn token(args: &OAuthArgs, print_token: bool, decode: bool) -> Result<ExitCode, BoxError> {
    let source = tokens::source(args).await?;
    let token = source.token().await?;
    if decode {
        return Ok(match decode_jwt(token.access_token().secret()) {
            Some((header, claims)) => {
                let mut out = serde_json::json!({ "header": header, "claims": claims });
                if print_token {
                    out["access_token"] = token.access_token().secret().into();
                }
                println!("{}", terminal::json_line(&out));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "alf: --decode: the access token is not a JWT (three base64url parts, \
                     the first two JSON objects); an opaque token has nothing to decode"
                );
                ExitCode::from(EXIT_NOT_JWT)
            }
        });
    }
    print_metadata(&token, print_token);
    Ok(ExitCode::SUCCESS)
}

/// A JWS compact serialization's header and claims, unverified; `None`
/// when `token` is not one. The signature is never looked at.
fn decode_jwt(token: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (header, claims, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let object = |part: &str| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(serde_json::Value::is_object)
    };
    Some((object(header)?, object(claims)?))
}

/// A token's metadata as one JSON line; the token itself only when asked.
pub(crate) fn print_metadata(token: &tower_alf::Token, print_token: bool) {
    let mut out = serde_json::json!({
        "token_type": token.token_type().scheme(),
        "scope": token.scope(),
        "expires_in": token.lifetime().map(|d| d.as_secs_f64()),
        "refresh_token": token.refresh_token().is_some(),
        "other_fields": token.extra().keys().collect::<Vec<_>>(),
    });
    if print_token {
        out["access_token"] = token.access_token().secret().into();
    }
    println!("{}", terminal::json_line(&out));
}

/// One line for an error: what failed, then its causes.
pub(crate) fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut line = if let Some(e) = error.downcast_ref::<tower_alf::Error>() {
        if e.is_reauthorization_required() {
            format!("could not get a token: {e} (a new authorization is needed: sign in again)")
        } else {
            format!("could not get a token: {e}")
        }
    } else if let Some(e) = error.downcast_ref::<tower_alf::oauth1::Error>() {
        format!("OAuth 1.0a: {e}")
    } else if error.is::<tower::timeout::error::Elapsed>() {
        "request timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
