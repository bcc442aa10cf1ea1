//! Just enough PEM (RFC 7468) and DER (X.690) to find what a private key
//! file holds: its PEM label and body, the algorithm of a PKCS#8 key
//! (RFC 5208/5958), and the scalar, curve and public point of a SEC1
//! `ECPrivateKey` (RFC 5915). ring parses PKCS#1 and PKCS#8 RSA and Ed25519
//! keys itself; this reads only what it does not.

use base64::{engine::general_purpose::STANDARD, Engine as _};

/// `rsaEncryption`, 1.2.840.113549.1.1.1.
pub(super) const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `id-ecPublicKey`, 1.2.840.10045.2.1.
pub(super) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` (P-256), 1.2.840.10045.3.1.7.
pub(super) const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `secp384r1` (P-384), 1.3.132.0.34.
pub(super) const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// `id-Ed25519`, 1.3.101.112.
pub(super) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_1: u8 = 0xa1;

/// The first PEM block's label and its decoded body. `None` when the text
/// has no complete block or the body is not Base64 (an encrypted PKCS#1 key
/// with `Proc-Type` headers is not).
pub(super) fn pem(text: &str) -> Option<(&str, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + "-----".len()..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

/// A DER reader over one level of a structure.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(der: &'a [u8]) -> Self {
        Self(der)
    }

    /// The next element's tag and contents.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, contents))
    }

    /// The next element's contents when it has `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }

    /// The next element's contents when it has `tag`; nothing consumed
    /// otherwise.
    fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        if self.0.first() == Some(&tag) {
            self.next().map(|(_, contents)| contents)
        } else {
            None
        }
    }
}

/// What a PKCS#8 `PrivateKeyInfo` (v1 or v2) holds.
pub(super) struct Pkcs8<'a> {
    /// The algorithm OID.
    pub(super) algorithm: &'a [u8],
    /// Its parameters when they are an OID (an EC key's curve).
    pub(super) params: Option<&'a [u8]>,
    /// The private key octets.
    pub(super) key: &'a [u8],
}

/// What a SEC1 `ECPrivateKey` holds.
pub(super) struct Sec1<'a> {
    /// The scalar.
    pub(super) d: &'a [u8],
    /// The curve OID, when given.
    pub(super) curve: Option<&'a [u8]>,
    /// The public point's octets, when given.
    pub(super) public: Option<&'a [u8]>,
}

/// Reads a PKCS#8 `PrivateKeyInfo`.
pub(super) fn pkcs8(der: &[u8]) -> Option<Pkcs8<'_>> {
    let mut info = Reader::new(Reader::new(der).expect(SEQUENCE)?);
    info.expect(INTEGER)?;
    let mut algorithm = Reader::new(info.expect(SEQUENCE)?);
    let oid = algorithm.expect(OID)?;
    let params = algorithm.optional(OID);
    let key = info.expect(OCTET_STRING)?;
    Some(Pkcs8 {
        algorithm: oid,
        params,
        key,
    })
}

/// Reads a SEC1 `ECPrivateKey`.
pub(super) fn sec1(der: &[u8]) -> Option<Sec1<'_>> {
    let mut key = Reader::new(Reader::new(der).expect(SEQUENCE)?);
    if key.expect(INTEGER)? != [1] {
        return None;
    }
    let d = key.expect(OCTET_STRING)?;
    let curve = match key.optional(CONTEXT_0) {
        Some(params) => Some(Reader::new(params).expect(OID)?),
        None => None,
    };
    let public = match key.optional(CONTEXT_1) {
        Some(public) => match Reader::new(public).expect(BIT_STRING)? {
            // No unused bits, then the point.
            [0, point @ ..] => Some(point),
            _ => return None,
        },
        None => None,
    };
    Some(Sec1 { d, curve, public })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_overlong_der_is_refused_without_a_panic() {
        let (_, der) = pem(include_str!("../../tests/fixtures/p256_sec1.pem")).unwrap();
        assert!(sec1(&der).is_some());
        for len in 0..der.len() {
            assert!(sec1(&der[..len]).is_none(), "{len}");
            assert!(pkcs8(&der[..len]).is_none(), "{len}");
        }
        // A length of more than four octets, a length past the end.
        assert!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).next().is_none());
        assert!(Reader::new(&[0x30, 0x82, 0xff, 0xff, 0]).next().is_none());
    }

    #[test]
    fn pem_needs_a_whole_base64_block() {
        assert!(pem("-----BEGIN PRIVATE KEY-----\nAAAA\n").is_none());
        assert!(pem("-----BEGIN X-----\n!!!!\n-----END X-----\n").is_none());
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                         DEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(pem(encrypted).is_none());
        let (label, body) = pem("x\n-----BEGIN A B-----\r\nAAEC\r\n-----END A B-----\n").unwrap();
        assert_eq!((label, body.as_slice()), ("A B", &[0u8, 1, 2][..]));
    }
}
