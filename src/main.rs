//! The `herald` binary: parse arguments, start logging, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use herald::Exit;
use herald::cli::{Cli, Command, LogFormat};
use herald::config::ConfigError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // The daemon and the preview server serve many clients at once: a worker thread per
    // core. Every other command, `send` included, does one thing at a time: one thread runs
    // it, with no hand-offs between runtime threads (SQLite has a thread of its own either
    // way). For a send this costs a quarter less CPU per message than the pool of threads.
    let serves = match &cli.command {
        Command::Run(args) => args.role == herald::cli::Role::All,
        Command::Preview(args) => args.serve,
        _ => false,
    };
    let mut builder = if serves {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(Exit::Failure as u8);
        }
    };
    let env = std::env::vars().collect();
    // A reader that stops early (`herald glossary list | head -1`) closes the pipe: that ends
    // the output, quietly and successfully, as it does for any Unix tool.
    quiet_broken_pipe_panics();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(herald::commands::run(cli, env))
    }));
    let result = match result {
        Ok(result) => result,
        Err(payload) if is_broken_pipe(&payload) => return ExitCode::SUCCESS,
        Err(payload) => std::panic::resume_unwind(payload),
    };
    let exit = match result {
        Ok(exit) => exit,
        Err(error)
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Exit::Success
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.chain().any(|e| e.is::<ConfigError>()) {
                Exit::Usage
            } else {
                Exit::Failure
            }
        }
    };
    ExitCode::from(exit as u8)
}

/// The message `println!` panics with when standard output is a closed pipe.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

fn is_broken_pipe(payload: &Box<dyn std::any::Any + Send>) -> bool {
    panic_message(payload.as_ref())
        .is_some_and(|m| m.contains("failed printing to stdout") && m.contains("Broken pipe"))
}

/// Keeps the default panic report for every panic except a write to a closed pipe.
fn quiet_broken_pipe_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let quiet = panic_message(info.payload())
            .is_some_and(|m| m.contains("failed printing to stdout") && m.contains("Broken pipe"));
        if !quiet {
            default(info);
        }
    }));
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .init(),
    }
}
