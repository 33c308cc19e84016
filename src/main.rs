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
            herald::complain!("error: starting the async runtime: {e}");
            return ExitCode::from(Exit::Failure as u8);
        }
    };
    let env = std::env::vars().collect();
    // A reader that stops early (`herald glossary list | head -1`) closes the pipe: the
    // commands' output checks its writes (`herald::say!`), and logging ignores a closed
    // standard error, so the command ends as it would have, quietly.
    let result = runtime.block_on(herald::commands::run(cli, env));
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
            herald::complain!("error: {error:#}");
            if error.chain().any(|e| e.is::<ConfigError>()) {
                Exit::Usage
            } else {
                Exit::Failure
            }
        }
    };
    ExitCode::from(exit as u8)
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A closed standard error (`herald send 2>&1 | head -2`) must not stop the command:
    // the subscriber would otherwise report its failed write with a panicking eprintln!.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .init(),
    }
}
