use std::{fmt, path::Path};

use serde_json::{Map, Value};

use super::JwtBearer;
use crate::{
    endpoint::{client_auth::ClientAuth, TokenEndpoint, TokenEndpointBuilder},
    error::Error,
    jwt::PrivateKey,
};

/// A Google-style service-account key file, read into a ready
/// [`JwtBearer`] grant.
///
/// The file is the JSON a cloud console hands out: `type` must be
/// `service_account`; `client_email` (the assertion's `iss`),
/// `private_key` (PEM), `private_key_id` (the `kid`) and `token_uri` are
/// used. Errors name the field at fault and never contain the key, nor does
/// `Debug`.
///
/// ```
/// use tower_alf::{grant::ServiceAccount, TokenSource};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// # let key = include_str!("../../tests/fixtures/rsa_pkcs8.pem");
/// # let json = serde_json::json!({
/// #     "type": "service_account", "client_email": "robot@project.iam.example",
/// #     "private_key": key, "private_key_id": "abc123",
/// #     "token_uri": "https://oauth2.example/token",
/// # }).to_string();
/// # let path = std::env::temp_dir().join(format!("sa-doc-{}.json", std::process::id()));
/// # std::fs::write(&path, json).unwrap();
/// let account = ServiceAccount::from_file(&path)?;
/// assert_eq!(account.client_email(), "robot@project.iam.example");
/// let grant = account.grant()?.scope("https://www.googleapis.com/auth/cloud-platform");
/// let tokens = TokenSource::new(grant);
///
/// // The wrong kind of file is a clear error.
/// let e = ServiceAccount::from_json(r#"{"type":"authorized_user"}"#).unwrap_err();
/// assert!(e.to_string().contains("authorized_user"));
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServiceAccount {
    client_email: String,
    key: PrivateKey,
    token_uri: String,
    project_id: Option<String>,
}

impl ServiceAccount {
    /// The largest key file read: real ones are about 2.3 KiB.
    pub const MAX_FILE_SIZE: u64 = 64 * 1024;

    /// Reads a service-account key file: a regular file of at most
    /// [`MAX_FILE_SIZE`](Self::MAX_FILE_SIZE) bytes (a device or a FIFO is
    /// refused before it is read, so `/dev/zero` cannot fill memory).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        use std::io::Read as _;

        let path = path.as_ref();
        let refuse = |why: String| {
            Error::config(format!(
                "cannot read the service account file {}: {why}",
                path.display()
            ))
        };
        let metadata = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
        if !metadata.is_file() {
            return Err(refuse("not a regular file".into()));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(Self::MAX_FILE_SIZE + 1).read_to_string(&mut text))
            .map_err(|e| refuse(e.to_string()))?;
        if text.len() as u64 > Self::MAX_FILE_SIZE {
            return Err(refuse(format!(
                "larger than {} KiB",
                Self::MAX_FILE_SIZE / 1024
            )));
        }
        Self::from_json(&text)
    }

    /// Reads a service account from its JSON text.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let map: Map<String, Value> = serde_json::from_str(json)
            .map_err(|_| Error::config("the service account file is not a JSON object"))?;
        let field = |name: &str| -> Result<&str, Error> {
            match map.get(name) {
                Some(Value::String(value)) if !value.is_empty() => Ok(value),
                Some(Value::String(_)) => Err(Error::config(format!(
                    "the service account file has an empty {name:?}"
                ))),
                Some(_) => Err(Error::config(format!(
                    "the service account file's {name:?} is not a string"
                ))),
                None => Err(Error::config(format!(
                    "the service account file has no {name:?}"
                ))),
            }
        };
        let kind = field("type")?;
        if kind != "service_account" {
            return Err(Error::config(format!(
                "the file is of type {kind:?}, not a \"service_account\" key file"
            )));
        }
        let client_email = field("client_email")?.to_owned();
        let token_uri = field("token_uri")?.to_owned();
        let mut key = PrivateKey::from_pem(field("private_key")?).map_err(|e| {
            Error::config(format!(
                "the service account file's \"private_key\" is unusable: {}",
                e.to_string()
                    .trim_start_matches("invalid token source configuration: ")
            ))
        })?;
        if let Ok(kid) = field("private_key_id") {
            key = key.with_key_id(kid);
        }
        Ok(Self {
            client_email,
            key,
            token_uri,
            project_id: field("project_id").ok().map(str::to_owned),
        })
    }

    /// The account's e-mail: the assertion's issuer.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The token endpoint named by the file.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The project, if the file names one.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The signing key, with `private_key_id` as its `kid`.
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// A [`TokenEndpointBuilder`] for [`ServiceAccount::token_uri`], to set
    /// a timeout or an HTTP client before [`ServiceAccount::grant_with`].
    /// Its client authentication is [`ClientAuth::anonymous`]: the signed
    /// assertion identifies the account.
    pub fn endpoint_builder(&self) -> TokenEndpointBuilder {
        TokenEndpoint::builder(&self.token_uri).client_auth(ClientAuth::anonymous())
    }

    /// The JWT-bearer grant at [`ServiceAccount::token_uri`] with the
    /// default endpoint settings; add scopes to it.
    pub fn grant(&self) -> Result<JwtBearer, Error> {
        Ok(self.grant_with(self.endpoint_builder().build()?))
    }

    /// The JWT-bearer grant against `endpoint`: `iss` and `sub` are the
    /// account's e-mail, scopes go in a `scope` claim as Google expects.
    pub fn grant_with(&self, endpoint: TokenEndpoint) -> JwtBearer {
        JwtBearer::new(endpoint, self.key.clone(), &self.client_email).scope_as_claim(true)
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("key", &self.key)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/rsa_pkcs8.pem");

    #[test]
    fn a_device_or_an_oversized_key_file_is_refused_before_it_fills_memory() {
        let e = ServiceAccount::from_file("/dev/zero").unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("not a regular file"),
            "{e}"
        );
        let path = std::env::temp_dir().join(format!("alf-sa-big-{}.json", std::process::id()));
        std::fs::write(&path, vec![b' '; 64 * 1024 + 1]).unwrap();
        let e = ServiceAccount::from_file(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
    }

    fn file(mutate: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut map = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid-1",
            "private_key": KEY,
            "client_email": "robot@p.iam.example",
            "token_uri": "https://oauth2.example/token",
        })
        .as_object()
        .unwrap()
        .clone();
        mutate(&mut map);
        Value::Object(map).to_string()
    }

    #[test]
    fn a_service_account_file_is_read() {
        let account = ServiceAccount::from_json(&file(|_| {})).unwrap();
        assert_eq!(account.client_email(), "robot@p.iam.example");
        assert_eq!(account.token_uri(), "https://oauth2.example/token");
        assert_eq!(account.private_key().key_id(), Some("kid-1"));
        assert_eq!(account.project_id(), Some("p"));
    }

    #[test]
    fn a_wrong_type_is_named() {
        let e = ServiceAccount::from_json(&file(|m| {
            m.insert("type".into(), "authorized_user".into());
        }))
        .unwrap_err();
        assert!(e.is_config());
        assert!(e.to_string().contains("\"authorized_user\""), "{e}");
    }

    #[test]
    fn a_missing_field_is_named() {
        for name in ["client_email", "private_key", "token_uri", "type"] {
            let e = ServiceAccount::from_json(&file(|m| {
                m.remove(name);
            }))
            .unwrap_err();
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn an_unreadable_key_is_an_error_without_the_key() {
        let e = ServiceAccount::from_json(&file(|m| {
            m.insert(
                "private_key".into(),
                "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n".into(),
            );
        }))
        .unwrap_err();
        assert!(e.to_string().contains("private_key"), "{e}");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        assert!(!format!("{e:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let account = ServiceAccount::from_json(&file(|_| {})).unwrap();
        let debug = format!("{account:?}");
        let body: String = KEY.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!debug.contains(&body), "{debug}");
    }
}
