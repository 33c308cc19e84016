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
    /// The PostgreSQL database of its own, when the suite runs on PostgreSQL (see
    /// [`on_postgres`]); dropped with the sandbox.
    postgres_db: Option<String>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(db) = self.postgres_db.take() {
            postgres_admin(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
        }
    }
}

/// The PostgreSQL server the tests use: `HERALD_TEST_POSTGRES_URL`, or the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Whether this run of the suite keeps every sandbox's store in PostgreSQL
/// (`HERALD_TEST_STORE=postgres`, set by `postgres::the_suite_passes_on_postgresql`).
pub fn on_postgres() -> bool {
    std::env::var("HERALD_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// For a test of something only SQLite has (its file, its locking): `true` (skip) when the
/// suite runs on PostgreSQL, with a visible note.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: {what} is SQLite's");
        return true;
    }
    false
}

/// `url` (a server URL) with its database replaced by `db`.
pub fn postgres_url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let server = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    format!("{server}/{db}{query}")
}

/// Runs `work` to completion on a thread and runtime of its own, so that a synchronous test
/// (or one inside another runtime) can wait for it.
pub fn block_on_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .expect("the thread of a blocking wait")
}

/// Runs one statement on the tests' PostgreSQL server.
pub fn postgres_admin(sql: String) {
    let url = postgres_admin_url();
    block_on_thread(async move {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        conn.close().await
    })
    .expect("statement on the tests' PostgreSQL server");
}

/// A fresh, empty PostgreSQL database; returns its name.
pub fn new_postgres_database() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let db = format!("herald_test_{}_{n}", std::process::id());
    postgres_admin(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
    postgres_admin(format!("CREATE DATABASE \"{db}\""));
    db
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
            postgres_db: on_postgres().then(new_postgres_database),
        };
        for dir in ["glossary", "templates", "subscribers"] {
            std::fs::create_dir_all(sandbox.path(dir)).unwrap();
        }
        sandbox.copy_dir(&repo().join("glossary"), "glossary");
        sandbox.copy_dir(&repo().join("templates"), "templates");
        sandbox.write("herald.toml", CONFIG);
        sandbox
    }

    /// Writes `subscribers/list.csv`: `readerI@example.com,Reader I` for I below `n`, then
    /// `extra_rows` (CSV lines, each ending in a newline).
    pub fn write_readers(&self, n: usize, extra_rows: &str) {
        let mut csv = String::from("email,name\n");
        for i in 0..n {
            csv.push_str(&format!("reader{i}@example.com,Reader {i}\n"));
        }
        csv.push_str(extra_rows);
        self.write("subscribers/list.csv", csv);
    }

    /// An absolute path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parent directories). A `herald.toml` naming the sandbox's
    /// SQLite file names its PostgreSQL database instead when the suite runs on PostgreSQL.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if rel == "herald.toml" && self.postgres_db.is_some() {
            let text = String::from_utf8_lossy(contents.as_ref()).replace(
                "url = \"sqlite://herald.db\"",
                &format!("url = \"{}\"", self.db_url()),
            );
            std::fs::write(path, text).unwrap();
            return;
        }
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

    /// The URL of the sandbox database: its SQLite file, or its PostgreSQL database.
    pub fn db_url(&self) -> String {
        match &self.postgres_db {
            Some(db) => postgres_url_with_db(&postgres_admin_url(), db),
            None => format!("sqlite://{}", self.path("herald.db").display()),
        }
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

/// A direct connection to a sandbox's database, whichever it is, for tests that look at (or
/// tamper with) what Herald stored. Statements are plain SQL with their values written in
/// (the two databases read the same literals, timestamps included).
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Runs a statement; returns the rows it changed.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Self::Sqlite(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
            Self::Postgres(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
        })
    }

    /// The one integer a query returns.
    pub async fn i64(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("an integer")
    }

    /// The one text a query returns.
    pub async fn text(&self, sql: &str) -> String {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("a text")
    }

    /// Who holds the lease `name`, and until when.
    pub async fn lease(&self, name: &str) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        let sql = "SELECT holder, expires_at FROM leases WHERE name = $1";
        match self {
            Self::Sqlite(p) => sqlx::query_as(sql).bind(name).fetch_optional(p).await,
            Self::Postgres(p) => sqlx::query_as(sql).bind(name).fetch_optional(p).await,
        }
        .expect("the lease row")
    }

    pub async fn close(self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

impl Sandbox {
    /// A direct connection to the sandbox database (after Herald created it).
    pub async fn db(&self) -> Db {
        let url = self.db_url();
        if url.starts_with("postgres") {
            Db::Postgres(
                sqlx::PgPool::connect(&url)
                    .await
                    .expect("PostgreSQL connects"),
            )
        } else {
            Db::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("SQLite opens"))
        }
    }
}

/// A PostgreSQL database of a test's own, dropped with it.
pub struct TempPostgres {
    pub url: String,
    name: String,
}

impl TempPostgres {
    pub fn new() -> Self {
        let name = new_postgres_database();
        Self {
            url: postgres_url_with_db(&postgres_admin_url(), &name),
            name,
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        postgres_admin(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
    }
}
