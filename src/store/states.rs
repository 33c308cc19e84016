//! How the domain's parsed values are stored: as their text, in TEXT columns. States (issue,
//! delivery, slot, subscriber) whose CHECK constraints list the same names, email addresses
//! and slugs, in both databases. This is the one place where Rust and SQL meet on them: bind `Text(value)`,
//! read `Text<T>`; a stored value that no longer parses is a decode error naming its column.

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type, encode::IsNull};

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

impl<T: StoredText> Type<Sqlite> for Text<T> {
    fn type_info() -> SqliteTypeInfo {
        <&str as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <&str as Type<Sqlite>>::compatible(ty)
    }
}

impl<T: StoredText> Encode<'_, Sqlite> for Text<T> {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Sqlite>>::encode(self.0.text(), buf)
    }
}

impl<'r, T: StoredText> Decode<'r, Sqlite> for Text<T> {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Text(T::from_text(text)?))
    }
}

impl<T: StoredText> Type<Postgres> for Text<T> {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<T: StoredText> Encode<'_, Postgres> for Text<T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.0.text(), buf)
    }
}

impl<'r, T: StoredText> Decode<'r, Postgres> for Text<T> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Postgres>>::decode(value)?;
        Ok(Text(T::from_text(text)?))
    }
}
