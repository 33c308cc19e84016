//! Command-line definitions (clap derive). Definitions only: the work is in
//! [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Herald makes and sends a weekly AI-glossary newsletter.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: ./herald.toml, or $HERALD_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on standard error: `text` for people, `json` for log collectors
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate configuration, glossary, templates and subscriber files, connect to the SMTP
    /// server, sign a sample with the DKIM key, and print a summary
    Check(CheckArgs),
    /// Work with glossary terms: check, list, show
    #[command(subcommand)]
    Glossary(GlossaryCommand),
    /// Manage subscribers: import, add, remove, list, export
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// Compose the next issue exactly as the send will and write it to files, recording nothing
    Preview(PreviewArgs),
    /// The editors' queue of terms to feature next: add, remove, list
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Show each news feed with its last success, last error and items seen
    Feeds(FeedsArgs),
    /// Send the next issue to every confirmed subscriber (or resume an interrupted send)
    Send(SendArgs),
    /// Past issues and their delivery ledgers: list, show, hold, release
    #[command(subcommand)]
    Issues(IssuesCommand),
    /// Run the daemon: send on schedule, serve the subscription pages, archive, health and metrics
    /// (`--role worker`: deliver only, as `herald worker`)
    Run(RunArgs),
    /// Deliver the issue being sent, beside the sender and other workers on one PostgreSQL
    /// database, through this host's own `[smtp]` relay at its own `[delivery]` rate
    Worker,
    /// The database itself: copy it to PostgreSQL
    #[command(subcommand)]
    Store(StoreCommand),
    /// Show the next five send times, what the daemon's next wake-up will do (a slot to catch
    /// up or to review), and what happened at the last slots
    Schedule(JsonFlag),
    /// What happened after each issue went out: delivered, bounced, failed, unsubscribed
    /// within 7 days
    Stats(StatsArgs),
    /// Bounces, complaints and unsubscribe emails that come back: ingest
    #[command(subcommand)]
    Bounces(BouncesCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// `all`: schedule, send (while holding the sender lease) and serve the web pages;
    /// `worker`: deliver only (as `herald worker`)
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
}

/// What a `herald run` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    All,
    Worker,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this installation's database (`store.url`, SQLite) into an empty PostgreSQL
    /// database: subscribers, issues, ledgers, terms and links sent, feed state, slots and
    /// the rest; the row counts of every table are checked
    Copy(StoreCopyArgs),
}

#[derive(Debug, Args)]
pub struct StoreCopyArgs {
    /// The target database, `postgres://USER@HOST/DATABASE` (it must be empty)
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Print what was copied as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BouncesCommand {
    /// Read returned messages (delivery status notifications, abuse reports, emails to the
    /// unsubscribe address) and apply them: one message file, an mbox, a Maildir or a
    /// directory of message files; standard input when no path is given (a Postfix pipe)
    Ingest(IngestArgs),
    /// Read the bounce mailbox (`[bounces] imap_url`) once, as the daemon does every
    /// `imap_poll_seconds`: apply every message and move it to the processed folder
    Poll(JsonFlag),
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A message, an mbox, a Maildir or a directory of messages; `-` or none: standard input
    pub path: Option<std::path::PathBuf>,
    /// The envelope recipient of a message read from standard input (Postfix: `${recipient}`)
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
    /// Print the counts as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this issue
    pub number: Option<u32>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Do everything except transmitting and recording; report the count and the sizes
    #[arg(long, conflicts_with_all = ["to", "retry_ambiguous"])]
    pub dry_run: bool,
    /// Send a test copy of the next issue to this address only; record nothing
    #[arg(long, value_name = "EMAIL")]
    pub to: Option<String>,
    /// Resend the rows an interrupted send left ambiguous (they may get a second copy)
    #[arg(long)]
    pub retry_ambiguous: bool,
}

#[derive(Debug, Subcommand)]
pub enum IssuesCommand {
    /// Every issue with its delivery counts
    List(JsonFlag),
    /// One issue: counts by status, failures with reasons, ambiguous rows
    Show {
        number: u32,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop an issue frozen for review from going out at its slot
    Hold { number: u32 },
    /// Let a held issue go out (at its slot, or at once if the slot has passed)
    Release { number: u32 },
    /// Render a frozen or held issue again from the current glossary and templates (same
    /// term and links); the editors get a new review copy
    Refreeze {
        number: u32,
        /// Pick the term and links again, as if the issue had never been made
        #[arg(long)]
        replan: bool,
    },
    /// Drop a frozen or held issue that sent nothing: its term and links return to the
    /// pool, and the next issue takes its number
    Discard { number: u32 },
    /// Settle an issue's ambiguous deliveries (sent, but no reply came): --sent when the
    /// relay's log shows they were accepted, --unsent to send them again with the next send
    Resolve {
        number: u32,
        /// They were delivered: mark them sent
        #[arg(long, conflicts_with = "unsent", required_unless_present = "unsent")]
        sent: bool,
        /// They were not delivered: the next `herald send` sends them
        #[arg(long)]
        unsent: bool,
    },
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Directory for issue.html, issue.txt and issue.eml
    #[arg(long, value_name = "DIR", default_value = "preview")]
    pub out: std::path::PathBuf,
    /// Feature this term (slug, name or alias) instead of the next one in rotation
    #[arg(long, value_name = "SLUG")]
    pub term: Option<String>,
    /// Personalise for this subscriber [default: the first confirmed subscriber]
    #[arg(long, value_name = "EMAIL")]
    pub subscriber: Option<String>,
    /// Serve a live preview page (desktop and phone widths, text part, headers) that reloads
    /// when a file under glossary/, templates/ or news/ changes
    #[arg(long)]
    pub serve: bool,
    /// Address for --serve
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8090",
        requires = "serve"
    )]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Feature this term (slug, name or alias) in an upcoming issue, before the automatic order
    Add {
        slug: String,
        /// For a term already sent in this cycle: put it first in the next cycle
        #[arg(long)]
        next_cycle: bool,
    },
    /// Take a term off the queue
    Remove { slug: String },
    /// Show the queue in order ([schedule] queue first, then added terms)
    List(JsonFlag),
}

#[derive(Debug, Args)]
pub struct FeedsArgs {
    /// Fetch every feed now (and record the result) before listing
    #[arg(long)]
    pub fetch: bool,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum GlossaryCommand {
    /// Validate every term file and report each problem with file and line
    Check,
    /// List the terms
    List(JsonFlag),
    /// Show one term by slug, name or alias
    Show {
        /// Slug, name or alias of the term
        slug: String,
    },
    /// Write a new term file with every field and a body skeleton, and print its path
    New {
        /// The term's display name, e.g. "Speculative decoding"
        name: String,
        /// Its category (default: the category with the fewest terms)
        #[arg(long)]
        category: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Do not connect to the SMTP server
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Import a CSV file (header `email,name[,status]`); never re-activates unsubscribed or bounced addresses
    Import {
        /// The CSV file
        file: PathBuf,
    },
    /// Add one address as confirmed
    Add {
        email: String,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        /// Re-activate the address even if it unsubscribed or bounced
        #[arg(long)]
        resubscribe: bool,
    },
    /// Mark an address unsubscribed (the record is kept so imports cannot bring it back)
    Remove { email: String },
    /// List subscribers
    List {
        /// Only this status: pending, confirmed, unsubscribed or bounced
        #[arg(long)]
        status: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Write every subscriber as CSV (email,name,status) to standard output
    Export,
}
