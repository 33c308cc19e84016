//! Content files: the glossary directory, the templates directory, the curated links file,
//! the DKIM key and the subscriber CSV files.
//!
//! Adapter. Reads files and hands their text to the pure parsers of the core; never decides
//! anything itself.

use std::path::{Path, PathBuf};

use crate::domain::NewsLink;
use crate::glossary::{self, Glossary, Report};
use crate::news::{CuratedError, parse_curated};
use crate::render::{RenderError, Renderer};

/// A file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Curated { path: PathBuf, source: CuratedError },
}

/// Reads every `*.md` file of `dir` (not recursing), parses and validates them together.
///
/// Returns the glossary of the files that parsed, and the report of every problem. Callers
/// must treat a report with errors as a failure.
pub fn load_glossary(dir: &Path) -> (Glossary, Report) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return (
                Glossary::default(),
                glossary::unreadable_dir(dir, e.to_string()),
            );
        }
    };
    let files = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && p.is_file())
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
            (path, text)
        })
        .collect();
    let categories_path = dir.join(glossary::CATEGORIES_FILE);
    let categories = categories_path.is_file().then(|| {
        let text = std::fs::read_to_string(&categories_path).map_err(|e| e.to_string());
        (categories_path, text)
    });
    glossary::from_files_with_categories(files, categories)
}

/// Reads every `.html`, `.txt` and `.xml` file below `dir` (names are paths relative to `dir`, with
/// `/`) and builds the renderer, which checks that `issue.html` and `issue.txt` exist.
///
/// # Errors
/// [`RenderError`] for an unreadable directory, a syntax error or a missing template.
pub fn load_templates(dir: &Path) -> Result<Renderer, RenderError> {
    let mut files = Vec::new();
    collect_templates(dir, dir, &mut files).map_err(|e| RenderError::Read {
        dir: dir.display().to_string(),
        message: e.to_string(),
    })?;
    Renderer::from_sources(files)
}

fn collect_templates(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, String)>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_templates(root, &path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "html" || e == "txt" || e == "xml")
        {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// The curated links of `path`, with the entries that were skipped and why.
///
/// # Errors
/// [`FileError`] when the file cannot be read or is not valid TOML of the curated shape.
pub fn load_curated(path: &Path) -> Result<(Vec<NewsLink>, Vec<CuratedError>), FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_curated(&text).map_err(|source| FileError::Curated {
        path: path.to_path_buf(),
        source,
    })
}

/// The CSV files of a subscribers directory, sorted.
///
/// # Errors
/// [`FileError::Read`] when the directory cannot be read.
pub fn subscriber_csv_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    sorted_files(dir, |p| {
        p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    })
}

/// The regular files of `dir` that `keep` accepts, sorted by path.
fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, FileError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FileError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && keep(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The bytes of a file, with its path in the error.
///
/// # Errors
/// [`FileError::Read`].
pub fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The message files under `path`, in order: the file itself, the `new/` then `cur/`
/// messages of a Maildir, or the regular files of a directory (not its hidden ones).
///
/// # Errors
/// [`FileError::Read`] when `path` or a directory cannot be read.
pub fn message_files(path: &Path) -> Result<Vec<PathBuf>, FileError> {
    let meta = std::fs::metadata(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    // Not the hidden files (a Maildir's or an editor's own).
    let list = |dir: &Path| {
        sorted_files(dir, |p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
    };
    if path.join("new").is_dir() && path.join("cur").is_dir() {
        let mut files = list(&path.join("new"))?;
        files.extend(list(&path.join("cur"))?);
        Ok(files)
    } else {
        list(path)
    }
}

/// A file opened for reading (buffered), with its path in the error.
///
/// # Errors
/// [`FileError::Read`].
pub fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, FileError> {
    std::fs::File::open(path)
        .map(|f| std::io::BufReader::with_capacity(64 * 1024, f))
        .map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// The SHA-256 of a file's content, as lower-case hex, read in chunks (any size of file in
/// bounded memory).
///
/// # Errors
/// [`FileError::Read`].
pub fn sha256_hex(path: &Path) -> Result<String, FileError> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let err = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// When a file last changed, if the file system says.
pub fn modified(path: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(chrono::DateTime::<chrono::Utc>::from)
}

/// Writes a new file; an existing file is never overwritten.
///
/// # Errors
/// [`FileError::Write`] (naming the path) when the file exists or cannot be written.
pub fn create_new(path: &Path, contents: &str) -> Result<(), FileError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|source| FileError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Watches the content (the glossary and templates directories, and the curated links
/// file) and calls `changed` on notify's thread for every event that may change one of those
/// files (reads are ignored, and so are other files next to the curated links file, such as
/// the database). Keep the returned watcher alive as long as events are wanted.
///
/// # Errors
/// When the watcher cannot start or a directory cannot be watched.
pub fn watch_content(
    config: &crate::config::Config,
    changed: impl Fn() + Send + 'static,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::{RecursiveMode, Watcher as _};
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let dirs = [
        absolute(&config.glossary_dir),
        absolute(&config.templates_dir),
    ];
    let curated = config.news.curated.as_deref().map(absolute);
    let relevant = {
        let (dirs, curated) = (dirs.clone(), curated.clone());
        move |path: &Path| {
            dirs.iter().any(|d| path.starts_with(d)) || curated.as_deref() == Some(path)
        }
    };
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if !e.kind.is_access() && e.paths.iter().any(|p| relevant(p)) => changed(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the content files"),
        })?;
    let watch = |watcher: &mut notify::RecommendedWatcher, dir: &Path, mode| {
        watcher
            .watch(dir, mode)
            .map_err(|e| notify::Error::generic(&format!("watching {}: {e}", dir.display())))
    };
    for dir in &dirs {
        watch(&mut watcher, dir, RecursiveMode::Recursive)?;
    }
    // The file's directory, not the file: editors save by writing a new file and renaming it.
    if let Some(dir) = curated.as_deref().and_then(Path::parent) {
        watch(&mut watcher, dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
