//! Where downloaded and received bytes go: a file, written under a temporary name beside it
//! and renamed into place only once complete, or standard output.
//!
//! A user's files are never clobbered by accident: an existing target is refused unless the
//! user forces it, and a partial result never sits under the final name; an output dropped
//! before it is committed (an error, a reset stream, Ctrl-C) leaves nothing behind.

use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;

/// How many bytes of received pieces go to the writer at once: each hand-over wakes its
/// thread, so they are large.
const BATCH_BYTES: usize = 512 * 1024;
/// How many batches may wait for the writer: the memory a slow disk can hold up.
const QUEUED_BATCHES: usize = 8;

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

/// An output being written. The received pieces go, without a copy, to a thread of its own
/// that writes them with vectored writes: neither the async runtime nor the connection's
/// driver waits for the disk, and a system call carries many packets' data.
pub(crate) struct Sink {
    /// Pieces not yet handed to the writer, and their size.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    batches: Option<tokio::sync::mpsc::Sender<Vec<Bytes>>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    partial: Option<Partial>,
    force: bool,
}

impl Sink {
    /// Starts writing `target`: a file goes to a new temporary file beside it.
    pub(crate) async fn create(target: &Target, force: bool) -> Result<Self, String> {
        let (output, partial): (Box<dyn Write + Send>, _) = match target {
            Target::Stdout => (Box::new(io::stdout()), None),
            Target::File(path) => {
                let temp = temporary_name(path);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
                let partial = Partial {
                    temp,
                    target: path.clone(),
                    committed: false,
                };
                (Box::new(file), Some(partial))
            }
        };
        let (batches, mut queue) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUED_BATCHES);
        let writer = std::thread::Builder::new()
            .name("qstream-output".into())
            .spawn(move || {
                let mut output = output;
                while let Some(batch) = queue.blocking_recv() {
                    write_all(&mut output, &batch)?;
                }
                output.flush()
            })
            .map_err(|e| format!("cannot start writing {target}: {e}"))?;
        Ok(Self {
            pending: Vec::new(),
            pending_bytes: 0,
            batches: Some(batches),
            writer: Some(writer),
            partial,
            force,
        })
    }

    /// Queues `pieces` to be written (in order, after what was queued before).
    pub(crate) async fn write(&mut self, pieces: &[Bytes]) -> io::Result<()> {
        self.pending.extend_from_slice(pieces);
        self.pending_bytes += pieces.iter().map(Bytes::len).sum::<usize>();
        if self.pending_bytes < BATCH_BYTES {
            return Ok(());
        }
        self.hand_over().await
    }

    /// Hands what is pending to the writer.
    async fn hand_over(&mut self) -> io::Result<()> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let batches = self.batches.as_ref().expect("open until committed");
        if batches.send(batch).await.is_err() {
            // The writer stopped: it failed; say why.
            self.batches = None;
            return Err(self
                .finish_writing()
                .await
                .err()
                .unwrap_or_else(|| io::Error::other("the output writer stopped")));
        }
        Ok(())
    }

    /// Waits until everything queued is written.
    async fn finish_writing(&mut self) -> io::Result<()> {
        self.batches = None;
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the output writer panicked"))?
    }

    /// Writes out everything queued and puts a file under its final name. Refuses to replace
    /// a file that appeared meanwhile, unless forced.
    pub(crate) async fn commit(mut self) -> Result<(), String> {
        let target = self
            .partial
            .as_ref()
            .map_or_else(|| PathBuf::from("-"), |p| p.target.clone());
        let describe = |e: io::Error| format!("cannot write {}: {e}", target.display());
        if !self.pending.is_empty() {
            self.hand_over().await.map_err(describe)?;
        }
        self.finish_writing().await.map_err(describe)?;
        let Some(partial) = &mut self.partial else {
            return Ok(());
        };
        let appeared = || {
            format!(
                "{} appeared while downloading; kept it, pass --force to overwrite",
                partial.target.display()
            )
        };
        let cannot = |e: io::Error| format!("cannot write {}: {e}", partial.target.display());
        if self.force {
            std::fs::rename(&partial.temp, &partial.target).map_err(cannot)?;
        } else {
            // A hard link fails if the name exists, atomically: a file created after the
            // download started is never replaced. Where links are not supported, a check
            // just before the rename comes closest.
            match std::fs::hard_link(&partial.temp, &partial.target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&partial.temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(appeared()),
                Err(_) if partial.target.exists() => return Err(appeared()),
                Err(_) => std::fs::rename(&partial.temp, &partial.target).map_err(cannot)?,
            }
        }
        partial.committed = true;
        Ok(())
    }
}

/// Writes every piece, as few system calls as the output takes.
fn write_all(output: &mut dyn Write, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match output.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
        sink.write(&[Bytes::from_static(b"hel"), Bytes::from_static(b"lo")])
            .await
            .unwrap();
        // Nothing under the final name while it is written.
        assert!(!dir.join("out.bin").exists());
        sink.commit().await.unwrap();
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), b"hello");
        assert_eq!(entries(&dir), ["out.bin"]);
        // Dropped before committing: nothing is left, the existing file untouched.
        let mut sink = Sink::create(&Target::File(dir.join("other.bin")), false)
            .await
            .unwrap();
        sink.write(&[Bytes::from_static(b"partial")]).await.unwrap();
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
        sink.write(&[Bytes::from_static(b"new")]).await.unwrap();
        sink.commit().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(
            Target::File(dir.join("missing/x")).check(false).is_err(),
            "a missing directory is refused before fetching"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
