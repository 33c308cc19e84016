//! Subscriber CSV files: a header `email,name` with optional `first_name` and `status`
//! columns; and the exports of Mailchimp, Substack and Buttondown as they are.
//!
//! Pure: bytes in, rows and rejected rows out. Handles a UTF-8 byte-order mark, CRLF line
//! ends, quoted fields (with commas or line breaks inside) and the same address twice in
//! different case. Every bad row is reported with its line number and reason; good rows are
//! kept, so one bad row never loses the others.

use std::collections::HashMap;

use crate::domain::{EmailAddress, SubscriberName, SubscriberStatus};

/// One good row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRow {
    /// 1-based line where the record starts.
    pub line: u64,
    pub email: EmailAddress,
    pub name: SubscriberName,
    /// The first name to greet them by; empty when the file has none.
    pub first_name: SubscriberName,
    /// The `status` column, when the file has one and the cell is not empty.
    pub status: Option<SubscriberStatus>,
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
}

/// The rows of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberFile {
    pub rows: Vec<SubscriberRow>,
    pub rejected: Vec<RejectedRow>,
}

/// A problem with the file as a whole (its header), so that no row can be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberFileError {
    #[error(
        "line 1: the header has no `email` column (expected `email,name` and optionally `status`)"
    )]
    NoEmailColumn,
    #[error("line 1: unknown column `{0}` (expected `email`, `name` and optionally `status`)")]
    UnknownColumn(String),
    #[error("line 1: column `{0}` appears twice")]
    DuplicateColumn(String),
    #[error("line 1: the header cannot be read: {0}")]
    Header(String),
}

/// Parses a subscriber file.
///
/// # Errors
/// [`SubscriberFileError`] when the header is unusable; bad rows are returned in
/// [`SubscriberFile::rejected`] instead.
pub fn parse(bytes: &[u8]) -> Result<SubscriberFile, SubscriberFileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| SubscriberFileError::Header(e.to_string()))?
        .clone();
    let export = Export::recognise(&header);
    let mut columns: HashMap<Column, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let Some(column) = Column::named(name) else {
            // An export carries many columns Herald has no use for; a Herald file with a
            // column it does not know is more likely a typo.
            if export.is_some() {
                continue;
            }
            return Err(SubscriberFileError::UnknownColumn(
                name.to_ascii_lowercase(),
            ));
        };
        if columns.insert(column, i).is_some() {
            return Err(SubscriberFileError::DuplicateColumn(
                name.to_ascii_lowercase(),
            ));
        }
    }
    let columns = Columns {
        email: *columns
            .get(&Column::Email)
            .ok_or(SubscriberFileError::NoEmailColumn)?,
        name: columns.get(&Column::Name).copied(),
        first_name: columns.get(&Column::FirstName).copied(),
        last_name: columns.get(&Column::LastName).copied(),
        status: columns.get(&Column::Status).copied(),
        buttondown_type: columns.get(&Column::ButtondownType).copied(),
        substack_disabled: columns.get(&Column::SubstackDisabled).copied(),
        file_status: export.and_then(Export::status),
    };

    let mut file = SubscriberFile::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    // Line numbers are counted from byte offsets: csv's own line counter lags by one after a
    // CRLF line end.
    let newlines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b'\n').then_some(i))
        .collect();
    let line_at = |offset: u64| {
        let mut offset = offset as usize;
        while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
            offset += 1;
        }
        newlines.partition_point(|&n| n < offset) as u64 + 1
    };
    loop {
        let line = line_at(reader.position().byte());
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| line_at(p.byte()));
                file.rejected.push(RejectedRow {
                    line,
                    reason: format!("cannot be read as CSV: {e}"),
                });
                continue;
            }
        }
        if record.iter().all(<[u8]>::is_empty) {
            continue; // a blank line
        }
        match parse_row(&record, line, &columns) {
            Ok(row) => match seen.get(&row.email.key()) {
                Some(first) => file.rejected.push(RejectedRow {
                    line,
                    reason: format!(
                        "`{}` duplicates line {first} (addresses ignore case)",
                        row.email
                    ),
                }),
                None => {
                    seen.insert(row.email.key(), line);
                    file.rows.push(row);
                }
            },
            Err(reason) => file.rejected.push(RejectedRow { line, reason }),
        }
    }
    Ok(file)
}

/// The columns Herald reads, under the names the supported formats give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    Email,
    Name,
    FirstName,
    LastName,
    Status,
    /// Buttondown's `subscriber_type` (`regular`, `premium`, `unactivated`, `unsubscribed` ...).
    ButtondownType,
    /// Substack's `email_disabled` (`true` for an address that stopped the emails).
    SubstackDisabled,
}

impl Column {
    fn named(header: &str) -> Option<Self> {
        let name = header.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match name.as_str() {
            "email" | "email_address" | "e_mail" => Self::Email,
            "name" | "full_name" => Self::Name,
            "first_name" | "firstname" | "fname" => Self::FirstName,
            "last_name" | "lastname" | "lname" => Self::LastName,
            "status" => Self::Status,
            "subscriber_type" => Self::ButtondownType,
            "email_disabled" => Self::SubstackDisabled,
            _ => return None,
        })
    }
}

/// A known service's export, recognised by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Export {
    /// Mailchimp exports one file per audience status; the unsubscribed and cleaned (bounced)
    /// ones carry `UNSUB_TIME` and `CLEAN_TIME`.
    Mailchimp(Option<SubscriberStatus>),
    Substack,
    Buttondown,
}

impl Export {
    fn recognise(header: &csv::StringRecord) -> Option<Self> {
        let has = |wanted: &str| header.iter().any(|h| h.trim().eq_ignore_ascii_case(wanted));
        if has("Email Address") {
            let status = if has("CLEAN_TIME") {
                Some(SubscriberStatus::Bounced)
            } else if has("UNSUB_TIME") {
                Some(SubscriberStatus::Unsubscribed)
            } else {
                None
            };
            Some(Self::Mailchimp(status))
        } else if has("subscriber_type") {
            Some(Self::Buttondown)
        } else if has("email_disabled") || has("active_subscription") {
            Some(Self::Substack)
        } else {
            None
        }
    }

    /// The status every row of the file has, when the file says it.
    fn status(self) -> Option<SubscriberStatus> {
        match self {
            Self::Mailchimp(status) => status,
            Self::Substack | Self::Buttondown => None,
        }
    }
}

/// Where each column Herald reads is.
struct Columns {
    email: usize,
    name: Option<usize>,
    first_name: Option<usize>,
    last_name: Option<usize>,
    status: Option<usize>,
    buttondown_type: Option<usize>,
    substack_disabled: Option<usize>,
    /// A status the whole file has (a Mailchimp export of unsubscribed addresses ...).
    file_status: Option<SubscriberStatus>,
}

fn parse_row(
    record: &csv::ByteRecord,
    line: u64,
    columns: &Columns,
) -> Result<SubscriberRow, String> {
    let cell = |i: usize| -> Result<&str, String> {
        std::str::from_utf8(record.get(i).unwrap_or_default())
            .map_err(|_| format!("column {} is not valid UTF-8", i + 1))
    };
    let raw_email = cell(columns.email)?;
    let email = EmailAddress::parse(raw_email).map_err(|e| {
        let shown: String = raw_email
            .chars()
            .flat_map(char::escape_debug)
            .take(80)
            .collect();
        format!("`{shown}`: {e}")
    })?;
    let optional = |i: Option<usize>| -> Result<&str, String> { i.map_or(Ok(""), cell) };
    let first = optional(columns.first_name)?;
    let last = optional(columns.last_name)?;
    let name = match columns.name {
        Some(i) => SubscriberName::clean(cell(i)?),
        // First and last name columns only (Mailchimp): the full name is both.
        None => SubscriberName::clean(&format!("{first} {last}")),
    };
    let first_name = SubscriberName::clean(first);
    let mut status = match optional(columns.status)? {
        "" => None,
        s => Some(SubscriberStatus::parse(s).map_err(|e| e.to_string())?),
    };
    if let Some(kind) = columns.buttondown_type.map(cell).transpose()? {
        status = match kind.to_ascii_lowercase().as_str() {
            "unsubscribed" | "removed" | "spammy" => Some(SubscriberStatus::Unsubscribed),
            "unactivated" => Some(SubscriberStatus::Pending),
            "" => status,
            _ => Some(SubscriberStatus::Confirmed),
        };
    }
    if let Some(disabled) = columns.substack_disabled.map(cell).transpose()?
        && disabled.eq_ignore_ascii_case("true")
    {
        status = Some(SubscriberStatus::Unsubscribed);
    }
    Ok(SubscriberRow {
        line,
        email,
        name,
        first_name,
        status: status.or(columns.file_status),
    })
}

/// What importing one row does to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportAction {
    /// A new address, with this status.
    Insert(SubscriberStatus),
    /// An existing address gets a new status or name.
    Update {
        status: SubscriberStatus,
        name: String,
    },
    Unchanged,
    /// The address unsubscribed or bounced and the row would re-activate it: left alone.
    Suppressed,
}

/// Decides what one row does, given the stored name and status of the same address.
///
/// The rules: a new address is added as the row's status (default `confirmed`); an
/// unsubscribed or bounced address is never re-activated (only moved between those two); an
/// active address takes the row's status, except that `confirmed` is never downgraded to
/// `pending`; an empty name never erases a stored one.
pub fn decide_import(
    existing: Option<(&str, SubscriberStatus)>,
    row: &SubscriberRow,
) -> ImportAction {
    let Some((stored_name, stored)) = existing else {
        return ImportAction::Insert(row.status.unwrap_or(SubscriberStatus::Confirmed));
    };
    // A row without a status says "this person is on my list": for a suppressed address
    // that would be a re-activation.
    if stored.is_suppressed() && !row.status.is_some_and(SubscriberStatus::is_suppressed) {
        return ImportAction::Suppressed;
    }
    let wanted = row.status.unwrap_or(stored);
    let status = match (stored, wanted) {
        (SubscriberStatus::Confirmed, SubscriberStatus::Pending) => stored,
        _ => wanted,
    };
    let name = if row.name.is_empty() {
        stored_name
    } else {
        row.name.as_str()
    };
    if status == stored && name == stored_name {
        ImportAction::Unchanged
    } else {
        ImportAction::Update {
            status,
            name: name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: Option<SubscriberStatus>, name: &str) -> SubscriberRow {
        SubscriberRow {
            line: 2,
            email: EmailAddress::parse("a@example.com").unwrap(),
            name: SubscriberName::clean(name),
            first_name: SubscriberName::default(),
            status,
        }
    }

    #[test]
    fn import_never_reactivates_suppressed_addresses() {
        use SubscriberStatus::*;
        for stored in [Unsubscribed, Bounced] {
            for wanted in [None, Some(Pending), Some(Confirmed)] {
                assert_eq!(
                    decide_import(Some(("A", stored)), &row(wanted, "A")),
                    ImportAction::Suppressed
                );
            }
        }
        assert_eq!(
            decide_import(Some(("A", Unsubscribed)), &row(Some(Bounced), "A")),
            ImportAction::Update {
                status: Bounced,
                name: "A".into()
            }
        );
    }

    #[test]
    fn import_adds_updates_and_leaves_alone() {
        use SubscriberStatus::*;
        assert_eq!(
            decide_import(None, &row(None, "A")),
            ImportAction::Insert(Confirmed)
        );
        assert_eq!(
            decide_import(None, &row(Some(Pending), "A")),
            ImportAction::Insert(Pending)
        );
        assert_eq!(
            decide_import(Some(("A", Confirmed)), &row(None, "A")),
            ImportAction::Unchanged
        );
        assert_eq!(
            decide_import(Some(("A", Confirmed)), &row(None, "")),
            ImportAction::Unchanged
        );
        assert_eq!(
            decide_import(Some(("A", Confirmed)), &row(Some(Pending), "A")),
            ImportAction::Unchanged
        );
        assert_eq!(
            decide_import(Some(("A", Confirmed)), &row(None, "B")),
            ImportAction::Update {
                status: Confirmed,
                name: "B".into()
            }
        );
        assert_eq!(
            decide_import(Some(("A", Confirmed)), &row(Some(Unsubscribed), "A")),
            ImportAction::Update {
                status: Unsubscribed,
                name: "A".into()
            }
        );
    }

    #[test]
    fn reads_bom_crlf_quotes_and_reports_bad_rows_by_line() {
        let text = "\u{feff}email,name\r\na@example.com,\"Lovelace, Ada\"\r\nnot-an-address,Bob\r\nA@EXAMPLE.com,Again\r\n";
        let file = parse(text.as_bytes()).unwrap();
        assert_eq!(file.rows.len(), 1);
        assert_eq!(file.rows[0].name.as_str(), "Lovelace, Ada");
        assert_eq!(file.rows[0].line, 2);
        assert_eq!(file.rejected.len(), 2);
        assert_eq!(file.rejected[0].line, 3);
        assert!(file.rejected[0].reason.contains("not-an-address"));
        assert_eq!(file.rejected[1].line, 4);
        assert!(file.rejected[1].reason.contains("duplicates line 2"));
    }

    #[test]
    fn header_problems_name_the_column() {
        assert_eq!(
            parse(b"mail,name\nx@example.com,X\n"),
            Err(SubscriberFileError::UnknownColumn("mail".into()))
        );
        assert_eq!(parse(b"name\nX\n"), Err(SubscriberFileError::NoEmailColumn));
    }
}
