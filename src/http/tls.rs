//! TLS for the default client: the crypto provider, and the client
//! certificate of mutual TLS (RFC 8705) with its `x5t#S256` thumbprint,
//! which certificate-bound tokens carry as their sender constraint.

use std::{any::Any, fmt, sync::Arc};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use http::{HeaderMap, Method, Uri};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    sign::{CertifiedKey, SingleCertAndKey},
    RootCertStore,
};
use sha2::{Digest, Sha256};

use crate::{
    challenge::SchemeChallenge,
    error::Error,
    token::{Binding, BindingKey, SenderConstraint, Token, TokenType},
};

/// The crypto provider of the default client: the process default, when
/// the application installed one (`CryptoProvider::install_default`), else
/// `aws-lc-rs` with that feature, else `ring` with that feature (the
/// default). With neither feature and no process default, a configuration
/// error.
pub(crate) fn provider() -> Result<Arc<CryptoProvider>, Error> {
    if let Some(installed) = CryptoProvider::get_default() {
        return Ok(Arc::clone(installed));
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        Ok(Arc::new(rustls::crypto::ring::default_provider()))
    }
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    {
        Err(Error::config(
            "no TLS crypto provider: enable the `ring` or `aws-lc-rs` feature, or install a \
             process default with rustls::crypto::CryptoProvider::install_default",
        ))
    }
}

/// A client certificate chain and its private key, for mutual TLS: the
/// token endpoint authenticates the client by it (RFC 8705 §2,
/// [`ClientAuth::tls_client_auth`](crate::ClientAuth::tls_client_auth)), and
/// a resource server checks that a certificate-bound token comes over a
/// connection with it (RFC 8705 §3).
///
/// Read from PEM: the chain's certificates (`CERTIFICATE` blocks, the
/// client's own first) and one key, PKCS#8 (`PRIVATE KEY`), SEC1 (`EC
/// PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`). A chain or key that cannot
/// be read, or a key that is not the certificate's, is an
/// [`Error::is_config`]; the message never quotes the key. `Debug` shows
/// the thumbprint only.
///
/// ```
/// use tower_alf::ClientCertificate;
///
/// # fn run(chain_pem: &str, key_pem: &str) -> Result<(), tower_alf::Error> {
/// let certificate = ClientCertificate::from_pem(chain_pem, key_pem)?;
/// // The `x5t#S256` a certificate-bound token's `cnf` names (RFC 8705 §3.1).
/// println!("{}", certificate.thumbprint());
/// # Ok(()) }
/// assert!(ClientCertificate::from_pem("not PEM", "nor this").unwrap_err().is_config());
/// ```
#[derive(Clone)]
pub struct ClientCertificate {
    inner: Arc<Inner>,
}

struct Inner {
    key: CertifiedKey,
    thumbprint: String,
}

impl ClientCertificate {
    /// Reads a certificate chain and its key from PEM text (see the type's
    /// docs), and checks that the key is the first certificate's.
    pub fn from_pem(chain_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::config(format!(
                    "the client certificate chain is not readable PEM ({})",
                    pem_problem(&e)
                ))
            })?;
        if chain.is_empty() {
            return Err(Error::config(
                "the client certificate chain has no CERTIFICATE block",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_ref()).map_err(|e| {
            Error::config(format!(
                "the client certificate's key is not a readable PEM private key \
                 (PKCS#8, SEC1 or PKCS#1): {}",
                pem_problem(&e)
            ))
        })?;
        Self::from_der(chain, key)
    }

    /// The certificate chain (DER, the client's own first) and its key
    /// (DER), checked as [`from_pem`](Self::from_pem) checks them.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        let Some(leaf) = chain.first() else {
            return Err(Error::config("the client certificate chain is empty"));
        };
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(leaf.as_ref()));
        let key = CertifiedKey::from_der(chain, key, &*provider()?).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                Error::config("the client certificate does not match its private key")
            }
            rustls::Error::InvalidCertificate(_) => {
                Error::config("the client certificate is not a valid X.509 certificate")
            }
            _ => Error::config("the client certificate's private key cannot be used for TLS"),
        })?;
        Ok(Self {
            inner: Arc::new(Inner { key, thumbprint }),
        })
    }

    /// The certificate's SHA-256 thumbprint, base64url without padding:
    /// the `x5t#S256` of RFC 8705 §3.1.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// A rustls configuration that presents this certificate and trusts
    /// `roots`, with the crate's crypto provider: for the client that
    /// sends resource requests with a certificate-bound token (hyper-util
    /// over hyper-rustls, or any rustls-based client).
    ///
    /// ```
    /// use tower_alf::ClientCertificate;
    ///
    /// # fn run(certificate: ClientCertificate) -> Result<(), tower_alf::Error> {
    /// let config = certificate.tls_config(rustls::RootCertStore::empty())?;
    /// let connector = hyper_rustls::HttpsConnectorBuilder::new()
    ///     .with_tls_config(config)
    ///     .https_only()
    ///     .enable_http1()
    ///     .build();
    /// let client = hyper_util::client::legacy::Client::builder(
    ///     hyper_util::rt::TokioExecutor::new(),
    /// )
    /// .build::<_, http_body_util::Full<bytes::Bytes>>(connector);
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn tls_config(&self, roots: RootCertStore) -> Result<rustls::ClientConfig, Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider()?)
            .with_safe_default_protocol_versions()
            .map_err(|_| Error::config("the crypto provider supports no TLS version"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        self.present_in(&mut config);
        Ok(config)
    }

    /// Makes `config` present this certificate.
    pub(crate) fn present_in(&self, config: &mut rustls::ClientConfig) {
        config.client_auth_cert_resolver = Arc::new(SingleCertAndKey::from(self.inner.key.clone()));
    }

    /// The sender constraint of a token bound to this certificate.
    pub(crate) fn binding(&self) -> Binding {
        Binding::new(CertificateBinding {
            thumbprint: self.inner.thumbprint.clone(),
        })
    }
}

impl PartialEq for ClientCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.thumbprint() == other.thumbprint()
    }
}

impl Eq for ClientCertificate {}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

/// A PEM failure, without the text it was given.
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::NoItemsFound => "no PEM block of that kind",
        Pem::MissingSectionEnd { .. } => "a block has no END line",
        Pem::IllegalSectionStart { .. } => "a malformed BEGIN line",
        Pem::Base64Decode(_) => "a block is not valid Base64",
        _ => "cannot be read",
    }
}

// ===== the certificate binding (RFC 8705 §3) =====

/// The `cnf` member name of a certificate thumbprint (RFC 8705 §3.1).
pub(crate) const X5T_S256: &str = "x5t#S256";

/// A token bound to a client certificate: it is sent as a Bearer token
/// (RFC 8705 §3), over a connection that presents the certificate, so
/// nothing is added per request; its thumbprint is the `x5t#S256`.
#[derive(Debug)]
struct CertificateBinding {
    thumbprint: String,
}

impl SenderConstraint for CertificateBinding {
    fn challenge_scheme(&self) -> Option<&'static str> {
        None
    }

    fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    fn confirmation(&self) -> &'static str {
        X5T_S256
    }

    fn authorize(&self, _: &Method, _: &Uri, _: &mut HeaderMap) -> Result<(), Error> {
        Ok(())
    }

    fn unauthorize(&self, _: &mut HeaderMap) {}

    fn on_response(&self, _: &Uri, _: &HeaderMap) -> bool {
        false
    }

    fn needs_replay_without_refresh(&self, _: &SchemeChallenge) -> bool {
        false
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl BindingKey for ClientCertificate {
    fn token_type(&self) -> TokenType {
        TokenType::Bearer
    }

    fn thumbprint(&self) -> &str {
        ClientCertificate::thumbprint(self)
    }

    fn confirmation(&self) -> &'static str {
        X5T_S256
    }

    fn bind(&self, token: Token) -> Token {
        token.bound(self.binding())
    }
}

/// Reads a token response's `cnf` (RFC 8705 §3.1, RFC 7800): a token bound
/// to `certificate` when its `x5t#S256` is that certificate's thumbprint;
/// an error when it names another certificate, or when the token is bound
/// to a certificate and the client presents none.
pub(crate) fn bind_to_certificate(
    token: Token,
    certificate: Option<&ClientCertificate>,
    status: http::StatusCode,
) -> Result<Token, Error> {
    let stated = token
        .extra()
        .get("cnf")
        .and_then(|cnf| cnf.get(X5T_S256))
        .map(|value| value.as_str().unwrap_or_default().to_owned());
    match (stated, certificate) {
        (None, _) => Ok(token),
        (Some(stated), Some(certificate)) if stated == certificate.thumbprint() => {
            Ok(token.bound(certificate.binding()))
        }
        (Some(_), Some(_)) => Err(Error::invalid_response(
            status,
            "the token is bound (cnf x5t#S256) to another certificate than the client's",
            &[],
        )),
        (Some(_), None) => Err(Error::invalid_response(
            status,
            "the token is bound (cnf x5t#S256) to a client certificate, and the client \
             presents none",
            &[],
        )),
    }
}

impl<G> crate::store::StoreGrant<G> {
    /// The client certificate the grant's token endpoint client presents
    /// (mutual TLS, RFC 8705 §3): a stored token bound to it (its
    /// `x5t#S256`) is bound to it again when read back. Without it, or for
    /// a token bound to another certificate, a stored certificate-bound
    /// token is a miss (this instance fetches its own), never sent without
    /// its certificate. Tokens bound to nothing are shared as usual.
    ///
    /// Name the certificate in the cache key (`x5t#S256`, as
    /// [`ClientCredentials::cache_key`](crate::grant::ClientCredentials::cache_key)
    /// does), so that instances with different certificates keep apart.
    ///
    /// ```
    /// use tower_alf::{store::{CacheKey, MemoryStore, StoreGrant}, ClientCertificate};
    ///
    /// # fn run(certificate: ClientCertificate) {
    /// # let grant = tower::service_fn(|_: tower_alf::grant::FetchToken| async {
    /// #     tower_alf::Token::bearer("t")
    /// # });
    /// let cache_key = CacheKey::builder("https://mtls.idp.example/token", "client_credentials")
    ///     .param("x5t#S256", certificate.thumbprint())
    ///     .build();
    /// let grant = StoreGrant::new(grant, MemoryStore::new(), cache_key)
    ///     .client_certificate(certificate);
    /// # }
    /// ```
    pub fn client_certificate(self, certificate: ClientCertificate) -> Self {
        self.rebind_with(Arc::new(certificate))
    }
}

impl Token {
    /// The thumbprint (`x5t#S256`, RFC 8705 §3.1) of the client certificate
    /// the token is bound to: it must go out over a connection that
    /// presents that certificate. `None` for a token not bound to one.
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        let binding = self
            .sender_constraint()?
            .as_any()
            .downcast_ref::<CertificateBinding>()?;
        Some(&binding.thumbprint)
    }
}
