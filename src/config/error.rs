//! Configuration errors, and where the faulty value came from.
//!
//! Every error names the key (when there is one) and its origin: a line of the file, an
//! environment variable, or the built-in default. Messages never contain a secret's value:
//! whoever builds one passes the key's name, not what it holds. Nothing here reads files or
//! the environment.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from, so that an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of the configuration file.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env(String),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, line } => write!(f, "{}:{line}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Default => f.write_str("default value"),
        }
    }
}

/// A configuration problem. Each names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no configuration file: {} does not exist (pass --config PATH or set HERALD_CONFIG)",
        .0.display()
    )]
    NotFound(PathBuf),
    #[error("reading configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {}{message}", key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Invalid {
        key: Option<String>,
        origin: Origin,
        message: String,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}
