//! Every file and environment variable alf reads, checked at the edge:
//! secrets and keys come from regular files of at most [`SECRET_CAP`]
//! bytes, request bodies are capped at [`BODY_CAP`], and a secret that is
//! empty or not UTF-8 is an error of its own.

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use crate::tokens::{usage, Usage};

/// The most a secret, key or service-account file may hold.
pub(crate) const SECRET_CAP: u64 = 64 * 1024;

/// The most a request body from `-d @FILE` may hold: it is kept in memory
/// to be sent again (a replay after a 401, `--repeat`).
pub(crate) const BODY_CAP: u64 = 16 * 1024 * 1024;

/// A secret or key file as text: a regular file (no device, FIFO or
/// directory), at most [`SECRET_CAP`] bytes, UTF-8, not empty.
/// `what` names the option in errors ("--client-secret-file").
pub(crate) fn secret_file(path: &Path, what: &str) -> Result<String, Usage> {
    let shown = path.display();
    // Refuse what is not a regular file before opening it: opening a FIFO
    // would wait for a writer, reading a device would not end.
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(usage(format!("{what} {shown}: not a regular file"))),
        Err(e) => return Err(usage(format!("{what} {shown}: cannot read it: {e}"))),
    }
    let file =
        File::open(path).map_err(|e| usage(format!("{what} {shown}: cannot read it: {e}")))?;
    // The path may have been swapped since: check what was opened.
    let is_file = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if !is_file {
        return Err(usage(format!("{what} {shown}: not a regular file")));
    }
    let bytes = read_capped(file, SECRET_CAP)
        .map_err(|e| usage(format!("{what} {shown}: cannot read it: {e}")))?
        .ok_or_else(|| {
            usage(format!(
                "{what} {shown}: larger than {} KiB, too large for a secret or key",
                SECRET_CAP / 1024
            ))
        })?;
    let text =
        String::from_utf8(bytes).map_err(|_| usage(format!("{what} {shown}: not UTF-8 text")))?;
    if text.trim().is_empty() {
        return Err(usage(format!("{what} {shown}: the file is empty")));
    }
    Ok(text)
}

/// The client secret in a file: [`secret_file`] without one trailing
/// newline (`\n` or `\r\n`).
pub(crate) fn secret_file_line(path: &Path, what: &str) -> Result<String, Usage> {
    let text = secret_file(path, what)?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// A secret from an environment variable: set, UTF-8 and not empty, each
/// with its own error.
pub(crate) fn env_secret(var: &str) -> Result<String, Usage> {
    match std::env::var(var) {
        Ok(value) if value.is_empty() => Err(usage(format!(
            "the environment variable {var} is empty: it must hold the secret"
        ))),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            Err(usage(format!("the environment variable {var} is not set")))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(usage(format!(
            "the environment variable {var} is not valid UTF-8"
        ))),
    }
}

/// The body of `-d @FILE`: the file's bytes as they are, at most
/// [`BODY_CAP`] (a device such as /dev/zero stops there).
pub(crate) fn body_file(path: &str) -> Result<Vec<u8>, Usage> {
    body_from(path, "-d")
}

/// The bytes of `@path` for `flag` (`-d`, `--json`, `--data-urlencode`):
/// a file, or stdin for `-`, at most [`BODY_CAP`] either way.
pub(crate) fn body_from(path: &str, flag: &str) -> Result<Vec<u8>, Usage> {
    let shown = PathBuf::from(path);
    let shown = shown.display();
    let too_large = || {
        usage(format!(
            "{flag} @{shown}: larger than {} MiB, the most alf sends as a body",
            BODY_CAP / (1024 * 1024)
        ))
    };
    if path == "-" {
        return read_capped(std::io::stdin().lock(), BODY_CAP)
            .map_err(|e| usage(format!("{flag} @-: cannot read stdin: {e}")))?
            .ok_or_else(too_large);
    }
    let metadata = std::fs::metadata(path)
        .map_err(|e| usage(format!("{flag} @{shown}: cannot read it: {e}")))?;
    if metadata.is_dir() {
        return Err(usage(format!("{flag} @{shown}: a directory, not a file")));
    }
    let file =
        File::open(path).map_err(|e| usage(format!("{flag} @{shown}: cannot read it: {e}")))?;
    read_capped(file, BODY_CAP)
        .map_err(|e| usage(format!("{flag} @{shown}: cannot read it: {e}")))?
        .ok_or_else(too_large)
}

/// Up to `cap` bytes of `file`; `None` when it holds more.
fn read_capped(file: impl Read, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_not_a_secret_file() {
        let error = secret_file(Path::new("/dev/zero"), "--private-key").unwrap_err();
        assert!(error.0.contains("not a regular file"), "{error}");
    }

    #[test]
    fn a_body_from_a_device_stops_at_the_cap() {
        let error = body_file("/dev/zero").unwrap_err();
        assert!(error.0.contains("larger than 16 MiB"), "{error}");
    }
}
