//! Subscribers: status and display name.
//!
//! Pure: no I/O.

use std::fmt;

use serde::Serialize;

/// Where a subscriber stands. Only `confirmed` subscribers receive issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberStatus {
    /// Signed up, has not yet confirmed (double opt-in).
    Pending,
    /// Receives issues.
    Confirmed,
    /// Left; never re-activated by an import.
    Unsubscribed,
    /// The address was rejected as unknown by a mail server; never re-activated by an import.
    Bounced,
}

/// A status name that is not one of the four known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}` (expected pending, confirmed, unsubscribed or bounced)")]
pub struct UnknownStatus(pub String);

impl SubscriberStatus {
    /// Every status, in display order.
    pub const ALL: [SubscriberStatus; 4] = [
        Self::Pending,
        Self::Confirmed,
        Self::Unsubscribed,
        Self::Bounced,
    ];

    /// The name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
        }
    }

    /// Parses a status name, ignoring case and surrounding white space.
    ///
    /// # Errors
    /// [`UnknownStatus`] for any other word.
    pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == lower)
            .ok_or_else(|| UnknownStatus(s.trim().to_owned()))
    }

    /// Unsubscribed and bounced addresses are suppressed: nothing may re-activate them
    /// except the subscriber's own confirmed request.
    pub fn is_suppressed(self) -> bool {
        matches!(self, Self::Unsubscribed | Self::Bounced)
    }
}

impl fmt::Display for SubscriberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for SubscriberStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A subscriber's display name, safe to put into a mail header: no control characters
/// (so no CR/LF), white space collapsed, at most [`SubscriberName::MAX_CHARS`] characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SubscriberName(String);

impl SubscriberName {
    /// Longest name kept; longer names are cut at a character boundary.
    pub const MAX_CHARS: usize = 100;

    /// Cleans a name. Never fails: control characters become spaces, runs of white space
    /// collapse to one, and the result is trimmed and cut to [`Self::MAX_CHARS`].
    ///
    /// ```
    /// use herald_core::domain::SubscriberName;
    /// assert_eq!(SubscriberName::clean("Eve\r\nBcc: x@evil.test").as_str(), "Eve Bcc: x@evil.test");
    /// ```
    pub fn clean(input: &str) -> Self {
        let spaced: String = input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let collapsed = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
        Self(collapsed.chars().take(Self::MAX_CHARS).collect())
    }

    /// The cleaned name; empty when none was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether no name was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SubscriberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_control_characters_and_extra_space() {
        assert_eq!(
            SubscriberName::clean("  Ada \t Lovelace\u{7} ").as_str(),
            "Ada Lovelace"
        );
        assert_eq!(SubscriberName::clean("\u{0}\r\n").as_str(), "");
        assert_eq!(
            SubscriberName::clean(&"x".repeat(500))
                .as_str()
                .chars()
                .count(),
            SubscriberName::MAX_CHARS
        );
    }

    #[test]
    fn statuses_round_trip_and_reject_unknown_words() {
        for status in SubscriberStatus::ALL {
            assert_eq!(SubscriberStatus::parse(status.as_str()), Ok(status));
        }
        assert_eq!(
            SubscriberStatus::parse(" Confirmed "),
            Ok(SubscriberStatus::Confirmed)
        );
        assert!(SubscriberStatus::parse("active").is_err());
    }
}
