//! `WWW-Authenticate`, structure-aware: the input describes header lines of
//! challenges (schemes, parameters, quoting, bad whitespace around `=`,
//! token68, stray bytes), rendered by the grammar of RFC 9110 §11.6.1.
//!
//! Invariants: the parser never panics, on the rendered lines nor on the raw
//! bytes; the `error` of the first generated `Bearer` challenge is found,
//! byte for byte (lossily decoded); no `Bearer` challenge, none found.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    lines: Vec<Vec<Challenge>>,
    /// Raw bytes also thrown at the parser as one more line.
    raw: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Challenge {
    scheme: Scheme,
    /// How the scheme is spelt: each bit flips one letter's case.
    case: u16,
    body: Body,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Scheme {
    Bearer,
    DPoP,
    Basic,
    Negotiate,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum Body {
    None,
    Token68 { chars: Vec<u8>, padding: u8 },
    Params(Vec<Param>),
}

#[derive(Arbitrary, Debug)]
struct Param {
    name: Name,
    value: Vec<u8>,
    quoted: bool,
    /// Spaces and tabs before and after `=`.
    before: Ows,
    after: Ows,
    /// OWS around the comma that ends it.
    comma: Ows,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Name {
    Error,
    ErrorDescription,
    Realm,
    Scope,
    Other(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Ows(u8);

impl Ows {
    fn render(self, out: &mut Vec<u8>) {
        for i in 0..self.0 % 4 {
            out.push(if self.0 >> (i + 2) & 1 == 0 { b' ' } else { b'\t' });
        }
    }
}

const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const TOKEN68: &[u8] = b"-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn scheme_name(scheme: Scheme, case: u16) -> Vec<u8> {
    let base: Vec<u8> = match scheme {
        Scheme::Bearer => b"Bearer".to_vec(),
        Scheme::DPoP => b"DPoP".to_vec(),
        Scheme::Basic => b"Basic".to_vec(),
        Scheme::Negotiate => b"Negotiate".to_vec(),
        // Never an ASCII case variant of "bearer".
        Scheme::Other(n) => format!("X-{n}").into_bytes(),
    };
    base.iter()
        .enumerate()
        .map(|(i, b)| {
            if case >> (i % 16) & 1 == 1 {
                b.to_ascii_lowercase()
            } else {
                b.to_ascii_uppercase()
            }
        })
        .collect()
}

fn param_name(name: Name) -> Vec<u8> {
    match name {
        Name::Error => b"error".to_vec(),
        Name::ErrorDescription => b"error_description".to_vec(),
        Name::Realm => b"realm".to_vec(),
        Name::Scope => b"scope".to_vec(),
        Name::Other(n) => format!("p{n}").into_bytes(),
    }
}

/// A value as it goes on the wire: a quoted string (escaping `"` and `\`,
/// dropping the bytes a field value cannot hold), or a token (tchar only,
/// never empty).
fn render_value(value: &[u8], quoted: bool) -> (Vec<u8>, Vec<u8>) {
    if quoted {
        let kept: Vec<u8> = value
            .iter()
            .copied()
            .filter(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
            .collect();
        let mut wire = vec![b'"'];
        for &b in &kept {
            if b == b'"' || b == b'\\' {
                wire.push(b'\\');
            }
            wire.push(b);
        }
        wire.push(b'"');
        (wire, kept)
    } else {
        let mut kept: Vec<u8> = value
            .iter()
            .map(|b| TCHAR[usize::from(*b) % TCHAR.len()])
            .collect();
        if kept.is_empty() {
            kept.push(b'x');
        }
        (kept.clone(), kept)
    }
}

fuzz_target!(|input: Input| {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    // The error of the first Bearer challenge: None if there is no Bearer
    // challenge, Some(None) if it has no `error`.
    let mut expected: Option<Option<Vec<u8>>> = None;
    for line in &input.lines {
        let mut out = Vec::new();
        for (i, challenge) in line.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend(scheme_name(challenge.scheme, challenge.case));
            let first_bearer = challenge.scheme == Scheme::Bearer && expected.is_none();
            let mut error = None;
            match &challenge.body {
                Body::None => {}
                Body::Token68 { chars, padding } => {
                    out.push(b' ');
                    out.push(b'a');
                    out.extend(chars.iter().map(|b| TOKEN68[usize::from(*b) % TOKEN68.len()]));
                    out.extend(std::iter::repeat_n(b'=', usize::from(padding % 3)));
                }
                Body::Params(params) => {
                    for (j, param) in params.iter().enumerate() {
                        out.push(if j == 0 { b' ' } else { b',' });
                        if j > 0 {
                            param.comma.render(&mut out);
                        }
                        let name = param_name(param.name);
                        out.extend(&name);
                        param.before.render(&mut out);
                        out.push(b'=');
                        param.after.render(&mut out);
                        let (wire, value) = render_value(&param.value, param.quoted);
                        out.extend(wire);
                        if param.name == Name::Error && error.is_none() {
                            error = Some(value);
                        }
                    }
                }
            }
            if first_bearer {
                expected = Some(error);
            }
        }
        lines.push(out);
    }
    let values: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let found = tower_alf::fuzzing::challenge_error(&values, "bearer");
    let expected = expected.map(|e| e.map(|v| String::from_utf8_lossy(&v).into_owned()));
    assert_eq!(found, expected, "{:?}", lines.iter().map(|l| String::from_utf8_lossy(l)).collect::<Vec<_>>());

    let _ = tower_alf::fuzzing::challenge_error(&[&input.raw], "dpop");
    let _ = tower_alf::fuzzing::bearer_error(&input.raw);
});
