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
}

impl Purpose {
    fn byte(self) -> u8 {
        match self {
            Self::Unsubscribe => 1,
            Self::Confirm => 2,
            Self::Hold => 3,
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

#[cfg(test)]
mod tests {
    use super::*;

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
