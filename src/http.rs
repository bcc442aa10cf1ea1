//! Transport rules: which URLs the crate sends to, checked once, where a URL
//! enters the crate.

use std::net::IpAddr;

use http::Uri;

use crate::Error;

/// Whether a URL may use plain `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// Only to a loopback host ([`is_loopback`]).
    LoopbackOnly,
    /// To any host: the user opted out (`allow_insecure_http`).
    Allowed,
}

/// Parses and checks a URL the crate will send to (or sign, or compare):
/// the one rule for token endpoint URLs, issuers, every URL a metadata
/// document names, and token-exchange `resource`s. `what` names the URL in
/// the error ("token URL", "issuer", …).
///
/// The URL must be absolute `http` or `https` with a host; `https` unless
/// `plain_http` allows it (always on a loopback host); its port, if it has
/// one, a number from 1 to 65535 (an empty port means the default, as
/// RFC 3986 §3.2.3 says) — `http::Uri` accepts `:99999` and a client would
/// then dial the scheme's default port; no userinfo (RFC 9110 §4.2.4
/// deprecates it: it would be sent to a proxy, logged, or signed into an
/// assertion or proof); no fragment (RFC 6749 §3.2). Every failure is an
/// [`Error::is_config`] naming the URL and the rule.
pub(crate) fn checked_url(url: &str, what: &str, plain_http: PlainHttp) -> Result<Uri, Error> {
    url_problem(url, what, plain_http).map_err(Error::config)
}

/// [`checked_url`] with the broken rule as text, for a caller that reports
/// it as something other than a configuration error (a URL in a server's
/// metadata document).
pub(crate) fn url_problem(url: &str, what: &str, plain_http: PlainHttp) -> Result<Uri, String> {
    let refuse = |rule: &str| format!("the {what} {rule}");
    if url.contains('#') {
        return Err(refuse("must not have a fragment (#…)"));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| refuse("is not a valid absolute URL"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| refuse("is not an absolute http(s) URL"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(refuse("has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(refuse(
            "must not carry credentials (user:password@); configure them where they belong",
        ));
    }
    check_port(authority.as_str()).map_err(|problem| refuse(&problem))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => {}
        Some(s) if s.eq_ignore_ascii_case("http") => {
            if plain_http == PlainHttp::LoopbackOnly && !is_loopback(host) {
                return Err(refuse(
                    "must use https (plain http is allowed only to loopback hosts, \
                     or with allow_insecure_http)",
                ));
            }
        }
        _ => return Err(refuse("must be an http(s) URL")),
    }
    Ok(uri)
}

/// The port of an authority (after any userinfo): none, empty, or 1–65535.
fn check_port(authority: &str) -> Result<(), String> {
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let after_host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => host_port.find(':').map_or("", |at| &host_port[at..]),
    };
    let Some(port) = after_host.strip_prefix(':') else {
        return Ok(());
    };
    if port.is_empty() {
        return Ok(());
    }
    match port.parse::<u32>() {
        Ok(1..=65535) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "has an invalid port {port:?} (a port is a number from 1 to 65535)"
        )),
    }
}

/// `localhost`, a `.localhost` name (RFC 6761), or a loopback address.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<Uri, Error> {
        checked_url(url, "token URL", PlainHttp::LoopbackOnly)
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "api.localhost",
            "127.0.0.1",
            "127.3.2.1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["example.com", "10.0.0.1", "localhost.example.com", "[::2]"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn ports_out_of_range_are_refused() {
        for url in [
            "http://127.0.0.1:99999/token",
            "http://127.0.0.1:65536/token",
            "http://127.0.0.1:0/token",
            "https://idp.example:4294967297/token",
            "http://[::1]:70000/token",
        ] {
            let e = check(url).unwrap_err();
            assert!(e.is_config(), "{url}");
            assert!(e.to_string().contains("invalid port"), "{url}: {e}");
        }
        for url in [
            "http://127.0.0.1:65535/token",
            "http://127.0.0.1:1/token",
            "https://idp.example/token",
            "https://idp.example:/token",
            "http://[::1]:8080/token",
            "http://[::1]/token",
        ] {
            assert!(check(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn userinfo_fragments_and_other_schemes_are_refused() {
        for (url, says) in [
            ("https://user:pw@idp.example/token", "credentials"),
            ("https://user@idp.example/token", "credentials"),
            ("https://idp.example/token#frag", "fragment"),
            ("ftp://idp.example/token", "http(s)"),
            ("/token", "absolute"),
            ("http://idp.example/token", "https"),
            ("not a url", "valid"),
        ] {
            let e = check(url).unwrap_err();
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        assert!(checked_url("http://idp.example/t", "token URL", PlainHttp::Allowed).is_ok());
        assert!(check("HTTPS://IDP.example/token").is_ok());
    }
}
