//! The states an issue, a delivery and a schedule slot move through. Each is stored in the
//! database under the name [`as_str`](IssueStatus::as_str) gives; the store maps them (and
//! no other module spells those names).
//!
//! Pure: no I/O, no clock.

use std::fmt;

use serde::Serialize;

/// A stored state name that is not one of its type's known names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownState {
    /// What kind of state it was meant to be (`issue status`, `delivery status` ...).
    pub kind: &'static str,
    /// The name found.
    pub value: String,
}

/// Defines a state enum with its stored names, `as_str`, `parse`, `Display` and `ALL`.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every state, in order.
            pub const ALL: &'static [$name] = &[$(Self::$variant,)+];

            /// The name stored in the database and shown to operators.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Parses a stored name.
            ///
            /// # Errors
            /// [`UnknownState`] for any other name.
            pub fn parse(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownState { kind: $kind, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

states! {
    /// Where an issue stands.
    IssueStatus, "issue status" {
        /// Composed and frozen, waiting for its slot (review window).
        Frozen => "frozen",
        /// Stopped by an editor; goes nowhere until released.
        Held => "held",
        /// Going out: its ledger has rows to deliver.
        Sending => "sending",
        /// Every row of its ledger has an outcome.
        Sent => "sent",
        /// Dropped before anything was sent.
        Cancelled => "cancelled",
    }
}

impl IssueStatus {
    /// Whether the issue went out (or is going out), so the archive may show it.
    pub fn is_published(self) -> bool {
        matches!(self, Self::Sending | Self::Sent)
    }
}

states! {
    /// Where one recipient's copy of an issue stands (a row of the ledger).
    DeliveryStatus, "delivery status" {
        /// Not yet attempted, or waiting for a retry.
        Pending => "pending",
        /// Claimed by a worker: in flight, or ambiguous after a crash.
        Sending => "sending",
        /// The server accepted it. Final.
        Sent => "sent",
        /// A permanent failure.
        Failed => "failed",
        /// The mailbox does not exist; the subscriber is marked bounced.
        Bounced => "bounced",
        /// The subscriber left before their copy went out.
        Skipped => "skipped",
    }
}

states! {
    /// What happened to a schedule slot.
    SlotOutcome, "slot outcome" {
        /// Taken by a daemon: its issue is being made or sent.
        Claimed => "claimed",
        /// Its issue went out in full.
        Sent => "sent",
        /// Nothing was sent for it on purpose.
        Skipped => "skipped",
        /// It passed while no daemon ran, beyond the catch-up window.
        Missed => "missed",
        /// Every term was sent and `on_exhausted = "stop"`.
        Exhausted => "exhausted",
        /// Its issue could not be made.
        Failed => "failed",
    }
}

states! {
    /// A service email the mail queue sends one subscriber (not an issue).
    ServiceMail, "service mail" {
        /// The double opt-in confirmation link.
        Confirmation => "confirmation",
        /// The welcome email, after the confirmation.
        Welcome => "welcome",
    }
}

states! {
    /// How a queued service email ended.
    QueueOutcome, "queue outcome" {
        /// The SMTP server accepted it.
        Sent => "sent",
        /// It was written to the end but no reply came: perhaps sent; never repeated.
        Ambiguous => "ambiguous",
        /// Refused for good (5xx), or still failing a day after it was queued.
        Failed => "failed",
        /// No longer due: the subscriber left, bounced, was removed, or (a confirmation) is
        /// confirmed already.
        Dropped => "dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_stored_name() {
        for s in IssueStatus::ALL {
            assert_eq!(IssueStatus::parse(s.as_str()), Ok(*s));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Ok(*s));
        }
        for s in SlotOutcome::ALL {
            assert_eq!(SlotOutcome::parse(s.as_str()), Ok(*s));
        }
        for s in ServiceMail::ALL {
            assert_eq!(ServiceMail::parse(s.as_str()), Ok(*s));
        }
        for s in QueueOutcome::ALL {
            assert_eq!(QueueOutcome::parse(s.as_str()), Ok(*s));
        }
        assert_eq!(
            DeliveryStatus::parse("delivered").unwrap_err().to_string(),
            "unknown delivery status `delivered`"
        );
    }
}
