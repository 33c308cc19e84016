//! DKIM signatures (RFC 6376) over a message's final bytes: rsa-sha256, relaxed/relaxed,
//! with ring's RSA (the key is read once, from PKCS#1 PEM, when the configuration loads).
//!
//! Pure: bytes in, bytes out (no clock, no file: the key's text is given by the caller). Herald signs the message
//! exactly as it goes out, after lettre has written it, so every header that shapes how the
//! message is read can be signed, Content-Type included. The headers a reader or a filter
//! trusts are also over-signed: listed once more than they occur, so a header of that name
//! added in transit (a second Subject, a Reply-To) breaks the signature instead of riding on
//! it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The headers signed when present, in this order.
pub const SIGNED_HEADERS: [&str; 13] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Archive",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
];

/// The headers listed once more than they occur (RFC 6376 8.15), present or not.
pub const OVERSIGNED_HEADERS: [&str; 4] = ["From", "To", "Subject", "Reply-To"];

/// Why a key cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Signs messages for one domain and selector with one RSA key.
pub struct DkimSigner {
    domain: String,
    selector: String,
    key: ring::rsa::KeyPair,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DkimSigner {{ domain: {:?}, selector: {:?} }}",
            self.domain, self.selector
        )
    }
}

impl DkimSigner {
    /// A signer from an RSA private key in PKCS#1 PEM form
    /// (`-----BEGIN RSA PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`KeyError`] when the PEM is not such a key.
    pub fn new(domain: &str, selector: &str, private_key_pem: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| {
            KeyError(format!(
                "the private key is not an RSA key in PKCS#1 PEM form ({why})"
            ))
        };
        let body: String = private_key_pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN RSA PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END RSA PRIVATE KEY-----")
            .collect();
        if body.is_empty() {
            return Err(bad("no -----BEGIN RSA PRIVATE KEY----- block"));
        }
        let der = STANDARD.decode(body).map_err(|e| bad(&e.to_string()))?;
        let key = ring::rsa::KeyPair::from_der(&der).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            key,
        })
    }

    /// The message with a `DKIM-Signature` header in front. The signature has no `t=` (it
    /// is optional): a message dated at a future slot (a preview, a review copy) would carry
    /// a signing time in the future, which verifiers refuse, and the same message signs to
    /// the same bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let split = find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
        let (head, body) = message.split_at(split);
        let body = body.strip_prefix(b"\r\n").unwrap_or(body);
        let fields = header_fields(head);

        let mut names = Vec::new();
        for name in SIGNED_HEADERS {
            let present = fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count();
            let extra = usize::from(OVERSIGNED_HEADERS.contains(&name));
            for _ in 0..present + extra {
                names.push(name.to_ascii_lowercase());
            }
        }
        let body_hash = STANDARD.encode(Sha256::digest(relaxed_body(body)));
        // The header list, folded after a colon so that no line passes 78 characters.
        let mut h = String::new();
        let mut line = "\th=".len();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                h.push(':');
                line += 1;
                if line + name.len() > 76 {
                    h.push_str("\r\n\t");
                    line = 1;
                }
            }
            h.push_str(name);
            line += name.len();
        }
        let value = format!(
            " v=1; a=rsa-sha256; c=relaxed/relaxed; d={}; s={};\r\n\th={};\r\n\tbh={body_hash};\r\n\tb=",
            self.domain, self.selector, h
        );

        let mut hashed = Vec::new();
        let mut used: Vec<(String, usize)> = Vec::new();
        for name in &names {
            let taken = match used.iter_mut().find(|(n, _)| n == name) {
                Some((_, k)) => k,
                None => {
                    used.push((name.clone(), 0));
                    &mut used.last_mut().expect("just pushed").1
                }
            };
            // Instances are taken from the bottom up (RFC 6376 5.4.2).
            let instance = fields
                .iter()
                .rev()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .nth(*taken);
            *taken += 1;
            if let Some((n, v)) = instance {
                hashed.extend_from_slice(relaxed_header(n, v).as_bytes());
            }
        }
        let own = relaxed_header("DKIM-Signature", &value);
        hashed.extend_from_slice(own.trim_end_matches("\r\n").as_bytes());

        let rng = ring::rand::SystemRandom::new();
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                &hashed,
                &mut signature,
            )
            .expect("an RSA key signs a SHA-256 digest");
        let b = STANDARD.encode(signature);
        let folded = b
            .as_bytes()
            .chunks(72)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect::<Vec<_>>()
            .join("\r\n\t");

        let mut out = Vec::with_capacity(message.len() + 600);
        out.extend_from_slice(b"DKIM-Signature:");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(folded.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The header fields of a header block: (name, raw value with its folding).
fn header_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    fields
}

/// Relaxed header canonicalisation (RFC 6376 3.4.2): the name in lower case, the value
/// unfolded, runs of whitespace one space, no whitespace at either end.
fn relaxed_header(name: &str, value: &str) -> String {
    let mut out = name.trim().to_ascii_lowercase();
    out.push(':');
    let mut pending_space = false;
    let mut started = false;
    for c in value.chars() {
        match c {
            '\r' | '\n' => {}
            ' ' | '\t' => pending_space = true,
            c => {
                if pending_space && started {
                    out.push(' ');
                }
                pending_space = false;
                started = true;
                out.push(c);
            }
        }
    }
    out.push_str("\r\n");
    out
}

/// Relaxed body canonicalisation (RFC 6376 3.4.4): whitespace runs in a line one space, none
/// at a line's end, no empty lines at the end, and a final CRLF unless the body is empty.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match find(rest, b"\r\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &[][..]),
        };
        let mut out = Vec::with_capacity(line.len());
        let mut space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                space = true;
            } else {
                if space {
                    out.push(b' ');
                }
                space = false;
                out.push(b);
            }
        }
        lines.push(out);
        rest = next;
    }
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalisation_follows_the_rfc_examples() {
        // RFC 6376 3.4.5.
        assert_eq!(relaxed_header("A", " X\r\n"), "a:X\r\n");
        assert_eq!(relaxed_header("B ", " Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
        assert_eq!(
            relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"),
            b" C\r\nD E\r\n".to_vec()
        );
        assert_eq!(relaxed_body(b""), b"".to_vec());
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"".to_vec());
    }

    #[test]
    fn a_key_that_is_not_pkcs1_is_refused_with_the_reason() {
        let e = DkimSigner::new("example.com", "s", "not a key").unwrap_err();
        assert!(e.to_string().contains("PKCS#1"), "{e}");
    }
}
