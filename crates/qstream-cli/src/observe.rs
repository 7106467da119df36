//! What the commands show of their connections: `--stats` (counters and the stream/credit
//! snapshot every second) and `--qlog-dir` (a qlog file per connection).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use qstream::proto::Side;
use qstream::proto::wire::Dir;
use qstream::{Connection, Endpoint};

/// How often the report is printed.
const INTERVAL: Duration = Duration::from_secs(1);

/// The observability options shared by the commands that make connections.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ObserveArgs {
    /// Print each connection's counters and stream/credit snapshot every second (stderr).
    #[arg(long)]
    stats: bool,
    /// Write a qlog file (JSON-SEQ, loadable by qvis) per connection into this directory.
    #[arg(long, env = "QLOGDIR")]
    qlog_dir: Option<PathBuf>,
}

impl ObserveArgs {
    /// Makes `endpoint` write qlog files when `--qlog-dir` was given.
    pub(crate) fn apply(&self, endpoint: &Endpoint) -> Result<(), String> {
        match &self.qlog_dir {
            Some(dir) => endpoint
                .set_qlog_dir(dir)
                .map_err(|e| format!("cannot write qlog files to {}: {e}", dir.display())),
            None => Ok(()),
        }
    }

    /// Starts the reporter on `connection` when `--stats` was given.
    pub(crate) fn watch(&self, connection: &Connection, label: impl Into<String>) {
        if self.stats {
            spawn_reporter(connection.clone(), label.into());
        }
    }
}

/// Prints a report on `connection` to standard error every second until it closes.
fn spawn_reporter(connection: Connection, label: String) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = connection.closed() => break,
            }
            if let Some(report) = report(&connection) {
                eprintln!("[{label}] {report}");
            }
        }
    });
}

/// The report on `connection` now, or `None` once it is gone.
pub(crate) fn report(connection: &Connection) -> Option<String> {
    let stats = connection.stats()?;
    let snapshot = connection.streams()?;
    let mut out = format!(
        "rtt {:.1} ms, cwnd {} B, sent {} B in {} packets, received {} B in {} packets, {} lost \
         ({} of them reordered, not lost), {} PTOs; MAX_STREAMS sent {} received {}, STREAMS_BLOCKED sent {} received {}",
        connection.rtt().unwrap_or_default().as_secs_f64() * 1e3,
        connection.congestion_window().unwrap_or_default(),
        stats.bytes_sent,
        stats.packets_sent,
        stats.bytes_received,
        stats.packets_received,
        stats.packets_lost,
        stats.spurious_losses,
        stats.pto_count,
        snapshot.counters.max_streams_sent,
        snapshot.counters.max_streams_received,
        snapshot.counters.streams_blocked_sent,
        snapshot.counters.streams_blocked_received,
    );
    if let (Some(remote), Some(mtu)) = (connection.remote_address(), connection.path_mtu()) {
        let _ = write!(
            out,
            "\n  path to {remote}: MTU {mtu} B, {} MTU black holes, peer moved {} times",
            stats.mtu_black_holes, stats.peer_migrations,
        );
    }
    for initiator in [Side::Client, Side::Server] {
        for dir in [Dir::Bi, Dir::Uni] {
            let credit = snapshot.credit(initiator, dir);
            if credit.opened_total == 0 && credit.waiting == 0 {
                continue;
            }
            let _ = write!(
                out,
                "\n  {}-initiated {}: {} open, {} opened of limit {}, {} \
                 available, {} opens waiting",
                match initiator {
                    Side::Client => "client",
                    Side::Server => "server",
                },
                match dir {
                    Dir::Bi => "bidirectional",
                    Dir::Uni => "unidirectional",
                },
                credit.open,
                credit.opened_total,
                credit.limit,
                credit.available,
                credit.waiting
            );
        }
    }
    // What holds a stream is worth saying only when the peer waits for credit because of it.
    let peer_waits = snapshot.counters.streams_blocked_received > 0;
    for stream in &snapshot.streams {
        let _ = write!(
            out,
            "\n  stream {} open {:.1} s:",
            stream.id,
            stream.age.as_secs_f64()
        );
        if let Some(send) = &stream.send {
            let _ = write!(out, " sending {:?} ({} B sent)", send.state, send.sent);
        }
        if let Some(recv) = &stream.recv {
            let _ = write!(out, " receiving {:?} ({} B read)", recv.state, recv.read);
        }
        if let Some(held) = stream.held.filter(|_| peer_waits) {
            let _ = write!(out, "; the peer waits for credit, held: {held}");
        }
    }
    Some(out)
}
