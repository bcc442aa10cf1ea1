//! Command-line arguments.

use std::path::PathBuf;

use clap::{ArgMatches, Args, Command as ClapCommand, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
The token options (--token-url, --client-id, ...) and the OAuth 1.0a options may come before or \
after a subcommand: `alf --issuer URL token` and `alf token --issuer URL` are the same.

The response body goes to stdout as the server sent it, control characters included, as curl \
prints it. Everything alf prints to stderr (errors, the server's error_description, the URL to \
open) and the headers of -i have their control characters escaped (\\x1b, \\r, \\n).

Exit status:
  0  success (every response came back, none 401 or 403 after the replay)
  1  failure: a token, transport or HTTP failure, with a one-line reason
  2  usage error: a bad option, a flag combination that cannot work, an unreadable input
     or token cache file
  3  alf login --device: the user refused the sign-in (access_denied)
  4  alf login --device: the code expired before the sign-in was approved
  5  alf token --decode: the access token is not a JWT (nothing to decode)
  22 -f/--fail: the response status was 400 or more (as curl)
  47 -L/--location: more redirects than --max-redirs (as curl)

-v/--verbose prints the token exchange and the request on stderr, as curl -v does (`> ` sent,
`< ` received, `* ` alf's notes), with every secret and token replaced by `[redacted]` or by
its fingerprint: `[sha256:` and the first 8 hex digits of the token's SHA-256 `]`.";

/// curl with automatic OAuth tokens: fetches, caches and refreshes a token,
/// sends the request with it, and replays it once after a 401.
#[derive(Debug, Parser)]
#[command(name = "alf", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) oauth: OAuthArgs,
    #[command(flatten)]
    pub(crate) oauth1: OAuth1Args,
    #[command(flatten)]
    pub(crate) request: RequestArgs,
    /// The URL to request.
    pub(crate) url: Option<String>,
    /// Print no warnings and no progress on stderr (errors still are).
    #[arg(
        global = true,
        short = 'q',
        long,
        visible_short_alias = 's',
        visible_alias = "silent",
        conflicts_with = "verbose"
    )]
    pub(crate) quiet: bool,
    /// Print the token exchange and the request on stderr, as curl -v
    /// does, secrets and tokens redacted (tokens by fingerprint).
    #[arg(global = true, short = 'v', long)]
    pub(crate) verbose: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch a token and print its metadata (type, scope, expiry) as JSON.
    Token {
        /// Print the access token too.
        #[arg(long)]
        print_token: bool,
        /// Remove this token from the cache between runs instead (nothing
        /// is fetched).
        #[arg(long, conflicts_with_all = ["print_token", "decode"])]
        forget: bool,
        /// Print the JWT access token's header and claims as JSON (never
        /// its signature; unverified, for reading only). A token that is
        /// not a JWT exits 5.
        #[arg(long)]
        decode: bool,
    },
    /// Sign in with the authorization-code flow and PKCE: prints the URL to
    /// open, waits for the browser on a loopback redirect
    /// (http://127.0.0.1:PORT/callback), and exchanges the code.
    Login {
        /// The authorization endpoint (with --token-url; --issuer finds it).
        #[arg(long, value_name = "URL")]
        authorization_url: Option<String>,
        /// The loopback port for the redirect (default: a free port).
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        port: u16,
        /// Save the token set (with its refresh token) as JSON to FILE,
        /// readable by its owner only.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// Print the access token too.
        #[arg(long)]
        print_token: bool,
        /// Sign in with the device authorization grant (RFC 8628) instead,
        /// for a machine without a browser: prints a code and the URL where
        /// to enter it (on any device), then waits for the approval.
        #[arg(long, conflicts_with_all = ["authorization_url", "port"])]
        device: bool,
        /// The device authorization endpoint, for --device (with
        /// --token-url; --issuer finds it).
        #[arg(long, value_name = "URL", requires = "device")]
        device_url: Option<String>,
        /// With --device: also print the URL to open as a QR code (text),
        /// to scan with a phone.
        #[arg(long, requires = "device")]
        qr: bool,
    },
    /// OAuth 1.0a tools.
    #[command(name = "oauth1", subcommand)]
    OAuth1(OAuth1Command),
}

#[derive(Debug, Subcommand)]
pub(crate) enum OAuth1Command {
    /// Walk the three-legged dance: print the URL to open, read the verifier
    /// (or the whole callback URL) from stdin, print the token credentials.
    Authorize {
        /// The temporary credential request endpoint.
        #[arg(long, value_name = "URL")]
        request_token_url: String,
        /// The resource owner authorization endpoint.
        #[arg(long, value_name = "URL")]
        authorize_url: String,
        /// The token request endpoint.
        #[arg(long, value_name = "URL")]
        access_token_url: String,
        /// The callback URL to register (RFC 5849 §2.1).
        #[arg(long, value_name = "URL", default_value = "oob")]
        callback: String,
        /// Print the token secret too.
        #[arg(long)]
        print_secret: bool,
    },
}

/// Sign with OAuth 1.0a (RFC 5849) instead of fetching an OAuth 2 token.
#[derive(Debug, Args)]
#[command(next_help_heading = "OAuth 1.0a")]
pub(crate) struct OAuth1Args {
    /// The consumer key; signs requests with OAuth 1.0a.
    #[arg(global = true, long, value_name = "K")]
    pub(crate) oauth1_consumer_key: Option<String>,
    /// Read the consumer secret from this environment variable.
    #[arg(
        global = true,
        long,
        value_name = "VAR",
        conflicts_with = "oauth1_private_key"
    )]
    pub(crate) oauth1_consumer_secret_env: Option<String>,
    /// Sign with this RSA private key (PEM, PKCS#1 or PKCS#8) instead.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) oauth1_private_key: Option<PathBuf>,
    /// The token credentials' identifier.
    #[arg(global = true, long, value_name = "T")]
    pub(crate) oauth1_token: Option<String>,
    /// Read the token secret from this environment variable.
    #[arg(global = true, long, value_name = "VAR", requires = "oauth1_token")]
    pub(crate) oauth1_token_secret_env: Option<String>,
    /// The signature method.
    #[arg(
        global = true,
        long,
        value_name = "METHOD",
        default_value = "HMAC-SHA1"
    )]
    pub(crate) oauth1_method: tower_alf::oauth1::SignatureMethod,
    /// Where the protocol parameters go: header, query or body.
    #[arg(global = true, long, value_name = "WHERE", default_value = "header")]
    pub(crate) oauth1_placement: tower_alf::oauth1::Placement,
}

/// How to get tokens.
#[derive(Debug, Args)]
pub(crate) struct OAuthArgs {
    /// The token endpoint.
    #[arg(global = true, long, value_name = "URL", conflicts_with = "issuer")]
    pub(crate) token_url: Option<String>,
    /// The authorization server's issuer: the token endpoint and a supported
    /// client authentication method are discovered from its metadata
    /// (RFC 8414, OpenID Connect Discovery) instead of --token-url.
    #[arg(global = true, long, value_name = "URL")]
    pub(crate) issuer: Option<String>,
    /// The client identifier.
    #[arg(global = true, long, value_name = "ID")]
    pub(crate) client_id: Option<String>,
    /// Read the client secret from this environment variable.
    #[arg(
        global = true,
        long,
        value_name = "VAR",
        conflicts_with = "client_secret_file"
    )]
    pub(crate) client_secret_env: Option<String>,
    /// Read the client secret from this file (one trailing newline is dropped).
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// How the client authenticates to the token endpoint (with --issuer:
    /// the default is the first the server supports among private_key_jwt
    /// (with --private-key), tls_client_auth and
    /// self_signed_tls_client_auth (with --cert), basic, post and jwt;
    /// with --token-url: basic, or tls_client_auth with --cert and no
    /// secret or key).
    #[arg(global = true, long, value_enum)]
    pub(crate) auth_method: Option<AuthMethod>,
    /// The client's private key (PEM: PKCS#1, PKCS#8 or SEC1; or a JWK),
    /// for --auth-method private_key_jwt.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) private_key: Option<PathBuf>,
    /// The `kid` header of the client assertion.
    #[arg(global = true, long, value_name = "KID", requires = "private_key")]
    pub(crate) key_id: Option<String>,
    /// The signing algorithm for the private key (default: RS256 for RSA,
    /// ES256 or ES384 for EC keys, EdDSA for Ed25519).
    #[arg(global = true, long, value_name = "ALG", requires = "private_key")]
    pub(crate) alg: Option<String>,
    /// Get tokens with the JWT-bearer grant for this service-account key
    /// file (its token_uri is the token endpoint unless --token-url is given).
    #[arg(global = true, long, value_name = "FILE", conflicts_with_all = ["refresh_token_env", "issuer"])]
    pub(crate) service_account: Option<PathBuf>,
    /// Get tokens with the refresh-token grant, starting from the refresh
    /// token in this environment variable.
    #[arg(
        global = true,
        long,
        value_name = "VAR",
        conflicts_with = "refresh_token_file"
    )]
    pub(crate) refresh_token_env: Option<String>,
    /// Get tokens with the refresh-token grant, starting from the token set
    /// in this file (as `alf login --save` writes it, or one refresh token
    /// on a line), and keep the refresh token the server rotates in it: an
    /// owner-only file, replaced atomically. A file that is a link, another
    /// user's, or open to group or others is refused.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) refresh_token_file: Option<PathBuf>,
    /// Authenticate the client with the JWT in this file (RFC 7523
    /// private_key_jwt), read again for every token request: a workload
    /// identity token the platform rotates (a Kubernetes projected token).
    #[arg(
        global = true,
        long,
        value_name = "FILE",
        conflicts_with_all = ["client_secret_env", "client_secret_file", "private_key", "auth_method"]
    )]
    pub(crate) client_assertion_file: Option<PathBuf>,
    /// Serve the access token in this file, read again when it expires (a
    /// JWT's exp) or every minute, and after a 401: a token another process
    /// keeps fresh. No token endpoint is used.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Get tokens from a program (an exec credential plugin), run without a
    /// shell for every fetch; it prints {"access_token": …, "expires_in" |
    /// "expiration": …}. The program and its arguments are the rest of the
    /// command line, up to an argument `;`: put the option last, or end
    /// it with ';'.
    #[arg(
        global = true,
        long,
        value_name = "CMD ARGS",
        num_args = 1..,
        allow_hyphen_values = true,
        value_terminator = ";"
    )]
    pub(crate) token_command: Vec<String>,
    /// Get tokens with the token exchange grant (RFC 8693), the subject
    /// token read from this file for every fetch (workload identity
    /// federation).
    #[arg(
        global = true,
        long,
        value_name = "FILE",
        conflicts_with = "subject_token_env"
    )]
    pub(crate) subject_token_file: Option<PathBuf>,
    /// Token exchange with the subject token in this environment variable.
    #[arg(global = true, long, value_name = "VAR")]
    pub(crate) subject_token_env: Option<String>,
    /// The subject token's type: access_token (default), refresh_token,
    /// id_token, jwt, saml1, saml2, or a full URI.
    #[arg(global = true, long, value_name = "TYPE")]
    pub(crate) subject_token_type: Option<String>,
    /// Token exchange: the actor token, read from this file for every
    /// fetch (delegation).
    #[arg(
        global = true,
        long,
        value_name = "FILE",
        conflicts_with = "actor_token_env"
    )]
    pub(crate) actor_token_file: Option<PathBuf>,
    /// Token exchange: the actor token in this environment variable.
    #[arg(global = true, long, value_name = "VAR")]
    pub(crate) actor_token_env: Option<String>,
    /// The actor token's type (as --subject-token-type; default
    /// access_token).
    #[arg(global = true, long, value_name = "TYPE")]
    pub(crate) actor_token_type: Option<String>,
    /// Token exchange: the `requested_token_type` (as --subject-token-type).
    #[arg(global = true, long, value_name = "TYPE")]
    pub(crate) requested_token_type: Option<String>,
    /// Get tokens with the JWT-bearer grant (RFC 7523 §2.1) for the JWT in
    /// this file, made by someone else (your IdP, a CI job), read again for
    /// every fetch.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) assertion_file: Option<PathBuf>,
    /// A scope to ask for (repeatable).
    #[arg(global = true, long = "scope", value_name = "S")]
    pub(crate) scopes: Vec<String>,
    /// The `audience` parameter.
    #[arg(global = true, long, value_name = "A")]
    pub(crate) audience: Option<String>,
    /// A `resource` parameter (RFC 8707, repeatable).
    #[arg(global = true, long = "resource", value_name = "R")]
    pub(crate) resources: Vec<String>,
    /// Any other token request parameter (repeatable).
    #[arg(global = true, long = "param", value_name = "K=V", value_parser = key_value)]
    pub(crate) params: Vec<(String, String)>,
    /// Allow a plain-http token endpoint that is not on loopback.
    #[arg(global = true, long)]
    pub(crate) allow_insecure_http: bool,
    /// Share tokens with other processes through this Redis or Valkey
    /// (`redis://[user:password@]host:port/db`).
    #[arg(global = true, long, value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// The namespace of the token's key in the store (default: tower-alf).
    #[arg(global = true, long, value_name = "P", requires = "redis")]
    pub(crate) store_key_prefix: Option<String>,
    /// Encrypt the stored token with the base64 32-byte key in this
    /// environment variable.
    #[arg(global = true, long, value_name = "VAR", requires = "redis")]
    pub(crate) store_encryption_key_env: Option<String>,
    /// Bind tokens to a fresh ES256 key with DPoP (RFC 9449): every token
    /// request and every request carries a DPoP proof.
    #[arg(global = true, long)]
    pub(crate) dpop: bool,
    /// Bind tokens with DPoP to this private key (PEM or JWK: P-256, P-384,
    /// RSA or Ed25519) instead of a fresh one; implies --dpop.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) dpop_key: Option<PathBuf>,
    /// Trust the CA certificates in this PEM file instead of the built-in
    /// roots, for the token endpoint, discovery and the request (as curl's
    /// --cacert).
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,
    /// Present this client certificate (PEM: the certificate, then any
    /// intermediates; the key may follow in the same file) on every TLS
    /// connection: the request's, the token endpoint's and discovery's
    /// (mutual TLS, RFC 8705; tokens the server binds to it work), as
    /// curl's --cert.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// The private key of --cert (PEM: PKCS#8, SEC1 or PKCS#1), when it is
    /// not in the --cert file, as curl's --key.
    #[arg(global = true, long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// Do not read or write the token cache between runs (by default a
    /// client-credentials token is kept, until it expires, in
    /// $XDG_CACHE_HOME/alf or ~/.cache/alf, readable by its owner only).
    #[arg(global = true, long)]
    pub(crate) no_cache: bool,
    /// Timeout in seconds for the token request and for each request.
    #[arg(global = true, long, value_name = "SECS", value_parser = seconds)]
    pub(crate) timeout: Option<std::time::Duration>,
}

/// Client authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthMethod {
    /// client_secret_basic (RFC 6749 §2.3.1 encoding)
    Basic,
    /// client_secret_basic without the form-encoding step
    BasicRaw,
    /// client_secret_post
    Post,
    /// client_secret_jwt (an HS256 assertion signed with the secret)
    Jwt,
    /// private_key_jwt (an assertion signed with --private-key)
    #[value(name = "private_key_jwt", alias = "private-key-jwt")]
    PrivateKeyJwt,
    /// none: a public client, only --client-id is sent
    None,
    /// mutual TLS with --cert, from a CA the server trusts (RFC 8705
    /// §2.1); --client-id is sent
    #[value(name = "tls_client_auth", alias = "tls-client-auth")]
    TlsClientAuth,
    /// mutual TLS with the --cert registered with the server, typically
    /// self-signed (RFC 8705 §2.2); --client-id is sent
    #[value(
        name = "self_signed_tls_client_auth",
        alias = "self-signed-tls-client-auth"
    )]
    SelfSignedTlsClientAuth,
}

/// What to send.
#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The request method (default: GET, or POST with --data).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub(crate) method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V", value_parser = header)]
    pub(crate) headers: Vec<(String, String)>,
    /// The request body, or @FILE to send a file's bytes as they are, or
    /// @- for stdin (at most 16 MiB).
    #[arg(short = 'd', long = "data", value_name = "DATA|@FILE")]
    pub(crate) data: Option<String>,
    /// A form field, URL-encoded: `CONTENT`, `NAME=CONTENT`, `@FILE` or
    /// `NAME@FILE` (repeatable; joined with -d by `&`), as curl takes it.
    #[arg(long = "data-urlencode", value_name = "[NAME]=DATA|[NAME]@FILE")]
    pub(crate) data_urlencode: Vec<String>,
    /// A JSON body (DATA, @FILE or @-): POST, Content-Type and Accept
    /// application/json.
    #[arg(long, value_name = "DATA|@FILE", conflicts_with_all = ["data", "data_urlencode"])]
    pub(crate) json: Option<String>,
    /// Exit 22 without printing the body when the response status is 400
    /// or more (a single request only).
    #[arg(short = 'f', long)]
    pub(crate) fail: bool,
    /// Write the body to FILE instead of stdout (a single request only).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// After the body, print FORMAT on stdout with %{http_code},
    /// %{time_total} (seconds) and %{size_download} (bytes) filled in,
    /// `\n` as a newline (a single request only).
    #[arg(short = 'w', long, value_name = "FORMAT")]
    pub(crate) write_out: Option<String>,
    /// Send the request this many times (bodies are then not printed).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) repeat: u64,
    /// How many requests to keep in flight with --repeat.
    #[arg(long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) concurrency: u64,
    /// At the end, print one JSON line of statistics on stdout.
    #[arg(long)]
    pub(crate) stats: bool,
    /// Print the response status and headers (control characters in
    /// header values escaped; the body stays raw).
    #[arg(short = 'i', long)]
    pub(crate) include: bool,
    /// Follow redirects (301, 302, 303, 307, 308), at most --max-redirs; the
    /// token goes to the URL's origin only, and Authorization, Cookie and
    /// Proxy-Authorization headers are dropped from the first cross-origin
    /// hop on.
    #[arg(short = 'L', long)]
    pub(crate) location: bool,
    /// With -L: the most redirects to follow (more exits 47).
    #[arg(long, value_name = "N", default_value_t = 20, requires = "location")]
    pub(crate) max_redirs: usize,
}

/// Options on the command line that the subcommand would ignore: the
/// request's options and URL with any subcommand, OAuth 1.0a options with
/// `token` or `login`, OAuth 2 options with `oauth1`. Their names, for a
/// usage error.
pub(crate) fn unused_options(matches: &ArgMatches) -> Option<(Vec<String>, &'static str)> {
    let given = |arg: &clap::Arg| {
        matches.value_source(arg.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
    };
    let name = |arg: &clap::Arg| match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => "the URL".to_owned(),
    };
    let mut request = RequestArgs::augment_args(ClapCommand::new("x"))
        .arg(clap::Arg::new("url"))
        .get_arguments()
        .filter(|arg| given(arg))
        .map(name)
        .collect::<Vec<_>>();
    let (ignored, subcommand) = match matches.subcommand_name()? {
        "token" => (OAuth1Args::augment_args(ClapCommand::new("x")), "alf token"),
        "login" => (OAuth1Args::augment_args(ClapCommand::new("x")), "alf login"),
        "oauth1" => (
            OAuthArgs::augment_args(ClapCommand::new("x")),
            "alf oauth1 authorize",
        ),
        _ => return None,
    };
    request.extend(ignored.get_arguments().filter(|arg| given(arg)).map(name));
    (!request.is_empty()).then_some((request, subcommand))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected K=V")?;
    Ok((k.to_owned(), v.to_owned()))
}

fn header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once(':').ok_or("expected 'Name: value'")?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a positive number of seconds".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn token_is_a_subcommand_and_urls_are_positional() {
        let cli = Cli::try_parse_from([
            "alf",
            "token",
            "--token-url",
            "https://i/t",
            "--print-token",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Token {
                print_token: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "alf",
            "-H",
            "X-A: 1",
            "--scope",
            "a",
            "--scope",
            "b",
            "https://api/x",
        ])
        .unwrap();
        assert_eq!(cli.url.as_deref(), Some("https://api/x"));
        assert_eq!(cli.request.headers, [("X-A".to_owned(), "1".to_owned())]);
        assert_eq!(cli.oauth.scopes, ["a", "b"]);
    }

    #[test]
    fn oauth1_options_parse_method_and_placement_names() {
        let cli = Cli::try_parse_from([
            "alf",
            "--oauth1-consumer-key",
            "k",
            "--oauth1-method",
            "RSA-SHA256",
            "--oauth1-placement",
            "query",
            "https://api/x",
        ])
        .unwrap();
        assert_eq!(cli.oauth1.oauth1_method.to_string(), "RSA-SHA256");
        assert_eq!(cli.oauth1.oauth1_placement.to_string(), "query");
        let bad = Cli::try_parse_from(["alf", "--oauth1-method", "MD5", "https://api/x"]);
        assert!(bad.is_err());
    }

    #[test]
    fn store_options_need_a_redis_url() {
        assert!(Cli::try_parse_from(["alf", "--store-key-prefix", "p", "https://api/x"]).is_err());
        let cli = Cli::try_parse_from([
            "alf",
            "--redis",
            "redis://127.0.0.1/",
            "--store-key-prefix",
            "p",
            "https://api/x",
        ])
        .unwrap();
        assert_eq!(cli.oauth.redis.as_deref(), Some("redis://127.0.0.1/"));
        assert_eq!(cli.oauth.store_key_prefix.as_deref(), Some("p"));
    }

    #[test]
    fn auth_methods_parse_by_their_names() {
        for (name, method) in [
            ("basic", AuthMethod::Basic),
            ("basic-raw", AuthMethod::BasicRaw),
            ("post", AuthMethod::Post),
            ("jwt", AuthMethod::Jwt),
            ("private_key_jwt", AuthMethod::PrivateKeyJwt),
            ("none", AuthMethod::None),
            ("tls_client_auth", AuthMethod::TlsClientAuth),
            (
                "self_signed_tls_client_auth",
                AuthMethod::SelfSignedTlsClientAuth,
            ),
        ] {
            let cli = Cli::try_parse_from(["alf", "--auth-method", name, "https://api/x"]).unwrap();
            assert_eq!(cli.oauth.auth_method, Some(method), "{name}");
        }
    }

    #[test]
    fn issuer_and_token_url_exclude_each_other() {
        let args = [
            "alf",
            "--issuer",
            "https://i",
            "--token-url",
            "https://i/t",
            "https://a",
        ];
        assert!(Cli::try_parse_from(args).is_err());
    }

    #[test]
    fn a_plain_secret_flag_does_not_exist() {
        assert!(Cli::try_parse_from(["alf", "--client-secret", "s", "https://api/x"]).is_err());
    }
}
