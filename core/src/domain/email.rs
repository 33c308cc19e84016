//! Email addresses, parsed once at the edge.
//!
//! Pure: no I/O. After parsing, no function in Herald takes an address as `&str`.

use std::fmt;

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("the address is empty")]
    Empty,
    #[error("the address is {0} characters long; at most 254 are allowed (RFC 5321)")]
    TooLong(usize),
    #[error("the address contains a control character or white space")]
    ControlOrSpace,
    #[error("the address has no `@`")]
    NoAt,
    #[error("the part before `@` is empty")]
    EmptyLocal,
    #[error("the part before `@` is {0} characters long; at most 64 are allowed (RFC 5321)")]
    LocalTooLong(usize),
    #[error("the part before `@` contains `{0}`, which is not allowed")]
    LocalCharacter(char),
    #[error("the part before `@` starts or ends with a dot, or has two dots in a row")]
    LocalDots,
    #[error("the domain `{0}` is not a valid domain name")]
    Domain(String),
    #[error("the domain `{0}` has no dot; a public mail domain is needed")]
    DomainNotQualified(String),
    #[error("the domain `{0}` is an IP address; a mail domain name is needed")]
    IpLiteral(String),
    #[error("the address contains the invisible character U+{:04X}", *.0 as u32)]
    Invisible(char),
}

/// A syntactically valid email address (dot-atom local part, internationalised domains allowed).
///
/// The domain is stored in lower case; the local part keeps its case, as RFC 5321 requires,
/// while [`EmailAddress::key`] gives the case-insensitive identity used for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    address: String,
    at: usize,
}

impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.address)
    }
}

impl EmailAddress {
    /// Parses and normalises an address (surrounding white space is trimmed).
    ///
    /// # Errors
    /// Returns [`InvalidEmail`] naming the first rule the input breaks.
    ///
    /// ```
    /// use herald_core::domain::EmailAddress;
    /// let a = EmailAddress::parse(" Ada@Example.COM ").unwrap();
    /// assert_eq!(a.as_str(), "Ada@example.com");
    /// assert_eq!(a.key(), "ada@example.com");
    /// assert!(EmailAddress::parse("eve@example.com\r\nBcc: x@evil.test").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let input = input.trim();
        if input.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidEmail::ControlOrSpace);
        }
        // An invisible character would make two spellings of one mailbox look the same
        // (IDNA would even drop some of them silently): refused, not removed.
        if let Some(c) = input.chars().find(|c| is_default_ignorable(*c)) {
            return Err(InvalidEmail::Invisible(c));
        }
        let at = input.rfind('@').ok_or(InvalidEmail::NoAt)?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        validate_local(local)?;
        let domain = validate_domain(domain)?;
        let address = format!("{local}@{domain}");
        // RFC 5321 limits the path to 256 octets including the angle brackets.
        if address.len() > 254 {
            return Err(InvalidEmail::TooLong(address.len()));
        }
        Ok(Self { address, at })
    }

    /// The address as written, with the domain in lower case.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain, in lower case, in its IDNA (punycode) form: `münchen.de` is stored and
    /// compared as `xn--mnchen-3ya.de`, so both spellings are one subscriber.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// The case-insensitive identity of the address, used for uniqueness.
    pub fn key(&self) -> String {
        self.address.to_lowercase()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = InvalidEmail;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn validate_local(local: &str) -> Result<(), InvalidEmail> {
    if local.is_empty() {
        return Err(InvalidEmail::EmptyLocal);
    }
    if local.len() > 64 {
        return Err(InvalidEmail::LocalTooLong(local.len()));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(InvalidEmail::LocalDots);
    }
    // RFC 5322 atext, plus non-ASCII characters (RFC 6531).
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
    if let Some(bad) = local
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || SPECIALS.contains(c) || !c.is_ascii()))
    {
        return Err(InvalidEmail::LocalCharacter(bad));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<String, InvalidEmail> {
    let bad = || InvalidEmail::Domain(domain.to_owned());
    if domain.is_empty() || domain.len() > 253 {
        return Err(bad());
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| bad())?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(bad());
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(bad());
        }
    }
    if !ascii.contains('.') {
        return Err(InvalidEmail::DomainNotQualified(domain.to_owned()));
    }
    if ascii
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(InvalidEmail::IpLiteral(domain.to_owned()));
    }
    Ok(ascii)
}

/// Unicode's default-ignorable code points (soft hyphen, zero-width spaces and joiners,
/// bidirectional controls, variation selectors, the byte-order mark ...): characters that
/// render as nothing.
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// An address with an optional display name, as in `AI Weekly <weekly@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, free of control characters; may be empty.
    pub name: String,
    /// The address.
    pub email: EmailAddress,
}

impl Mailbox {
    /// Parses `Name <address>` or a bare `address`.
    ///
    /// # Errors
    /// [`InvalidEmail`] when the address part is not valid or the angle brackets do not match.
    ///
    /// ```
    /// use herald_core::domain::Mailbox;
    /// let m = Mailbox::parse("AI Weekly <weekly@example.com>").unwrap();
    /// assert_eq!(m.name, "AI Weekly");
    /// assert_eq!(m.email.as_str(), "weekly@example.com");
    /// ```
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let input = input.trim();
        match (input.rfind('<'), input.ends_with('>')) {
            (Some(open), true) => {
                let name = input[..open].trim().trim_matches('"').trim();
                if name.chars().any(char::is_control) {
                    return Err(InvalidEmail::ControlOrSpace);
                }
                Ok(Self {
                    name: name.to_owned(),
                    email: EmailAddress::parse(&input[open + 1..input.len() - 1])?,
                })
            }
            (None, false) => Ok(Self {
                name: String::new(),
                email: EmailAddress::parse(input)?,
            }),
            _ => Err(InvalidEmail::LocalCharacter('<')),
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}", self.email)
        } else {
            write!(f, "{} <{}>", self.name, self.email)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_internationalised_addresses() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.org",
            "o'brien@example.ie",
            "user@bücher.example",
            "jörg@example.de",
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn rejects_each_broken_rule_with_its_reason() {
        let cases = [
            ("", InvalidEmail::Empty),
            ("no-at.example.com", InvalidEmail::NoAt),
            ("@example.com", InvalidEmail::EmptyLocal),
            ("a b@example.com", InvalidEmail::ControlOrSpace),
            (
                "a@example.com\r\nBcc: x@evil.test",
                InvalidEmail::ControlOrSpace,
            ),
            (".a@example.com", InvalidEmail::LocalDots),
            ("a..b@example.com", InvalidEmail::LocalDots),
            ("a<b@example.com", InvalidEmail::LocalCharacter('<')),
            (
                "a@localhost",
                InvalidEmail::DomainNotQualified("localhost".into()),
            ),
            (
                "a@-bad.example",
                InvalidEmail::Domain("-bad.example".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(EmailAddress::parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn enforces_rfc_5321_lengths() {
        let local = "a".repeat(65);
        assert_eq!(
            EmailAddress::parse(&format!("{local}@example.com")),
            Err(InvalidEmail::LocalTooLong(65))
        );
        let label = "b".repeat(60);
        let local = "a".repeat(64);
        let long = format!("{local}@{label}.{label}.{label}.{label}.com");
        assert!(matches!(
            EmailAddress::parse(&long),
            Err(InvalidEmail::TooLong(_))
        ));
    }

    #[test]
    fn key_is_case_insensitive() {
        let a = EmailAddress::parse("Ada@EXAMPLE.com").unwrap();
        let b = EmailAddress::parse("ada@example.COM").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn one_mailbox_is_one_address_whatever_its_spelling() {
        let unicode = EmailAddress::parse("user@M\u{fc}nchen.de").unwrap();
        let puny = EmailAddress::parse("user@xn--mnchen-3ya.de").unwrap();
        assert_eq!(unicode.key(), puny.key());
        assert_eq!(unicode.as_str(), "user@xn--mnchen-3ya.de");
        for invisible in [
            '\u{200B}', '\u{00AD}', '\u{2060}', '\u{FEFF}', '\u{034F}', '\u{180B}',
        ] {
            for address in [
                format!("us{invisible}er@example.com"),
                format!("user@exa{invisible}mple.com"),
            ] {
                assert_eq!(
                    EmailAddress::parse(&address),
                    Err(InvalidEmail::Invisible(invisible)),
                    "{address:?}"
                );
            }
        }
        assert!(matches!(
            EmailAddress::parse("user@192.168.0.1"),
            Err(InvalidEmail::IpLiteral(_))
        ));
        assert!(EmailAddress::parse("user@[192.168.0.1]").is_err());
        assert!(matches!(
            EmailAddress::parse("user@localhost"),
            Err(InvalidEmail::DomainNotQualified(_))
        ));
    }
}
