//! The `herald` binary: parse arguments, start logging, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use herald::Exit;
use herald::cli::{Cli, LogFormat};
use herald::config::ConfigError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(Exit::Failure as u8);
        }
    };
    let env = std::env::vars().collect();
    let exit = match runtime.block_on(herald::commands::run(cli, env)) {
        Ok(exit) => exit,
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
