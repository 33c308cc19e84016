//! Pure domain types, parsed at the edge: after parsing, no function takes an email address
//! or a slug as a plain string.
//!
//! Pure: no I/O, no clock.

mod email;
mod news;
mod secret;
mod slug;
mod status;
mod subscriber;
mod term;
mod token;

pub use email::{EmailAddress, InvalidEmail, Mailbox};
pub use news::NewsLink;
pub use secret::Secret;
pub use slug::{InvalidSlug, Slug};
pub use status::{
    DeliveryStatus, IssueStatus, QueueOutcome, ServiceMail, SlotOutcome, UnknownState,
};
pub use subscriber::{SubscriberName, SubscriberStatus, UnknownStatus};
pub use term::{Category, LinkPolicy, Source, Term};
pub use token::{ADDRESS_TOKEN_LEN, Claims, Purpose, SigningKey};
