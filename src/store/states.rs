//! How the domain's parsed values are stored: as their text, in TEXT columns. States (issue,
//! delivery, slot, subscriber) whose CHECK constraints list the same names, email addresses
//! and slugs, in both databases (one implementation for any database that stores text). This
//! is the one place where Rust and SQL meet on them: bind `Text(value)`, read `Text<T>`; a
//! stored value that no longer parses is a decode error naming its column.

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type, encode::IsNull};

use crate::domain::{
    DeliveryStatus, EmailAddress, IssueStatus, QueueOutcome, ServiceMail, SlotOutcome, Slug,
    SubscriberStatus,
};

/// A domain value with a stored text form.
pub(crate) trait StoredText: Sized {
    fn text(&self) -> &str;
    fn from_text(text: &str) -> Result<Self, BoxDynError>;
}

macro_rules! stored_text {
    ($($value:ty),+) => {$(
        impl StoredText for $value {
            fn text(&self) -> &str {
                self.as_str()
            }
            fn from_text(text: &str) -> Result<Self, BoxDynError> {
                Ok(<$value>::parse(text)?)
            }
        }
    )+};
}

stored_text!(
    IssueStatus,
    DeliveryStatus,
    SlotOutcome,
    SubscriberStatus,
    ServiceMail,
    QueueOutcome,
    EmailAddress,
    Slug
);

/// A value as the database sees it: its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Text<T>(pub T);

impl<DB: Database, T: StoredText> Type<DB> for Text<T>
where
    for<'a> &'a str: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <&str as Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <&str as Type<DB>>::compatible(ty)
    }
}

impl<DB: Database, T: StoredText> Encode<'_, DB> for Text<T>
where
    for<'a> &'a str: Encode<'a, DB>,
{
    fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<DB>>::encode(self.0.text(), buf)
    }
}

impl<'r, DB: Database, T: StoredText> Decode<'r, DB> for Text<T>
where
    &'r str: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<DB>>::decode(value)?;
        Ok(Text(T::from_text(text)?))
    }
}
