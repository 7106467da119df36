//! qlog files: each connection's trace written to `<dir>/<original DCID>_<role>.sqlog`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use qstream_proto::Side;

/// Where one connection's qlog records go.
#[derive(Debug, Default)]
pub(crate) enum QlogFile {
    /// No record taken yet.
    #[default]
    NotOpened,
    /// Writing to this file.
    Open(BufWriter<File>),
    /// The file could not be created or written (logged once); records are discarded so they
    /// do not pile up.
    Failed,
}

impl QlogFile {
    /// Takes every queued record of `connection` and writes it, opening the file in `dir` at
    /// the first record.
    pub(crate) fn write_records(&mut self, dir: &Path, connection: &mut qstream_proto::Connection) {
        let now = Instant::now();
        let mut wrote = false;
        while let Some(record) = connection.poll_qlog(now) {
            if matches!(self, Self::NotOpened) {
                *self = Self::create(dir, connection);
            }
            if let Self::Open(file) = self {
                if let Err(error) = file.write_all(record.as_bytes()) {
                    tracing::warn!(%error, "cannot write the qlog file; qlog stops here");
                    *self = Self::Failed;
                }
                wrote = true;
            }
        }
        // Flushed at every batch, so a trace is complete whenever the process stops.
        if let (true, Self::Open(file)) = (wrote, &mut *self) {
            if let Err(error) = file.flush() {
                tracing::warn!(%error, "cannot write the qlog file; qlog stops here");
                *self = Self::Failed;
            }
        }
    }

    fn create(dir: &Path, connection: &qstream_proto::Connection) -> Self {
        let role = match connection.side() {
            Side::Client => "client",
            Side::Server => "server",
        };
        let path = dir.join(format!(
            "{}_{role}.sqlog",
            connection.original_destination_cid()
        ));
        match File::create(&path) {
            Ok(file) => Self::Open(BufWriter::with_capacity(64 * 1024, file)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot create the qlog file");
                Self::Failed
            }
        }
    }
}
