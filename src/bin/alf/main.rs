//! `alf`: curl with automatic OAuth tokens, and a small load generator for
//! APIs behind OAuth. It uses `tower-alf` exactly as a library user would: a
//! `TokenSource` and a `BearerAuthLayer` over hyper-util's client.

mod args;
mod cache;
mod device;
mod input;
mod load;
mod login;
mod oauth1;
mod terminal;
mod tokens;

use std::{error::Error as StdError, process::ExitCode};

use clap::{CommandFactory, FromArgMatches};
use tower::BoxError;

use crate::{
    args::{Cli, Command, OAuth1Command, OAuthArgs},
    tokens::Usage,
};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some((options, subcommand)) = args::unused_options(&matches) {
        eprintln!(
            "alf: {} {} not used by {subcommand}",
            options.join(", "),
            if options.len() == 1 { "is" } else { "are" }
        );
        return ExitCode::from(2);
    }
    terminal::set_quiet(cli.quiet);
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
            Some(Command::Token { print_token, .. }) => token(&cli.oauth, *print_token).await,
            Some(Command::Login {
                save,
                print_token,
                device: true,
                device_url,
                ..
            }) => {
                device::run(
                    &cli.oauth,
                    device_url.as_deref(),
                    save.as_deref(),
                    *print_token,
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

/// `alf token`: the token's metadata as JSON; the token itself only when asked.
async fn token(args: &OAuthArgs, print_token: bool) -> Result<ExitCode, BoxError> {
    let source = tokens::source(args).await?;
    let token = source.token().await?;
    print_metadata(&token, print_token);
    Ok(ExitCode::SUCCESS)
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
