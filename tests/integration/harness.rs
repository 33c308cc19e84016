//! The test harness: a sandbox directory with a working configuration, and a way to run the
//! real `herald` binary inside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// The repository root (where Cargo.toml is).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A minimal valid configuration; tests append or replace sections.
pub const CONFIG: &str = r#"[newsletter]
name = "Test Weekly"
from = "Test Weekly <weekly@example.com>"
base_url = "https://news.example.com/"
postal_address = "1 Example Street, 12345 Example City, Exampleland"

[store]
url = "sqlite://herald.db"
"#;

/// The `herald` binary as a command, with no HERALD_ variables (nor RUST_LOG) inherited.
pub fn herald_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A temporary directory laid out like a Herald installation.
pub struct Sandbox {
    pub dir: TempDir,
}

/// What a run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output and standard error together, for assertions that do not care which.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Sandbox {
    /// A sandbox with the shipped glossary, empty templates and subscribers directories, and
    /// [`CONFIG`] as `herald.toml`.
    pub fn new() -> Self {
        let sandbox = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for dir in ["glossary", "templates", "subscribers"] {
            std::fs::create_dir_all(sandbox.path(dir)).unwrap();
        }
        sandbox.copy_dir(&repo().join("glossary"), "glossary");
        sandbox.copy_dir(&repo().join("templates"), "templates");
        sandbox.write("herald.toml", CONFIG);
        sandbox
    }

    /// An absolute path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parent directories).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// Copies the directory `from` (recursively) into the sandbox directory `to`.
    pub fn copy_dir(&self, from: &Path, to: &str) {
        std::fs::create_dir_all(self.path(to)).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let rel = format!("{to}/{}", name.to_string_lossy());
            if entry.path().is_dir() {
                self.copy_dir(&entry.path(), &rel);
            } else {
                std::fs::copy(entry.path(), self.path(&rel)).unwrap();
            }
        }
    }

    /// The sandbox configuration, loaded as Herald loads it.
    pub fn config(&self) -> herald::config::Config {
        herald::config::Config::load(None, &Default::default(), self.dir.path())
            .expect("valid config")
    }

    /// The sandbox configuration with these environment variables.
    pub fn config_with_env(&self, env: &[(&str, &str)]) -> herald::config::Config {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        herald::config::Config::load(None, &env, self.dir.path()).expect("valid config")
    }

    /// Opens the sandbox store.
    pub async fn store(&self) -> herald::store::Store {
        herald::store::Store::open(&self.db_url())
            .await
            .expect("store opens")
    }

    /// The SQLite URL of the sandbox database.
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.path("herald.db").display())
    }

    /// Runs `herald ARGS` in the sandbox with no HERALD_ variables from the outside.
    pub fn herald(&self, args: &[&str]) -> Run {
        self.herald_env(args, &[])
    }

    /// Runs `herald ARGS` in the sandbox with these extra environment variables.
    pub fn herald_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        cmd.output().expect("running herald").into()
    }

    /// A `herald ARGS` command in the sandbox, with no HERALD_ variables (nor RUST_LOG) from
    /// the outside, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = herald_command();
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }
}

/// Serves `router` on 127.0.0.1 with an ephemeral port; the server lives until the test's
/// runtime ends.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// Says loudly that a test did not run its checks: the line goes straight to the terminal
/// (past the test harness's output capture), so a skipped test never reads as a plain "ok".
pub fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let line = format!("SKIPPED {test}: {why}\n");
    // Written to the process's standard error directly, not through `eprintln!`, which the
    // harness captures for passing tests.
    if std::io::stderr().lock().write_all(line.as_bytes()).is_err() {
        // Nowhere to say it: the test result still stands.
    }
}

/// An HTTP client for tests. reqwest is built without a default crypto provider (Herald
/// installs ring when it starts); a test that talks HTTP before any Herald code ran installs
/// it here. `Err` from the install only means one is there already.
pub fn http_client() -> reqwest::Client {
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        // Installed already: nothing to do.
    }
    reqwest::Client::new()
}
