//! The Python side of the OAuth 1.0a interop tests: a virtual environment
//! in `tests/authlib_oauth1/.venv` (gitignored) with the pinned packages of
//! `requirements.txt` (Authlib, oauthlib), made from PyPI by the first test
//! that needs it, the way `tests/interop.rs` installs its Node packages.
//!
//! Needs `python3` with its `venv` module (Debian: `apt-get install -y
//! python3-venv`); without it, the tests that use it fail and say so.
#![allow(dead_code)] // each test file uses its own part

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
};

/// `tests/authlib_oauth1`.
pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/authlib_oauth1")
}

/// The venv's `python`, the venv made and its packages installed first
/// when they are missing or the requirements changed since.
pub(crate) fn python() -> PathBuf {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir();
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    if *ready {
        return python;
    }
    const HOW: &str =
        "install Python 3 with venv (e.g. `apt-get install -y python3 python3-venv`); \
                       the test then makes tests/authlib_oauth1/.venv from requirements.txt";
    let requirements = std::fs::read_to_string(dir.join("requirements.txt")).unwrap();
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str()) {
        *ready = true;
        return python;
    }
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .stdout(Stdio::null())
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "`python3 -m venv tests/authlib_oauth1/.venv` failed: {HOW}"
        );
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(dir.join("requirements.txt"))
        .stdout(Stdio::null())
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "`pip install -r tests/authlib_oauth1/requirements.txt` failed (PyPI unreachable?): {HOW}"
    );
    std::fs::write(&marker, &requirements).unwrap();
    *ready = true;
    python
}
