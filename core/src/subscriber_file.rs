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
    #[error("line {line}: reading the file failed: {message}")]
    Read { line: u64, message: String },
}

/// Parses a subscriber file held in memory (all its rows at once; see [`SubscriberReader`]
/// for a large file).
///
/// # Errors
/// [`SubscriberFileError`] when the header is unusable; bad rows are returned in
/// [`SubscriberFile::rejected`] instead.
pub fn parse(bytes: &[u8]) -> Result<SubscriberFile, SubscriberFileError> {
    let mut reader = SubscriberReader::new(bytes)?;
    let mut file = SubscriberFile::default();
    while reader.next_batch(usize::MAX, &mut file.rows, &mut file.rejected)? {}
    let suspects = reader.into_suspects();
    if !suspects.is_empty() {
        let (rows, duplicates) = settle_duplicates(bytes, suspects)?;
        file.rows.extend(rows);
        file.rows.sort_by_key(|r| r.line);
        file.rejected.extend(duplicates);
    }
    file.rejected.sort_by_key(|r| r.line);
    Ok(file)
}

/// Reads a subscriber file from any byte source a batch of rows at a time, in bounded
/// memory: the bytes stream through, and the addresses seen so far are kept as 64-bit
/// digests (8 bytes an address, about 18 bytes with the table's slack). A row whose digest
/// was seen before is held back as a suspect, not imported: [`settle_duplicates`] reads the
/// file again to tell a true duplicate (reported with the line it repeats) from the rare
/// digest collision (imported after all).
pub struct SubscriberReader<R: std::io::Read> {
    reader: csv::Reader<LineCounter<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>>,
    lines: std::sync::Arc<std::sync::Mutex<NewlineOffsets>>,
    columns: Columns,
    seen: std::collections::HashSet<u64>,
    suspects: Vec<SubscriberRow>,
    record: csv::ByteRecord,
}

impl<R: std::io::Read> SubscriberReader<R> {
    /// Reads the header.
    ///
    /// # Errors
    /// [`SubscriberFileError`] when the header is unusable.
    pub fn new(mut source: R) -> Result<Self, SubscriberFileError> {
        // The first three bytes, to drop a UTF-8 byte-order mark however the source splits
        // its reads.
        let mut start = Vec::with_capacity(3);
        while start.len() < 3 {
            let mut byte = [0u8; 3];
            let want = 3 - start.len();
            match source.read(&mut byte[..want]) {
                Ok(0) => break,
                Ok(n) => start.extend_from_slice(&byte[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(SubscriberFileError::Read {
                        line: 1,
                        message: e.to_string(),
                    });
                }
            }
        }
        if start == b"\xEF\xBB\xBF" {
            start.clear();
        }
        let lines = std::sync::Arc::new(std::sync::Mutex::new(NewlineOffsets::default()));
        let counter = LineCounter {
            inner: std::io::Read::chain(std::io::Cursor::new(start), source),
            lines: lines.clone(),
            offset: 0,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(counter);
        let header = reader
            .headers()
            .map_err(|e| SubscriberFileError::Header(e.to_string()))?
            .clone();
        let columns = Columns::from_header(&header)?;
        Ok(Self {
            reader,
            lines,
            columns,
            seen: std::collections::HashSet::new(),
            suspects: Vec::new(),
            record: csv::ByteRecord::new(),
        })
    }

    /// Reads up to `max` good rows into `rows` (bad ones go to `rejected`, with their line
    /// and reason). Returns `false` once the file is read to its end.
    ///
    /// # Errors
    /// [`SubscriberFileError::Read`] when the source fails (not a bad row: the rest of the
    /// file cannot be read).
    pub fn next_batch(
        &mut self,
        max: usize,
        rows: &mut Vec<SubscriberRow>,
        rejected: &mut Vec<RejectedRow>,
    ) -> Result<bool, SubscriberFileError> {
        let mut taken = 0;
        while taken < max {
            // Where the record starts, taken before reading it; turned into a line number
            // once its bytes (and the line ends before it) have passed through the counter.
            let start = self.reader.position().byte();
            let outcome = self.reader.read_byte_record(&mut self.record);
            let mut lines = self
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let line = lines.line_at(start);
            match outcome {
                Ok(false) => return Ok(false),
                Ok(true) => {}
                Err(e) if e.is_io_error() => {
                    return Err(SubscriberFileError::Read {
                        line,
                        message: e.to_string(),
                    });
                }
                Err(e) => {
                    let line = e.position().map_or(line, |p| lines.line_at(p.byte()));
                    rejected.push(RejectedRow {
                        line,
                        reason: format!("cannot be read as CSV: {e}"),
                    });
                    continue;
                }
            }
            drop(lines);
            if self.record.iter().all(<[u8]>::is_empty) {
                continue; // a blank line
            }
            match parse_row(&self.record, line, &self.columns) {
                Ok(row) => {
                    if self.seen.insert(digest(&row.email.key())) {
                        rows.push(row);
                        taken += 1;
                    } else {
                        self.suspects.push(row);
                    }
                }
                Err(reason) => rejected.push(RejectedRow { line, reason }),
            }
        }
        Ok(true)
    }
}

impl<R: std::io::Read> SubscriberReader<R> {
    /// The rows held back because their address's digest had been seen before in the file,
    /// for [`settle_duplicates`]. Take them once the file is read to its end.
    pub fn into_suspects(self) -> Vec<SubscriberRow> {
        self.suspects
    }
}

/// Reads the file again (`source`) to settle the suspects [`SubscriberReader`] held back:
/// a suspect whose address appears on an earlier line is a duplicate, rejected with that
/// line; one whose address does not (another address had the same digest) is returned, to
/// be imported.
///
/// # Errors
/// [`SubscriberFileError`] when the file can no longer be read.
pub fn settle_duplicates<R: std::io::Read>(
    source: R,
    suspects: Vec<SubscriberRow>,
) -> Result<(Vec<SubscriberRow>, Vec<RejectedRow>), SubscriberFileError> {
    let mut first: HashMap<String, Option<u64>> =
        suspects.iter().map(|r| (r.email.key(), None)).collect();
    let mut reader = SubscriberReader::new(source)?;
    let (mut rows, mut ignored) = (Vec::new(), Vec::new());
    loop {
        rows.clear();
        let more = reader.next_batch(4096, &mut rows, &mut ignored)?;
        ignored.clear();
        note_first_lines(&mut first, &rows);
        if !more {
            break;
        }
    }
    // Rows this pass held back too (an address sharing a digest with an earlier, different
    // one): their lines count as well.
    note_first_lines(&mut first, &reader.into_suspects());
    let (mut keep, mut duplicates) = (Vec::new(), Vec::new());
    for row in suspects {
        match first.get(&row.email.key()).copied().flatten() {
            Some(line) if line < row.line => duplicates.push(RejectedRow {
                line: row.line,
                reason: format!(
                    "`{}` duplicates line {line} (addresses ignore case)",
                    row.email
                ),
            }),
            _ => keep.push(row),
        }
    }
    Ok((keep, duplicates))
}

/// Notes the earliest line of each address in `first`.
fn note_first_lines(first: &mut HashMap<String, Option<u64>>, rows: &[SubscriberRow]) {
    for row in rows {
        if let Some(slot) = first.get_mut(&row.email.key()) {
            *slot = Some(slot.map_or(row.line, |l| l.min(row.line)));
        }
    }
}

/// A 64-bit digest of an address key (the first bytes of its SHA-256).
fn digest(key: &str) -> u64 {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(first)
}

/// Where the line ends are, for the bytes the CSV reader may still ask about. Line numbers
/// come from byte offsets: csv's own line counter lags by one after a CRLF line end.
#[derive(Debug, Default)]
struct NewlineOffsets {
    /// Newlines before the first pending byte, forgotten.
    before: u64,
    /// Offsets of the CR and LF bytes not yet passed (`true` for LF), ascending.
    pending: std::collections::VecDeque<(u64, bool)>,
}

impl NewlineOffsets {
    /// The 1-based line of the record starting at `offset`, past any line-end bytes there.
    /// Offsets asked about only grow, so the line ends before one can be forgotten.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut offset = offset;
        while let Some(&(at, lf)) = self.pending.front() {
            if at > offset {
                break;
            }
            if at == offset {
                offset += 1;
            }
            self.pending.pop_front();
            self.before += u64::from(lf);
        }
        self.before + 1
    }
}

/// Passes bytes through, noting where the line ends are.
struct LineCounter<R> {
    inner: R,
    lines: std::sync::Arc<std::sync::Mutex<NewlineOffsets>>,
    offset: u64,
}

impl<R: std::io::Read> std::io::Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, &b) in buf[..n].iter().enumerate() {
            if matches!(b, b'\r' | b'\n') {
                lines
                    .pending
                    .push_back((self.offset + i as u64, b == b'\n'));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
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

impl Columns {
    fn from_header(header: &csv::StringRecord) -> Result<Self, SubscriberFileError> {
        let export = Export::recognise(header);
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
        Ok(Self {
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
        })
    }
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

    /// A source that hands out one byte per read: the byte-order mark, CRLF line ends and
    /// line numbers come out as from one buffer, batch by batch.
    #[test]
    fn a_file_read_a_byte_at_a_time_in_batches_reads_as_one_buffer() {
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match (self.0.split_first(), buf.first_mut()) {
                    (Some((b, rest)), Some(slot)) => {
                        *slot = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let text = "\u{FEFF}email,name\r\na@example.com,A\r\n\r\nnot an address,B\r\nb@example.com,\"B, Bee\"\r\nA@EXAMPLE.COM,again\r\nc@example.com,C\r\n";
        let whole = parse(text.as_bytes()).unwrap();
        let mut reader = SubscriberReader::new(Trickle(text.as_bytes())).unwrap();
        let (mut rows, mut rejected) = (Vec::new(), Vec::new());
        let mut calls = 1;
        while reader.next_batch(2, &mut rows, &mut rejected).unwrap() {
            calls += 1;
        }
        assert_eq!(calls, 2, "three good rows in batches of two");
        let (kept, duplicates) =
            settle_duplicates(Trickle(text.as_bytes()), reader.into_suspects()).unwrap();
        assert!(kept.is_empty());
        rejected.extend(duplicates);
        assert_eq!(rows, whole.rows);
        assert_eq!(rejected, whole.rejected);
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 5, 7]);
        let bad: Vec<u64> = rejected.iter().map(|r| r.line).collect();
        assert_eq!(bad, [4, 6]);
        assert!(
            rejected[1].reason.contains("duplicates line 2"),
            "{rejected:?}"
        );
    }

    /// A suspect whose address first appears on its own line (another address shared its
    /// digest) is imported after all; a true repeat is rejected with the line it repeats.
    #[test]
    fn settling_suspects_tells_a_digest_collision_from_a_duplicate() {
        let text = "email,name\na@example.com,A\nb@example.com,B\nA@Example.com,again\n";
        let row = |email: &str, line: u64| SubscriberRow {
            line,
            email: EmailAddress::parse(email).unwrap(),
            name: SubscriberName::clean(""),
            first_name: SubscriberName::clean(""),
            status: None,
        };
        let suspects = vec![row("b@example.com", 3), row("A@Example.com", 4)];
        let (keep, duplicates) = settle_duplicates(text.as_bytes(), suspects).unwrap();
        assert_eq!(keep, [row("b@example.com", 3)]);
        assert_eq!(duplicates.len(), 1);
        assert_eq!(duplicates[0].line, 4);
        assert!(
            duplicates[0].reason.contains("duplicates line 2"),
            "{duplicates:?}"
        );
    }
}
