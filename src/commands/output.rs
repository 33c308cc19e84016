//! The CLI's standard output and standard error, written so that a reader that goes away
//! early (`herald glossary list | head -1`, `herald send 2>&1 | head -2`) ends the output
//! quietly: a write to a closed pipe is checked, not a panic, the command goes on to its end
//! (a send is never cut short by its reader) and its later lines are dropped.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether standard output was found closed.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Whether standard error was found closed.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline to `out`, unless it was found closed before.
fn write_line(mut out: impl std::io::Write, closed: &AtomicBool, args: std::fmt::Arguments<'_>) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if written.is_err() {
        // Closed (or full, or gone): nobody reads any more.
        closed.store(true, Ordering::Relaxed);
    }
}

/// One line on standard output (see [`say!`](crate::say)).
pub fn line(args: std::fmt::Arguments<'_>) {
    write_line(std::io::stdout().lock(), &STDOUT_CLOSED, args);
}

/// One line on standard error (see [`complain!`](crate::complain)).
pub fn error_line(args: std::fmt::Arguments<'_>) {
    write_line(std::io::stderr().lock(), &STDERR_CLOSED, args);
}

/// `println!` for the CLI: a closed standard output ends the output, not the command.
#[macro_export]
macro_rules! say {
    () => {
        $crate::commands::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::commands::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` for the CLI: a closed standard error ends the output, not the command.
#[macro_export]
macro_rules! complain {
    ($($arg:tt)*) => {
        $crate::commands::output::error_line(format_args!($($arg)*))
    };
}
