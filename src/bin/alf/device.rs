//! `alf login --device`: the device authorization grant (RFC 8628), for a
//! machine without a browser. alf prints the user code and the URL where to
//! enter it, polls the token endpoint (as the library does: the server's
//! `interval`, `slow_down`, until the code's expiry) with a spinner on
//! stderr when it is a terminal, then saves the token set as `alf login
//! --save` does and prints its metadata.

use std::{io::IsTerminal, path::Path, process::ExitCode, time::Duration};

use indicatif::ProgressBar;
use tower::BoxError;
use tower_alf::grant::DeviceAuthorization;

use crate::{
    args::OAuthArgs,
    describe,
    login::SaveTarget,
    print_metadata, terminal,
    tokens::{self, usage},
};

/// The exit code when the user refused the sign-in (`access_denied`).
pub(crate) const EXIT_DENIED: u8 = 3;

/// The exit code when the device code expired before the user approved.
pub(crate) const EXIT_EXPIRED: u8 = 4;

pub(crate) async fn run(
    args: &OAuthArgs,
    device_url: Option<&str>,
    save: Option<&Path>,
    print_token: bool,
    qr: bool,
) -> Result<ExitCode, BoxError> {
    // Before anything is spent: a --save that cannot work fails now.
    let save = save.map(SaveTarget::prepare).transpose()?;
    let (endpoint, metadata) = tokens::user_flow_endpoint(args).await?;
    let device_url = match (device_url, &metadata) {
        (Some(url), _) => url.to_owned(),
        // With a client certificate: the mutual-TLS alias (RFC 8705 §5).
        (None, Some(metadata)) => args
            .cert
            .as_ref()
            .and_then(|_| metadata.mtls_endpoint_alias("device_authorization_endpoint"))
            .or_else(|| metadata.device_authorization_endpoint())
            .ok_or_else(|| usage("the server's metadata has no device_authorization_endpoint"))?
            .to_owned(),
        (None, None) => return Err(usage("--device-url (or --issuer) is required").into()),
    };
    let mut flow = DeviceAuthorization::new(endpoint, device_url);
    for scope in &args.scopes {
        flow = flow.scope(scope);
    }
    if let Some(audience) = &args.audience {
        flow = flow.param("audience", audience);
    }
    for resource in &args.resources {
        flow = flow.param("resource", resource);
    }
    for (name, value) in &args.params {
        flow = flow.param(name, value);
    }
    if let Some(timeout) = args.timeout {
        flow = flow.timeout(timeout);
    }
    if args.cacert.is_some() || args.cert.is_some() || crate::verbose::on() {
        flow = flow.http_client(tokens::http_client(args)?);
    }
    let pending = flow.start().await?;

    // The codes and URLs come from the server: escaped.
    match pending.verification_uri_complete() {
        Some(complete) => eprintln!(
            "To sign in, open this URL on any device:\n{}\nand check that it shows the code {}",
            terminal::escape(complete),
            terminal::escape(pending.user_code())
        ),
        None => eprintln!(
            "To sign in, open this URL on any device:\n{}\nand enter the code {}",
            terminal::escape(pending.verification_uri()),
            terminal::escape(pending.user_code())
        ),
    }

    if qr {
        let url = pending
            .verification_uri_complete()
            .unwrap_or(pending.verification_uri());
        match qr_code(url) {
            Some(code) => eprint!("{code}"),
            None => eprintln!("alf: the URL is too long for a QR code"),
        }
    }

    let spinner = std::io::stderr().is_terminal().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(format!(
            "waiting for the approval (the code expires in {})",
            minutes(pending.expires_in())
        ));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    });
    let polled = pending.poll().await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let token = match polled {
        Ok(token) => token,
        Err(e) if e.is_access_denied() => {
            eprintln!(
                "alf: {}",
                terminal::escape(&format!("the sign-in was refused: {}", describe(&e)))
            );
            return Ok(ExitCode::from(EXIT_DENIED));
        }
        Err(e) if e.is_expired_token() => {
            eprintln!(
                "alf: {}",
                terminal::escape(&format!(
                    "the code expired before the sign-in was approved (run alf login --device \
                     again): {}",
                    describe(&e)
                ))
            );
            return Ok(ExitCode::from(EXIT_EXPIRED));
        }
        Err(e) => return Err(e.into()),
    };
    let saved = save.map(|target| target.save(&token));
    // The token's metadata is printed whether or not saving worked.
    print_metadata(&token, print_token);
    if let Some(saved) = saved {
        let path = saved?;
        eprintln!(
            "saved the token set to {}",
            terminal::escape(&path.display().to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `expires_in` for a person: "10 minutes", "45 seconds".
fn minutes(duration: Duration) -> String {
    match duration.as_secs() {
        secs if secs >= 120 => format!("{} minutes", secs / 60),
        secs => format!("{secs} seconds"),
    }
}

/// `url` as a QR code in text, two modules per character (light on dark,
/// for a terminal), with its quiet zone; `None` when it does not fit one.
pub(crate) fn qr_code(url: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    let text = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    Some(format!("{text}\n"))
}
