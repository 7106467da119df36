//! Where downloaded and received bytes go: a file, written under a temporary name beside it
//! and renamed into place only once complete, or standard output.
//!
//! A user's files are never clobbered by accident: an existing target is refused unless the
//! user forces it, and a partial result never sits under the final name; an output dropped
//! before it is committed (an error, a reset stream, Ctrl-C) leaves nothing behind.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

/// How much is gathered before each write to the file or standard output: large writes keep
/// system calls (and, for files, trips to tokio's blocking pool) rare.
const WRITE_BUFFER: usize = 1 << 20;

/// Where an output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Standard output (`-`).
    Stdout,
    /// A file.
    File(PathBuf),
}

impl Target {
    /// `-` is standard output, anything else a file.
    pub(crate) fn parse(text: &str) -> Self {
        if text == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(text))
        }
    }

    /// Checks, before anything is fetched, that the output can be made: a file's directory
    /// exists, and the file does not unless `force`.
    pub(crate) fn check(&self, force: bool) -> Result<(), String> {
        let Self::File(path) = self else {
            return Ok(());
        };
        if path.is_dir() {
            return Err(format!("{} is a directory", path.display()));
        }
        if !force && path.exists() {
            return Err(format!(
                "{} exists; pass --force to overwrite it",
                path.display()
            ));
        }
        let dir = directory_of(path);
        if !dir.is_dir() {
            return Err(format!("{}: no such directory", dir.display()));
        }
        Ok(())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("standard output"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A temporary file beside its target; removed when dropped unless committed.
#[derive(Debug)]
struct Partial {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// An output being written.
pub(crate) struct Sink {
    writer: BufWriter<Box<dyn AsyncWrite + Unpin + Send>>,
    partial: Option<Partial>,
    force: bool,
}

impl Sink {
    /// Starts writing `target`: a file goes to a new temporary file beside it.
    pub(crate) async fn create(target: &Target, force: bool) -> Result<Self, String> {
        let (inner, partial): (Box<dyn AsyncWrite + Unpin + Send>, _) = match target {
            Target::Stdout => (Box::new(tokio::io::stdout()), None),
            Target::File(path) => {
                let temp = temporary_name(path);
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
                let partial = Partial {
                    temp,
                    target: path.clone(),
                    committed: false,
                };
                (Box::new(file), Some(partial))
            }
        };
        Ok(Self {
            writer: BufWriter::with_capacity(WRITE_BUFFER, inner),
            partial,
            force,
        })
    }

    /// Writes `bytes` (buffered).
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Writes out what is buffered and puts a file under its final name. Refuses to replace a
    /// file that appeared meanwhile, unless forced.
    pub(crate) async fn commit(mut self) -> Result<(), String> {
        let describe = |e: io::Error, what: &Path| format!("cannot write {}: {e}", what.display());
        let target = self
            .partial
            .as_ref()
            .map_or_else(|| PathBuf::from("-"), |p| p.target.clone());
        self.writer
            .flush()
            .await
            .map_err(|e| describe(e, &target))?;
        let Some(partial) = &mut self.partial else {
            return Ok(());
        };
        if !self.force && partial.target.exists() {
            return Err(format!(
                "{} appeared while downloading; kept it, pass --force to overwrite",
                partial.target.display()
            ));
        }
        tokio::fs::rename(&partial.temp, &partial.target)
            .await
            .map_err(|e| describe(e, &partial.target))?;
        partial.committed = true;
        Ok(())
    }
}

/// A name for the temporary file of `target`, beside it, hidden, unique in this process.
fn temporary_name(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    directory_of(target).join(format!(".{name}.{}.{unique}.partial", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("qstream-output-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_file_appears_whole_or_not_at_all() {
        let dir = scratch("whole");
        let target = Target::File(dir.join("out.bin"));
        let mut sink = Sink::create(&target, false).await.unwrap();
        sink.write(b"hello").await.unwrap();
        // Nothing under the final name while it is written.
        assert!(!dir.join("out.bin").exists());
        sink.commit().await.unwrap();
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), b"hello");
        assert_eq!(entries(&dir), ["out.bin"]);
        // Dropped before committing: nothing is left, the existing file untouched.
        let mut sink = Sink::create(&Target::File(dir.join("other.bin")), false)
            .await
            .unwrap();
        sink.write(b"partial").await.unwrap();
        drop(sink);
        assert_eq!(entries(&dir), ["out.bin"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn existing_files_are_kept_unless_forced() {
        let dir = scratch("existing");
        let path = dir.join("keep.txt");
        std::fs::write(&path, "keep").unwrap();
        let target = Target::File(path.clone());
        assert!(target.check(false).unwrap_err().contains("--force"));
        target.check(true).unwrap();
        // One that appears while writing is kept too.
        let sink = Sink::create(&Target::File(dir.join("late.txt")), false)
            .await
            .unwrap();
        std::fs::write(dir.join("late.txt"), "first").unwrap();
        assert!(sink.commit().await.is_err());
        assert_eq!(std::fs::read(dir.join("late.txt")).unwrap(), b"first");
        assert_eq!(entries(&dir), ["keep.txt", "late.txt"]);
        let mut sink = Sink::create(&target, true).await.unwrap();
        sink.write(b"new").await.unwrap();
        sink.commit().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(
            Target::File(dir.join("missing/x")).check(false).is_err(),
            "a missing directory is refused before fetching"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
