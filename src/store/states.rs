//! How the domain's state enums are stored: as their names, in TEXT columns whose CHECK
//! constraints list the same names. This is the one place where Rust and SQL meet on them:
//! bind `Text(state)`, read `Text<State>`.

use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type, encode::IsNull};

use crate::domain::{DeliveryStatus, IssueStatus, SlotOutcome, SubscriberStatus};

/// A state enum with a stored name.
pub(crate) trait Named: Sized + Copy {
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Result<Self, BoxDynError>;
}

macro_rules! named {
    ($($state:ty),+) => {$(
        impl Named for $state {
            fn name(self) -> &'static str {
                self.as_str()
            }
            fn from_name(name: &str) -> Result<Self, BoxDynError> {
                Ok(<$state>::parse(name)?)
            }
        }
    )+};
}

named!(IssueStatus, DeliveryStatus, SlotOutcome, SubscriberStatus);

/// A state as the database sees it: its name as TEXT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Text<T>(pub T);

impl<T: Named> Type<Sqlite> for Text<T> {
    fn type_info() -> SqliteTypeInfo {
        <&str as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <&str as Type<Sqlite>>::compatible(ty)
    }
}

impl<T: Named> Encode<'_, Sqlite> for Text<T> {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Sqlite>>::encode(self.0.name(), buf)
    }
}

impl<'r, T: Named> Decode<'r, Sqlite> for Text<T> {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let name = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Text(T::from_name(name)?))
    }
}
