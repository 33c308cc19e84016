//! Signed tokens for unsubscribe and confirmation links.
//!
//! Pure: no I/O, no clock (the issue time is a parameter).
//!
//! A token is `base64url(purpose ‖ subscriber id ‖ issued-at ‖ HMAC-SHA256(...)[..16])`: 33
//! bytes, 44 URL-safe characters. The purpose is part of the signed data, so an unsubscribe
//! token can never be used as a confirmation token. Verification recomputes the MAC and
//! compares it in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PAYLOAD: usize = 17;
const TAG: usize = 16;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Leave the newsletter.
    Unsubscribe,
    /// Confirm a subscription (double opt-in).
    Confirm,
    /// An editor holds an issue in review.
    Hold,
    /// The envelope sender of one delivery (VERP): a bounce comes back to an address that
    /// names the ledger row. Its subject is the delivery id.
    Bounce,
    /// The `mailto:` unsubscribe address of one subscriber. Its subject is the subscriber id.
    MailUnsubscribe,
}

impl Purpose {
    fn byte(self) -> u8 {
        match self {
            Self::Unsubscribe => 1,
            Self::Confirm => 2,
            Self::Hold => 3,
            Self::Bounce => 4,
            Self::MailUnsubscribe => 5,
        }
    }
}

/// What a verified token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The subscriber (or, for [`Purpose::Hold`], the issue number).
    pub subject: i64,
    /// Seconds since the Unix epoch when the token was made.
    pub issued_at: i64,
}

/// The key that signs tokens (from `HERALD_SECRET`).
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Wraps key material. Any length works; use at least 32 random bytes.
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self(key.as_ref().to_vec())
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(b"herald-token-v1");
        mac.update(payload);
        mac
    }

    /// Signs a token.
    ///
    /// ```
    /// use herald_core::domain::{Purpose, SigningKey};
    /// let key = SigningKey::new("k");
    /// let token = key.sign(Purpose::Unsubscribe, 42, 0);
    /// assert_eq!(token.len(), 44);
    /// assert_eq!(key.verify(Purpose::Unsubscribe, &token).unwrap().subject, 42);
    /// assert!(key.verify(Purpose::Confirm, &token).is_none());
    /// ```
    pub fn sign(&self, purpose: Purpose, subject: i64, issued_at: i64) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD + TAG);
        bytes.push(purpose.byte());
        bytes.extend_from_slice(&subject.to_be_bytes());
        bytes.extend_from_slice(&issued_at.to_be_bytes());
        let tag = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Verifies a token for `purpose`; `None` for anything forged, tampered, truncated or
    /// made for another purpose.
    pub fn verify(&self, purpose: Purpose, token: &str) -> Option<Claims> {
        if token.len() != 44 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != PAYLOAD + TAG || bytes[0] != purpose.byte() {
            return None;
        }
        let (payload, tag) = bytes.split_at(PAYLOAD);
        self.mac(payload).verify_truncated_left(tag).ok()?;
        Some(Claims {
            subject: i64::from_be_bytes(payload[1..9].try_into().ok()?),
            issued_at: i64::from_be_bytes(payload[9..17].try_into().ok()?),
        })
    }
}

/// Bytes of the MAC kept in an address token.
const ADDRESS_TAG: usize = 11;
/// Length of an address token: base32 of purpose, subject and tag (20 bytes).
pub const ADDRESS_TOKEN_LEN: usize = 32;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl SigningKey {
    /// Signs a token for an email address's local part (`bounces+TOKEN@...`): lowercase
    /// base32 of purpose, subject and an 88-bit MAC, 32 characters, so that it survives
    /// servers that change the case of local parts and fits the 64-character limit with its
    /// prefix. Opaque to the reader, and no one without the key can make or change one.
    ///
    /// ```
    /// use herald_core::domain::{Purpose, SigningKey};
    /// let key = SigningKey::new("k");
    /// let token = key.sign_address(Purpose::Bounce, 42);
    /// assert_eq!(token.len(), 32);
    /// assert_eq!(key.verify_address(Purpose::Bounce, &token.to_uppercase()), Some(42));
    /// assert_eq!(key.verify_address(Purpose::MailUnsubscribe, &token), None);
    /// ```
    pub fn sign_address(&self, purpose: Purpose, subject: i64) -> String {
        let mut payload = [0u8; 9];
        payload[0] = purpose.byte();
        payload[1..].copy_from_slice(&subject.to_be_bytes());
        let tag = self.mac(&payload).finalize().into_bytes();
        let tag = &tag[..ADDRESS_TAG];
        // The subject is hidden under a pad derived from the tag (a synthetic-IV
        // construction): the token shows nothing of it, and the tag still covers it.
        let pad = self.pad(tag);
        let mut bytes = Vec::with_capacity(9 + ADDRESS_TAG);
        bytes.push(payload[0]);
        bytes.extend(payload[1..].iter().zip(pad).map(|(b, p)| b ^ p));
        bytes.extend_from_slice(tag);
        base32(&bytes)
    }

    fn pad(&self, tag: &[u8]) -> [u8; 8] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(b"herald-address-pad-v1");
        mac.update(tag);
        let out = mac.finalize().into_bytes();
        out[..8].try_into().expect("8 of 32 bytes")
    }

    /// Verifies an address token for `purpose` (any letter case); its subject, or `None`.
    pub fn verify_address(&self, purpose: Purpose, token: &str) -> Option<i64> {
        if token.len() != ADDRESS_TOKEN_LEN {
            return None;
        }
        let bytes = unbase32(&token.to_ascii_lowercase())?;
        if bytes.len() != 9 + ADDRESS_TAG || bytes[0] != purpose.byte() {
            return None;
        }
        let (hidden, tag) = bytes.split_at(9);
        let mut payload = [0u8; 9];
        payload[0] = hidden[0];
        for (i, p) in self.pad(tag).iter().enumerate() {
            payload[i + 1] = hidden[i + 1] ^ p;
        }
        self.mac(&payload).verify_truncated_left(tag).ok()?;
        Some(i64::from_be_bytes(payload[1..9].try_into().ok()?))
    }
}

/// RFC 4648 base32, lowercase, without padding (20 bytes in, 32 characters out).
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = BASE32.iter().position(|&x| x == c)? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_tokens_round_trip_and_refuse_tampering() {
        let key = SigningKey::new("secret");
        for subject in [0, 1, 42, i64::MAX, -5] {
            let token = key.sign_address(Purpose::Bounce, subject);
            assert_eq!(token.len(), ADDRESS_TOKEN_LEN);
            assert!(token.bytes().all(|b| BASE32.contains(&b)), "{token}");
            assert_eq!(key.verify_address(Purpose::Bounce, &token), Some(subject));
            // Any changed character breaks it.
            for i in 0..token.len() {
                let mut t = token.clone().into_bytes();
                t[i] = if t[i] == b'a' { b'b' } else { b'a' };
                let t = String::from_utf8(t).unwrap();
                assert_eq!(key.verify_address(Purpose::Bounce, &t), None, "{t}");
            }
        }
        let token = key.sign_address(Purpose::MailUnsubscribe, 7);
        assert_eq!(key.verify_address(Purpose::Bounce, &token), None);
        // Opaque: consecutive subjects share nothing visible but the purpose.
        let (a, b) = (
            key.sign_address(Purpose::Bounce, 1000),
            key.sign_address(Purpose::Bounce, 1001),
        );
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert!(common < 4, "{a} {b}");
        assert_eq!(
            SigningKey::new("other").verify_address(Purpose::MailUnsubscribe, &token),
            None
        );
        assert_eq!(key.verify_address(Purpose::MailUnsubscribe, "short"), None);
    }

    #[test]
    fn tampering_anywhere_breaks_the_token() {
        let key = SigningKey::new("secret");
        let token = key.sign(Purpose::Unsubscribe, 7, 1_700_000_000);
        assert_eq!(
            key.verify(Purpose::Unsubscribe, &token),
            Some(Claims {
                subject: 7,
                issued_at: 1_700_000_000
            })
        );
        for i in 0..token.len() {
            let mut chars: Vec<char> = token.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let tampered: String = chars.into_iter().collect();
            if tampered != token {
                assert!(
                    key.verify(Purpose::Unsubscribe, &tampered).is_none(),
                    "position {i}"
                );
            }
        }
        assert!(
            SigningKey::new("other")
                .verify(Purpose::Unsubscribe, &token)
                .is_none()
        );
        assert!(key.verify(Purpose::Unsubscribe, &token[..40]).is_none());
        assert!(key.verify(Purpose::Unsubscribe, "").is_none());
    }
}
