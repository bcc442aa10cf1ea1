//! The token cache between runs: a [`TokenStore`] of files in the user's
//! cache directory (`$XDG_CACHE_HOME/alf`, else `~/.cache/alf`), one file
//! per [`CacheKey`] (token URL, grant, client id, sorted scopes, parameters;
//! never the secret), so that a second `alf` run within the token's
//! lifetime sends no token request.
//!
//! The directory is the user's only (0700), each file too (0600), written
//! as a temporary file in the directory and renamed over the old one. A
//! file (or directory) that is a symbolic link, another user's, or open to
//! group or others is refused and never replaced; a file that does not
//! parse (corrupt, truncated) is ignored, with a warning, and replaced.

use std::{
    fmt,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use tower_alf::store::{CacheKey, Fingerprint, StoreError, StoreFuture, StoredToken, TokenStore};

use crate::tokens::{usage, Usage};

/// The largest cache file alf reads: a token set is a few KiB.
const MAX_FILE: u64 = 256 * 1024;

/// What is wrong with a cache file.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Not alf's to read or replace: a link, another user's, open to others.
    Insecure(String),
    /// alf's, but it does not parse: ignored and replaced.
    Corrupt(String),
}

/// The cache directory, checked.
#[derive(Debug, Clone)]
pub(crate) struct FileCache {
    dir: PathBuf,
    #[cfg(unix)]
    uid: u32,
}

impl FileCache {
    /// The user's cache directory for alf, created owner-only when missing;
    /// `None` when there is no home to put it in.
    pub(crate) fn open() -> Result<Option<Self>, Usage> {
        let base = match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() => dir,
            _ => match std::env::var_os("HOME").map(PathBuf::from) {
                Some(home) if home.is_absolute() => home.join(".cache"),
                _ => return Ok(None),
            },
        };
        let dir = base.join("alf");
        let refused = |reason: String| {
            usage(format!(
                "token cache {}: {reason}; refused (fix it, or use --no-cache)",
                dir.display()
            ))
        };
        if std::fs::symlink_metadata(&dir).is_err() {
            std::fs::create_dir_all(&base).map_err(|e| refused(e.to_string()))?;
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(refused(e.to_string())),
            }
        }
        let metadata = std::fs::symlink_metadata(&dir).map_err(|e| refused(e.to_string()))?;
        if metadata.file_type().is_symlink() {
            return Err(refused("a symbolic link".to_owned()));
        }
        if !metadata.is_dir() {
            return Err(refused("not a directory".to_owned()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // This process's user: the owner of a file it just created.
            let probe = tempfile::Builder::new()
                .prefix(".alf-probe-")
                .tempfile_in(&dir)
                .map_err(|e| refused(format!("cannot write in it: {e}")))?;
            let uid = probe
                .as_file()
                .metadata()
                .map_err(|e| refused(e.to_string()))?
                .uid();
            drop(probe);
            if metadata.uid() != uid {
                return Err(refused(format!(
                    "owned by another user (uid {})",
                    metadata.uid()
                )));
            }
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(refused(format!(
                    "open to group or others (mode {mode:03o}; alf wants 700)"
                )));
            }
            Ok(Some(Self { dir, uid }))
        }
        #[cfg(not(unix))]
        Ok(Some(Self { dir }))
    }

    /// The file for `key`: the key's readable characters.
    pub(crate) fn path(&self, key: &CacheKey) -> PathBuf {
        let name: String = key
            .as_str()
            .chars()
            .filter(|c| !matches!(c, '{' | '}'))
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.json"))
    }

    /// The token in `key`'s file: `None` when there is none.
    pub(crate) fn read(&self, key: &CacheKey) -> Result<Option<StoredToken>, Problem> {
        let path = self.path(key);
        let Some(bytes) = self.read_file(&path)? else {
            return Ok(None);
        };
        StoredToken::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| Problem::Corrupt(e.to_string()))
    }

    /// Checks the file at `path` is alf's to read and replace; its bytes
    /// (`None`: no file).
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, Problem> {
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Problem::Insecure(e.to_string())),
        };
        self.check(&metadata)?;
        let mut file = std::fs::File::open(path).map_err(|e| Problem::Insecure(e.to_string()))?;
        // The file opened is the file checked (no swap in between).
        let opened = file
            .metadata()
            .map_err(|e| Problem::Insecure(e.to_string()))?;
        self.check(&opened)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if (opened.dev(), opened.ino()) != (metadata.dev(), metadata.ino()) {
                return Err(Problem::Insecure("replaced while alf read it".to_owned()));
            }
        }
        if opened.len() > MAX_FILE {
            return Err(Problem::Corrupt(format!(
                "larger than {} KiB",
                MAX_FILE / 1024
            )));
        }
        let mut bytes = Vec::new();
        Read::by_ref(&mut file)
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Problem::Corrupt(e.to_string()))?;
        Ok(Some(bytes))
    }

    fn check(&self, metadata: &std::fs::Metadata) -> Result<(), Problem> {
        if metadata.file_type().is_symlink() {
            return Err(Problem::Insecure("a symbolic link".to_owned()));
        }
        if !metadata.is_file() {
            return Err(Problem::Insecure("not a regular file".to_owned()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if metadata.uid() != self.uid {
                return Err(Problem::Insecure(format!(
                    "owned by another user (uid {})",
                    metadata.uid()
                )));
            }
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Problem::Insecure(format!(
                    "readable or writable by group or others (mode {mode:03o}; alf wants 600)"
                )));
            }
        }
        Ok(())
    }

    /// Writes `token` to `key`'s file: a new 0600 file, synced, renamed
    /// over the old one, which must be alf's (or corrupt, or missing).
    pub(crate) fn write(&self, key: &CacheKey, token: &StoredToken) -> Result<(), String> {
        let path = self.path(key);
        match self.read_file(&path) {
            Ok(_) | Err(Problem::Corrupt(_)) => {}
            Err(Problem::Insecure(reason)) => return Err(reason),
        }
        let mut temp = tempfile::Builder::new()
            .prefix(".alf-token-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(|e| e.to_string())?;
        let file = temp.as_file_mut();
        file.write_all(&token.to_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| e.to_string())?;
        temp.persist(&path).map_err(|e| e.error.to_string())?;
        Ok(())
    }

    /// Removes `key`'s file if it is alf's; whether there was one.
    pub(crate) fn remove(&self, key: &CacheKey) -> Result<bool, Problem> {
        let path = self.path(key);
        match self.read_file(&path) {
            Ok(None) => return Ok(false),
            Ok(Some(_)) | Err(Problem::Corrupt(_)) => {}
            Err(insecure) => return Err(insecure),
        }
        std::fs::remove_file(&path).map_err(|e| Problem::Insecure(e.to_string()))?;
        Ok(true)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Insecure(reason) | Problem::Corrupt(reason) => f.write_str(reason),
        }
    }
}

fn store_error(problem: impl fmt::Display) -> StoreError {
    StoreError::new(format!("token cache: {problem}"))
}

/// One process uses the cache at a time as far as locks go: two runs at
/// once may both fetch, and the later write wins.
impl TokenStore for FileCache {
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>> {
        Box::pin(async move {
            match self.read(key) {
                Ok(token) => Ok(token),
                Err(Problem::Corrupt(_)) => Ok(None),
                Err(insecure) => Err(store_error(insecure)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a CacheKey, token: &'a StoredToken) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.write(key, token).map_err(store_error) })
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: &'a Fingerprint,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            match self.read(key) {
                Ok(Some(token)) if token.fingerprint() == *expected => {
                    self.remove(key).map_err(store_error)
                }
                Ok(_) | Err(Problem::Corrupt(_)) => Ok(false),
                Err(insecure) => Err(store_error(insecure)),
            }
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: Option<&'a Fingerprint>,
        new: &'a StoredToken,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let current = match self.read(key) {
                Ok(token) => token.map(|token| token.fingerprint()),
                Err(Problem::Corrupt(_)) => None,
                Err(insecure) => return Err(store_error(insecure)),
            };
            if current.as_ref() != expected {
                return Ok(false);
            }
            self.write(key, new).map_err(store_error)?;
            Ok(true)
        })
    }

    fn try_lock<'a>(
        &'a self,
        _key: &'a CacheKey,
        _owner: &'a str,
        _ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    fn unlock<'a>(&'a self, _key: &'a CacheKey, _owner: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }
}
